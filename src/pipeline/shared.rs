//! State shared by the caller side and the stage threads: items, the frame pool, the first
//! failure and the cutoff past which items are discarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::pipeline::queue::{Queue, Sender};

use crate::Error;

/// One buffer per slot of the pipeline's layout.
pub(crate) type Frame = Box<[Buffer]>;

/// The bytes of one tensor, aligned for every element type (`u128` words align to at least
/// 8 bytes), so that typed views such as `Output::get_as::<f64>` never meet a misaligned
/// buffer.
#[derive(Default)]
pub(crate) struct Buffer {
    words: Box<[u128]>,
    len: usize,
}

impl Buffer {
    /// `len` zero bytes.
    fn zeroed(len: usize) -> Self {
        let words = len.div_ceil(std::mem::size_of::<u128>());
        Buffer {
            words: vec![0; words].into_boxed_slice(),
            len,
        }
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

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
            .map(|&size| Buffer::zeroed(size))
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
    /// The item the stage was running, if any.
    pub(crate) item: Option<u64>,
    pub(crate) message: String,
    pub(crate) panicked: bool,
    pub(crate) cause: Option<Arc<Error>>,
}

impl Failure {
    /// The error reported to the caller, listing every lost item.
    pub(crate) fn to_error(&self, lost: &[u64]) -> Error {
        Error::StageFailed {
            stage: self.stage,
            instance: self.instance,
            stage_desc: self.stage_desc.clone(),
            item: self.item,
            message: self.message.clone(),
            panicked: self.panicked,
            cause: self.cause.clone(),
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

/// No cutoff: every item runs.
const NO_CUTOFF: u64 = u64::MAX;

pub(crate) struct Shared {
    /// Items with this sequence number or a later one are discarded wherever they are: the
    /// first failed item's after a failure, 0 once the pipeline is dropped.
    cutoff: AtomicU64,
    /// The first failure; later ones are ignored.
    failure: Mutex<Option<Failure>>,
    /// Whether `failure` is set, read without its lock on every push.
    failed: AtomicBool,
    /// The queues in front of the first stage, stopped to refuse input.
    input_queues: Vec<Arc<Queue<Item>>>,
    /// Every queue of the pipeline.
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
            cutoff: AtomicU64::new(NO_CUTOFF),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            input_queues: senders.iter().map(Sender::queue).collect(),
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

    /// Whether item `seq` is to be discarded rather than run or delivered.
    pub(crate) fn discards(&self, seq: u64) -> bool {
        seq >= self.cutoff.load(Ordering::Acquire)
    }

    /// Whether a stage has failed.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Records a stage failure (the first one is kept) and winds the pipeline down: later
    /// items are discarded, the input is closed, and every queue stops pushing back, so the
    /// items before the failed one finish every stage without waiting for the caller.
    pub(crate) fn fail(&self, failure: Failure) {
        if let Some(seq) = failure.item {
            self.cutoff.fetch_min(seq, Ordering::AcqRel);
        }
        {
            let mut first = self.failure.lock();
            if first.is_none() {
                *first = Some(failure);
            }
        }
        self.failed.store(true, Ordering::Release);
        self.wind_down();
    }

    /// Lets the stages finish what they hold: closes the input and lifts every queue's
    /// capacity, so no stage waits for a caller that may never pop. Idempotent.
    pub(crate) fn wind_down(&self) {
        self.close_input();
        for queue in &self.queues {
            queue.unbound();
        }
    }

    /// Refuses any more input: fails every send into the first queues (waking a blocked
    /// push) and drops their senders, so the stages drain and exit. Idempotent.
    fn close_input(&self) {
        for queue in &self.input_queues {
            queue.stop();
        }
        // A push blocked on a full queue holds this lock; stopping the queues woke it.
        self.input.lock().senders.clear();
    }

    /// Stops everything at once, for a pipeline being dropped: every item is discarded
    /// and every send fails, waking the blocked ones.
    pub(crate) fn halt(&self) {
        self.cutoff.store(0, Ordering::Release);
        for queue in &self.queues {
            queue.stop();
        }
        self.close_input();
    }

    /// Recycles the frame of an item that will not come out.
    pub(crate) fn discard(&self, item: Item) {
        self.pool.put(item.frame);
    }

    /// The first failure, if any.
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.failure.lock().clone()
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
        for buffer in a.iter() {
            assert_eq!(buffer.as_ptr() as usize % 8, 0, "buffers align to 8 bytes");
        }
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

    fn failure(stage: usize, item: u64) -> Failure {
        Failure {
            stage,
            instance: 0,
            stage_desc: "test".into(),
            item: Some(item),
            message: "boom".into(),
            panicked: false,
            cause: None,
        }
    }

    #[test]
    fn first_failure_is_reported_and_the_earliest_item_is_the_cutoff() {
        let (tx, rx) = crate::pipeline::queue::queue::<Item>(Some(1));
        let (later_tx, _later_rx) = crate::pipeline::queue::queue::<Item>(Some(1));
        let queues = vec![tx.queue(), later_tx.queue()];
        let shared = Shared::new(vec![tx], queues, Pool::new(vec![1].into(), 4));
        assert!(!shared.discards(u64::MAX - 1));
        shared.fail(failure(2, 7));
        shared.fail(failure(5, 3));
        assert!(shared.has_failed());
        assert_eq!(shared.failure().map(|f| f.stage), Some(2));
        assert!(!shared.discards(2) && shared.discards(3));
        assert!(rx.recv().is_none(), "input must be disconnected");
        let item = |seq| Item {
            seq,
            frame: Box::new([]),
        };
        // Queues behind the input keep carrying the items before the cutoff, without limit.
        assert!(later_tx.try_send(item(0)).is_ok());
        assert!(later_tx.try_send(item(1)).is_ok());
        shared.halt();
        assert!(shared.discards(0));
        assert!(
            later_tx.try_send(item(2)).is_err(),
            "halted queues refuse items"
        );
    }
}
