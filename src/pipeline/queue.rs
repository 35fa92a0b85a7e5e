//! The queue between two pipeline threads: one sender, one receiver, FIFO, bounded or not.
//!
//! A mutex-protected ring buffer with two condition variables. It exists instead of a channel
//! crate for two reasons: it never allocates once its ring buffer has grown to its peak size
//! (a channel's waiter lists grow lazily the first time threads block on it, which makes
//! "no allocation per item" untestable), and [`Queue::stop`] wakes a blocked sender, which is
//! how a stopping pipeline unblocks every thread without a second channel to select on.
//!
//! A thread about to block first polls the queue's length for a while ([`SPIN`] busy, then
//! yielding up to [`POLL`]): waking a blocked thread costs the waker a system call and, on a
//! VM, often tens of microseconds before the woken thread runs, while a hand-off between two
//! busy stages is usually a matter of microseconds. A polling thread is not "waiting", so the
//! other side hands over without any system call. The poll is bounded, and after the first
//! few microseconds it yields the core before every look, so with more threads than cores
//! the threads being waited for still get to run. It is also adaptive: a poll that loses
//! its core to another process turns polling off on that side for a while
//! ([`Backoff`]).
//!
//! Shutdown is by disconnection, as with channels: dropping the [`Sender`] lets the receiver
//! drain what is queued and then see the end; dropping the [`Receiver`] makes sends fail and
//! hand the item back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, PREEMPTED};

/// How long `send` and `recv` busy-poll (`spin_loop`) for room or an item.
pub(crate) const SPIN: Duration = Duration::from_micros(5);

/// How long `send` and `recv` poll in all before blocking; after [`SPIN`], each poll first
/// yields the core (`yield_now`), so a poller runs only when no other thread wants its core.
///
/// Measured on a shared 2-core VM (see docs/pipeline.md): a longer busy poll (20 µs) made 4
/// stages slower, as busy pollers take the cores the threads they wait for need; yielding
/// polls up to 200 µs cut the overhead per item 3–50× when the cores are not saturated by
/// other processes. A 50 µs limit made simulated pipelines slower: a fast stage in front of
/// a slow one waits ~100 µs for room, so it polled and then blocked anyway.
pub(crate) const POLL: Duration = Duration::from_micros(200);

struct State<T> {
    items: VecDeque<T>,
    sender_gone: bool,
    receiver_gone: bool,
    stopped: bool,
    /// Set by [`Queue::unbound`]: the capacity no longer applies.
    unbounded: bool,
    /// Threads blocked in `recv` and in `send`: notifying a condition variable costs a
    /// system call even when nobody waits, so only waited-on ones are notified.
    receivers_waiting: usize,
    senders_waiting: usize,
}

/// The shared part of a queue.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// `state.items.len()`, written under the lock and read without it while polling; a
    /// stale read only ends the poll early or late, every decision is taken under the lock.
    len: AtomicUsize,
    /// Per side (0: the sender, 1: the receiver), when to poll before blocking.
    backoff: [Backoff; 2],
    not_empty: Condvar,
    not_full: Condvar,
    capacity: Option<usize>,
}

/// Why a send did not happen; the item comes back.
#[derive(Debug)]
pub(crate) enum SendError<T> {
    /// The queue is full (only from [`Sender::try_send`]).
    Full(T),
    /// The receiver is gone or the queue was stopped.
    Closed(T),
}

/// What [`Receiver::recv_until`] got.
pub(crate) enum Received<T> {
    /// The next item.
    Item(T),
    /// The sender is gone and the queue is empty.
    Ended,
    /// The deadline passed first.
    TimedOut,
}

/// A new queue with room for `capacity` items (`None`: unbounded).
pub(crate) fn queue<T>(capacity: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.unwrap_or(16)),
            sender_gone: false,
            receiver_gone: false,
            stopped: false,
            unbounded: false,
            receivers_waiting: 0,
            senders_waiting: 0,
        }),
        len: AtomicUsize::new(0),
        backoff: [Backoff::new(), Backoff::new()],
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        capacity,
    });
    (Sender(Arc::clone(&queue)), Receiver(queue))
}

