//! Profilers that measure: run the candidate segment and time it.
//!
//! Both cut the candidate range out of the model as a standalone model (as the final plan
//! will), load it in a TFLite interpreter, feed it seeded random inputs, run `warmup`
//! untimed invocations and then `runs` timed ones, and report the **median** of the timed
//! runs. The median, not the mean, because a few runs disturbed by other work on the host
//! (or by USB scheduling) would drag a mean up; not the minimum, because a segment runs
//! many times in a pipeline and the typical run is what limits it. Only `invoke` is timed:
//! inputs are set once, before the warm-up.
//!
//! - [`CpuProfiler`] runs on TFLite's CPU kernels. Useful to segment for CPU pipelines,
//!   and to test segmentation strategies on machines without an Edge TPU.
//! - [`EdgeTpuProfiler`] compiles each candidate with `edgetpu_compiler`
//!   ([`EdgeTpuCompiler`]) and times it on a real Edge TPU, as libcoral's profiling
//!   partitioner does. It is slow (a compile per candidate): wrap it in a
//!   [`CachedProfiler`](super::CachedProfiler).

use std::ops::Range;
use std::time::Instant;

use super::{Profiler, SegmentProfile, check_range};
use crate::backend::{DeviceSelector, EdgeTpuRuntime, Interpreter, InterpreterOptions, Runtime};
use crate::deploy::EdgeTpuCompiler;
use crate::model::builder::SplitMix64;
use crate::model::extract;
use crate::model::figures::param_bytes;
use crate::model::validate::Validation;
use crate::model::{Graph, Model};
use crate::verify::random_tensor;
use crate::{Error, Result};

/// Untimed invocations before timing, by default. The first invocation allocates scratch
/// memory on CPU and, on an Edge TPU, loads the cached parameters into the device.
pub const DEFAULT_WARMUP: usize = 2;

/// Timed invocations, by default (libcoral's profiling partitioner also times 10).
pub const DEFAULT_RUNS: usize = 10;

/// Seed of the random inputs, so repeated profiles see the same data.
const INPUT_SEED: u64 = 0x6d75_6c74_6974_7075;

/// Times segments on TFLite's CPU kernels.
///
/// The profile's latency is the median of `runs` timed invocations after `warmup` untimed
/// ones. On a CPU every parameter is in host memory, which is where the CPU reads it from
/// anyway, so all parameter bytes (plain tensor sizes, each tensor once) are reported as
/// on chip and none as off chip: nothing is streamed that would not be on any other run.
#[derive(Debug, Clone)]
pub struct CpuProfiler {
    /// The TFLite library that runs the segments.
    pub runtime: Runtime,
    /// How each segment's interpreter is built (threads, XNNPack).
    pub options: InterpreterOptions,
    /// Untimed invocations before timing.
    pub warmup: usize,
    /// Timed invocations; at least 1.
    pub runs: usize,
}

impl CpuProfiler {
    /// A profiler on `runtime` with one thread, no XNNPack, [`DEFAULT_WARMUP`] and
    /// [`DEFAULT_RUNS`].
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime,
            options: InterpreterOptions::default(),
            warmup: DEFAULT_WARMUP,
            runs: DEFAULT_RUNS,
        }
    }
}

impl Profiler for CpuProfiler {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        check_range(model, &ops)?;
        check_runs(self.runs)?;
        let bytes = segment_bytes(model, ops.clone())?;
        let mut interpreter = Interpreter::new(&self.runtime, bytes, &self.options)?;
        let latency_s = median_latency(&mut interpreter, self.warmup, self.runs)?;
        Ok(SegmentProfile {
            latency_s,
            on_chip_bytes: param_bytes(model, &ops),
            off_chip_bytes: 0,
        })
    }
}

/// Compiles segments for the Edge TPU and times them on one device.
///
/// For each candidate: cut it out, compile it ([`EdgeTpuCompiler::compile`]), open a
/// delegate on `device`, run it as [`CpuProfiler`] does (median of `runs` after `warmup`),
/// and report the on-chip and off-chip parameter bytes the compiler printed. The device is
/// opened for each candidate and released after it, so it must not be in use elsewhere.
/// Operators the compiler leaves to the CPU are timed with the rest, as they would run in
/// the pipeline. A compile that hangs is stopped by the compiler's own timeout (180 s).
#[derive(Debug, Clone)]
pub struct EdgeTpuProfiler {
    /// The compiler run on every candidate.
    pub compiler: EdgeTpuCompiler,
    /// libedgetpu, which opens the device.
    pub edgetpu: EdgeTpuRuntime,
    /// The TFLite library that runs the compiled segments.
    pub tflite: Runtime,
    /// The Edge TPU to time on.
    pub device: DeviceSelector,
    /// Untimed invocations before timing (the first one loads the cached parameters).
    pub warmup: usize,
    /// Timed invocations; at least 1.
    pub runs: usize,
}

