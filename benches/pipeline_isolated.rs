//! What do isolated stages cost? The same segments through a pipeline of in-process CPU
//! interpreters and through one whose interpreters each run in a worker process
//! (`IsolatedBackend`: tensors through shared memory, a byte and a line over pipes per item).
//!
//! How to read the numbers: each benchmark pushes a batch of 16 inputs and pops the 16
//! outputs, and reports the time per batch and, as "thrpt", items per second (higher is
//! better). Two models, cut in two at the cut whose halves have the most nearly equal MACs:
//!
//! - `conv32/*`: the paper's conv model, F = 32 (stages of a few milliseconds each);
//! - `fc500/*`: the paper's fc model, N = 500 (stages of well under 0.1 ms, where the
//!   per-item hand-off to a worker dominates).
//!
//! For each, `in_process` is the baseline and `isolated` the same stages in workers, run
//! alternately in one process on the same inputs; their ratio is the cost of isolation (the
//! stage means are printed at the end). The machine is shared, so other load shows up as
//! noise in both.
//!
//! Needs `MULTITPU_TFLITE_LIB`; without it the bench prints why and measures nothing. This
//! program is its own worker: `main` starts with `isolate::run_if_child`.

use std::sync::Arc;
use std::time::Duration;

mod common;

use criterion::{Criterion, Throughput, criterion_group};
use multitpu::backend::{Backend, CpuBackend, Runtime};
use multitpu::isolate::{self, IsolatedBackend, Isolation};
use multitpu::model::builder::SplitMix64;
use multitpu::model::paper;
use multitpu::pipeline::{Pipeline, PipelineBuilder};
use multitpu::verify::random_tensor;

const BATCH: usize = 16;

fn pipeline(segments: &[Arc<[u8]>], backend: &dyn Backend) -> Pipeline {
    PipelineBuilder::from_segments(segments, backend)
        .and_then(PipelineBuilder::build)
        .expect("pipeline")
}

fn bench(c: &mut Criterion) {
    let runtime = match Runtime::load() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pipeline_isolated: no TFLite runtime ({e}); set MULTITPU_TFLITE_LIB");
            return;
        }
    };
    let models = [
        ("conv32", paper::conv(32).expect("conv")),
        ("fc500", paper::fc(500).expect("fc")),
    ];
    for (label, model) in models {
        let (_, segments) = common::halves(&model);
        let in_process = pipeline(&segments, &CpuBackend::new(runtime.clone(), 1, false));
        let isolated = pipeline(&segments, &IsolatedBackend::new(&runtime, Isolation::new()));
        let spec = in_process.inputs()[0].clone();
        let mut rng = SplitMix64::new(7);
        let inputs: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| random_tensor(&spec, &mut rng).expect("random input"))
            .collect();
        let mut group = c.benchmark_group(label);
        group
            .throughput(Throughput::Elements(BATCH as u64))
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        group.bench_function("in_process", |b| {
            b.iter(|| common::run_batch(&in_process, &spec.name, &inputs))
        });
        group.bench_function("isolated", |b| {
            b.iter(|| common::run_batch(&isolated, &spec.name, &inputs))
        });
        group.finish();
        for (kind, pipeline) in [("in_process", &in_process), ("isolated", &isolated)] {
            for stage in pipeline.stats().stages {
                println!(
                    "{label} {kind} stage {}: mean {:.3} ms over {} invokes ({})",
                    stage.index,
                    stage.latency_mean.as_secs_f64() * 1e3,
                    stage.invokes,
                    stage.instances.join(", ")
                );
            }
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    isolate::run_if_child(); // in a worker: serves its stage, then exits
    benches();
    Criterion::default().configure_from_args().final_summary();
}
