//! Fits the cost models and shows how well they fit.
//!
//! ```text
//! cargo run --release -p multitpu-paper --bin calibrate -- [CALIBRATION_DIR] [--models DIR]
//! cargo run --release -p multitpu-paper --bin calibrate -- --cpu [--models DIR]
//! ```
//!
//! **Edge TPU** (the default): `CALIBRATION_DIR` holds `fc_*.csv` / `conv_*.csv` files
//! (default: `../shared/calibration` beside the workspace) and `--models DIR` the real
//! models (default `../shared/models`), of which Coral's `mobilenet_v2_1.0_224_quant.tflite`
//! is used. Prints the fitted parameters, one row per measured model (measured vs predicted
//! milliseconds and off-chip MiB), per family the median and worst absolute errors, and one
//! row per published figure of a real model (Coral's USB Accelerator benchmarks): published,
//! predicted, and predicted by the fit without that figure. The figures baked into
//! `EdgeTpuCostModel::usb_default()` come from this program run on the project's data.
//!
//! **CPU** (`--cpu`): times the models of `cpu_calibration_models` (every model of
//! `--models DIR` without custom operators, the paper's models, float versions of them, the
//! rebuilt MobileNet v1 and Inception v1) and segments of them on TFLite's CPU kernels (one
//! thread; needs the TFLite library, `MULTITPU_TFLITE_LIB`), fits `CpuCostModel`, and prints
//! its constants and one row per timed range. Its figures describe the machine it runs on;
//! `CpuCostModel::default()` holds those of the reference machine (docs/cost-model.md).

use std::error::Error;
use std::path::{Path, PathBuf};

use multitpu::backend::Runtime;
use multitpu::device::CpuCostModel;
use multitpu::device::cost_model::MIB;
use multitpu::model::figures::OpKind;
use multitpu::profile::{CpuProfiler, EdgeTpuCostModel};
use multitpu_paper::calibration::{
    CpuFitReport, CpuPoint, MOBILENET_V2_FILE, coral_usb_benchmarks, coral_usb_checks,
    cpu_calibration_models, cpu_points, fit, fit_cpu, load_dir, load_pipeline_dir,
    time_host_conversions,
};

/// Passes over the CPU calibration models; each range keeps its fastest pass.
const CPU_PASSES: usize = 5;

const USAGE: &str =
    "usage: calibrate [CALIBRATION_DIR] [--models DIR] | calibrate --cpu [--models DIR]";

struct Args {
    cpu: bool,
    calibration: PathBuf,
    models: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    // This crate sits in the workspace's `paper/`; `../shared` is beside the workspace.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = Args {
        cpu: false,
        calibration: root.join("../shared/calibration"),
        models: root.join("../shared/models"),
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("--cpu") => args.cpu = true,
            Some("--models") => {
                args.models = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--models needs a folder")?;
            }
            Some(flag) if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ => args.calibration = PathBuf::from(arg),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}\n{USAGE}"))?;
    if args.cpu {
        return calibrate_cpu(&args.models);
    }
    calibrate_edgetpu(&args.calibration, &args.models)
}

