//! Fitting the [`EdgeTpuCostModel`] and the author's measuring programs to real
//! measurements.
//!
//! The measurements (`../shared/calibration` in this project, see its README) are CSV
//! files: one device per file at the top (`fc_*.csv`, `conv_*.csv`: size knob N or F, MACs,
//! on-chip MiB, off-chip MiB, milliseconds per inference) and, in `pipelines/`, the same
//! models cut into 2 and 3 segments on as many devices ([`load_pipeline_dir`]: lists per
//! segment, time per item of a batch as the author's program measured it, [`scheme`]).
//! Coral's published figures for real networks are the second source
//! ([`coral_usb_table`]: the benchmark zoo and rebuilt architectures, each row fitted or
//! only checked).
//!
//! [`fit`] rebuilds each measured model with [`multitpu::model::paper`], turns every
//! measured segment into a [`SegmentWorkload`] exactly as a segment of a real model would
//! be, and fits:
//!
//! 1. where parameters go: the on-chip budget and the largest cached tensor by an exact
//!    search over the single-device placements (the summed off-chip error is a step function
//!    of the budget, whose steps are enumerated for every class of per-tensor limit; the
//!    middle of the best interval is taken), then the input reserve over every segment of
//!    the multi-device runs too;
//! 2. every time coefficient together with the measuring programs' host costs: non-negative
//!    least squares on relative errors, robust to a few odd points, the pace of each
//!    pipeline (its slowest stage, or the Python threads' shared lock) chosen from the
//!    current coefficients, for every tile size of a grid. Each measured series weighs 1 in
//!    all, each fitted published figure [`PUBLISHED_WEIGHT`] ([`fit_with_weight`] takes
//!    another).
//!
//! The host's float conversions are never fitted here (the paper's models convert at most
//! 12 288 elements): they are timed on the CPU ([`time_host_conversions`]).
//!
//! Everything is deterministic: the same data gives the same figures.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::Path;

use crate::{Error, Result};
use multitpu::device::{EdgeTpuCostModel, MIB, SegmentWorkload};
use multitpu::model::{Model, paper};
use multitpu::profile::Profiler;

mod cpu;
mod lsq;
mod pipelines;
mod placement;
mod published;
pub mod scheme;
mod times;

pub use cpu::{
    CpuFitReport, CpuFitRow, CpuPoint, HostConversions, cpu_calibration_models, cpu_points,
    fit_cpu, time_host_conversions,
};
pub use lsq::median;
pub use pipelines::{
    PipelinePoint, infer_cuts, load_pipeline_dir, parse_pipeline_csv, parse_pipeline_file_name,
};

pub use published::{
    CORAL_USB_TABLE, MOBILENET_V2_FILE, Network, PublishedPoint, Role, TF2_MOBILENET_V2_FILE,
    TableRow, coral_usb_table, shared_model_checks,
};
pub use scheme::{MeasuringProgram, PaperScheme};

/// A family of the paper's synthetic models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Dense layers: 64 inputs → 4 × Dense(N, tanh) → Dense(10).
    Fc,
    /// Convolutions: 64×64×3 → 5 × Conv2D(F, 3×3, same, ReLU).
    Conv,
}

