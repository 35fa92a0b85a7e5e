//! Reproducing the paper: its sweeps over model sizes, device counts and cutting strategies,
//! predicted for simulated Edge TPUs, and checked against the real measurements.
//!
//! Villarrubia et al. (PDP 2023) measured the synthetic fc and conv models
//! ([`multitpu::model::paper`]) on one Edge TPU and cut into 2–4 segments on as many devices.
//! [`run_sweep`] predicts the same grid: for every size, the whole model on one device
//! ([`SingleRow`]) and, for every device count and strategy, the plan's segments
//! ([`PipelineRow`]): their placement, this library's pipeline time per inference (from the
//! event-level [`PipelineTiming`] over the cost model's stage latencies) and what the paper's
//! measuring program would have printed ([`crate::calibration::scheme`]).
//!
//! [`compare_with_calibration`] sets the same predictions beside every measured row of the
//! calibration folder. `paper/src/bin/reproduce` drives both and writes CSV files and plots.
//!
//! ```
//! use multitpu::device::EdgeTpuCostModel;
//! use multitpu_paper::reproduce::{Setup, Sweep, run_sweep};
//!
//! let sweep = Sweep { fc_sizes: vec![1980, 2620], conv_sizes: vec![], ..Sweep::quick() };
//! let result = run_sweep(&sweep, &Setup::default(), &|| {})?;
//! let best = result.pipeline.iter().map(|row| row.speedup).fold(0.0, f64::max);
//! assert!(best > 10.0, "fc N=2620 streams 13 MiB on one device");
//! # Ok::<(), multitpu_paper::Error>(())
//! ```

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::calibration::{
    CalibrationPoint, Family, PaperScheme, PipelinePoint, SeriesError, built_in_scheme, median,
};
use crate::{Error, Result};
use multitpu::backend::Backend;
use multitpu::device::{EdgeTpuCostModel, MIB, SegmentWorkload};
use multitpu::model::Graph;
use multitpu::pipeline::{PipelineBuilder, PipelineTiming};
use multitpu::segment::{self, Plan, Profiled, Segmenter};

/// The strategies of the paper's comparison: the compiler's equal-parameter split, equal
/// operator counts, the author's split by whole Dense layers (fc only), the profiled
/// optimum and libcoral's profiling partitioner.
pub const PAPER_STRATEGIES: [&str; 5] =
    ["uniform", "uniform-ops", "layers", "profiled", "libcoral"];

/// What to sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// Hidden neurons N of the fc models.
    pub fc_sizes: Vec<usize>,
    /// Filters F of the conv models.
    pub conv_sizes: Vec<usize>,
    /// Device counts (1 is the whole model on one device).
    pub devices: Vec<usize>,
    /// Strategy names ([`PAPER_STRATEGIES`]); `layers` applies to fc only.
    pub strategies: Vec<String>,
}

impl Sweep {
    /// The paper's grid: fc N = 100, 140, …, 2620 and conv F = 32, 42, …, 702 on 1–4
    /// devices with every strategy.
    pub fn paper() -> Self {
        Sweep {
            fc_sizes: (100..=2620).step_by(40).collect(),
            conv_sizes: (32..=702).step_by(10).collect(),
            devices: vec![1, 2, 3, 4],
            strategies: PAPER_STRATEGIES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A reduced grid for CI: sizes on both sides of each cliff.
    pub fn quick() -> Self {
        Sweep {
            fc_sizes: vec![100, 1580, 1620, 2020, 2620],
            conv_sizes: vec![32, 442, 502, 702],
            ..Sweep::paper()
        }
    }

    /// How many models the sweep builds (the unit of [`run_sweep`]'s progress).
    pub fn models(&self) -> usize {
        self.fc_sizes.len() + self.conv_sizes.len()
    }
}

/// The devices and measuring programs predictions are made for.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The Edge TPU cost model (one device per segment).
    pub cost_model: EdgeTpuCostModel,
    /// The fc runs' measuring program.
    pub fc_scheme: PaperScheme,
    /// The conv runs' measuring program.
    pub conv_scheme: PaperScheme,
}

impl Default for Setup {
    /// USB devices and the fitted programs of the paper's runs.
    fn default() -> Self {
        Setup {
            cost_model: EdgeTpuCostModel::usb_default(),
            fc_scheme: built_in_scheme(Family::Fc),
            conv_scheme: built_in_scheme(Family::Conv),
        }
    }
}

impl Setup {
    /// The measuring program of `family`'s runs.
    pub fn scheme(&self, family: Family) -> &PaperScheme {
        match family {
            Family::Fc => &self.fc_scheme,
            Family::Conv => &self.conv_scheme,
        }
    }
}

/// The whole model on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleRow {
    /// Model family.
    pub family: Family,
    /// N or F.
    pub size: usize,
    /// Parameters cached on chip, MiB.
    pub on_chip_mib: f64,
    /// Parameters streamed per inference, MiB.
    pub off_chip_mib: f64,
    /// Milliseconds of one inference.
    pub ms: f64,
}

