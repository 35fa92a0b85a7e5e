//! Fitting the [`CpuCostModel`] to segments timed on the host's CPU.
//!
//! [`cpu_points`] times a model's segments with any [`Profiler`] (in practice
//! [`multitpu::profile::CpuProfiler`]: TFLite's CPU kernels, one thread): the whole model and
//! every segment of its equal-operator splits into 2, 3 and 4 ([`UniformByOps`]), so the fit
//! sees segments of every size and mix. [`fit_cpu`] then fits the estimate's five constants
//! by non-negative least squares on the relative time error. [`cpu_calibration_models`] is
//! the set of models the shipped constants were fitted on.

use std::ops::Range;
use std::path::Path;

use super::lsq::{median, non_negative_least_squares};
use crate::architectures;
use crate::{Error, Result};
use multitpu::device::{CpuCostModel, CpuWork};
use multitpu::model::builder::{Activation, ModelBuilder, Padding, range_quantization};
use multitpu::model::{ElementType, Graph, Model, ops, paper};
use multitpu::profile::Profiler;
use multitpu::segment::{Segmenter, UniformByOps};

/// One run of operators timed on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuPoint {
    /// The model's name.
    pub name: String,
    /// The operators timed.
    pub ops: Range<usize>,
    /// Whether they are the whole model.
    pub whole: bool,
    /// Their work, as the estimate sees it.
    pub work: CpuWork,
    /// Measured seconds of one inference.
    pub measured_s: f64,
}

/// A timed run against the fitted estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuFitRow {
    /// The point.
    pub point: CpuPoint,
    /// Predicted seconds of one inference.
    pub predicted_s: f64,
}

impl CpuFitRow {
    /// `predicted / measured − 1`.
    pub fn relative_error(&self) -> f64 {
        self.predicted_s / self.point.measured_s - 1.0
    }
}

/// The outcome of [`fit_cpu`].
#[derive(Debug, Clone, PartialEq)]
pub struct CpuFitReport {
    /// The fitted constants.
    pub model: CpuCostModel,
    /// Every point with its prediction, in input order.
    pub rows: Vec<CpuFitRow>,
}

impl CpuFitReport {
    /// Median of the absolute relative errors, over the whole models only (`whole_only`)
    /// or over every point.
    pub fn median_abs_relative_error(&self, whole_only: bool) -> f64 {
        let errors: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| !whole_only || r.point.whole)
            .map(|r| r.relative_error().abs())
            .collect();
        median(&errors)
    }
}

/// Columns of the fit: seconds = Σ coefficient · feature + the float conversions (timed
/// on their own, [`time_host_conversions`]). The overhead, the per-op cost, one MAC column
/// per [`CpuCostModel::mac_slots`] entry, the activation bytes.
const COLUMNS: usize = 12;
const OVERHEAD: usize = 0;
const OPS: usize = 1;
const FIRST_MACS: usize = 2;
const BYTES: usize = 11;

fn features(work: &CpuWork) -> [f64; COLUMNS] {
    let mut x = [0.0; COLUMNS];
    x[OVERHEAD] = 1.0;
    x[OPS] = work.ops as f64;
    for (i, &(class, kind)) in CpuCostModel::mac_slots().iter().enumerate() {
        x[FIRST_MACS + i] = work.macs.get(class).get(kind).unwrap_or(0) as f64;
    }
    x[BYTES] = work.activation_bytes as f64;
    x
}

/// Times the whole of `model` and every segment of its splits into 2, 3 and 4 equal
/// operator counts (fewer when the model has fewer cut points) with `profiler`; each
/// distinct range once.
///
/// # Errors
///
/// If the model has no operators or the profiler fails on a range.
pub fn cpu_points(profiler: &dyn Profiler, name: &str, model: &Model<'_>) -> Result<Vec<CpuPoint>> {
    let graph = Graph::new(model)?;
    let op_count = model.operators.len();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    ranges.push(0..op_count);
    for segments in 2..=4 {
        let Ok(plan) = UniformByOps.plan(&graph, segments) else {
            break;
        };
        for segment in plan.segments {
            if !ranges.contains(&segment.ops) {
                ranges.push(segment.ops);
            }
        }
    }
    ranges
        .into_iter()
        .map(|ops| {
            let measured_s = profiler.profile(model, ops.clone())?.latency_s;
            Ok(CpuPoint {
                name: name.to_owned(),
                work: CpuWork::from_model(model, ops.clone()),
                whole: ops == (0..op_count),
                ops,
                measured_s,
            })
        })
        .collect()
}

