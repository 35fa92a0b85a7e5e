//! An analytic estimate of a run of operators on the host CPU, for planning CPU segments
//! without timing them.
//!
//! TFLite's CPU kernels (one thread, no XNNPack) are modelled as
//!
//! ```text
//! latency = invoke_overhead
//!         + Σ_ops  per_op
//!         + Σ_ops  macs(op) / macs_per_s[class(op)][kind(op)]
//!         + Σ_ops  activation_bytes(op) / bytes_per_s
//!         + Σ_float QUANTIZE     elements(op) · quantize_s_per_element
//!         + Σ_DEQUANTIZE to float elements(op) · dequantize_s_per_element
//! ```
//!
//! The float conversions are timed on their own (`multitpu_paper::calibration::time_host_conversions`):
//! `QUANTIZE` is far slower per byte than anything else TFLite moves.
//!
//! where `class(op)` is the [`DataClass`] of the op's first non-constant input (uint8,
//! int8, or wider), `kind(op)` a convolution, a depthwise convolution or a dense layer (TFLite
//! has a kernel of its own for each, and for each type: uint8 ops run TFLite's older
//! per-tensor kernels, slower than the int8 ones), and `activation_bytes` the bytes of the
//! op's non-constant inputs and outputs ([`OpWorkload::activation_bytes`]).
//!
//! The constants of [`CpuCostModel::default`] were fitted on one machine class (an x86-64
//! VM, "Intel Xeon Processor", 2 cores, shared) against [`crate::profile::CpuProfiler`]:
//! `cargo run --release -p multitpu-paper --bin calibrate -- --cpu` prints the fit, and
//! `docs/cost-model.md` its errors. On another host they are an estimate of the shape of
//! the costs, not of their size: re-fit them there.

use std::ops::Range;

use crate::device::workload::{DeviceLayout, HostConversion, OpWorkload};
use crate::model::figures::OpKind;
use crate::model::{ElementType, Model, Tensor};

/// What a CPU kernel computes in, as far as its speed is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataClass {
    /// uint8 activations (TFLite's per-tensor quantized kernels).
    Uint8,
    /// int8 activations.
    Int8,
    /// Anything wider: float32 or float16, int16, int32 activations.
    Wide,
}

impl DataClass {
    /// The class of operator `op` of `model`: that of its first non-constant input (its
    /// first output when it has none).
    pub fn of_operator(model: &Model, op: usize) -> Self {
        let Some(operator) = model.operators.get(op) else {
            return DataClass::Wide;
        };
        let tensor = |t: usize| model.tensors.get(t);
        let element_type = operator
            .present_inputs()
            .filter_map(tensor)
            .find(|t| !t.is_constant())
            .or_else(|| operator.outputs.first().and_then(|&t| tensor(t)))
            .map(|t: &Tensor| t.element_type);
        match element_type {
            Some(ElementType::U8) => DataClass::Uint8,
            Some(ElementType::I8) => DataClass::Int8,
            _ => DataClass::Wide,
        }
    }
}

/// One value per kind of op with multiply-accumulates, as the CPU runs them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MacKinds<T> {
    /// `CONV_2D` and `TRANSPOSE_CONV`.
    pub conv: T,
    /// `DEPTHWISE_CONV_2D`.
    pub depthwise: T,
    /// `FULLY_CONNECTED`.
    pub fully_connected: T,
}

impl<T: Copy> MacKinds<T> {
    /// The entry of `kind`, or `None` for a kind without multiply-accumulates.
    pub fn get(&self, kind: OpKind) -> Option<T> {
        match kind {
            OpKind::Conv2d | OpKind::TransposeConv => Some(self.conv),
            OpKind::DepthwiseConv2d => Some(self.depthwise),
            OpKind::FullyConnected => Some(self.fully_connected),
            OpKind::Elementwise | OpKind::Other => None,
        }
    }

    fn get_mut(&mut self, kind: OpKind) -> Option<&mut T> {
        match kind {
            OpKind::Conv2d | OpKind::TransposeConv => Some(&mut self.conv),
            OpKind::DepthwiseConv2d => Some(&mut self.depthwise),
            OpKind::FullyConnected => Some(&mut self.fully_connected),
            OpKind::Elementwise | OpKind::Other => None,
        }
    }
}

/// One value per [`DataClass`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PerClass<T> {
    /// [`DataClass::Uint8`].
    pub uint8: T,
    /// [`DataClass::Int8`].
    pub int8: T,
    /// [`DataClass::Wide`].
    pub wide: T,
}