impl Family {
    /// Short name, as in the calibration file names.
    pub fn name(self) -> &'static str {
        match self {
            Family::Fc => "fc",
            Family::Conv => "conv",
        }
    }

    /// The family of a calibration file, from its name's prefix (`fc_` or `conv_`).
    pub fn from_file_name(name: &str) -> Option<Self> {
        if name.starts_with("fc_") {
            Some(Family::Fc)
        } else if name.starts_with("conv_") {
            Some(Family::Conv)
        } else {
            None
        }
    }

    /// The model of this family with size knob `size`, built by [`multitpu::model::paper`].
    ///
    /// # Errors
    ///
    /// As [`paper::fc`] and
    /// [`paper::conv`].
    pub fn model(self, size: usize) -> multitpu::Result<Model<'static>> {
        match self {
            Family::Fc => paper::fc(size),
            Family::Conv => paper::conv(size),
        }
    }

    /// The workload of the whole model of this family with size knob `size`, built as a
    /// real model by [`multitpu::model::paper`].
    ///
    /// # Errors
    ///
    /// As [`model`](Self::model).
    pub fn workload(self, size: usize) -> multitpu::Result<SegmentWorkload> {
        let model = self.model(size)?;
        Ok(SegmentWorkload::from_model(
            &model,
            0..model.operators.len(),
        ))
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One measured model: a row of a calibration file.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationPoint {
    /// Which of the paper's models was measured.
    pub family: Family,
    /// Hidden neurons N (fc) or filters F (conv).
    pub size: usize,
    /// MACs as the experiment counted them.
    pub macs: u64,
    /// MiB of parameters the compiler cached on chip.
    pub on_chip_mib: f64,
    /// MiB of parameters the compiler left in host memory.
    pub off_chip_mib: f64,
    /// Mean milliseconds of one inference.
    pub latency_ms: f64,
}

/// Parses the text of one calibration file (`path` only names it in errors). The first
/// non-blank line is the header, checked by name; every other non-blank line is a point.
///
/// # Errors
///
/// [`Error::Calibration`] naming the file and line of a missing column or an unreadable
/// value.
pub fn parse_csv(text: &str, family: Family, path: &Path) -> Result<Vec<CalibrationPoint>> {
    let error = |line: usize, reason: String| Error::Calibration {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut points = Vec::new();
    let mut header_seen = false;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 5 {
            return Err(error(
                line_no,
                format!("expected 5 comma-separated columns, found {}", fields.len()),
            ));
        }
        if !header_seen {
            check_header(&fields, family, path, line_no)?;
            header_seen = true;
            continue;
        }
        let integer = |column: usize| {
            fields[column].parse::<u64>().map_err(|e| {
                error(
                    line_no,
                    format!("column {}: `{}`: {e}", column + 1, fields[column]),
                )
            })
        };
        let number = |column: usize, positive: bool| {
            let value = fields[column].parse::<f64>().map_err(|e| {
                error(
                    line_no,
                    format!("column {}: `{}`: {e}", column + 1, fields[column]),
                )
            })?;
            let ok = value.is_finite() && if positive { value > 0.0 } else { value >= 0.0 };
            if ok {
                Ok(value)
            } else {
                Err(error(
                    line_no,
                    format!("column {}: {value} out of range", column + 1),
                ))
            }
        };
        let size =
            usize::try_from(integer(0)?).map_err(|e| error(line_no, format!("column 1: {e}")))?;
        if size == 0 {
            return Err(error(line_no, "column 1: size 0".to_owned()));
        }
        points.push(CalibrationPoint {
            family,
            size,
            macs: integer(1)?,
            on_chip_mib: number(2, false)?,
            off_chip_mib: number(3, false)?,
            latency_ms: number(4, true)?,
        });
    }
    if !header_seen {
        return Err(error(0, "empty file".to_owned()));
    }
    Ok(points)
}

/// The header every calibration file starts with (single- and multi-device alike).
fn expected_header(family: Family) -> [&'static str; 5] {
    let knob = match family {
        Family::Fc => "Hidden neurons",
        Family::Conv => "Num filters",
    };
    [
        knob,
        "# MACs",
        "On chip mem used",
        "Off chip mem used",
        "Inference time",
    ]
}

/// Checks that `columns`, line `line` of `path`, is the header of a `family` file: a file
/// without it would lose its first measurement to a header that is not there, and one with
/// its columns in another order would be read into the wrong fields.
pub(crate) fn check_header(
    columns: &[&str],
    family: Family,
    path: &Path,
    line: usize,
) -> Result<()> {
    let expected = expected_header(family);
    if columns == expected {
        return Ok(());
    }
    Err(Error::Calibration {
        path: path.to_path_buf(),
        line,
        reason: format!(
            "expected the header `{}`, found `{}`",
            expected.join(","),
            columns.join(",")
        ),
    })
}

/// Reads every `*.csv` of `dir` (in file-name order); each name must start with `fc_` or
/// `conv_`. Errors if there is none.
///
/// # Errors
///
/// [`Error::Io`] if the folder or a file cannot be read; [`Error::Calibration`] for a
/// misnamed or malformed file, or a folder without one.
pub fn load_dir(dir: &Path) -> Result<Vec<CalibrationPoint>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let files = pipelines::csv_files(dir)?;
    let mut points = Vec::new();
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let family = name
            .as_deref()
            .and_then(Family::from_file_name)
            .ok_or_else(|| Error::Calibration {
                path: path.clone(),
                line: 0,
                reason: "file name must start with `fc_` or `conv_`".to_owned(),
            })?;
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        points.extend(parse_csv(&text, family, &path)?);
    }
    Ok(points)
}

/// Measures the whole paper model of `family` with size knob `size` (built by
/// [`paper::fc`] or [`paper::conv`]) with `profiler`, as a point for
/// [`fit`].
///
/// With an [`EdgeTpuProfiler`](multitpu::profile::EdgeTpuProfiler), points for a range of sizes re-fit the
/// [`EdgeTpuCostModel`] to the caller's host, link and device.
/// The point's latency is the profiler's median (the shipped calibration files hold means).
///
/// # Errors
///
/// As the model's builder and the profiler's `profile`.
pub fn calibration_point(
    profiler: &impl Profiler,
    family: Family,
    size: usize,
) -> Result<CalibrationPoint> {
    let model = match family {
        Family::Fc => paper::fc(size)?,
        Family::Conv => paper::conv(size)?,
    };
    let ops = 0..model.operators.len();
    let profile = profiler.profile(&model, ops.clone())?;
    Ok(CalibrationPoint {
        family,
        size,
        macs: SegmentWorkload::from_model(&model, ops)
            .ops
            .iter()
            .map(|op| op.macs)
            .sum(),
        on_chip_mib: profile.on_chip_bytes as f64 / MIB,
        off_chip_mib: profile.off_chip_bytes as f64 / MIB,
        latency_ms: profile.latency_s * 1e3,
    })
}