/// One plan on several devices.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRow {
    /// Model family.
    pub family: Family,
    /// N or F.
    pub size: usize,
    /// Devices, one per segment.
    pub tpus: usize,
    /// Strategy name.
    pub strategy: String,
    /// First operator of every segment but the first.
    pub cuts: Vec<usize>,
    /// Parameters cached on chip per segment, MiB.
    pub on_chip_mib: Vec<f64>,
    /// Parameters streamed per segment, MiB.
    pub off_chip_mib: Vec<f64>,
    /// Milliseconds per inference of this library's pipeline: a batch's wall time divided by
    /// its size (the family's batch: fc 50, conv 100), filling and draining included.
    pub ms_per_inference: f64,
    /// Milliseconds per inference that the paper's measuring program would have printed.
    pub paper_scheme_ms: f64,
    /// The single device's `ms` divided by `ms_per_inference`.
    pub speedup: f64,
}

/// Everything [`run_sweep`] predicts, ordered by family, size, devices and strategy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepResult {
    /// One row per model.
    pub single: Vec<SingleRow>,
    /// One row per model, device count and strategy.
    pub pipeline: Vec<PipelineRow>,
}

impl SweepResult {
    /// The milliseconds of the whole model of `family` with size knob `size` on one device,
    /// if the sweep has it.
    pub fn single_ms(&self, family: Family, size: usize) -> Option<f64> {
        self.single
            .iter()
            .find(|s| s.family == family && s.size == size)
            .map(|s| s.ms)
    }
}

/// The cuts of the author's split of the fc model by whole Dense layers: 2 + 3 layers on 2
/// devices, 1 + 2 + 2 on 3, 1 + 1 + 1 + 2 on 4 (`None` for other counts). Layer `k` is
/// `FULLY_CONNECTED` + `TANH` at operators `2k − 1, 2k` (operator 0 is the `QUANTIZE`).
pub fn fc_layer_cuts(devices: usize) -> Option<Vec<usize>> {
    let layers_per_segment: &[usize] = match devices {
        1 => &[5],
        2 => &[2, 3],
        3 => &[1, 2, 2],
        4 => &[1, 1, 1, 2],
        _ => return None,
    };
    let mut cuts = Vec::new();
    let mut layers = 0;
    for &n in &layers_per_segment[..layers_per_segment.len() - 1] {
        layers += n;
        cuts.push(2 * layers + 1);
    }
    Some(cuts)
}

/// The plan of `strategy` for `devices` segments: `Ok(None)` where the strategy does not
/// apply (`layers` on conv) or the model has too few places to cut.
///
/// # Errors
///
/// [`Error::Invalid`] for an unknown strategy; errors of the strategy's planning otherwise.
pub fn plan_for(
    family: Family,
    graph: &Graph<'_, '_>,
    strategy: &str,
    devices: usize,
    cost_model: &EdgeTpuCostModel,
) -> Result<Option<Plan>> {
    if devices > graph.op_count() {
        return Ok(None);
    }
    let plan = match (strategy, family) {
        ("layers", Family::Fc) => match fc_layer_cuts(devices) {
            Some(cuts) => Plan::from_cuts("layers", graph, &cuts)?,
            None => return Ok(None),
        },
        ("layers", Family::Conv) => return Ok(None),
        // The paper's pipelines give each device one segment, edge quantisation included.
        ("profiled", _) => match Profiled::new(cost_model.clone())
            .with_floor(cost_model.clone())
            .with_exact_devices()
            .plan(graph, devices)
        {
            Err(multitpu::Error::SegmentCount { .. }) => return Ok(None),
            plan => plan?,
        },
        _ => match segment::strategy(strategy, cost_model)?.plan(graph, devices) {
            Err(multitpu::Error::SegmentCount { .. }) => return Ok(None),
            plan => plan?,
        },
    };
    Ok(Some(plan))
}

