//! Cut a model into segments and run them as a pipeline, one stage per segment.
//!
//! ```text
//! cargo run --release --example pipeline -- MODEL (--segments N | --devices N) [--strategy S]
//!     [--backend cpu|sim-usb|sim-pcie|edgetpu] [--batch B] [--threads T]
//!     [--compute skip|cpu] [--devices D0,D1,...] [--reference MODEL] [--seed S]
//!     [--in-process | --isolated] [--timeout SECONDS]
//! ```
//!
//! Strategies: `profiled` (default), `uniform`, `uniform-ops`, `libcoral`; the profiling ones
//! use the Edge TPU cost model of the chosen link, except `profiled` on the `cpu` backend,
//! which plans CPU stages with the CPU cost estimate. `--segments N` asks for N segments:
//! the uniform strategies and `libcoral` cut exactly N, `profiled` gives each of N devices
//! (stages on the `cpu` backend) one segment, as the paper's pipelines do. `--devices N`,
//! for `profiled` only, is a budget instead: at most N devices, replicas of a segment where
//! that helps most. Either way `profiled` puts what the Edge TPU cannot run into CPU
//! segments, on the host, which take no device.
//!
//! MODEL is a `.tflite` file, `fc:N` or `conv:F` (the paper's models, built in memory), a
//! plan manifest (`<stem>.plan`, as `segment --out DIR` writes it: each segment runs as the
//! manifest says), or a comma-separated list of segment files, used as they are, in order,
//! each run as its name says (`_cpu`, `_x<R>`). For `--backend edgetpu`, MODEL is always a
//! manifest or such a list, of segments compiled for the Edge TPU (`segment --compile`).
//! With segments given, `--reference MODEL` names the uncompiled whole model: every output
//! is then checked against it on the CPU.
//!
//! Backends:
//! - `cpu`: TFLite CPU interpreters, `--threads` kernel threads each (default 1). Every
//!   output is checked against the whole model run on one interpreter.
//! - `sim-usb`, `sim-pcie`: simulated Edge TPUs. Each stage lasts what the cost model
//!   predicts for its segment on one device. `--compute skip` (default) zero-fills the
//!   outputs; `--compute cpu` computes them on the CPU (and checks them), and a stage whose
//!   CPU run is slower than the prediction takes the CPU's time. Every figure that comes
//!   from the simulation is marked "simulated".
//! - `edgetpu`: Coral devices through libedgetpu (or whatever `MULTITPU_EDGETPU_LIB` names,
//!   such as the emulated Edge TPU of `scripts/emulate`, whose devices say so in their names);
//!   stage i on device i, or on the devices `--devices` names (Coral's names: `usb:0`,
//!   `pci:1`, `:2`, ...; a plain number is a budget, never a name). Prints libedgetpu's
//!   version first.
//!
//! Before a backend runs TFLite on the CPU in this process (`cpu`, and `sim-*` with
//! `--compute cpu`), the whole model and every segment are loaded and invoked
//! `Isolation::MIN_CHECK_TRIALS` times in a child process (`multitpu::isolate`: this program
//! started again, with at most 4 GiB of memory and `--timeout` seconds, default 120), so that
//! a model that crashes TFLite ends in an error naming it (`error: the isolated child died
//! ...`) instead of killing this program. `--in-process` skips that check. With
//! `--isolated` (`cpu` backend), every stage's interpreter runs in a worker process of its
//! own for the whole run (`IsolatedBackend`): a crash then fails its stage, never this
//! program, whatever the input.
//!
//! Runs B seeded random inputs (default 50), prints per-stage statistics and the throughput.
//! The last line is `pipeline: <B> items, <items/s> items/s, <identical|not checked>`
//! (or `<k> of <B> differ`, with a non-zero exit status), followed by `, simulated` on the
//! `sim-usb` and `sim-pcie` backends.

#[path = "common/count.rs"]
mod count;

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::builder::{PossibleValuesParser, RangedU64ValueParser};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use count::{Count, profiled};
use multitpu::backend::{
    Backend, CpuBackend, DeviceSelector, EdgeTpuBackend, EdgeTpuRuntime, Runtime, SimCompute,
    SimulatedEdgeTpuBackend, Stage,
};
use multitpu::deploy::{MANIFEST_EXTENSION, SegmentKind, SegmentModels};
use multitpu::device::{CpuCostModel, EdgeTpuCostModel};
use multitpu::isolate::{self, IsolatedBackend, Isolation, NamedModel};
use multitpu::model::builder::SplitMix64;
use multitpu::model::{Graph, Model, paper};
use multitpu::pipeline::{Output, Pipeline, PipelineStats};
use multitpu::segment::{self, Plan, Profiled, Segmenter};
use multitpu::verify::random_tensor;

