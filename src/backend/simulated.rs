//! A simulated Edge TPU backend: stages that take as long as the cost model predicts a real
//! Edge TPU would, so a pipeline of N Edge TPUs can be studied on a machine without any.
//!
//! Each stage predicts, once when it is prepared, the latency of its whole segment on one
//! Edge TPU ([`EdgeTpuCostModel::predict`] of [`SegmentWorkload::from_model`]). Every `run`
//! then lasts that long: it computes (or skips) the outputs and then **waits** until the
//! deadline `start + predicted`, without occupying a core (see [`wait_until`]).
//!
//! The operating system wakes a waiting thread a little after its deadline (a few µs, now
//! and then tens), and a device that is late on every item would be slower than the one
//! simulated. So a stage keeps count of how late its waits ended and makes up for it on the
//! next runs, each ending at most a tenth of the prediction early
//! ([`CATCH_UP_DIVISOR`]). Over a run of items, the stage therefore keeps the
//! predicted pace instead of drifting behind it, while the first n runs never take less
//! than n × predicted in all: only lateness already incurred is made up for.
//!
//! - [`SimCompute::Cpu`]: the outputs are computed for real by a TFLite CPU interpreter.
//!   When the CPU is slower than the prediction, the run takes the CPU's time (there is
//!   nothing left to wait for), and the pipeline's stage statistics show the longer latency.
//! - [`SimCompute::Skip`]: nothing is computed; outputs are zero-filled with the right
//!   shapes and sizes. Only the timing is simulated.
//!
//! Every stage's [`describe`](Stage::describe) starts with `simulated Edge TPU (usb)` (or
//! `(pcie)`), so statistics and errors never pass a simulation off as a device.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::cpu::{InterpreterStage, host_description};
use crate::backend::tflite::{Interpreter, InterpreterOptions, Runtime};
use crate::backend::{Backend, Stage, check_run_arity};
use crate::backoff::Backoff;
use crate::device::{
    CpuCostModel, EdgeTpuCostModel, Link, Prediction, SegmentWorkload, compiled_tail, op_support,
};
use crate::model::Model;
use crate::model::edgetpu::is_compiled;
use crate::tensor::TensorSpec;
use crate::{Error, Result};

/// How a simulated stage produces its outputs.
#[derive(Debug, Clone)]
pub enum SimCompute {
    /// Computed by a TFLite CPU interpreter with `threads` kernel threads.
    Cpu {
        /// The TFLite runtime the interpreters run on.
        runtime: Runtime,
        /// Kernel threads per interpreter (at least 1).
        threads: usize,
    },
    /// Not computed: outputs are zero-filled.
    Skip,
}

/// Stages that take the time a real Edge TPU would take, per [`EdgeTpuCostModel`].
///
/// `device_index` only labels the stages: simulated devices are unlimited and independent.
///
/// ```
/// use multitpu::backend::{SimCompute, SimulatedEdgeTpuBackend};
/// use multitpu::model::{Graph, paper};
/// use multitpu::pipeline::Pipeline;
/// use multitpu::device::EdgeTpuCostModel;
/// use multitpu::segment::{Plan, UniformByParams};
///
/// # fn main() -> Result<(), multitpu::Error> {
/// let model = paper::fc(1000)?;
/// let graph = Graph::new(&model)?;
/// let backend = SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
/// let plan = Plan::new(&graph, 2, &UniformByParams)?;
/// let pipeline = Pipeline::from_models(&plan.segment_models(&graph)?, &backend)?;
/// for stage in pipeline.stats().stages {
///     assert!(stage.instances[0].starts_with("simulated Edge TPU (usb)"));
/// }
/// let input = pipeline.inputs()[0].clone();
/// pipeline.push(&[(&input.name, &vec![0; input.byte_size])])?;
/// let output = pipeline.pop()?.expect("one item");
/// assert!(output.tensor(0).expect("one output").iter().all(|&b| b == 0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SimulatedEdgeTpuBackend {
    /// The model that predicts each segment's latency; its `link` says USB or PCIe.
    pub cost_model: EdgeTpuCostModel,
    /// Whether outputs are computed on the CPU or skipped.
    pub compute: SimCompute,
}

