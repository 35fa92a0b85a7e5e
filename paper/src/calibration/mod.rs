//! Fitting the [`EdgeTpuCostModel`] to real single-device measurements.
//!
//! The measurements (`../shared/calibration` in this project, see its README) are CSV
//! files, one per model family, with columns: size knob (hidden neurons N or filters F),
//! MACs, on-chip MiB, off-chip MiB, milliseconds per inference. The file name says the
//! family: `fc_*.csv` or `conv_*.csv`.
//!
//! [`fit`] rebuilds each measured model with [`multitpu::model::paper`], turns it into a
//! [`SegmentWorkload`] exactly as a segment of a real model would be, and fits:
//!
//! 1. the placement parameters (on-chip budget and largest cached tensor), by an exact
//!    search minimising the summed absolute error of predicted off-chip MiB: the error is a
//!    step function of the budget, whose steps are enumerated for every class of per-tensor
//!    limit; the middle of the best budget interval is taken;
//! 2. the time parameters, by least squares on the relative time error (the latency is
//!    linear in the inverse rates once the placement is known), keeping every coefficient
//!    non-negative. The paper's models determine the invoke overhead, the fc and conv rates,
//!    streaming and transfers; published figures of real models ([`coral_usb_benchmarks`])
//!    determine what the paper's models do not have: the depthwise rate and the per-op
//!    cost. Each group is fitted on its own data with the other group's terms held fixed,
//!    alternately, until neither changes (the per-op cost enters both: the paper's models
//!    run 5 or 9 ops on the device). The activation rate of ops without MACs and the host's
//!    conversion cost are not fitted here (no data here pins them; the second is timed on
//!    the CPU, [`time_host_conversions`]).
//!
//! Everything is deterministic: the same data gives the same figures.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::Path;

use crate::{Error, Result};
use multitpu::device::cost_model::{EdgeTpuCostModel, MIB, SegmentWorkload};
use multitpu::model::figures::OpKind;
use multitpu::model::{Model, paper};
use multitpu::profile::Profiler;

mod cpu;
mod pipelines;
mod published;

pub use cpu::{
    CpuFitReport, CpuFitRow, CpuPoint, HostConversions, cpu_calibration_models, cpu_points,
    fit_cpu, time_host_conversions,
};
pub use pipelines::{
    PipelinePoint, infer_cuts, load_pipeline_dir, parse_pipeline_csv, parse_pipeline_file_name,
};
pub use published::{
    MOBILENET_V2_FILE, PublishedPoint, TF2_MOBILENET_V2_FILE, coral_usb_benchmarks,
    coral_usb_checks,
};

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
/// non-blank line is the header; every other non-blank line is a point.
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
    /// Published milliseconds per inference.
    pub published_ms: f64,
    /// Predicted milliseconds per inference.
    pub predicted_ms: f64,
    /// Predicted milliseconds by the model fitted without this figure (leave one out): how
    /// well the model predicts a real model it has not seen.
    pub left_out_ms: f64,
}

/// The outcome of [`fit`]: the fitted model and how well it matches each point.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport {
    /// The fitted model.
    pub model: EdgeTpuCostModel,
    /// One row per single-device point, in input order.
    pub rows: Vec<FitRow>,
    /// One entry per family present, fc first.
    pub families: Vec<FamilyErrors>,
    /// One row per segment of every multi-device point, in input order.
    pub segments: Vec<SegmentPlacementRow>,
    /// One row per published figure, in input order.
    pub published: Vec<PublishedRow>,
}

impl FitReport {
    /// The errors of `family`, if it had points.
    pub fn family(&self, family: Family) -> Option<&FamilyErrors> {
        self.families.iter().find(|f| f.family == family)
    }
}

/// Range searched for the on-chip budget, in bytes.
const BUDGET_RANGE: (u64, u64) = (512 * 1024, 16 * 1024 * 1024);

