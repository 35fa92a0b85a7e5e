//! Profiling candidate segments: how long one inference of a run of operators takes on one
//! Edge TPU, and how much of its parameter data stays on chip.
//!
//! [`Profiler`] is what the segmenter asks. [`EdgeTpuCostModel`] answers from an analytic
//! model fitted to real measurements (by the `multitpu-paper` crate's `calibrate`), [`CpuCostModel`] from an analytic
//! estimate of the host CPU; [`CachedProfiler`] wraps any profiler
//! so that each candidate is profiled once, which matters when profiling means compiling and
//! timing on a device.
//!
//! The measured profilers answer by running the candidate: [`CpuProfiler`] on TFLite's CPU
//! kernels, [`EdgeTpuProfiler`] on a real Edge TPU after compiling the candidate with
//! `edgetpu_compiler` ([`EdgeTpuCompiler`](crate::deploy::EdgeTpuCompiler)).

mod measured;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::device::{CpuCostModel, EdgeTpuCostModel, SegmentWorkload};
use crate::model::Model;
use crate::{Error, Result};

pub use measured::{CpuProfiler, DEFAULT_RUNS, DEFAULT_WARMUP, EdgeTpuProfiler};

/// The profile of one candidate segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentProfile {
    /// Seconds of one inference of the segment on one device.
    pub latency_s: f64,
    /// Parameter bytes cached in the device's SRAM.
    pub on_chip_bytes: u64,
    /// Parameter bytes streamed from the host on every inference.
    pub off_chip_bytes: u64,
}

/// Something that can tell how a run of operators performs on one Edge TPU.
///
/// Any figure source can plan: a table of measurements, a cost model of your own.
///
/// ```
/// use std::ops::Range;
///
/// use multitpu::model::{Graph, Model, paper};
/// use multitpu::profile::{Profiler, SegmentProfile};
/// use multitpu::segment::{Profiled, Segmenter};
///
/// /// 1 ms per operator.
/// struct PerOperator;
///
/// impl Profiler for PerOperator {
///     fn profile(&self, _model: &Model, ops: Range<usize>) -> multitpu::Result<SegmentProfile> {
///         Ok(SegmentProfile {
///             latency_s: 1e-3 * ops.len() as f64,
///             on_chip_bytes: 0,
///             off_chip_bytes: 0,
///         })
///     }
/// }
///
/// let model = paper::fc(500)?;
/// let plan = Profiled::new(PerOperator).with_exact_devices().plan(&Graph::new(&model)?, 2)?;
/// assert_eq!(plan.segments.len(), 2);
/// # Ok::<(), multitpu::Error>(())
/// ```
pub trait Profiler {
    /// Profile operators `ops` (execution order indices) of `model` as one segment.
    ///
    /// Errors if the range is empty or runs past the model's operators, or if the
    /// profiler itself fails.
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile>;
}

/// Checks that `ops` is a non-empty range of `model`'s operators.
fn check_range(model: &Model, ops: &Range<usize>) -> Result<()> {
    if ops.start >= ops.end || ops.end > model.operators.len() {
        return Err(Error::invalid(
            "segment range",
            format!(
                "operators {}..{} of a model with {} operators",
                ops.start,
                ops.end,
                model.operators.len()
            ),
        ));
    }
    Ok(())
}

/// Prices a run of operators the way `edgetpu_compiler` and TFLite run it as one segment: the
/// device program the compiler maps (from the first operator up to the first it cannot map,
/// host quantisation at the edges included) by `device`, and the operators it leaves to the
/// CPU after it by `cpu`, added; a run with no device program wholly by `cpu`
/// ([`crate::device::compiled_tail`]). The profile's on-chip and off-chip bytes are the device
/// program's.
///
/// Every strategy is priced this way ([`Plan::with_predictions`](crate::segment::Plan::with_predictions)
/// and the libcoral search's own profiles), so their plans compare like with like.
///
/// ```
/// use multitpu::device::{CpuCostModel, EdgeTpuCostModel};
/// use multitpu::model::paper;
/// use multitpu::profile::{CompiledSplit, Profiler};
///
/// let model = paper::fc(100)?;
/// let split = CompiledSplit::new(EdgeTpuCostModel::usb_default(), CpuCostModel::default());
/// let whole = 0..model.operators.len();
/// // Every operator of the paper's models maps: the device's figure alone.
/// assert_eq!(
///     split.profile(&model, whole.clone())?,
///     EdgeTpuCostModel::usb_default().profile(&model, whole)?
/// );
/// # Ok::<(), multitpu::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CompiledSplit<D, C> {
    device: D,
    cpu: C,
}