impl SimulatedEdgeTpuBackend {
    /// A backend over `cost_model` (e.g. [`EdgeTpuCostModel::usb_default`]).
    pub fn new(cost_model: EdgeTpuCostModel, compute: SimCompute) -> Self {
        SimulatedEdgeTpuBackend {
            cost_model,
            compute,
        }
    }

    /// What the cost model predicts for one inference of the whole model in
    /// `segment_model` on one Edge TPU. Errors if the bytes are not a model, or if the model
    /// is already compiled for the Edge TPU (its work is hidden in the compiled program).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] or [`Error::Unsupported`] for bytes that are not a model;
    /// [`Error::Unsupported`] for a model compiled for the Edge TPU.
    pub fn predict(&self, segment_model: &[u8]) -> Result<Prediction> {
        let model = Model::from_bytes(segment_model)?;
        predict_uncompiled(&self.cost_model, &model)
    }
}

/// Short name of a link in stage descriptions.
fn link_name(link: Link) -> &'static str {
    match link {
        Link::Usb3 => "usb",
        Link::Pcie => "pcie",
    }
}

fn predict_uncompiled(cost_model: &EdgeTpuCostModel, model: &Model<'_>) -> Result<Prediction> {
    if is_compiled(model) {
        return Err(Error::unsupported(
            "a model compiled for the Edge TPU cannot be simulated: give the segment before \
             edgetpu_compiler",
        ));
    }
    // As the segment runs once compiled: the device program on the simulated device, what
    // the compiler leaves to the CPU after it timed by the CPU estimate, in the same stage.
    let ops = 0..model.operators.len();
    let tail = compiled_tail(model, &op_support(model), ops.clone()).unwrap_or(ops.end..ops.end);
    let mut prediction = cost_model.predict(&SegmentWorkload::from_model(model, 0..tail.start));
    if !tail.is_empty() {
        let cpu_s = CpuCostModel::default().predict_s(model, tail);
        prediction.host_s += cpu_s;
        prediction.latency_s += cpu_s;
    }
    Ok(prediction)
}

/// The input and output specs of a model, read from the file (for stages without an
/// interpreter). Errors on tensors without a static size.
fn model_specs(model: &Model<'_>) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let spec = |t: usize| -> Result<TensorSpec> {
        let tensor = model
            .tensors
            .get(t)
            .ok_or_else(|| Error::invalid("segment model", format!("no tensor {t}")))?;
        TensorSpec::from_model_tensor(tensor)
    };
    let inputs = model
        .inputs
        .iter()
        .map(|&t| spec(t))
        .collect::<Result<_>>()?;
    let outputs = model
        .outputs
        .iter()
        .map(|&t| spec(t))
        .collect::<Result<_>>()?;
    Ok((inputs, outputs))
}

impl Backend for SimulatedEdgeTpuBackend {
    fn prepare(&self, segment_model: Arc<[u8]>, device_index: usize) -> Result<Box<dyn Stage>> {
        let model = Model::from_bytes(&segment_model)?;
        let prediction = predict_uncompiled(&self.cost_model, &model)?;
        let predicted = Duration::try_from_secs_f64(prediction.latency_s).map_err(|_| {
            Error::invalid(
                "cost model",
                format!(
                    "predicted latency {} s is not a duration",
                    prediction.latency_s
                ),
            )
        })?;
        let (specs, compute, how) = match &self.compute {
            SimCompute::Cpu { runtime, threads } => {
                let (inputs, outputs) = model_specs(&model)?;
                drop(model);
                let options = InterpreterOptions::default().with_threads(*threads);
                let interpreter = Interpreter::new(runtime, segment_model, &options)?;
                let stage = InterpreterStage::new(interpreter, "");
                if stage.inputs() != inputs || stage.outputs() != outputs {
                    return Err(Error::invalid(
                        "segment model",
                        "TFLite reports other input or output tensors than the file",
                    ));
                }
                let how = format!(
                    "outputs computed on the CPU, {threads} thread{}",
                    if *threads == 1 { "" } else { "s" }
                );
                ((inputs, outputs), Some(stage), how)
            }
            SimCompute::Skip => (
                model_specs(&model)?,
                None,
                "outputs skipped (zero-filled)".to_string(),
            ),
        };
        let description = format!(
            "simulated Edge TPU ({}) #{device_index}, predicted {:.3} ms, {how}",
            link_name(self.cost_model.link),
            predicted.as_secs_f64() * 1e3,
        );
        Ok(Box::new(SimulatedStage {
            inputs: specs.0,
            outputs: specs.1,
            pace: Pace::new(predicted),
            compute,
            description,
        }))
    }

