//! Fits the cost models and shows how well they fit.
//!
//! ```text
//! cargo run --release -p multitpu-paper --bin calibrate -- [CALIBRATION_DIR] [--bench-zoo DIR] [--models DIR] [--choose-weight]
//! cargo run --release -p multitpu-paper --bin calibrate -- --cpu [--models DIR]
//! ```
//!
//! **Edge TPU** (the default): `CALIBRATION_DIR` holds `fc_*.csv` / `conv_*.csv` files and
//! `pipelines/` the multi-device runs (default: `../shared/calibration` beside the
//! workspace); `--bench-zoo` the benchmark zoo (`scripts/fetch-zoo --bench`, default
//! `MULTITPU_BENCH_ZOO`), whose networks stand for the rows of Coral's published table;
//! `--models` the shared real models (default `../shared/models`), whose MobileNet v2 files
//! are extra checks where present. Prints the fitted parameters and measuring programs, one
//! row per single-device point (measured vs predicted milliseconds and off-chip MiB), the
//! median error of every measured series, and one row per published figure: its role
//! (fitted, checked, reported), the prediction, and for a fitted one the prediction of the
//! fit without it. The figures baked into `EdgeTpuCostModel::usb_default()` and the
//! measuring programs' built-in costs come from this program run on the project's data.
//!
//! **CPU** (`--cpu`): times the models of `cpu_calibration_models` (every model of
//! `--models DIR` without custom operators, the paper's models, float versions of them, the
//! rebuilt MobileNet v1 and Inception v1) and segments of them on TFLite's CPU kernels (one
//! thread; needs the TFLite library, `MULTITPU_TFLITE_LIB`), fits `CpuCostModel`, and prints
//! its constants and one row per timed range. Its figures describe the machine it runs on;
//! `CpuCostModel::default()` holds those of the reference machine (docs/cost-model.md).

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;

use multitpu::backend::Runtime;
use multitpu::device::{CpuCostModel, EdgeTpuCostModel, MIB};
use multitpu::model::figures::OpKind;
use multitpu::profile::CpuProfiler;
use multitpu_paper::calibration::{
    CpuFitReport, CpuPoint, Family, LeftOut, PUBLISHED_WEIGHT, SERIES_ERROR_BAR,
    choose_published_weight, coral_usb_table, cpu_calibration_models, cpu_points, fit_cpu,
    fit_with_weight, load_dir, load_pipeline_dir, shared_model_checks, time_host_conversions,
};

/// Passes over the CPU calibration models; each range keeps its fastest pass.
const CPU_PASSES: usize = 5;

/// Fit the Edge TPU cost model (or, with --cpu, the CPU estimate) and show how well it fits.
#[derive(Parser)]
struct Args {
    /// The calibration folder (default: ../shared/calibration beside the workspace).
    calibration: Option<PathBuf>,
    /// The benchmark zoo of `scripts/fetch-zoo --bench`.
    #[arg(long, env = "MULTITPU_BENCH_ZOO")]
    bench_zoo: Option<PathBuf>,
    /// The shared real models (default: ../shared/models beside the workspace).
    #[arg(long)]
    models: Option<PathBuf>,
    /// The weight of each fitted published figure; each measured series weighs 1.
    #[arg(long, default_value_t = PUBLISHED_WEIGHT)]
    published_weight: f64,
    /// Print the fit at every weight in tenths and the weight the rule picks, then fit at it.
    #[arg(long)]
    choose_weight: bool,
    /// Time the CPU and fit the CPU estimate instead.
    #[arg(long)]
    cpu: bool,
}

