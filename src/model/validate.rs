//! Checking a model before TFLite sees it.
//!
//! TFLite's C++ runtime trusts much of a model file. When it runs a whole model it recomputes
//! the shape of every tensor an operator writes, but it takes the shapes of the model's inputs
//! as given, and a segment's inputs are tensors that used to be in the middle of the model. It
//! also trusts quantization parameters, element types and the model's interface, and several
//! of its kernels stop the process (`std::bad_alloc`, a failed `TFLITE_CHECK`, a null pointer)
//! instead of returning an error when those are wrong. [`Model::validate`] looks for such
//! defects first, so that a hostile or corrupted file ends in an [`Error::InvalidModel`]
//! naming the tensor or operator and the field, never in a signal.
//!
//! Every segment that [`extract`](crate::model::extract) cuts is validated, together with
//! the model it was cut from, and so is every model given to
//! [`Interpreter::new`](crate::backend::Interpreter::new) before its bytes reach TFLite.
//!
//! # What is checked
//!
//! - **Structure**, through [`Graph::new`]: indices in range, one producer per tensor,
//!   operators in execution order (these errors are [`Error::Invalid`]).
//! - **Element types**: no `RESOURCE` or `VARIANT` tensor anywhere (they belong to resource
//!   variables and control flow, which need several subgraphs, so in the single-subgraph
//!   models read here they can only be defects), and no `INT4` activation (TFLite packs int4
//!   only in constant weights).
//! - **Shapes and sizes**: no negative dimension; no zero dimension on an activation that is
//!   a model input or output or an operator's input or output; at most [`MAX_TENSOR_BYTES`]
//!   per tensor (no overflowing products); constant data of a fixed-size type exactly as long
//!   as its shape needs; a `shape_signature` of the same rank whose entries are `-1` or the
//!   static size.
//! - **Quantization**: when a tensor has scales, as many zero points as scales; every scale
//!   finite, normal (not zero, not subnormal), positive and at most [`MAX_SCALE`]; one scale
//!   (per tensor) or one per slice of `quantized_dimension`, which must be a dimension of the
//!   tensor; zero points within the range of the element type (`0..=255` for uint8,
//!   `-128..=127` for int8, int16's range for int16, int32's for the rest). 8- and 16-bit
//!   integer tensors read or written by an operator whose kernel requantizes (convolutions,
//!   dense layers, element-wise arithmetic, pooling, activations, softmax, concatenation,
//!   reductions, `QUANTIZE`, `DEQUANTIZE`) must be quantized. `ADD` and `SUB` on quantized
//!   tensors need one scale per operand and an output scale large enough for TFLite's
//!   fixed-point rescaling (above `2·max(input scales) / 2^20` for 8-bit, `/ 2^15` for
//!   16-bit, with a margin, computed in single precision as TFLite computes it): TFLite
//!   aborts the process otherwise.
//! - **Element types an operator passes on**: the operators below whose output has their
//!   input's type (all but `QUANTIZE`, `DEQUANTIZE`, `CAST`, `ARG_MAX`, `ARG_MIN`, and
//!   `SOFTMAX`, which may also turn int8 into int16) write the type they read, and binary
//!   operators and `CONCATENATION` read one type: `RESHAPE`, for one, copies its input's
//!   bytes into its output whatever their types, past the end of a smaller output.
//! - **What the writer needs**: as many recorded `min` as `max` values, a non-negative
//!   `quantized_dimension`, a name for every custom op, a non-negative builtin code, one
//!   `mutating_variable_inputs` flag per input (or none), so that every model that validates
//!   can be written, and so cut into segments.
//! - **Interface**: model inputs are not constants or variables; every model output is written by an
//!   operator (not a constant, not a model input passed through, which TFLite would run but
//!   which is never what a converter produces and only shows up as wrong results); no
//!   operator writes a constant, a model input or a variable (state, which its stateful
//!   operator updates in place).
//! - **Shapes from the producers**: for the operators in the list below, the output shapes
//!   are computed from the input shapes and options as TFLite computes them, and must equal
//!   the recorded ones. Checked operator by operator in execution order, this makes every
//!   recorded activation shape the one the whole model's producers give, which is what a
//!   segment takes as the shape of its inputs. A model whose recorded shapes contradict its
//!   operators is refused rather than repaired: TFLite would run the whole model (it
//!   recomputes those shapes), but the file is inconsistent, and a segment cut from it
//!   would not run as the whole model does. The operators' own preconditions that the shapes
//!   rest on are checked too: matching channel counts, broadcastable operands, strides,
//!   dilations and filter sizes of at least 1, padding `SAME` or `VALID`, an empty-free
//!   output, `RESHAPE` element counts.
//!
//! Shapes are computed for: `CONV_2D`, `DEPTHWISE_CONV_2D`, `AVERAGE_POOL_2D`,
//! `MAX_POOL_2D`, `L2_POOL_2D`, `FULLY_CONNECTED`, the broadcasting binary operators (`ADD`,
//! `SUB`, `MUL`, `DIV`, `MAXIMUM`, `MINIMUM`, `SQUARED_DIFFERENCE`, `PRELU`, `POW`,
//! `FLOOR_DIV`, `FLOOR_MOD`), `CONCATENATION`, `RESHAPE` (from a constant shape tensor or the
//! `new_shape` option), `SQUEEZE`, `TRANSPOSE` (constant permutation), `PAD`, `PADV2`,
//! `MIRROR_PAD` (constant paddings), `MEAN`, `SUM`, `REDUCE_PROD`, `REDUCE_MAX`,
//! `REDUCE_MIN` (constant axes), `ARG_MAX`, `ARG_MIN` (constant axis), `RESIZE_BILINEAR`,
//! `RESIZE_NEAREST_NEIGHBOR` (constant size), `UNIDIRECTIONAL_SEQUENCE_LSTM`, and the
//! operators whose output has their first input's shape (`SOFTMAX`, `LOG_SOFTMAX`,
//! `QUANTIZE`, `DEQUANTIZE`, `CAST`, the activations and the element-wise unary functions).
//!
//! # What is not checked
//!
//! - Outputs of other operators (custom ops such as `edgetpu-custom-op`, `STRIDED_SLICE`,
//!   `GATHER`, ...) and of the listed ones when a shape operand is computed at run time:
//!   their recorded shapes are only checked for sanity (positive, bounded) and then trusted.
//!   Where such a tensor feeds a listed operator, that operator's checks still apply
//!   (e.g. `RESHAPE` element counts, `FULLY_CONNECTED` input sizes).
//! - Kernel preconditions beyond the shapes, element types and quantization rules above:
//!   which element types an operator supports, op versions, option values that do not
//!   affect shapes, other kernels' requantization limits. TFLite checks most of these itself and reports errors;
//!   a crash it does not guard against and that is not listed here is not caught.
//! - Constant values other than the shape operands above (weights, biases, lookup tables),
//!   and custom options (an Edge TPU program is opaque).
//! - Total memory: each tensor is bounded, not their sum.

use std::fmt;

use super::ops::{self, builtin_op_name};
use super::options::FieldValue;
use super::{BUILTIN_CUSTOM, ElementType, Graph, Model, Operator, Tensor};
use crate::{Error, Result};

/// The largest tensor, in bytes, a validated model may have (1 GiB).
///
/// TFLite allocates each tensor with a plain allocation that aborts the process when it
/// fails (`std::bad_alloc` through the C API), and many of its kernels compute element counts
/// in 32-bit `int`. The largest tensor of the real models this crate targets is a few MiB
/// (an Edge TPU caches 8 MiB), so 1 GiB leaves every real model far inside the limit while
/// keeping any one allocation well within what the hosts of Edge TPUs (1–8 GiB of RAM) can
/// give, and element counts of one-byte types below 2^31.
pub const MAX_TENSOR_BYTES: usize = 1 << 30;

/// The largest quantization scale a validated model may have (2^32).
///
/// TFLite's kernels multiply two scales, or a scale by up to 2^31, in single precision,
/// where a product beyond about 3.4e38 becomes infinity and some kernels then abort.
/// Scales up to 2^32 keep every such product finite (2^32 · 2^32 · 2^31 = 2^95), and no real
/// model comes near: a scale is the real value of one quantization step, around 1e-2 for
/// 8-bit activations and far smaller for weights and biases.
pub const MAX_SCALE: f32 = 4_294_967_296.0;

/// Where in a model an [`Error::InvalidModel`] was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelLocation {
    /// The subgraph itself: its list of inputs or outputs.
    Subgraph,
    /// A tensor, by index in [`Model::tensors`] and name.
    Tensor {
        /// Index in [`Model::tensors`].
        index: usize,
        /// The tensor's name.
        name: String,
    },
    /// An operator, by index in [`Model::operators`] and what it computes.
    Operator {
        /// Index in [`Model::operators`].
        index: usize,
        /// The builtin operator's schema name (e.g. `CONV_2D`) or the custom op's name.
        op: String,
    },
}

