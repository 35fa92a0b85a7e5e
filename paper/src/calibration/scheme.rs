//! The paper's measuring programs, as a model of their own: what the author's scripts would
//! have printed for a pipeline whose devices take known times.
//!
//! The device model ([`EdgeTpuCostModel`](multitpu::device::EdgeTpuCostModel)) says how long
//! each segment takes on its device. The multi-device times in the calibration folder are
//! something else: the wall time of a batch divided by its size, measured by a program that
//! adds its own costs. Two programs were used:
//!
//! - [`MeasuringProgram::PythonThreads`] (the fc runs, batch 50): one Python thread per
//!   segment, `queue.Queue` between them, a `print` per item per stage. Each stage spends
//!   `per_stage_item_s` of Python work per item holding the interpreter lock, which the
//!   threads share; the device invoke releases it. So a batch takes
//!   `Σ (d_s + h) + (B − 1) · max(S · h, max_s d_s + h)`: the first item crosses every
//!   stage, and each later one follows at the pace of the lock or of the slowest stage.
//! - [`MeasuringProgram::PycoralRunner`] (the conv runs, batch 100): pycoral's
//!   `PipelinedModelRunner` (C++ threads and queues), rebuilt for every run. A stage costs
//!   `d_s + h` per item and the rebuild `per_batch_s` per batch:
//!   `Σ (d_s + h) + (B − 1) · max_s (d_s + h) + R`.
//!
//! With constant stage times the queue capacities do not change these batch times. The host
//! costs are fitted with the cost model itself ([`fit`](super::fit)), on the 2- and 3-device
//! runs; the 4-device runs are kept aside.

use crate::{Error, Result};

/// The author's programs that measured the multi-device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasuringProgram {
    /// One Python thread per stage sharing the interpreter lock (the fc runs).
    PythonThreads,
    /// pycoral's `PipelinedModelRunner`, rebuilt for every batch (the conv runs).
    PycoralRunner,
}

/// A measuring program with its fitted host costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperScheme {
    /// Which program.
    pub program: MeasuringProgram,
    /// Items per measured batch (fc 50, conv 100).
    pub batch: usize,
    /// Seconds of host work per item and stage (`h` in the module docs).
    pub per_stage_item_s: f64,
    /// Seconds of host work per batch (`R`).
    pub per_batch_s: f64,
}

/// Fitted figures: printed by `cargo run --release -p multitpu-paper --bin calibrate` (fitted
/// with the cost model on the 2- and 3-device files), checked by `paper/tests/calibration.rs`.
mod fitted {
    /// fc: 0.23 ms of Python work per item and stage, and 1.8 ms per batch of 50.
    pub const PYTHON_PER_STAGE_ITEM_S: f64 = 2.28006e-4;
    pub const PYTHON_PER_BATCH_S: f64 = 1.80404e-3;
    /// conv: the C++ runner adds nothing the data can tell from the devices' own time (the
    /// fit gives 0 for both).
    pub const PYCORAL_PER_STAGE_ITEM_S: f64 = 0.0;
    pub const PYCORAL_PER_BATCH_S: f64 = 0.0;
}

impl PaperScheme {
    /// The fc runs' program with the fitted host cost.
    pub fn python_threads() -> Self {
        PaperScheme {
            program: MeasuringProgram::PythonThreads,
            batch: 50,
            per_stage_item_s: fitted::PYTHON_PER_STAGE_ITEM_S,
            per_batch_s: fitted::PYTHON_PER_BATCH_S,
        }
    }

    /// The conv runs' program with the fitted host costs.
    pub fn pycoral_runner() -> Self {
        PaperScheme {
            program: MeasuringProgram::PycoralRunner,
            batch: 100,
            per_stage_item_s: fitted::PYCORAL_PER_STAGE_ITEM_S,
            per_batch_s: fitted::PYCORAL_PER_BATCH_S,
        }
    }

    /// Seconds per inference the program would have printed for stages taking
    /// `device_latency_s` each on their devices.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if there is no stage, the batch is 0 or a time is negative or not
    /// finite.
    ///
    /// ```
    /// use multitpu_paper::calibration::PaperScheme;
    ///
    /// let scheme = PaperScheme::python_threads();
    /// // Two fast stages: the threads' shared lock sets the pace, not the devices.
    /// let per_item = scheme.per_item_s(&[0.1e-3, 0.1e-3])?;
    /// assert!(per_item > 2.0 * scheme.per_stage_item_s);
    /// # Ok::<(), multitpu_paper::Error>(())
    /// ```
    pub fn per_item_s(&self, device_latency_s: &[f64]) -> Result<f64> {
        let bad = |v: f64| !(v.is_finite() && v >= 0.0);
        if device_latency_s.is_empty() || self.batch == 0 {
            return Err(Error::invalid(
                "measuring scheme",
                "no stage or an empty batch",
            ));
        }
        if device_latency_s.iter().any(|&d| bad(d))
            || bad(self.per_stage_item_s)
            || bad(self.per_batch_s)
        {
            return Err(Error::invalid(
                "measuring scheme",
                format!("times must be finite and not negative: {device_latency_s:?}, {self:?}"),
            ));
        }
        let stages = device_latency_s.len() as f64;
        let h = self.per_stage_item_s;
        let slowest = device_latency_s.iter().copied().fold(0.0, f64::max) + h;
        let pace = match self.program {
            MeasuringProgram::PythonThreads => slowest.max(stages * h),
            MeasuringProgram::PycoralRunner => slowest,
        };
        let first = device_latency_s.iter().sum::<f64>() + stages * h;
        let batch = self.batch as f64;
        Ok((first + (batch - 1.0) * pace + self.per_batch_s) / batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_threads_are_paced_by_the_lock_or_the_slowest_stage() {
        let scheme = PaperScheme {
            program: MeasuringProgram::PythonThreads,
            batch: 10,
            per_stage_item_s: 1.0,
            per_batch_s: 0.0,
        };
        // Lock-bound: 3 stages × 1 s of Python per item.
        let t = scheme.per_item_s(&[0.5, 0.5, 0.5]).unwrap();
        assert!((t - (4.5 + 9.0 * 3.0) / 10.0).abs() < 1e-12);
        // Device-bound: a 10 s stage.
        let t = scheme.per_item_s(&[0.5, 10.0]).unwrap();
        assert!((t - (12.5 + 9.0 * 11.0) / 10.0).abs() < 1e-12);
    }

    #[test]
    fn the_runner_pays_its_rebuild_once_per_batch() {
        let scheme = PaperScheme {
            program: MeasuringProgram::PycoralRunner,
            batch: 4,
            per_stage_item_s: 0.0,
            per_batch_s: 2.0,
        };
        let t = scheme.per_item_s(&[1.0, 3.0]).unwrap();
        assert!((t - (4.0 + 3.0 * 3.0 + 2.0) / 4.0).abs() < 1e-12);
        assert!(scheme.per_item_s(&[]).is_err());
        assert!(scheme.per_item_s(&[f64::NAN]).is_err());
    }
}
