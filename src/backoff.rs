//! When a thread about to wait should poll first, and when it should give up polling.
//!
//! Polling (looking again and again, yielding the core between looks) beats blocking when a
//! core is free: nobody has to wake the poller with a system call, and on a VM a woken
//! thread often runs only tens of microseconds later. It loses badly under CPU-bound
//! competition: a yield then hands the core to another process for a whole time slice
//! (about 4 ms here), while a blocked or sleeping thread is woken with priority. A poll
//! that comes back from a yield more than [`PREEMPTED`] late lost its core that way, and
//! [`Backoff`] then turns polling off for a while: for long if it happened recently too,
//! briefly if it is the first time in a long while (another thread of the process or the
//! host took the core once).
//!
//! Used by the pipeline's queues and by the simulated Edge TPU's wait.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A gap this long between two looks of a poll means the poller lost its core to another
/// thread for a time slice.
pub(crate) const PREEMPTED: Duration = Duration::from_micros(50);

/// A yield that comes back this late surely lost the core for another process's time
/// slice.
///
/// Where the poll ends anyway (the simulated Edge TPU's wait, which then sleeps all the way
/// to its deadline and ends 34–40 µs late each time, see `benches/pipeline_sim.rs`; a
/// queue's poll whose last yield found the queue ready), only such long losses count:
/// shorter ones happen now and then on a quiet machine (another thread of the process),
/// and counting them there made a simulated pipeline 1–3 % slower.
const LOST_SLICE: Duration = Duration::from_millis(1);

/// Waits without polling after a poll lost its core when an earlier one did too, fewer than
/// [`RECENT_POLLS`] polls before: CPU-bound competition, where each lost core costs about
/// 1 ms against ~4 µs saved per poll that works.
const SKIP_AFTER_PREEMPTION: u32 = 256;

/// Waits without polling after a poll lost its core for the first time in a long while:
/// polling soon resumes.
///
/// Measured on a shared 2-core VM (docs/pipeline.md): skipping 256 waits after every such
/// rare loss made the first stage of a simulated pipeline block on most of its waits, so
/// that every hand-off to it cost the stage it fed a system call.
const SKIP_AFTER_RARE_PREEMPTION: u32 = 2;

/// Two polls losing their core fewer than this many polls apart mean CPU-bound competition.
/// With two CPU-bound processes on 2 cores, several in a hundred polls of a 4-stage
/// pipeline lost their core; without them, a few in ten thousand (counted once with
/// temporary instrumentation, not by a shipped bench).
const RECENT_POLLS: u32 = 64;

/// Waits without polling after a poll timed out (the other side is slow: no point in
/// burning the CPU for it).
const SKIP_AFTER_TIMEOUT: u32 = 8;

/// The polling state of one waiting thread (one side of a queue, or one simulated stage).
///
/// Only that thread uses it, so relaxed loads and stores suffice; the fields are atomics
/// only so that the queue, shared by its two sides, can hold one per side.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// How many more waits block (or sleep) without polling.
    skips_left: AtomicU32,
    /// Polls since the last one that lost its core.
    polls_since_preempted: AtomicU32,
}

impl Backoff {
    pub(crate) const fn new() -> Self {
        Backoff {
            skips_left: AtomicU32::new(0),
            polls_since_preempted: AtomicU32::new(u32::MAX),
        }
    }

    /// Whether this wait may poll; call once per wait.
    pub(crate) fn may_poll(&self) -> bool {
        let skips = self.skips_left.load(Ordering::Relaxed);
        if skips > 0 {
            self.skips_left.store(skips - 1, Ordering::Relaxed);
            return false;
        }
        let polls = self.polls_since_preempted.load(Ordering::Relaxed);
        self.polls_since_preempted
            .store(polls.saturating_add(1), Ordering::Relaxed);
        true
    }

    /// This wait's poll lost its core (a look came [`PREEMPTED`] or more after the last).
    pub(crate) fn preempted(&self) {
        let recent = self.polls_since_preempted.load(Ordering::Relaxed) <= RECENT_POLLS;
        let skips = if recent {
            SKIP_AFTER_PREEMPTION
        } else {
            SKIP_AFTER_RARE_PREEMPTION
        };
        self.skips_left.store(skips, Ordering::Relaxed);
        self.polls_since_preempted.store(0, Ordering::Relaxed);
    }

    /// The last look of a poll that ends anyway came `gap` after the one before: counts as
    /// [`preempted`](Self::preempted) only if the core was lost for a whole time slice
    /// ([`LOST_SLICE`]). Returns whether it did.
    pub(crate) fn check_last_look(&self, gap: Duration) -> bool {
        let lost = gap > LOST_SLICE;
        if lost {
            self.preempted();
        }
        lost
    }

    /// This wait's poll ran out of time.
    pub(crate) fn timed_out(&self) {
        self.skips_left.store(SKIP_AFTER_TIMEOUT, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(backoff: &Backoff, waits: u32) -> u32 {
        (0..waits).filter(|_| !backoff.may_poll()).count() as u32
    }

    #[test]
    fn a_rare_preemption_skips_a_few_waits() {
        let backoff = Backoff::new();
        assert!(backoff.may_poll());
        backoff.preempted();
        assert_eq!(skipped(&backoff, 1000), SKIP_AFTER_RARE_PREEMPTION);
    }

    #[test]
    fn repeated_preemptions_skip_many_waits() {
        let backoff = Backoff::new();
        assert!(backoff.may_poll());
        backoff.preempted();
        assert_eq!(skipped(&backoff, 10), SKIP_AFTER_RARE_PREEMPTION);
        // Again a few polls later: CPU-bound competition.
        backoff.preempted();
        assert_eq!(
            skipped(&backoff, SKIP_AFTER_PREEMPTION + 3),
            SKIP_AFTER_PREEMPTION
        );
        // Three polls after polling resumed, it is still competition...
        backoff.preempted();
        assert_eq!(
            skipped(&backoff, SKIP_AFTER_PREEMPTION + RECENT_POLLS + 1),
            SKIP_AFTER_PREEMPTION
        );
        // ... but after more than RECENT_POLLS good polls, a preemption is rare again.
        backoff.preempted();
        assert_eq!(skipped(&backoff, 10), SKIP_AFTER_RARE_PREEMPTION);
    }

    #[test]
    fn only_a_lost_slice_counts_at_the_last_look() {
        let backoff = Backoff::new();
        assert!(backoff.may_poll());
        assert!(!backoff.check_last_look(PREEMPTED * 2));
        assert_eq!(skipped(&backoff, 10), 0);
        assert!(backoff.check_last_look(LOST_SLICE * 2));
        assert_eq!(skipped(&backoff, 10), SKIP_AFTER_RARE_PREEMPTION);
    }

    #[test]
    fn a_timeout_skips_its_waits() {
        let backoff = Backoff::new();
        assert!(backoff.may_poll());
        backoff.timed_out();
        assert_eq!(skipped(&backoff, 100), SKIP_AFTER_TIMEOUT);
    }
}