impl<T> PerClass<T> {
    /// The entry of `class`.
    pub fn get(&self, class: DataClass) -> &T {
        match class {
            DataClass::Uint8 => &self.uint8,
            DataClass::Int8 => &self.int8,
            DataClass::Wide => &self.wide,
        }
    }

    fn get_mut(&mut self, class: DataClass) -> &mut T {
        match class {
            DataClass::Uint8 => &mut self.uint8,
            DataClass::Int8 => &mut self.int8,
            DataClass::Wide => &mut self.wide,
        }
    }
}

/// The work of a run of operators as the CPU estimate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuWork {
    /// Operators in the run.
    pub ops: usize,
    /// Multiply-accumulates by data class and kind.
    pub macs: PerClass<MacKinds<u64>>,
    /// Bytes of every op's non-constant inputs and outputs.
    pub activation_bytes: u64,
    /// Elements of float `QUANTIZE` ops ([`HostConversion::Quantize`]).
    pub quantized_elements: u64,
    /// Elements of `DEQUANTIZE` ops to float ([`HostConversion::Dequantize`]).
    pub dequantized_elements: u64,
}

impl CpuWork {
    /// The work of operators `ops` of `model` (clamped to the model's operators).
    pub fn from_model(model: &Model, ops: Range<usize>) -> Self {
        let end = ops.end.min(model.operators.len());
        let start = ops.start.min(end);
        let mut work = CpuWork::default();
        for op in start..end {
            let alone = OpWorkload::of_operator(model, op, &DeviceLayout::EDGE_TPU);
            work.ops += 1;
            let class = DataClass::of_operator(model, op);
            if let Some(macs) = work.macs.get_mut(class).get_mut(alone.kind) {
                *macs = macs.saturating_add(alone.macs);
            }
            work.activation_bytes = work.activation_bytes.saturating_add(alone.activation_bytes);
            match alone.host_conversion {
                Some(HostConversion::Quantize(n)) => {
                    work.quantized_elements = work.quantized_elements.saturating_add(n);
                }
                Some(HostConversion::Dequantize(n)) => {
                    work.dequantized_elements = work.dequantized_elements.saturating_add(n);
                }
                None => {}
            }
        }
        work
    }
}

/// The CPU estimate's constants. See the module docs for the formula.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuCostModel {
    /// Fixed seconds of one invoke of a segment.
    pub invoke_overhead_s: f64,
    /// Fixed seconds of every operator.
    pub per_op_s: f64,
    /// Multiply-accumulates per second, by data class and kind.
    pub macs_per_s: PerClass<MacKinds<f64>>,
    /// Bytes per second of activations read and written.
    pub bytes_per_s: f64,
    /// Seconds per element of a float `QUANTIZE`, on top of its bytes.
    pub quantize_s_per_element: f64,
    /// Seconds per element of a `DEQUANTIZE` to float, on top of its bytes.
    pub dequantize_s_per_element: f64,
}

/// Seconds per element of a float `QUANTIZE` on the reference machine (timed on its own, a
/// 224×224×3 tensor, by `calibrate --cpu`); also the Edge TPU cost model's host figure.
pub const QUANTIZE_S_PER_ELEMENT: f64 = 3.485e-9;
/// Seconds per element of a `DEQUANTIZE` to float on the reference machine (as above).
pub const DEQUANTIZE_S_PER_ELEMENT: f64 = 0.462e-9;

/// Fitted on the reference machine: the output of `calibrate --cpu` (see the module docs).
mod fitted {
    /// Nothing measurable per invoke beyond the ops themselves.
    pub const INVOKE_OVERHEAD_S: f64 = 0.0;
    /// 0.08 µs of dispatch per op.
    pub const PER_OP_S: f64 = 8.048e-8;
    /// uint8: conv, depthwise, dense (no uint8 dense layer was timed: the int8 figure).
    pub const UINT8_MACS_PER_S: [f64; 3] = [1.60690e10, 7.08162e8, INT8_MACS_PER_S[2]];
    /// int8: conv, depthwise, dense.
    pub const INT8_MACS_PER_S: [f64; 3] = [2.69027e10, 3.24388e8, 6.86530e9];
    /// float and other wide types: conv, depthwise (not timed: the conv figure), dense.
    pub const WIDE_MACS_PER_S: [f64; 3] = [9.28190e9, 9.28190e9, 1.07411e10];
    /// 10.5 GB/s of activations read and written.
    pub const BYTES_PER_S: f64 = 1.04686e10;
}