impl fmt::Display for ModelLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelLocation::Subgraph => write!(f, "subgraph"),
            ModelLocation::Tensor { index, name } => write!(f, "tensor {index} `{name}`"),
            ModelLocation::Operator { index, op } => write!(f, "operator {index} ({op})"),
        }
    }
}

impl Model<'_> {
    /// Checks that TFLite can be given this model without risking the process: see the
    /// [module documentation](crate::model::validate) for what is checked and what is not.
    ///
    /// Fails with [`Error::InvalidModel`] naming the first defect found (tensor or operator,
    /// field, reason), or with [`Error::Invalid`] when the dataflow itself is broken (see
    /// [`Graph::new`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidModel`] naming the first defect (tensor or operator, field, reason);
    /// [`Error::Invalid`] when the dataflow itself is broken.
    pub fn validate(&self) -> Result<()> {
        let graph = Graph::new(self)?;
        let checker = Checker::new(self, &graph);
        checker.tensors()?;
        checker.interface()?;
        checker.operators()
    }
}

/// The name of an operator for messages: its builtin name, or the custom op's name.
fn op_name(op: &Operator<'_>) -> String {
    if op.opcode.builtin == BUILTIN_CUSTOM {
        return op.opcode.custom.as_deref().unwrap_or("CUSTOM").to_owned();
    }
    builtin_op_name(op.opcode.builtin)
        .map_or_else(|| format!("builtin {}", op.opcode.builtin), str::to_owned)
}

/// Operators whose output has the shape of their first input.
const SAME_SHAPE: &[i32] = &[
    ops::DEQUANTIZE,
    ops::FLOOR,
    ops::L2_NORMALIZATION,
    ops::LOCAL_RESPONSE_NORMALIZATION,
    ops::LOGISTIC,
    ops::RELU,
    ops::RELU_N1_TO_1,
    ops::RELU6,
    ops::SOFTMAX,
    ops::TANH,
    ops::EXP,
    ops::LOG_SOFTMAX,
    ops::CAST,
    ops::NEG,
    ops::SIN,
    ops::LOG,
    ops::SQRT,
    ops::RSQRT,
    ops::SQUARE,
    ops::LEAKY_RELU,
    ops::ABS,
    ops::CEIL,
    ops::COS,
    ops::ELU,
    ops::QUANTIZE,
    ops::ROUND,
    ops::HARD_SWISH,
    ops::GELU,
];

/// Binary operators whose output has the broadcast shape of their two inputs.
const BROADCAST: &[i32] = &[
    ops::ADD,
    ops::SUB,
    ops::MUL,
    ops::DIV,
    ops::MAXIMUM,
    ops::MINIMUM,
    ops::SQUARED_DIFFERENCE,
    ops::PRELU,
    ops::POW,
    ops::FLOOR_DIV,
    ops::FLOOR_MOD,
];

/// Operators whose kernels requantize: the 8- and 16-bit integer tensors they read or write
/// must carry quantization parameters (TFLite dereferences or divides by them).
const REQUANTIZING: &[i32] = &[
    ops::ADD,
    ops::SUB,
    ops::MUL,
    ops::DIV,
    ops::SQUARED_DIFFERENCE,
    ops::PRELU,
    ops::CONV_2D,
    ops::DEPTHWISE_CONV_2D,
    ops::FULLY_CONNECTED,
    ops::AVERAGE_POOL_2D,
    ops::MAX_POOL_2D,
    ops::L2_POOL_2D,
    ops::L2_NORMALIZATION,
    ops::LOGISTIC,
    ops::TANH,
    ops::RELU,
    ops::RELU_N1_TO_1,
    ops::RELU6,
    ops::LEAKY_RELU,
    ops::HARD_SWISH,
    ops::ELU,
    ops::SOFTMAX,
    ops::LOG_SOFTMAX,
    ops::CONCATENATION,
    ops::MEAN,
    ops::SUM,
    ops::REDUCE_PROD,
    ops::QUANTIZE,
    ops::DEQUANTIZE,
];

/// `Padding` of the schema.
const PADDING_SAME: i8 = 0;
const PADDING_VALID: i8 = 1;

/// Margin below 1 for the rescaling multipliers of quantized `ADD`/`SUB`: TFLite aborts
/// when a multiplier, rounded to 31 bits, reaches 1.
const MAX_ADD_MULTIPLIER: f64 = 0.99;

/// Whether the type is an integer type TFLite quantizes activations to.
fn is_quantizable(t: ElementType) -> bool {
    matches!(t, ElementType::U8 | ElementType::I8 | ElementType::I16)
}

/// A shape computed in 64 bits, so sums and products of `i32` sizes cannot overflow.
type Dims = Vec<i64>;

/// Product of the dimensions (1 for a scalar), saturating.
fn elements(dims: &[i64]) -> i64 {
    dims.iter().fold(1i64, |acc, &d| acc.saturating_mul(d))
}

