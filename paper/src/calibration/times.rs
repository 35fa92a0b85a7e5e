//! Fitting the cost model's time parameters together with the measuring programs' host
//! costs.
//!
//! With the placement fixed, a segment's predicted latency is linear in the model's
//! coefficients (seconds per invoke, per device op, per device MAC of each kind, per byte
//! copied, per parameter byte crossing the link, per byte in, per byte out), except for the tile
//! size, which sets how many times a streamed convolution weight crosses the link: the fit
//! tries every tile size of a grid and keeps the best. A multi-device run's time is the
//! measuring program's ([`PaperScheme::per_item_s`]), linear in the same coefficients and in
//! the program's host costs once it is known which stage (or the Python threads' shared
//! lock) sets the pace; the fit alternates between choosing the pace with the current
//! coefficients and solving for the coefficients.
//!
//! Every observation is a relative error. Each measured series (a calibration file: family,
//! split, device count) weighs as much in all as one published figure, so the 123 fc points
//! do not drown the 66 of a conv series or a single real network; a Huber weight (beyond
//! 5 %) keeps a few odd measurements (a raw file's glitch, fc N=2000's unusual placement)
//! from pulling the rest. Coefficients are kept non-negative.

use multitpu::device::{EdgeTpuCostModel, OpWorkload, SegmentWorkload};
use multitpu::model::figures::OpKind;

use super::lsq::non_negative_least_squares;
use super::scheme::{MeasuringProgram, PaperScheme};

/// Columns of the fit: a prediction is Σ coefficient · feature, plus the host's conversions.
const OVERHEAD: usize = 0;
const PER_OP: usize = 1;
const CONV_MACS: usize = 2;
const DEPTHWISE_MACS: usize = 3;
const FC_MACS: usize = 4;
const COPIED: usize = 5;
const STREAMED: usize = 6;
const INPUT: usize = 7;
const OUTPUT: usize = 8;
/// Device columns end here; the measuring programs' host costs follow.
const DEVICE_COLUMNS: usize = 9;
const PYTHON_STAGE: usize = 9;
const PYTHON_BATCH: usize = 10;
const RUNNER_STAGE: usize = 11;
const RUNNER_BATCH: usize = 12;
const COLUMNS: usize = 13;

/// Relative error beyond which an observation's weight falls (Huber).
const HUBER_DELTA: f64 = 0.05;
/// Rounds of choosing the pace and the weights, then solving, at most.
const MAX_ROUNDS: usize = 60;

/// Tile sizes tried: 1/32 MiB to 2 MiB in steps of 1/32 MiB.
const TILE_STEP: u64 = 32 * 1024;
const TILE_STEPS: u64 = 64;

/// What was measured: one segment alone, or a pipeline of segments timed by a measuring
/// program. Segments are indices into the fit's list of workloads.
#[derive(Debug, Clone)]
pub(super) enum Timed {
    /// One segment on one device.
    Alone(usize),
    /// Segments as a pipeline, one device each, timed by a program with batch `batch`.
    Pipeline {
        /// The stages, in order.
        stages: Vec<usize>,
        /// Which program timed it.
        program: MeasuringProgram,
        /// Items per batch.
        batch: usize,
    },
}

/// One measurement for the fit.
#[derive(Debug, Clone)]
pub(super) struct Observation {
    /// What ran.
    pub timed: Timed,
    /// Seconds per item measured.
    pub measured_s: f64,
    /// Its weight before the Huber factor.
    pub weight: f64,
}

/// The fitted time parameters: the cost model (placement untouched) and the two programs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TimeFit {
    pub model: EdgeTpuCostModel,
    pub python: PaperScheme,
    pub runner: PaperScheme,
}

