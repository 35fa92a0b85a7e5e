//! An adaptive pipeline losing one of its Edge TPUs mid-run: its throughput before the loss,
//! after it, and that of the best plan for the devices left, measured in the same run.
//!
//! ```text
//! eval "$(scripts/emulate)"
//! export MULTITPU_EMULATED_EDGETPUS='usb:3@compute=skip,usb:1@vanish-after=300@compute=skip'
//! cargo run --release --example failover -- [MODEL] [--items N] [--window W]
//! ```
//!
//! MODEL (default `conv:742`) is a `.tflite` file, `fc:N` or `conv:F` (the paper's models).
//! The pipeline is planned with the profiled planner (one segment per device, cost model of
//! a USB Edge TPU) for every attached device, its segments compiled (`edgetpu_compiler`:
//! `MULTITPU_EDGETPU_COMPILER` or `PATH`), and N items (default 1000) pushed, at most W
//! (default 8) ahead of those popped. When a device fails, the pipeline plans again for the
//! devices left and runs the unfinished items again; the example checks that every item
//! came out once, in order. Then it runs the same items through a pipeline planned from the
//! start for the devices left, as the baseline.
//!
//! Every figure is of the Edge TPUs attached; on the emulated ones (as above: their paths
//! say `emulated`, and so does every line printed) an invoke lasts what the cost model
//! predicts, so the figures are the emulation's.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use multitpu::adapt::{AdaptivePipeline, Devices, ReplanReason};
use multitpu::backend::{Backend, EdgeTpuBackend};
use multitpu::deploy::EdgeTpuCompiler;
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::paper;
use multitpu::segment::{Profiled, Segmenter};

/// Command line.
#[derive(Parser)]
#[command(
    about = "An adaptive pipeline losing an Edge TPU mid-run, against the best plan for the devices left"
)]
struct Args {
    /// The model: a `.tflite` file, `fc:N` or `conv:F`.
    #[arg(default_value = "conv:742")]
    model: String,
    /// Items to run.
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// Most items pushed ahead of those popped.
    #[arg(long, default_value_t = 8)]
    window: usize,
}

/// Pop times of a run, and what came out.
struct Run {
    /// When each item came out, from the first push.
    popped_at: Vec<Duration>,
    /// Sequence numbers in the order they came out.
    seqs: Vec<u64>,
}

impl Run {
    /// Items per second between the pops of items `from` and `to`.
    fn rate(&self, from: usize, to: usize) -> f64 {
        let span = self.popped_at[to] - self.popped_at[from];
        (to - from) as f64 / span.as_secs_f64()
    }
}

fn planner() -> Box<dyn Segmenter + Send + Sync> {
    Box::new(Profiled::cost_model(EdgeTpuCostModel::usb_default()).with_exact_devices())
}

/// Pushes `items` items, at most `window` ahead, and records when each comes out.
fn run(
    pipeline: &mut AdaptivePipeline,
    items: usize,
    window: usize,
) -> Result<Run, Box<dyn Error>> {
    let spec = pipeline.pipeline()?.inputs()[0].clone();
    let data = vec![0u8; spec.byte_size];
    let started = Instant::now();
    let mut run = Run {
        popped_at: Vec::with_capacity(items),
        seqs: Vec::with_capacity(items),
    };
    let mut pushed = 0;
    while run.seqs.len() < items {
        while pushed < items && pushed - run.seqs.len() < window {
            pipeline.push(&[(&spec.name, &data)])?;
            pushed += 1;
        }
        if pushed == items {
            pipeline.close()?;
        }
        let output = pipeline.pop()?.ok_or("the pipeline ended early")?;
        run.popped_at.push(started.elapsed());
        run.seqs.push(output.seq);
    }
    Ok(run)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match failover(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn failover(args: &Args) -> Result<(), Box<dyn Error>> {
    let model = paper::load(&args.model)?;
    let edgetpu = EdgeTpuBackend::load()?;
    let attached = edgetpu.devices().to_vec();
    let backend: Arc<dyn Backend> = Arc::new(edgetpu);
    let compiler = EdgeTpuCompiler::find()?;
    let emulated = attached.iter().any(|d| d.path.contains("emulated"));
    let mark = if emulated { "emulated: " } else { "" };
    for (i, device) in attached.iter().enumerate() {
        println!("{mark}device {i}: {}", device.path);
    }
    let devices = |indices: Vec<usize>| Devices {
        backend: Arc::clone(&backend),
        indices,
        compiler: Some(compiler.clone()),
    };

    let mut adaptive = AdaptivePipeline::new(
        model.clone(),
        planner(),
        devices((0..attached.len()).collect()),
    )?;
    let planned = adaptive.plan().clone();
    let adapted = run(&mut adaptive, args.items, args.window)?;
    if adapted.seqs != (0..args.items as u64).collect::<Vec<_>>() {
        return Err("items came out lost, twice or out of order".into());
    }
    let Some(replan) = adaptive.replans().first().cloned() else {
        return Err(
            "no device failed: give one `vanish-after` or `fail-after` (see the docs)".into(),
        );
    };
    let ReplanReason::DeviceLost { device, message } = &replan.reason else {
        return Err("the first change of plan was not a lost device".into());
    };
    println!(
        "{mark}plan on {} devices: bottleneck {:.3} ms predicted",
        planned.devices(),
        planned.bottleneck_s().unwrap_or(f64::NAN) * 1e3
    );
    println!(
        "{mark}device {device} lost after {} items pushed: {message}",
        replan.pushed
    );
    println!(
        "{mark}replanned for {} devices: bottleneck {:.3} ms predicted; {} items in flight ran again",
        replan.devices.1,
        replan.bottleneck_s.1.unwrap_or(f64::NAN) * 1e3,
        replan.rerun
    );
    let left = adaptive.devices();
    drop(adaptive);

    // The baseline: the best plan for the devices left, from the start.
    let mut best = AdaptivePipeline::new(model, planner(), devices(left))?;
    let baseline = run(&mut best, args.items, args.window)?;
    if !best.replans().is_empty() {
        return Err("a device failed during the baseline".into());
    }

    // Steady rates: before the loss (after the first tenth), and after it (from a window past
    // the replan to the end), against the baseline's steady rate.
    let lost_at = (replan.pushed as usize).min(args.items - 1);
    let warm = args.items / 10;
    let before = adapted.rate(warm, lost_at.saturating_sub(args.window).max(warm + 1));
    let recovered_from = (lost_at + 2 * args.window).min(args.items - 2);
    let after = adapted.rate(recovered_from, args.items - 1);
    let baseline_rate = baseline.rate(warm, args.items - 1);
    println!("{mark}before the loss: {before:.1} items/s");
    println!(
        "{mark}after the loss: {after:.1} items/s, {:.3} of the best plan for the devices left ({baseline_rate:.1} items/s, same run)",
        after / baseline_rate
    );
    println!("{mark}failover: {} items, 0 lost, in order", args.items);
    Ok(())
}
