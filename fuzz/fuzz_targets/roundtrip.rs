//! The graph, the planners, extraction and the writer on whatever the reader accepts:
//!
//! - the writer takes every model the reader gives, and its output reads back and writes
//!   again to the same bytes;
//! - the graph is built of any model or refuses it, and every strategy plans it, without
//!   panicking;
//! - every segment of a plan of a model that validates as trusted is cut, writes, reads
//!   back, validates and writes again to the same bytes.
//!
//! The input's length picks the strategy and the number of segments, so that a seed model
//! is planned several ways as the fuzzer grows and shrinks it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multitpu::model::validate::Validation;
use multitpu::model::{Graph, Model};
use multitpu::device::EdgeTpuCostModel;
use multitpu::segment::{self, STRATEGY_NAMES};

/// Writes `model`, reads the bytes back and checks that writing again gives the same bytes.
fn round_trip(model: &Model<'_>) -> Option<Vec<u8>> {
    // The writer may refuse (e.g. a file over 2 GiB); it must not panic.
    let bytes = model.to_bytes().ok()?;
    let again = Model::from_bytes(&bytes).expect("the writer's output reads back");
    assert_eq!(
        again.to_bytes().expect("a re-read model writes"),
        bytes,
        "writing is stable"
    );
    Some(bytes)
}

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    round_trip(&model);
    // Trusted: planning and cutting are what this target exercises, on every model that
    // trusted validation takes (strict validation takes fewer).
    let Ok(graph) = Graph::with_validation(&model, &Validation::trusted()) else {
        return;
    };
    let ops = graph.op_count();
    if ops == 0 {
        return;
    }
    let segments = 1 + data.len() % ops.min(4);
    let name = STRATEGY_NAMES[(data.len() / 4) % STRATEGY_NAMES.len()];
    let cost_model = EdgeTpuCostModel::usb_default();
    let Ok(strategy) = segment::strategy(name, &cost_model) else {
        return;
    };
    let Ok(plan) = strategy.plan(&graph, segments) else {
        return;
    };
    // Only a valid model has a graph; each of its segments is valid too (as trusted, what the
    // graph was built under).
    let parts = plan.extract(&graph).expect("a plan's segments are cut");
    assert_eq!(parts.len(), plan.segments.len());
    for part in &parts {
        let bytes = round_trip(part).expect("a segment writes");
        Model::from_bytes(&bytes)
            .expect("read")
            .validate_with(&Validation::trusted())
            .expect("a segment extract returned validates after a round trip");
    }
});