fn mac_kinds([conv, depthwise, fully_connected]: [f64; 3]) -> MacKinds<f64> {
    MacKinds {
        conv,
        depthwise,
        fully_connected,
    }
}

impl Default for CpuCostModel {
    /// The constants fitted on the reference machine class (see the module docs).
    fn default() -> Self {
        CpuCostModel {
            invoke_overhead_s: fitted::INVOKE_OVERHEAD_S,
            per_op_s: fitted::PER_OP_S,
            macs_per_s: PerClass {
                uint8: mac_kinds(fitted::UINT8_MACS_PER_S),
                int8: mac_kinds(fitted::INT8_MACS_PER_S),
                wide: mac_kinds(fitted::WIDE_MACS_PER_S),
            },
            bytes_per_s: fitted::BYTES_PER_S,
            quantize_s_per_element: QUANTIZE_S_PER_ELEMENT,
            dequantize_s_per_element: DEQUANTIZE_S_PER_ELEMENT,
        }
    }
}

/// Every (class, kind) pair with multiply-accumulates.
const MAC_SLOTS: [(DataClass, OpKind); 9] = [
    (DataClass::Uint8, OpKind::Conv2d),
    (DataClass::Uint8, OpKind::DepthwiseConv2d),
    (DataClass::Uint8, OpKind::FullyConnected),
    (DataClass::Int8, OpKind::Conv2d),
    (DataClass::Int8, OpKind::DepthwiseConv2d),
    (DataClass::Int8, OpKind::FullyConnected),
    (DataClass::Wide, OpKind::Conv2d),
    (DataClass::Wide, OpKind::DepthwiseConv2d),
    (DataClass::Wide, OpKind::FullyConnected),
];