    fn name(&self) -> String {
        format!("simulated-edgetpu-{}", link_name(self.cost_model.link))
    }

    /// A CPU segment runs for real on TFLite's CPU kernels, with the threads of
    /// [`SimCompute::Cpu`]; with [`SimCompute::Skip`] nothing computes it, an
    /// [`Error::Unsupported`].
    fn prepare_cpu(&self, segment_model: Arc<[u8]>) -> Result<Box<dyn Stage>> {
        let SimCompute::Cpu { runtime, threads } = &self.compute else {
            return Err(Error::unsupported(
                "a CPU segment needs a TFLite runtime to run on: SimCompute::Cpu, not Skip",
            ));
        };
        let options = InterpreterOptions::default().with_threads(*threads);
        let interpreter = Interpreter::new(runtime, segment_model, &options)?;
        Ok(Box::new(InterpreterStage::new(
            interpreter,
            format!(
                "{} (beside simulated Edge TPUs)",
                host_description(&options)
            ),
        )))
    }
}

/// A simulated run makes up for past lateness by ending at most `predicted /
/// CATCH_UP_DIVISOR` before its own deadline.
pub const CATCH_UP_DIVISOR: u32 = 10;

/// The deadlines of a simulated device's runs: the prediction after each start, less
/// some of the lateness of earlier runs.
#[derive(Debug, Clone, Copy)]
struct Pace {
    predicted: Duration,
    /// How much later than their deadlines earlier runs ended, not yet made up for; at
    /// most one prediction, so a long stall of the thread is not made up for by a burst of
    /// short runs.
    owed: Duration,
}

impl Pace {
    fn new(predicted: Duration) -> Self {
        Pace {
            predicted,
            owed: Duration::ZERO,
        }
    }

    /// The deadline of a run starting at `start`.
    fn deadline(&mut self, start: Instant) -> Instant {
        let make_up = self.owed.min(self.predicted / CATCH_UP_DIVISOR);
        self.owed -= make_up;
        start + self.predicted - make_up
    }

    /// A run's wait ended `late` after its deadline.
    fn ended_late(&mut self, late: Duration) {
        self.owed = (self.owed + late).min(self.predicted);
    }
}

/// One segment on one simulated Edge TPU.
struct SimulatedStage {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    pace: Pace,
    compute: Option<InterpreterStage>,
    description: String,
}