/// Per segment of `cuts`: the cost model's prediction.
fn predict_segments(
    model: &multitpu::model::Model<'_>,
    cuts: &[usize],
    cost_model: &EdgeTpuCostModel,
) -> Vec<multitpu::device::Prediction> {
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(cuts.iter().copied())
        .chain(std::iter::once(model.operators.len()))
        .collect();
    bounds
        .windows(2)
        .map(|r| cost_model.predict(&SegmentWorkload::from_model(model, r[0]..r[1])))
        .collect()
}

/// Predicts every row of `sweep` under `setup`, one model at a time on rayon's pool;
/// `progress` is called after each model.
///
/// # Errors
///
/// An unknown strategy, a size the paper's builders refuse, or a failed plan.
pub fn run_sweep(
    sweep: &Sweep,
    setup: &Setup,
    progress: &(dyn Fn() + Sync),
) -> Result<SweepResult> {
    for s in &sweep.strategies {
        if s != "layers" {
            segment::strategy(s, &setup.cost_model)?;
        }
    }
    if sweep.devices.contains(&0) {
        return Err(Error::invalid("sweep", "a device count of 0"));
    }
    let tasks: Vec<(Family, usize)> = sweep
        .fc_sizes
        .iter()
        .map(|&n| (Family::Fc, n))
        .chain(sweep.conv_sizes.iter().map(|&f| (Family::Conv, f)))
        .collect();
    let parts = tasks
        .par_iter()
        .map(|&(family, size)| {
            let part = sweep_model(sweep, setup, family, size);
            progress();
            part
        })
        .collect::<Result<Vec<SweepResult>>>()?;
    let mut result = SweepResult::default();
    for part in parts {
        result.single.extend(part.single);
        result.pipeline.extend(part.pipeline);
    }
    Ok(result)
}

fn sweep_model(sweep: &Sweep, setup: &Setup, family: Family, size: usize) -> Result<SweepResult> {
    let _span = tracing::debug_span!("sweep model", %family, size).entered();
    let model = family.model(size)?;
    let graph = Graph::new(&model)?;
    let cm = &setup.cost_model;
    let whole = cm.predict(&SegmentWorkload::from_model(
        &model,
        0..model.operators.len(),
    ));
    let single = SingleRow {
        family,
        size,
        on_chip_mib: whole.on_chip_bytes as f64 / MIB,
        off_chip_mib: whole.off_chip_bytes as f64 / MIB,
        ms: whole.latency_s * 1e3,
    };
    let scheme = setup.scheme(family);
    let mut pipeline = Vec::new();
    for &devices in &sweep.devices {
        for strategy in &sweep.strategies {
            let Some(plan) = plan_for(family, &graph, strategy, devices, cm)? else {
                continue;
            };
            let cuts = plan.cuts();
            let predictions = predict_segments(&model, &cuts, cm);
            let latencies: Vec<f64> = predictions.iter().map(|p| p.latency_s).collect();
            let ours = PipelineTiming::new(latencies.clone()).per_item_s(scheme.batch)?;
            pipeline.push(PipelineRow {
                family,
                size,
                tpus: devices,
                strategy: strategy.clone(),
                cuts,
                on_chip_mib: predictions
                    .iter()
                    .map(|p| p.on_chip_bytes as f64 / MIB)
                    .collect(),
                off_chip_mib: predictions
                    .iter()
                    .map(|p| p.off_chip_bytes as f64 / MIB)
                    .collect(),
                ms_per_inference: ours * 1e3,
                paper_scheme_ms: scheme.per_item_s(&latencies)? * 1e3,
                speedup: whole.latency_s / ours,
            });
        }
    }
    Ok(SweepResult {
        single: vec![single],
        pipeline,
    })
}