/// Where the stages run.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// TFLite CPU interpreters; every output is checked against the whole model.
    Cpu,
    /// Simulated USB Edge TPUs: each stage lasts what the cost model predicts.
    SimUsb,
    /// Simulated PCIe Edge TPUs.
    SimPcie,
    /// Coral devices through libedgetpu (or `MULTITPU_EDGETPU_LIB`); MODEL lists compiled
    /// segment files.
    #[value(name = "edgetpu")]
    EdgeTpu,
}

/// What simulated stages do with their outputs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Compute {
    /// Zero-fill them.
    Skip,
    /// Compute them on the CPU (and check them); a stage slower on the CPU than predicted
    /// takes the CPU's time.
    Cpu,
}

/// Cut a model into segments and run them as a pipeline, one stage per segment.
#[derive(Parser)]
#[command(name = "pipeline")]
struct Args {
    /// A `.tflite` file, `fc:N` or `conv:F` (the paper's models, built in memory), or a
    /// comma-separated list of segment files, used as they are, in order.
    model: String,
    /// Exactly N segments (`profiled`: one segment on each of N devices, CPU segments on
    /// top); with segment files, checked against their number.
    #[arg(long, value_name = "N")]
    segments: Option<usize>,
    /// How to choose the cuts.
    #[arg(long, default_value = "profiled",
          value_parser = PossibleValuesParser::new(segment::STRATEGY_NAMES))]
    strategy: String,
    /// Where the stages run.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
    /// Seeded random inputs to run.
    #[arg(long, value_name = "B", default_value_t = 50, value_parser = at_least_one())]
    batch: usize,
    /// Kernel threads of each TFLite interpreter.
    #[arg(long, value_name = "T", default_value_t = 1, value_parser = at_least_one())]
    threads: usize,
    /// What simulated stages do with their outputs.
    #[arg(long, value_enum, default_value_t = Compute::Skip)]
    compute: Compute,
    /// N: `profiled` only, a budget of at most N devices (stages on the `cpu` backend),
    /// replicas where they help most. D0,D1,...: the Coral devices of `--backend edgetpu`'s
    /// stages, in order, by Coral's names (`usb:0`, `pci:1`, `:2`, ...) [default: stage i on
    /// device i].
    #[arg(long, value_name = "N|D0,D1,...", value_parser = devices)]
    devices: Option<Devices>,
    /// With segment files, the uncompiled whole model: every output is checked against it
    /// on the CPU.
    #[arg(long, value_name = "MODEL")]
    reference: Option<String>,
    /// Seed of the random inputs.
    #[arg(long, value_name = "S", default_value_t = 0x5eed)]
    seed: u64,
    /// Skips the isolated check of the models before TFLite runs them in this process.
    #[arg(long)]
    in_process: bool,
    /// Runs every stage's interpreter in a worker process of its own (`cpu` backend).
    #[arg(long, conflicts_with = "in_process")]
    isolated: bool,
    /// Time limit of the isolated check and of an isolated stage's worker.
    #[arg(long = "timeout", value_name = "SECONDS",
          default_value_t = Isolation::DEFAULT_TIMEOUT.as_secs_f64(), value_parser = seconds)]
    timeout_s: f64,
}

/// What `--devices` gives: how many devices to plan for, or which ones to run on.
#[derive(Clone)]
enum Devices {
    /// A budget of at most this many devices (`profiled` only).
    Budget(usize),
    /// The devices of `--backend edgetpu`'s stages, in order.
    Named(Vec<DeviceSelector>),
}

/// A number (a budget), else Coral device names separated by commas.
fn devices(text: &str) -> Result<Devices, String> {
    if let Ok(n) = text.parse() {
        return Ok(Devices::Budget(n));
    }
    text.split(',')
        .map(|s| s.parse().map_err(|e: multitpu::Error| e.to_string()))
        .collect::<Result<_, _>>()
        .map(Devices::Named)
}

impl Args {
    /// Whether MODEL lists segment files, used as given, instead of a model to cut.
    fn segment_files(&self) -> bool {
        self.model.contains(',')
            || self.model.ends_with(&format!(".{MANIFEST_EXTENSION}"))
            || self.backend == BackendKind::EdgeTpu
    }

