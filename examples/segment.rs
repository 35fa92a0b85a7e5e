//! Cut a `.tflite` model into pipeline segments and check them.
//!
//! ```text
//! cargo run --release --example segment -- MODEL (--segments N | --devices N)
//!     [--strategy uniform|uniform-ops|profiled|libcoral] [--profiler model|cpu|edgetpu]
//!     [--link usb|pcie] [--out DIR] [--compile] [--verify K] [--in-process] [--timeout SECONDS]
//! ```
//!
//! Strategies: `uniform` (equal parameter bytes, as `edgetpu_compiler --num_segments`),
//! `uniform-ops` (equal operator counts), `profiled` (the exact min-bottleneck plan under the
//! profiler's figures) and `libcoral` (a re-implementation of libcoral's profiling search,
//! for comparison). `--segments N` asks for N segments: the first, second and fourth cut
//! the model into exactly N; `profiled` then gives each of N Edge TPUs one segment, as the
//! paper's pipelines do. `--devices N`, for `profiled` only, is a budget of Edge TPUs instead:
//! it uses at most N, fewer when more would shorten the bottleneck by less than 2 %, and
//! replicates a segment over spare devices when that helps most. Either way `profiled` runs
//! what the Edge TPU cannot (custom operators, float operators) as CPU segments, which take
//! no device and come on top of the N. Latencies come from the Edge TPU cost model
//! (`--profiler model`, the default) of a USB device, or of a PCIe one with `--link pcie`;
//! from timed runs on TFLite's CPU kernels (`--profiler cpu`, median of 10 runs per
//! candidate, needs the TFLite library; `profiled` then has no floor to prune with and may
//! time many candidates); or from every candidate compiled and timed on an Edge TPU
//! (`--profiler edgetpu`; the emulated one of `scripts/emulate` where none is attached).
//!
//! Prints one row per segment (where it runs: `edgetpu`, `edgetpu xR` for R replicas, or
//! `cpu`; operator range, parameter bytes, MACs, predicted latency, input and output tensors),
//! then `plan: strategy=<name> segments=<n> bottleneck_ms=<float> candidates=<count>
//! cpu_timed=<count> devices=<used> replicas=<r0,r1,..> profiler=<model-usb|model-pcie|cpu>`
//! (`candidates`: device segments the strategy had compiled and timed; `cpu_timed`: CPU
//! segments it timed on the host; `profiler`: whether the
//! bottleneck is the cost model's prediction or timed on the CPU, `+cpu-model` when CPU
//! segments were priced by the CPU estimate; `replicas` lists the instances of each
//! segment). It writes `<stem>_segment_<i>_of_<n>.tflite` into DIR (default: next to the
//! model; CPU segments end in `_cpu`, replicated ones in `_x<R>`) beside the plan manifest
//! `<stem>.plan`, which says how each segment runs (`pipeline <stem>.plan` runs them as
//! planned). With `--compile`, the Edge TPU segments are compiled with `edgetpu_compiler`
//! first (files ending in `_edgetpu.tflite`; `pipeline DIR/<stem>.plan --backend edgetpu`
//! runs them on the devices). With `--verify K` it runs K
//! random inputs through the whole model and through the chained segments on the TFLite CPU
//! runtime, comparing every output byte for byte. The last line is then
//! `verify: <k>/<K> identical`; the exit status is non-zero on any difference.
//!
//! With `--profiler cpu`, `profiled` plans a pipeline of CPU stages: N is then a number of
//! stages (exactly N with `--segments`, at most N with `--devices`), every segment a CPU
//! segment.
//!
//! The check runs in a child process (`multitpu::isolate`: this program started again, with
//! at most 4 GiB of memory and `--timeout` seconds, default 120), so that a model that
//! crashes TFLite ends in `verification failed: the isolated child died ...` naming the
//! segment file, not in the death of this program. `--in-process` runs it here instead.

#[path = "common/count.rs"]
mod count;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{CommandFactory, Parser, ValueEnum};
use count::{Count, profiled};
use multitpu::backend::{DeviceSelector, Runtime};
use multitpu::deploy::EdgeTpuCompiler;
use multitpu::device::{CpuCostModel, EdgeTpuCostModel, Link};
use multitpu::isolate::{self, Isolation, NamedModel};
use multitpu::model::{Graph, Model};
use multitpu::profile::{CachedProfiler, CpuProfiler, EdgeTpuProfiler, Profiler};
use multitpu::segment::{self, LibcoralSearch, Profiled, Segmenter};
use multitpu::verify::verify_chain;

/// Where segment latencies come from, by name.
#[derive(Clone, Copy, ValueEnum)]
enum ProfilerName {
    /// The Edge TPU cost model of a device on `--link`.
    Model,
    /// Timed runs on TFLite's CPU kernels (median of 10 runs per candidate).
    Cpu,
    /// Every candidate compiled and timed on an Edge TPU (the emulated one where none is
    /// attached), CPU segments timed on the CPU.
    Edgetpu,
}