/// Fits the time parameters of `start` and the host costs of the two measuring programs
/// (`python`, `runner`: their batches are kept) to `observations` of `segments`, placed by
/// `start`'s placement. Parameters without data keep their value from `start`.
pub(super) fn fit_times(
    start: &EdgeTpuCostModel,
    python: &PaperScheme,
    runner: &PaperScheme,
    segments: &[SegmentWorkload],
    observations: &[Observation],
) -> TimeFit {
    let placed: Vec<Placed> = segments.iter().map(|w| Placed::new(start, w)).collect();
    let mut best: Option<(f64, u64, [f64; COLUMNS])> = None;
    let mut costs = Vec::with_capacity(TILE_STEPS as usize);
    for step in 1..=TILE_STEPS {
        let tile = step * TILE_STEP;
        let features: Vec<Features> = placed.iter().map(|p| p.features(start, tile)).collect();
        let (cost, a) = solve_for_tile(start, python, runner, &features, observations);
        costs.push((tile, cost, a));
        if best.as_ref().is_none_or(|(c, _, _)| cost < *c - 1e-12) {
            best = Some((cost, tile, a));
        }
    }
    let (least, _, _) = best.expect("at least one tile size");
    // The cost is a step function of the tile: take the middle of the widest run of the
    // least cost, so the figure sits away from the steps.
    let (tile, a) = middle_of_least(&costs, least);
    apply(start, python, runner, tile, &a)
}

/// The middle of the widest run of tile sizes whose cost is the least (the first of equally
/// wide runs), with its coefficients.
fn middle_of_least(costs: &[(u64, f64, [f64; COLUMNS])], least: f64) -> (u64, [f64; COLUMNS]) {
    let at_least = |i: usize| costs[i].1 <= least + 1e-12;
    let mut best = (0, 0);
    let mut i = 0;
    while i < costs.len() {
        if !at_least(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < costs.len() && at_least(i + 1) {
            i += 1;
        }
        if !at_least(best.0) || i - start > best.1 - best.0 {
            best = (start, i);
        }
        i += 1;
    }
    let middle = (best.0 + best.1) / 2;
    (costs[middle].0, costs[middle].2)
}

/// A segment with its placement fixed: what does not depend on the tile size.
struct Placed {
    /// Features but the streamed bytes.
    base: [f64; DEVICE_COLUMNS],
    /// Streamed parameter bytes with the op reading them.
    streamed: Vec<(u64, OpWorkload)>,
    /// Seconds of the host's conversions (never fitted).
    host_s: f64,
}

impl Placed {
    fn new(model: &EdgeTpuCostModel, w: &SegmentWorkload) -> Self {
        let mut base = [0.0; DEVICE_COLUMNS];
        base[OVERHEAD] = 1.0;
        base[INPUT] = w.input_bytes as f64;
        base[OUTPUT] = w.output_bytes as f64;
        let mut streamed = Vec::new();
        let mut host_s = 0.0;
        for (op, cached) in w.ops.iter().zip(model.placement(w)) {
            if !op.on_device() {
                host_s += model.op_time_s(op);
                continue;
            }
            base[PER_OP] += 1.0;
            base[COPIED] += op.copy_bytes as f64;
            match op.kind {
                OpKind::Conv2d | OpKind::TransposeConv => base[CONV_MACS] += op.device_macs as f64,
                OpKind::DepthwiseConv2d => base[DEPTHWISE_MACS] += op.device_macs as f64,
                OpKind::FullyConnected => base[FC_MACS] += op.device_macs as f64,
                OpKind::Elementwise | OpKind::Other => {}
            }
            for (&bytes, &on_chip) in op.param_tensor_bytes.iter().zip(&cached) {
                if !on_chip {
                    streamed.push((bytes, op.clone()));
                }
            }
        }
        Placed {
            base,
            streamed,
            host_s,
        }
    }

    fn features(&self, model: &EdgeTpuCostModel, tile_bytes: u64) -> Features {
        let tiled = EdgeTpuCostModel {
            tile_bytes,
            ..model.clone()
        };
        let mut x = self.base;
        x[STREAMED] = self
            .streamed
            .iter()
            .map(|(bytes, op)| *bytes as f64 * tiled.stream_passes(op) as f64)
            .sum();
        Features {
            x,
            host_s: self.host_s,
        }
    }
}

/// A segment's features for one tile size.
struct Features {
    x: [f64; DEVICE_COLUMNS],
    host_s: f64,
}

impl Features {
    fn latency_s(&self, a: &[f64; COLUMNS]) -> f64 {
        self.host_s + self.x.iter().zip(a).map(|(x, a)| x * a).sum::<f64>()
    }
}

/// The parameter each device column stands for, as the docs name it.
const PARAMETER: [&str; DEVICE_COLUMNS] = [
    "invoke_overhead_s",
    "per_op_s",
    "macs_per_s[Conv2d]",
    "macs_per_s[DepthwiseConv2d]",
    "macs_per_s[FullyConnected]",
    "concat_bytes_per_s",
    "stream_bytes_per_s",
    "input_bytes_per_s",
    "output_bytes_per_s",
];

/// A parameter that `observations[index]` alone pins among `observations` (the fit without
/// it would keep the parameter's starting value): then that fit cannot predict it.
pub(super) fn sole_source(
    start: &EdgeTpuCostModel,
    segments: &[SegmentWorkload],
    observations: &[Observation],
    index: usize,
) -> Option<&'static str> {
    let placed: Vec<Placed> = segments.iter().map(|w| Placed::new(start, w)).collect();
    let features: Vec<Features> = placed
        .iter()
        .map(|p| p.features(start, start.tile_bytes))
        .collect();
    let a = [1.0; COLUMNS];
    let used = |o: &Observation| linear_row(&o.timed, &features, &a).0;
    let mine = used(&observations[index]);
    (0..DEVICE_COLUMNS).find_map(|c| {
        let elsewhere = observations
            .iter()
            .enumerate()
            .any(|(i, o)| i != index && used(o)[c] != 0.0);
        (mine[c] != 0.0 && !elsewhere).then_some(PARAMETER[c])
    })
}