/// Measured against predicted, for one calibration point.
#[derive(Debug, Clone, PartialEq)]
pub struct FitRow {
    /// The point's model family.
    pub family: Family,
    /// The point's size knob (N or F).
    pub size: usize,
    /// Measured milliseconds per inference.
    pub measured_ms: f64,
    /// Predicted milliseconds per inference.
    pub predicted_ms: f64,
    /// Parameters the compiler cached on chip, MiB.
    pub measured_on_chip_mib: f64,
    /// Parameters the model places on chip, MiB.
    pub predicted_on_chip_mib: f64,
    /// Parameters the compiler left off chip, MiB.
    pub measured_off_chip_mib: f64,
    /// Parameters the model leaves off chip, MiB.
    pub predicted_off_chip_mib: f64,
}

/// Absolute errors of one family's points.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyErrors {
    /// The family.
    pub family: Family,
    /// How many points it has.
    pub points: usize,
    /// Median absolute latency error, ms.
    pub median_ms: f64,
    /// Largest absolute latency error, ms.
    pub worst_ms: f64,
    /// Median absolute error of off-chip parameters, MiB.
    pub median_off_chip_mib: f64,
    /// Largest absolute error of off-chip parameters, MiB.
    pub worst_off_chip_mib: f64,
}

/// The placement of one segment of a multi-device measurement, measured against predicted.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentPlacementRow {
    /// The point's model family.
    pub family: Family,
    /// How the point's model was cut ([`PipelinePoint::split`]).
    pub split: String,
    /// The point's size knob (N or F).
    pub size: usize,
    /// The cuts found from the segments' parameter totals ([`infer_cuts`]).
    pub cuts: Vec<usize>,
    /// Which segment.
    pub segment: usize,
    /// Parameters the compiler cached on chip, MiB.
    pub measured_on_chip_mib: f64,
    /// Parameters the model places on chip, MiB.
    pub predicted_on_chip_mib: f64,
    /// Parameters the compiler left off chip, MiB.
    pub measured_off_chip_mib: f64,
    /// Parameters the model leaves off chip, MiB.
    pub predicted_off_chip_mib: f64,
}

/// A published figure of a real model, against the fitted prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedRow {
    /// The model's name in the published table.
    pub name: String,
    /// Whether the figure was fitted, only checked, or only reported.
    pub role: Role,
    /// Published milliseconds per inference.
    pub published_ms: f64,
    /// Predicted milliseconds per inference.
    pub predicted_ms: f64,
    /// For a fitted figure, the model fitted without it (leave one out): how well the fit
    /// predicts a real network it has not seen.
    pub left_out: LeftOut,
}

/// What the fit without a published figure says of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeftOut {
    /// The figure is not fitted (a check or a report): no fit sees it.
    NotFitted,
    /// The prediction, ms, of the model fitted without the figure.
    Predicted(f64),
    /// The figure alone pins this parameter (the only network of the fit with such
    /// operators), so the fit without it cannot price the network.
    SoleSource(&'static str),
}

impl PublishedRow {
    /// `predicted / published − 1`.
    pub fn error(&self) -> f64 {
        self.error_of(self.predicted_ms)
    }

    /// `ms / published − 1`.
    pub fn error_of(&self, ms: f64) -> f64 {
        ms / self.published_ms - 1.0
    }

    /// `left_out / published − 1`, for a fitted figure that the fit without it can price.
    pub fn left_out_error(&self) -> Option<f64> {
        match self.left_out {
            LeftOut::Predicted(ms) => Some(self.error_of(ms)),
            LeftOut::NotFitted | LeftOut::SoleSource(_) => None,
        }
    }
}

/// The median relative time error of one measured series: a calibration file (family,
/// split, device count), predicted by the fitted model (and, for several devices, the fitted
/// measuring program).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesError {
    /// Model family.
    pub family: Family,
    /// `single` for one device, else the split (`layers`, `compiler`, `profiled`).
    pub split: String,
    /// Devices.
    pub devices: usize,
    /// Measured rows.
    pub points: usize,
    /// Median of |predicted − measured| / measured.
    pub median_error: f64,
}

/// The outcome of [`fit`]: the fitted model and how well it matches each point.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport {
    /// The fitted model.
    pub model: EdgeTpuCostModel,
    /// The fc runs' measuring program, its host costs fitted.
    pub fc_scheme: PaperScheme,
    /// The conv runs' measuring program, its host costs fitted.
    pub conv_scheme: PaperScheme,
    /// One row per single-device point, in input order.
    pub rows: Vec<FitRow>,
    /// One entry per family present, fc first.
    pub families: Vec<FamilyErrors>,
    /// One row per segment of every multi-device point, in input order.
    pub segments: Vec<SegmentPlacementRow>,
    /// One entry per measured series, single-device first, then by family, split and devices.
    pub series: Vec<SeriesError>,
    /// One row per published figure, in input order.
    pub published: Vec<PublishedRow>,
}