/// The link of the Edge TPU the cost model prices.
#[derive(Clone, Copy, ValueEnum)]
enum LinkName {
    /// USB 3.
    Usb,
    /// PCIe.
    Pcie,
}

/// Cut a `.tflite` model into pipeline segments and check them.
#[derive(Parser)]
#[command(name = "segment")]
struct Args {
    /// The `.tflite` model.
    model: PathBuf,
    /// Exactly N segments (`profiled`: one segment on each of N Edge TPUs, CPU segments on
    /// top).
    #[arg(long, value_name = "N")]
    segments: Option<usize>,
    /// `profiled` only: a budget of at most N Edge TPUs, replicas where they help most.
    #[arg(long, value_name = "N")]
    devices: Option<usize>,
    /// How to choose the cuts.
    #[arg(long, default_value = "uniform",
          value_parser = PossibleValuesParser::new(segment::STRATEGY_NAMES))]
    strategy: String,
    /// Where segment latencies come from.
    #[arg(long, value_enum, default_value_t = ProfilerName::Model)]
    profiler: ProfilerName,
    /// The link of the device the cost model prices.
    #[arg(long, value_enum, default_value_t = LinkName::Usb)]
    link: LinkName,
    /// Where to write the segments [default: next to the model].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Compiles the Edge TPU segments with `edgetpu_compiler` (`MULTITPU_EDGETPU_COMPILER`
    /// or `PATH`) before writing them; the manifest then runs on `pipeline --backend edgetpu`.
    #[arg(long)]
    compile: bool,
    /// Runs K random inputs through the whole model and the chained segments, compared
    /// byte for byte.
    #[arg(long, value_name = "K", default_value_t = 0)]
    verify: usize,
    /// Runs the check in this process, not in an isolated child.
    #[arg(long)]
    in_process: bool,
    /// Time limit of the isolated check.
    #[arg(long = "timeout", value_name = "SECONDS",
          default_value_t = Isolation::DEFAULT_TIMEOUT.as_secs_f64(), value_parser = seconds)]
    timeout_s: f64,
}

impl Args {
    /// `--segments` or `--devices`; a usage error unless exactly one is given, and for
    /// `--devices` with a strategy that cannot plan for a budget.
    fn count(&self) -> Count {
        Count::from_options(self.segments, self.devices, &self.strategy)
            .unwrap_or_else(|(kind, message)| Args::command().error(kind, message).exit())
    }
}

/// A positive, finite number of seconds.
fn seconds(text: &str) -> Result<f64, String> {
    text.parse()
        .ok()
        .filter(|t: &f64| t.is_finite() && *t > 0.0)
        .ok_or_else(|| "a positive number of seconds".to_string())
}

/// Where segment latencies come from.
enum Source {
    /// The Edge TPU cost model.
    Model(EdgeTpuCostModel),
    /// Timed runs on TFLite's CPU kernels.
    Cpu(CpuProfiler),
    /// Every candidate compiled by `edgetpu_compiler` and timed on an Edge TPU (the first
    /// device; the emulated one of `scripts/emulate` where no device is attached), CPU
    /// segments timed on the CPU.
    EdgeTpu(Arc<CachedProfiler<EdgeTpuProfiler>>, CpuProfiler),
}

impl Source {
    /// `model` (the cost model of a device on `link`), `cpu` or `edgetpu`.
    fn new(profiler: ProfilerName, link: LinkName) -> Result<Source, Box<dyn Error>> {
        Ok(match (profiler, link) {
            (ProfilerName::Model, LinkName::Usb) => Source::Model(EdgeTpuCostModel::usb_default()),
            (ProfilerName::Model, LinkName::Pcie) => {
                Source::Model(EdgeTpuCostModel::pcie_default())
            }
            (ProfilerName::Cpu, _) => Source::Cpu(CpuProfiler::new(Runtime::load()?)),
            (ProfilerName::Edgetpu, _) => Source::EdgeTpu(
                Arc::new(CachedProfiler::new(EdgeTpuProfiler::load(
                    DeviceSelector::default(),
                )?)),
                CpuProfiler::new(Runtime::load()?),
            ),
        })
    }

    /// The name the `plan:` line gives: `model-usb`, `model-pcie` or `cpu`.
    fn name(&self) -> &'static str {
        match self {
            Source::Model(cost_model) => match cost_model.link {
                Link::Usb3 => "model-usb",
                Link::Pcie => "model-pcie",
            },
            Source::Cpu(_) => "cpu",
            Source::EdgeTpu(..) => "edgetpu",
        }
    }

    fn profiler(&self) -> &dyn Profiler {
        match self {
            Source::Model(cost_model) => cost_model,
            Source::Cpu(cpu) => cpu,
            Source::EdgeTpu(edgetpu, _) => edgetpu.as_ref(),
        }
    }
}