/// One line of the headline: for a family and a device count, the best speedups over one
/// device.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline<'a> {
    /// Model family.
    pub family: Family,
    /// Devices (more than one).
    pub tpus: usize,
    /// The row with the largest [`PipelineRow::speedup`] (this library's pipeline) over all
    /// sizes and strategies; the last of equal ones.
    pub ours: &'a PipelineRow,
    /// The author's measuring program over his splits ([`author_strategies`]): the row and
    /// its speedup, the one-device time over [`PipelineRow::paper_scheme_ms`].
    pub authors: Option<(&'a PipelineRow, f64)>,
    /// The best measured speedup: of `measured` (the calibration files) if it has this device
    /// count, else of [`measured_with_four_devices`].
    pub measured: Option<MeasuredSpeedup>,
    /// The paper's published figure ([`published_with_four_devices`]).
    pub published: Option<f64>,
}

/// The headline of `result`: per family (fc, then conv) and device count above one, the best
/// speedups predicted for this library's pipeline and for the author's program, measured
/// (`measured`, from [`measured_speedups`], and the README's 4-device figures) and published.
pub fn headline<'a>(
    result: &'a SweepResult,
    measured: &[(String, MeasuredSpeedup)],
) -> Vec<Headline<'a>> {
    let four = measured_with_four_devices();
    let published = published_with_four_devices();
    let mut lines = Vec::new();
    for family in [Family::Fc, Family::Conv] {
        let mut counts: Vec<usize> = result
            .pipeline
            .iter()
            .filter(|r| r.family == family && r.tpus > 1)
            .map(|r| r.tpus)
            .collect();
        counts.sort_unstable();
        counts.dedup();
        for tpus in counts {
            let rows = || {
                result
                    .pipeline
                    .iter()
                    .filter(move |r| r.family == family && r.tpus == tpus)
            };
            let Some(ours) = rows().max_by(|a, b| a.speedup.total_cmp(&b.speedup)) else {
                continue;
            };
            let authors = rows()
                .filter(|r| author_strategies(family).contains(&r.strategy.as_str()))
                .map(|r| {
                    let one_device = result.single_ms(family, r.size).unwrap_or(f64::NAN);
                    (r, one_device / r.paper_scheme_ms)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1));
            lines.push(Headline {
                family,
                tpus,
                ours,
                authors,
                measured: best_of(measured.iter().map(|(_, m)| m), family, tpus)
                    .or_else(|| best_of(four.iter(), family, tpus))
                    .cloned(),
                published: best_of(published.iter(), family, tpus).map(|p| p.speedup),
            });
        }
    }
    lines
}

/// The largest of `speedups` for `family` and `tpus`.
fn best_of<'m>(
    speedups: impl Iterator<Item = &'m MeasuredSpeedup>,
    family: Family,
    tpus: usize,
) -> Option<&'m MeasuredSpeedup> {
    speedups
        .filter(|m| m.family == family && m.tpus == tpus)
        .max_by(|a, b| a.speedup.total_cmp(&b.speedup))
}

/// What [`time_batch`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchTiming {
    /// The batch's wall time, from the first push to the last output, divided by its size:
    /// what [`PipelineRow::ms_per_inference`] predicts.
    pub per_item_s: f64,
    /// Each stage's mean run latency over the batch.
    pub stage_latency_s: Vec<f64>,
}

/// Runs a batch of `items` zero-filled inputs through a pipeline of `segments` (stage `i` on
/// device `i` of `backend`) and times it.
///
/// # Errors
///
/// If a stage cannot be prepared, the pipeline fails, or `items` is 0.
pub fn time_batch(
    backend: &dyn Backend,
    segments: &[Arc<[u8]>],
    items: usize,
) -> Result<BatchTiming> {
    if items == 0 {
        return Err(Error::invalid("batch", "a batch needs at least one item"));
    }
    let pipeline = PipelineBuilder::from_segments(segments, backend)?.build()?;
    let inputs: Vec<(String, Vec<u8>)> = pipeline
        .inputs()
        .iter()
        .map(|spec| (spec.name.clone(), vec![0u8; spec.byte_size]))
        .collect();
    let named: Vec<(&str, &[u8])> = inputs
        .iter()
        .map(|(name, data)| (name.as_str(), data.as_slice()))
        .collect();
    let start = Instant::now();
    for _ in 0..items {
        pipeline.push(&named)?;
    }
    pipeline.close()?;
    let mut popped = 0;
    while pipeline.pop()?.is_some() {
        popped += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if popped != items {
        return Err(Error::invalid(
            "batch",
            format!("{popped} of {items} items came out of the pipeline"),
        ));
    }
    Ok(BatchTiming {
        per_item_s: elapsed / items as f64,
        stage_latency_s: pipeline
            .stats()
            .stages
            .iter()
            .map(|s| s.latency_mean.as_secs_f64())
            .collect(),
    })
}

/// The strategy of this library that reproduces a measured split: `layers` as it is, the
/// compiler's split as `uniform`, libcoral's profiling partitioner as `libcoral`.
pub fn strategy_for_split(split: &str) -> Option<&'static str> {
    match split {
        "layers" => Some("layers"),
        "compiler" => Some("uniform"),
        "profiled" => Some("libcoral"),
        _ => None,
    }
}