impl<T> Queue<T> {
    /// The state; a panic elsewhere cannot leave it inconsistent (no user code runs under the
    /// lock), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Items queued right now.
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Makes every current and future send fail with [`SendError::Closed`]; receiving goes on.
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.not_full.notify_all();
    }

    /// Lifts the capacity: from now on no send waits for room (a blocked one goes ahead).
    pub(crate) fn unbound(&self) {
        self.lock().unbounded = true;
        self.not_full.notify_all();
    }

    /// Polls, without the lock, until `ready` holds for the queue's length or [`POLL`] has
    /// passed: busy for [`SPIN`], then yielding the core between polls.
    ///
    /// Adaptive: a look that comes [`PREEMPTED`] after the previous one means this thread
    /// lost its core for a time slice, and a poll that lasts [`POLL`] means the other side is
    /// slow; either ends the poll, and that side's [`Backoff`] says for how many waits to
    /// block without polling.
    fn spin(&self, side: usize, ready: impl Fn(usize) -> bool) {
        let backoff = &self.backoff[side];
        if !backoff.may_poll() {
            return;
        }
        let start = Instant::now();
        let mut last = start;
        while !ready(self.len.load(Ordering::Relaxed)) {
            let now = Instant::now();
            let (polled, step) = (now - start, now - last);
            last = now;
            if step > PREEMPTED {
                backoff.preempted();
                return;
            }
            if polled < SPIN {
                std::hint::spin_loop();
            } else if polled < POLL {
                std::thread::yield_now();
            } else {
                backoff.timed_out();
                return;
            }
        }
        // The last yield found the queue ready, but may have lost the core for a whole slice
        // on the way; a shorter loss that ends with the hand-off is not worth backing off.
        backoff.check_last_look(last.elapsed());
    }

    /// Releases the lock after a push, waking a blocked receiver if there is one.
    fn wake_receiver(&self, state: MutexGuard<'_, State<T>>) {
        self.len.store(state.items.len(), Ordering::Relaxed);
        let waiting = state.receivers_waiting > 0;
        drop(state);
        if waiting {
            self.not_empty.notify_one();
        }
    }

    /// Releases the lock after a pop, waking a blocked sender if there is one.
    fn wake_sender(&self, state: MutexGuard<'_, State<T>>) {
        self.len.store(state.items.len(), Ordering::Relaxed);
        let waiting = state.senders_waiting > 0;
        drop(state);
        if waiting {
            self.not_full.notify_one();
        }
    }

    fn is_full(&self, state: &State<T>) -> bool {
        !state.unbounded && self.capacity.is_some_and(|c| state.items.len() >= c)
    }
}

/// The sending end of a [`Queue`].
pub(crate) struct Sender<T>(Arc<Queue<T>>);

impl<T> Sender<T> {
    /// Queues `item`, waiting while the queue is full.
    pub(crate) fn send(&self, item: T) -> Result<(), SendError<T>> {
        let mut state = self.0.lock();
        let mut spun = false;
        loop {
            if state.receiver_gone || state.stopped {
                return Err(SendError::Closed(item));
            }
            if !self.0.is_full(&state) {
                state.items.push_back(item);
                self.0.wake_receiver(state);
                return Ok(());
            }
            if !spun {
                spun = true;
                drop(state);
                let capacity = self.0.capacity.unwrap_or(usize::MAX);
                self.0.spin(0, |len| len < capacity);
                state = self.0.lock();
                continue;
            }
            state.senders_waiting += 1;
            state = self
                .0
                .not_full
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.senders_waiting -= 1;
        }
    }

    /// Queues `item` if there is room right now.
    pub(crate) fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        let mut state = self.0.lock();
        if state.receiver_gone || state.stopped {
            return Err(SendError::Closed(item));
        }
        if self.0.is_full(&state) {
            return Err(SendError::Full(item));
        }
        state.items.push_back(item);
        self.0.wake_receiver(state);
        Ok(())
    }

    /// Whether a send would wait right now.
    pub(crate) fn is_full(&self) -> bool {
        self.0.is_full(&self.0.lock())
    }

    /// The queue, for [`Queue::len`] and [`Queue::stop`].
    pub(crate) fn queue(&self) -> Arc<Queue<T>> {
        Arc::clone(&self.0)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.lock().sender_gone = true;
        self.0.not_empty.notify_all();
    }
}

/// The receiving end of a [`Queue`].
pub(crate) struct Receiver<T>(Arc<Queue<T>>);

