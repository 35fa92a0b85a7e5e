//! How close does the pipeline come to its bound on simulated Edge TPUs?
//!
//! How to read the numbers: the paper's fc model with N = 2640 (20.2 MiB of parameters,
//! far more than one Edge TPU caches) is cut into 4 segments by parameter size, and each
//! segment runs on a simulated USB Edge TPU that computes nothing (zero-filled outputs) but
//! lasts what the cost model predicts for that segment (on average: a wait that ends late
//! is made up for on the next runs, never below 0.9 × the prediction). A pipeline can at
//! best finish one item per slowest stage, so the steady-state bound is 1 / T_slowest.
//!
//! A batch of B items pushed into an empty pipeline also pays for filling and draining it:
//! the first item comes out after the sum of all stage times, each later one T_slowest after
//! the previous, so even a pipeline with free hand-offs needs ΣT + (B − 1)·T_slowest. For
//! B = 50 that caps the ratio to 1 / T_slowest at about 0.95 with these stages. Two ratios
//! are therefore printed for every batch size:
//!
//! - `raw`: measured items/s × T_slowest, what the "within 2 % of 1 / slowest stage"
//!   compares; only a long run (`batch/2000`) can reach 1 with it;
//! - `fill-corrected`: measured items/s over B / (ΣT + (B − 1)·T_slowest), the ratio to
//!   what a pipeline with zero per-item cost could do for that batch size. The gap to 1 is
//!   the pipeline's own cost: hand-offs between threads and the wait precision of the
//!   simulated stages.
//!
//! Before the pipeline runs, the bench measures `wait_until` alone (how far past its
//! deadline a simulated stage's wait ends) and a plain sleep of the same length; after each
//! direct run it prints each stage's mean latency over that run against its prediction, the
//! p99 of its runs so far, and how long it waited for input and for room per item (the
//! slowest stage should wait for neither).
//! Criterion's "thrpt" is items per second; every figure is simulated.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use multitpu::backend::{SimCompute, SimulatedEdgeTpuBackend, wait_until};
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::{Graph, paper};
use multitpu::pipeline::{Pipeline, PipelineBuilder, StageStats};
use multitpu::segment::{Segmenter, UniformByParams};

const HIDDEN: usize = 2640;
const SEGMENTS: usize = 4;
/// The paper's batch, and a run long enough for filling and draining not to matter.
const BATCHES: [usize; 2] = [50, 2000];

/// How far past its deadline `wait_until` returns, alone on this thread, for waits as long
/// as the slowest stage.
/// Also how late a plain `std::thread::sleep` of the same length ends on this thread (whose
/// timer slack `wait_until` has lowered to 1 ns): what the wait would give without its final
/// polling phase.
fn wait_precision(wait_s: f64) {
    let wait = Duration::from_secs_f64(wait_s);
    let report = |what: &str, wait_once: &dyn Fn() -> Duration| {
        let mut late: Vec<Duration> = (0..2000).map(|_| wait_once()).collect();
        late.sort_unstable();
        let mean = late.iter().sum::<Duration>() / late.len() as u32;
        let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        println!(
            "{what} of {:.1} µs: late by {:.1} µs on average, p50 {:.1} µs, p99 {:.1} µs",
            wait_s * 1e6,
            mean.as_secs_f64() * 1e6,
            at(0.5),
            at(0.99)
        );
    };
    report("simulated wait", &|| wait_until(Instant::now() + wait));
    report("plain sleep", &|| {
        let deadline = Instant::now() + wait;
        std::thread::sleep(wait);
        Instant::now() - deadline
    });
}

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

    wait_precision(slowest);

    let pipeline = PipelineBuilder::from_segments(&segments, &backend)
        .and_then(PipelineBuilder::build)
        .expect("pipeline");
    let name = pipeline.inputs()[0].name.clone();
    let input = vec![0u8; pipeline.inputs()[0].byte_size];

    let sum: f64 = predicted.iter().sum();
    for batch in BATCHES {
        let rounds = (20_000 / batch).max(1);
        let before = pipeline.stats();
        let start = Instant::now();
        for _ in 0..rounds {
            run_batch(&pipeline, &name, &input, batch);
        }
        let measured = (rounds * batch) as f64 / start.elapsed().as_secs_f64();
        let after = pipeline.stats();
        let fill_bound = batch as f64 / (sum + (batch - 1) as f64 * slowest);
        println!(
            "simulated batch {batch}: measured {measured:.1} items/s; bound {:.1} items/s, \
             raw ratio {:.3}; with fill and drain {fill_bound:.1} items/s, \
             fill-corrected ratio {:.3}",
            1.0 / slowest,
            measured * slowest,
            measured / fill_bound
        );
        for ((old, new), predicted) in before.stages.iter().zip(&after.stages).zip(&predicted) {
            let runs = (new.invokes - old.invokes).max(1) as f64;
            let per_item = |old: Duration, new: Duration| (new - old).as_secs_f64() * 1e6 / runs;
            let busy = |s: &StageStats| s.latency_mean * s.invokes as u32;
            println!(
                "  stage {}: predicted {:.1} µs, measured {:.1} µs (p99 so far {:.1} µs); waited \
                 {:.1} µs/item for input, {:.1} µs/item for room",
                new.index,
                predicted * 1e6,
                per_item(busy(old), busy(new)),
                new.latency_p99.as_secs_f64() * 1e6,
                per_item(old.waiting_for_input, new.waiting_for_input),
                per_item(old.waiting_for_room, new.waiting_for_room),
            );
        }
    }

    let mut group = c.benchmark_group("pipeline_sim");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter(|| run_batch(&pipeline, &name, &input, batch))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
