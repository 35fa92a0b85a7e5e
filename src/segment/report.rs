//! Plans as text, and strategies by name, for tools and logs.

use std::fmt::Write;

use super::{LibcoralSearch, Plan, Profiled, Segmenter, UniformByOps, UniformByParams};
use crate::device::{CpuCostModel, EdgeTpuCostModel};
use crate::model::Model;
use crate::profile::CompiledSplit;
use crate::{Error, Result};

/// Names accepted by [`strategy`].
pub const STRATEGY_NAMES: &[&str] = &["uniform", "uniform-ops", "profiled", "libcoral"];

/// The strategy called `name`; the profiling ones (`profiled`, `libcoral`) profile with
/// `cost_model`.
///
/// ```
/// use multitpu::device::EdgeTpuCostModel;
/// use multitpu::segment::strategy;
///
/// let uniform = strategy("uniform", &EdgeTpuCostModel::usb_default())?;
/// assert_eq!(uniform.name(), "uniform");
/// # Ok::<(), multitpu::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Invalid`] for a name not in [`STRATEGY_NAMES`].
pub fn strategy(name: &str, cost_model: &EdgeTpuCostModel) -> Result<Box<dyn Segmenter>> {
    Ok(match name {
        "uniform" => Box::new(UniformByParams),
        "uniform-ops" => Box::new(UniformByOps),
        "profiled" => Box::new(Profiled::cost_model(cost_model.clone())),
        // Its profiles price a segment as it runs once compiled, as every plan is priced.
        "libcoral" => Box::new(LibcoralSearch::new(CompiledSplit::new(
            cost_model.clone(),
            CpuCostModel::default(),
        ))),
        other => {
            return Err(Error::invalid(
                "strategy",
                format!(
                    "unknown strategy `{other}` (known: {})",
                    STRATEGY_NAMES.join(", ")
                ),
            ));
        }
    })
}

impl Plan {
    /// One row per segment: where it runs (`edgetpu`, `edgetpu x2` for two replicas, or
    /// `cpu`), operator range, parameter bytes, MACs, bytes crossing the
    /// boundary in front of it, predicted latency (when the plan has predictions;
    /// `prediction_label` heads that column) and the tensors the segment reads and writes,
    /// by name.
    pub fn table(&self, model: &Model<'_>, prediction_label: &str) -> String {
        let names = |tensors: &[usize]| {
            tensors
                .iter()
                .map(|&t| model.tensors.get(t).map_or("?", |t| t.name.as_ref()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>3}  {:<10}  {:>11}  {:>12}  {:>14}  {:>10}  {:>22}  inputs -> outputs",
            "seg", "runs on", "ops", "param bytes", "MACs", "crossing B", prediction_label
        );
        for (i, segment) in self.segments.iter().enumerate() {
            let predicted = segment
                .predicted_latency_s
                .map_or_else(|| "-".to_string(), |s| format!("{:.3} ms", s * 1e3));
            let _ = writeln!(
                out,
                "{:>3}  {:<10}  {:>11}  {:>12}  {:>14}  {:>10}  {:>22}  [{}] -> [{}]",
                i,
                segment.runs_on(),
                format!("{}..{}", segment.ops.start, segment.ops.end),
                segment.param_bytes,
                segment.macs,
                segment.crossing_bytes,
                predicted,
                names(&segment.inputs),
                names(&segment.outputs)
            );
        }
        out
    }

    /// `plan: strategy=<name> segments=<n> bottleneck_ms=<float> candidates=<count>
    /// devices=<used> replicas=<r0,r1,..> profiler=<name>`, the one-line summary tools read
    /// (`NaN` when the plan has no predictions). `bottleneck_ms` is the period, latency over
    /// replicas; `replicas` lists the instances of each segment ([`Segment::replicas`](super::Segment::replicas)), and
    /// `devices` counts those of the Edge TPU segments.
    ///
    /// `profiler` names where the segment latencies come from, so that a predicted
    /// bottleneck is not taken for a measured one: e.g. `model-usb` or `model-pcie` for the
    /// Edge TPU cost model of that link, `cpu` for timed runs on TFLite's CPU kernels,
    /// `model-usb+cpu-model` when CPU segments were priced by the CPU estimate.
    pub fn summary_line(&self, profiler: &str) -> String {
        format!(
            "plan: strategy={} segments={} bottleneck_ms={:.6} candidates={} cpu_timed={} \
             devices={} replicas={} profiler={profiler}",
            self.strategy,
            self.segments.len(),
            self.bottleneck_s().map_or(f64::NAN, |s| s * 1e3),
            self.candidates_profiled,
            self.cpu_candidates_timed,
            self.devices(),
            self.segments
                .iter()
                .map(|s| s.replicas.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{Segment, SegmentKind};

    #[test]
    fn every_strategy_name_resolves_and_others_are_refused() {
        let cost_model = EdgeTpuCostModel::usb_default();
        for name in STRATEGY_NAMES {
            assert_eq!(strategy(name, &cost_model).unwrap().name(), *name);
        }
        assert!(matches!(
            strategy("fastest", &cost_model),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn summary_line_names_the_profiler_last() {
        let segment = |latency_s| Segment {
            ops: 0..1,
            kind: SegmentKind::EdgeTpu,
            cpu_ops: 1..1,
            replicas: 1,
            inputs: Vec::new(),
            outputs: Vec::new(),
            crossing: Vec::new(),
            crossing_bytes: 0,
            param_bytes: 0,
            macs: 0,
            predicted_latency_s: latency_s,
        };
        let mut plan = Plan {
            strategy: "profiled".to_string(),
            segments: vec![
                segment(Some(0.001)),
                segment(Some(0.005)),
                segment(Some(0.0002)),
            ],
            candidates_profiled: 7,
            cpu_candidates_timed: 2,
        };
        plan.segments[1].replicas = 2;
        plan.segments[2].kind = SegmentKind::Cpu;
        assert_eq!(
            plan.summary_line("model-usb"),
            "plan: strategy=profiled segments=3 bottleneck_ms=2.500000 candidates=7 cpu_timed=2 \
             devices=3 replicas=1,2,1 profiler=model-usb"
        );
        plan.segments[1].predicted_latency_s = None;
        assert_eq!(
            plan.summary_line("cpu"),
            "plan: strategy=profiled segments=3 bottleneck_ms=NaN candidates=7 cpu_timed=2 \
             devices=3 replicas=1,2,1 profiler=cpu"
        );
    }
}