impl<T> Receiver<T> {
    /// The next item, waiting for it; `None` once the sender is gone and the queue is empty.
    pub(crate) fn recv(&self) -> Option<T> {
        match self.recv_until(None) {
            Received::Item(item) => Some(item),
            Received::Ended | Received::TimedOut => None,
        }
    }

    /// The next item, waiting for it until `deadline` (`None`: for as long as it takes). A
    /// deadline already past looks once, without waiting.
    pub(crate) fn recv_until(&self, deadline: Option<Instant>) -> Received<T> {
        let mut state = self.0.lock();
        let mut spun = false;
        loop {
            if let Some(item) = state.items.pop_front() {
                self.0.wake_sender(state);
                return Received::Item(item);
            }
            if state.sender_gone {
                return Received::Ended;
            }
            let left = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Received::TimedOut,
                },
            };
            // A poll lasts up to POLL: not worth it for a wait that ends sooner.
            if !spun && left.is_none_or(|left| left >= POLL) {
                spun = true;
                drop(state);
                self.0.spin(1, |len| len > 0);
                state = self.0.lock();
                continue;
            }
            state.receivers_waiting += 1;
            state = match left {
                None => self
                    .0
                    .not_empty
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    self.0
                        .not_empty
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            state.receivers_waiting -= 1;
        }
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&self) -> Option<T> {
        let mut state = self.0.lock();
        let item = state.items.pop_front();
        if item.is_some() {
            self.0.wake_sender(state);
        }
        item
    }

    /// The queue, for [`Queue::len`] and [`Queue::stop`].
    pub(crate) fn queue(&self) -> Arc<Queue<T>> {
        Arc::clone(&self.0)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.lock().receiver_gone = true;
        self.0.not_full.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_capacity() {
        let (tx, rx) = queue(Some(2));
        tx.send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(tx.is_full());
        assert!(matches!(tx.try_send(3), Err(SendError::Full(3))));
        assert_eq!(rx.queue().len(), 2);
        assert_eq!(rx.recv(), Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn sender_drop_ends_after_drain() {
        let (tx, rx) = queue(None);
        for i in 0..100 {
            tx.send(i).unwrap();
        }
        drop(tx);
        assert_eq!(std::iter::from_fn(|| rx.recv()).count(), 100);
        assert_eq!(rx.recv(), None);
    }

    #[test]
    fn receiver_drop_and_stop_fail_sends() {
        let (tx, rx) = queue(Some(1));
        drop(rx);
        assert!(matches!(tx.send(1), Err(SendError::Closed(1))));
        let (tx, rx) = queue(Some(1));
        tx.send(0).unwrap();
        let q = tx.queue();
        std::thread::scope(|s| {
            let blocked = s.spawn(|| tx.send(1));
            q.stop();
            assert!(matches!(blocked.join().unwrap(), Err(SendError::Closed(1))));
        });
        // Receiving still works after stop.
        assert_eq!(rx.recv(), Some(0));
    }

    #[test]
    fn unbound_lets_a_blocked_send_through() {
        let (tx, rx) = queue(Some(1));
        tx.send(0).unwrap();
        let q = tx.queue();
        std::thread::scope(|s| {
            let blocked = s.spawn(|| {
                tx.send(1).unwrap();
                tx.send(2).unwrap();
            });
            std::thread::sleep(POLL * 5);
            q.unbound();
            blocked.join().unwrap();
        });
        assert_eq!(
            std::iter::from_fn(|| rx.try_recv()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn recv_blocks_past_the_spin_until_sent_or_disconnected() {
        let (tx, rx) = queue(Some(1));
        std::thread::scope(|s| {
            let receiver = s.spawn(|| (rx.recv(), rx.recv()));
            // Long past POLL: the receiver has given up polling and blocks on the condvar.
            std::thread::sleep(POLL * 50);
            tx.send(7).unwrap();
            std::thread::sleep(POLL * 50);
            drop(tx);
            assert_eq!(receiver.join().unwrap(), (Some(7), None));
        });
    }

    #[test]
    fn blocked_send_resumes_when_room() {
        let (tx, rx) = queue(Some(1));
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..50 {
                    tx.send(i).unwrap();
                }
            });
            for i in 0..50 {
                assert_eq!(rx.recv(), Some(i));
            }
        });
    }
}