/// Fits the cost model to single-device `points`, to the placement lists of multi-device
/// `pipelines` (their times include the measuring program and are not used here: see
/// [`crate::reproduce::scheme`]) and to `published` figures of real models. Parameters the
/// data cannot determine (a rate of an op kind without points, the PCIe link, …) keep their
/// values from `start`: without `published`, the depthwise rate and the per-op cost;
/// without `pipelines`, [`input_reserve`](EdgeTpuCostModel::input_reserve).
/// `TransposeConv` takes the fitted `Conv2d` figures. The activation rate of ops without
/// MACs and the host's conversion cost always keep their values from `start` (no data here
/// pins them).
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
    if points.is_empty() {
        return Err(Error::invalid("calibration points", "none given"));
    }
    let mut models: HashMap<(Family, usize), Model<'static>> = HashMap::new();
    let mut model_of = |family: Family, size: usize| -> Result<()> {
        if let Entry::Vacant(slot) = models.entry((family, size)) {
            slot.insert(family.model(size)?);
        }
        Ok(())
    };
    for p in points {
        model_of(p.family, p.size)?;
    }
    for p in pipelines {
        model_of(p.family, p.size)?;
    }
    let whole = |family: Family, size: usize| {
        let m = &models[&(family, size)];
        SegmentWorkload::from_model(m, 0..m.operators.len())
    };
    let singles: Vec<SegmentWorkload> = points.iter().map(|p| whole(p.family, p.size)).collect();
    let data: Vec<(&CalibrationPoint, &SegmentWorkload)> = points.iter().zip(&singles).collect();
    let mut segments = Vec::new();
    for p in pipelines {
        let model = &models[&(p.family, p.size)];
        let cuts = p.cuts(model)?;
        let bounds: Vec<usize> = std::iter::once(0)
            .chain(cuts.iter().copied())
            .chain(std::iter::once(model.operators.len()))
            .collect();
        for (segment, range) in bounds.windows(2).enumerate() {
            segments.push((
                p,
                cuts.clone(),
                segment,
                SegmentWorkload::from_model(model, range[0]..range[1]),
            ));
        }
    }

    let mut model = start.clone();
    if !pipelines.is_empty() {
        model.input_reserve = 0.0;
    }
    fit_placement(&mut model, &data);
    if !pipelines.is_empty() {
        let measured: Vec<(f64, &SegmentWorkload)> = data
            .iter()
            .map(|(p, w)| (p.off_chip_mib, *w))
            .chain(segments.iter().map(|(p, _, i, w)| (p.off_chip_mib[*i], w)))
            .collect();
        fit_input_reserve(&mut model, &measured);
    }
    let placed = model.clone();
    let synthetic: Vec<(f64, &SegmentWorkload)> =
        data.iter().map(|(p, w)| (p.latency_ms, *w)).collect();
    let real: Vec<(f64, &SegmentWorkload)> = published
        .iter()
        .map(|p| (p.latency_ms, &p.workload))
        .collect();
    fit_times(&mut model, &synthetic, &real);
    let published = published
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut without = placed.clone();
            let others: Vec<(f64, &SegmentWorkload)> = real
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &point)| point)
                .collect();
            fit_times(&mut without, &synthetic, &others);
            PublishedRow {
                name: p.name.clone(),
                published_ms: p.latency_ms,
                predicted_ms: model.predict(&p.workload).latency_s * 1e3,
                left_out_ms: without.predict(&p.workload).latency_s * 1e3,
            }
        })
        .collect();

    let rows: Vec<FitRow> = data
        .iter()
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
    let segments = segments
        .into_iter()
        .map(|(p, cuts, segment, w)| {
            let prediction = model.predict(&w);
            SegmentPlacementRow {
                family: p.family,
                split: p.split.clone(),
                size: p.size,
                cuts,
                segment,
                measured_on_chip_mib: p.on_chip_mib[segment],
                predicted_on_chip_mib: prediction.on_chip_bytes as f64 / MIB,
                measured_off_chip_mib: p.off_chip_mib[segment],
                predicted_off_chip_mib: prediction.off_chip_bytes as f64 / MIB,
            }
        })
        .collect();
    Ok(FitReport {
        model,
        rows,
        families,
        segments,
        published,
    })
}

/// Steps of the [`input_reserve`](EdgeTpuCostModel::input_reserve) search: 0 to 2 bytes of
/// budget per input byte, in steps of 1/400.
const RESERVE_STEPS: usize = 800;
const RESERVE_STEP: f64 = 1.0 / 400.0;