/// Fits the estimate's constants to `points` by non-negative least squares on the relative
/// error. The float conversions keep their figures from `start` (time them with
/// [`time_host_conversions`]), and so do MAC rates without data (a class and kind no point
/// has).
///
/// # Errors
///
/// If `points` is empty or a measured time is not a positive number.
pub fn fit_cpu(points: &[CpuPoint], start: &CpuCostModel) -> Result<CpuFitReport> {
    if points.is_empty() {
        return Err(Error::invalid("CPU calibration points", "none given"));
    }
    if let Some(bad) = points
        .iter()
        .find(|p| !(p.measured_s.is_finite() && p.measured_s > 0.0))
    {
        return Err(Error::invalid(
            "CPU calibration points",
            format!(
                "{} operators {}..{}: measured {} s",
                bad.name, bad.ops.start, bad.ops.end, bad.measured_s
            ),
        ));
    }
    let conversions = |w: &CpuWork| {
        w.quantized_elements as f64 * start.quantize_s_per_element
            + w.dequantized_elements as f64 * start.dequantize_s_per_element
    };
    let rows: Vec<([f64; COLUMNS], f64, f64)> = points
        .iter()
        .map(|p| {
            let rest = p.measured_s - conversions(&p.work);
            (features(&p.work), rest, p.measured_s)
        })
        .collect();
    let mut active = [false; COLUMNS];
    for (c, on) in active.iter_mut().enumerate() {
        *on = rows.iter().any(|(x, _, _)| x[c] != 0.0);
    }
    let a = non_negative_least_squares(&rows, active);
    let rate = |c: usize, old: f64| {
        if !active[c] {
            old
        } else if a[c] > 0.0 {
            1.0 / a[c]
        } else {
            f64::INFINITY
        }
    };
    let mut model = CpuCostModel {
        invoke_overhead_s: a[OVERHEAD].max(0.0),
        per_op_s: a[OPS].max(0.0),
        bytes_per_s: rate(BYTES, start.bytes_per_s),
        ..*start
    };
    for (i, &(class, kind)) in CpuCostModel::mac_slots().iter().enumerate() {
        let old = start.macs_per_s(class, kind).unwrap_or(f64::INFINITY);
        model.set_macs_per_s(class, kind, rate(FIRST_MACS + i, old));
    }
    let rows = points
        .iter()
        .map(|p| CpuFitRow {
            point: p.clone(),
            predicted_s: model.predict_work_s(&p.work),
        })
        .collect();
    Ok(CpuFitReport { model, rows })
}

/// Seconds per element of the host's float conversions on TFLite's CPU kernels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostConversions {
    /// float32 → int8 (`QUANTIZE`).
    pub quantize_s_per_element: f64,
    /// int8 → float32 (`DEQUANTIZE`).
    pub dequantize_s_per_element: f64,
}

/// The tensor the conversions are timed on: one 224×224×3 image.
const CONVERSION_SHAPE: [usize; 4] = [1, 224, 224, 3];

/// Times a lone `QUANTIZE` and a lone `DEQUANTIZE` of a 224×224×3 tensor with `profiler`:
/// what the host pays per element for a model's float input and output, which the Edge
/// TPU compiler leaves to the CPU.
///
/// # Errors
///
/// If the profiler fails.
pub fn time_host_conversions(profiler: &dyn Profiler) -> Result<HostConversions> {
    let elements: usize = CONVERSION_SHAPE.iter().product();
    let quantization = range_quantization(-1.0, 1.0, ElementType::I8)?;
    let mut b = ModelBuilder::new(0x0051_0A47);
    let x = b.input("input", ElementType::F32, &CONVERSION_SHAPE, None)?;
    let q = b.quantize(x, ElementType::I8, quantization.clone())?;
    b.output(q)?;
    let quantize = b.build()?;
    let mut b = ModelBuilder::new(0x00DE_0A47);
    let x = b.input(
        "input",
        ElementType::I8,
        &CONVERSION_SHAPE,
        Some(quantization),
    )?;
    let f = b.dequantize(x)?;
    b.output(f)?;
    let dequantize = b.build()?;
    let per_element = |model: &Model<'_>| -> Result<f64> {
        Ok(profiler.profile(model, 0..1)?.latency_s / elements as f64)
    };
    Ok(HostConversions {
        quantize_s_per_element: per_element(&quantize)?,
        dequantize_s_per_element: per_element(&dequantize)?,
    })
}

/// A float32 version of the paper's fc model (no quantization): 64 inputs → 4 ×
/// Dense(N, tanh) → Dense(10). For the wide MAC rate.
fn float_fc(hidden: usize) -> multitpu::Result<Model<'static>> {
    let mut b = ModelBuilder::new(0xF10A_7FC0 ^ hidden as u64);
    b.description(format!("float fc, N = {hidden}"));
    let mut h = b.input("input", ElementType::F32, &[1, 64], None)?;
    for _ in 0..4 {
        h = b.fully_connected(h, hidden, Activation::Tanh)?;
    }
    let out = b.fully_connected(h, 10, Activation::None)?;
    b.output(out)?;
    b.build()
}

