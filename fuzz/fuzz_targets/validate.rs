//! Validation, of whole models and of segments:
//!
//! - `validate` ends in `Ok` or a typed error on anything the reader accepts, never a panic
//!   (overflowing shapes, NaN scales, out-of-range indices);
//! - a model that validates still validates after a round trip through the writer;
//! - every segment of a valid model, at any cut that does not split a state, is extracted
//!   and validates: cutting never turns a valid model into an invalid segment (extraction
//!   trusts its graph's model and does not validate the segment).
#![no_main]

use libfuzzer_sys::fuzz_target;
use multitpu::model::{Graph, Model, extract};
use multitpu::segment::is_valid_cut;

/// Cuts tried per model at most: evenly spread over the operators.
const MAX_CUTS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    if model.validate().is_err() {
        return;
    }
    let bytes = model.to_bytes().expect("a valid model writes");
    Model::from_bytes(&bytes)
        .expect("the writer's output reads back")
        .validate()
        .expect("a valid model is still valid after a round trip");
    let graph = Graph::new(&model).expect("a valid model has a dataflow graph");
    let ops = graph.op_count();
    let step = ops.div_ceil(MAX_CUTS).max(1);
    for cut in (1..ops).step_by(step) {
        if !is_valid_cut(&graph, cut) {
            continue;
        }
        for range in [0..cut, cut..ops] {
            let checked = extract(&graph, range.clone()).and_then(|segment| segment.validate());
            if let Err(error) = checked {
                panic!("segment {range:?} of a valid model: {error}");
            }
        }
    }
});
