//! Cut a `.tflite` model into pipeline segments and check them.
//!
//! ```text
//! cargo run --release --example segment -- MODEL --segments N
//!     [--strategy uniform|uniform-ops|profiled|libcoral] [--profiler model|cpu] [--link usb|pcie]
//!     [--out DIR] [--verify K] [--in-process] [--timeout SECONDS]
//! ```
//!
//! Strategies: `uniform` (equal parameter bytes, as `edgetpu_compiler --num_segments`),
//! `uniform-ops` (equal operator counts), `profiled` (the exact min-bottleneck plan under the
//! profiler's figures) and `libcoral` (a re-implementation of libcoral's profiling search,
//! for comparison). The first, second and fourth cut the model into exactly N segments; for
//! `profiled`, N is a budget of Edge TPUs: it uses at most N, fewer when more would shorten the
//! bottleneck by less than 2 %, replicates a segment over spare devices when that helps most,
//! and runs what the Edge TPU cannot (custom operators, float operators) as CPU segments,
//! which take no device. Latencies come from the Edge TPU cost model (`--profiler model`, the
//! default) of a USB device, or of a PCIe one with `--link pcie`; or from timed runs on
//! TFLite's CPU kernels (`--profiler cpu`, median of 10 runs per candidate, needs the TFLite
//! library; `profiled` then has no floor to prune with and may time many candidates).
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
//! model; CPU segments end in `_cpu`, not to be compiled, and replicated ones in `_x<R>`, so
//! that a pipeline built from the files runs them as planned), and with `--verify K` runs K
//! random inputs through the whole model and through the chained segments on the TFLite CPU
//! runtime, comparing every output byte for byte. The last line is then
//! `verify: <k>/<K> identical`; the exit status is non-zero on any difference.
//!
//! With `--profiler cpu`, `profiled` plans a pipeline of CPU stages: N is then a number of
//! stages, every segment a CPU segment.
//!
//! The check runs in a child process (`multitpu::isolate`: this program started again, with
//! at most 4 GiB of memory and `--timeout` seconds, default 120), so that a model that
//! crashes TFLite ends in `verification failed: the isolated child died ...` naming the
//! segment file, not in the death of this program. `--in-process` runs it here instead.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use multitpu::backend::DeviceSelector;
use multitpu::backend::tflite::Runtime;
use multitpu::device::CpuCostModel;
use multitpu::isolate::{self, Isolation, NamedModel};
use multitpu::model::{Graph, Model};
use multitpu::profile::{
    CachedProfiler, CpuProfiler, EdgeTpuCostModel, EdgeTpuProfiler, Link, Profiler,
};
use multitpu::segment::{self, LibcoralSearch, Profiled, Segmenter};
use multitpu::verify::verify_chain;

struct Args {
    model: PathBuf,
    segments: usize,
    strategy: String,
    profiler: String,
    link: String,
    out: Option<PathBuf>,
    verify: usize,
    in_process: bool,
    timeout_s: f64,
}

const USAGE: &str = "usage: segment MODEL --segments N [--strategy uniform|uniform-ops|profiled|libcoral] \
                     [--profiler model|cpu|edgetpu] [--link usb|pcie] [--out DIR] [--verify K] [--in-process] \
                     [--timeout SECONDS]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let mut segments = None;
    let mut strategy = "uniform".to_string();
    let mut profiler = "model".to_string();
    let mut link = "usb".to_string();
    let mut out = None;
    let mut verify = 0;
    let mut in_process = false;
    let mut timeout_s = Isolation::DEFAULT_TIMEOUT.as_secs_f64();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--segments" => {
                segments = Some(
                    value("--segments")?
                        .parse()
                        .map_err(|e| format!("--segments: {e}"))?,
                )
            }
            "--strategy" => strategy = value("--strategy")?,
            "--profiler" => profiler = value("--profiler")?,
            "--link" => link = value("--link")?,
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--verify" => {
                verify = value("--verify")?
                    .parse()
                    .map_err(|e| format!("--verify: {e}"))?
            }
            "--in-process" => in_process = true,
            "--timeout" => {
                timeout_s = value("--timeout")?
                    .parse()
                    .ok()
                    .filter(|t: &f64| t.is_finite() && *t > 0.0)
                    .ok_or("--timeout: a positive number of seconds")?
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            path if model.is_none() => model = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra}\n{USAGE}")),
        }
    }
    Ok(Args {
        model: model.ok_or(USAGE)?,
        segments: segments.ok_or(format!("--segments is required\n{USAGE}"))?,
        strategy,
        profiler,
        link,
        out,
        verify,
        in_process,
        timeout_s,
    })
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
    /// `model` (the cost model of a device on `link`) or `cpu`.
    fn new(profiler: &str, link: &str) -> Result<Source, Box<dyn Error>> {
        match (profiler, link) {
            ("model", "usb") => Ok(Source::Model(EdgeTpuCostModel::usb_default())),
            ("model", "pcie") => Ok(Source::Model(EdgeTpuCostModel::pcie_default())),
            ("model", other) => Err(format!("unknown link `{other}` (known: usb, pcie)").into()),
            ("cpu", _) => Ok(Source::Cpu(CpuProfiler::new(Runtime::load()?))),
            ("edgetpu", _) => Ok(Source::EdgeTpu(
                Arc::new(CachedProfiler::new(EdgeTpuProfiler::load(
                    DeviceSelector::default(),
                )?)),
                CpuProfiler::new(Runtime::load()?),
            )),
            (other, _) => {
                Err(format!("unknown profiler `{other}` (known: model, cpu, edgetpu)").into())
            }
        }
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

fn segmenter(name: &str, source: &Source) -> Result<Box<dyn Segmenter>, Box<dyn Error>> {
    match (name, source) {
        (_, Source::Model(cost_model)) => Ok(segment::strategy(name, cost_model)?),
        // Timed runs have no known lower bound to prune the profiled search with.
        ("profiled", Source::Cpu(cpu)) => Ok(Box::new(Profiled::cpu(cpu.clone()))),
        ("libcoral", Source::Cpu(cpu)) => Ok(Box::new(LibcoralSearch::new(cpu.clone()))),
        // Compiled segments are timed with the operators the compiler leaves to the CPU in
        // them, as libcoral's tool times them. The cost model bounds the device's times from
        // below only where the device is never faster than the model (the emulated one, by
        // construction): the search is then exact, on a real device near it.
        ("profiled", Source::EdgeTpu(edgetpu, cpu)) => Ok(Box::new(
            Profiled::new(Arc::clone(edgetpu))
                .with_floor(EdgeTpuCostModel::usb_default())
                .with_cpu_segments(cpu.clone()),
        )),
        ("libcoral", Source::EdgeTpu(edgetpu, _)) => {
            Ok(Box::new(LibcoralSearch::new(Arc::clone(edgetpu))))
        }
        (_, Source::EdgeTpu(..)) => Ok(segment::strategy(name, &EdgeTpuCostModel::usb_default())?),
        (_, Source::Cpu(_)) => Ok(segment::strategy(name, &EdgeTpuCostModel::usb_default())?),
    }
}

fn run(args: &Args) -> Result<bool, Box<dyn Error>> {
    let bytes = std::fs::read(&args.model).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let model = Model::from_bytes(&bytes)?;
    let graph = Graph::new(&model)?;
    let source = Source::new(&args.profiler, &args.link)?;
    let planning = std::time::Instant::now();
    let mut plan = segmenter(&args.strategy, &source)?.plan(&graph, args.segments)?;
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
    let paths = plan.write(&graph, &out_dir, stem)?;
    for path in &paths {
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
        let segments = paths
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
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