impl FitReport {
    /// The errors of `family`, if it had points.
    pub fn family(&self, family: Family) -> Option<&FamilyErrors> {
        self.families.iter().find(|f| f.family == family)
    }

    /// The measuring program of `family`'s runs.
    pub fn scheme(&self, family: Family) -> &PaperScheme {
        match family {
            Family::Fc => &self.fc_scheme,
            Family::Conv => &self.conv_scheme,
        }
    }
}

/// The weight of one fitted published figure in [`fit`], where each measured series (a
/// calibration file) weighs 1 in all.
///
/// The two sources were measured on different hosts, which stream parameters at different
/// rates: more weight pulls the fitted rate towards Coral's host, less towards the author's.
/// The weight is chosen by a rule that sees only fitted data ([`choose_published_weight`]):
/// the largest weight in tenths at which every measured series keeps a median error within
/// [`SERIES_ERROR_BAR`]. `calibrate --choose-weight` prints the sweep; docs/cost-model.md
/// shows it.
pub const PUBLISHED_WEIGHT: f64 = 0.9;

/// The median relative error every measured series (a calibration file) is held to.
pub const SERIES_ERROR_BAR: f64 = 0.10;

/// The fit at one published weight, as [`choose_published_weight`] tries it.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightTrial {
    /// The weight of each fitted published figure.
    pub weight: f64,
    /// The measured series with the largest median error at this weight.
    pub worst: SeriesError,
}

/// Fits at every published weight from 0.1 to 1 in tenths and returns the trials and the
/// weight the rule picks: the largest whose worst measured series stays within
/// [`SERIES_ERROR_BAR`] (`None` if none does). Only fitted data enter the rule: the
/// measured series and, through the fit, the published rows whose role is [`Role::Fit`];
/// the checked rows are not looked at.
///
/// # Errors
///
/// As [`fit`].
pub fn choose_published_weight(
    points: &[CalibrationPoint],
    pipelines: &[PipelinePoint],
    published: &[PublishedPoint],
    start: &EdgeTpuCostModel,
) -> Result<(Vec<WeightTrial>, Option<f64>)> {
    let mut trials = Vec::new();
    for tenths in 1..=10 {
        let weight = f64::from(tenths) / 10.0;
        let report = fit_inner(points, pipelines, published, start, weight, false)?;
        let worst = report
            .series
            .iter()
            .max_by(|a, b| a.median_error.total_cmp(&b.median_error))
            .cloned()
            .ok_or_else(|| Error::invalid("calibration points", "no measured series"))?;
        trials.push(WeightTrial { weight, worst });
    }
    let chosen = trials
        .iter()
        .rev()
        .find(|t| t.worst.median_error <= SERIES_ERROR_BAR)
        .map(|t| t.weight);
    Ok((trials, chosen))
}

/// The measuring program that timed `family`'s multi-device runs, with its built-in host
/// costs: the fc runs' Python threads, the conv runs' pycoral runner.
pub fn built_in_scheme(family: Family) -> PaperScheme {
    match family {
        Family::Fc => PaperScheme::python_threads(),
        Family::Conv => PaperScheme::pycoral_runner(),
    }
}

/// Fits the cost model and the measuring programs to the measurements:
///
/// 1. placement: the on-chip budget and the largest cached tensor on the single-device
///    `points`, then the input reserve on every segment of the multi-device `pipelines` too;
/// 2. times: every coefficient of the latency and the programs' host costs together, on the
///    single-device times, the multi-device times through the programs, and the published
///    figures of `published` whose role is [`Role::Fit`].
///
/// Every published figure is then predicted; a fitted one also by the model fitted without
/// it. Parameters without data keep their values from `start` (without `pipelines`, the
/// input reserve and the programs' costs); the host's float conversions always do (timed on
/// the CPU: [`time_host_conversions`]).
///
/// Each fitted published figure weighs [`PUBLISHED_WEIGHT`]; [`fit_with_weight`] takes
/// another.
///
/// # Errors
///
/// If `points` is empty, a paper model cannot be built, or a multi-device point's segment
/// totals fit no cut of its model.
pub fn fit(
    points: &[CalibrationPoint],
    pipelines: &[PipelinePoint],
    published: &[PublishedPoint],
    start: &EdgeTpuCostModel,
) -> Result<FitReport> {
    fit_with_weight(points, pipelines, published, start, PUBLISHED_WEIGHT)
}