fn fmt_dims(dims: &[i64]) -> String {
    let inner: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// What the checks need about a model, computed once.
struct Checker<'c, 'a> {
    model: &'c Model<'a>,
    graph: &'c Graph<'c, 'a>,
    /// Tensors that are model inputs or outputs, or an operator's input or output.
    used: Vec<bool>,
    is_model_input: Vec<bool>,
}

impl<'c, 'a> Checker<'c, 'a> {
    fn new(model: &'c Model<'a>, graph: &'c Graph<'c, 'a>) -> Self {
        let n = model.tensors.len();
        let mut used = vec![false; n];
        let mut is_model_input = vec![false; n];
        for &t in &model.inputs {
            used[t] = true;
            is_model_input[t] = true;
        }
        for &t in &model.outputs {
            used[t] = true;
        }
        for op in &model.operators {
            for t in op.present_inputs().chain(op.outputs.iter().copied()) {
                used[t] = true;
            }
        }
        Checker {
            model,
            graph,
            used,
            is_model_input,
        }
    }

    fn tensor_error(&self, t: usize, field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidModel {
            location: ModelLocation::Tensor {
                index: t,
                name: self.model.tensors[t].name.to_string(),
            },
            field,
            reason: reason.into(),
        }
    }

    fn op_error(&self, op: usize, field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidModel {
            location: ModelLocation::Operator {
                index: op,
                op: op_name(&self.model.operators[op]),
            },
            field,
            reason: reason.into(),
        }
    }

    fn subgraph_error(field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidModel {
            location: ModelLocation::Subgraph,
            field,
            reason: reason.into(),
        }
    }

    /// The per-tensor checks: type, shape, size, data, quantization.
    fn tensors(&self) -> Result<()> {
        for (t, tensor) in self.model.tensors.iter().enumerate() {
            self.element_type(t, tensor)?;
            self.shape(t, tensor)?;
            self.quantization(t, tensor)?;
        }
        Ok(())
    }

    fn element_type(&self, t: usize, tensor: &Tensor<'_>) -> Result<()> {
        match tensor.element_type {
            ElementType::Resource | ElementType::Variant => Err(self.tensor_error(
                t,
                "type",
                format!(
                    "{:?} tensors belong to resource variables and control flow, which this crate does not support",
                    tensor.element_type
                ),
            )),
            ElementType::I4 if !tensor.is_constant() => Err(self.tensor_error(
                t,
                "type",
                "int4 is only used for constant weights, not for activations",
            )),
            _ => Ok(()),
        }
    }

    fn shape(&self, t: usize, tensor: &Tensor<'_>) -> Result<()> {
        let shape = &tensor.shape;
        if let Some(d) = shape.iter().position(|&d| d < 0) {
            return Err(self.tensor_error(
                t,
                "shape",
                format!("dimension {d} is negative ({})", shape[d]),
            ));
        }
        if self.used[t]
            && !tensor.is_constant()
            && let Some(d) = shape.iter().position(|&d| d == 0)
        {
            return Err(self.tensor_error(
                t,
                "shape",
                format!("dimension {d} is 0, but the tensor is read or written"),
            ));
        }
        // Non-negative dimensions, so the product only fails by overflowing.
        let too_big = || {
            self.tensor_error(
                t,
                "shape",
                format!(
                    "{shape:?} of {:?} is larger than {MAX_TENSOR_BYTES} bytes",
                    tensor.element_type
                ),
            )
        };
        let elements = tensor.num_elements().ok_or_else(too_big)?;
        let bytes = match tensor.element_type {
            ElementType::I4 => elements.div_ceil(2),
            other => elements.saturating_mul(other.size().unwrap_or(1)),
        };
        if bytes > MAX_TENSOR_BYTES {
            return Err(too_big());
        }
        if let (Some(data), Some(_)) = (&tensor.data, tensor.element_type.size())
            && data.len() != bytes
        {
            return Err(self.tensor_error(
                t,
                "buffer",
                format!(
                    "holds {} bytes, but shape {shape:?} of {:?} needs {bytes}",
                    data.len(),
                    tensor.element_type
                ),
            ));
        }
        if let Some(signature) = &tensor.shape_signature {
            let consistent = signature.len() == shape.len()
                && signature
                    .iter()
                    .zip(shape)
                    .all(|(&s, &d)| s == -1 || s == d);
            if !consistent {
                return Err(self.tensor_error(
                    t,
                    "shape_signature",
                    format!("{signature:?} does not match shape {shape:?}"),
                ));
            }
        }
        Ok(())
    }

    fn quantization(&self, t: usize, tensor: &Tensor<'_>) -> Result<()> {
        let Some(q) = &tensor.quantization else {
            return Ok(());
        };
        // The recorded range and the axis are only read by converters, but a model that
        // validates must also be one the writer can write, so segments of it can be cut.
        if q.min.len() != q.max.len() {
            return Err(self.tensor_error(
                t,
                "quantization.min",
                format!(
                    "{} min value(s) but {} max value(s)",
                    q.min.len(),
                    q.max.len()
                ),
            ));
        }
        if q.quantized_dimension < 0 {
            return Err(self.tensor_error(
                t,
                "quantization.quantized_dimension",
                format!("{} is negative", q.quantized_dimension),
            ));
        }
        if q.scale.is_empty() && q.zero_point.is_empty() {
            return Ok(());
        }
        if q.scale.len() != q.zero_point.len() {
            return Err(self.tensor_error(
                t,
                "quantization.scale",
                format!(
                    "{} scale(s) but {} zero point(s)",
                    q.scale.len(),
                    q.zero_point.len()
                ),
            ));
        }
        if let Some((i, s)) = q
            .scale
            .iter()
            .enumerate()
            .find(|&(_, &s)| !(s.is_normal() && s > 0.0 && s <= MAX_SCALE))
        {
            return Err(self.tensor_error(
                t,
                "quantization.scale",
                format!(
                    "scale {i} is {s:e}: scales must be finite, normal, positive and at most {MAX_SCALE:e}"
                ),
            ));
        }
        if q.scale.len() > 1 {
            let axis = usize::try_from(q.quantized_dimension)
                .ok()
                .filter(|&a| a < tensor.shape.len());
            let Some(axis) = axis else {
                return Err(self.tensor_error(
                    t,
                    "quantization.quantized_dimension",
                    format!(
                        "{} is not a dimension of shape {:?}",
                        q.quantized_dimension, tensor.shape
                    ),
                ));
            };
            if usize::try_from(tensor.shape[axis]).ok() != Some(q.scale.len()) {
                return Err(self.tensor_error(
                    t,
                    "quantization.scale",
                    format!(
                        "{} scales, but dimension {axis} (quantized_dimension) of shape {:?} has {} slices",
                        q.scale.len(),
                        tensor.shape,
                        tensor.shape[axis]
                    ),
                ));
            }
        }
        let range = match tensor.element_type {
            ElementType::U8 => 0..=255,
            ElementType::I8 => -128..=127,
            ElementType::I16 => i64::from(i16::MIN)..=i64::from(i16::MAX),
            _ => i64::from(i32::MIN)..=i64::from(i32::MAX),
        };
        if let Some((i, z)) = q
            .zero_point
            .iter()
            .enumerate()
            .find(|(_, z)| !range.contains(z))
        {
            return Err(self.tensor_error(
                t,
                "quantization.zero_point",
                format!(
                    "zero point {i} is {z}, outside {range:?} for {:?}",
                    tensor.element_type
                ),
            ));
        }
        Ok(())
    }

    /// Model inputs and outputs, and what operators may write.
    fn interface(&self) -> Result<()> {
        let model = self.model;
        for (i, &t) in model.inputs.iter().enumerate() {
            let tensor = &model.tensors[t];
            if tensor.is_constant() || tensor.is_variable {
                let what = if tensor.is_constant() {
                    "constant"
                } else {
                    "variable"
                };
                return Err(Self::subgraph_error(
                    "inputs",
                    format!("model input {i} is {what} tensor {t} `{}`", tensor.name),
                ));
            }
        }
        for (i, &t) in model.outputs.iter().enumerate() {
            if self.graph.producer(t).is_none() {
                let what = if model.tensors[t].is_constant() {
                    "a constant"
                } else if self.is_model_input[t] {
                    "a model input"
                } else {
                    "not written by any operator"
                };
                return Err(Self::subgraph_error(
                    "outputs",
                    format!(
                        "model output {i} is tensor {t} `{}`, which is {what}",
                        model.tensors[t].name
                    ),
                ));
            }
        }
        for (o, op) in model.operators.iter().enumerate() {
            for &t in &op.outputs {
                let tensor = &model.tensors[t];
                if tensor.is_constant() || self.is_model_input[t] || tensor.is_variable {
                    // A variable is state: its stateful operator updates it in place, and no
                    // operator writes it as an output (TFLite would keep the value between
                    // invocations, and a segment could not hand it on).
                    let what = if tensor.is_constant() {
                        "a constant"
                    } else if tensor.is_variable {
                        "a variable"
                    } else {
                        "a model input"
                    };
                    return Err(self.op_error(
                        o,
                        "outputs",
                        format!("writes tensor {t} `{}`, which is {what}", tensor.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Per operator, in execution order: quantization needs and output shapes.
    fn operators(&self) -> Result<()> {
        for (o, op) in self.model.operators.iter().enumerate() {
            self.operator_fields(o, op)?;
            if op.opcode.builtin == BUILTIN_CUSTOM {
                continue;
            }
            let ctx = OpCtx {
                checker: self,
                index: o,
                op,
            };
            ctx.element_types()?;
            ctx.quantization()?;
            if let Some(expected) = ctx.output_shapes()? {
                for (&t, dims) in op.outputs.iter().zip(&expected) {
                    self.compare_shape(o, t, dims)?;
                }
            }
        }
        Ok(())
    }

    /// What the writer needs of every operator, custom ones included: a known kind of code,
    /// a name for a custom op, one `mutating_variable_inputs` flag per input (or none).
    fn operator_fields(&self, o: usize, op: &Operator<'_>) -> Result<()> {
        if op.opcode.builtin < 0 {
            return Err(self.op_error(
                o,
                "opcode.builtin_code",
                format!("builtin code {} is negative", op.opcode.builtin),
            ));
        }
        if op.opcode.builtin == BUILTIN_CUSTOM && op.opcode.custom.is_none() {
            return Err(self.op_error(o, "opcode.custom_code", "a custom op without a name"));
        }
        let flags = op.mutating_variable_inputs.len();
        if flags != 0 && flags != op.inputs.len() {
            return Err(self.op_error(
                o,
                "mutating_variable_inputs",
                format!("{flags} flag(s) for {} input(s)", op.inputs.len()),
            ));
        }
        Ok(())
    }

    fn compare_shape(&self, op: usize, t: usize, dims: &[i64]) -> Result<()> {
        if let Some(d) = dims.iter().position(|&d| d <= 0) {
            return Err(self.op_error(
                op,
                "inputs",
                format!(
                    "its inputs give output shape {} (dimension {d} is not positive)",
                    fmt_dims(dims)
                ),
            ));
        }
        let recorded = &self.model.tensors[t].shape;
        let equal = recorded.len() == dims.len()
            && recorded.iter().zip(dims).all(|(&r, &d)| i64::from(r) == d);
        if !equal {
            return Err(self.tensor_error(
                t,
                "shape",
                format!(
                    "recorded as {recorded:?}, but operator {op} ({}) produces {} from its inputs",
                    op_name(&self.model.operators[op]),
                    fmt_dims(dims)
                ),
            ));
        }
        Ok(())
    }
}

/// One operator under check.
struct OpCtx<'k, 'c, 'a> {
    checker: &'k Checker<'c, 'a>,
    index: usize,
    op: &'c Operator<'a>,
}

impl OpCtx<'_, '_, '_> {
    fn error(&self, field: &'static str, reason: impl Into<String>) -> Error {
        self.checker.op_error(self.index, field, reason)
    }

    fn name(&self) -> String {
        op_name(self.op)
    }

    fn tensor(&self, t: usize) -> &Tensor<'_> {
        &self.checker.model.tensors[t]
    }

    /// The tensor index of input `slot`, which must be present.
    fn input(&self, slot: usize) -> Result<usize> {
        self.op.inputs.get(slot).copied().flatten().ok_or_else(|| {
            self.error(
                "inputs",
                format!(
                    "{} needs input {slot}, but it has {} input(s) (absent ones included)",
                    self.name(),
                    self.op.inputs.len()
                ),
            )
        })
    }

    /// The shape of input `slot`, widened.
    fn input_dims(&self, slot: usize) -> Result<Dims> {
        let t = self.input(slot)?;
        Ok(self.tensor(t).shape.iter().map(|&d| i64::from(d)).collect())
    }

    /// The shape of input `slot`, which must have `rank` dimensions.
    fn input_dims_of_rank(&self, slot: usize, rank: usize) -> Result<Dims> {
        let dims = self.input_dims(slot)?;
        if dims.len() != rank {
            return Err(self.error(
                "inputs",
                format!(
                    "input {slot} of {} must have {rank} dimensions, got {}",
                    self.name(),
                    fmt_dims(&dims)
                ),
            ));
        }
        Ok(dims)
    }

    /// The values of input `slot` if it is a constant int32 (or, with `allow_i64`, int64)
    /// tensor; `None` when it is computed at run time or has another type.
    fn constant_ints(&self, slot: usize, allow_i64: bool) -> Result<Option<Vec<i64>>> {
        let t = self.input(slot)?;
        let tensor = self.tensor(t);
        let Some(data) = &tensor.data else {
            return Ok(None);
        };
        // Data lengths were checked against shapes before operators are looked at.
        Ok(match tensor.element_type {
            ElementType::I32 => Some(
                data.chunks_exact(4)
                    .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
            ),
            ElementType::I64 if allow_i64 => Some(
                data.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            _ => None,
        })
    }

    /// The operator's options if they are the table `name`; TFLite uses all-zero parameters
    /// when the table is absent or of another type.
    fn options(&self, name: &str) -> Option<&super::options::BuiltinOptions> {
        self.op
            .builtin_options
            .as_ref()
            .filter(|o| o.layout().is_some_and(|l| l.name == name))
    }

    /// The options table `name`, required (TFLite would divide by its zero strides).
    fn required_options(&self, name: &str) -> Result<&super::options::BuiltinOptions> {
        self.options(name).ok_or_else(|| {
            self.error(
                "builtin_options",
                format!(
                    "{} needs {name}; without it TFLite uses zero strides and sizes",
                    self.name()
                ),
            )
        })
    }

    /// An integer option (present value or schema default; 0 without the table).
    fn int_option(&self, table: &str, field: &str) -> i64 {
        match self.options(table).and_then(|o| o.value(field)) {
            Some(FieldValue::I8(v)) => i64::from(v),
            Some(FieldValue::I32(v)) => i64::from(v),
            Some(FieldValue::Bool(v)) => i64::from(v),
            _ => 0,
        }
    }

    /// An option that must be at least 1 (strides, dilations, filter sizes).
    fn positive_option(&self, table: &str, field: &'static str) -> Result<i64> {
        let value = self.int_option(table, field);
        if value < 1 {
            return Err(self.error(
                "builtin_options",
                format!("{table}.{field} is {value}, must be at least 1"),
            ));
        }
        Ok(value)
    }

    fn padding(&self, table: &str) -> Result<i8> {
        let value = self.int_option(table, "padding");
        match i8::try_from(value) {
            Ok(p @ (PADDING_SAME | PADDING_VALID)) => Ok(p),
            _ => Err(self.error(
                "builtin_options",
                format!("{table}.padding is {value}, neither SAME (0) nor VALID (1)"),
            )),
        }
    }

    /// Quantization the kernel relies on.
    fn quantization(&self) -> Result<()> {
        let builtin = self.op.opcode.builtin;
        if !REQUANTIZING.contains(&builtin) {
            return Ok(());
        }
        let model = self.checker.model;
        for t in self
            .op
            .present_inputs()
            .chain(self.op.outputs.iter().copied())
        {
            let tensor = &model.tensors[t];
            let quantized = tensor
                .quantization
                .as_ref()
                .is_some_and(|q| !q.scale.is_empty());
            if is_quantizable(tensor.element_type) && !quantized {
                return Err(self.checker.tensor_error(
                    t,
                    "quantization",
                    format!(
                        "{:?} tensor read or written by operator {} ({}) has no quantization scale",
                        tensor.element_type,
                        self.index,
                        self.name()
                    ),
                ));
            }
        }
        if builtin == ops::ADD || builtin == ops::SUB {
            self.add_sub_rescaling()?;
        }
        Ok(())
    }

    /// TFLite's quantized `ADD`/`SUB` rescale both inputs to `2·max(s1, s2)` with 20 (8-bit)
    /// or 15 (16-bit) extra bits, then to the output scale, and a failed `TFLITE_CHECK`
    /// aborts the process unless every multiplier is in (0, 1). The products are computed in
    /// single precision, as TFLite computes them, so an overflow to infinity (a multiplier
    /// of 0) is caught too.
    fn add_sub_rescaling(&self) -> Result<()> {
        let (Ok(a), Ok(b)) = (self.input(0), self.input(1)) else {
            return Ok(()); // TFLite checks the input count itself.
        };
        let Some(&out) = self.op.outputs.first() else {
            return Ok(());
        };
        let out_type = self.tensor(out).element_type;
        let left_shift = match out_type {
            ElementType::U8 | ElementType::I8 => 20,
            ElementType::I16 => 15,
            _ => return Ok(()),
        };
        let mut scales = [0f32; 3];
        for (slot, t) in [a, b, out].into_iter().enumerate() {
            let tensor = self.tensor(t);
            match tensor.quantization.as_ref().map(|q| q.scale.as_slice()) {
                Some([s]) => scales[slot] = *s,
                _ => {
                    return Err(self.checker.tensor_error(
                        t,
                        "quantization.scale",
                        format!(
                            "{} on {out_type:?} needs one scale per operand (TFLite reads 0 otherwise)",
                            self.name()
                        ),
                    ));
                }
            }
        }
        let [s1, s2, so] = scales;
        let twice_max = f64::from(2.0 * s1.max(s2));
        let out_factor = f64::from((1u32 << left_shift) as f32 * so);
        let input_multipliers = [f64::from(s1) / twice_max, f64::from(s2) / twice_max];
        let output_multiplier = twice_max / out_factor;
        let in_range = |m: f64| m > 0.0 && m < MAX_ADD_MULTIPLIER;
        let blame = if !input_multipliers.into_iter().all(in_range) {
            if s1 >= s2 { a } else { b }
        } else if !in_range(output_multiplier) {
            out
        } else {
            return Ok(());
        };
        Err(self.checker.tensor_error(
            blame,
            "quantization.scale",
            format!(
                "{} with input scales {s1:e}, {s2:e} and output scale {so:e} rescales by \
                 {:e}, {:e} and {output_multiplier:e}; TFLite aborts unless each is in (0, 1)",
                self.name(),
                input_multipliers[0],
                input_multipliers[1],
            ),
        ))
    }

    /// Element types TFLite's kernels take for granted: operators that only move, pad,
    /// pool or combine values write the type they read (`RESHAPE` copies its input's bytes
    /// into its output whatever their types), and the operands of binary operators and
    /// `CONCATENATION` share one type.
    fn element_types(&self) -> Result<()> {
        let builtin = self.op.opcode.builtin;
        let model = self.checker.model;
        let Some(&out) = self.op.outputs.first() else {
            return Ok(());
        };
        let Some(Some(first)) = self.op.inputs.first().copied() else {
            return Ok(());
        };
        let in_type = model.tensors[first].element_type;
        let out_type = model.tensors[out].element_type;
        let slots: Vec<usize> = if builtin == ops::CONCATENATION {
            (1..self.op.inputs.len()).collect()
        } else if BROADCAST.contains(&builtin) {
            vec![1]
        } else {
            Vec::new()
        };
        for slot in slots {
            if let Some(Some(t)) = self.op.inputs.get(slot)
                && model.tensors[*t].element_type != in_type
            {
                return Err(self.checker.tensor_error(
                    *t,
                    "type",
                    format!(
                        "{:?}, but input 0 of operator {} ({}) is {in_type:?}",
                        model.tensors[*t].element_type,
                        self.index,
                        self.name()
                    ),
                ));
            }
        }
        let allowed = match builtin {
            ops::QUANTIZE | ops::DEQUANTIZE | ops::CAST | ops::ARG_MAX | ops::ARG_MIN => {
                return Ok(());
            }
            ops::SOFTMAX => {
                out_type == in_type || (in_type == ElementType::I8 && out_type == ElementType::I16)
            }
            _ if SAME_SHAPE.contains(&builtin) || BROADCAST.contains(&builtin) => {
                out_type == in_type
            }
            ops::CONV_2D
            | ops::DEPTHWISE_CONV_2D
            | ops::AVERAGE_POOL_2D
            | ops::MAX_POOL_2D
            | ops::L2_POOL_2D
            | ops::FULLY_CONNECTED
            | ops::CONCATENATION
            | ops::RESHAPE
            | ops::SQUEEZE
            | ops::TRANSPOSE
            | ops::PAD
            | ops::PADV2
            | ops::MIRROR_PAD
            | ops::MEAN
            | ops::SUM
            | ops::REDUCE_PROD
            | ops::REDUCE_MAX
            | ops::REDUCE_MIN
            | ops::RESIZE_BILINEAR
            | ops::RESIZE_NEAREST_NEIGHBOR
            | ops::UNIDIRECTIONAL_SEQUENCE_LSTM => out_type == in_type,
            _ => true,
        };
        if allowed {
            Ok(())
        } else {
            Err(self.checker.tensor_error(
                out,
                "type",
                format!(
                    "{out_type:?}, but operator {} ({}) reads {in_type:?} and writes the same type",
                    self.index,
                    self.name()
                ),
            ))
        }
    }

    /// The shapes of the operator's outputs as TFLite computes them, or `None` when this
    /// operator (or a shape operand computed at run time) is not modelled.
    fn output_shapes(&self) -> Result<Option<Vec<Dims>>> {
        let builtin = self.op.opcode.builtin;
        let one = |dims: Dims| Ok(Some(vec![dims]));
        if SAME_SHAPE.contains(&builtin) {
            return one(self.input_dims(0)?);
        }
        if BROADCAST.contains(&builtin) {
            return one(self.broadcast()?);
        }
        match builtin {
            ops::CONV_2D => one(self.conv_2d()?),
            ops::DEPTHWISE_CONV_2D => one(self.depthwise_conv_2d()?),
            ops::AVERAGE_POOL_2D | ops::MAX_POOL_2D | ops::L2_POOL_2D => one(self.pool_2d()?),
            ops::FULLY_CONNECTED => one(self.fully_connected()?),
            ops::CONCATENATION => one(self.concatenation()?),
            ops::RESHAPE => Ok(self.reshape()?.map(|d| vec![d])),
            ops::SQUEEZE => one(self.squeeze()?),
            ops::TRANSPOSE => Ok(self.transpose()?.map(|d| vec![d])),
            ops::PAD | ops::PADV2 | ops::MIRROR_PAD => Ok(self.pad()?.map(|d| vec![d])),
            ops::MEAN | ops::SUM | ops::REDUCE_PROD | ops::REDUCE_MAX | ops::REDUCE_MIN => {
                Ok(self.reduce()?.map(|d| vec![d]))
            }
            ops::ARG_MAX | ops::ARG_MIN => Ok(self.arg_min_max()?.map(|d| vec![d])),
            ops::RESIZE_BILINEAR | ops::RESIZE_NEAREST_NEIGHBOR => {
                Ok(self.resize()?.map(|d| vec![d]))
            }
            ops::UNIDIRECTIONAL_SEQUENCE_LSTM => one(self.sequence_lstm()?),
            _ => Ok(None),
        }
    }

    fn broadcast(&self) -> Result<Dims> {
        let a = self.input_dims(0)?;
        let b = self.input_dims(1)?;
        let rank = a.len().max(b.len());
        let at = |dims: &Dims, i: usize| {
            // Right-aligned; missing leading dimensions are 1.
            (i + dims.len()).checked_sub(rank).map_or(1, |j| dims[j])
        };
        (0..rank)
            .map(|i| {
                let (x, y) = (at(&a, i), at(&b, i));
                match (x, y) {
                    _ if x == y => Ok(x),
                    (1, _) => Ok(y),
                    (_, 1) => Ok(x),
                    _ => Err(self.error(
                        "inputs",
                        format!(
                            "input shapes {} and {} cannot be broadcast together",
                            fmt_dims(&a),
                            fmt_dims(&b)
                        ),
                    )),
                }
            })
            .collect()
    }

    /// Output size of a window along one dimension, as TFLite's `ComputeOutSize`.
    fn window_out(padding: i8, size: i64, filter: i64, stride: i64, dilation: i64) -> i64 {
        let effective = (filter - 1).saturating_mul(dilation).saturating_add(1);
        match padding {
            PADDING_SAME => (size + stride - 1) / stride,
            _ => (size + stride - effective) / stride,
        }
    }

    /// Bias (input 2), when present, must hold one value per output channel.
    fn check_bias(&self, channels: i64) -> Result<()> {
        if let Some(Some(t)) = self.op.inputs.get(2) {
            let elements = self.tensor(*t).num_elements().map(|n| n as i64);
            if elements != Some(channels) {
                return Err(self.error(
                    "inputs",
                    format!(
                        "bias {:?} does not hold {channels} values (one per output channel)",
                        self.tensor(*t).shape
                    ),
                ));
            }
        }
        Ok(())
    }

    fn conv_2d(&self) -> Result<Dims> {
        const T: &str = "Conv2DOptions";
        self.required_options(T)?;
        let input = self.input_dims_of_rank(0, 4)?;
        let filter = self.input_dims_of_rank(1, 4)?;
        let (in_c, filter_c) = (input[3], filter[3]);
        if filter_c == 0 || in_c % filter_c != 0 {
            return Err(self.error(
                "inputs",
                format!("input channels {in_c} are not a multiple of the filter's {filter_c}"),
            ));
        }
        let groups = in_c / filter_c;
        if filter[0] % groups != 0 {
            return Err(self.error(
                "inputs",
                format!("{} filters cannot be split into {groups} groups", filter[0]),
            ));
        }
        self.check_bias(filter[0])?;
        let padding = self.padding(T)?;
        let stride_w = self.positive_option(T, "stride_w")?;
        let stride_h = self.positive_option(T, "stride_h")?;
        let dilation_w = self.positive_option(T, "dilation_w_factor")?;
        let dilation_h = self.positive_option(T, "dilation_h_factor")?;
        Ok(vec![
            input[0],
            Self::window_out(padding, input[1], filter[1], stride_h, dilation_h),
            Self::window_out(padding, input[2], filter[2], stride_w, dilation_w),
            filter[0],
        ])
    }

    fn depthwise_conv_2d(&self) -> Result<Dims> {
        const T: &str = "DepthwiseConv2DOptions";
        self.required_options(T)?;
        let input = self.input_dims_of_rank(0, 4)?;
        let filter = self.input_dims_of_rank(1, 4)?;
        let (in_c, out_c) = (input[3], filter[3]);
        if filter[0] != 1 || in_c == 0 || out_c % in_c != 0 {
            return Err(self.error(
                "inputs",
                format!(
                    "filter {} does not fit input {} (want [1, h, w, a multiple of {in_c}])",
                    fmt_dims(&filter),
                    fmt_dims(&input)
                ),
            ));
        }
        self.check_bias(out_c)?;
        let padding = self.padding(T)?;
        let stride_w = self.positive_option(T, "stride_w")?;
        let stride_h = self.positive_option(T, "stride_h")?;
        let dilation_w = self.positive_option(T, "dilation_w_factor")?;
        let dilation_h = self.positive_option(T, "dilation_h_factor")?;
        Ok(vec![
            input[0],
            Self::window_out(padding, input[1], filter[1], stride_h, dilation_h),
            Self::window_out(padding, input[2], filter[2], stride_w, dilation_w),
            out_c,
        ])
    }

    fn pool_2d(&self) -> Result<Dims> {
        const T: &str = "Pool2DOptions";
        self.required_options(T)?;
        let input = self.input_dims_of_rank(0, 4)?;
        let padding = self.padding(T)?;
        let stride_w = self.positive_option(T, "stride_w")?;
        let stride_h = self.positive_option(T, "stride_h")?;
        let filter_w = self.positive_option(T, "filter_width")?;
        let filter_h = self.positive_option(T, "filter_height")?;
        Ok(vec![
            input[0],
            Self::window_out(padding, input[1], filter_h, stride_h, 1),
            Self::window_out(padding, input[2], filter_w, stride_w, 1),
            input[3],
        ])
    }

    fn fully_connected(&self) -> Result<Dims> {
        const T: &str = "FullyConnectedOptions";
        let input = self.input_dims(0)?;
        let weights = self.input_dims_of_rank(1, 2)?;
        let (units, in_size) = (weights[0], weights[1]);
        self.check_bias(units)?;
        let in_elements = elements(&input);
        if in_size == 0 || in_elements % in_size != 0 {
            return Err(self.error(
                "inputs",
                format!(
                    "input {} does not split into rows of {in_size} (the weights' second dimension)",
                    fmt_dims(&input)
                ),
            ));
        }
        if self.int_option(T, "keep_num_dims") != 0 {
            if input.last() != Some(&in_size) {
                return Err(self.error(
                    "inputs",
                    format!(
                        "with keep_num_dims, the input's last dimension must be {in_size}, got {}",
                        fmt_dims(&input)
                    ),
                ));
            }
            let mut out = input;
            if let Some(last) = out.last_mut() {
                *last = units;
            }
            Ok(out)
        } else {
            Ok(vec![in_elements / in_size, units])
        }
    }

    fn concatenation(&self) -> Result<Dims> {
        let inputs: Vec<Dims> = (0..self.op.inputs.len())
            .map(|slot| self.input_dims(slot))
            .collect::<Result<_>>()?;
        let Some(first) = inputs.first() else {
            return Err(self.error("inputs", "CONCATENATION has no inputs"));
        };
        let rank = first.len() as i64;
        let raw_axis = self.int_option("ConcatenationOptions", "axis");
        let axis = if raw_axis < 0 {
            raw_axis + rank
        } else {
            raw_axis
        };
        if !(0..rank).contains(&axis) {
            return Err(self.error(
                "builtin_options",
                format!("ConcatenationOptions.axis {raw_axis} is outside rank {rank}"),
            ));
        }
        let axis = axis as usize;
        let mut out = first.clone();
        for dims in &inputs[1..] {
            let compatible = dims.len() == first.len()
                && dims
                    .iter()
                    .zip(first)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !compatible {
                return Err(self.error(
                    "inputs",
                    format!(
                        "input {} does not match {} except along axis {axis}",
                        fmt_dims(dims),
                        fmt_dims(first)
                    ),
                ));
            }
            out[axis] = out[axis].saturating_add(dims[axis]);
        }
        Ok(out)
    }

    fn reshape(&self) -> Result<Option<Dims>> {
        let input = self.input_dims(0)?;
        let in_elements = elements(&input);
        // TFLite: with two inputs, a constant rank-1 int32 shape tensor gives the shape; a
        // shape tensor computed at run time makes the output dynamic; otherwise (one input,
        // or a shape tensor of another kind) the `new_shape` option gives it.
        let requested = if self.op.inputs.len() == 2 {
            let shape_t = self.input(1)?;
            let tensor = self.tensor(shape_t);
            if !tensor.is_constant() {
                return Ok(None);
            }
            if tensor.element_type == ElementType::I32 && tensor.shape.len() == 1 {
                self.constant_ints(1, false)?.unwrap_or_default()
            } else {
                self.new_shape_option()
            }
        } else {
            self.new_shape_option()
        };
        let mut out = requested.clone();
        let mut stretch = None;
        let mut known: i64 = 1;
        for (i, &d) in requested.iter().enumerate() {
            match d {
                -1 if stretch.is_none() => stretch = Some(i),
                d if d >= 1 => known = known.saturating_mul(d),
                _ => {
                    return Err(self.error(
                        "inputs",
                        format!(
                            "RESHAPE to {}: dimension {i} must be positive (or a single -1)",
                            fmt_dims(&requested)
                        ),
                    ));
                }
            }
        }
        if let Some(i) = stretch {
            out[i] = in_elements / known;
        }
        let out_elements = elements(&out);
        if out_elements != in_elements {
            return Err(self.error(
                "inputs",
                format!(
                    "RESHAPE of {} ({in_elements} elements) to {} ({out_elements} elements)",
                    fmt_dims(&input),
                    fmt_dims(&requested)
                ),
            ));
        }
        Ok(Some(out))
    }

    /// `ReshapeOptions.new_shape`; `[0]` is the legacy spelling of a scalar.
    fn new_shape_option(&self) -> Dims {
        let shape = match self
            .options("ReshapeOptions")
            .and_then(|o| o.get("new_shape"))
        {
            Some(FieldValue::VecI32(v)) => v.iter().map(|&d| i64::from(d)).collect(),
            _ => Vec::new(),
        };
        if shape == [0] { Vec::new() } else { shape }
    }

    /// Normalizes axis `axis` for rank `rank` (negative counts from the end).
    fn axis(&self, axis: i64, rank: usize, what: &str) -> Result<usize> {
        let rank_i = rank as i64;
        let a = if axis < 0 { axis + rank_i } else { axis };
        if (0..rank_i).contains(&a) {
            Ok(a as usize)
        } else {
            Err(self.error("inputs", format!("{what} {axis} is outside rank {rank}")))
        }
    }

    fn squeeze(&self) -> Result<Dims> {
        let input = self.input_dims(0)?;
        let dims = match self
            .options("SqueezeOptions")
            .and_then(|o| o.get("squeeze_dims"))
        {
            Some(FieldValue::VecI32(v)) => v.clone(),
            _ => Vec::new(),
        };
        let mut squeeze = vec![false; input.len()];
        if dims.is_empty() {
            for (s, &d) in squeeze.iter_mut().zip(&input) {
                *s = d == 1;
            }
        } else {
            for &d in &dims {
                let a = self.axis(i64::from(d), input.len(), "squeeze dimension")?;
                if input[a] != 1 {
                    return Err(self.error(
                        "builtin_options",
                        format!(
                            "SqueezeOptions.squeeze_dims names dimension {a} of {}, which is not 1",
                            fmt_dims(&input)
                        ),
                    ));
                }
                squeeze[a] = true;
            }
        }
        Ok(input
            .iter()
            .zip(&squeeze)
            .filter(|&(_, &s)| !s)
            .map(|(&d, _)| d)
            .collect())
    }

    fn transpose(&self) -> Result<Option<Dims>> {
        let input = self.input_dims(0)?;
        let Some(perm) = self.constant_ints(1, false)? else {
            return Ok(None);
        };
        let mut seen = vec![false; input.len()];
        let valid = perm.len() == input.len()
            && perm.iter().all(|&p| {
                usize::try_from(p)
                    .ok()
                    .filter(|&p| p < seen.len())
                    .is_some_and(|p| !std::mem::replace(&mut seen[p], true))
            });
        if !valid {
            return Err(self.error(
                "inputs",
                format!(
                    "permutation {} does not permute the {} dimensions of the input",
                    fmt_dims(&perm),
                    input.len()
                ),
            ));
        }
        Ok(Some(perm.iter().map(|&p| input[p as usize]).collect()))
    }

    fn pad(&self) -> Result<Option<Dims>> {
        let input = self.input_dims(0)?;
        let paddings_t = self.input(1)?;
        let Some(paddings) = self.constant_ints(1, true)? else {
            return Ok(None);
        };
        let shape = &self.tensor(paddings_t).shape;
        if shape.len() != 2 || shape[1] != 2 || paddings.len() != input.len() * 2 {
            return Err(self.error(
                "inputs",
                format!(
                    "paddings of shape {shape:?} do not fit an input of rank {}",
                    input.len()
                ),
            ));
        }
        if let Some(p) = paddings.iter().find(|&&p| p < 0) {
            return Err(self.error("inputs", format!("padding {p} is negative")));
        }
        Ok(Some(
            input
                .iter()
                .zip(paddings.chunks_exact(2))
                .map(|(&d, p)| d.saturating_add(p[0]).saturating_add(p[1]))
                .collect(),
        ))
    }

    fn reduce(&self) -> Result<Option<Dims>> {
        let input = self.input_dims(0)?;
        let Some(axes) = self.constant_ints(1, false)? else {
            return Ok(None);
        };
        if input.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut reduced = vec![false; input.len()];
        for &a in &axes {
            reduced[self.axis(a, input.len(), "reduction axis")?] = true;
        }
        let keep_dims = self.int_option("ReducerOptions", "keep_dims") != 0;
        Ok(Some(
            input
                .iter()
                .zip(&reduced)
                .filter_map(|(&d, &r)| match (r, keep_dims) {
                    (false, _) => Some(d),
                    (true, true) => Some(1),
                    (true, false) => None,
                })
                .collect(),
        ))
    }

    fn arg_min_max(&self) -> Result<Option<Dims>> {
        let input = self.input_dims(0)?;
        let Some(axis) = self.constant_ints(1, true)? else {
            return Ok(None);
        };
        let [axis] = axis[..] else {
            return Err(self.error(
                "inputs",
                format!("the axis holds {} values, not 1", axis.len()),
            ));
        };
        let a = self.axis(axis, input.len(), "axis")?;
        let mut out = input;
        out.remove(a);
        Ok(Some(out))
    }

    fn resize(&self) -> Result<Option<Dims>> {
        let input = self.input_dims_of_rank(0, 4)?;
        let Some(size) = self.constant_ints(1, false)? else {
            return Ok(None);
        };
        let [h, w] = size[..] else {
            return Err(self.error(
                "inputs",
                format!("the size holds {} values, not 2", size.len()),
            ));
        };
        Ok(Some(vec![input[0], h, w, input[3]]))
    }

    /// Output: the input's shape with the last dimension replaced by the output size, the
    /// second dimension of the recurrent-to-output weights (input 8).
    fn sequence_lstm(&self) -> Result<Dims> {
        let input = self.input_dims(0)?;
        if input.len() < 2 {
            return Err(self.error(
                "inputs",
                format!("the input {} needs at least 2 dimensions", fmt_dims(&input)),
            ));
        }
        let recurrent = self.input_dims_of_rank(8, 2)?;
        let mut out = input;
        if let Some(last) = out.last_mut() {
            *last = recurrent[1];
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Quantization;
    use crate::model::figures::tests::{model, operator, tensor};
    use crate::model::ops::builtin_op_code;
    use crate::model::options::BuiltinOptions;
    use ElementType::{F32, I32, U8};

    #[test]
    fn codes_match_the_schema_names() {
        let named = [
            ("ADD", ops::ADD),
            ("AVERAGE_POOL_2D", ops::AVERAGE_POOL_2D),
            ("CONCATENATION", ops::CONCATENATION),
            ("CONV_2D", ops::CONV_2D),
            ("DEPTHWISE_CONV_2D", ops::DEPTHWISE_CONV_2D),
            ("DEQUANTIZE", ops::DEQUANTIZE),
            ("FLOOR", ops::FLOOR),
            ("FULLY_CONNECTED", ops::FULLY_CONNECTED),
            ("L2_NORMALIZATION", ops::L2_NORMALIZATION),
            ("L2_POOL_2D", ops::L2_POOL_2D),
            (
                "LOCAL_RESPONSE_NORMALIZATION",
                ops::LOCAL_RESPONSE_NORMALIZATION,
            ),
            ("LOGISTIC", ops::LOGISTIC),
            ("MAX_POOL_2D", ops::MAX_POOL_2D),
            ("MUL", ops::MUL),
            ("RELU", ops::RELU),
            ("RELU_N1_TO_1", ops::RELU_N1_TO_1),
            ("RELU6", ops::RELU6),
            ("RESHAPE", ops::RESHAPE),
            ("RESIZE_BILINEAR", ops::RESIZE_BILINEAR),
            ("SOFTMAX", ops::SOFTMAX),
            ("TANH", ops::TANH),
            ("PAD", ops::PAD),
            ("TRANSPOSE", ops::TRANSPOSE),
            ("MEAN", ops::MEAN),
            ("SUB", ops::SUB),
            ("DIV", ops::DIV),
            ("SQUEEZE", ops::SQUEEZE),
            (
                "UNIDIRECTIONAL_SEQUENCE_LSTM",
                ops::UNIDIRECTIONAL_SEQUENCE_LSTM,
            ),
            ("EXP", ops::EXP),
            ("LOG_SOFTMAX", ops::LOG_SOFTMAX),
            ("CAST", ops::CAST),
            ("PRELU", ops::PRELU),
            ("MAXIMUM", ops::MAXIMUM),
            ("ARG_MAX", ops::ARG_MAX),
            ("MINIMUM", ops::MINIMUM),
            ("NEG", ops::NEG),
            ("PADV2", ops::PADV2),
            ("SIN", ops::SIN),
            ("LOG", ops::LOG),
            ("SUM", ops::SUM),
            ("SQRT", ops::SQRT),
            ("RSQRT", ops::RSQRT),
            ("POW", ops::POW),
            ("ARG_MIN", ops::ARG_MIN),
            ("REDUCE_PROD", ops::REDUCE_PROD),
            ("REDUCE_MAX", ops::REDUCE_MAX),
            ("REDUCE_MIN", ops::REDUCE_MIN),
            ("FLOOR_DIV", ops::FLOOR_DIV),
            ("SQUARE", ops::SQUARE),
            ("FLOOR_MOD", ops::FLOOR_MOD),
            ("RESIZE_NEAREST_NEIGHBOR", ops::RESIZE_NEAREST_NEIGHBOR),
            ("LEAKY_RELU", ops::LEAKY_RELU),
            ("SQUARED_DIFFERENCE", ops::SQUARED_DIFFERENCE),
            ("MIRROR_PAD", ops::MIRROR_PAD),
            ("ABS", ops::ABS),
            ("CEIL", ops::CEIL),
            ("COS", ops::COS),
            ("ELU", ops::ELU),
            ("QUANTIZE", ops::QUANTIZE),
            ("ROUND", ops::ROUND),
            ("HARD_SWISH", ops::HARD_SWISH),
            ("GELU", ops::GELU),
        ];
        for (name, value) in named {
            assert_eq!(builtin_op_code(name), Some(value), "{name}");
        }
    }

    fn quantized(mut t: Tensor<'static>, scale: f32, zero_point: i64) -> Tensor<'static> {
        t.quantization = Some(Quantization {
            scale: vec![scale],
            zero_point: vec![zero_point],
            ..Quantization::default()
        });
        t
    }

    fn with_options(
        mut op: Operator<'static>,
        table: &str,
        fields: &[(&str, FieldValue)],
    ) -> Operator<'static> {
        let mut options = BuiltinOptions::by_name(table).expect("table");
        for (field, value) in fields {
            options = options.with(field, value.clone()).expect("field");
        }
        op.builtin_options = Some(options);
        op
    }

    /// `in [1,8,8,3] u8 -> CONV_2D(3x3, 4 filters, stride 2, SAME) -> [1,4,4,4] -> RESHAPE [1,64]`.
    fn conv_model() -> Model<'static> {
        let conv = with_options(
            operator(ops::CONV_2D, &[Some(0), Some(1), Some(2)], &[3]),
            "Conv2DOptions",
            &[
                ("stride_w", FieldValue::I32(2)),
                ("stride_h", FieldValue::I32(2)),
            ],
        );
        let reshape = with_options(
            operator(ops::RESHAPE, &[Some(3)], &[4]),
            "ReshapeOptions",
            &[("new_shape", FieldValue::VecI32(vec![1, -1]))],
        );
        model(
            vec![
                quantized(tensor("in", U8, &[1, 8, 8, 3], false), 0.5, 128),
                quantized(tensor("w", U8, &[4, 3, 3, 3], true), 0.25, 100),
                quantized(tensor("b", I32, &[4], true), 0.125, 0),
                quantized(tensor("conv", U8, &[1, 4, 4, 4], false), 1.0, 0),
                quantized(tensor("flat", U8, &[1, 64], false), 1.0, 0),
            ],
            vec![conv, reshape],
            &[0],
            &[4],
        )
    }

    fn expect_invalid(m: &Model<'_>, location: ModelLocation, field: &str) -> String {
        match m.validate() {
            Err(Error::InvalidModel {
                location: l,
                field: f,
                reason,
            }) if l == location && f == field => reason,
            other => panic!("expected InvalidModel at {location}, {field}; got {other:?}"),
        }
    }

    fn at_tensor(m: &Model<'_>, index: usize) -> ModelLocation {
        ModelLocation::Tensor {
            index,
            name: m.tensors[index].name.to_string(),
        }
    }

    fn at_op(index: usize, op: &str) -> ModelLocation {
        ModelLocation::Operator {
            index,
            op: op.to_owned(),
        }
    }

    #[test]
    fn a_consistent_model_validates() {
        conv_model().validate().expect("valid");
    }

    #[test]
    fn recorded_shapes_must_match_the_producers() {
        let mut m = conv_model();
        m.tensors[3].shape = vec![2, 4, 4, 4];
        let reason = expect_invalid(&m, at_tensor(&m, 3), "shape");
        assert!(reason.contains("[1, 4, 4, 4]"), "{reason}");

        let mut m = conv_model();
        m.tensors[4].shape = vec![64, 1];
        expect_invalid(&m, at_tensor(&m, 4), "shape");
    }

    #[test]
    fn a_different_input_shape_is_refused_downstream() {
        let mut m = conv_model();
        m.tensors[0].shape = vec![65536, 8, 8, 3];
        expect_invalid(&m, at_tensor(&m, 3), "shape");
    }

    #[test]
    fn negative_zero_and_huge_dimensions_are_refused() {
        for (shape, needle) in [
            (vec![1, i32::MIN, 4, 4], "negative"),
            (vec![1, 0, 4, 4], "is 0"),
            (vec![i32::MAX, i32::MAX, 4, 4], "larger than"),
            (vec![1, 1 << 30, 2, 1], "larger than"),
        ] {
            let mut m = conv_model();
            m.tensors[3].shape = shape;
            let reason = expect_invalid(&m, at_tensor(&m, 3), "shape");
            assert!(reason.contains(needle), "{reason}");
        }
    }

    #[test]
    fn constant_data_must_fit_its_shape() {
        let mut m = conv_model();
        m.tensors[1].shape = vec![4, 3, 3, 2];
        expect_invalid(&m, at_tensor(&m, 1), "buffer");
    }

    #[test]
    fn scales_must_be_finite_normal_and_positive() {
        for bad in [f32::INFINITY, f32::NAN, 0.0, -0.5, 1e-45, 1e10] {
            let mut m = conv_model();
            m.tensors[3].quantization.as_mut().unwrap().scale[0] = bad;
            expect_invalid(&m, at_tensor(&m, 3), "quantization.scale");
        }
    }

    #[test]
    fn scale_and_zero_point_counts_must_agree_with_the_shape() {
        let mut m = conv_model();
        m.tensors[3].quantization.as_mut().unwrap().scale.clear();
        expect_invalid(&m, at_tensor(&m, 3), "quantization.scale");

        let mut m = conv_model();
        let q = m.tensors[1].quantization.as_mut().unwrap();
        q.scale = vec![0.5; 3];
        q.zero_point = vec![0; 3];
        expect_invalid(&m, at_tensor(&m, 1), "quantization.scale");
        m.tensors[1]
            .quantization
            .as_mut()
            .unwrap()
            .quantized_dimension = 3;
        m.validate().expect("3 slices along dimension 3");
        m.tensors[1]
            .quantization
            .as_mut()
            .unwrap()
            .quantized_dimension = 4;
        expect_invalid(&m, at_tensor(&m, 1), "quantization.quantized_dimension");
    }

    #[test]
    fn a_model_that_validates_can_be_written() {
        // Found by fuzzing (fuzz target `validate`): a tensor with 1 min and 33 max values
        // validated, and the writer then refused the model and every segment of it.
        let mut m = conv_model();
        let q = m.tensors[3].quantization.as_mut().unwrap();
        q.min = vec![0.0];
        q.max = vec![1.0; 33];
        expect_invalid(&m, at_tensor(&m, 3), "quantization.min");
        assert!(m.to_bytes().is_err(), "the writer refuses it too");

        let mut m = conv_model();
        m.tensors[0]
            .quantization
            .as_mut()
            .unwrap()
            .quantized_dimension = -1;
        expect_invalid(&m, at_tensor(&m, 0), "quantization.quantized_dimension");

        let mut m = conv_model();
        m.tensors[0].quantization = Some(Quantization {
            min: Vec::new(),
            max: Vec::new(),
            scale: Vec::new(),
            zero_point: Vec::new(),
            quantized_dimension: -2,
        });
        expect_invalid(&m, at_tensor(&m, 0), "quantization.quantized_dimension");

        let mut m = conv_model();
        m.operators[1].mutating_variable_inputs = vec![false; 2];
        expect_invalid(&m, at_op(1, "RESHAPE"), "mutating_variable_inputs");

        let mut m = conv_model();
        m.operators[1].opcode.builtin = BUILTIN_CUSTOM;
        expect_invalid(&m, at_op(1, "CUSTOM"), "opcode.custom_code");

        let mut m = conv_model();
        m.operators[1].opcode.builtin = -3;
        let location = ModelLocation::Operator {
            index: 1,
            op: op_name(&m.operators[1]),
        };
        expect_invalid(&m, location, "opcode.builtin_code");
    }

    #[test]
    fn zero_points_must_fit_the_type() {
        let mut m = conv_model();
        m.tensors[3].quantization.as_mut().unwrap().zero_point[0] = 256;
        expect_invalid(&m, at_tensor(&m, 3), "quantization.zero_point");
    }

    #[test]
    fn requantizing_ops_need_quantized_operands() {
        let mut m = conv_model();
        m.tensors[3].quantization = None;
        expect_invalid(&m, at_tensor(&m, 3), "quantization");
    }

    #[test]
    fn resource_variant_and_int4_activations_are_refused() {
        for t in [ElementType::Resource, ElementType::Variant, ElementType::I4] {
            let mut m = conv_model();
            m.tensors[4].element_type = t;
            expect_invalid(&m, at_tensor(&m, 4), "type");
        }
    }

    #[test]
    fn outputs_must_be_written_by_operators() {
        let mut m = conv_model();
        m.outputs = vec![1];
        let reason = expect_invalid(&m, ModelLocation::Subgraph, "outputs");
        assert!(reason.contains("a constant"), "{reason}");
        m.outputs = vec![0];
        let reason = expect_invalid(&m, ModelLocation::Subgraph, "outputs");
        assert!(reason.contains("a model input"), "{reason}");
    }

    #[test]
    fn operators_must_not_write_variables() {
        // Found by the mutation campaign: a crossing activation marked variable ran, and the
        // segments then lost it (no segment output of that name) or differed from the whole
        // model.
        let mut m = conv_model();
        m.tensors[3].is_variable = true;
        expect_invalid(&m, at_op(0, "CONV_2D"), "outputs");
        let mut m = conv_model();
        m.tensors[0].is_variable = true;
        expect_invalid(&m, ModelLocation::Subgraph, "inputs");
    }

    #[test]
    fn operators_must_not_write_constants() {
        let mut m = conv_model();
        m.operators[1].outputs = vec![2];
        m.outputs = vec![3];
        expect_invalid(&m, at_op(1, "RESHAPE"), "outputs");
    }

    #[test]
    fn conv_needs_its_options_and_positive_strides() {
        let mut m = conv_model();
        m.operators[0].builtin_options = None;
        expect_invalid(&m, at_op(0, "CONV_2D"), "builtin_options");
        let mut m = conv_model();
        let options = m.operators[0].builtin_options.take().unwrap();
        m.operators[0].builtin_options =
            Some(options.with("stride_h", FieldValue::I32(0)).unwrap());
        expect_invalid(&m, at_op(0, "CONV_2D"), "builtin_options");
    }

    #[test]
    fn reshape_element_counts_must_agree() {
        let mut m = conv_model();
        m.operators[1].builtin_options = Some(
            BuiltinOptions::by_name("ReshapeOptions")
                .and_then(|o| o.with("new_shape", FieldValue::VecI32(vec![0, -1])))
                .unwrap(),
        );
        expect_invalid(&m, at_op(1, "RESHAPE"), "inputs");
    }

    #[test]
    fn quantized_add_needs_a_large_enough_output_scale() {
        let add = |out_scale: f32| {
            model(
                vec![
                    quantized(tensor("a", U8, &[1, 4], false), 0.5, 0),
                    quantized(tensor("b", U8, &[1, 4], false), 0.25, 0),
                    quantized(tensor("sum", U8, &[1, 4], false), out_scale, 0),
                ],
                vec![operator(ops::ADD, &[Some(0), Some(1)], &[2])],
                &[0, 1],
                &[2],
            )
        };
        add(0.5).validate().expect("usual scales");
        let m = add(1e-30);
        expect_invalid(&m, at_tensor(&m, 2), "quantization.scale");
        // 2^20 · 3e38 overflows in single precision, as TFLite computes it (and 3e38 is
        // above MAX_SCALE anyway).
        let m = add(3e38);
        expect_invalid(&m, at_tensor(&m, 2), "quantization.scale");
    }

    #[test]
    fn shape_ops_write_the_type_they_read() {
        let mut m = conv_model();
        m.tensors[4].element_type = ElementType::I8;
        m.tensors[4].quantization.as_mut().unwrap().zero_point[0] = -128;
        let reason = expect_invalid(&m, at_tensor(&m, 4), "type");
        assert!(reason.contains("RESHAPE"), "{reason}");
    }

    #[test]
    fn broadcasting_and_unknown_ops() {
        let m = model(
            vec![
                tensor("a", F32, &[2, 1, 3], false),
                tensor("b", F32, &[4, 1], false),
                tensor("c", F32, &[2, 4, 3], false),
                tensor("d", F32, &[7], false),
            ],
            vec![
                operator(ops::MUL, &[Some(0), Some(1)], &[2]),
                // STRIDED_SLICE is not modelled: its recorded shape is trusted.
                operator(45, &[Some(2)], &[3]),
            ],
            &[0, 1],
            &[3],
        );
        m.validate().expect("valid");
        let mut bad = m.clone();
        bad.tensors[1].shape = vec![4, 2];
        expect_invalid(&bad, at_op(0, "MUL"), "inputs");
    }
}