/// The splits the author measured for `family`, as this library's strategies: the fc runs
/// by whole layers, the conv runs by the compiler (`uniform`) and by libcoral's profiling
/// partitioner (`libcoral`).
pub fn author_strategies(family: Family) -> &'static [&'static str] {
    match family {
        Family::Fc => &["layers"],
        Family::Conv => &["uniform", "libcoral"],
    }
}

/// A speedup over one device that was measured or published.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredSpeedup {
    /// Model family.
    pub family: Family,
    /// Devices.
    pub tpus: usize,
    /// N or F.
    pub size: usize,
    /// The one-device time divided by the pipeline's time per inference.
    pub speedup: f64,
    /// The two measured times it is the ratio of, in ms per inference: `(one device,
    /// pipelined)`; `None` for a published figure.
    pub times_ms: Option<(f64, f64)>,
    /// Whether the cost model and the measuring programs were fitted to these measurements
    /// (the calibration files, 1–3 devices): an in-sample figure. The README's 4-device
    /// figures were never fitted; published figures are not measurements.
    pub fitted: bool,
    /// Where it comes from.
    pub source: &'static str,
}

impl MeasuredSpeedup {
    fn measured(
        family: Family,
        tpus: usize,
        size: usize,
        (one_device_ms, pipelined_ms): (f64, f64),
        fitted: bool,
        source: &'static str,
    ) -> Self {
        MeasuredSpeedup {
            family,
            tpus,
            size,
            speedup: one_device_ms / pipelined_ms,
            times_ms: Some((one_device_ms, pipelined_ms)),
            fitted,
            source,
        }
    }
}

/// The best measured speedups with 4 devices, as the calibration README states them from
/// the author's raw files (the 4-device files themselves are kept aside, so these were never
/// fitted): fc N = 2620, 36.03 ms on one device and 1.003 ms pipelined; conv F = 682
/// (profiled split), 246.97 ms and 71.74 ms. The one place that holds these figures.
pub fn measured_with_four_devices() -> [MeasuredSpeedup; 2] {
    const SOURCE: &str = "the calibration README, from the raw 4-device files";
    [
        MeasuredSpeedup::measured(Family::Fc, 4, 2620, (36.03, 1.003), false, SOURCE),
        MeasuredSpeedup::measured(Family::Conv, 4, 682, (246.97, 71.74), false, SOURCE),
    ]
}

/// The paper's published best speedups with 4 devices (fc, conv).
pub fn published_with_four_devices() -> [MeasuredSpeedup; 2] {
    let published = |family, speedup| MeasuredSpeedup {
        family,
        tpus: 4,
        size: 0,
        speedup,
        times_ms: None,
        fitted: false,
        source: "the paper (PDP 2023)",
    };
    [published(Family::Fc, 46.0), published(Family::Conv, 6.0)]
}

/// How the paper's plotting notebook (`plot_notebooks/MACs_memory_test.ipynb`) drew the conv
/// profiled results with 4 devices, as the calibration README states it. It does not say
/// which rows of the copies differ, so nothing here locates a difference.
#[derive(Debug, Clone, PartialEq)]
pub struct NotebookCopies {
    /// The notebook draws the conv profiled speedups as `factor · T1 / TS`.
    pub factor: f64,
    /// Rows of the 4-device conv profiled results.
    pub rows: usize,
    /// Rows whose copy differs from the raw file.
    pub rows_differing: usize,
    /// The largest difference of a time, ms.
    pub max_difference_ms: f64,
    /// Rows whose placement lists (on/off-chip MiB per segment) were changed.
    pub placement_lists_changed: usize,
}