/// The input reserve minimising the summed absolute off-chip error of `measured` (off-chip
/// MiB and workload) under the fitted budget and limit: the middle of the longest run of
/// steps with the least error.
fn fit_input_reserve(model: &mut EdgeTpuCostModel, measured: &[(f64, &SegmentWorkload)]) {
    let error = |reserve: f64| {
        let m = EdgeTpuCostModel {
            input_reserve: reserve,
            ..model.clone()
        };
        measured
            .iter()
            .map(|(off_mib, w)| (m.predict(w).off_chip_bytes as f64 / MIB - off_mib).abs())
            .sum::<f64>()
    };
    let errors: Vec<f64> = (0..=RESERVE_STEPS)
        .map(|i| error(i as f64 * RESERVE_STEP))
        .collect();
    let least = errors.iter().copied().fold(f64::INFINITY, f64::min);
    // Longest run of steps at the least error (the first of equally long ones).
    let mut best = (0, 0);
    let mut from = None;
    for (i, &e) in errors.iter().enumerate() {
        if e > least + 1e-9 {
            from = None;
            continue;
        }
        let start = *from.get_or_insert(i);
        if errors[best.0] > least + 1e-9 || i - start > best.1 - best.0 {
            best = (start, i);
        }
    }
    model.input_reserve = (best.0 + best.1) as f64 / 2.0 * RESERVE_STEP;
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

/// Median of a non-empty slice (mean of the two middle values for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The absolute off-chip error (MiB) of one workload as a step function of the budget,
/// for a fixed per-tensor `limit`: `(b, error)` pairs, each error holding from its `b` up
/// to the next pair's `b` (the last one for every larger budget).
///
/// First fit only changes when the budget reaches `used_before + size` of a tensor that is
/// not yet placed; until then every placed tensor stays placed. So the sweep jumps from one
/// such point to the next.
fn error_steps(w: &SegmentWorkload, measured_mib: f64, limit: u64) -> Vec<(u64, f64)> {
    let sizes: Vec<u64> = w
        .ops
        .iter()
        .flat_map(|op| op.param_tensor_bytes.iter().copied())
        .collect();
    let total = sizes.iter().fold(0u64, |acc, &s| acc.saturating_add(s));
    let mut steps = Vec::new();
    let mut budget = 0u64;
    loop {
        let mut used = 0u64;
        let mut next = u64::MAX;
        for &size in sizes.iter().filter(|&&s| s <= limit) {
            let end = used.saturating_add(size);
            if end <= budget {
                used = end;
            } else {
                next = next.min(end);
            }
        }
        let off_mib = total.saturating_sub(used) as f64 / MIB;
        steps.push((budget, (off_mib - measured_mib).abs()));
        if next == u64::MAX {
            return steps;
        }
        budget = next;
    }
}

/// For a fixed per-tensor `limit`: the budget in the middle of the widest budget interval
/// (within [`BUDGET_RANGE`]) with the least summed off-chip error, and that error.
fn best_budget(data: &[(&CalibrationPoint, &SegmentWorkload)], limit: u64) -> (u64, f64) {
    let mut events: Vec<(u64, f64)> = Vec::new();
    for (p, w) in data {
        let mut previous = 0.0;
        for (b, error) in error_steps(w, p.off_chip_mib, limit) {
            events.push((b, error - previous));
            previous = error;
        }
    }
    events.sort_by_key(|&(b, _)| b);
    let (lo, hi) = BUDGET_RANGE;
    let mut best: Option<(f64, u64, u64)> = None; // (error, from, to)
    let mut error = 0.0;
    let mut i = 0;
    while i < events.len() {
        let b = events[i].0;
        while i < events.len() && events[i].0 == b {
            error += events[i].1;
            i += 1;
        }
        let end = events.get(i).map_or(u64::MAX, |e| e.0);
        let (from, to) = (b.max(lo), end.min(hi));
        if from >= to {
            continue;
        }
        let better = match best {
            None => true,
            Some((e, f, t)) => error < e - 1e-9 || (error <= e + 1e-9 && to - from > t - f),
        };
        if better {
            best = Some((error, from, to));
        }
    }
    match best {
        Some((error, from, to)) => (from + (to - from) / 2, error),
        None => (hi, f64::INFINITY),
    }
}

/// Joint search of the per-tensor limit and the on-chip budget minimising the summed
/// absolute off-chip error. Only the order of the limit among the tensor sizes matters, so
/// each gap between two distinct sizes is tried once (the limit goes in its middle); with
/// equal errors the larger limit wins, and the largest means no limit at all.
fn fit_placement(model: &mut EdgeTpuCostModel, data: &[(&CalibrationPoint, &SegmentWorkload)]) {
    let mut sizes: Vec<u64> = data
        .iter()
        .flat_map(|(_, w)| {
            w.ops
                .iter()
                .flat_map(|op| op.param_tensor_bytes.iter().copied())
        })
        .filter(|&s| s > 0)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut best: Option<(f64, u64, u64)> = None; // (error, budget, limit)
    for (j, &size) in sizes.iter().enumerate().rev() {
        let limit = match sizes.get(j + 1) {
            Some(&above) => size + (above - size) / 2,
            None => u64::MAX,
        };
        let (budget, error) = best_budget(data, limit);
        if best.is_none_or(|(e, _, _)| error < e - 1e-9) {
            best = Some((error, budget, limit));
        }
    }
    if let Some((_, budget, limit)) = best {
        model.on_chip_budget_bytes = budget;
        model.max_cached_tensor_bytes = limit;
    }
}

/// Columns of the time fit: latency = Σ coefficient · feature + the host's conversions.
const OVERHEAD: usize = 0;
const FC_MACS: usize = 1;
const CONV_MACS: usize = 2;
const STREAM: usize = 3;
const CONV_STREAM: usize = 4;
const IO: usize = 5;
/// The columns above are fitted on the paper's models; these two on published real models.
const DEPTHWISE_MACS: usize = 6;
const DEVICE_OPS: usize = 7;
/// Activations moved by ops without MACs: held at the start model's rate, never fitted. The
/// paper's models have next to none, and the three published figures cannot pin it: fitted
/// on the two MobileNets alone, it prices Inception v1's pooling and concatenations so high
/// that Inception is predicted at 6.0 ms for 3.4; with Inception, the least squares put no
/// cost on it.
const ACTIVATION: usize = 8;
const COLUMNS: usize = 9;
const SYNTHETIC_COLUMNS: [usize; 6] = [OVERHEAD, FC_MACS, CONV_MACS, STREAM, CONV_STREAM, IO];
const REAL_COLUMNS: [usize; 2] = [DEPTHWISE_MACS, DEVICE_OPS];

/// Rounds of the alternating fit at most; it settles in a handful.
const MAX_ROUNDS: usize = 100;

/// One workload of the time fit: its features, the host's conversion seconds (never
/// fitted), and the measured seconds.
struct TimeRow {
    x: [f64; COLUMNS],
    host_s: f64,
    seconds: f64,
}

/// The features of one workload under `model`'s placement.
fn features(model: &EdgeTpuCostModel, w: &SegmentWorkload) -> [f64; COLUMNS] {
    let mut x = [0.0; COLUMNS];
    x[OVERHEAD] = 1.0;
    x[IO] = w.input_bytes.saturating_add(w.output_bytes) as f64;
    for (op, cached) in w.ops.iter().zip(model.placement(w)) {
        if !op.on_device() {
            continue;
        }
        x[DEVICE_OPS] += 1.0;
        let off: f64 = op
            .param_tensor_bytes
            .iter()
            .zip(&cached)
            .filter(|(_, on)| !**on)
            .map(|(&b, _)| b as f64)
            .sum();
        match op.kind {
            OpKind::Conv2d | OpKind::TransposeConv => x[CONV_MACS] += op.macs as f64,
            OpKind::DepthwiseConv2d => x[DEPTHWISE_MACS] += op.macs as f64,
            OpKind::FullyConnected => x[FC_MACS] += op.macs as f64,
            OpKind::Elementwise | OpKind::Other => {}
        }
        if !op.kind.has_weights() {
            x[ACTIVATION] += op.activation_bytes as f64;
        }
        if matches!(
            op.kind,
            OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::TransposeConv
        ) {
            x[CONV_STREAM] += off;
        } else {
            // Dense layers read streamed weights once; other kinds keep the start model's count.
            let reads = if op.kind == OpKind::FullyConnected {
                1.0
            } else {
                model.stream_reads.get(op.kind)
            };
            x[STREAM] += off * reads;
        }
    }
    x
}

/// The model's coefficients of the columns: seconds per unit of each feature.
fn coefficients(model: &EdgeTpuCostModel) -> [f64; COLUMNS] {
    let mut a = [0.0; COLUMNS];
    a[OVERHEAD] = model.invoke_overhead_s;
    a[FC_MACS] = 1.0 / model.macs_per_s.fully_connected;
    a[CONV_MACS] = 1.0 / model.macs_per_s.conv2d;
    a[STREAM] = 1.0 / model.stream_bytes_per_s;
    a[CONV_STREAM] = model.stream_reads.conv2d / model.stream_bytes_per_s;
    a[IO] = 1.0 / model.io_bytes_per_s;
    a[DEPTHWISE_MACS] = 1.0 / model.macs_per_s.depthwise_conv2d;
    a[DEVICE_OPS] = model.per_op_s;
    a[ACTIVATION] = 1.0 / model.activation_bytes_per_s;
    a
}

/// Fits the time parameters: the paper's columns on `synthetic` (measured ms, workload),
/// the real models' columns on `real`, alternately, each with the other's terms held at
/// their current values, until the coefficients stop changing.
fn fit_times(
    model: &mut EdgeTpuCostModel,
    synthetic: &[(f64, &SegmentWorkload)],
    real: &[(f64, &SegmentWorkload)],
) {
    let rows = |points: &[(f64, &SegmentWorkload)], model: &EdgeTpuCostModel| -> Vec<TimeRow> {
        points
            .iter()
            .map(|&(ms, w)| TimeRow {
                x: features(model, w),
                host_s: w
                    .ops
                    .iter()
                    .filter(|op| !op.on_device())
                    .map(|op| model.op_time_s(op))
                    .sum(),
                seconds: ms * 1e-3,
            })
            .collect()
    };
    let synthetic = rows(synthetic, model);
    let real = rows(real, model);
    let mut a = coefficients(model);
    for _ in 0..MAX_ROUNDS {
        let before = a;
        fit_columns(&synthetic, &SYNTHETIC_COLUMNS, &mut a);
        fit_columns(&real, &REAL_COLUMNS, &mut a);
        let settled = a
            .iter()
            .zip(&before)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(y.abs()));
        if settled {
            break;
        }
    }
    apply_coefficients(model, &a, &synthetic, &real);
}