    /// The devices `--devices` names, if it names any.
    fn selectors(&self) -> Option<&[DeviceSelector]> {
        match &self.devices {
            Some(Devices::Named(selectors)) => Some(selectors),
            _ => None,
        }
    }
}

/// Counts of at least 1.
fn at_least_one() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

/// A positive, finite number of seconds.
fn seconds(text: &str) -> Result<f64, String> {
    text.parse()
        .ok()
        .filter(|t: &f64| t.is_finite() && *t > 0.0)
        .ok_or_else(|| "a positive number of seconds".to_string())
}

/// The arguments and what they ask of the planner (nothing with segment files), with the
/// usage errors that no single option shows.
fn parse_args() -> (Args, Option<Count>) {
    let args = Args::parse();
    let usage = |kind, message: String| Args::command().error(kind, message).exit();
    let conflict = |message: String| usage(ErrorKind::ArgumentConflict, message);
    if args.isolated && args.backend != BackendKind::Cpu {
        conflict(
            "--isolated runs the cpu backend's stages in workers: not with another backend"
                .to_string(),
        );
    }
    if args.selectors().is_some() && args.backend != BackendKind::EdgeTpu {
        conflict(
            "--devices D0,D1,... names the Coral devices of --backend edgetpu's stages; \
             --devices N plans for a budget of N devices"
                .to_string(),
        );
    }
    let budget = match args.devices {
        Some(Devices::Budget(n)) => Some(n),
        _ => None,
    };
    if args.segment_files() {
        if budget.is_some() {
            conflict(
                "--devices N is a budget to cut MODEL for; segment files are cut already \
                 (--segments N checks their number)"
                    .to_string(),
            );
        }
        return (args, None);
    }
    let count = Count::from_options(args.segments, budget, &args.strategy)
        .unwrap_or_else(|(kind, message)| Args::command().error(kind, message).exit());
    (args, Some(count))
}

/// What one stage is predicted to take.
struct StagePrediction {
    /// Seconds per inference on one instance.
    latency_s: f64,
    /// Instances taking items in turn.
    replicas: usize,
    /// Whether the figure is the simulated device's (not the plan's CPU estimate).
    simulated: bool,
}