/// The notebook's copies of the 4-device conv profiled results (calibration README): a factor
/// 1.2 on the speedups; 26 of 66 rows differ from the raw files, by up to 21.6 ms, with 14
/// placement lists changed.
pub fn notebook_copies_with_four_devices() -> NotebookCopies {
    NotebookCopies {
        factor: 1.2,
        rows: 66,
        rows_differing: 26,
        max_difference_ms: 21.6,
        placement_lists_changed: 14,
    }
}

/// Every measured speedup of the calibration folder: each multi-device row's time beside the
/// single-device time of the same size, `(split, speedup)`. Rows of a size without a
/// single-device measurement are left out. Every file of the folder is in the fit, so every
/// speedup is [`fitted`](MeasuredSpeedup::fitted).
pub fn measured_speedups(
    single: &[CalibrationPoint],
    pipelines: &[PipelinePoint],
) -> Vec<(String, MeasuredSpeedup)> {
    pipelines
        .iter()
        .filter_map(|p| {
            let one = single
                .iter()
                .find(|s| s.family == p.family && s.size == p.size)?;
            Some((
                p.split.clone(),
                MeasuredSpeedup::measured(
                    p.family,
                    p.devices(),
                    p.size,
                    (one.latency_ms, p.latency_ms),
                    true,
                    "the calibration files",
                ),
            ))
        })
        .collect()
}

/// A measured row beside its prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Model family.
    pub family: Family,
    /// `single` for one device, else the measured split (`layers`, `compiler`, `profiled`).
    pub split: String,
    /// Devices.
    pub tpus: usize,
    /// N or F.
    pub size: usize,
    /// Milliseconds per inference measured.
    pub measured_ms: f64,
    /// Predicted: the cost model on one device, or the measuring scheme over the stage
    /// latencies of the measured run's own cuts (found from its per-segment totals).
    pub predicted_ms: f64,
    /// The same prediction over the cuts that this library's matching strategy
    /// ([`strategy_for_split`]) chooses; `None` for one device.
    pub strategy_predicted_ms: Option<f64>,
}

impl Comparison {
    /// `|predicted − measured| / measured`.
    pub fn relative_error(&self) -> f64 {
        (self.predicted_ms - self.measured_ms).abs() / self.measured_ms
    }

    /// [`relative_error`](Self::relative_error) of
    /// [`strategy_predicted_ms`](Self::strategy_predicted_ms), when there is one.
    pub fn strategy_relative_error(&self) -> Option<f64> {
        self.strategy_predicted_ms
            .map(|p| (p - self.measured_ms).abs() / self.measured_ms)
    }
}

/// The errors of one measured series (a calibration file): [`SeriesError`] over the run's
/// own cuts, and over the cuts of this library's matching strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesErrors {
    /// The series and the median of [`Comparison::relative_error`].
    pub series: SeriesError,
    /// Median of [`Comparison::strategy_relative_error`], for multi-device series.
    pub strategy_median_error: Option<f64>,
}

/// The median errors of each series in `rows`, in the order the series first appear.
pub fn errors_per_series(rows: &[Comparison]) -> Vec<SeriesErrors> {
    let mut series: Vec<SeriesErrors> = Vec::new();
    let same = |s: &SeriesError, r: &Comparison| {
        s.family == r.family && s.split == r.split && s.devices == r.tpus
    };
    for r in rows {
        if series.iter().any(|s| same(&s.series, r)) {
            continue;
        }
        let mine: Vec<&Comparison> = rows
            .iter()
            .filter(|o| o.family == r.family && o.split == r.split && o.tpus == r.tpus)
            .collect();
        let errors: Vec<f64> = mine.iter().map(|o| o.relative_error()).collect();
        let strategy: Vec<f64> = mine
            .iter()
            .filter_map(|o| o.strategy_relative_error())
            .collect();
        series.push(SeriesErrors {
            series: SeriesError {
                family: r.family,
                split: r.split.clone(),
                devices: r.tpus,
                points: mine.len(),
                median_error: median(&errors),
            },
            strategy_median_error: (!strategy.is_empty()).then(|| median(&strategy)),
        });
    }
    series
}