impl Args {
    /// `name` in `../shared` beside the workspace (this crate sits in its `paper/`).
    fn shared(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared")
            .join(name)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = Args::parse();
    let calibration = args
        .calibration
        .take()
        .unwrap_or_else(|| Args::shared("calibration"));
    let models = args.models.take().unwrap_or_else(|| Args::shared("models"));
    if args.cpu {
        return calibrate_cpu(&models);
    }
    calibrate_edgetpu(
        &calibration,
        args.bench_zoo.as_deref(),
        &models,
        args.published_weight,
        args.choose_weight,
    )
}

fn calibrate_edgetpu(
    dir: &Path,
    bench_zoo: Option<&Path>,
    models: &Path,
    mut published_weight: f64,
    choose_weight: bool,
) -> Result<(), Box<dyn Error>> {
    let points = load_dir(dir)?;
    println!(
        "calibration data: {} ({} points)",
        dir.display(),
        points.len()
    );
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
    let bench_zoo = bench_zoo.ok_or(
        "the published figures need the benchmark zoo: `--bench-zoo \"$(scripts/fetch-zoo --bench)\"` \
         (or MULTITPU_BENCH_ZOO)",
    )?;
    let mut published = coral_usb_table(bench_zoo)?;
    published.extend(shared_model_checks(models)?);
    println!(
        "published figures: {} networks (benchmark zoo {}, shared models {})",
        published.len(),
        bench_zoo.display(),
        models.display()
    );
    if choose_weight {
        let (trials, chosen) = choose_published_weight(
            &points,
            &pipelines,
            &published,
            &EdgeTpuCostModel::usb_default(),
        )?;
        println!();
        println!(
            "published weight: the largest in tenths whose worst measured series is within {:.0} %",
            SERIES_ERROR_BAR * 100.0
        );
        for t in &trials {
            println!(
                "  weight {:.1}: worst series {} {} {} device(s), {:.1} %",
                t.weight,
                t.worst.family.name(),
                t.worst.split,
                t.worst.devices,
                t.worst.median_error * 100.0
            );
        }
        published_weight = chosen.ok_or("no weight keeps every measured series within the bar")?;
        println!("chosen: {published_weight:.1} (built in: {PUBLISHED_WEIGHT})");
        println!();
    }
    println!("each fitted published figure weighs {published_weight} (a measured series: 1)");
    let report = fit_with_weight(
        &points,
        &pipelines,
        &published,
        &EdgeTpuCostModel::usb_default(),
        published_weight,
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
    println!("  input_reserve             {:>12.5}", m.input_reserve);
    println!(
        "  stream_bytes_per_s        {:>12.5e}  ({:.3} ms/MiB)",
        m.stream_bytes_per_s,
        MIB / m.stream_bytes_per_s * 1e3
    );
    println!(
        "  tile_bytes                {:>12}  ({:.4} MiB)",
        m.tile_bytes,
        m.tile_bytes as f64 / MIB
    );
    println!("  input_bytes_per_s         {:>12.5e}", m.input_bytes_per_s);
    println!(
        "  output_bytes_per_s        {:>12.5e}",
        m.output_bytes_per_s
    );
    println!(
        "  invoke_overhead_s         {:>12.5e}  ({:.4} ms)",
        m.invoke_overhead_s,
        m.invoke_overhead_s * 1e3
    );
    println!(
        "  per_op_s                  {:>12.5e}  ({:.2} us)",
        m.per_op_s,
        m.per_op_s * 1e6
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
        "  concat_bytes_per_s        {:>12.5e}",
        m.concat_bytes_per_s
    );
    println!(
        "  host_quantize_s_per_elem  {:>12.5e}  (not fitted: timed by `calibrate --cpu`)",
        m.host_quantize_s_per_element
    );
    println!(
        "  host_dequantize_s_per_elem{:>12.5e}  (not fitted: timed by `calibrate --cpu`)",
        m.host_dequantize_s_per_element
    );
    for (family, scheme) in [
        (Family::Fc, &report.fc_scheme),
        (Family::Conv, &report.conv_scheme),
    ] {
        println!(
            "  {family} runs' program ({:?}, batch {}): {:.5e} s per item and stage, {:.5e} s per batch",
            scheme.program, scheme.batch, scheme.per_stage_item_s, scheme.per_batch_s
        );
    }

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
        let misplaced = report
            .segments
            .iter()
            .filter(|r| {
                let near = |a: f64, b: f64| (a - b).abs() <= 0.02_f64.max(0.01 * b);
                !near(r.predicted_off_chip_mib, r.measured_off_chip_mib)
                    || !near(r.predicted_on_chip_mib, r.measured_on_chip_mib)
            })
            .count();
        println!(
            "multi-device segments placed as the compiler did (±0.02 MiB or 1 %): {} of {}",
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
    println!("median relative time error per measured series (all fitted):");
    for s in &report.series {
        println!(
            "  {:<4} {:<9} {} device(s): {:>3} points, {:>5.1} %",
            s.family.name(),
            s.split,
            s.devices,
            s.points,
            s.median_error * 100.0
        );
    }

    println!();
    println!("real networks, one USB Edge TPU: published against predicted");
    println!(
        "{:<31} {:<6} {:>8} {:>9} {:>8}  {:>9} {:>8}",
        "network", "role", "pub ms", "pred ms", "error", "left out", "error"
    );
    for r in &report.published {
        let left_out = match r.left_out {
            LeftOut::Predicted(ms) => format!("{ms:>9.2} {:>+7.1}%", r.error_of(ms) * 100.0),
            LeftOut::SoleSource(parameter) => format!("(alone pins {parameter})"),
            LeftOut::NotFitted => String::new(),
        };
        println!(
            "{:<31} {:<6} {:>8.1} {:>9.2} {:>+7.1}%  {left_out}",
            r.name,
            r.role.name(),
            r.published_ms,
            r.predicted_ms,
            r.error() * 100.0,
        );
    }
    println!(
        "(fit: in the fit, error in-sample, `left out` fitted without that row; check: never \
         fitted; report: shown only, unreachable over USB at full size)"
    );
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
