//! How close does the pipeline come to its bound on simulated Edge TPUs?
//!
//! How to read the numbers: the paper's fc model with N = 2640 (about 26 MiB of parameters,
//! far more than one Edge TPU caches) is cut into 4 segments by parameter size, and each
//! segment runs on a simulated USB Edge TPU that computes nothing (zero-filled outputs) but
//! lasts exactly what the cost model predicts for that segment. A pipeline can at best
//! finish one item per slowest stage, so the bound is 1 / (slowest predicted stage).
//!
//! - `batch/50`: 50 inputs pushed, 50 outputs popped per iteration (the paper's batch). It
//!   includes filling and draining the pipeline, so it stays a little under the bound.
//! - `batch/500`: the same with 500 inputs, close to the steady state.
//!
//! Criterion's "thrpt" is items per second. Before measuring, the bench prints the bound,
//! the single-TPU prediction of the whole model (what the pipeline is compared with in the
//! paper), and a direct measurement of each batch size with its ratio to the bound. A ratio
//! near 1 means the pipeline's own costs (hand-offs, wake-ups, the sleep precision of the
//! simulated stages) are negligible at these stage times; every figure is simulated.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multitpu::backend::{SimCompute, SimulatedEdgeTpuBackend};
use multitpu::model::{Graph, paper};
use multitpu::pipeline::{Backend, Pipeline, PipelineBuilder};
use multitpu::profile::EdgeTpuCostModel;
use multitpu::segment::{Segmenter, UniformByParams};

const HIDDEN: usize = 2640;
const SEGMENTS: usize = 4;

fn run_batch(pipeline: &Pipeline, name: &str, input: &[u8], batch: usize) {
    for _ in 0..batch {
        pipeline.push(&[(name, input)]).expect("push");
    }
    for _ in 0..batch {
        black_box(pipeline.pop().expect("pop").expect("an output"));
    }
}

fn bench(c: &mut Criterion) {
    let model = paper::fc(HIDDEN).expect("paper fc model");
    let graph = Graph::new(&model).expect("graph");
    let plan = UniformByParams.plan(&graph, SEGMENTS).expect("plan");
    let segments: Vec<Arc<[u8]>> = plan
        .extract(&graph)
        .expect("extract")
        .iter()
        .map(|m| Arc::from(m.to_bytes().expect("serialize")))
        .collect();
    let backend = SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
    let predicted: Vec<f64> = segments
        .iter()
        .map(|s| backend.predict(s).expect("prediction").latency_s)
        .collect();
    let slowest = predicted.iter().copied().fold(0.0, f64::max);
    let single = backend
        .predict(&model.to_bytes().expect("serialize"))
        .expect("prediction")
        .latency_s;
    println!(
        "simulated: fc N={HIDDEN}, {SEGMENTS} USB Edge TPUs, stages {:?} ms",
        predicted
            .iter()
            .map(|s| (s * 1e6).round() / 1e3)
            .collect::<Vec<_>>()
    );
    println!(
        "simulated bound: {:.1} items/s; one Edge TPU: {:.1} items/s (bound {:.1}x)",
        1.0 / slowest,
        1.0 / single,
        single / slowest
    );

    let mut builder = PipelineBuilder::new();
    for (i, segment) in segments.iter().enumerate() {
        builder = builder.stage(backend.prepare(Arc::clone(segment), i).expect("stage"));
    }
    let pipeline = builder.build().expect("pipeline");
    let name = pipeline.inputs()[0].name.clone();
    let input = vec![0u8; pipeline.inputs()[0].byte_size];

    for batch in [50usize, 500] {
        let rounds = 20_000 / batch;
        let start = Instant::now();
        for _ in 0..rounds {
            run_batch(&pipeline, &name, &input, batch);
        }
        let measured = (rounds * batch) as f64 / start.elapsed().as_secs_f64();
        println!(
            "simulated batch {batch}: measured {measured:.1} items/s, bound {:.1} items/s, \
             ratio {:.3}",
            1.0 / slowest,
            measured * slowest
        );
    }

    let mut group = c.benchmark_group("pipeline_sim");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for batch in [50usize, 500] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter(|| run_batch(&pipeline, &name, &input, batch))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
