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
//! Every model given to [`Interpreter::new`](crate::backend::Interpreter::new) is validated
//! before TFLite sees it, strictly unless the caller trusts it ([`Validation`]), and TFLite
//! is then given the bytes this crate's writer makes of the model that was validated, never
//! the caller's: one parser's reading is what runs. A [`Graph`] is only built from a model
//! that validates ([`Graph::new`], [`Graph::with_validation`]), and every segment that
//! [`extract`](crate::model::extract) cuts from it validates as its model does (see there
//! why), so segmentation checks a model once.
//!
//! # Strict and trusted
//!
//! Under [`Validation::strict`], the default, a model runs only if every operator in it is
//! one validation models fully ([`modelled_operators`]: the operators of the vision and
//! sequence networks this crate targets), each with the preconditions of its TFLite 2.9
//! kernel that a file can break: how many inputs it takes and which may be absent, which
//! operands must be constants and of which type (shapes, paddings, axes, begin/end/strides,
//! sizes, permutations), the element types it dispatches on, option ranges its kernel keeps
//! in 16-bit fields (strides, dilations, filter sizes and the padding they give, at most
//! [`MAX_WINDOW`]), the depthwise channel limit ([`MAX_DEPTHWISE_CHANNELS`]), the integer
//! LSTM's intermediates, options fields newer than 2.9, and the output shape it computes.
//! Custom operators pass if the caller supplies their kernel ([`Validation::with_custom_op`];
//! the backends add the kernels they register), if they are `edgetpu-custom-op` (run by the
//! Edge TPU delegate), or `TFLite_Detection_PostProcess`, whose FlexBuffer options
//! ([`DETECTION_POSTPROCESS`]: sorted keys, plain values, detection counts within
//! [`MAX_DETECTIONS`]) and shapes are modelled. String tensors, ranks above [`MAX_RANK`] and
//! intermediates on other operators are refused. Anything else is an
//! [`Error::InvalidModel`] naming the operator, unless the caller says the model is trusted
//! ([`Validation::trusted`], [`InterpreterOptions::trusted`](crate::backend::InterpreterOptions::trusted)):
//! then the checks below still apply, but unmodelled operators pass with their recorded
//! output shapes, and TFLite may crash on them.
//!
//! # What is checked
//!
//! - **Structure**, the dataflow [`Graph`] is built on: indices in range, one producer per
//!   tensor, operators in execution order (these errors are [`Error::Invalid`]).
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
//! `RESIZE_NEAREST_NEIGHBOR` (constant size), `STRIDED_SLICE` (constant begin, end and
//! strides, without ellipsis or new axes), `UNIDIRECTIONAL_SEQUENCE_LSTM`, and the
//! operators whose output has their first input's shape (`SOFTMAX`, `LOG_SOFTMAX`,
//! `QUANTIZE`, `DEQUANTIZE`, `CAST`, the activations and the element-wise unary functions).
//!
//! # What is not checked
//!
//! - Under trusted validation only: outputs of operators validation does not model, and of
//!   modelled ones whose shape operand is computed at run time: their recorded shapes are
//!   only checked for sanity (positive, bounded) and then trusted, and their kernels'
//!   preconditions not at all. Where such a tensor feeds a modelled operator, that
//!   operator's checks still apply.
//! - Preconditions that TFLite's kernels check themselves and turn into an error (op
//!   versions, many type combinations): those come back as [`Error::Runtime`].
//! - Constant values other than the operands above (weights, biases, lookup tables), and
//!   the Edge TPU program in `edgetpu-custom-op`'s options (the delegate's to check).
//! - Total memory: each tensor is bounded, not their sum.
//! - Crashes that depend on input values a modelled kernel reads as indices: none of the
//!   modelled operators reads its input values as indices; unmodelled ones (`GATHER`,
//!   `SCATTER_ND`, ...) are refused under strict validation for that reason.

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

/// How much of a model validation must understand before TFLite may run it.
///
/// [`Validation::strict`], the default, lets a model through only if every operator in it
/// is one validation models fully ([`modelled_operators`]): its inputs, which of them may be
/// absent, constant operands, computed output sizes, element types, quantization and
/// options, and for the one custom operator TFLite registers that is modelled
/// ([`DETECTION_POSTPROCESS`]), its options. Custom operators pass when the caller runs
/// them with a kernel of its own ([`Validation::with_custom_op`]; the backends add the
/// kernels they register), and `edgetpu-custom-op`, which the Edge TPU delegate runs.
///
/// [`Validation::trusted`] is the explicit opt-in for models whose source the caller
/// trusts: operators validation does not model, and shape operands computed at run time,
/// are then let through after the checks of the [module documentation](self); TFLite may
/// still crash on them.
///
/// ```
/// use multitpu::model::{paper, validate::Validation};
///
/// # fn main() -> multitpu::Result<()> {
/// let model = paper::conv(32)?;
/// model.validate()?; // strict
/// model.validate_with(&Validation::trusted())?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    trusted: bool,
    custom_ops: Vec<String>,
}

impl Validation {
    /// Every operator must be one validation models fully (the default).
    pub fn strict() -> Self {
        Self::default()
    }

    /// The caller trusts the model: operators validation does not model are let through.
    pub fn trusted() -> Self {
        Self {
            trusted: true,
            custom_ops: Vec::new(),
        }
    }

