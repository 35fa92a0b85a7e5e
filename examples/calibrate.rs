//! Fits the Edge TPU cost model to single-device measurements and shows how well it fits.
//!
//! ```text
//! cargo run --release --example calibrate -- [CALIBRATION_DIR]
//! ```
//!
//! `CALIBRATION_DIR` holds `fc_*.csv` / `conv_*.csv` files (default: `../shared/calibration`
//! relative to the crate root). Prints the fitted parameters, then one row per measured
//! model (measured vs predicted milliseconds and off-chip MiB), then per family the median
//! and worst absolute errors. The figures baked into `EdgeTpuCostModel::usb_default()` come
//! from this program run on the project's calibration data.

use std::error::Error;
use std::path::PathBuf;

use multitpu::device::cost_model::MIB;
use multitpu::model::figures::OpKind;
use multitpu::profile::EdgeTpuCostModel;
use multitpu::profile::calibration::{fit, load_dir, load_pipeline_dir};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/calibration"));
    let points = load_dir(&dir)?;
    println!(
        "calibration data: {} ({} points)",
        dir.display(),
        points.len()
    );
    // The multi-device files' placement lists fit the input reserve; their times include
    // the measuring program and are left to `examples/reproduce.rs`.
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
    let report = fit(&points, &pipelines, &EdgeTpuCostModel::usb_default())?;
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
    for kind in [OpKind::FullyConnected, OpKind::Conv2d] {
        println!(
            "  macs_per_s[{:<14}] {:>12.5e}",
            format!("{kind:?}"),
            m.macs_per_s.get(kind)
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
    Ok(())
}