impl<D: Profiler, C: Profiler> CompiledSplit<D, C> {
    /// Device programs priced by `device`, what runs on the CPU by `cpu`.
    pub fn new(device: D, cpu: C) -> Self {
        CompiledSplit { device, cpu }
    }
}

impl<D: Profiler, C: Profiler> Profiler for CompiledSplit<D, C> {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        check_range(model, &ops)?;
        let support = crate::device::op_support(model);
        let Some(tail) = crate::device::compiled_tail(model, &support, ops.clone()) else {
            let cpu = self.cpu.profile(model, ops)?;
            return Ok(SegmentProfile {
                on_chip_bytes: 0,
                off_chip_bytes: 0,
                ..cpu
            });
        };
        let mut profile = self.device.profile(model, ops.start..tail.start)?;
        if !tail.is_empty() {
            profile.latency_s += self.cpu.profile(model, tail)?.latency_s;
        }
        Ok(profile)
    }
}

impl Profiler for EdgeTpuCostModel {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        self.check()
            .map_err(|reason| Error::invalid("cost model", reason))?;
        check_range(model, &ops)?;
        let prediction = self.predict(&SegmentWorkload::from_model(model, ops));
        Ok(SegmentProfile {
            latency_s: prediction.latency_s,
            on_chip_bytes: prediction.on_chip_bytes,
            off_chip_bytes: prediction.off_chip_bytes,
        })
    }
}

/// The CPU estimate as a profiler: its latency, and no parameter bytes on or off chip (a
/// CPU has no chip to cache them on).
impl Profiler for CpuCostModel {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        self.check()
            .map_err(|reason| Error::invalid("CPU cost model", reason))?;
        check_range(model, &ops)?;
        Ok(SegmentProfile {
            latency_s: self.predict_s(model, ops),
            on_chip_bytes: 0,
            off_chip_bytes: 0,
        })
    }
}

/// A profiler that remembers: each operator range is handed to the inner profiler at most
/// once, and later requests for it are answered from memory.
///
/// The cache is keyed by range only, so one `CachedProfiler` serves one model. The lock is
/// held while the inner profiler runs, so concurrent requests for the same range still
/// profile it once (and a hardware profiler is never asked for two things at a time).
/// Failures are not remembered: a failed range is tried again when asked again.
#[derive(Debug)]
pub struct CachedProfiler<P> {
    inner: P,
    cache: Mutex<HashMap<Range<usize>, SegmentProfile>>,
    calls: AtomicUsize,
}

impl<P: Profiler> CachedProfiler<P> {
    /// Wraps `inner` with an empty cache.
    pub fn new(inner: P) -> Self {
        CachedProfiler {
            inner,
            cache: Mutex::new(HashMap::new()),
            calls: AtomicUsize::new(0),
        }
    }

    /// How many times the inner profiler was asked: the number of distinct candidates
    /// profiled (plus retries of failed ones).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// The wrapped profiler.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Unwraps the inner profiler, dropping the cache.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

/// A shared profiler: several segmenters, and their caller, can ask one (a
/// [`CachedProfiler`] over a device, say, so that none profiles a range twice).
impl<P: Profiler + ?Sized> Profiler for std::sync::Arc<P> {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        (**self).profile(model, ops)
    }
}