    /// Lets custom operator `name` through: the caller runs it with a kernel of its own
    /// (see [`CustomOp`](crate::backend::CustomOp)), which then answers for its inputs.
    pub fn with_custom_op(mut self, name: impl Into<String>) -> Self {
        self.custom_ops.push(name.into());
        self
    }

    /// Whether operators validation does not model are let through.
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }
}

/// The builtin operators strict validation lets through, by schema name.
pub fn modelled_operators() -> impl Iterator<Item = &'static str> {
    coverage::MODELLED
        .iter()
        .filter_map(|m| builtin_op_name(m.op))
}

impl Model<'_> {
    /// Checks that TFLite can be given this model without risking the process, strictly
    /// ([`Validation::strict`]): see the [module documentation](crate::model::validate) for
    /// what is checked and what is not.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidModel`] naming the first defect (tensor or operator, field, reason),
    /// or an operator validation does not model; [`Error::Invalid`] when the dataflow itself
    /// is broken (see [`Graph::new`]).
    pub fn validate(&self) -> Result<()> {
        self.validate_with(&Validation::strict())
    }

    /// [`Model::validate`] under `validation`: strict, or trusted.
    ///
    /// # Errors
    ///
    /// As [`Model::validate`].
    pub fn validate_with(&self, validation: &Validation) -> Result<()> {
        Graph::with_validation(self, validation).map(drop)
    }
}

/// The checks of [`Model::validate_with`] beyond the dataflow, on the graph of the model.
pub(super) fn check(graph: &Graph<'_, '_>, validation: &Validation) -> Result<()> {
    let checker = Checker::new(graph.model(), graph, validation);
    checker.tensors()?;
    checker.interface()?;
    checker.operators()
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
    validation: &'c Validation,
    /// Tensors that are model inputs or outputs, or an operator's input or output.
    used: Vec<bool>,
    is_model_input: Vec<bool>,
}

impl<'c, 'a> Checker<'c, 'a> {
    fn new(model: &'c Model<'a>, graph: &'c Graph<'c, 'a>, validation: &'c Validation) -> Self {
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
            validation,
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
            if !self.validation.trusted {
                self.strict_tensor(t, tensor)?;
            }
        }
        Ok(())
    }

    /// Strict only: no string tensors (no modelled operator reads them, and TFLite trusts
    /// their offsets) and at most [`coverage::MAX_RANK`] dimensions.
    fn strict_tensor(&self, t: usize, tensor: &Tensor<'_>) -> Result<()> {
        if tensor.element_type == ElementType::String {
            return Err(self.tensor_error(
                t,
                "type",
                "string tensors are not modelled (no modelled operator reads them)",
            ));
        }
        if tensor.shape.len() > coverage::MAX_RANK {
            return Err(self.tensor_error(
                t,
                "shape",
                format!(
                    "rank {} is above {}, the most a modelled operator takes",
                    tensor.shape.len(),
                    coverage::MAX_RANK
                ),
            ));
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
        if q.scale.len() > 1 && !tensor.is_constant() {
            // Kernels take one scale for an activation, or index a per-channel one by
            // coordinates of another shape (QUANTIZE): only weights carry several.
            return Err(self.tensor_error(
                t,
                "quantization.scale",
                format!(
                    "{} scales on a tensor that is not a constant",
                    q.scale.len()
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
        let strict = !self.validation.trusted;
        for (o, op) in self.model.operators.iter().enumerate() {
            self.operator_fields(o, op)?;
            if strict
                && !op.intermediates.is_empty()
                && op.opcode.builtin != ops::UNIDIRECTIONAL_SEQUENCE_LSTM
            {
                return Err(self.op_error(
                    o,
                    "intermediates",
                    "only the integer LSTM has intermediates",
                ));
            }
            if op.opcode.builtin == BUILTIN_CUSTOM {
                self.custom_op(o, op)?;
                continue;
            }
            let ctx = OpCtx {
                checker: self,
                index: o,
                op,
            };
            let modelled = coverage::modelled_op(op.opcode.builtin);
            match modelled {
                Some(m) => ctx.coverage(m)?,
                None if strict => {
                    return Err(self.op_error(
                        o,
                        "opcode.builtin_code",
                        "not an operator validation models (see `validate::modelled_operators`); \
                         validate the model as trusted to run it anyway",
                    ));
                }
                None => {}
            }
            ctx.element_types()?;
            ctx.quantization()?;
            if modelled.is_some() {
                ctx.preconditions()?;
                if strict {
                    ctx.no_newer_fields()?;
                }
            }
            match ctx.output_shapes()? {
                Some(expected) => {
                    for (&t, dims) in op.outputs.iter().zip(&expected) {
                        self.compare_shape(o, t, dims)?;
                    }
                }
                None if strict && modelled.is_some() => {
                    return Err(self.op_error(
                        o,
                        "inputs",
                        "its output shape depends on an operand validation cannot read \
                         (computed at run time, or of a kind not modelled)",
                    ));
                }
                None => {}
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

mod coverage;
mod operators;
#[cfg(test)]
mod tests;

pub use coverage::{
    DETECTION_POSTPROCESS, MAX_DEPTHWISE_CHANNELS, MAX_DETECTIONS, MAX_RANK, MAX_WINDOW,
};
use operators::OpCtx;
