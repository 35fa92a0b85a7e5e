//! The Edge TPU compiler's default split: equal parameter bytes per segment.

use super::{Plan, Segmenter, check_segmentable, is_valid_cut, param_bytes};
use crate::Result;
use crate::model::Graph;

/// Splits a model so that each segment holds roughly the same parameter bytes, as
/// `edgetpu_compiler --num_segments=N` does.
///
/// Operators are walked in execution order and a segment is closed just before the operator
/// whose parameters would carry it past `total / N` bytes. The split balances bytes, not
/// latency. Deterministic; every segment gets at least one operator, and cuts never split a
/// stateful operator's variables.
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