/// Non-negative least squares of `rows` over `columns` (those with data), the other
/// columns' terms held at their values in `a`; writes the solution into `a`.
fn fit_columns(rows: &[TimeRow], columns: &[usize], a: &mut [f64; COLUMNS]) {
    let mut active = [false; COLUMNS];
    for &c in columns {
        active[c] = rows.iter().any(|r| r.x[c] != 0.0);
    }
    if !active.iter().any(|&on| on) {
        return;
    }
    let fixed = |r: &TimeRow| -> f64 {
        r.host_s
            + (0..COLUMNS)
                .filter(|&c| !active[c])
                .map(|c| r.x[c] * a[c])
                .sum::<f64>()
    };
    let targets: Vec<([f64; COLUMNS], f64, f64)> = rows
        .iter()
        .map(|r| (r.x, r.seconds - fixed(r), r.seconds))
        .collect();
    let solution = non_negative_least_squares(&targets, active);
    for &c in columns {
        if rows.iter().any(|r| r.x[c] != 0.0) {
            a[c] = solution[c];
        }
    }
}

/// Maps fitted coefficients back to the model's rates. Columns without data in their
/// group keep the model's values.
fn apply_coefficients(
    model: &mut EdgeTpuCostModel,
    a: &[f64; COLUMNS],
    synthetic: &[TimeRow],
    real: &[TimeRow],
) {
    let has_data = |c: usize| {
        let group = if SYNTHETIC_COLUMNS.contains(&c) {
            synthetic
        } else if REAL_COLUMNS.contains(&c) {
            real
        } else {
            return false;
        };
        group.iter().any(|r| r.x[c] != 0.0)
    };
    let rate = |c: usize, old: f64| {
        if !has_data(c) {
            old
        } else if a[c] > 0.0 {
            1.0 / a[c]
        } else {
            f64::INFINITY
        }
    };
    if has_data(OVERHEAD) {
        model.invoke_overhead_s = a[OVERHEAD].max(0.0);
    }
    let conv_rate = rate(CONV_MACS, model.macs_per_s.conv2d);
    model.macs_per_s.fully_connected = rate(FC_MACS, model.macs_per_s.fully_connected);
    model.macs_per_s.conv2d = conv_rate;
    model.macs_per_s.transpose_conv = conv_rate;
    model.macs_per_s.depthwise_conv2d = rate(DEPTHWISE_MACS, model.macs_per_s.depthwise_conv2d);
    if has_data(DEVICE_OPS) {
        model.per_op_s = a[DEVICE_OPS].max(0.0);
    }
    if has_data(STREAM) {
        if a[STREAM] > 0.0 {
            model.stream_bytes_per_s = 1.0 / a[STREAM];
        } else {
            // Streaming dense weights came out free: say so through their read count and
            // keep the start model's bandwidth for the convolutions' figure below.
            model.stream_reads.fully_connected = 0.0;
            model.stream_reads.elementwise = 0.0;
            model.stream_reads.other = 0.0;
        }
    }
    if has_data(CONV_STREAM) {
        let reads = a[CONV_STREAM].max(0.0) * model.stream_bytes_per_s;
        model.stream_reads.conv2d = reads;
        model.stream_reads.depthwise_conv2d = reads;
        model.stream_reads.transpose_conv = reads;
    }
    model.io_bytes_per_s = rate(IO, model.io_bytes_per_s);
}

