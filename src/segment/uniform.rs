//! Uniform splits that profile nothing: equal parameter bytes per segment (the Edge TPU
//! compiler's default) or equal operator counts (the paper's default for fc models).

use super::{Plan, Segmenter, check_segmentable, is_valid_cut};
use crate::Result;
use crate::model::Graph;
use crate::model::figures::param_bytes;

/// Splits a model so that each segment holds roughly the same parameter bytes, as
/// `edgetpu_compiler --num_segments=N` does.
///
/// Operators are walked in execution order and a segment is closed just before the operator
/// whose parameters would carry it past `total / N` bytes. The split balances bytes, not
/// latency. Deterministic; every segment gets at least one operator, and cuts never split a
/// stateful operator's variables.
///
/// ```
/// use multitpu::model::{Graph, paper};
/// use multitpu::segment::{Segmenter, UniformByParams};
///
/// let model = paper::fc(1000)?;
/// let plan = UniformByParams.plan(&Graph::new(&model)?, 3)?;
/// assert_eq!(plan.segments.len(), 3);
/// # Ok::<(), multitpu::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct UniformByParams;

impl Segmenter for UniformByParams {
    fn name(&self) -> &str {
        "uniform"
    }

    fn plan(&self, graph: &Graph<'_, '_>, segments: usize) -> Result<Plan> {
        check_segmentable(graph, segments)?;
        let model = graph.model();
        let op_count = graph.op_count();
        let op_bytes: Vec<u64> = (0..op_count)
            .map(|op| param_bytes(model, &(op..op + 1)))
            .collect();
        let total: u64 = param_bytes(model, &(0..op_count));
        let target = total as f64 / segments as f64;
        let valid: Vec<usize> = (1..op_count).filter(|&c| is_valid_cut(graph, c)).collect();

        let mut cuts = Vec::with_capacity(segments - 1);
        let mut filled = 0u64;
        for (op, &bytes) in op_bytes.iter().enumerate() {
            let cuts_left = segments - 1 - cuts.len();
            if cuts_left == 0 {
                break;
            }
            let is_cut_point = valid.binary_search(&op).is_ok();
            // Valid cut points from here on (this one included): cut now if waiting would
            // leave too few places for the remaining cuts.
            let places_left = valid.len() - valid.partition_point(|&c| c < op);
            let over_target = filled > 0 && (filled + bytes) as f64 > target;
            if is_cut_point && (over_target || places_left <= cuts_left) {
                cuts.push(op);
                filled = 0;
            }
            filled += bytes;
        }
        Plan::from_cuts(self.name(), graph, &cuts)
    }
}

/// Splits a model into segments of (nearly) equal operator counts, the paper's default for
/// fully connected models.
///
/// Cut `i` of `N - 1` goes to the valid cut point nearest to `i · ops / N` (the lower one on a
/// tie), among those that keep the cuts ascending and leave a valid cut point for each cut
/// still to come. With no stateful operators every point is valid and segment sizes differ
/// by at most one. Deterministic; every segment gets at least one operator.
///
/// ```
/// use multitpu::model::{Graph, paper};
/// use multitpu::segment::{Segmenter, UniformByOps};
///
/// let model = paper::fc(1000)?;
/// let plan = UniformByOps.plan(&Graph::new(&model)?, 2)?;
/// let sizes: Vec<usize> = plan.segments.iter().map(|s| s.ops.len()).collect();
/// assert!(sizes[0].abs_diff(sizes[1]) <= 1);
/// # Ok::<(), multitpu::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct UniformByOps;

impl Segmenter for UniformByOps {
    fn name(&self) -> &str {
        "uniform-ops"
    }

    fn plan(&self, graph: &Graph<'_, '_>, segments: usize) -> Result<Plan> {
        check_segmentable(graph, segments)?;
        let op_count = graph.op_count();
        let valid: Vec<usize> = (1..op_count).filter(|&c| is_valid_cut(graph, c)).collect();
        let mut cuts = Vec::with_capacity(segments - 1);
        let mut lowest = 0;
        for i in 1..segments {
            // Indices into `valid` this cut may take: after the previous cut, and early
            // enough that each of the `segments - 1 - i` later cuts still has a place.
            let highest = valid.len() - (segments - i);
            let ideal = (i * op_count) as u128;
            let distance = |c: usize| ((c * segments) as u128).abs_diff(ideal);
            let mut best = lowest;
            for index in lowest..=highest {
                if distance(valid[index]) < distance(valid[best]) {
                    best = index;
                }
            }
            cuts.push(valid[best]);
            lowest = best + 1;
        }
        Plan::from_cuts(self.name(), graph, &cuts)
    }
}
