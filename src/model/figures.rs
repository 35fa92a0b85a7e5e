//! Per-operator figures: multiply-accumulates, parameter bytes and the kind of work.
//!
//! These are the numbers a cost model needs from a [`Model`]. They come from tensor shapes
//! alone; a missing, negative or overflowing shape never panics: arithmetic saturates and an
//! unknown dimension counts as 0.
//!
//! MAC counts (one inference, batch included):
//!
//! | op | MACs |
//! | --- | --- |
//! | `CONV_2D` | `batch · out_h · out_w · out_c · k_h · k_w · in_c` |
//! | `DEPTHWISE_CONV_2D` | `batch · out_h · out_w · out_c · k_h · k_w` |
//! | `FULLY_CONNECTED` | `batch · units · in_features` (weights `[units, in_features]`) |
//! | `TRANSPOSE_CONV` | `batch · in_h · in_w · in_c · k_h · k_w · out_c` |
//! | every other op | 0 (see [`OpFigures::output_elements`] for its size) |

use crate::model::{Model, Operator};
use std::ops::Range;

/// `BuiltinOperator` codes: the named ones of [`crate::model::ops`], plus the other
/// element-wise ops.
mod code {
    pub use crate::model::ops::{
        ADD, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, FULLY_CONNECTED, LOGISTIC, MUL, QUANTIZE,
        TANH, TRANSPOSE_CONV,
    };
    pub const FLOOR: i32 = 8;
    pub const RELU: i32 = 19;
    pub const RELU_N1_TO_1: i32 = 20;
    pub const RELU6: i32 = 21;
    pub const SUB: i32 = 41;
    pub const DIV: i32 = 42;
    pub const PRELU: i32 = 54;
    pub const MAXIMUM: i32 = 55;
    pub const MINIMUM: i32 = 57;
    pub const LEAKY_RELU: i32 = 98;
    pub const ABS: i32 = 101;
    pub const HARD_SWISH: i32 = 117;
}

/// What kind of work an operator does, as far as cost is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `CONV_2D`.
    Conv2d,
    /// `DEPTHWISE_CONV_2D`.
    DepthwiseConv2d,
    /// `FULLY_CONNECTED`.
    FullyConnected,
    /// `TRANSPOSE_CONV`.
    TransposeConv,
    /// One output element per input element: add, sub, mul, div, min/max, activations
    /// (relu, relu6, tanh, logistic, hard swish, leaky relu, prelu), abs, floor,
    /// quantize, dequantize.
    Elementwise,
    /// Everything else (pooling, reshape, concatenation, softmax, custom ops, …).
    Other,
}

impl OpKind {
    /// The kind of an operator with this builtin code.
    pub fn from_builtin(builtin: i32) -> Self {
        match builtin {
            code::CONV_2D => OpKind::Conv2d,
            code::DEPTHWISE_CONV_2D => OpKind::DepthwiseConv2d,
            code::FULLY_CONNECTED => OpKind::FullyConnected,
            code::TRANSPOSE_CONV => OpKind::TransposeConv,
            code::ADD
            | code::DEQUANTIZE
            | code::FLOOR
            | code::LOGISTIC
            | code::MUL
            | code::RELU
            | code::RELU_N1_TO_1
            | code::RELU6
            | code::TANH
            | code::SUB
            | code::DIV
            | code::PRELU
            | code::MAXIMUM
            | code::MINIMUM
            | code::LEAKY_RELU
            | code::ABS
            | code::QUANTIZE
            | code::HARD_SWISH => OpKind::Elementwise,
            _ => OpKind::Other,
        }
    }

    /// Whether the op is a convolution or a dense layer: an op with a weight tensor whose
    /// MACs are counted.
    pub fn has_weights(self) -> bool {
        matches!(
            self,
            OpKind::Conv2d
                | OpKind::DepthwiseConv2d
                | OpKind::FullyConnected
                | OpKind::TransposeConv
        )
    }
}

/// The figures of one operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpFigures {
    /// Multiply-accumulates of one inference (0 for ops that are not convolutions or dense
    /// layers, and when a needed shape is unknown).
    pub macs: u64,
    /// Bytes of all constant input tensors (each counted once even if the op reads it twice).
    pub param_bytes: u64,
    /// Constant input tensors (parameters), in input order, without repeats.
    pub param_tensors: Vec<usize>,
    /// What kind of work the op does.
    pub kind: OpKind,
    /// Elements of all output tensors: an honest size for ops without MACs
    /// (0 when a shape is unknown).
    pub output_elements: u64,
}

