//! The loop of one stage thread.
//!
//! Instance `j` of a stage with `r` instances handles the items whose sequence number is
//! `j (mod r)`, in order. It receives item `s` from the channel of upstream instance
//! `s mod r_up` and sends it to downstream instance `s mod r_down`. Every channel therefore
//! carries items in increasing order and every receiver knows which channel holds its next
//! item, so replicated stages keep the item order without a reorder buffer. (A blocked
//! sender always waits on an item with a smaller sequence number, so this cannot deadlock.)

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Stage;
use crate::pipeline::layout::StageRoute;
use crate::pipeline::queue::{Receiver, SendError, Sender};
use crate::pipeline::shared::{Buffer, Failure, Frame, Item, Shared};
use crate::pipeline::stats::Counters;

/// Everything one stage thread owns. Dropping it (when the thread ends) drops the senders,
/// which tells the next stage that no more items come from this instance.
pub(crate) struct Worker {
    pub(crate) stage: Box<dyn Stage>,
    pub(crate) index: usize,
    pub(crate) instance: usize,
    pub(crate) replicas: usize,
    pub(crate) stage_desc: String,
    /// One receiver per upstream instance.
    pub(crate) inputs: Vec<Receiver<Item>>,
    /// One sender per downstream instance.
    pub(crate) outputs: Vec<Sender<Item>>,
    pub(crate) route: StageRoute,
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) span: tracing::Span,
}

/// Per-thread buffers reused for every item, so the loop does not allocate.
struct Scratch {
    outputs: Vec<Buffer>,
    input_refs: Vec<&'static [u8]>,
    output_refs: Vec<&'static mut [u8]>,
}

/// Empties `v` and returns its allocation retyped, so that a vector of borrowed slices can be
/// reused across items whose borrows have different lifetimes. `A` and `B` have the same
/// layout, so the in-place collection keeps the allocation.
fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Drops a panic payload without letting its `Drop` unwind the calling thread. A stage
/// thread unwound that way would end outside the accounting: the item in hand and those
/// queued for it would be reported neither popped nor lost.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // Dropping this second payload could panic too, and so on: leak it instead. It is
        // one allocation per failure, and a failure stops the pipeline.
        std::mem::forget(again);
    }
}

impl Worker {
    /// Runs the stage until its input ends, it fails, or its next item cannot come; then
    /// drains its input, discarding what is left.
    pub(crate) fn run(mut self) {
        let span = tracing::info_span!(
            parent: &self.span,
            "stage",
            index = self.index,
            instance = self.instance,
            desc = %self.stage_desc,
        );
        let _entered = span.enter();
        self.process();
        // What is still queued for this instance comes after an item that did not come
        // through, so it cannot come out in order.
        for input in &self.inputs {
            while let Some(item) = input.recv() {
                self.shared.discard(item);
            }
        }
        tracing::debug!("stage thread done");
    }

    fn process(&mut self) {
        let mut scratch = Scratch {
            outputs: Vec::with_capacity(self.route.outputs.len()),
            input_refs: Vec::with_capacity(self.route.inputs.len()),
            output_refs: Vec::with_capacity(self.route.outputs.len()),
        };
        let upstream = self.inputs.len() as u64;
        let downstream = self.outputs.len() as u64;
        let mut next = self.instance as u64;
        loop {
            let waiting = Instant::now();
            let Some(mut item) = self.inputs[(next % upstream) as usize].recv() else {
                return;
            };
            self.counters.add_wait_input(waiting.elapsed());
            debug_assert_eq!(
                item.seq, next,
                "stage {} got an item out of order",
                self.index
            );
            next += self.replicas as u64;
            // Past a failed item: nothing from here on can come out in order.
            if self.shared.discards(item.seq) {
                self.shared.discard(item);
                continue;
            }
            let outcome = {
                let _invoke = tracing::trace_span!("invoke", seq = item.seq).entered();
                self.invoke(item.seq, &mut item.frame, &mut scratch)
            };
            if let Err(failure) = outcome {
                tracing::warn!(seq = item.seq, message = %failure.message, "stage failed");
                self.shared.discard(item);
                self.shared.fail(failure);
                return;
            }
            let waiting = Instant::now();
            let output = &self.outputs[(item.seq % downstream) as usize];
            if let Err(SendError::Closed(item) | SendError::Full(item)) = output.send(item) {
                // The pipeline is being dropped, or the next stage stopped at a gap in the
                // items: what this instance sends from now on could not come out either.
                self.shared.discard(item);
                return;
            }
            self.counters.add_wait_output(waiting.elapsed());
        }
    }

    /// Runs the stage on one frame: lends it the input slots and the output slots, catching
    /// both errors and panics.
    fn invoke(
        &mut self,
        seq: u64,
        frame: &mut Frame,
        scratch: &mut Scratch,
    ) -> Result<(), Failure> {
        for &slot in self.route.outputs.iter() {
            scratch.outputs.push(std::mem::take(&mut frame[slot]));
        }
        let started = Instant::now();
        let result = {
            let mut inputs: Vec<&[u8]> = recycle(std::mem::take(&mut scratch.input_refs));
            inputs.extend(self.route.inputs.iter().map(|&slot| &*frame[slot]));
            let mut outputs: Vec<&mut [u8]> = recycle(std::mem::take(&mut scratch.output_refs));
            outputs.extend(scratch.outputs.iter_mut().map(|buf| &mut **buf));
            let stage = &mut self.stage;
            let result = catch_unwind(AssertUnwindSafe(|| stage.run(&inputs, &mut outputs)));
            scratch.input_refs = recycle(inputs);
            scratch.output_refs = recycle(outputs);
            result
        };
        self.counters.record_invoke(started.elapsed());
        for (&slot, buf) in self.route.outputs.iter().zip(scratch.outputs.drain(..)) {
            frame[slot] = buf;
        }
        let (message, cause) = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => (error.to_string(), Some(Arc::new(error))),
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                drop_payload(payload);
                (message, None)
            }
        };
        Err(Failure {
            stage: self.index,
            instance: self.instance,
            stage_desc: self.stage_desc.clone(),
            item: Some(seq),
            message,
            panicked: cause.is_none(),
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycle_keeps_the_allocation() {
        let data = [1u8, 2, 3];
        let mut v: Vec<&[u8]> = Vec::with_capacity(8);
        v.push(&data);
        let ptr = v.as_ptr() as usize;
        let w: Vec<&'static [u8]> = recycle(v);
        assert!(w.is_empty());
        assert_eq!(w.capacity(), 8);
        assert_eq!(w.as_ptr() as usize, ptr);
    }

    #[test]
    fn panic_messages() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&42u32), "panic with a non-string payload");
    }

    #[test]
    fn a_payload_that_panics_on_drop_does_not_unwind() {
        struct PanicsOnDrop;
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                std::panic::panic_any(PanicsOnDrop);
            }
        }
        drop_payload(Box::new(PanicsOnDrop));
    }
}
