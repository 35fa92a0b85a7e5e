//! What the pipeline costs per item, with stages that do almost nothing.
//!
//! How to read the numbers: every stage copies 1 KiB, which takes tens of nanoseconds, so
//! nearly all the time measured is the pipeline's own work: copying the inputs in at `push`,
//! handing the item from thread to thread through the queues (a wake-up of a blocked thread
//! is the big cost, tens of microseconds on a VM; the queues poll up to 200 µs before
//! blocking to avoid it), and returning the frame to the pool. `loop/N` runs the same N stages one after the other on the calling thread: the
//! floor. For a pipeline of N stages, (time per item of `pipeline/N` − `loop/N`) / N is the
//! overhead per item per stage. Real segments run for milliseconds on an Edge TPU, so an
//! overhead of a few microseconds per stage is what to check for; a pipeline only pays for
//! itself when stages take much longer than this. On a machine with fewer cores than stages
//! the threads also compete for CPU, which inflates the pipeline figures: on a shared 2-core
//! machine, compare with a baseline run at the same time, never with figures from another
//! day.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multitpu::backend::Stage;
use multitpu::pipeline::{Pipeline, PipelineBuilder};
use multitpu::tensor::TensorSpec;

const SIZE: usize = 1024;

/// Copies its 1 KiB input to its 1 KiB output.
struct Copy {
    inputs: [TensorSpec; 1],
    outputs: [TensorSpec; 1],
}

impl Copy {
    fn new(input: &str, output: &str) -> Self {
        Copy {
            inputs: [TensorSpec::bytes(input, SIZE)],
            outputs: [TensorSpec::bytes(output, SIZE)],
        }
    }
}

impl Stage for Copy {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> multitpu::Result<()> {
        outputs[0].copy_from_slice(inputs[0]);
        Ok(())
    }
    fn describe(&self) -> String {
        "copy 1 KiB".to_string()
    }
}

fn name(i: usize, stages: usize) -> String {
    match i {
        0 => "x".to_string(),
        i if i == stages => "y".to_string(),
        i => format!("t{i}"),
    }
}

fn copies(stages: usize) -> Vec<Copy> {
    (0..stages)
        .map(|i| Copy::new(&name(i, stages), &name(i + 1, stages)))
        .collect()
}

fn pipeline(stages: usize) -> Pipeline {
    let mut builder = PipelineBuilder::new().output_capacity(Some(2 * stages));
    for stage in copies(stages) {
        builder = builder.stage(Box::new(stage));
    }
    builder.build().expect("valid pipeline")
}

/// Pushes `items` items, keeping `in_flight` of them in the pipeline.
fn run_pipeline(pipeline: &Pipeline, items: u64, in_flight: u64, input: &[u8]) -> Duration {
    let started = Instant::now();
    let mut popped = 0;
    for pushed in 0..items {
        pipeline.push(&[("x", input)]).expect("push");
        if pushed + 1 >= in_flight {
            black_box(pipeline.pop().expect("pop").expect("an output"));
            popped += 1;
        }
    }
    while popped < items {
        black_box(pipeline.pop().expect("pop").expect("an output"));
        popped += 1;
    }
    started.elapsed()
}

/// The same stages called one after the other, with the same buffers reused.
fn run_loop(stages: &mut [Copy], items: u64, input: &[u8]) -> Duration {
    let mut buffers = vec![vec![0u8; SIZE]; stages.len() + 1];
    let started = Instant::now();
    for _ in 0..items {
        buffers[0].copy_from_slice(input);
        for (i, stage) in stages.iter_mut().enumerate() {
            let (done, rest) = buffers.split_at_mut(i + 1);
            stage
                .run(&[&done[i]], &mut [&mut rest[0]])
                .expect("copy stage");
        }
        black_box(&buffers[stages.len()]);
    }
    started.elapsed()
}

fn overhead(c: &mut Criterion) {
    let input = vec![1u8; SIZE];
    let mut group = c.benchmark_group("per_item");
    group.throughput(Throughput::Elements(1));
    for stages in [1usize, 2, 4] {
        let mut plain = copies(stages);
        group.bench_with_input(BenchmarkId::new("loop", stages), &stages, |b, _| {
            b.iter_custom(|iters| run_loop(&mut plain, iters, &input))
        });
        let pipe = pipeline(stages);
        let in_flight = 2 * stages as u64;
        group.bench_with_input(BenchmarkId::new("pipeline", stages), &stages, |b, _| {
            b.iter_custom(|iters| run_pipeline(&pipe, iters, in_flight, &input))
        });
        let stats = pipe.stats();
        for stage in &stats.stages {
            eprintln!(
                "pipeline/{stages} stage {}: {} runs, mean {:?}, p99 {:?}, waiting for input {:?}, for room {:?}",
                stage.index,
                stage.invokes,
                stage.latency_mean,
                stage.latency_p99,
                stage.waiting_for_input,
                stage.waiting_for_room
            );
        }
    }
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
