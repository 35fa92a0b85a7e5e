//! Reproduces the paper's sweeps: the single-device cliff and the speedup of 2, 3 and 4 Edge
//! TPUs with each cutting strategy, for the fc and conv models.
//!
//! ```text
//! cargo run --release -p multitpu-paper --bin reproduce -- [--quick] [--out DIR] [--calibration DIR]
//!     [--backend sim-usb|sim-pcie|edgetpu]
//! ```
//!
//! On simulated devices (the default, `sim-usb`), every figure is a prediction: the Edge TPU
//! cost model for each segment, the event-level model of this library's pipeline for the
//! batch, and the fitted model of the author's measuring program (`paper_scheme_ms`). With
//! `--backend edgetpu` every segment is compiled with `edgetpu_compiler` and every batch
//! timed on the attached devices. Writes `fc_single.csv`, `conv_single.csv`,
//! `fc_pipeline.csv`, `conv_pipeline.csv`, SVG plots and `manifest.txt` (which backend made
//! each file) into `--out` (default `target/reproduce`). With `--calibration DIR` it also
//! sets every measured row of DIR (and `DIR/pipelines`) beside its prediction, prints the
//! errors and plots predicted against measured.

mod plot;

use std::error::Error;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use multitpu::backend::{EdgeTpuBackend, EdgeTpuRuntime};
use multitpu::deploy::EdgeTpuCompiler;
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::Graph;
use multitpu_paper::calibration::{
    CalibrationPoint, Family, PipelinePoint, load_dir, load_pipeline_dir,
};
use multitpu_paper::reproduce::{
    Comparison, Headline, MeasuredSpeedup, PipelineRow, Setup, SingleRow, Sweep, SweepResult,
    author_strategies, compare_with_calibration, errors_per_series, headline, measured_speedups,
    measured_with_four_devices, notebook_copies_with_four_devices, plan_for,
    published_with_four_devices, run_sweep, time_batch,
};
use plot::{Chart, Series, Style};

/// The measurements of the calibration folder: single-device points and multi-device runs.
type Calibration = (Vec<CalibrationPoint>, Vec<PipelinePoint>);

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// Simulated USB Edge TPUs (cost model).
    SimUsb,
    /// Simulated PCIe Edge TPUs (cost model).
    SimPcie,
    /// Coral Edge TPUs through libedgetpu, segments compiled with edgetpu_compiler.
    Edgetpu,
}

impl BackendKind {
    fn label(self) -> String {
        match self {
            BackendKind::SimUsb => "simulated USB Edge TPUs",
            BackendKind::SimPcie => "simulated PCIe Edge TPUs",
            BackendKind::Edgetpu => "Edge TPUs (measured)",
        }
        .to_string()
    }
}

/// Reproduce the paper's single- and multi-device sweeps.
#[derive(Parser)]
struct Args {
    /// A reduced sweep (sizes on both sides of each cliff), for CI.
    #[arg(long)]
    quick: bool,
    /// Where to write the CSV files and plots.
    #[arg(long, default_value = "target/reproduce")]
    out: PathBuf,
    /// The calibration folder: compare every measured row with its prediction.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// The devices.
    #[arg(long, value_enum, default_value = "sim-usb")]
    backend: BackendKind,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let cost_model = match args.backend {
        BackendKind::SimPcie => EdgeTpuCostModel::pcie_default(),
        _ => EdgeTpuCostModel::usb_default(),
    };
    let setup = Setup {
        cost_model,
        ..Setup::default()
    };
    let sweep = if args.quick {
        Sweep::quick()
    } else {
        Sweep::paper()
    };
    // The compiler and the devices are found before any work, so that a machine without
    // them fails at once.
    let devices = match args.backend {
        BackendKind::Edgetpu => Some((EdgeTpuCompiler::find()?, EdgeTpuBackend::load()?)),
        BackendKind::SimUsb | BackendKind::SimPcie => None,
    };
    let label = match args.backend {
        BackendKind::Edgetpu => devices_label(&EdgeTpuRuntime::load()?.version()),
        _ => args.backend.label(),
    };
    let label = label.as_str();
    println!(
        "reproduce: {} fc sizes, {} conv sizes, devices {:?}, strategies {} ({label})",
        sweep.fc_sizes.len(),
        sweep.conv_sizes.len(),
        sweep.devices,
        sweep.strategies.join(", ")
    );

    let calibration: Option<Calibration> = match &args.calibration {
        Some(dir) => Some((load_dir(dir)?, load_pipeline_dir(&dir.join("pipelines"))?)),
        None => None,
    };
    let measured = calibration
        .as_ref()
        .map_or_else(Vec::new, |(single, pipelines)| {
            measured_speedups(single, pipelines)
        });

