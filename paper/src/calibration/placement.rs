//! Fitting where the compiler puts parameters: the on-chip budget and the largest cached
//! tensor, by an exact search over the single-device placements, then the input reserve over
//! every segment of the multi-device runs.

use multitpu::device::{EdgeTpuCostModel, MIB, SegmentWorkload};

/// Range searched for the on-chip budget, in bytes.
const BUDGET_RANGE: (u64, u64) = (512 * 1024, 16 * 1024 * 1024);

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
fn best_budget(data: &[(f64, &SegmentWorkload)], limit: u64) -> (u64, f64) {
    let mut events: Vec<(u64, f64)> = Vec::new();
    for &(measured_mib, w) in data {
        let mut previous = 0.0;
        for (b, error) in error_steps(w, measured_mib, limit) {
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
pub(super) fn fit_placement(model: &mut EdgeTpuCostModel, data: &[(f64, &SegmentWorkload)]) {
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

/// Steps of the [`input_reserve`](EdgeTpuCostModel::input_reserve) search: 0 to 2 bytes of
/// budget per input byte, in steps of 1/400.
const RESERVE_STEPS: usize = 800;
const RESERVE_STEP: f64 = 1.0 / 400.0;

/// The input reserve minimising the summed absolute off-chip error of `measured` (off-chip
/// MiB and workload) under the fitted budget and limit: the middle of the longest run of
/// steps with the least error.
pub(super) fn fit_input_reserve(
    model: &mut EdgeTpuCostModel,
    measured: &[(f64, &SegmentWorkload)],
) {
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