impl CpuCostModel {
    /// Every (class, kind) pair with multiply-accumulates, in a fixed order.
    pub fn mac_slots() -> &'static [(DataClass, OpKind)] {
        &MAC_SLOTS
    }

    /// The MAC rate of ops of `class` and `kind` (`None` for kinds without MACs).
    pub fn macs_per_s(&self, class: DataClass, kind: OpKind) -> Option<f64> {
        self.macs_per_s.get(class).get(kind)
    }

    /// Sets the MAC rate of ops of `class` and `kind` (ignored for kinds without MACs).
    pub fn set_macs_per_s(&mut self, class: DataClass, kind: OpKind, rate: f64) {
        if let Some(slot) = self.macs_per_s.get_mut(class).get_mut(kind) {
            *slot = rate;
        }
    }

    /// Predicted seconds of one inference of `work`.
    pub fn predict_work_s(&self, work: &CpuWork) -> f64 {
        let compute: f64 = MAC_SLOTS
            .iter()
            .filter_map(|&(class, kind)| {
                let macs = work.macs.get(class).get(kind)?;
                let rate = self.macs_per_s(class, kind)?;
                Some(macs as f64 / rate)
            })
            .sum();
        self.invoke_overhead_s
            + work.ops as f64 * self.per_op_s
            + compute
            + work.activation_bytes as f64 / self.bytes_per_s
            + work.quantized_elements as f64 * self.quantize_s_per_element
            + work.dequantized_elements as f64 * self.dequantize_s_per_element
    }

    /// Predicted seconds of one inference of operators `ops` of `model` on one CPU thread
    /// (a range beyond the model is clamped to it; an empty range costs the invoke overhead).
    pub fn predict_s(&self, model: &Model<'_>, ops: Range<usize>) -> f64 {
        self.predict_work_s(&CpuWork::from_model(model, ops))
    }

    /// Whether every constant is usable: rates positive, times finite and not negative.
    ///
    /// # Errors
    ///
    /// What is wrong with the first bad constant, in words.
    pub fn check(&self) -> Result<(), String> {
        let times = [
            ("invoke_overhead_s", self.invoke_overhead_s),
            ("per_op_s", self.per_op_s),
            ("quantize_s_per_element", self.quantize_s_per_element),
            ("dequantize_s_per_element", self.dequantize_s_per_element),
        ];
        for (name, v) in times {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} = {v} must be finite and not negative"));
            }
        }
        // `> 0` is false for NaN too.
        let positive = |v: f64| v > 0.0;
        if !positive(self.bytes_per_s) {
            return Err(format!(
                "bytes_per_s = {} must be positive",
                self.bytes_per_s
            ));
        }
        for &(class, kind) in &MAC_SLOTS {
            let rate = self.macs_per_s(class, kind).unwrap_or(f64::NAN);
            if !positive(rate) {
                return Err(format!(
                    "macs_per_s[{class:?}][{kind:?}] = {rate} must be positive"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::figures::tests::{model, operator, tensor};
    use crate::model::ops;

    /// float x → quantize → fc(w) → dequantize, and a float fc beside it.
    fn mixed() -> Model<'static> {
        use ElementType::{F32, I8};
        model(
            vec![
                tensor("x", F32, &[1, 16], false),  // 0
                tensor("q", I8, &[1, 16], false),   // 1
                tensor("w", I8, &[8, 16], true),    // 2
                tensor("h", I8, &[1, 8], false),    // 3
                tensor("out", F32, &[1, 8], false), // 4
                tensor("wf", F32, &[4, 16], true),  // 5
                tensor("f", F32, &[1, 4], false),   // 6
            ],
            vec![
                operator(ops::QUANTIZE, &[Some(0)], &[1]),
                operator(ops::FULLY_CONNECTED, &[Some(1), Some(2)], &[3]),
                operator(ops::DEQUANTIZE, &[Some(3)], &[4]),
                operator(ops::FULLY_CONNECTED, &[Some(0), Some(5)], &[6]),
            ],
            &[0],
            &[4, 6],
        )
    }

    #[test]
    fn work_counts_macs_by_class_and_activation_bytes() {
        let m = mixed();
        let w = CpuWork::from_model(&m, 0..4);
        assert_eq!(w.ops, 4);
        assert_eq!(w.macs.int8.fully_connected, 8 * 16);
        assert_eq!(w.macs.wide.fully_connected, 4 * 16);
        assert_eq!(w.macs.uint8, MacKinds::default());
        // quantize 64 + 16, fc 16 + 8, dequantize 8 + 32, float fc 64 + 16
        assert_eq!(w.activation_bytes, 80 + 24 + 40 + 80);
        assert_eq!((w.quantized_elements, w.dequantized_elements), (16, 8));
        assert_eq!(CpuWork::from_model(&m, 3..9).ops, 1, "clamped");
        assert_eq!(CpuWork::from_model(&m, 5..9), CpuWork::default());
    }

    #[test]
    fn prediction_adds_its_terms() {
        let mut cm = CpuCostModel {
            invoke_overhead_s: 1.0,
            per_op_s: 0.5,
            bytes_per_s: 8.0,
            quantize_s_per_element: 0.25,
            dequantize_s_per_element: 0.125,
            ..CpuCostModel::default()
        };
        cm.set_macs_per_s(DataClass::Int8, OpKind::FullyConnected, 64.0);
        cm.set_macs_per_s(DataClass::Wide, OpKind::FullyConnected, 32.0);
        cm.set_macs_per_s(DataClass::Wide, OpKind::Elementwise, 0.0);
        assert_eq!(cm.macs_per_s(DataClass::Wide, OpKind::Elementwise), None);
        assert_eq!(cm.check(), Ok(()));
        let m = mixed();
        let expected =
            1.0 + 4.0 * 0.5 + 128.0 / 64.0 + 64.0 / 32.0 + 224.0 / 8.0 + 16.0 * 0.25 + 8.0 * 0.125;
        assert!((cm.predict_s(&m, 0..4) - expected).abs() < 1e-12);
        assert_eq!(cm.predict_s(&m, 2..2), 1.0);
    }

    #[test]
    fn check_rejects_bad_constants() {
        assert_eq!(CpuCostModel::default().check(), Ok(()));
        let bad = CpuCostModel {
            bytes_per_s: 0.0,
            ..CpuCostModel::default()
        };
        assert!(bad.check().unwrap_err().contains("bytes_per_s"));
        let bad = CpuCostModel {
            per_op_s: f64::NAN,
            ..CpuCostModel::default()
        };
        assert!(bad.check().unwrap_err().contains("per_op_s"));
        let mut bad = CpuCostModel::default();
        bad.set_macs_per_s(DataClass::Uint8, OpKind::DepthwiseConv2d, 0.0);
        assert!(bad.check().unwrap_err().contains("Uint8"));
    }
}