/// [`fit`] with each fitted published figure weighing `published_weight` (each measured
/// series weighs 1 in all).
///
/// # Errors
///
/// As [`fit`], and for a weight that is negative or not finite.
pub fn fit_with_weight(
    points: &[CalibrationPoint],
    pipelines: &[PipelinePoint],
    published: &[PublishedPoint],
    start: &EdgeTpuCostModel,
    published_weight: f64,
) -> Result<FitReport> {
    fit_inner(points, pipelines, published, start, published_weight, true)
}

/// [`fit_with_weight`]; with `leave_out`, each fitted published figure is also predicted by
/// the fit without it (one more fit per figure).
fn fit_inner(
    points: &[CalibrationPoint],
    pipelines: &[PipelinePoint],
    published: &[PublishedPoint],
    start: &EdgeTpuCostModel,
    published_weight: f64,
    leave_out: bool,
) -> Result<FitReport> {
    if points.is_empty() {
        return Err(Error::invalid("calibration points", "none given"));
    }
    if !(published_weight.is_finite() && published_weight >= 0.0) {
        return Err(Error::invalid(
            "published weight",
            format!("{published_weight} must be finite and not negative"),
        ));
    }
    let mut models: HashMap<(Family, usize), Model<'static>> = HashMap::new();
    for (family, size) in points
        .iter()
        .map(|p| (p.family, p.size))
        .chain(pipelines.iter().map(|p| (p.family, p.size)))
    {
        if let Entry::Vacant(slot) = models.entry((family, size)) {
            slot.insert(family.model(size)?);
        }
    }
    // Every measured segment, once: single-device models first, then each run's segments.
    let mut workloads: Vec<SegmentWorkload> = points
        .iter()
        .map(|p| {
            let m = &models[&(p.family, p.size)];
            SegmentWorkload::from_model(m, 0..m.operators.len())
        })
        .collect();
    let mut runs: Vec<(Vec<usize>, Vec<usize>)> = Vec::new(); // (cuts, workload indices)
    for p in pipelines {
        let model = &models[&(p.family, p.size)];
        let cuts = p.cuts(model)?;
        let bounds: Vec<usize> = std::iter::once(0)
            .chain(cuts.iter().copied())
            .chain(std::iter::once(model.operators.len()))
            .collect();
        let mut stages = Vec::new();
        for range in bounds.windows(2) {
            stages.push(workloads.len());
            workloads.push(SegmentWorkload::from_model(model, range[0]..range[1]));
        }
        runs.push((cuts, stages));
    }

    let mut model = start.clone();
    let single_placements: Vec<(f64, &SegmentWorkload)> = points
        .iter()
        .zip(&workloads)
        .map(|(p, w)| (p.off_chip_mib, w))
        .collect();
    if !pipelines.is_empty() {
        model.input_reserve = 0.0;
    }
    placement::fit_placement(&mut model, &single_placements);
    if !pipelines.is_empty() {
        let mut measured = single_placements.clone();
        for (p, (_, stages)) in pipelines.iter().zip(&runs) {
            for (segment, &w) in stages.iter().enumerate() {
                measured.push((p.off_chip_mib[segment], &workloads[w]));
            }
        }
        placement::fit_input_reserve(&mut model, &measured);
    }

    // Observations: each series weighs 1 in all, each fitted published figure 1.
    let series_key =
        |family: Family, split: &str, devices: usize| (family, split.to_owned(), devices);
    let mut series_sizes: HashMap<(Family, String, usize), usize> = HashMap::new();
    for p in points {
        *series_sizes
            .entry(series_key(p.family, "single", 1))
            .or_default() += 1;
    }
    for p in pipelines {
        *series_sizes
            .entry(series_key(p.family, &p.split, p.devices()))
            .or_default() += 1;
    }
    let weight = |key: (Family, String, usize)| 1.0 / (series_sizes[&key] as f64).sqrt();
    let mut observations: Vec<times::Observation> = points
        .iter()
        .enumerate()
        .map(|(i, p)| times::Observation {
            timed: times::Timed::Alone(i),
            measured_s: p.latency_ms * 1e-3,
            weight: weight(series_key(p.family, "single", 1)),
        })
        .collect();
    for (p, (_, stages)) in pipelines.iter().zip(&runs) {
        let scheme = built_in_scheme(p.family);
        observations.push(times::Observation {
            timed: times::Timed::Pipeline {
                stages: stages.clone(),
                program: scheme.program,
                batch: scheme.batch,
            },
            measured_s: p.latency_ms * 1e-3,
            weight: weight(series_key(p.family, &p.split, p.devices())),
        });
    }
    let mut fitted_published = Vec::new(); // (index in `published`, observation index)
    for (i, p) in published.iter().enumerate() {
        if p.role == Role::Fit {
            fitted_published.push((i, observations.len()));
            observations.push(times::Observation {
                timed: times::Timed::Alone(workloads.len()),
                measured_s: p.latency_ms * 1e-3,
                weight: published_weight,
            });
            workloads.push(p.workload.clone());
        }
    }
    let python = built_in_scheme(Family::Fc);
    let runner = built_in_scheme(Family::Conv);
    let fitted = times::fit_times(&model, &python, &runner, &workloads, &observations);
    let left_out: HashMap<usize, LeftOut> = fitted_published
        .iter()
        .filter(|_| leave_out)
        .map(|&(i, o)| {
            if let Some(parameter) = times::sole_source(&model, &workloads, &observations, o) {
                return (i, LeftOut::SoleSource(parameter));
            }
            let mut others = observations.clone();
            others.remove(o);
            let without = times::fit_times(&model, &python, &runner, &workloads, &others);
            let ms = without.model.predict(&published[i].workload).latency_s * 1e3;
            (i, LeftOut::Predicted(ms))
        })
        .collect();
    let times::TimeFit {
        model,
        python: fc_scheme,
        runner: conv_scheme,
    } = fitted;

    let rows: Vec<FitRow> = points
        .iter()
        .zip(&workloads)
        .map(|(p, w)| {
            let prediction = model.predict(w);
            FitRow {
                family: p.family,
                size: p.size,
                measured_ms: p.latency_ms,
                predicted_ms: prediction.latency_s * 1e3,
                measured_on_chip_mib: p.on_chip_mib,
                predicted_on_chip_mib: prediction.on_chip_bytes as f64 / MIB,
                measured_off_chip_mib: p.off_chip_mib,
                predicted_off_chip_mib: prediction.off_chip_bytes as f64 / MIB,
            }
        })
        .collect();
    let families = [Family::Fc, Family::Conv]
        .into_iter()
        .filter_map(|family| family_errors(family, &rows))
        .collect();
    let mut segments = Vec::new();
    let mut errors: Vec<((Family, String, usize), f64)> = rows
        .iter()
        .map(|r| {
            let key = series_key(r.family, "single", 1);
            (key, (r.predicted_ms / r.measured_ms - 1.0).abs())
        })
        .collect();
    for (p, (cuts, stages)) in pipelines.iter().zip(&runs) {
        let predictions: Vec<_> = stages
            .iter()
            .map(|&w| model.predict(&workloads[w]))
            .collect();
        for (segment, prediction) in predictions.iter().enumerate() {
            segments.push(SegmentPlacementRow {
                family: p.family,
                split: p.split.clone(),
                size: p.size,
                cuts: cuts.clone(),
                segment,
                measured_on_chip_mib: p.on_chip_mib[segment],
                predicted_on_chip_mib: prediction.on_chip_bytes as f64 / MIB,
                measured_off_chip_mib: p.off_chip_mib[segment],
                predicted_off_chip_mib: prediction.off_chip_bytes as f64 / MIB,
            });
        }
        let scheme = match p.family {
            Family::Fc => &fc_scheme,
            Family::Conv => &conv_scheme,
        };
        let latencies: Vec<f64> = predictions.iter().map(|q| q.latency_s).collect();
        let predicted_ms = scheme.per_item_s(&latencies)? * 1e3;
        errors.push((
            series_key(p.family, &p.split, p.devices()),
            (predicted_ms / p.latency_ms - 1.0).abs(),
        ));
    }
    let mut keys: Vec<(Family, String, usize)> = series_sizes.into_keys().collect();
    keys.sort_by(|a, b| (a.2, a.0, &a.1).cmp(&(b.2, b.0, &b.1)));
    let series = keys
        .into_iter()
        .map(|key| {
            let mine: Vec<f64> = errors
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, e)| *e)
                .collect();
            SeriesError {
                family: key.0,
                split: key.1,
                devices: key.2,
                points: mine.len(),
                median_error: median(&mine),
            }
        })
        .collect();
    let published = published
        .iter()
        .enumerate()
        .map(|(i, p)| PublishedRow {
            name: p.name.clone(),
            role: p.role,
            published_ms: p.latency_ms,
            predicted_ms: model.predict(&p.workload).latency_s * 1e3,
            left_out: left_out.get(&i).copied().unwrap_or(LeftOut::NotFitted),
        })
        .collect();
    Ok(FitReport {
        model,
        fc_scheme,
        conv_scheme,
        rows,
        families,
        segments,
        series,
        published,
    })
}