/// [`weighted_least_squares`] with every coefficient kept non-negative: a column whose
/// coefficient comes out negative is dropped (coefficient 0), the most negative first, and
/// the rest solved again.
pub(crate) fn non_negative_least_squares<const N: usize>(
    rows: &[([f64; N], f64, f64)],
    mut active: [bool; N],
) -> [f64; N] {
    loop {
        let solution = weighted_least_squares(rows, &active);
        let most_negative = (0..N)
            .filter(|&c| active[c] && solution[c] < 0.0)
            .min_by(|&p, &q| solution[p].total_cmp(&solution[q]));
        match most_negative {
            Some(c) => active[c] = false,
            None => return solution,
        }
    }
}

/// Minimises Σ ((x·a − y) / t)² over the active columns, for rows `(x, y, t)`: `y` the
/// part of the measured time `t` left to the active columns. Inactive coefficients are 0.
/// Columns are scaled to unit size first so that seconds and MACs mix well.
fn weighted_least_squares<const N: usize>(
    rows: &[([f64; N], f64, f64)],
    active: &[bool; N],
) -> [f64; N] {
    let columns: Vec<usize> = (0..N).filter(|&c| active[c]).collect();
    let n = columns.len();
    let scale: Vec<f64> = columns
        .iter()
        .map(|&c| {
            let m = rows.iter().map(|(x, _, _)| x[c].abs()).fold(0.0, f64::max);
            if m > 0.0 { m } else { 1.0 }
        })
        .collect();
    // Normal equations A a = b with rows x/t and targets y/t.
    let mut a = vec![vec![0.0; n]; n];
    let mut b = vec![0.0; n];
    for (x, y, t) in rows {
        let z: Vec<f64> = columns
            .iter()
            .zip(&scale)
            .map(|(&c, s)| x[c] / s / t)
            .collect();
        for i in 0..n {
            b[i] += z[i] * y / t;
            for j in 0..n {
                a[i][j] += z[i] * z[j];
            }
        }
    }
    let solved = solve(a, b);
    let mut out = [0.0; N];
    for ((&c, s), v) in columns.iter().zip(&scale).zip(solved) {
        out[c] = v / s;
    }
    out
}

