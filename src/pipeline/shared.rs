//! State shared by the caller side and the stage threads: items, the frame pool, the first
//! failure and the stop signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::pipeline::queue::{Queue, Sender};

use crate::Error;

/// One buffer per slot of the pipeline's layout.
pub(crate) type Frame = Box<[Box<[u8]>]>;

/// One item in flight: its sequence number and all its tensors.
pub(crate) struct Item {
    pub(crate) seq: u64,
    pub(crate) frame: Frame,
}

/// Recycled frames, so that steady-state operation allocates nothing.
pub(crate) struct Pool {
    frames: Mutex<Vec<Frame>>,
    slot_sizes: Box<[usize]>,
    limit: usize,
}

impl Pool {
    /// A pool of frames with the given slot sizes that keeps at most `limit` spare frames.
    pub(crate) fn new(slot_sizes: Box<[usize]>, limit: usize) -> Self {
        Pool {
            frames: Mutex::new(Vec::with_capacity(limit)),
            slot_sizes,
            limit,
        }
    }

    /// A spare frame, or a new zeroed one when none is spare.
    pub(crate) fn get(&self) -> Frame {
        if let Some(frame) = self.frames.lock().pop() {
            return frame;
        }
        self.slot_sizes
            .iter()
            .map(|&size| vec![0u8; size].into_boxed_slice())
            .collect()
    }

    /// Returns a frame for reuse; frames beyond the limit are freed.
    pub(crate) fn put(&self, frame: Frame) {
        let mut frames = self.frames.lock();
        if frames.len() < self.limit && frame.len() == self.slot_sizes.len() {
            frames.push(frame);
            return;
        }
        drop(frames);
        drop(frame);
    }

    #[cfg(test)]
    pub(crate) fn spare(&self) -> usize {
        self.frames.lock().len()
    }
}

/// Why a stage stopped the pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) stage: usize,
    pub(crate) instance: usize,
    pub(crate) stage_desc: String,
    pub(crate) message: String,
    pub(crate) panicked: bool,
}

impl Failure {
    /// The error reported to the caller, listing every lost item.
    pub(crate) fn to_error(&self, lost: &[u64]) -> Error {
        Error::StageFailed {
            stage: self.stage,
            instance: self.instance,
            stage_desc: self.stage_desc.clone(),
            message: self.message.clone(),
            panicked: self.panicked,
            lost: lost.to_vec(),
        }
    }
}

/// The caller's end of the first queue(s).
pub(crate) struct InputState {
    /// One sender per instance of stage 0; empty once closed or stopped.
    pub(crate) senders: Vec<Sender<Item>>,
    /// Sequence number of the next item.
    pub(crate) next_seq: u64,
    /// Set by `close`.
    pub(crate) closed: bool,
}

pub(crate) struct Shared {
    /// Set on the first failure and on drop: from then on stages discard what they receive.
    stopping: AtomicBool,
    /// The first failure; later ones are ignored.
    failure: Mutex<Option<Failure>>,
    /// Sequence numbers of items discarded after a failure.
    lost: Mutex<Vec<u64>>,
    /// Every queue of the pipeline, to stop them all.
    queues: Vec<Arc<Queue<Item>>>,
    pub(crate) input: Mutex<InputState>,
    pub(crate) pool: Pool,
    /// Items accepted by push.
    pub(crate) pushed: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        senders: Vec<Sender<Item>>,
        queues: Vec<Arc<Queue<Item>>>,
        pool: Pool,
    ) -> Self {
        Shared {
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            lost: Mutex::new(Vec::new()),
            queues,
            input: Mutex::new(InputState {
                senders,
                next_seq: 0,
                closed: false,
            }),
            pool,
            pushed: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Stops the pipeline: records `failure` if it is the first, makes every stage discard
    /// from now on, fails every send (waking the blocked ones) and closes the input so the
    /// stages drain and exit. Idempotent.
    pub(crate) fn stop(&self, failure: Option<Failure>) {
        if let Some(failure) = failure {
            let mut first = self.failure.lock();
            if first.is_none() {
                *first = Some(failure);
            }
        }
        self.stopping.store(true, Ordering::Release);
        for queue in &self.queues {
            queue.stop();
        }
        // A push blocked on a full queue holds this lock; stopping the queues woke it.
        self.input.lock().senders.clear();
    }

    /// Records `item` as lost and recycles its frame.
    pub(crate) fn lose(&self, item: Item) {
        self.lost.lock().push(item.seq);
        self.pool.put(item.frame);
    }

    /// The first failure, if any.
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.failure.lock().clone()
    }

    /// The lost items so far, sorted.
    pub(crate) fn lost(&self) -> Vec<u64> {
        let mut lost = self.lost.lock().clone();
        lost.sort_unstable();
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_recycles_up_to_limit() {
        let pool = Pool::new(vec![3, 5].into(), 1);
        let a = pool.get();
        assert_eq!(a.iter().map(|b| b.len()).collect::<Vec<_>>(), [3, 5]);
        let b = pool.get();
        pool.put(a);
        pool.put(b);
        assert_eq!(pool.spare(), 1);
        let c = pool.get();
        assert_eq!(pool.spare(), 0);
        // A frame of the wrong shape is never recycled.
        pool.put(Box::new([]));
        assert_eq!(pool.spare(), 0);
        drop(c);
    }

    #[test]
    fn first_failure_wins_and_stop_closes_input() {
        let (tx, rx) = crate::pipeline::queue::queue::<Item>(Some(1));
        let (later_tx, _later_rx) = crate::pipeline::queue::queue::<Item>(Some(1));
        let queues = vec![tx.queue(), later_tx.queue()];
        let shared = Shared::new(vec![tx], queues, Pool::new(vec![1].into(), 4));
        let failure = |stage| Failure {
            stage,
            instance: 0,
            stage_desc: "test".into(),
            message: "boom".into(),
            panicked: false,
        };
        shared.stop(Some(failure(2)));
        shared.stop(Some(failure(5)));
        assert!(shared.is_stopping());
        assert_eq!(shared.failure().map(|f| f.stage), Some(2));
        assert!(rx.recv().is_none(), "input must be disconnected");
        let item = Item {
            seq: 0,
            frame: Box::new([]),
        };
        assert!(later_tx.try_send(item).is_err(), "queues must refuse items");
        shared.lose(Item {
            seq: 7,
            frame: vec![vec![0u8].into_boxed_slice()].into(),
        });
        shared.lose(Item {
            seq: 3,
            frame: vec![vec![0u8].into_boxed_slice()].into(),
        });
        assert_eq!(shared.lost(), [3, 7]);
    }
}