impl fmt::Debug for SimulatedStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedStage")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Stage for SimulatedStage {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
        let deadline = self.pace.deadline(Instant::now());
        match &mut self.compute {
            Some(stage) => stage.run(inputs, outputs)?,
            None => {
                check_run_arity(
                    &self.description,
                    (&self.inputs, &self.outputs),
                    inputs.len(),
                    outputs.len(),
                )?;
                for (spec, data) in self.inputs.iter().zip(inputs) {
                    Error::check_tensor_size(&spec.name, spec.byte_size, data.len())?;
                }
                for (spec, out) in self.outputs.iter().zip(outputs.iter_mut()) {
                    Error::check_tensor_size(&spec.name, spec.byte_size, out.len())?;
                    out.fill(0);
                }
            }
        }
        // Only an early finish waits: when computing took longer, the lateness is the
        // CPU's, a slower stage than the device, and it is not made up for.
        if Instant::now() < deadline {
            self.pace.ended_late(wait_until(deadline));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// How long before a deadline [`wait_until`] stops sleeping and polls instead.
///
/// On Linux, with the thread's timer slack lowered to 1 ns, a 224.5 µs sleep on a shared
/// 2-core VM ended 34–40 µs late on average (p99 47–57 µs; the `plain sleep` line of
/// `cargo bench --bench pipeline_sim`). The margin covers the typical overshoot, so most
/// runs end within a few microseconds of the deadline while polling for at most this long.
pub const SPIN_MARGIN: Duration = Duration::from_micros(50);

/// Blocks the calling thread until `deadline`, precisely and mostly without using the CPU.
///
/// Sleeps until `SPIN_MARGIN` before the deadline, then polls the clock, yielding the core
/// to any other runnable thread between polls. On Linux the thread's timer slack is first
/// set to 1 ns (once per thread, `prctl(PR_SET_TIMERSLACK)`), so the kernel does not round
/// the sleep up by its default 50 µs; this changes only the calling thread, which in a
/// pipeline is the stage's own thread. Returns at once if the deadline has passed.
///
/// Under CPU-bound competition a yield hands the core to another process for a whole time
/// slice (milliseconds), while a sleeping thread is woken with priority: when a yield comes
/// back more than 1 ms late, the thread's next waits sleep all the way to the deadline, a
/// few waits after a rare loss and hundreds when losses recur (the pipeline queues' rule,
/// shared with them).
///
/// Returns how long after the deadline it returned.
pub fn wait_until(deadline: Instant) -> Duration {
    thread_local! {
        static BACKOFF: Backoff = const { Backoff::new() };
    }
    precise_timers();
    BACKOFF.with(|backoff| {
        let mut margin = if backoff.may_poll() {
            SPIN_MARGIN
        } else {
            Duration::ZERO
        };
        let mut last_look: Option<Instant> = None;
        loop {
            let now = Instant::now();
            // Checked first: a yield that lost the core usually ends past the deadline.
            if last_look.is_some_and(|last| backoff.check_last_look(now - last)) {
                margin = Duration::ZERO;
            }
            if now >= deadline {
                return now - deadline;
            }
            let left = deadline - now;
            if left > margin {
                std::thread::sleep(left - margin);
                last_look = None;
            } else {
                last_look = Some(now);
                std::thread::yield_now();
            }
        }
    })
}

#[cfg(target_os = "linux")]
fn precise_timers() {
    use std::cell::Cell;
    thread_local! {
        static DONE: Cell<bool> = const { Cell::new(false) };
    }
    if !DONE.get() {
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument (the slack in ns) and only
        // changes a scheduling attribute of the calling thread; no memory is passed. A
        // failure (non-zero result) leaves the default slack, which is only less precise.
        let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
        DONE.set(true);
    }
}

#[cfg(not(target_os = "linux"))]
fn precise_timers() {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paper;

    fn fc_bytes(hidden: usize) -> Arc<[u8]> {
        let model = paper::fc(hidden).expect("paper model");
        model.to_bytes().expect("serializes").into()
    }

    #[test]
    fn waits_until_the_deadline() {
        for micros in [0u64, 30, 200, 1500] {
            let start = Instant::now();
            let deadline = start + Duration::from_micros(micros);
            let late = wait_until(deadline);
            let end = Instant::now();
            assert!(end >= deadline, "returned early for {micros} µs");
            assert!(
                late <= end - deadline,
                "lateness {late:?} measured at the return"
            );
        }
        // A deadline in the past returns at once (and does not panic on the subtraction).
        let late = wait_until(Instant::now() - Duration::from_millis(1));
        assert!(late >= Duration::from_millis(1));
    }

    #[test]
    fn pace_makes_up_for_lateness_a_tenth_at_a_time() {
        let predicted = Duration::from_millis(1);
        let start = Instant::now();
        let mut pace = Pace::new(predicted);
        assert_eq!(pace.deadline(start), start + predicted, "nothing owed yet");
        pace.ended_late(Duration::from_micros(30));
        assert_eq!(
            pace.deadline(start),
            start + predicted - Duration::from_micros(30)
        );
        assert_eq!(pace.deadline(start), start + predicted, "made up for");
        // Long lateness is made up for a tenth of the prediction per run...
        pace.ended_late(Duration::from_micros(250));
        let deadlines: Vec<Duration> = (0..4).map(|_| pace.deadline(start) - start).collect();
        assert_eq!(
            deadlines,
            [900, 900, 950, 1000].map(Duration::from_micros),
            "100 + 100 + 50 µs"
        );
        // ... and at most one prediction of it is kept.
        pace.ended_late(Duration::from_secs(1));
        let made_up: Duration = (0..20)
            .map(|_| start + predicted - pace.deadline(start))
            .sum();
        assert_eq!(made_up, predicted);
    }

    #[test]
    fn runs_never_take_less_than_the_predictions_in_all() {
        let bytes = fc_bytes(100);
        let backend =
            SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
        let predicted =
            Duration::from_secs_f64(backend.predict(&bytes).expect("predicts").latency_s);
        let mut stage = backend.prepare(bytes, 0).expect("prepares");
        let (input, mut output) = (vec![0u8; 256], vec![0u8; 40]);
        let start = Instant::now();
        for runs in 1..=50u32 {
            let run_start = Instant::now();
            stage.run(&[&input], &mut [&mut output]).expect("runs");
            let end = Instant::now();
            assert!(end - start >= predicted * runs, "{runs} runs");
            assert!(end - run_start >= predicted - predicted / CATCH_UP_DIVISOR);
        }
    }

    #[test]
    fn skip_stage_zero_fills_with_the_model_shapes() {
        let bytes = fc_bytes(100);
        let backend =
            SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
        assert_eq!(backend.name(), "simulated-edgetpu-usb");
        let mut stage = backend.prepare(Arc::clone(&bytes), 2).expect("prepares");
        assert!(
            stage.describe().starts_with("simulated Edge TPU (usb) #2"),
            "{}",
            stage.describe()
        );
        assert_eq!(stage.inputs().len(), 1);
        assert_eq!(stage.inputs()[0].shape, [1, 64]);
        assert_eq!(stage.inputs()[0].byte_size, 64 * 4);
        assert_eq!(stage.outputs()[0].shape, [1, 10]);
        assert_eq!(stage.outputs()[0].byte_size, 10 * 4);

        let predicted = backend.predict(&bytes).expect("predicts").latency_s;
        assert!(predicted > 0.0);
        let input = vec![7u8; 256];
        let mut output = vec![0xAAu8; 40];
        let start = Instant::now();
        stage
            .run(&[&input], &mut [&mut output])
            .expect("runs without computing");
        assert!(
            start.elapsed().as_secs_f64() >= predicted,
            "a run lasts at least the prediction"
        );
        assert!(output.iter().all(|&b| b == 0), "zero-filled");
    }

    #[test]
    fn skip_stage_checks_its_arguments() {
        let backend =
            SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::pcie_default(), SimCompute::Skip);
        let mut stage = backend.prepare(fc_bytes(16), 0).expect("prepares");
        assert!(stage.describe().starts_with("simulated Edge TPU (pcie)"));
        let mut output = vec![0u8; 40];
        let err = stage
            .run(&[&[0u8; 3]], &mut [&mut output])
            .expect_err("short input");
        assert!(
            matches!(
                &err,
                Error::TensorSize {
                    expected: 256,
                    actual: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = stage.run(&[], &mut [&mut output]).expect_err("no input");
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn prediction_grows_with_the_model() {
        let backend =
            SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
        let small = backend.predict(&fc_bytes(100)).expect("small").latency_s;
        let large = backend.predict(&fc_bytes(2000)).expect("large").latency_s;
        assert!(
            large > 2.0 * small,
            "fc 2000 ({large} s) vs fc 100 ({small} s)"
        );
    }

    #[test]
    fn rejects_garbage() {
        let backend =
            SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
        let result = backend.prepare(Arc::from(&b"garbage"[..]), 0);
        assert!(
            matches!(result, Err(Error::Malformed { .. })),
            "{:?}",
            result.map(|stage| stage.describe())
        );
    }
}
