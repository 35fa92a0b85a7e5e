//! The seam between the pipeline and the runtimes that execute segments.
//!
//! A [`Backend`] turns the bytes of one segment model into a [`Stage`] bound to one device;
//! the pipeline only ever talks to stages. TFLite CPU interpreters, Edge TPU interpreters and
//! simulated devices all plug in here, so the pipeline behaves the same over each of them.

use std::sync::Arc;

use crate::tensor::TensorSpec;
use crate::{Error, Result};

/// One segment bound to one device, ready to run items.
///
/// A stage is owned by exactly one pipeline thread, hence `Send` but not `Sync`, and `run`
/// takes `&mut self`: interpreters keep per-run state (their input and output tensors).
pub trait Stage: Send {
    /// The tensors `run` reads, in the order of its `inputs` argument.
    fn inputs(&self) -> &[TensorSpec];

    /// The tensors `run` writes, in the order of its `outputs` argument.
    fn outputs(&self) -> &[TensorSpec];

    /// Runs one item: `inputs[i]` holds `self.inputs()[i].byte_size` bytes, and
    /// `outputs[j]` has room for exactly `self.outputs()[j].byte_size` bytes, all of which
    /// the stage must write.
    ///
    /// A stage of your own reports its own failures as [`Error::stage`]; the pipeline then
    /// stops with [`Error::StageFailed`], whose `cause` is the error returned here.
    ///
    /// # Errors
    ///
    /// Whatever the stage's runtime reports; the pipeline stops at the first one.
    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()>;

    /// Backend and device, e.g. `"tflite-cpu #0 (4 threads)"`, for statistics and errors.
    /// The pipeline asks once, when it is built.
    fn describe(&self) -> String;
}

/// A runtime that turns segment models into [`Stage`]s.
///
/// A backend is shared by the threads that prepare stages, hence `Send + Sync`.
pub trait Backend: Send + Sync {
    /// Loads one segment model (a complete `.tflite` file) onto device `device_index` of this
    /// backend. The stage keeps `segment_model` alive as long as it needs the bytes.
    ///
    /// # Errors
    ///
    /// When the bytes are not a model the backend can run, or the device cannot be had
    /// (e.g. [`Error::InvalidModel`], [`Error::Runtime`], [`Error::NoDevice`]).
    fn prepare(&self, segment_model: Arc<[u8]>, device_index: usize) -> Result<Box<dyn Stage>>;

    /// Short name of the backend, e.g. `"tflite-cpu"`.
    fn name(&self) -> String;

    /// Loads one CPU segment (a segment of the plan that no Edge TPU can run, see
    /// [`SegmentKind::Cpu`](crate::deploy::SegmentKind::Cpu)) to run on the host CPU beside
    /// this backend's devices.
    ///
    /// # Errors
    ///
    /// By default, [`Error::Unsupported`]: a backend runs CPU segments only if it says how.
    fn prepare_cpu(&self, segment_model: Arc<[u8]>) -> Result<Box<dyn Stage>> {
        drop(segment_model);
        Err(Error::unsupported(format!(
            "the {} backend cannot run CPU segments",
            self.name()
        )))
    }

    /// Loads the same segment once per device, for a replicated pipeline stage.
    ///
    /// # Errors
    ///
    /// The first error of [`prepare`](Self::prepare).
    fn prepare_replicas(
        &self,
        segment_model: Arc<[u8]>,
        devices: &[usize],
    ) -> Result<Vec<Box<dyn Stage>>> {
        devices
            .iter()
            .map(|&device| self.prepare(Arc::clone(&segment_model), device))
            .collect()
    }
}

/// Checks that a stage's `run` got one buffer per input and per output; the error names the
/// stage by `description`.
pub(crate) fn check_run_arity(
    description: &str,
    specs: (&[TensorSpec], &[TensorSpec]),
    inputs: usize,
    outputs: usize,
) -> Result<()> {
    let (input_specs, output_specs) = specs;
    if inputs == input_specs.len() && outputs == output_specs.len() {
        return Ok(());
    }
    Err(Error::invalid(
        "stage run",
        format!(
            "{description} takes {} inputs and {} outputs, got {inputs} and {outputs}",
            input_specs.len(),
            output_specs.len()
        ),
    ))
}