/// Gaussian elimination with partial pivoting; a singular direction gets 0.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-12 {
            continue;
        }
        let pivot_row = a[col].clone();
        let pivot_b = b[col];
        for (row, (r, rb)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            let f = r[col] / p;
            if row != col && f != 0.0 {
                for (x, y) in r[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * y;
                }
                *rb -= f * pivot_b;
            }
        }
    }
    (0..n)
        .map(|i| {
            if a[i][i].abs() < 1e-12 {
                0.0
            } else {
                b[i] / a[i][i]
            }
        })
        .collect()
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
        let cases = [
            ("a,b,c,d,e\n1,2,3\n", 2),
            ("a,b,c,d,e\n1,2,x,0,1\n", 2),
            ("a,b,c,d,e\n1,2,0,0,1\n1,2,0,-1,1\n", 3),
            ("a,b,c,d,e\n1,2,0,0,0\n", 2),
            ("a,b,c,d,e\n0,2,0,0,1\n", 2),
            ("a,b,c,d,e\n1,2,0,0,inf\n", 2),
            ("", 0),
        ];
        for (text, line) in cases {
            match parse_csv(text, Family::Conv, Path::new("conv_x.csv")) {
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
    }

    /// Points made by a known model are fitted back to (nearly) the same model.
    #[test]
    fn fit_recovers_a_known_model() {
        let truth = EdgeTpuCostModel {
            on_chip_budget_bytes: 7 * 1024 * 1024,
            max_cached_tensor_bytes: 5 * 1024 * 1024,
            stream_bytes_per_s: 300e6,
            io_bytes_per_s: 500e6,
            invoke_overhead_s: 0.2e-3,
            ..EdgeTpuCostModel::usb_default()
        };
        let mut truth = truth;
        truth.macs_per_s.fully_connected = 50e9;
        truth.macs_per_s.conv2d = 1e12;
        truth.stream_reads.conv2d = 2.5;
        let sizes = [
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
        ];
        let points: Vec<CalibrationPoint> = sizes
            .iter()
            .map(|&(family, size)| {
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
        let report = fit(&points, &[], &[], &EdgeTpuCostModel::usb_default()).expect("fits");
        for f in &report.families {
            assert!(f.worst_off_chip_mib < 1e-9, "{f:?}");
            assert!(f.worst_ms < 1e-6, "{f:?}");
        }
        let m = &report.model;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs();
        assert!(close(m.stream_bytes_per_s, 300e6), "{m:?}");
        assert!(close(m.macs_per_s.fully_connected, 50e9), "{m:?}");
        assert!(close(m.macs_per_s.conv2d, 1e12), "{m:?}");
        assert!(close(m.stream_reads.conv2d, 2.5), "{m:?}");
        assert!(close(m.io_bytes_per_s, 500e6), "{m:?}");
        assert!(close(m.invoke_overhead_s, 0.2e-3), "{m:?}");
    }

    /// With figures of real models made by a known model, the alternating fit recovers the
    /// per-op cost and the depthwise rate as well as the paper-model parameters, although
    /// the per-op cost also enters every paper-model point; every figure is then matched.
    #[test]
    fn fit_recovers_per_op_cost_and_depthwise_rate_from_published_figures() {
        use crate::architectures;
        let mut truth = EdgeTpuCostModel {
            invoke_overhead_s: 0.05e-3,
            per_op_s: 6e-6,
            io_bytes_per_s: 200e6,
            ..EdgeTpuCostModel::usb_default()
        };
        truth.macs_per_s.conv2d = 1.2e12;
        truth.macs_per_s.depthwise_conv2d = 0.2e12;
        let paper_points: Vec<CalibrationPoint> = [
            (Family::Fc, 300),
            (Family::Fc, 1200),
            (Family::Fc, 2100),
            (Family::Conv, 64),
            (Family::Conv, 200),
            (Family::Conv, 400),
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
        let published: Vec<PublishedPoint> = [(1.0, 224), (0.5, 160), (0.25, 128)]
            .into_iter()
            .map(|(alpha, resolution)| {
                let model = architectures::mobilenet_v1(alpha, resolution).expect("builds");
                let mut point = PublishedPoint::whole("v1", &model, 0.0);
                point.latency_ms = truth.predict(&point.workload).latency_s * 1e3;
                point
            })
            .collect();
        let report = fit(
            &paper_points,
            &[],
            &published,
            &EdgeTpuCostModel::usb_default(),
        )
        .expect("fits");
        let m = &report.model;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs();
        assert!(close(m.per_op_s, 6e-6), "{m:?}");
        assert!(close(m.macs_per_s.depthwise_conv2d, 0.2e12), "{m:?}");
        assert!(close(m.macs_per_s.conv2d, 1.2e12), "{m:?}");
        assert!(close(m.invoke_overhead_s, 0.05e-3), "{m:?}");
        assert!(close(m.io_bytes_per_s, 200e6), "{m:?}");
        for row in &report.published {
            assert!(close(row.predicted_ms, row.published_ms), "{row:?}");
            assert!(close(row.left_out_ms, row.published_ms), "{row:?}");
        }
    }
}