impl<P: Profiler> Profiler for CachedProfiler<P> {
    fn profile(&self, model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
        let mut cache = self.cache.lock();
        if let Some(profile) = cache.get(&ops) {
            return Ok(*profile);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let profile = self.inner.profile(model, ops.clone())?;
        cache.insert(ops, profile);
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::figures::tests::{model, operator, tensor};
    use crate::model::{ElementType, ops};

    /// Three dense layers of 64 units.
    fn three_layers() -> Model<'static> {
        use ElementType::I8;
        let mut tensors = vec![tensor("x", I8, &[1, 64], false)];
        let mut operators = Vec::new();
        for i in 0..3 {
            tensors.push(tensor(&format!("w{i}"), I8, &[64, 64], true));
            tensors.push(tensor(&format!("h{i}"), I8, &[1, 64], false));
            let input = if i == 0 { 0 } else { 2 * i };
            operators.push(operator(
                ops::FULLY_CONNECTED,
                &[Some(input), Some(2 * i + 1)],
                &[2 * i + 2],
            ));
        }
        model(tensors, operators, &[0], &[6])
    }

    #[test]
    fn cost_model_profiles_a_segment() {
        let m = three_layers();
        let cm = EdgeTpuCostModel::usb_default();
        let one = cm.profile(&m, 0..1).expect("valid range");
        let all = cm.profile(&m, 0..3).expect("valid range");
        assert_eq!(one.on_chip_bytes, 64 * 64);
        assert_eq!(all.on_chip_bytes, 3 * 64 * 64);
        assert_eq!(all.off_chip_bytes, 0);
        assert!(all.latency_s > one.latency_s);
    }

    #[test]
    fn bad_ranges_are_errors() {
        let m = three_layers();
        let cm = EdgeTpuCostModel::usb_default();
        for range in [1..1, 2..4, 5..9] {
            assert!(
                matches!(cm.profile(&m, range.clone()), Err(Error::Invalid { .. })),
                "{range:?}"
            );
        }
        let broken = EdgeTpuCostModel {
            input_bytes_per_s: -1.0,
            ..EdgeTpuCostModel::usb_default()
        };
        assert!(broken.profile(&m, 0..1).is_err());
    }

    #[test]
    fn cpu_estimate_profiles_a_segment() {
        let m = three_layers();
        let cpu = CpuCostModel::default();
        let one = cpu.profile(&m, 0..1).expect("valid range");
        let all = cpu.profile(&m, 0..3).expect("valid range");
        assert_eq!((all.on_chip_bytes, all.off_chip_bytes), (0, 0));
        assert!(all.latency_s > one.latency_s);
        assert_eq!(all.latency_s, cpu.predict_s(&m, 0..3));
        assert!(cpu.profile(&m, 2..2).is_err());
        let broken = CpuCostModel {
            bytes_per_s: -1.0,
            ..cpu
        };
        assert!(broken.profile(&m, 0..1).is_err());
    }

    /// Counts its calls, fails on ranges starting at 2.
    struct Counting(AtomicUsize);

    impl Profiler for Counting {
        fn profile(&self, _model: &Model, ops: Range<usize>) -> Result<SegmentProfile> {
            self.0.fetch_add(1, Ordering::Relaxed);
            if ops.start == 2 {
                return Err(Error::invalid("segment range", "test failure"));
            }
            Ok(SegmentProfile {
                latency_s: ops.len() as f64,
                on_chip_bytes: ops.start as u64,
                off_chip_bytes: ops.end as u64,
            })
        }
    }

    #[test]
    fn cached_profiler_profiles_each_range_once() {
        let m = three_layers();
        let cached = CachedProfiler::new(Counting(AtomicUsize::new(0)));
        let first = cached.profile(&m, 0..2).expect("ok");
        assert_eq!(cached.profile(&m, 0..2).expect("ok"), first);
        cached.profile(&m, 1..3).expect("ok");
        cached.profile(&m, 0..2).expect("ok");
        assert_eq!(cached.calls(), 2);
        assert_eq!(cached.inner().0.load(Ordering::Relaxed), 2);
        assert_eq!(first.latency_s, 2.0);
    }

    #[test]
    fn cached_profiler_does_not_remember_failures() {
        let m = three_layers();
        let cached = CachedProfiler::new(Counting(AtomicUsize::new(0)));
        assert!(cached.profile(&m, 2..3).is_err());
        assert!(cached.profile(&m, 2..3).is_err());
        assert_eq!(cached.calls(), 2);
    }

    #[test]
    fn cached_profiler_is_shared_across_threads() {
        let m = three_layers();
        let cached = CachedProfiler::new(EdgeTpuCostModel::usb_default());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for start in 0..3 {
                        for end in start + 1..=3 {
                            cached.profile(&m, start..end).expect("valid range");
                        }
                    }
                });
            }
        });
        assert_eq!(cached.calls(), 6);
    }
}