fn calibrate_edgetpu(dir: &Path, models: &Path) -> Result<(), Box<dyn Error>> {
    let points = load_dir(dir)?;
    println!(
        "calibration data: {} ({} points)",
        dir.display(),
        points.len()
    );
    // The multi-device files' placement lists fit the input reserve; their times include
    // the measuring program and are left to `paper/src/bin/reproduce`.
    let pipeline_dir = dir.join("pipelines");
    let pipelines = if pipeline_dir.is_dir() {
        load_pipeline_dir(&pipeline_dir)?
    } else {
        Vec::new()
    };
    println!(
        "multi-device data: {} ({} points)",
        pipeline_dir.display(),
        pipelines.len()
    );
    let published = coral_usb_benchmarks(models)?;
    println!(
        "published figures: {} real models (Coral's USB Accelerator benchmarks; {} from {})",
        published.len(),
        MOBILENET_V2_FILE,
        models.display()
    );
    let report = fit(
        &points,
        &pipelines,
        &published,
        &EdgeTpuCostModel::usb_default(),
    )?;
    let m = &report.model;

    println!();
    println!("fitted parameters");
    println!(
        "  on_chip_budget_bytes      {:>12}  ({:.4} MiB)",
        m.on_chip_budget_bytes,
        m.on_chip_budget_bytes as f64 / MIB
    );
    if m.max_cached_tensor_bytes == u64::MAX {
        println!("  max_cached_tensor_bytes   no limit");
    } else {
        println!(
            "  max_cached_tensor_bytes   {:>12}  ({:.4} MiB)",
            m.max_cached_tensor_bytes,
            m.max_cached_tensor_bytes as f64 / MIB
        );
    }
    println!(
        "  stream_bytes_per_s        {:>12.5e}  ({:.3} ms/MiB)",
        m.stream_bytes_per_s,
        MIB / m.stream_bytes_per_s * 1e3
    );
    println!(
        "  stream_reads[Conv2d]      {:>12.5}",
        m.stream_reads.get(OpKind::Conv2d)
    );
    println!("  input_reserve             {:>12.5}", m.input_reserve);
    println!("  io_bytes_per_s            {:>12.5e}", m.io_bytes_per_s);
    println!(
        "  invoke_overhead_s         {:>12.5e}  ({:.4} ms)",
        m.invoke_overhead_s,
        m.invoke_overhead_s * 1e3
    );
    for kind in [
        OpKind::FullyConnected,
        OpKind::Conv2d,
        OpKind::DepthwiseConv2d,
    ] {
        println!(
            "  macs_per_s[{:<15}] {:>11.5e}",
            format!("{kind:?}"),
            m.macs_per_s.get(kind)
        );
    }
    println!(
        "  per_op_s                  {:>12.5e}  ({:.2} us)",
        m.per_op_s,
        m.per_op_s * 1e6
    );
    println!(
        "  activation_bytes_per_s    {:>12.5e}",
        m.activation_bytes_per_s
    );
    println!(
        "  host_quantize_s_per_elem  {:>12.5e}  (not fitted: timed by `calibrate --cpu`)",
        m.host_quantize_s_per_element
    );
    println!(
        "  host_dequantize_s_per_elem{:>12.5e}  (not fitted: timed by `calibrate --cpu`)",
        m.host_dequantize_s_per_element
    );

    println!();
    println!(
        "{:<5} {:>5}  {:>9} {:>9} {:>8}  {:>7} {:>7} {:>7}  {:>7} {:>7}",
        "model",
        "size",
        "meas ms",
        "pred ms",
        "err ms",
        "meas on",
        "pred on",
        "meas off",
        "pred off",
        "err off"
    );
    for r in &report.rows {
        println!(
            "{:<5} {:>5}  {:>9.3} {:>9.3} {:>+8.3}  {:>7.3} {:>7.3} {:>8.3} {:>8.3} {:>+7.3}",
            r.family.name(),
            r.size,
            r.measured_ms,
            r.predicted_ms,
            r.predicted_ms - r.measured_ms,
            r.measured_on_chip_mib,
            r.predicted_on_chip_mib,
            r.measured_off_chip_mib,
            r.predicted_off_chip_mib,
            r.predicted_off_chip_mib - r.measured_off_chip_mib,
        );
    }

    if !report.segments.is_empty() {
        println!();
        println!(
            "{:<5} {:<9} {:>5} {:>9} {:>4}  {:>7} {:>7}  {:>8} {:>8}",
            "model", "split", "size", "cuts", "seg", "meas on", "pred on", "meas off", "pred off"
        );
        for r in &report.segments {
            let cuts: Vec<String> = r.cuts.iter().map(usize::to_string).collect();
            println!(
                "{:<5} {:<9} {:>5} {:>9} {:>4}  {:>7.3} {:>7.3}  {:>8.3} {:>8.3}",
                r.family.name(),
                r.split,
                r.size,
                cuts.join(";"),
                r.segment,
                r.measured_on_chip_mib,
                r.predicted_on_chip_mib,
                r.measured_off_chip_mib,
                r.predicted_off_chip_mib,
            );
        }
        let misplaced = report
            .segments
            .iter()
            .filter(|r| (r.predicted_off_chip_mib - r.measured_off_chip_mib).abs() > 0.02)
            .count();
        println!(
            "segments placed as the compiler did (±0.02 MiB): {} of {}",
            report.segments.len() - misplaced,
            report.segments.len()
        );
    }

    println!();
    println!(
        "{:<6} {:>6}  {:>10} {:>10}  {:>14} {:>14}",
        "family", "points", "median ms", "worst ms", "median off MiB", "worst off MiB"
    );
    for f in &report.families {
        println!(
            "{:<6} {:>6}  {:>10.3} {:>10.3}  {:>14.3} {:>14.3}",
            f.family.name(),
            f.points,
            f.median_ms,
            f.worst_ms,
            f.median_off_chip_mib,
            f.worst_off_chip_mib
        );
    }

    println!();
    println!("real models, one USB Edge TPU (published: Coral's benchmark table)");
    println!(
        "{:<34} {:>9} {:>9} {:>7}  {:>9} {:>7}",
        "model", "pred ms", "pub ms", "error", "left-out", "error"
    );
    for r in &report.published {
        println!(
            "{:<34} {:>9.3} {:>9.3} {:>+6.1}%  {:>9.3} {:>+6.1}%",
            r.name,
            r.predicted_ms,
            r.published_ms,
            (r.predicted_ms / r.published_ms - 1.0) * 100.0,
            r.left_out_ms,
            (r.left_out_ms / r.published_ms - 1.0) * 100.0,
        );
    }
    println!("not fitted (checks):");
    for check in coral_usb_checks(models)? {
        let predicted = m.predict(&check.workload).latency_s * 1e3;
        println!(
            "{:<34} {:>9.3} {:>9.3} {:>+6.1}%",
            check.name,
            predicted,
            check.latency_ms,
            (predicted / check.latency_ms - 1.0) * 100.0,
        );
    }
    Ok(())
}

