//! Cut a `.tflite` model into pipeline segments and check them.
//!
//! ```text
//! cargo run --release --example segment -- MODEL --segments N [--strategy uniform]
//!     [--out DIR] [--verify K]
//! ```
//!
//! Prints one row per segment (operator range, parameter bytes, MACs, input and output
//! tensors), writes `<stem>_segment_<i>_of_<n>.tflite` into DIR (default: next to the
//! model), and with `--verify K` runs K random inputs through the whole model and through the
//! chained segments on the TFLite CPU runtime, comparing every output byte for byte. The last
//! line is then `verify: <k>/<K> identical`; the exit status is non-zero on any difference.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use multitpu::backend::tflite::Runtime;
use multitpu::model::{Graph, Model};
use multitpu::segment::{Plan, Segmenter, UniformByParams};
use multitpu::verify::verify_chain;

struct Args {
    model: PathBuf,
    segments: usize,
    strategy: String,
    out: Option<PathBuf>,
    verify: usize,
}

const USAGE: &str =
    "usage: segment MODEL --segments N [--strategy uniform] [--out DIR] [--verify K]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let mut segments = None;
    let mut strategy = "uniform".to_string();
    let mut out = None;
    let mut verify = 0;
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
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--verify" => {
                verify = value("--verify")?
                    .parse()
                    .map_err(|e| format!("--verify: {e}"))?
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
        out,
        verify,
    })
}

fn segmenter(name: &str) -> Result<Box<dyn Segmenter>, String> {
    match name {
        "uniform" => Ok(Box::new(UniformByParams)),
        other => Err(format!("unknown strategy `{other}` (known: uniform)")),
    }
}

fn print_plan(model: &Model<'_>, plan: &Plan) {
    let names = |tensors: &[usize]| {
        tensors
            .iter()
            .map(|&t| model.tensors[t].name.as_ref())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{:>3}  {:>11}  {:>12}  {:>14}  inputs -> outputs",
        "seg", "ops", "param bytes", "MACs"
    );
    for (i, segment) in plan.segments.iter().enumerate() {
        println!(
            "{:>3}  {:>11}  {:>12}  {:>14}  [{}] -> [{}]",
            i,
            format!("{}..{}", segment.ops.start, segment.ops.end),
            segment.param_bytes,
            segment.macs,
            names(&segment.inputs),
            names(&segment.outputs)
        );
    }
}

fn run(args: &Args) -> Result<bool, Box<dyn Error>> {
    let bytes = std::fs::read(&args.model).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let model = Model::from_bytes(&bytes)?;
    let graph = Graph::new(&model)?;
    let plan = segmenter(&args.strategy)?.plan(&graph, args.segments)?;
    print_plan(&model, &plan);

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
    for path in plan.write(&graph, &out_dir, stem)? {
        println!("wrote {}", path.display());
    }

    if args.verify == 0 {
        return Ok(true);
    }
    let verified = Runtime::load().and_then(|runtime| {
        let segments = plan
            .extract(&graph)?
            .iter()
            .map(Model::to_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        verify_chain(&runtime, &bytes, segments, args.verify, 0x5eed)
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