/// The model's and the programs' coefficients as columns.
fn coefficients(
    model: &EdgeTpuCostModel,
    python: &PaperScheme,
    runner: &PaperScheme,
) -> [f64; COLUMNS] {
    let inverse = |rate: f64| if rate > 0.0 { 1.0 / rate } else { 0.0 };
    let mut a = [0.0; COLUMNS];
    a[OVERHEAD] = model.invoke_overhead_s;
    a[PER_OP] = model.per_op_s;
    a[CONV_MACS] = inverse(model.macs_per_s.conv2d);
    a[DEPTHWISE_MACS] = inverse(model.macs_per_s.depthwise_conv2d);
    a[FC_MACS] = inverse(model.macs_per_s.fully_connected);
    a[COPIED] = inverse(model.concat_bytes_per_s);
    a[STREAMED] = inverse(model.stream_bytes_per_s);
    a[INPUT] = inverse(model.input_bytes_per_s);
    a[OUTPUT] = inverse(model.output_bytes_per_s);
    a[PYTHON_STAGE] = python.per_stage_item_s;
    a[PYTHON_BATCH] = python.per_batch_s;
    a[RUNNER_STAGE] = runner.per_stage_item_s;
    a[RUNNER_BATCH] = runner.per_batch_s;
    a
}

/// The columns of a program's host costs.
fn program_columns(program: MeasuringProgram) -> (usize, usize) {
    match program {
        MeasuringProgram::PythonThreads => (PYTHON_STAGE, PYTHON_BATCH),
        MeasuringProgram::PycoralRunner => (RUNNER_STAGE, RUNNER_BATCH),
    }
}

/// One observation as a linear row under coefficients `a`: its features (the pace chosen
/// with `a`) and the constant part (the host's conversions), both per item.
fn linear_row(timed: &Timed, features: &[Features], a: &[f64; COLUMNS]) -> ([f64; COLUMNS], f64) {
    let mut x = [0.0; COLUMNS];
    match timed {
        Timed::Alone(s) => {
            x[..DEVICE_COLUMNS].copy_from_slice(&features[*s].x);
            (x, features[*s].host_s)
        }
        Timed::Pipeline {
            stages,
            program,
            batch,
        } => {
            // B · t = Σ_s d_s + S·h + (B − 1)·pace + R, pace = d_k + h for the slowest stage
            // k, or S·h when the Python threads' shared lock is slower.
            let (stage_col, batch_col) = program_columns(*program);
            let b = *batch as f64;
            let s = stages.len() as f64;
            let latency = |i: usize| features[i].latency_s(a);
            let slowest = stages
                .iter()
                .copied()
                .max_by(|&i, &j| latency(i).total_cmp(&latency(j)))
                .unwrap_or(0);
            let lock_bound = *program == MeasuringProgram::PythonThreads
                && s * a[stage_col] > latency(slowest) + a[stage_col];
            let mut host = 0.0;
            for &i in stages {
                for (c, v) in features[i].x.iter().enumerate() {
                    x[c] += v / b;
                }
                host += features[i].host_s / b;
            }
            x[stage_col] = s / b;
            if lock_bound {
                x[stage_col] += (b - 1.0) * s / b;
            } else {
                for (c, v) in features[slowest].x.iter().enumerate() {
                    x[c] += (b - 1.0) * v / b;
                }
                host += (b - 1.0) * features[slowest].host_s / b;
                x[stage_col] += (b - 1.0) / b;
            }
            x[batch_col] = 1.0 / b;
            (x, host)
        }
    }
}