/// A float32 version of the paper's conv model: 64×64×3 → 5 × Conv2D(F, 3×3, ReLU).
fn float_conv(filters: usize) -> multitpu::Result<Model<'static>> {
    let mut b = ModelBuilder::new(0xF10A_7C00 ^ filters as u64);
    b.description(format!("float conv, F = {filters}"));
    let mut h = b.input("input", ElementType::F32, &[1, 64, 64, 3], None)?;
    for _ in 0..5 {
        h = b.conv2d(h, filters, [3, 3], [1, 1], Padding::Same, Activation::Relu)?;
    }
    b.output(h)?;
    b.build()
}

/// Whether every operator of `model` is a builtin the CPU runtime has (no custom ops such
/// as `edgetpu-custom-op`).
fn runs_on_cpu(model: &Model<'_>) -> bool {
    model
        .operators
        .iter()
        .all(|op| op.opcode.builtin != ops::CUSTOM)
}

/// The models the shipped CPU constants were fitted on: every `.tflite` of `models_dir`
/// without custom operators (in file-name order), the paper's fc (N = 100, 500, 1000, 2000,
/// 3000) and conv (F = 16, 32, 64) models, their float versions (N = 100, 1000; F = 16, 32),
/// and the rebuilt MobileNet v1 and Inception v1 of [`architectures`].
///
/// # Errors
///
/// If `models_dir` cannot be listed or a file in it cannot be read or parsed.
pub fn cpu_calibration_models(models_dir: &Path) -> Result<Vec<(String, Model<'static>)>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut files: Vec<_> = std::fs::read_dir(models_dir)
        .map_err(io(models_dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
        .collect();
    files.sort();
    let mut models = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let model = Model::from_bytes(&bytes)?.into_owned();
        if runs_on_cpu(&model) {
            let name = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            models.push((name, model));
        }
    }
    for n in [100, 500, 1000, 2000, 3000] {
        models.push((format!("paper fc N={n}"), paper::fc(n)?));
    }
    for f in [16, 32, 64] {
        models.push((format!("paper conv F={f}"), paper::conv(f)?));
    }
    for n in [100, 1000] {
        models.push((format!("float fc N={n}"), float_fc(n)?));
    }
    for f in [16, 32] {
        models.push((format!("float conv F={f}"), float_conv(f)?));
    }
    models.push((
        "MobileNet v1 1.0 224 (rebuilt)".to_owned(),
        architectures::mobilenet_v1(1.0, 224)?,
    ));
    models.push((
        "Inception v1 (rebuilt)".to_owned(),
        architectures::inception_v1()?,
    ));
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use multitpu::device::DataClass;
    use multitpu::model::figures::OpKind;

    /// Points made by a known estimate are fitted back to it.
    #[test]
    fn fit_recovers_a_known_estimate() {
        let mut truth = CpuCostModel {
            invoke_overhead_s: 20e-6,
            per_op_s: 3e-6,
            bytes_per_s: 2e9,
            quantize_s_per_element: 4e-9,
            dequantize_s_per_element: 1e-9,
            ..CpuCostModel::default()
        };
        truth.set_macs_per_s(DataClass::Int8, OpKind::FullyConnected, 4e9);
        truth.set_macs_per_s(DataClass::Int8, OpKind::Conv2d, 20e9);
        truth.set_macs_per_s(DataClass::Wide, OpKind::FullyConnected, 3e9);
        truth.set_macs_per_s(DataClass::Wide, OpKind::Conv2d, 5e9);
        let mut points = Vec::new();
        for (name, model) in [
            ("fc", paper::fc(300).expect("fc")),
            ("conv", paper::conv(16).expect("conv")),
            ("float fc", float_fc(200).expect("float fc")),
            ("float conv", float_conv(8).expect("float conv")),
        ] {
            points.extend(cpu_points(&truth, name, &model).expect("points"));
        }
        let start = CpuCostModel {
            quantize_s_per_element: 4e-9,
            dequantize_s_per_element: 1e-9,
            ..CpuCostModel::default()
        };
        let report = fit_cpu(&points, &start).expect("fits");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs();
        let m = report.model;
        assert!(close(m.invoke_overhead_s, 20e-6), "{m:?}");
        assert!(close(m.per_op_s, 3e-6), "{m:?}");
        assert!(close(m.bytes_per_s, 2e9), "{m:?}");

        for &(class, kind) in CpuCostModel::mac_slots() {
            let (fitted, expected) = (m.macs_per_s(class, kind), truth.macs_per_s(class, kind));
            let (Some(fitted), Some(expected)) = (fitted, expected) else {
                panic!("{class:?} {kind:?}");
            };
            assert!(close(fitted, expected), "{class:?} {kind:?}: {m:?}");
        }
        assert!(report.median_abs_relative_error(false) < 1e-9);
    }

    #[test]
    fn fit_needs_positive_times() {
        assert!(fit_cpu(&[], &CpuCostModel::default()).is_err());
        let model = paper::fc(10).expect("fc");
        let bad = CpuPoint {
            name: "fc".to_owned(),
            ops: 0..1,
            whole: false,
            work: CpuWork::from_model(&model, 0..1),
            measured_s: 0.0,
        };
        assert!(fit_cpu(&[bad], &CpuCostModel::default()).is_err());
    }
}