/// The figures of operator `op` of `model`. An out-of-range `op` gives all-zero figures of
/// kind [`OpKind::Other`].
pub fn op_figures(model: &Model, op: usize) -> OpFigures {
    let Some(operator) = model.operators.get(op) else {
        return OpFigures {
            macs: 0,
            param_bytes: 0,
            param_tensors: Vec::new(),
            kind: OpKind::Other,
            output_elements: 0,
        };
    };
    let kind = OpKind::from_builtin(operator.opcode.builtin);
    let mut param_tensors = Vec::new();
    for t in operator.present_inputs() {
        let constant = model
            .tensors
            .get(t)
            .is_some_and(|tensor| tensor.is_constant());
        if constant && !param_tensors.contains(&t) {
            param_tensors.push(t);
        }
    }
    let param_bytes = param_tensors
        .iter()
        .filter_map(|&t| model.tensors.get(t)?.byte_size())
        .fold(0u64, |acc, b| acc.saturating_add(b as u64));
    let output_elements = operator
        .outputs
        .iter()
        .map(|&t| elements(shape(model, Some(t))))
        .fold(0u64, u64::saturating_add);
    OpFigures {
        macs: macs(model, operator, kind),
        param_bytes,
        param_tensors,
        kind,
        output_elements,
    }
}

/// Shape of tensor `t`, `None` when the tensor is absent.
fn shape<'m>(model: &'m Model, t: Option<usize>) -> Option<&'m [i32]> {
    t.and_then(|t| model.tensors.get(t))
        .map(|tensor| tensor.shape.as_slice())
}

/// Dimension `i` of `shape` (negative indices count from the end); 0 when absent or negative.
fn dim(shape: &[i32], i: isize) -> u64 {
    let index = if i < 0 {
        shape.len().checked_sub(i.unsigned_abs())
    } else {
        Some(i.unsigned_abs())
    };
    index
        .and_then(|i| shape.get(i))
        .and_then(|&d| u64::try_from(d).ok())
        .unwrap_or(0)
}

/// Product of all dimensions (1 for a scalar), saturating; 0 if any dimension is negative
/// or the tensor is absent.
fn elements(shape: Option<&[i32]>) -> u64 {
    shape.map_or(0, |shape| {
        shape.iter().fold(1u64, |acc, &d| {
            acc.saturating_mul(u64::try_from(d).unwrap_or(0))
        })
    })
}

/// Saturating product.
fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |acc, &f| acc.saturating_mul(f))
}

fn macs(model: &Model, operator: &Operator, kind: OpKind) -> u64 {
    let input = |i: usize| shape(model, operator.inputs.get(i).copied().flatten());
    let output = shape(model, operator.outputs.first().copied());
    let no_shape: &[i32] = &[];
    let weights = input(1).unwrap_or(no_shape);
    match kind {
        OpKind::Conv2d => {
            // weights [out_c, k_h, k_w, in_c]; output [batch, out_h, out_w, out_c]
            if weights.len() != 4 {
                return 0;
            }
            product(&[
                elements(output),
                dim(weights, 1),
                dim(weights, 2),
                dim(weights, 3),
            ])
        }
        OpKind::DepthwiseConv2d => {
            // weights [1, k_h, k_w, out_c]; output [batch, out_h, out_w, out_c]
            if weights.len() != 4 {
                return 0;
            }
            product(&[elements(output), dim(weights, 1), dim(weights, 2)])
        }
        OpKind::FullyConnected => {
            // weights [units, in_features]; output holds batch · units elements
            if weights.len() != 2 {
                return 0;
            }
            let units = dim(weights, 0);
            let batch = elements(output).checked_div(units).unwrap_or(0);
            product(&[batch, units, dim(weights, 1)])
        }
        OpKind::TransposeConv => {
            // inputs: output_shape, weights [out_c, k_h, k_w, in_c], input [batch, h, w, in_c]
            if weights.len() != 4 {
                return 0;
            }
            product(&[
                elements(input(2)),
                dim(weights, 1),
                dim(weights, 2),
                dim(weights, 0),
            ])
        }
        OpKind::Elementwise | OpKind::Other => 0,
    }
}