/// Prediction of `timed` under `a`, in seconds per item.
fn predict(timed: &Timed, features: &[Features], a: &[f64; COLUMNS]) -> f64 {
    let (x, host) = linear_row(timed, features, a);
    host + x.iter().zip(a).map(|(x, a)| x * a).sum::<f64>()
}

/// Huber's loss of relative residual `r`, in units of `HUBER_DELTA`².
fn huber(r: f64) -> f64 {
    let r = r.abs();
    if r <= HUBER_DELTA {
        r * r / 2.0
    } else {
        HUBER_DELTA * (r - HUBER_DELTA / 2.0)
    }
}

/// Iteratively reweighted, pace-choosing least squares for one tile size: the robust cost
/// and the coefficients.
fn solve_for_tile(
    start: &EdgeTpuCostModel,
    python: &PaperScheme,
    runner: &PaperScheme,
    features: &[Features],
    observations: &[Observation],
) -> (f64, [f64; COLUMNS]) {
    let mut a = coefficients(start, python, runner);
    let mut active = [false; COLUMNS];
    for o in observations {
        let (x, _) = linear_row(&o.timed, features, &a);
        for (c, v) in x.iter().enumerate() {
            active[c] |= *v != 0.0;
        }
    }
    for _ in 0..MAX_ROUNDS {
        let rows: Vec<([f64; COLUMNS], f64, f64)> = observations
            .iter()
            .map(|o| {
                let (x, host) = linear_row(&o.timed, features, &a);
                let r = predict(&o.timed, features, &a) / o.measured_s - 1.0;
                let robust = if r.abs() > HUBER_DELTA {
                    (HUBER_DELTA / r.abs()).sqrt()
                } else {
                    1.0
                };
                // Weighted relative residual: (x·a + host − m) · w / m.
                let t = o.measured_s / (o.weight * robust);
                (x, o.measured_s - host, t)
            })
            .collect();
        let mut solution = non_negative_least_squares(&rows, active);
        for c in 0..COLUMNS {
            if !active[c] {
                solution[c] = a[c];
            }
        }
        let settled = solution
            .iter()
            .zip(&a)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(y.abs()));
        a = solution;
        if settled {
            break;
        }
    }
    let cost = observations
        .iter()
        .map(|o| o.weight * o.weight * huber(predict(&o.timed, features, &a) / o.measured_s - 1.0))
        .sum();
    (cost, a)
}

/// The model and programs with coefficients `a` and tile `tile_bytes`.
fn apply(
    start: &EdgeTpuCostModel,
    python: &PaperScheme,
    runner: &PaperScheme,
    tile_bytes: u64,
    a: &[f64; COLUMNS],
) -> TimeFit {
    let rate = |c: usize| {
        if a[c] > 0.0 {
            1.0 / a[c]
        } else {
            f64::INFINITY
        }
    };
    let mut model = start.clone();
    model.tile_bytes = tile_bytes;
    model.invoke_overhead_s = a[OVERHEAD];
    model.per_op_s = a[PER_OP];
    model.macs_per_s.conv2d = rate(CONV_MACS);
    model.macs_per_s.transpose_conv = rate(CONV_MACS);
    model.macs_per_s.depthwise_conv2d = rate(DEPTHWISE_MACS);
    model.macs_per_s.fully_connected = rate(FC_MACS);
    model.concat_bytes_per_s = rate(COPIED);
    model.stream_bytes_per_s = rate(STREAMED);
    model.input_bytes_per_s = rate(INPUT);
    model.output_bytes_per_s = rate(OUTPUT);
    TimeFit {
        model,
        python: PaperScheme {
            per_stage_item_s: a[PYTHON_STAGE],
            per_batch_s: a[PYTHON_BATCH],
            ..*python
        },
        runner: PaperScheme {
            per_stage_item_s: a[RUNNER_STAGE],
            per_batch_s: a[RUNNER_BATCH],
            ..*runner
        },
    }
}