fn segmenter(
    name: &str,
    source: &Source,
    count: Count,
) -> Result<Box<dyn Segmenter>, Box<dyn Error>> {
    match (name, source) {
        ("profiled", Source::Model(cost_model)) => {
            Ok(profiled(Profiled::cost_model(cost_model.clone()), count))
        }
        (_, Source::Model(cost_model)) => Ok(segment::strategy(name, cost_model)?),
        // Timed runs have no known lower bound to prune the profiled search with.
        ("profiled", Source::Cpu(cpu)) => Ok(profiled(Profiled::cpu(cpu.clone()), count)),
        ("libcoral", Source::Cpu(cpu)) => Ok(Box::new(LibcoralSearch::new(cpu.clone()))),
        // Compiled segments are timed with the operators the compiler leaves to the CPU in
        // them, as libcoral's tool times them. The cost model bounds the device's times from
        // below only where the device is never faster than the model (the emulated one, by
        // construction): the search is then exact, on a real device near it.
        ("profiled", Source::EdgeTpu(edgetpu, cpu)) => Ok(profiled(
            Profiled::new(Arc::clone(edgetpu))
                .with_floor(EdgeTpuCostModel::usb_default())
                .with_cpu_segments(cpu.clone()),
            count,
        )),
        ("libcoral", Source::EdgeTpu(edgetpu, _)) => {
            Ok(Box::new(LibcoralSearch::new(Arc::clone(edgetpu))))
        }
        (_, Source::EdgeTpu(..)) => Ok(segment::strategy(name, &EdgeTpuCostModel::usb_default())?),
        (_, Source::Cpu(_)) => Ok(segment::strategy(name, &EdgeTpuCostModel::usb_default())?),
    }
}

fn run(args: &Args, count: Count) -> Result<bool, Box<dyn Error>> {
    let bytes = std::fs::read(&args.model).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let model = Model::from_bytes(&bytes)?;
    let graph = Graph::new(&model)?;
    let source = Source::new(args.profiler, args.link)?;
    let planning = std::time::Instant::now();
    let n = count.n();
    let mut plan = segmenter(&args.strategy, &source, count)?.plan(&graph, n)?;
    let planning = planning.elapsed();
    if plan.bottleneck_s().is_none() {
        // What runs on the CPU: priced by the CPU estimate beside the cost model, by the
        // timed runs themselves with `--profiler cpu`.
        let estimate = CpuCostModel::default();
        let cpu: &dyn Profiler = match &source {
            Source::Model(_) => &estimate,
            Source::Cpu(timed) | Source::EdgeTpu(_, timed) => timed,
        };
        plan.with_predictions(&model, source.profiler(), cpu)?;
    }
    let label = match source {
        Source::Model(_) => "predicted (model)",
        Source::Cpu(_) => "measured (cpu)",
        Source::EdgeTpu(..) => "measured (edgetpu)",
    };
    println!(
        "{}",
        plan.table().with_names(&model).with_prediction_label(label)
    );
    // What a cost-model plan runs on the CPU is priced by the CPU estimate: say so.
    let profiler = match &source {
        Source::Model(_) if plan.runs_on_cpu() => format!("{}+cpu-model", source.name()),
        _ => source.name().to_string(),
    };
    println!("{}", plan.summary_line(&profiler));
    println!("planning: {:.2} s of wall time", planning.as_secs_f64());

    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => args
            .model
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let stem = args
        .model
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let mut segments = plan.segment_models(&graph)?;
    if args.compile {
        segments = segments.compile(&EdgeTpuCompiler::find()?)?;
    }
    let written = segments.write(&out_dir, stem)?;
    for path in written.segments.iter().chain([&written.manifest]) {
        println!("wrote {}", path.display());
    }

    if args.verify == 0 {
        return Ok(true);
    }
    let verified = Runtime::load().and_then(|runtime| {
        if args.in_process {
            let segments = plan
                .extract(&graph)?
                .iter()
                .map(Model::to_bytes)
                .collect::<Result<Vec<_>, _>>()?;
            return verify_chain(&runtime, &bytes, segments, args.verify, 0x5eed);
        }
        let whole = NamedModel::new(args.model.display().to_string(), bytes.clone());
        let segments = written
            .segments
            .iter()
            .map(NamedModel::read)
            .collect::<Result<Vec<_>, _>>()?;
        Isolation::new()
            .with_timeout(Duration::from_secs_f64(args.timeout_s))
            .verify_chain(&runtime, &whole, &segments, args.verify, 0x5eed)
    });
    let identical = match verified {
        Ok(report) => {
            if let Some(difference) = &report.first_difference {
                println!("first difference: {difference}");
            }
            report.identical
        }
        Err(error) => {
            println!("verification failed: {error}");
            0
        }
    };
    println!("verify: {identical}/{} identical", args.verify);
    Ok(identical == args.verify)
}

fn main() -> ExitCode {
    // In the child process of an isolated check, this runs the check and exits.
    isolate::run_if_child();
    let args = Args::parse();
    let count = args.count();
    match run(&args, count) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
