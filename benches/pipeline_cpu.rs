//! Does a 2-stage pipeline of TFLite CPU interpreters beat one interpreter on a 2-core machine?
//!
//! How to read the numbers: every benchmark runs the same batch of 16 inputs through the
//! paper's conv model (F = 32: five 3×3 convolutions over 64×64, 154.5 M MACs per input)
//! and reports the time per batch and, as "thrpt", items per second (higher is better):
//!
//! - `one_interpreter/1_thread`: one interpreter, one kernel thread: the baseline.
//! - `one_interpreter/2_threads`: one interpreter whose kernels use both cores (TFLite's
//!   own intra-op parallelism).
//! - `pipeline/2_stages_1_thread`: the model cut in two at the cut whose halves have the
//!   most nearly equal MACs, each half on its own interpreter and pipeline thread: both cores
//!   work on different inputs at once (inter-op parallelism).
//!
//! On two idle cores the pipeline can approach 2× the 1-thread baseline, minus the imbalance
//! between the halves (printed at the start) and the hand-off cost per item; compare it with
//! `2_threads` to see which kind of parallelism pays on this model. The machine is shared,
//! so other load shows up as noise in all three.
//!
//! Needs `MULTITPU_TFLITE_LIB`; without it the bench prints why and measures nothing.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multitpu::backend::{CpuBackend, Interpreter, InterpreterOptions, Runtime};
use multitpu::model::builder::SplitMix64;
use multitpu::model::paper;
use multitpu::pipeline::PipelineBuilder;
use multitpu::verify::random_tensor;

const BATCH: usize = 16;
const FILTERS: usize = 32;

/// The whole model and its two halves, cut where the MACs are most nearly equal.
fn model() -> (Vec<u8>, Vec<Arc<[u8]>>) {
    let model = paper::conv(FILTERS).expect("paper conv model");
    let (plan, halves) = common::halves(&model);
    let (a, b) = (plan.segments[0].macs, plan.segments[1].macs);
    println!(
        "conv F={FILTERS}: cut at op {} of {}, MACs {a} + {b} ({:.1} % apart)",
        plan.segments[1].ops.start,
        model.operators.len(),
        100.0 * a.abs_diff(b) as f64 / a.max(b) as f64
    );
    (model.to_bytes().expect("serialize"), halves)
}

fn bench(c: &mut Criterion) {
    let runtime = match Runtime::load() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pipeline_cpu: no TFLite runtime ({e}); set MULTITPU_TFLITE_LIB");
            return;
        }
    };
    let (whole, halves) = model();
    let mut group = c.benchmark_group("pipeline_cpu");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));

    let mut inputs = Vec::new();
    for threads in [1, 2] {
        let options = InterpreterOptions::default().with_threads(threads);
        let mut interpreter =
            Interpreter::new(&runtime, whole.clone(), &options).expect("interpreter");
        if inputs.is_empty() {
            let mut rng = SplitMix64::new(7);
            inputs = (0..BATCH)
                .map(|_| random_tensor(&interpreter.inputs()[0], &mut rng).expect("random input"))
                .collect();
        }
        let label = if threads == 1 {
            "1_thread"
        } else {
            "2_threads"
        };
        group.bench_function(format!("one_interpreter/{label}"), |b| {
            b.iter(|| {
                for input in &inputs {
                    interpreter.set_input(0, input).expect("input");
                    interpreter.invoke().expect("invoke");
                    black_box(interpreter.output(0).expect("output"));
                }
            })
        });
    }

    let backend = CpuBackend::new(runtime, 1, false);
    let pipeline = PipelineBuilder::from_segments(&halves, &backend)
        .and_then(PipelineBuilder::build)
        .expect("pipeline");
    let name = pipeline.inputs()[0].name.clone();
    group.bench_function("pipeline/2_stages_1_thread", |b| {
        b.iter(|| common::run_batch(&pipeline, &name, &inputs))
    });
    group.finish();
    for stage in pipeline.stats().stages {
        println!(
            "stage {}: mean {:.3} ms over {} invokes",
            stage.index,
            stage.latency_mean.as_secs_f64() * 1e3,
            stage.invokes
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
