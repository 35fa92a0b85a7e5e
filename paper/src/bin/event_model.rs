//! The event-level pipeline model (`PipelineTiming`) against real pipelines of simulated Edge
//! TPUs: how well the reproduction's batch times stand for what a `Pipeline` does.
//!
//! ```text
//! cargo run --release -p multitpu-paper --bin event_model
//! ```
//!
//! For each case (a paper model, a strategy, a device count) it plans the model, predicts the
//! batch's time per item from the segments' predicted latencies, then runs a real `Pipeline`
//! of simulated USB Edge TPUs over the same segments, up to five times, and prints the best
//! run beside the prediction. A simulated stage never runs faster than predicted, so other
//! processes on the machine can only add time: the best run is the one to compare. Every
//! figure is simulated; none is asserted, since a loaded machine only makes runs slower.

use std::error::Error;
use std::sync::Arc;

use multitpu::backend::{SimCompute, SimulatedEdgeTpuBackend};
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::Graph;
use multitpu::pipeline::PipelineTiming;
use multitpu_paper::calibration::Family;
use multitpu_paper::reproduce::{plan_for, time_batch};

fn main() -> Result<(), Box<dyn Error>> {
    let cm = EdgeTpuCostModel::usb_default();
    let backend = SimulatedEdgeTpuBackend::new(cm.clone(), SimCompute::Skip);
    // Stages of 1 ms and more: a simulated stage keeps its predicted pace only while the
    // machine leaves it a core, and sub-millisecond stages lose several per cent to other
    // processes' load (docs/pipeline.md; the `pipeline_sim` bench measures that regime).
    let cases = [
        (Family::Fc, 2020, "layers", 2, 50),
        (Family::Fc, 2620, "uniform", 3, 50),
        (Family::Conv, 142, "uniform", 2, 100),
        (Family::Conv, 72, "profiled", 3, 100),
        (Family::Conv, 42, "uniform-ops", 4, 100),
    ];
    println!("event model against pipelines of simulated USB Edge TPUs (simulated)");
    for (family, size, strategy, devices, batch) in cases {
        let model = family.model(size)?;
        let graph = Graph::new(&model)?;
        let Some(plan) = plan_for(family, &graph, strategy, devices, &cm)? else {
            continue;
        };
        let segments = plan
            .extract(&graph)?
            .iter()
            .map(|m| Ok(Arc::from(m.to_bytes()?)))
            .collect::<multitpu::Result<Vec<Arc<[u8]>>>>()?;
        let latencies = segments
            .iter()
            .map(|s| Ok(backend.predict(s)?.latency_s))
            .collect::<multitpu::Result<Vec<f64>>>()?;
        // At least 0.2 s of simulated time, so that a late wake-up weighs little.
        let slowest = latencies.iter().copied().fold(0.0, f64::max);
        let items = batch.max((0.2 / slowest).ceil() as usize);
        let predicted = PipelineTiming::new(latencies).per_item_s(items)?;
        let mut measured = f64::INFINITY;
        for _ in 0..5 {
            measured = measured.min(time_batch(&backend, &segments, items)?.per_item_s);
        }
        println!(
            "{family} {size} {strategy} x{devices}, {items} items: best of 5 runs {:.4} ms per \
             item, event model {:.4} ms ({:+.2} %, simulated)",
            measured * 1e3,
            predicted * 1e3,
            (measured - predicted) / predicted * 100.0
        );
    }
    Ok(())
}