fn family_errors(family: Family, rows: &[FitRow]) -> Option<FamilyErrors> {
    let mine: Vec<&FitRow> = rows.iter().filter(|r| r.family == family).collect();
    if mine.is_empty() {
        return None;
    }
    let ms: Vec<f64> = mine
        .iter()
        .map(|r| (r.predicted_ms - r.measured_ms).abs())
        .collect();
    let off: Vec<f64> = mine
        .iter()
        .map(|r| (r.predicted_off_chip_mib - r.measured_off_chip_mib).abs())
        .collect();
    Some(FamilyErrors {
        family,
        points: mine.len(),
        median_ms: median(&ms),
        worst_ms: ms.iter().copied().fold(0.0, f64::max),
        median_off_chip_mib: median(&off),
        worst_off_chip_mib: off.iter().copied().fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FC_CSV: &str = "Hidden neurons,# MACs,On chip mem used,Off chip mem used,Inference time
100,37400,0.050537109375,0.0,0.11334754526615143

1620,7993080,5.34,2.57,7.423567585647106
";

    #[test]
    fn parses_a_calibration_file() {
        let points = parse_csv(FC_CSV, Family::Fc, Path::new("fc_test.csv")).expect("valid");
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].size, 1620);
        assert_eq!(points[1].macs, 7_993_080);
        assert_eq!(points[1].on_chip_mib, 5.34);
        assert_eq!(points[1].off_chip_mib, 2.57);
        assert!((points[1].latency_ms - 7.4236).abs() < 1e-4);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        const H: &str = "Num filters,# MACs,On chip mem used,Off chip mem used,Inference time";
        let cases = [
            (format!("{H}\n1,2,3\n"), 2),
            (format!("{H}\n1,2,x,0,1\n"), 2),
            (format!("{H}\n1,2,0,0,1\n1,2,0,-1,1\n"), 3),
            (format!("{H}\n1,2,0,0,0\n"), 2),
            (format!("{H}\n0,2,0,0,1\n"), 2),
            (format!("{H}\n1,2,0,0,inf\n"), 2),
            (format!("{H}\n1,2,0,0,NaN\n"), 2),
            (format!("{H}\n1,2,NaN,0,1\n"), 2),
            (format!("{H}\n1,2,0,0,-3\n"), 2),
            // No header: the first measurement is not taken for one.
            ("32,1,0.1,0,2.1\n64,1,0.2,0,3.1\n".to_owned(), 1),
            // Columns in another order, and an fc header on a conv file.
            (
                "Num filters,# MACs,Off chip mem used,On chip mem used,Inference time\n".to_owned(),
                1,
            ),
            (
                format!("\n{}\n", FC_CSV.lines().next().unwrap_or_default()),
                2,
            ),
            (String::new(), 0),
        ];
        for (text, line) in cases {
            match parse_csv(&text, Family::Conv, Path::new("conv_x.csv")) {
                Err(Error::Calibration { path, line: l, .. }) => {
                    assert_eq!(path, Path::new("conv_x.csv"));
                    assert_eq!(l, line, "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn family_from_file_name() {
        assert_eq!(Family::from_file_name("fc_single.csv"), Some(Family::Fc));
        assert_eq!(
            Family::from_file_name("conv_single.csv"),
            Some(Family::Conv)
        );
        assert_eq!(Family::from_file_name("mobilenet.csv"), None);
    }

    #[test]
    fn load_dir_errors() {
        let missing = Path::new("/nonexistent/multitpu-calibration");
        assert!(matches!(load_dir(missing), Err(Error::Io { .. })));
        let dir = std::env::temp_dir().join(format!("multitpu-cal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert!(matches!(load_dir(&dir), Err(Error::Calibration { .. })));
        std::fs::write(dir.join("other.csv"), FC_CSV).expect("write");
        assert!(matches!(
            load_dir(&dir),
            Err(Error::Calibration { line: 0, .. })
        ));
        std::fs::remove_file(dir.join("other.csv")).expect("remove");
        std::fs::write(dir.join("fc_a.csv"), FC_CSV).expect("write");
        assert_eq!(load_dir(&dir).expect("valid").len(), 2);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn fit_needs_points() {
        assert!(fit(&[], &[], &[], &EdgeTpuCostModel::usb_default()).is_err());
        let point = CalibrationPoint {
            family: Family::Fc,
            size: 100,
            macs: 0,
            on_chip_mib: 0.05,
            off_chip_mib: 0.0,
            latency_ms: 0.1,
        };
        for weight in [-1.0, f64::NAN, f64::INFINITY] {
            let start = EdgeTpuCostModel::usb_default();
            let fitted = fit_with_weight(std::slice::from_ref(&point), &[], &[], &start, weight);
            assert!(matches!(fitted, Err(Error::Invalid { .. })), "{weight}");
        }
    }

    /// Measurements made by a known model and known measuring programs (one device, 2- and
    /// 3-device pipelines, published networks) are fitted back to the same figures: every
    /// rate, the per-op cost, the programs' host costs, and the tile's passes.
    #[test]
    fn fit_recovers_a_known_model() {
        use crate::architectures;
        let mut truth = EdgeTpuCostModel {
            stream_bytes_per_s: 350e6,
            tile_bytes: 786_432,
            input_bytes_per_s: 150e6,
            output_bytes_per_s: 90e6,
            invoke_overhead_s: 0.2e-3,
            per_op_s: 5e-6,
            concat_bytes_per_s: 1e9,
            ..EdgeTpuCostModel::usb_default()
        };
        truth.macs_per_s.fully_connected = 50e9;
        truth.macs_per_s.conv2d = 1.2e12;
        truth.macs_per_s.transpose_conv = 1.2e12;
        truth.macs_per_s.depthwise_conv2d = 0.1e12;
        let python = PaperScheme {
            per_stage_item_s: 0.25e-3,
            per_batch_s: 2e-3,
            ..PaperScheme::python_threads()
        };
        let runner = PaperScheme {
            per_stage_item_s: 0.05e-3,
            per_batch_s: 3e-3,
            ..PaperScheme::pycoral_runner()
        };
        let single: Vec<CalibrationPoint> = [
            (Family::Fc, 200),
            (Family::Fc, 1200),
            (Family::Fc, 1700),
            (Family::Fc, 2100),
            (Family::Fc, 2400),
            (Family::Conv, 64),
            (Family::Conv, 200),
            (Family::Conv, 400),
            (Family::Conv, 480),
            (Family::Conv, 560),
            (Family::Conv, 660),
        ]
        .into_iter()
        .map(|(family, size)| {
            let p = truth.predict(&family.workload(size).expect("builds"));
            CalibrationPoint {
                family,
                size,
                macs: 0,
                on_chip_mib: p.on_chip_bytes as f64 / MIB,
                off_chip_mib: p.off_chip_bytes as f64 / MIB,
                latency_ms: p.latency_s * 1e3,
            }
        })
        .collect();
        let mut pipelines = Vec::new();
        for (family, sizes, cuts) in [
            (Family::Fc, [300, 1800, 2400], vec![vec![5], vec![3, 7]]),
            (Family::Conv, [64, 300, 500], vec![vec![3], vec![3, 4]]),
        ] {
            for size in sizes {
                for cuts in &cuts {
                    let model = family.model(size).expect("builds");
                    let bounds: Vec<usize> = std::iter::once(0)
                        .chain(cuts.iter().copied())
                        .chain(std::iter::once(model.operators.len()))
                        .collect();
                    let stages: Vec<_> = bounds
                        .windows(2)
                        .map(|r| truth.predict(&SegmentWorkload::from_model(&model, r[0]..r[1])))
                        .collect();
                    let latencies: Vec<f64> = stages.iter().map(|p| p.latency_s).collect();
                    let scheme = if family == Family::Fc {
                        &python
                    } else {
                        &runner
                    };
                    pipelines.push(PipelinePoint {
                        family,
                        size,
                        split: format!("split{}", cuts.len() + 1),
                        macs: 0,
                        on_chip_mib: stages
                            .iter()
                            .map(|p| p.on_chip_bytes as f64 / MIB)
                            .collect(),
                        off_chip_mib: stages
                            .iter()
                            .map(|p| p.off_chip_bytes as f64 / MIB)
                            .collect(),
                        latency_ms: scheme.per_item_s(&latencies).expect("times") * 1e3,
                    });
                }
            }
        }
        let published: Vec<PublishedPoint> = [
            architectures::mobilenet_v1(1.0, 224),
            architectures::mobilenet_v1(0.5, 160),
            architectures::inception_v1(),
        ]
        .into_iter()
        .map(|model| {
            let model = model.expect("builds");
            let mut point = PublishedPoint::whole("net", Role::Fit, &model, 0.0);
            point.latency_ms = truth.predict(&point.workload).latency_s * 1e3;
            point
        })
        .collect();
        let report = fit(
            &single,
            &pipelines,
            &published,
            &EdgeTpuCostModel::usb_default(),
        )
        .expect("fits");
        let m = &report.model;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs();
        assert!(close(m.stream_bytes_per_s, 350e6), "{m:?}");
        assert!(close(m.input_bytes_per_s, 150e6), "{m:?}");
        assert!(close(m.output_bytes_per_s, 90e6), "{m:?}");
        assert!(close(m.invoke_overhead_s, 0.2e-3), "{m:?}");
        assert!(close(m.per_op_s, 5e-6), "{m:?}");
        assert!(close(m.concat_bytes_per_s, 1e9), "{m:?}");
        assert!(close(m.macs_per_s.fully_connected, 50e9), "{m:?}");
        assert!(close(m.macs_per_s.conv2d, 1.2e12), "{m:?}");
        assert!(close(m.macs_per_s.depthwise_conv2d, 0.1e12), "{m:?}");
        for (fitted, known) in [(&report.fc_scheme, &python), (&report.conv_scheme, &runner)] {
            assert!(
                close(fitted.per_stage_item_s, known.per_stage_item_s),
                "{fitted:?}"
            );
            assert!(close(fitted.per_batch_s, known.per_batch_s), "{fitted:?}");
        }
        // The tile may differ where no output tells it apart; every prediction may not.
        for s in &report.series {
            assert!(s.median_error < 1e-6, "{s:?}");
        }
        for row in &report.published {
            assert!(close(row.predicted_ms, row.published_ms), "{row:?}");
        }
    }
}