/// A measured split with no matching strategy or plan.
fn no_plan_for(p: &PipelinePoint) -> Error {
    Error::invalid(
        "calibration points",
        format!(
            "{} {} size {}: no strategy of this library stands for the `{}` split on {} devices",
            p.family,
            p.split,
            p.size,
            p.split,
            p.devices()
        ),
    )
}
fn stage_latencies(
    model: &multitpu::model::Model<'_>,
    cuts: &[usize],
    cost_model: &EdgeTpuCostModel,
) -> Vec<f64> {
    predict_segments(model, cuts, cost_model)
        .iter()
        .map(|p| p.latency_s)
        .collect()
}

/// Every measured row of `single` and `pipelines` beside its prediction under `setup`.
///
/// # Errors
///
/// A size the paper's builders refuse, a split with no matching strategy, or segment totals
/// that fit no cut of the model.
pub fn compare_with_calibration(
    single: &[CalibrationPoint],
    pipelines: &[PipelinePoint],
    setup: &Setup,
) -> Result<Vec<Comparison>> {
    let cm = &setup.cost_model;
    let mut rows: Vec<Comparison> = single
        .par_iter()
        .map(|p| {
            let model = p.family.model(p.size)?;
            let whole = cm.predict(&SegmentWorkload::from_model(
                &model,
                0..model.operators.len(),
            ));
            Ok(Comparison {
                family: p.family,
                split: "single".to_string(),
                tpus: 1,
                size: p.size,
                measured_ms: p.latency_ms,
                predicted_ms: whole.latency_s * 1e3,
                strategy_predicted_ms: None,
            })
        })
        .collect::<Result<_>>()?;
    let multi = pipelines
        .par_iter()
        .map(|p| {
            let model = p.family.model(p.size)?;
            let graph = Graph::new(&model)?;
            let scheme = setup.scheme(p.family);
            let cuts = p.cuts(&model)?;
            let time = |cuts: &[usize]| -> Result<f64> {
                let latencies = stage_latencies(&model, cuts, cm);
                Ok(scheme.per_item_s(&latencies)? * 1e3)
            };
            let strategy = strategy_for_split(&p.split).ok_or_else(|| no_plan_for(p))?;
            let planned = plan_for(p.family, &graph, strategy, p.devices(), cm)?
                .ok_or_else(|| no_plan_for(p))?;
            Ok(Comparison {
                family: p.family,
                split: p.split.clone(),
                tpus: p.devices(),
                size: p.size,
                measured_ms: p.latency_ms,
                predicted_ms: time(&cuts)?,
                strategy_predicted_ms: Some(time(&planned.cuts())?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    rows.extend(multi);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_cuts_follow_the_authors_splits() {
        assert_eq!(fc_layer_cuts(1), Some(vec![]));
        assert_eq!(fc_layer_cuts(2), Some(vec![5]));
        assert_eq!(fc_layer_cuts(3), Some(vec![3, 7]));
        assert_eq!(fc_layer_cuts(4), Some(vec![3, 5, 7]));
        assert_eq!(fc_layer_cuts(5), None);
    }

    #[test]
    fn sweep_rows_cover_the_grid() {
        let sweep = Sweep {
            fc_sizes: vec![100],
            conv_sizes: vec![32],
            ..Sweep::quick()
        };
        let result = run_sweep(&sweep, &Setup::default(), &|| {}).unwrap();
        assert_eq!(result.single.len(), 2);
        // fc: 5 strategies × 4 device counts; conv: no `layers`.
        assert_eq!(result.pipeline.len(), 20 + 16);
        for row in &result.pipeline {
            assert_eq!(row.cuts.len() + 1, row.tpus, "{row:?}");
            assert_eq!(row.on_chip_mib.len(), row.tpus);
            assert!(
                row.ms_per_inference > 0.0 && row.paper_scheme_ms > 0.0,
                "{row:?}"
            );
        }
        let one = result
            .pipeline
            .iter()
            .find(|r| r.tpus == 1 && r.family == Family::Fc)
            .unwrap();
        // One device, a batch of 50: the pipeline's overhead only.
        assert!((one.speedup - 1.0).abs() < 0.05, "{one:?}");
    }

    #[test]
    fn unknown_strategies_are_errors() {
        let sweep = Sweep {
            strategies: vec!["best".to_string()],
            ..Sweep::quick()
        };
        assert!(run_sweep(&sweep, &Setup::default(), &|| {}).is_err());
    }
}