/// Per stage of `plan`, from its predictions: seconds per inference on one instance.
fn stage_predictions(plan: &Plan) -> Option<Vec<StagePrediction>> {
    plan.segments
        .iter()
        .map(|segment| {
            Some(StagePrediction {
                latency_s: segment.predicted_latency_s?,
                replicas: segment.replicas,
                simulated: segment.kind == SegmentKind::EdgeTpu,
            })
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn print_stats(stats: &PipelineStats, depths: &[usize], predictions: Option<&[StagePrediction]>) {
    println!(
        "{:>5}  {:>7}  {:>9}  {:>9}  {:>9}  {:>12}  {:>12}  {:>5}  device",
        "stage", "invokes", "mean ms", "p50 ms", "p99 ms", "wait in ms", "wait out ms", "queue"
    );
    for (stage, depth) in stats.stages.iter().zip(depths) {
        println!(
            "{:>5}  {:>7}  {:>9}  {:>9}  {:>9}  {:>12}  {:>12}  {:>5}  {}",
            stage.index,
            stage.invokes,
            ms(stage.latency_mean),
            ms(stage.latency_p50),
            ms(stage.latency_p99),
            ms(stage.waiting_for_input),
            ms(stage.waiting_for_room),
            depth,
            stage.instances.join(" | ")
        );
        let predicted = predictions
            .and_then(|p| p.get(stage.index))
            .filter(|p| p.simulated)
            .map(|p| p.latency_s);
        if let Some(predicted) = predicted {
            // A simulated stage never runs faster than predicted; a much slower one was held
            // up by the CPU (computing outputs, or too few cores for the stage threads).
            if stage.latency_mean.as_secs_f64() > predicted * 1.5 + 1e-4 {
                println!(
                    "       stage {} took {} ms against {:.3} ms predicted (simulated): \
                     limited by this machine's CPU, not by the simulated device",
                    stage.index,
                    ms(stage.latency_mean),
                    predicted * 1e3
                );
            }
        }
    }
    println!("queue = items waiting in front of the stage when the last input was pushed");
}

/// Runs every input through the whole model on one interpreter (`reference`, a stage of
/// the CPU backend, or of the isolated one with `--isolated`) and compares each output with
/// the pipeline's; returns how many items differ and the interpreter's items/s.
fn check(
    reference: &mut dyn Stage,
    inputs: &[Vec<(String, Vec<u8>)>],
    outputs: &[Output],
) -> Result<(usize, f64), Box<dyn Error>> {
    let mut results: Vec<Vec<u8>> = reference
        .outputs()
        .iter()
        .map(|spec| vec![0; spec.byte_size])
        .collect();
    let mut differ = 0;
    let mut busy = Duration::ZERO;
    for (item, output) in inputs.iter().zip(outputs) {
        let ordered: Vec<&[u8]> = reference
            .inputs()
            .iter()
            .map(|spec| {
                item.iter()
                    .find(|(name, _)| *name == spec.name)
                    .map(|(_, data)| data.as_slice())
                    .ok_or_else(|| format!("no input `{}` for the reference", spec.name))
            })
            .collect::<Result<_, _>>()?;
        let mut buffers: Vec<&mut [u8]> = results.iter_mut().map(Vec::as_mut_slice).collect();
        let start = Instant::now();
        reference.run(&ordered, &mut buffers)?;
        busy += start.elapsed();
        let same = reference
            .outputs()
            .iter()
            .zip(&results)
            .all(|(spec, data)| output.get(&spec.name) == Some(data.as_slice()));
        if !same {
            differ += 1;
        }
    }
    Ok((differ, inputs.len() as f64 / busy.as_secs_f64()))
}

fn run(args: &Args, count: Option<Count>) -> Result<bool, Box<dyn Error>> {
    let cost_model = match args.backend {
        BackendKind::SimPcie => EdgeTpuCostModel::pcie_default(),
        _ => EdgeTpuCostModel::usb_default(),
    };
    let simulated = matches!(args.backend, BackendKind::SimUsb | BackendKind::SimPcie);

    // The backend.
    let needs_runtime = match args.backend {
        BackendKind::Cpu | BackendKind::EdgeTpu => true,
        BackendKind::SimUsb | BackendKind::SimPcie => args.compute == Compute::Cpu,
    };
    let runtime = needs_runtime.then(Runtime::load).transpose()?;
    let computes = match args.backend {
        BackendKind::Cpu => true,
        BackendKind::SimUsb | BackendKind::SimPcie => args.compute == Compute::Cpu,
        // Checked when there is a reference model (`--reference`).
        BackendKind::EdgeTpu => true,
    };
    let backend: Box<dyn Backend> = match (args.backend, &runtime) {
        (BackendKind::Cpu, Some(runtime)) if args.isolated => Box::new(
            IsolatedBackend::new(
                runtime,
                Isolation::new().with_timeout(Duration::from_secs_f64(args.timeout_s)),
            )
            .with_threads(args.threads),
        ),
        (BackendKind::Cpu, Some(runtime)) => {
            Box::new(CpuBackend::new(runtime.clone(), args.threads, false))
        }
        (BackendKind::SimUsb | BackendKind::SimPcie, runtime) => {
            let compute = match (args.compute, runtime) {
                (Compute::Cpu, Some(runtime)) => SimCompute::Cpu {
                    runtime: runtime.clone(),
                    threads: args.threads,
                },
                _ => SimCompute::Skip,
            };
            Box::new(SimulatedEdgeTpuBackend::new(cost_model.clone(), compute))
        }
        (BackendKind::EdgeTpu, Some(runtime)) => {
            let edgetpu = EdgeTpuRuntime::load()?;
            println!("libedgetpu: {}", edgetpu.version());
            Box::new(match args.selectors() {
                Some(selectors) => {
                    EdgeTpuBackend::with_devices(runtime.clone(), edgetpu, selectors)?
                }
                None => EdgeTpuBackend::new(runtime.clone(), edgetpu)?,
            })
        }
        (_, None) => return Err("the TFLite runtime did not load".into()),
    };

    // Stages that run TFLite on the CPU run it in this process: first make sure, in a child
    // process, that TFLite survives loading and invoking every model.
    let check_isolated = |models: &[NamedModel]| -> Result<(), Box<dyn Error>> {
        let in_process_tflite = match args.backend {
            BackendKind::Cpu => true,
            BackendKind::SimUsb | BackendKind::SimPcie => args.compute == Compute::Cpu,
            BackendKind::EdgeTpu => false,
        };
        let gate = in_process_tflite && !args.in_process && !args.isolated;
        if let (true, Some(runtime)) = (gate, &runtime) {
            Isolation::new()
                .with_timeout(Duration::from_secs_f64(args.timeout_s))
                .check(runtime, models, Isolation::MIN_CHECK_TRIALS, args.seed)?;
            println!(
                "isolated check: {} models loaded and invoked {} times each in a child process",
                models.len(),
                Isolation::MIN_CHECK_TRIALS
            );
        }
        Ok(())
    };

    // The pipeline, stage i on device i: of precompiled segment files, or of the plan's
    // segments of the whole model. On simulated devices the plan's predictions are the
    // stages' own, for the plan table, the stage statistics and the bound.
    let (whole, pipeline, predictions, devices_used) = match count {
        None => {
            // A plan manifest says how each segment runs; bare files say it in their names.
            let segments = if args.model.ends_with(&format!(".{MANIFEST_EXTENSION}")) {
                SegmentModels::read(Path::new(&args.model))?
            } else {
                SegmentModels::from_files(&args.model.split(',').collect::<Vec<_>>())?
            };
            let count = segments.segments().len();
            if args.segments.is_some_and(|n| n != count) {
                return Err(format!("--segments differs from the {count} segments given").into());
            }
            let plural = if count == 1 { "" } else { "s" };
            println!("{count} segment{plural} of {}, used as given", args.model);
            let reference = match &args.reference {
                Some(path) => {
                    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
                    println!("reference: {path}, the whole model on the CPU");
                    Some(bytes)
                }
                None => None,
            };
            let models: Vec<NamedModel> = segments
                .segments()
                .iter()
                .enumerate()
                .map(|(i, segment)| {
                    let name = segment
                        .file()
                        .map_or_else(|| format!("segment {i}"), |f| f.display().to_string());
                    NamedModel::new(name, segment.bytes().to_vec())
                })
                .collect();
            check_isolated(&models)?;
            let pipeline = Pipeline::from_models(&segments, &*backend).map_err(|e| {
                if matches!(args.backend, BackendKind::EdgeTpu) {
                    format!(
                        "{e} (with --backend edgetpu, MODEL is a plan manifest or segment files \
                         compiled for the Edge TPU: segment --compile writes both)"
                    )
                } else {
                    e.to_string()
                }
            })?;
            let devices = segments.devices();
            (reference, pipeline, None, devices)
        }
        Some(count) => {
            if args.reference.is_some() {
                return Err(
                    "--reference is for segment files: MODEL itself is the reference".into(),
                );
            }
            let bytes = paper::load(&args.model)?;
            let model = Model::from_bytes(&bytes)?;
            let graph = Graph::new(&model)?;
            // Stages on the CPU backend are CPU stages: plan them with the CPU's figures, not
            // the Edge TPU's.
            let segmenter: Box<dyn Segmenter> = match (args.backend, args.strategy.as_str()) {
                (BackendKind::Cpu, "profiled") => {
                    profiled(Profiled::cpu(CpuCostModel::default()), count)
                }
                (_, "profiled") => profiled(Profiled::cost_model(cost_model.clone()), count),
                _ => segment::strategy(&args.strategy, &cost_model)?,
            };
            let n = count.n();
            let mut plan = Plan::new(&graph, n, &*segmenter)?;
            println!(
                "{}: {} operators, {} segments ({} strategy)",
                args.model,
                model.operators.len(),
                plan.segments.len(),
                plan.strategy
            );
            // On simulated devices, each segment as its stage runs it: the device program as
            // the simulated device prices it, what runs on the CPU by the CPU estimate.
            let predictions = if simulated {
                plan.with_predictions(&model, &cost_model, &CpuCostModel::default())?;
                stage_predictions(&plan)
            } else {
                None
            };
            let parts = plan.extract(&graph)?;
            let n = parts.len();
            let mut models = vec![NamedModel::new(args.model.clone(), bytes.clone())];
            for (i, part) in parts.iter().enumerate() {
                let name = format!("{} segment {i} of {n}", args.model);
                models.push(NamedModel::new(name, part.to_bytes()?));
            }
            check_isolated(&models)?;
            let label = match &predictions {
                Some(_) => "predicted (simulated)",
                None if plan.segments.iter().all(|s| s.kind == SegmentKind::Cpu) => "CPU model",
                None => "Edge TPU model",
            };
            println!(
                "{}",
                plan.table().with_names(&model).with_prediction_label(label)
            );
            let pipeline = Pipeline::from_models(&plan.segment_models(&graph)?, &*backend)?;
            drop(graph);
            drop(model);
            let devices = plan.devices();
            (Some(bytes), pipeline, predictions, devices)
        }
    };

    // Seeded random inputs.
    let mut rng = SplitMix64::new(args.seed);
    let inputs: Vec<Vec<(String, Vec<u8>)>> = (0..args.batch)
        .map(|_| {
            pipeline
                .inputs()
                .iter()
                .map(|spec| Ok((spec.name.clone(), random_tensor(spec, &mut rng)?)))
                .collect::<Result<_, multitpu::Error>>()
        })
        .collect::<Result<_, _>>()?;

    let start = Instant::now();
    for item in &inputs {
        let named: Vec<(&str, &[u8])> = item
            .iter()
            .map(|(name, data)| (name.as_str(), data.as_slice()))
            .collect();
        pipeline.push(&named)?;
    }
    let depths: Vec<usize> = pipeline
        .stats()
        .stages
        .iter()
        .map(|s| s.queue_depth)
        .collect();
    pipeline.close()?;
    let outputs = (&pipeline)
        .into_iter()
        .collect::<Result<Vec<Output>, _>>()?;
    let elapsed = start.elapsed();
    let items_per_s = args.batch as f64 / elapsed.as_secs_f64();

    print_stats(&pipeline.stats(), &depths, predictions.as_deref());
    let marker = if simulated { " (simulated)" } else { "" };
    println!(
        "{} items in {} ms: {items_per_s:.1} items/s on the pipeline{marker}",
        args.batch,
        ms(elapsed)
    );

    if let (Some(predictions), Some(whole)) = (&predictions, &whole) {
        let sim = SimulatedEdgeTpuBackend::new(cost_model.clone(), SimCompute::Skip);
        let slowest = predictions
            .iter()
            .map(|p| p.latency_s / p.replicas.max(1) as f64)
            .fold(0.0, f64::max);
        let single = sim.predict(whole)?;
        println!(
            "bound (simulated): 1 / slowest predicted stage ({:.3} ms) = {:.1} items/s; \
             measured/bound = {:.2}",
            slowest * 1e3,
            1.0 / slowest,
            items_per_s * slowest
        );
        // A batch pushed into an empty pipeline also fills and drains it: the first item
        // crosses every stage, each later one follows one slowest stage behind.
        let filled = args.batch as f64
            / (predictions.iter().map(|p| p.latency_s).sum::<f64>()
                + (args.batch as f64 - 1.0).max(0.0) * slowest);
        println!(
            "bound with filling and draining {} items (simulated): {filled:.1} items/s; \
             measured/that = {:.2}",
            args.batch,
            items_per_s / filled
        );
        println!(
            "whole model on one Edge TPU (simulated): {:.3} ms = {:.1} items/s \
             ({:.2} MiB of parameters streamed per inference)",
            single.latency_s * 1e3,
            1.0 / single.latency_s,
            single.off_chip_bytes as f64 / (1024.0 * 1024.0)
        );
        println!(
            "speedup over one Edge TPU (simulated): bound {:.1}x, measured {:.1}x with {} devices",
            single.latency_s / slowest,
            items_per_s * single.latency_s,
            devices_used
        );
    }

    let verdict = match (&whole, computes, &runtime) {
        (Some(whole), true, Some(runtime)) => {
            let reference: Box<dyn Backend> = if args.isolated {
                Box::new(
                    IsolatedBackend::new(
                        runtime,
                        Isolation::new().with_timeout(Duration::from_secs_f64(args.timeout_s)),
                    )
                    .with_threads(args.threads),
                )
            } else {
                Box::new(CpuBackend::new(runtime.clone(), args.threads, false))
            };
            let mut reference = reference.prepare_cpu(Arc::from(whole.as_slice()))?;
            let (differ, single) = check(&mut *reference, &inputs, &outputs)?;
            if args.backend == BackendKind::Cpu {
                println!(
                    "whole model on one interpreter ({} thread{}): {single:.1} items/s",
                    args.threads,
                    if args.threads == 1 { "" } else { "s" }
                );
            }
            if differ == 0 {
                "identical".to_string()
            } else {
                format!("{differ} of {} differ", args.batch)
            }
        }
        _ => "not checked".to_string(),
    };
    // The throughput of simulated devices is the simulation's, not a device's.
    let simulated_marker = if simulated { ", simulated" } else { "" };
    println!(
        "pipeline: {} items, {items_per_s:.1} items/s, {verdict}{simulated_marker}",
        args.batch
    );
    Ok(verdict == "identical" || verdict == "not checked")
}

fn main() -> ExitCode {
    // In the child process of an isolated check, this runs the check and exits.
    isolate::run_if_child();
    let (args, count) = parse_args();
    match run(&args, count) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