fn calibrate_cpu(models: &Path) -> Result<(), Box<dyn Error>> {
    let runtime = Runtime::load()?;
    let profiler = CpuProfiler::new(runtime);
    println!(
        "timing on TFLite's CPU kernels ({} thread(s), median of {} runs after {} untimed, \
         fastest of {CPU_PASSES} passes)",
        profiler.options.threads, profiler.runs, profiler.warmup
    );
    // The float conversions first, on their own: the fit holds them fixed.
    let mut conversions = time_host_conversions(&profiler)?;
    for _ in 1..CPU_PASSES {
        let again = time_host_conversions(&profiler)?;
        conversions.quantize_s_per_element = conversions
            .quantize_s_per_element
            .min(again.quantize_s_per_element);
        conversions.dequantize_s_per_element = conversions
            .dequantize_s_per_element
            .min(again.dequantize_s_per_element);
    }
    println!(
        "host float conversions (a 224x224x3 tensor, fastest of {CPU_PASSES}): \
         QUANTIZE {:.3} ns/element, DEQUANTIZE {:.3} ns/element",
        conversions.quantize_s_per_element * 1e9,
        conversions.dequantize_s_per_element * 1e9
    );
    let models = cpu_calibration_models(models)?;
    // The host is shared: every range is timed in several passes over all the models, and
    // the least median kept, so that a pass slowed down by other work does not count.
    let mut points: Vec<CpuPoint> = Vec::new();
    let mut slowest: Vec<f64> = Vec::new();
    for pass in 0..CPU_PASSES {
        let mut index = 0;
        for (name, model) in &models {
            for timed in cpu_points(&profiler, name, model)? {
                match points.get_mut(index) {
                    Some(kept) => {
                        kept.measured_s = kept.measured_s.min(timed.measured_s);
                        slowest[index] = slowest[index].max(timed.measured_s);
                    }
                    None => {
                        slowest.push(timed.measured_s);
                        points.push(timed);
                    }
                }
                index += 1;
            }
        }
        eprintln!("  pass {} of {CPU_PASSES}: {index} ranges timed", pass + 1);
    }
    let mut spread: Vec<f64> = points
        .iter()
        .zip(&slowest)
        .map(|(p, &slow)| slow / p.measured_s - 1.0)
        .collect();
    spread.sort_by(f64::total_cmp);
    let start = CpuCostModel {
        quantize_s_per_element: conversions.quantize_s_per_element,
        dequantize_s_per_element: conversions.dequantize_s_per_element,
        ..CpuCostModel::default()
    };
    let report = fit_cpu(&points, &start)?;
    print_cpu_report(&report);
    println!(
        "the slowest pass was slower than the fastest by a median {:.0}% (the host's noise)",
        spread[spread.len() / 2] * 100.0
    );
    Ok(())
}

fn print_cpu_report(report: &CpuFitReport) {
    let m = &report.model;
    println!();
    println!("fitted constants (CpuCostModel)");
    println!(
        "  invoke_overhead_s   {:>12.5e}  ({:.2} us)",
        m.invoke_overhead_s,
        m.invoke_overhead_s * 1e6
    );
    println!(
        "  per_op_s            {:>12.5e}  ({:.2} us)",
        m.per_op_s,
        m.per_op_s * 1e6
    );
    for &(class, kind) in CpuCostModel::mac_slots() {
        let rate = m.macs_per_s(class, kind).unwrap_or(f64::NAN);
        println!(
            "  macs_per_s[{:<5}][{:<15}] {:>12.5e}",
            format!("{class:?}"),
            format!("{kind:?}"),
            rate
        );
    }
    println!("  bytes_per_s         {:>12.5e}", m.bytes_per_s);
    println!(
        "  quantize_s_per_element   {:>12.5e}  (timed above, not fitted)",
        m.quantize_s_per_element
    );
    println!(
        "  dequantize_s_per_element {:>12.5e}  (timed above, not fitted)",
        m.dequantize_s_per_element
    );
    println!();
    println!(
        "{:<32} {:>9} {:>4} {:>11} {:>11} {:>7}",
        "model", "ops", "n", "meas ms", "pred ms", "error"
    );
    for r in &report.rows {
        let p = &r.point;
        println!(
            "{:<32} {:>9} {:>4} {:>11.4} {:>11.4} {:>+6.1}%",
            p.name,
            format!("{}..{}", p.ops.start, p.ops.end),
            p.work.ops,
            p.measured_s * 1e3,
            r.predicted_s * 1e3,
            r.relative_error() * 100.0
        );
    }
    println!();
    println!(
        "median |error|: whole models {:.1}%, every range {:.1}%",
        report.median_abs_relative_error(true) * 100.0,
        report.median_abs_relative_error(false) * 100.0
    );
}