/// Bytes of the constant tensors read by operators in `ops`, each tensor counted once.
pub fn param_bytes(model: &Model<'_>, ops: &Range<usize>) -> u64 {
    range_figures(model, ops).0
}

/// Parameter bytes (each constant tensor counted once) and MACs (saturating) of the
/// operators in `ops`, from one pass over their figures.
pub(crate) fn range_figures(model: &Model<'_>, ops: &Range<usize>) -> (u64, u64) {
    let mut seen = std::collections::BTreeSet::new();
    let (mut bytes, mut macs) = (0u64, 0u64);
    for op in ops.clone() {
        let figures = op_figures(model, op);
        macs = macs.saturating_add(figures.macs);
        for t in figures.param_tensors {
            if seen.insert(t) {
                bytes += model.tensors[t].byte_size().unwrap_or(0) as u64;
            }
        }
    }
    (bytes, macs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{BUILTIN_CUSTOM, ElementType, OpCode, Tensor};
    use std::borrow::Cow;

    /// A tensor with this shape; constant (zero-filled, `bytes_per_element` each) if `constant`.
    pub(crate) fn tensor(
        name: &str,
        element_type: ElementType,
        shape: &[i32],
        constant: bool,
    ) -> Tensor<'static> {
        let data = constant.then(|| {
            let n: usize = shape.iter().map(|&d| d.max(0) as usize).product();
            Cow::Owned(vec![0u8; n * element_type.size().unwrap_or(1)])
        });
        Tensor {
            name: Cow::Owned(name.to_owned()),
            element_type,
            shape: shape.to_vec(),
            shape_signature: None,
            quantization: None,
            data,
            is_variable: false,
            has_rank: true,
        }
    }

    /// An operator with this builtin code, inputs and outputs.
    pub(crate) fn operator(
        builtin: i32,
        inputs: &[Option<usize>],
        outputs: &[usize],
    ) -> Operator<'static> {
        Operator {
            opcode: OpCode {
                builtin,
                custom: None,
                version: 1,
            },
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            intermediates: Vec::new(),
            builtin_options: None,
            custom_options: None,
            custom_options_format: 0,
            mutating_variable_inputs: Vec::new(),
        }
    }

    /// `model` with one scale and zero point on every 8-bit tensor, as the quantized
    /// kernels validation models need.
    pub(crate) fn quantized(mut model: Model<'static>) -> Model<'static> {
        for tensor in &mut model.tensors {
            if matches!(tensor.element_type, ElementType::I8 | ElementType::U8) {
                tensor.quantization = Some(crate::model::Quantization {
                    scale: vec![0.05],
                    zero_point: vec![0],
                    ..Default::default()
                });
            }
        }
        model
    }

    /// A model from tensors and operators; inputs/outputs given by index.
    pub(crate) fn model(
        tensors: Vec<Tensor<'static>>,
        operators: Vec<Operator<'static>>,
        inputs: &[usize],
        outputs: &[usize],
    ) -> Model<'static> {
        Model::new(tensors, operators, inputs.to_vec(), outputs.to_vec())
    }

    fn conv_model() -> Model<'static> {
        use ElementType::{I8, I32};
        model(
            vec![
                tensor("in", I8, &[1, 8, 8, 3], false),
                tensor("w", I8, &[16, 3, 3, 3], true),
                tensor("b", I32, &[16], true),
                tensor("conv", I8, &[1, 8, 8, 16], false),
                tensor("dw_w", I8, &[1, 3, 3, 16], true),
                tensor("dw", I8, &[1, 4, 4, 16], false),
                tensor("fc_w", I8, &[10, 256], true),
                tensor("fc", I8, &[1, 10], false),
                tensor("out_shape", I32, &[4], true),
                tensor("tc_w", I8, &[4, 2, 2, 16], true),
                tensor("tc", I8, &[1, 8, 8, 4], false),
                tensor("sum", I8, &[1, 8, 8, 4], false),
            ],
            vec![
                operator(code::CONV_2D, &[Some(0), Some(1), Some(2)], &[3]),
                operator(code::DEPTHWISE_CONV_2D, &[Some(3), Some(4), None], &[5]),
                operator(code::FULLY_CONNECTED, &[Some(5), Some(6), None], &[7]),
                operator(code::TRANSPOSE_CONV, &[Some(8), Some(9), Some(5)], &[10]),
                operator(code::ADD, &[Some(10), Some(10)], &[11]),
            ],
            &[0],
            &[7, 11],
        )
    }

    #[test]
    fn conv_macs_and_params() {
        let m = conv_model();
        let f = op_figures(&m, 0);
        assert_eq!(f.kind, OpKind::Conv2d);
        assert_eq!(f.macs, 8 * 8 * 16 * 3 * 3 * 3);
        assert_eq!(f.param_tensors, vec![1, 2]);
        assert_eq!(f.param_bytes, 16 * 27 + 16 * 4);
        assert_eq!(f.output_elements, 8 * 8 * 16);
    }

    #[test]
    fn depthwise_macs() {
        let f = op_figures(&conv_model(), 1);
        assert_eq!(f.kind, OpKind::DepthwiseConv2d);
        assert_eq!(f.macs, 4 * 4 * 16 * 3 * 3);
        assert_eq!(f.param_tensors, vec![4]);
    }

    #[test]
    fn fully_connected_macs_use_weights_shape() {
        let f = op_figures(&conv_model(), 2);
        assert_eq!(f.kind, OpKind::FullyConnected);
        assert_eq!(f.macs, 10 * 256);
        assert_eq!(f.param_bytes, 2560);
    }

    #[test]
    fn fully_connected_counts_batch() {
        use ElementType::I8;
        let m = model(
            vec![
                tensor("x", I8, &[5, 64], false),
                tensor("w", I8, &[32, 64], true),
                tensor("y", I8, &[5, 32], false),
            ],
            vec![operator(code::FULLY_CONNECTED, &[Some(0), Some(1)], &[2])],
            &[0],
            &[2],
        );
        assert_eq!(op_figures(&m, 0).macs, 5 * 32 * 64);
    }

    #[test]
    fn transpose_conv_macs() {
        let f = op_figures(&conv_model(), 3);
        assert_eq!(f.kind, OpKind::TransposeConv);
        assert_eq!(f.macs, 4 * 4 * 16 * 2 * 2 * 4);
        assert_eq!(f.param_tensors, vec![8, 9]);
    }

    #[test]
    fn elementwise_has_no_macs_but_elements() {
        let f = op_figures(&conv_model(), 4);
        assert_eq!(f.kind, OpKind::Elementwise);
        assert_eq!(f.macs, 0);
        assert_eq!(f.output_elements, 256);
        assert!(f.param_tensors.is_empty());
    }

    #[test]
    fn repeated_constant_input_counted_once() {
        use ElementType::I8;
        let m = model(
            vec![tensor("c", I8, &[4], true), tensor("y", I8, &[4], false)],
            vec![operator(code::MUL, &[Some(0), Some(0)], &[1])],
            &[],
            &[1],
        );
        let f = op_figures(&m, 0);
        assert_eq!(f.param_tensors, vec![0]);
        assert_eq!(f.param_bytes, 4);
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        use ElementType::I8;
        let m = model(
            vec![
                tensor("in", I8, &[1, -1, 8, 3], false),
                tensor("w", I8, &[16, 3], true),
                tensor("out", I8, &[], false),
                tensor("huge", I8, &[i32::MAX, i32::MAX, i32::MAX, i32::MAX], false),
                tensor("w4", I8, &[i32::MAX, 3, 3, i32::MAX], false),
            ],
            vec![
                operator(code::CONV_2D, &[Some(0), Some(1)], &[2]),
                operator(code::CONV_2D, &[Some(0), Some(4)], &[3]),
                operator(code::FULLY_CONNECTED, &[Some(0), Some(9)], &[2]),
                operator(code::DEPTHWISE_CONV_2D, &[], &[]),
                operator(BUILTIN_CUSTOM, &[None], &[17]),
            ],
            &[0],
            &[2],
        );
        assert_eq!(op_figures(&m, 0).macs, 0, "weights of rank 2");
        assert_eq!(op_figures(&m, 1).macs, u64::MAX, "saturates");
        assert_eq!(op_figures(&m, 2).macs, 0, "missing weights tensor");
        assert_eq!(op_figures(&m, 3).macs, 0, "no inputs");
        assert_eq!(op_figures(&m, 4).kind, OpKind::Other);
        assert_eq!(
            op_figures(&m, 4).output_elements,
            0,
            "missing output tensor"
        );
        assert_eq!(op_figures(&m, 99).macs, 0, "operator out of range");
    }
}
