//! What the pipeline benches share: a model cut in two halves of nearly equal MACs, and a
//! batch pushed and popped.

use std::hint::black_box;
use std::sync::Arc;

use multitpu::model::{Graph, Model};
use multitpu::pipeline::Pipeline;
use multitpu::segment::{Plan, is_valid_cut};

/// The plan that cuts `model` in two where the halves' MACs are most nearly equal, and the
/// halves' bytes.
pub fn halves(model: &Model<'_>) -> (Plan, Vec<Arc<[u8]>>) {
    let graph = Graph::new(model).expect("graph");
    let plan = (1..graph.op_count())
        .filter(|&cut| is_valid_cut(&graph, cut))
        .filter_map(|cut| Plan::from_cuts("equal-macs", &graph, &[cut]).ok())
        .min_by_key(|plan| plan.segments[0].macs.abs_diff(plan.segments[1].macs))
        .expect("a valid cut");
    let bytes = plan
        .extract(&graph)
        .expect("extract")
        .iter()
        .map(|m| Arc::from(m.to_bytes().expect("serialize")))
        .collect();
    (plan, bytes)
}

/// Pushes every input (for the pipeline input `name`), then pops as many outputs.
pub fn run_batch(pipeline: &Pipeline, name: &str, inputs: &[Vec<u8>]) {
    for input in inputs {
        pipeline.push(&[(name, input)]).expect("push");
    }
    for _ in inputs {
        black_box(pipeline.pop().expect("pop").expect("an output"));
    }
}
