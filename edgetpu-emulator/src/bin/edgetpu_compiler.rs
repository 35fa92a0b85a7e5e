//! The emulated `edgetpu_compiler`, with the real one's command line for what multitpu
//! uses:
//!
//! ```text
//! edgetpu_compiler [-s|--show_operations] [-o|--out_dir DIR] [-n|--num_segments N] MODEL...
//! ```
//!
//! For each MODEL it writes `DIR/<stem>_edgetpu.tflite` (with `--num_segments N`: the
//! model cut as `edgetpu_compiler` cuts it, equal parameter bytes per segment, into
//! `DIR/<stem>_segment_<i>_of_<N>_edgetpu.tflite`) and `DIR/<stem>_edgetpu.log` (the
//! operator table), and prints the real compiler's report lines (`-s`: also the table).
//! DIR defaults to the current directory. Exits with 1 and a message on stderr on any error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use edgetpu_emulator::compiler::{BANNER, compile};
use multitpu::deploy::{SegmentKind, segment_file_name};
use multitpu::model::validate::Validation;
use multitpu::model::{Graph, Model};
use multitpu::segment::{Segmenter, UniformByParams};

const USAGE: &str = "usage: edgetpu_compiler [-s|--show_operations] [-o|--out_dir DIR] \
                     [-n|--num_segments N] [-v|--version] MODEL...";

struct Args {
    out_dir: PathBuf,
    show_operations: bool,
    num_segments: usize,
    models: Vec<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        out_dir: PathBuf::from("."),
        show_operations: false,
        num_segments: 1,
        models: Vec::new(),
    };
    let mut raw = std::env::args().skip(1);
    while let Some(arg) = raw.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| raw.next())
                .ok_or(format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "-o" | "--out_dir" => args.out_dir = PathBuf::from(value("--out_dir")?),
            "-s" | "--show_operations" => args.show_operations = true,
            "-n" | "--num_segments" => {
                let n = value("--num_segments")?;
                args.num_segments = n.parse().ok().filter(|&n| n >= 1).ok_or(format!(
                    "--num_segments: `{n}` is not a count of at least 1"
                ))?;
            }
            "-v" | "--version" => {
                println!("{BANNER}");
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{BANNER}\n{USAGE}");
                return Ok(None);
            }
            f if f.starts_with('-') => return Err(format!("unknown flag {f}\n{USAGE}")),
            _ => args.models.push(PathBuf::from(arg)),
        }
    }
    if args.models.is_empty() {
        return Err(format!("no model given\n{USAGE}"));
    }
    Ok(Some(args))
}

/// The parts to compile: the model itself, or its segments with their output stems.
fn parts(bytes: &[u8], stem: &str, segments: usize) -> Result<Vec<(String, Vec<u8>)>, String> {
    if segments == 1 {
        return Ok(vec![(stem.to_string(), bytes.to_vec())]);
    }
    let model = Model::from_bytes(bytes).map_err(|e| format!("invalid model: {e}"))?;
    // As trusted: a compiler runs nothing, and takes operators validation does not model.
    let graph = Graph::with_validation(&model, &Validation::trusted())
        .map_err(|e| format!("invalid model: {e}"))?;
    let plan = UniformByParams
        .plan(&graph, segments)
        .map_err(|e| e.to_string())?;
    plan.extract(&graph)
        .map_err(|e| e.to_string())?
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            let name = segment_file_name(stem, i, segments, SegmentKind::EdgeTpu, 1);
            let stem = name.strip_suffix(".tflite").unwrap_or(&name).to_string();
            Ok((stem, segment.to_bytes().map_err(|e| e.to_string())?))
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn compile_file(args: &Args, input: &Path) -> Result<(), String> {
    let bytes =
        std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    for (stem, part) in parts(&bytes, &stem, args.num_segments)? {
        let start = Instant::now();
        let compiled = compile(&part).map_err(|e| format!("{}: {e}", input.display()))?;
        let output = args.out_dir.join(format!("{stem}_edgetpu.tflite"));
        let log = args.out_dir.join(format!("{stem}_edgetpu.log"));
        write(&output, &compiled.model)?;
        write(&log, compiled.operator_table().as_bytes())?;
        println!(
            "\nModel compiled successfully in {} ms.\n",
            start.elapsed().as_millis()
        );
        print!(
            "{}",
            compiled.summary(
                &input.display().to_string(),
                part.len() as u64,
                &output.display().to_string()
            )
        );
        println!("Operation log: {}", log.display());
        if compiled.operators.iter().any(|(_, mapped)| !mapped) {
            println!(
                "\nNot every operator is mapped to the emulated Edge TPU: the others run on \
                 the CPU."
            );
        }
        if args.show_operations {
            println!("\n{}", compiled.operator_table());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    println!("{BANNER}");
    if !args.out_dir.is_dir() {
        eprintln!(
            "ERROR: output directory {} does not exist",
            args.out_dir.display()
        );
        return ExitCode::FAILURE;
    }
    for model in &args.models {
        if let Err(message) = compile_file(&args, model) {
            eprintln!("ERROR: {message}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