    let bar = progress_bar(sweep.models() as u64);
    let mut result = run_sweep(&sweep, &setup, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if let Some((compiler, backend)) = &devices {
        measure_on_devices(&mut result, &setup, compiler, backend)?;
    }

    std::fs::create_dir_all(&args.out)?;
    let mut manifest = String::new();
    for family in [Family::Fc, Family::Conv] {
        let single = args.out.join(format!("{family}_single.csv"));
        write_single_csv(&single, &result.single, family)?;
        let pipeline = args.out.join(format!("{family}_pipeline.csv"));
        write_pipeline_csv(&pipeline, &result.pipeline, family)?;
        for path in [single, pipeline] {
            writeln!(manifest, "{}: {label}", file_name(&path))?;
        }
    }
    for path in plot_sweep(&args.out, &result, label, &measured)? {
        writeln!(manifest, "{}: {label}", file_name(&path))?;
    }

    let lines = headline(&result, &measured);
    print_headline(&lines, label, calibration.is_some());

    if let Some((single, pipelines)) = &calibration {
        for path in compare(single, pipelines, &lines, &args.out, &setup)? {
            writeln!(
                manifest,
                "{}: measured (calibration files) against predicted (cost model and measuring scheme)",
                file_name(&path)
            )?;
        }
    }
    std::fs::write(args.out.join("manifest.txt"), manifest)?;
    println!(
        "reproduce: wrote CSV files, plots and manifest.txt to {} ({label})",
        args.out.display()
    );
    Ok(())
}

/// The label of measured results: libedgetpu builds that are not Coral's devices, such as
/// the emulated Edge TPU (`scripts/emulate`), say so in their version string, and every
/// result measured on them carries it.
fn devices_label(libedgetpu_version: &str) -> String {
    if libedgetpu_version.starts_with("emulated Edge TPU") {
        "emulated Edge TPUs (measured on the emulator)".to_string()
    } else {
        BackendKind::Edgetpu.label()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(models: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(models);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} models {elapsed}") {
        bar.set_style(style);
    }
    bar
}

/// A segment compiled for the Edge TPU, with the placement the compiler reported.
struct Compiled {
    model: Arc<[u8]>,
    on_chip_mib: f64,
    off_chip_mib: f64,
}

/// Replaces every prediction with what the attached Edge TPUs do: placement as the compiler
/// reports it, batches timed on the devices, and the measuring programs' model applied to the
/// stages' measured latencies. The plans are the cost model's.
fn measure_on_devices(
    result: &mut SweepResult,
    setup: &Setup,
    compiler: &EdgeTpuCompiler,
    backend: &EdgeTpuBackend,
) -> Result<(), Box<dyn Error>> {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let compile = |bytes: Vec<u8>| -> Result<Compiled, Box<dyn Error>> {
        let compiled = compiler.compile(&bytes)?;
        Ok(Compiled {
            on_chip_mib: mib(compiled.report.on_chip_bytes),
            off_chip_mib: mib(compiled.report.off_chip_bytes),
            model: Arc::from(compiled.model),
        })
    };
    for single in &mut result.single {
        let model = single.family.model(single.size)?;
        let compiled = compile(model.to_bytes()?)?;
        let batch = setup.scheme(single.family).batch;
        // One stage: the batch runs back to back, one invoke after the other.
        single.ms = time_batch(backend, &[compiled.model], batch)?.per_item_s * 1e3;
        single.on_chip_mib = compiled.on_chip_mib;
        single.off_chip_mib = compiled.off_chip_mib;
    }
    for row in &mut result.pipeline {
        let model = row.family.model(row.size)?;
        let graph = Graph::new(&model)?;
        let Some(plan) = plan_for(
            row.family,
            &graph,
            &row.strategy,
            row.tpus,
            &setup.cost_model,
        )?
        else {
            continue;
        };
        let compiled = plan
            .extract(&graph)?
            .iter()
            .map(|m| compile(m.to_bytes()?))
            .collect::<Result<Vec<_>, _>>()?;
        let segments: Vec<Arc<[u8]>> = compiled.iter().map(|c| Arc::clone(&c.model)).collect();
        row.on_chip_mib = compiled.iter().map(|c| c.on_chip_mib).collect();
        row.off_chip_mib = compiled.iter().map(|c| c.off_chip_mib).collect();
        let scheme = setup.scheme(row.family);
        let timing = time_batch(backend, &segments, scheme.batch)?;
        row.ms_per_inference = timing.per_item_s * 1e3;
        row.paper_scheme_ms = scheme.per_item_s(&timing.stage_latency_s)? * 1e3;
        let single_ms = result
            .single
            .iter()
            .find(|s| s.family == row.family && s.size == row.size)
            .map_or(f64::NAN, |s| s.ms);
        row.speedup = single_ms / row.ms_per_inference;
    }
    Ok(())
}

fn write_single_csv(path: &Path, rows: &[SingleRow], family: Family) -> Result<(), Box<dyn Error>> {
    let mut text = String::from("size,on_chip_mib,off_chip_mib,ms\n");
    for r in rows.iter().filter(|r| r.family == family) {
        writeln!(
            text,
            "{},{:.4},{:.4},{:.4}",
            r.size, r.on_chip_mib, r.off_chip_mib, r.ms
        )?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn joined<T>(values: &[T], format: impl Fn(&T) -> String) -> String {
    values.iter().map(format).collect::<Vec<_>>().join(";")
}

fn write_pipeline_csv(
    path: &Path,
    rows: &[PipelineRow],
    family: Family,
) -> Result<(), Box<dyn Error>> {
    let mut text = String::from(
        "size,tpus,strategy,cuts,on_chip_mib,off_chip_mib,ms_per_inference,paper_scheme_ms,speedup\n",
    );
    for r in rows.iter().filter(|r| r.family == family) {
        writeln!(
            text,
            "{},{},{},{},{},{},{:.4},{:.4},{:.3}",
            r.size,
            r.tpus,
            r.strategy,
            joined(&r.cuts, usize::to_string),
            joined(&r.on_chip_mib, |v| format!("{v:.4}")),
            joined(&r.off_chip_mib, |v| format!("{v:.4}")),
            r.ms_per_inference,
            r.paper_scheme_ms,
            r.speedup
        )?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// The sweep's plots; returns the files written. The speedup panels also show the author's
/// measuring program over his splits (predicted), the measured speedups of `measured` and the
/// README's 4-device figures, and the paper's published figure.
fn plot_sweep(
    out: &Path,
    result: &SweepResult,
    label: &str,
    measured: &[(String, MeasuredSpeedup)],
) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut written = Vec::new();
    for family in [Family::Fc, Family::Conv] {
        let knob = match family {
            Family::Fc => "hidden neurons N",
            Family::Conv => "filters F",
        };
        let single: Vec<&SingleRow> = result
            .single
            .iter()
            .filter(|r| r.family == family)
            .collect();
        let series = |name: &str, value: fn(&SingleRow) -> f64| Series {
            name: name.to_string(),
            style: Style::Line,
            points: single.iter().map(|r| (r.size as f64, value(r))).collect(),
        };
        let time = [series("ms per inference", |r| r.ms)];
        let memory = [
            series("on-chip MiB", |r| r.on_chip_mib),
            series("off-chip MiB", |r| r.off_chip_mib),
        ];
        let time_title = format!("{family}: one device, time ({label})");
        let memory_title = format!("{family}: one device, parameters ({label})");
        let path = out.join(format!("{family}_single.svg"));
        plot::panels(
            &path,
            &format!("{family} on one device ({label})"),
            &[
                Chart {
                    title: &time_title,
                    x_label: knob,
                    y_label: "ms",
                    log_y: true,
                    series: &time,
                },
                Chart {
                    title: &memory_title,
                    x_label: knob,
                    y_label: "MiB",
                    log_y: false,
                    series: &memory,
                },
            ],
        )?;
        written.push(path);

        let path = out.join(format!("{family}_speedup.svg"));
        let panels = speedup_panels(result, family, label, measured);
        let charts: Vec<Chart> = panels
            .iter()
            .map(|(title, series)| Chart {
                title,
                x_label: knob,
                y_label: "speedup over one device",
                log_y: true,
                series,
            })
            .collect();
        plot::panels(&path, &format!("{family}: speedup ({label})"), &charts)?;
        written.push(path);
    }
    Ok(written)
}

/// One panel per device count: each strategy's predicted speedup with this library's
/// pipeline, the author's program over his splits, what was measured and what was published.
fn speedup_panels(
    result: &SweepResult,
    family: Family,
    label: &str,
    measured: &[(String, MeasuredSpeedup)],
) -> Vec<(String, Vec<Series>)> {
    let one_device = |size: usize| result.single_ms(family, size).unwrap_or(f64::NAN);
    let rows: Vec<&PipelineRow> = result
        .pipeline
        .iter()
        .filter(|r| r.family == family && r.tpus > 1)
        .collect();
    let mut device_counts: Vec<usize> = rows.iter().map(|r| r.tpus).collect();
    device_counts.sort_unstable();
    device_counts.dedup();
    let mut strategies: Vec<&str> = Vec::new();
    for r in &rows {
        if !strategies.contains(&r.strategy.as_str()) {
            strategies.push(&r.strategy);
        }
    }
    let four = measured_with_four_devices();
    let published = published_with_four_devices();
    device_counts
        .iter()
        .map(|&tpus| {
            let of = |strategy: &str| -> Vec<&PipelineRow> {
                rows.iter()
                    .filter(|r| r.tpus == tpus && r.strategy == strategy)
                    .copied()
                    .collect()
            };
            let mut series: Vec<Series> = strategies
                .iter()
                .map(|&s| Series {
                    name: s.to_string(),
                    style: Style::Line,
                    points: of(s).iter().map(|r| (r.size as f64, r.speedup)).collect(),
                })
                .collect();
            for &s in author_strategies(family) {
                series.push(Series {
                    name: format!("{s}, author's program"),
                    style: Style::Dashed,
                    points: of(s)
                        .iter()
                        .map(|r| (r.size as f64, one_device(r.size) / r.paper_scheme_ms))
                        .collect(),
                });
            }
            let mut splits: Vec<&str> = Vec::new();
            for (split, m) in measured {
                if m.family == family && m.tpus == tpus && !splits.contains(&split.as_str()) {
                    splits.push(split);
                }
            }
            for split in splits {
                series.push(Series {
                    name: format!("{split}, measured"),
                    style: Style::Points,
                    points: measured
                        .iter()
                        .filter(|(s, m)| s == split && m.family == family && m.tpus == tpus)
                        .map(|(_, m)| (m.size as f64, m.speedup))
                        .collect(),
                });
            }
            for m in four.iter().filter(|m| m.family == family && m.tpus == tpus) {
                series.push(Series {
                    name: "measured (README)".to_string(),
                    style: Style::Points,
                    points: vec![(m.size as f64, m.speedup)],
                });
            }
            for p in published
                .iter()
                .filter(|p| p.family == family && p.tpus == tpus)
            {
                series.push(Series {
                    name: format!("published: {:.0}x", p.speedup),
                    style: Style::Level,
                    points: vec![(0.0, p.speedup)],
                });
            }
            (format!("{tpus} devices ({label})"), series)
        })
        .collect()
}

/// `N = 2620` or `F = 682`.
fn size_label(family: Family, size: usize) -> String {
    match family {
        Family::Fc => format!("N={size}"),
        Family::Conv => format!("F={size}"),
    }
}

/// Whether a measured figure was in the fit: `fitted` (in-sample) or `not fitted`.
fn fit_label(measured: &MeasuredSpeedup) -> &'static str {
    if measured.fitted {
        "fitted"
    } else {
        "not fitted"
    }
}

/// One screen: per family and device count, the best speedup this library's pipeline is
/// predicted to reach, the author's measuring program over his splits (predicted), what the
/// raw files measured (fitted or not) and what the paper published, then where the published
/// figures come from.
fn print_headline(lines: &[Headline], label: &str, calibrated: bool) {
    println!("best speedup over one device (predicted: {label}):");
    println!(
        "  {:<15} {:<26} {:<25} {:<24} paper",
        "", "this library's pipeline", "author's program, splits", "measured (raw files)"
    );
    for line in lines {
        let family = line.family;
        let cell = |speedup: f64, size: usize, what: &str| {
            format!("{speedup:>5.1}x {} {what}", size_label(family, size))
        };
        let text = format!(
            "  {:<4} {} devices  {:<26} {:<25} {:<24} {}",
            family.name(),
            line.tpus,
            cell(line.ours.speedup, line.ours.size, &line.ours.strategy),
            line.authors
                .map_or(String::new(), |(r, s)| cell(s, r.size, &r.strategy)),
            line.measured
                .as_ref()
                .map_or(String::new(), |m| cell(m.speedup, m.size, fit_label(m))),
            line.published.map_or(String::new(), |p| format!("{p:.0}x")),
        );
        println!("{}", text.trim_end());
    }
    if calibrated {
        println!("  fitted: in the model's fit (in-sample); not fitted: kept aside, a consequence");
    } else {
        println!(
            "  measured: 4 devices from the calibration README (not fitted); 2 and 3 devices \
             with --calibration"
        );
    }
    let [fc, conv] = measured_with_four_devices();
    let [fc_paper, conv_paper] = published_with_four_devices();
    let notebook = notebook_copies_with_four_devices();
    let times = |m: &MeasuredSpeedup| {
        m.times_ms.map_or(String::new(), |(one, pipelined)| {
            format!(", {one}/{pipelined} ms")
        })
    };
    print_wrapped(&format!(
        "fc, 4 devices: the raw files give {:.1}x ({}{}); the paper prints {:.0}x.",
        fc.speedup,
        size_label(Family::Fc, fc.size),
        times(&fc),
        fc_paper.speedup
    ));
    print_wrapped(&format!(
        "conv, 4 devices: the raw files give {:.2}x ({}, profiled split{}); the paper prints \
         {:.0}x. Its notebook draws these speedups as {} x T1 / TS: the factor alone makes \
         {:.1}x. Its copies of the 4-device results differ from the raw files ({} of {} rows, by \
         up to {} ms, {} placement lists changed); the calibration README does not say which \
         rows, so the remaining gap to {:.0}x is attributed to those copies, not derived.",
        conv.speedup,
        size_label(Family::Conv, conv.size),
        times(&conv),
        conv_paper.speedup,
        notebook.factor,
        notebook.factor * conv.speedup,
        notebook.rows_differing,
        notebook.rows,
        notebook.max_difference_ms,
        notebook.placement_lists_changed,
        conv_paper.speedup,
    ));
}

/// Prints `text` indented by two spaces, wrapped at word boundaries to lines of at most 96
/// characters, continuation lines indented by four.
fn print_wrapped(text: &str) {
    const WIDTH: usize = 96;
    let mut line = String::from(" ");
    for word in text.split_whitespace() {
        if !line.trim().is_empty() && line.len() + 1 + word.len() > WIDTH {
            println!("{line}");
            line = String::from("   ");
        }
        line.push(' ');
        line.push_str(word);
    }
    println!("{line}");
}

/// Measured rows beside predictions: the errors per file (every file is in the fit), the
/// 4-device figures that were never fitted beside the headline's predictions of them, and
/// predicted-against-measured plots. Returns the files written.
fn compare(
    single: &[CalibrationPoint],
    pipelines: &[PipelinePoint],
    lines: &[Headline],
    out: &Path,
    setup: &Setup,
) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let rows = compare_with_calibration(single, pipelines, setup)?;

    println!(
        "measured (calibration) against predicted (1 device: cost model; more: and the \
         measuring program):"
    );
    let mut written = Vec::new();
    for series in errors_per_series(&rows) {
        let (family, split, tpus) = (
            series.series.family,
            series.series.split.as_str(),
            series.series.devices,
        );
        let cuts = series.strategy_median_error.map_or(String::new(), |e| {
            format!(" (this library's cuts: {:.1} %)", e * 100.0)
        });
        let devices = if tpus == 1 { "device: " } else { "devices:" };
        let family_name = family.name();
        println!(
            "  {family_name:<4} {split:<8} {tpus} {devices} {:>3} points, median |error| {:.1} %{cuts}, \
             fitted",
            series.series.points,
            series.series.median_error * 100.0
        );
        let mine: Vec<&Comparison> = rows
            .iter()
            .filter(|r| r.family == family && r.split == split && r.tpus == tpus)
            .collect();
        let title =
            format!("{family} {split}, {tpus} device(s): predicted (simulated) vs measured");
        let series = [Series {
            name: format!("{family} {split}"),
            style: Style::Points,
            points: mine
                .iter()
                .map(|r| (r.measured_ms, r.predicted_ms))
                .collect(),
        }];
        let path = out.join(format!("calibration_{family}_{split}_{tpus}tpu.svg"));
        plot::predicted_vs_measured(
            &path,
            &Chart {
                title: &title,
                x_label: "measured ms",
                y_label: "predicted ms",
                log_y: true,
                series: &series,
            },
        )?;
        written.push(path);
    }
    for line in lines {
        let (Some((row, predicted)), Some(measured)) = (line.authors, &line.measured) else {
            continue;
        };
        if measured.fitted {
            continue;
        }
        let family = line.family;
        println!(
            "  {:<4} {} devices: author's program {predicted:.2}x {}, measured {:.2}x {} \
             ({:+.1} %), {}",
            family.name(),
            line.tpus,
            size_label(family, row.size),
            measured.speedup,
            size_label(family, measured.size),
            (predicted / measured.speedup - 1.0) * 100.0,
            fit_label(measured)
        );
    }
    Ok(written)
}