impl EdgeTpuProfiler {
    /// A profiler with [`DEFAULT_WARMUP`] and [`DEFAULT_RUNS`].
    pub fn new(
        compiler: EdgeTpuCompiler,
        edgetpu: EdgeTpuRuntime,
        tflite: Runtime,
        device: DeviceSelector,
    ) -> Self {
        Self {
            compiler,
            edgetpu,
            tflite,
            device,
            warmup: DEFAULT_WARMUP,
            runs: DEFAULT_RUNS,
        }
    }

    /// Finds everything the usual way: the compiler with [`EdgeTpuCompiler::find`],
    /// libedgetpu with [`EdgeTpuRuntime::load`] and TFLite with [`Runtime::load`].
    /// Errors with [`Error::ToolNotFound`] or [`Error::Library`] when one is missing.
    ///
    /// # Errors
    ///
    /// [`Error::ToolNotFound`] or [`Error::Library`] when one of them is missing.
    pub fn load(device: DeviceSelector) -> Result<Self> {
        Ok(Self::new(
            EdgeTpuCompiler::find()?,
            EdgeTpuRuntime::load()?,
            Runtime::load()?,
            device,
        ))
    }
}

impl Profiler for EdgeTpuProfiler {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        check_range(model, &ops)?;
        check_runs(self.runs)?;
        let compiled = self.compiler.compile(&segment_bytes(model, ops)?)?;
        let delegate = self.edgetpu.open(&self.device, &[])?;
        let mut interpreter = Interpreter::with_edgetpu(
            &self.tflite,
            compiled.model,
            &InterpreterOptions::default(),
            delegate,
        )?;
        let latency_s = median_latency(&mut interpreter, self.warmup, self.runs)?;
        Ok(SegmentProfile {
            latency_s,
            on_chip_bytes: compiled.report.on_chip_bytes,
            off_chip_bytes: compiled.report.off_chip_bytes,
        })
    }
}

fn check_runs(runs: usize) -> Result<()> {
    if runs == 0 {
        return Err(Error::invalid(
            "profiler",
            "runs must be at least 1 (the median of no runs is undefined)",
        ));
    }
    Ok(())
}

/// Operators `ops` of `model` as a standalone `.tflite` file.
///
/// A profiler is handed the model, not the planner's graph, so a graph is built here for
/// each candidate, as trusted: the interpreter the segment is loaded into validates it under
/// its own options (strict by default), and next to compiling and timing the segment,
/// building the graph does not show.
fn segment_bytes(model: &Model, ops: Range<usize>) -> Result<Vec<u8>> {
    let graph = Graph::with_validation(model, &Validation::trusted())?;
    extract(&graph, ops)?.to_bytes()
}

/// Sets seeded random inputs, invokes `warmup` times, then returns the median of `runs`
/// timed invocations in seconds. `runs` must be at least 1 ([`check_runs`]).
fn median_latency(interpreter: &mut Interpreter, warmup: usize, runs: usize) -> Result<f64> {
    let mut rng = SplitMix64::new(INPUT_SEED);
    let inputs = interpreter
        .inputs()
        .iter()
        .map(|info| random_tensor(info, &mut rng))
        .collect::<Result<Vec<_>>>()?;
    for (index, data) in inputs.iter().enumerate() {
        interpreter.set_input(index, data)?;
    }
    for _ in 0..warmup {
        interpreter.invoke()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        interpreter.invoke()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let middle = times.len() / 2;
    Ok(if times.len() % 2 == 1 {
        times[middle]
    } else {
        (times[middle - 1] + times[middle]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profilers_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<CpuProfiler>();
        shareable::<EdgeTpuProfiler>();
    }

    #[test]
    fn zero_runs_is_an_error() {
        assert!(matches!(check_runs(0), Err(Error::Invalid { .. })));
        assert!(check_runs(1).is_ok());
    }
}
