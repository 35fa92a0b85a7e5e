//! Build valid TFLite models from scratch, with seeded weights.
//!
//! [`ModelBuilder`] appends tensors and operators in execution order, the way the TFLite
//! converter lays out a single-subgraph model. Every op returns the id (index in
//! [`Model::tensors`]) of its output tensor, so chains, skip connections, and models with
//! several inputs and outputs are written as plain Rust:
//!
//! ```
//! use multitpu::model::ElementType;
//! use multitpu::model::builder::{self, Activation, ModelBuilder};
//!
//! let mut b = ModelBuilder::new(7);
//! let x = b.input("input", ElementType::F32, &[1, 16], None)?;
//! let q = b.quantize(x, ElementType::I8, builder::range_quantization(-1.0, 1.0, ElementType::I8)?)?;
//! let h = b.fully_connected(q, 32, Activation::Relu)?;
//! let y = b.fully_connected(h, 16, Activation::None)?;
//! let r = b.add(y, q, Activation::None)?; // residual branch
//! let out = b.dequantize(r)?;
//! b.output(out)?;
//! let model = b.build()?;
//! assert_eq!(model.operators.len(), 5);
//! # Ok::<(), multitpu::Error>(())
//! ```
//!
//! # Quantization
//!
//! The element type of an op's input decides how its parameters are made:
//! - [`ElementType::I8`], as the TF2 converter does: symmetric int8 weights with zero point 0,
//!   per-channel for convolutions (unless [`ModelBuilder::weight_quantization`] says
//!   per-tensor) and per-tensor for fully connected layers, as converters of the TFLite 2.x
//!   era quantized dense layers; asymmetric int8 activations.
//! - [`ElementType::U8`], as the TF1 converter does: asymmetric per-tensor uint8 weights and
//!   activations.
//! - [`ElementType::F32`]: float weights and biases, no quantization.
//!
//! Quantized biases are int32 with `scale = input_scale × weight_scale` (per channel) and zero
//! point 0. Weights are uniform with a variance that keeps the activations' magnitude roughly
//! constant through a layer (He/Glorot style); output scales come from an estimate of the
//! activations' root mean square (tracked per tensor while building) so that the quantized
//! activations use their range without saturating badly. Accuracy is not the goal: the models
//! are for partitioning, timing and testing, but their outputs do depend on their inputs.
//!
//! Activations [`Activation::Relu`] and [`Activation::Relu6`] are fused into the op;
//! [`Activation::Tanh`] becomes a separate `TANH` op, because TFLite's quantized kernels have
//! no fused tanh.
//!
//! Operator versions are the ones the TFLite converter writes for the input types (e.g.
//! `FULLY_CONNECTED` 4 and `CONV_2D` 3 for int8), all accepted by the TFLite 2.9 runtime.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::model::ops;
use crate::model::options::{BuiltinOptions, FieldValue};
use crate::model::{ElementType, Model, OpCode, Operator, Quantization, Tensor};
use crate::{Error, Result};

/// Largest constant tensor a `.tflite` file can hold (flatbuffer offsets are 32-bit signed).
const MAX_CONSTANT_BYTES: usize = i32::MAX as usize;

/// Index of a tensor in the model being built (its position in [`Model::tensors`]).
pub type TensorId = usize;

/// Activation applied to an op's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`, fused into the op.
    Relu,
    /// `min(max(x, 0), 6)`, fused into the op.
    Relu6,
    /// `tanh(x)`, as a separate `TANH` op after the op.
    Tanh,
}

impl Activation {
    /// The schema's `ActivationFunctionType` code fused into the op (`TANH` is never fused).
    fn fused_code(self) -> i8 {
        match self {
            Activation::None | Activation::Tanh => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 3,
        }
    }
}

/// Padding of convolutions and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Padding {
    /// Output size `ceil(input / stride)`, zeros around the border.
    #[default]
    Same,
    /// Output size `ceil((input - kernel + 1) / stride)`, no padding.
    Valid,
}

impl Padding {
    /// The schema's `Padding` code.
    fn code(self) -> i8 {
        match self {
            Padding::Same => 0,
            Padding::Valid => 1,
        }
    }

    /// Output size of one spatial dimension, or `None` if the kernel does not fit.
    fn output_size(self, input: usize, kernel: usize, stride: usize) -> Option<usize> {
        match self {
            Padding::Same => Some(input.div_ceil(stride)),
            Padding::Valid => input.checked_sub(kernel).map(|rest| rest / stride + 1),
        }
    }
}

/// How int8 convolution weights are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WeightQuantization {
    /// One scale per output channel, as the TF2 converter does (the default).
    #[default]
    PerChannel,
    /// One scale for the whole weight tensor.
    PerTensor,
}

/// A small, fast, seeded pseudo-random generator (SplitMix64).
///
/// Deterministic across platforms, so a seed always gives the same weights and test inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        // 24 random bits fill an f32 mantissa exactly.
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    /// A uniform float in `[low, high)`.
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.next_f32()
    }

    /// A uniform integer in `[low, high]` (both inclusive; `low` if `high < low`).
    pub fn int_in(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let span = (high - low) as u64 + 1;
        low + (self.next_u64() % span) as i64
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Per-tensor affine quantization with one scale and zero point.
pub fn per_tensor(scale: f32, zero_point: i64) -> Quantization {
    Quantization {
        scale: vec![scale],
        zero_point: vec![zero_point],
        ..Quantization::default()
    }
}

/// The quantization the TFLite converter derives from a calibrated real range
/// `[min, max]` for an int8 or uint8 tensor: the range is widened to contain 0, mapped onto
/// the type's full integer range, and the zero point rounded to an integer.
///
/// Errors if `element_type` is not `I8` or `U8`, or if the bounds are not finite.
///
/// # Errors
///
/// [`Error::Invalid`] if `element_type` is not `I8` or `U8`, or the bounds are not a finite
/// range.
pub fn range_quantization(min: f32, max: f32, element_type: ElementType) -> Result<Quantization> {
    let (qmin, qmax) = integer_range(element_type).ok_or_else(|| {
        Error::invalid(
            "quantization range",
            format!("{element_type:?} is not a quantized activation type (I8 or U8)"),
        )
    })?;
    if !min.is_finite() || !max.is_finite() || min > max {
        return Err(Error::invalid(
            "quantization range",
            format!("[{min}, {max}] is not a finite range"),
        ));
    }
    let min = f64::from(min.min(0.0));
    let mut max = f64::from(max.max(0.0));
    if max - min < 1e-9 {
        max = min + 1e-9;
    }
    let scale = (max - min) / (qmax - qmin) as f64;
    let zero_point = (qmin as f64 - min / scale)
        .round()
        .clamp(qmin as f64, qmax as f64) as i64;
    Ok(per_tensor(scale as f32, zero_point))
}

/// The integer range of a quantized activation type.
fn integer_range(element_type: ElementType) -> Option<(i64, i64)> {
    match element_type {
        ElementType::I8 => Some((-128, 127)),
        ElementType::U8 => Some((0, 255)),
        _ => None,
    }
}

/// Options of one op, set by field name and checked against the schema layout; fields
/// equal to their schema default are left out, as the converter does.
struct Options(BuiltinOptions);

impl Options {
    /// Empty options of the table named `table` (e.g. `"Conv2DOptions"`).
    fn table(table: &str) -> Result<Self> {
        BuiltinOptions::by_name(table).map(Options)
    }

    /// Sets `field` unless `value` is its schema default.
    fn set(self, field: &str, value: FieldValue) -> Result<Self> {
        if self.0.value(field).as_ref() == Some(&value) {
            Ok(self)
        } else {
            self.0.with(field, value).map(Options)
        }
    }

    fn enum8(self, field: &str, value: i8) -> Result<Self> {
        self.set(field, FieldValue::I8(value))
    }

    fn int(self, field: &str, value: usize) -> Result<Self> {
        self.set(field, FieldValue::I32(dim32(value)?))
    }
}

/// The real-valued weights of a layer as stored: constant tensor id and per-channel scales.
struct Weights {
    tensor: TensorId,
    /// Quantization scales (one per channel, or one); empty for float weights.
    scales: Vec<f32>,
    /// Mean of the squared real weights, to estimate the layer's gain.
    mean_square: f64,
}

/// Builds a [`Model`] op by op; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ModelBuilder {
    rng: SplitMix64,
    weight_quantization: WeightQuantization,
    tensors: Vec<Tensor<'static>>,
    /// Estimated root mean square of each tensor's real values (not stored in the model).
    rms: Vec<f32>,
    operators: Vec<Operator<'static>>,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    names: HashSet<String>,
    layers: HashSet<String>,
    description: String,
}

impl ModelBuilder {
    /// An empty model whose weights come from `seed`: equal seeds and equal op sequences
    /// give equal models.
    pub fn new(seed: u64) -> Self {
        ModelBuilder {
            rng: SplitMix64::new(seed),
            weight_quantization: WeightQuantization::default(),
            tensors: Vec::new(),
            rms: Vec::new(),
            operators: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            names: HashSet::new(),
            layers: HashSet::new(),
            description: format!("multitpu ModelBuilder, seed {seed}"),
        }
    }

    /// Sets how the int8 convolution weights of later ops are quantized (default
    /// per-channel). uint8 weights are always per-tensor, as TFLite requires.
    pub fn weight_quantization(&mut self, mode: WeightQuantization) -> &mut Self {
        self.weight_quantization = mode;
        self
    }

    /// Sets the model's description (default names the builder and seed).
    pub fn description(&mut self, description: impl Into<String>) -> &mut Self {
        self.description = description.into();
        self
    }

    /// The tensor with this id, as built so far.
    pub fn tensor(&self, id: TensorId) -> Option<&Tensor<'static>> {
        self.tensors.get(id)
    }

    /// Adds a model input. Quantized types (`I8`, `U8`) need a quantization; its range is
    /// taken as the range of the values fed in. Float inputs are assumed to be of unit scale.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a quantized type without a per-tensor quantization, or a
    /// shape too large for the file format.
    pub fn input(
        &mut self,
        name: &str,
        element_type: ElementType,
        shape: &[usize],
        quantization: Option<Quantization>,
    ) -> Result<TensorId> {
        let rms = match (&quantization, integer_range(element_type)) {
            (Some(q), Some(_)) => {
                check_per_tensor(q, name)?;
                range_rms(q, element_type)
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "builder input",
                    format!("quantized input `{name}` ({element_type:?}) needs a quantization"),
                ));
            }
            (_, None) => 1.0,
        };
        let id = self.push_tensor(
            name.to_owned(),
            element_type,
            shape.to_vec(),
            quantization,
            None,
            rms,
        )?;
        self.inputs.push(id);
        Ok(id)
    }

    /// Marks a tensor as a model output (in call order).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `tensor` is not a tensor of this builder.
    pub fn output(&mut self, tensor: TensorId) -> Result<()> {
        self.check(tensor)?;
        if self.outputs.contains(&tensor) {
            return Err(Error::invalid(
                "builder output",
                format!(
                    "tensor `{}` is already an output",
                    self.tensors[tensor].name
                ),
            ));
        }
        self.outputs.push(tensor);
        Ok(())
    }

    /// `FULLY_CONNECTED` with `units` outputs over the last dimension of `x`; the output is
    /// `[elements / last_dim, units]`, as TFLite computes it.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is unknown, `units` is 0, or the weights would be too
    /// large.
    pub fn fully_connected(
        &mut self,
        x: TensorId,
        units: usize,
        activation: Activation,
    ) -> Result<TensorId> {
        let ty = self.activation_type(x, "FULLY_CONNECTED")?;
        let shape = self.shape(x);
        let depth = *shape
            .last()
            .ok_or_else(|| Error::invalid("FULLY_CONNECTED", "input is a scalar".to_owned()))?;
        let elements = shape.iter().product::<usize>();
        if depth == 0 || units == 0 {
            return Err(Error::invalid(
                "FULLY_CONNECTED",
                format!("zero-sized layer ({depth} inputs, {units} units)"),
            ));
        }
        let options = Options::table("FullyConnectedOptions")?
            .enum8("fused_activation_function", activation.fused_code())?
            .0;
        self.emit_weighted(WeightedLayer {
            x,
            element_type: ty,
            name: "dense",
            base: "MatMul",
            opcode: ops::FULLY_CONNECTED,
            int8_version: 4,
            weight_shape: vec![units, depth],
            channel_dim: 0,
            fan_in: depth,
            weight_quantization: WeightQuantization::PerTensor,
            options,
            shape: vec![elements / depth, units],
            activation,
        })
    }

    /// `CONV_2D` with `filters` outputs, a `[height, width]` kernel, `[height, width]` strides
    /// and dilation 1, over an NHWC input.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is not a 4-D activation of this builder, or the filters, kernel or strides are 0 or too large.
    pub fn conv2d(
        &mut self,
        x: TensorId,
        filters: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        activation: Activation,
    ) -> Result<TensorId> {
        let ty = self.activation_type(x, "CONV_2D")?;
        let [n, h, w, c] = self.nhwc(x, "CONV_2D")?;
        let [oh, ow] = out_spatial("CONV_2D", [h, w], kernel, stride, padding)?;
        if filters == 0 || c == 0 {
            return Err(Error::invalid(
                "CONV_2D",
                format!("zero-sized layer ({c} input channels, {filters} filters)"),
            ));
        }
        let options = Options::table("Conv2DOptions")?
            .enum8("padding", padding.code())?
            .int("stride_w", stride[1])?
            .int("stride_h", stride[0])?
            .enum8("fused_activation_function", activation.fused_code())?
            .0;
        self.emit_weighted(WeightedLayer {
            x,
            element_type: ty,
            name: "conv2d",
            base: "Conv2D",
            opcode: ops::CONV_2D,
            int8_version: 3,
            weight_shape: vec![filters, kernel[0], kernel[1], c],
            channel_dim: 0,
            fan_in: kernel[0] * kernel[1] * c,
            weight_quantization: self.weight_quantization,
            options,
            shape: vec![n, oh, ow, filters],
            activation,
        })
    }

    /// `DEPTHWISE_CONV_2D` with `multiplier` outputs per input channel, a `[height, width]`
    /// kernel, `[height, width]` strides and dilation 1, over an NHWC input.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is not a 4-D activation of this builder, or the multiplier, kernel or strides are 0 or too large.
    pub fn depthwise_conv2d(
        &mut self,
        x: TensorId,
        multiplier: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        activation: Activation,
    ) -> Result<TensorId> {
        let ty = self.activation_type(x, "DEPTHWISE_CONV_2D")?;
        let [n, h, w, c] = self.nhwc(x, "DEPTHWISE_CONV_2D")?;
        let [oh, ow] = out_spatial("DEPTHWISE_CONV_2D", [h, w], kernel, stride, padding)?;
        let channels = c.checked_mul(multiplier).ok_or_else(|| {
            Error::invalid(
                "DEPTHWISE_CONV_2D",
                format!("{c} channels × multiplier {multiplier} overflows"),
            )
        })?;
        if channels == 0 {
            return Err(Error::invalid(
                "DEPTHWISE_CONV_2D",
                format!("zero-sized layer ({c} channels, multiplier {multiplier})"),
            ));
        }
        let options = Options::table("DepthwiseConv2DOptions")?
            .enum8("padding", padding.code())?
            .int("stride_w", stride[1])?
            .int("stride_h", stride[0])?
            .int("depth_multiplier", multiplier)?
            .enum8("fused_activation_function", activation.fused_code())?
            .0;
        self.emit_weighted(WeightedLayer {
            x,
            element_type: ty,
            name: "depthwise_conv2d",
            base: "depthwise",
            opcode: ops::DEPTHWISE_CONV_2D,
            int8_version: 3,
            weight_shape: vec![1, kernel[0], kernel[1], channels],
            channel_dim: 3,
            fan_in: kernel[0] * kernel[1],
            weight_quantization: self.weight_quantization,
            options,
            shape: vec![n, oh, ow, channels],
            activation,
        })
    }

    /// Element-wise `ADD` of two tensors of the same type and shape (e.g. a skip connection).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the tensors are unknown or differ in type or shape.
    pub fn add(&mut self, a: TensorId, b: TensorId, activation: Activation) -> Result<TensorId> {
        let ty = self.activation_type(a, "ADD")?;
        let ty_b = self.activation_type(b, "ADD")?;
        if ty != ty_b || self.shape(a) != self.shape(b) {
            return Err(Error::invalid(
                "ADD",
                format!(
                    "operands differ: `{}` is {ty:?} {:?}, `{}` is {ty_b:?} {:?}",
                    self.tensors[a].name,
                    self.shape(a),
                    self.tensors[b].name,
                    self.shape(b)
                ),
            ));
        }
        let layer = self.layer("add");
        let options = Options::table("AddOptions")?
            .enum8("fused_activation_function", activation.fused_code())?
            .0;
        let version = if ty == ElementType::I8 { 2 } else { 1 };
        let rms = self.rms[a].hypot(self.rms[b]);
        let shape = self.shape(a);
        self.emit_with_activation(Layer {
            name: layer,
            base: "Add",
            opcode: ops::ADD,
            version,
            inputs: vec![Some(a), Some(b)],
            options,
            shape,
            element_type: ty,
            rms,
            activation,
        })
    }

    /// `CONCATENATION` along `axis` (negative counts from the end). For int8, inputs whose
    /// quantization differs from the output's are requantized first (TFLite's int8 kernel
    /// needs equal quantization), as the TF2 converter does.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for no inputs, an axis out of range, or inputs whose other
    /// dimensions or types differ.
    pub fn concatenation(&mut self, inputs: &[TensorId], axis: i32) -> Result<TensorId> {
        let (&first, rest) = inputs
            .split_first()
            .ok_or_else(|| Error::invalid("CONCATENATION", "no inputs".to_owned()))?;
        let ty = self.activation_type(first, "CONCATENATION")?;
        let base_shape = self.shape(first);
        let rank = base_shape.len();
        let axis_index = usize::try_from(if axis < 0 { axis + rank as i32 } else { axis })
            .ok()
            .filter(|&a| a < rank)
            .ok_or_else(|| {
                Error::invalid(
                    "CONCATENATION",
                    format!("axis {axis} out of range for rank {rank}"),
                )
            })?;
        let mut out_shape = base_shape.clone();
        for &t in rest {
            let t_ty = self.activation_type(t, "CONCATENATION")?;
            let shape = self.shape(t);
            let compatible = t_ty == ty
                && shape.len() == rank
                && shape
                    .iter()
                    .zip(&base_shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis_index || a == b);
            if !compatible {
                return Err(Error::invalid(
                    "CONCATENATION",
                    format!(
                        "`{}` ({t_ty:?} {shape:?}) does not fit `{}` ({ty:?} {base_shape:?}) on axis {axis}",
                        self.tensors[t].name, self.tensors[first].name
                    ),
                ));
            }
            out_shape[axis_index] += shape[axis_index];
        }
        let layer = self.layer("concatenation");
        let rms = inputs.iter().map(|&t| self.rms[t]).fold(0.0f32, f32::max);
        let quantization = match integer_range(ty) {
            Some(_) => {
                let (mut lo, mut hi) = (0.0f32, 0.0f32);
                for &t in inputs {
                    let (l, h) = real_range(self.quant(t), ty);
                    lo = lo.min(l);
                    hi = hi.max(h);
                }
                Some(range_quantization(lo, hi, ty)?)
            }
            None => None,
        };
        let mut op_inputs = Vec::with_capacity(inputs.len());
        for (i, &t) in inputs.iter().enumerate() {
            let needs_requantize = ty == ElementType::I8 && self.quant(t) != quantization.as_ref();
            if needs_requantize {
                let name = format!("{layer}/requantize_{i}");
                let shape = self.shape(t);
                let requantized =
                    self.push_tensor(name, ty, shape, quantization.clone(), None, self.rms[t])?;
                self.push_op(ops::QUANTIZE, 1, vec![Some(t)], requantized, None);
                op_inputs.push(Some(requantized));
            } else {
                op_inputs.push(Some(t));
            }
        }
        let out = self.push_tensor(layer.clone(), ty, out_shape, quantization, None, rms)?;
        let options = Options::table("ConcatenationOptions")?
            .set("axis", FieldValue::I32(axis))?
            .0;
        let version = if ty == ElementType::I8 { 2 } else { 1 };
        self.push_op(ops::CONCATENATION, version, op_inputs, out, Some(options));
        Ok(out)
    }

    /// `RESHAPE` to `shape`, where one dimension may be -1 (inferred). The quantization is
    /// kept.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is unknown or `shape` does not hold its elements.
    pub fn reshape(&mut self, x: TensorId, shape: &[i32]) -> Result<TensorId> {
        self.check(x)?;
        let elements = self.shape(x).iter().product::<usize>();
        let new_shape = resolve_shape(shape, elements)?;
        let layer = self.layer("reshape");
        let shape_data: Vec<u8> = new_shape
            .iter()
            .flat_map(|&d| (d as i32).to_le_bytes())
            .collect();
        let shape_tensor = self.push_tensor(
            format!("{layer}/shape"),
            ElementType::I32,
            vec![new_shape.len()],
            None,
            Some(shape_data),
            0.0,
        )?;
        let ty = self.tensors[x].element_type;
        let quantization = self.tensors[x].quantization.clone();
        let new_shape_i32 = dims(&new_shape)?;
        let out = self.push_tensor(layer, ty, new_shape, quantization, None, self.rms[x])?;
        let options = Options::table("ReshapeOptions")?
            .set("new_shape", FieldValue::VecI32(new_shape_i32))?
            .0;
        self.push_op(
            ops::RESHAPE,
            1,
            vec![Some(x), Some(shape_tensor)],
            out,
            Some(options),
        );
        Ok(out)
    }

    /// `QUANTIZE` a float tensor to `element_type` (`I8` or `U8`) with the given per-tensor
    /// quantization, or requantize an int8/uint8 tensor.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is unknown, or the types cannot be quantized as asked.
    pub fn quantize(
        &mut self,
        x: TensorId,
        element_type: ElementType,
        quantization: Quantization,
    ) -> Result<TensorId> {
        let in_ty = self.activation_type(x, "QUANTIZE")?;
        if integer_range(element_type).is_none() {
            return Err(Error::invalid(
                "QUANTIZE",
                format!("output type {element_type:?} is not I8 or U8"),
            ));
        }
        let layer = self.layer("quantize");
        check_per_tensor(&quantization, &layer)?;
        let rms = if in_ty == ElementType::F32 {
            range_rms(&quantization, element_type)
        } else {
            self.rms[x]
        };
        let shape = self.shape(x);
        let out = self.push_tensor(layer, element_type, shape, Some(quantization), None, rms)?;
        self.push_op(ops::QUANTIZE, 1, vec![Some(x)], out, None);
        Ok(out)
    }

    /// `DEQUANTIZE` an int8 or uint8 tensor to float32.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is unknown or not int8 or uint8.
    pub fn dequantize(&mut self, x: TensorId) -> Result<TensorId> {
        let ty = self.activation_type(x, "DEQUANTIZE")?;
        if integer_range(ty).is_none() {
            return Err(Error::invalid(
                "DEQUANTIZE",
                format!("input `{}` is {ty:?}, not I8 or U8", self.tensors[x].name),
            ));
        }
        let layer = self.layer("dequantize");
        let shape = self.shape(x);
        let out = self.push_tensor(layer, ElementType::F32, shape, None, None, self.rms[x])?;
        let version = if ty == ElementType::I8 { 2 } else { 1 };
        self.push_op(ops::DEQUANTIZE, version, vec![Some(x)], out, None);
        Ok(out)
    }

    /// `AVERAGE_POOL_2D` with a `[height, width]` window over an NHWC input.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is not a 4-D tensor of this builder, or the window or
    /// strides are 0.
    pub fn average_pool_2d(
        &mut self,
        x: TensorId,
        filter: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Result<TensorId> {
        self.pool(x, filter, stride, padding, ops::AVERAGE_POOL_2D)
    }

    /// `MAX_POOL_2D` with a `[height, width]` window over an NHWC input.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is not a 4-D tensor of this builder, or the window or
    /// strides are 0.
    pub fn max_pool_2d(
        &mut self,
        x: TensorId,
        filter: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Result<TensorId> {
        self.pool(x, filter, stride, padding, ops::MAX_POOL_2D)
    }

    /// `SOFTMAX` over the last dimension with the given `beta`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is unknown.
    pub fn softmax(&mut self, x: TensorId, beta: f32) -> Result<TensorId> {
        let ty = self.activation_type(x, "SOFTMAX")?;
        let shape = self.shape(x);
        let depth = shape.last().copied().unwrap_or(1).max(1);
        let layer = self.layer("softmax");
        // The fixed output quantization TFLite's quantized softmax kernels require.
        let quantization = match ty {
            ElementType::I8 => Some(per_tensor(1.0 / 256.0, -128)),
            ElementType::U8 => Some(per_tensor(1.0 / 256.0, 0)),
            _ => None,
        };
        let rms = 1.0 / depth as f32;
        let out = self.push_tensor(layer, ty, shape, quantization, None, rms)?;
        let options = Options::table("SoftmaxOptions")?
            .set("beta", FieldValue::F32(beta))?
            .0;
        let version = if ty == ElementType::I8 { 2 } else { 1 };
        self.push_op(ops::SOFTMAX, version, vec![Some(x)], out, Some(options));
        Ok(out)
    }

    /// A `TANH` op.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `x` is unknown.
    pub fn tanh(&mut self, x: TensorId) -> Result<TensorId> {
        self.activation_type(x, "TANH")?;
        let layer = self.layer("tanh");
        self.push_tanh(x, layer)
    }

    /// The finished model. Errors if it has no inputs or no outputs.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the model has no inputs or no outputs.
    pub fn build(self) -> Result<Model<'static>> {
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err(Error::invalid(
                "built model",
                format!(
                    "needs inputs and outputs (has {} inputs, {} outputs)",
                    self.inputs.len(),
                    self.outputs.len()
                ),
            ));
        }
        Ok(Model {
            description: Some(Cow::Owned(self.description)),
            subgraph_name: Some(Cow::Borrowed("main")),
            ..Model::new(self.tensors, self.operators, self.inputs, self.outputs)
        })
    }

    // ---- internals ----

    fn check(&self, id: TensorId) -> Result<()> {
        if id < self.tensors.len() {
            Ok(())
        } else {
            Err(Error::TensorIndex {
                kind: "builder",
                index: id,
                count: self.tensors.len(),
            })
        }
    }

    /// The element type of an op input, which must be an activation of type F32, I8 or U8.
    fn activation_type(&self, id: TensorId, op: &'static str) -> Result<ElementType> {
        self.check(id)?;
        let tensor = &self.tensors[id];
        match tensor.element_type {
            ElementType::F32 | ElementType::I8 | ElementType::U8 => Ok(tensor.element_type),
            other => Err(Error::invalid(
                op,
                format!("input `{}` is {other:?}, not F32, I8 or U8", tensor.name),
            )),
        }
    }

    /// The static shape of a tensor the builder made (all dimensions are non-negative).
    fn shape(&self, id: TensorId) -> Vec<usize> {
        self.tensors[id]
            .shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .collect()
    }

    fn quant(&self, id: TensorId) -> Option<&Quantization> {
        self.tensors[id].quantization.as_ref()
    }

    fn nhwc(&self, id: TensorId, op: &'static str) -> Result<[usize; 4]> {
        let shape = self.shape(id);
        <[usize; 4]>::try_from(shape.as_slice()).map_err(|_| {
            Error::invalid(
                op,
                format!(
                    "input `{}` has shape {shape:?}, not NHWC",
                    self.tensors[id].name
                ),
            )
        })
    }

    /// A fresh layer name `base`, `base_1`, `base_2`, … that prefixes no existing tensor name.
    fn layer(&mut self, base: &str) -> String {
        let mut n = 0usize;
        loop {
            let candidate = if n == 0 {
                base.to_owned()
            } else {
                format!("{base}_{n}")
            };
            let prefix = format!("{candidate}/");
            let taken = self.layers.contains(&candidate)
                || self
                    .names
                    .iter()
                    .any(|name| *name == candidate || name.starts_with(&prefix));
            if !taken {
                self.layers.insert(candidate.clone());
                return candidate;
            }
            n += 1;
        }
    }

    fn push_tensor(
        &mut self,
        name: String,
        element_type: ElementType,
        shape: Vec<usize>,
        quantization: Option<Quantization>,
        data: Option<Vec<u8>>,
        rms: f32,
    ) -> Result<TensorId> {
        if self.names.contains(&name) {
            return Err(Error::invalid(
                "builder tensor name",
                format!("`{name}` is already used"),
            ));
        }
        let shape = dims(&shape)?;
        self.names.insert(name.clone());
        self.tensors.push(Tensor {
            name: Cow::Owned(name),
            element_type,
            shape,
            shape_signature: None,
            quantization,
            data: data.map(Cow::Owned),
            is_variable: false,
            has_rank: false,
        });
        self.rms.push(rms);
        Ok(self.tensors.len() - 1)
    }

    fn push_op(
        &mut self,
        builtin: i32,
        version: i32,
        inputs: Vec<Option<TensorId>>,
        output: TensorId,
        options: Option<BuiltinOptions>,
    ) {
        self.operators.push(Operator {
            opcode: OpCode {
                builtin,
                custom: None,
                version,
            },
            inputs,
            outputs: vec![output],
            intermediates: Vec::new(),
            builtin_options: options,
            custom_options: None,
            custom_options_format: 0,
            mutating_variable_inputs: Vec::new(),
        });
    }

    /// Seeded weights of a layer: uniform with mean square `1 / fan_in` (scaled by a random
    /// per-channel factor in [0.5, 1] when per-channel), quantized for `ty`.
    fn weights(
        &mut self,
        layer: &str,
        ty: ElementType,
        shape: Vec<usize>,
        channel_dim: usize,
        fan_in: usize,
        mode: WeightQuantization,
    ) -> Result<Weights> {
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&n| {
                n.checked_mul(ty.size().unwrap_or(1))
                    .is_some_and(|b| b <= MAX_CONSTANT_BYTES)
            })
            .ok_or_else(|| {
                Error::invalid(
                    "layer",
                    format!("`{layer}` weights {shape:?} exceed the file format's 2 GiB"),
                )
            })?;
        let channels = shape[channel_dim];
        // Uniform in [-limit, limit] has mean square limit² / 3 = 3 / fan_in.
        let limit = (3.0 / fan_in as f64).sqrt() as f32;
        let name = format!("{layer}/weights");
        let (data, quantization, scales, mean_square) = match ty {
            ElementType::I8 => {
                let limits: Vec<f32> = match mode {
                    WeightQuantization::PerChannel => (0..channels)
                        .map(|_| limit * self.rng.uniform(0.5, 1.0))
                        .collect(),
                    WeightQuantization::PerTensor => vec![limit],
                };
                let scales: Vec<f32> = limits.iter().map(|l| l / 127.0).collect();
                // Each value uniform in [-127, 127]; the channel's scale sets its magnitude.
                let data: Vec<u8> = (0..count)
                    .map(|_| (self.rng.int_in(-127, 127) as i8) as u8)
                    .collect();
                let mean_square = limits
                    .iter()
                    .map(|&l| f64::from(l).powi(2) / 3.0)
                    .sum::<f64>()
                    / limits.len() as f64;
                let quantization = Quantization {
                    scale: scales.clone(),
                    zero_point: vec![0; scales.len()],
                    quantized_dimension: if scales.len() > 1 {
                        channel_dim as i32
                    } else {
                        0
                    },
                    ..Quantization::default()
                };
                (data, Some(quantization), scales, mean_square)
            }
            ElementType::U8 => {
                // An asymmetric zero point, but values spread evenly around it so the real
                // weights have mean 0 (a biased mean would push every output one way).
                let zero_point = self.rng.int_in(118, 138);
                let reach = zero_point.min(255 - zero_point);
                let scale = limit / reach as f32;
                let data = (0..count)
                    .map(|_| self.rng.int_in(zero_point - reach, zero_point + reach) as u8)
                    .collect();
                let mean_square = f64::from(scale).powi(2) * (reach * (reach + 1)) as f64 / 3.0;
                (
                    data,
                    Some(per_tensor(scale, zero_point)),
                    vec![scale],
                    mean_square,
                )
            }
            _ => {
                let data = (0..count)
                    .flat_map(|_| self.rng.uniform(-limit, limit).to_le_bytes())
                    .collect();
                (data, None, Vec::new(), f64::from(limit).powi(2) / 3.0)
            }
        };
        let tensor = self.push_tensor(name, ty, shape, quantization, Some(data), 0.0)?;
        Ok(Weights {
            tensor,
            scales,
            mean_square,
        })
    }

    /// Seeded biases: small values (a tenth of the input's magnitude), int32 with scale
    /// `input_scale × weight_scale` per channel for quantized layers, float otherwise.
    fn bias(
        &mut self,
        layer: &str,
        x: TensorId,
        weights: &Weights,
        channels: usize,
    ) -> Result<TensorId> {
        let magnitude = 0.1 * self.rms[x];
        let name = format!("{layer}/bias");
        match self.quant(x).map(|q| q.scale.first().copied()) {
            Some(Some(input_scale)) => {
                let scales: Vec<f32> = weights
                    .scales
                    .iter()
                    .map(|&w| (f64::from(input_scale) * f64::from(w)) as f32)
                    .collect();
                let mut data = Vec::with_capacity(channels * 4);
                for c in 0..channels {
                    let scale = scales.get(c).or(scales.first()).copied().unwrap_or(1.0);
                    let real = self.rng.uniform(-magnitude, magnitude);
                    let q = (f64::from(real) / f64::from(scale))
                        .round()
                        .clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                        as i32;
                    data.extend_from_slice(&q.to_le_bytes());
                }
                let quantization = Quantization {
                    zero_point: vec![0; scales.len()],
                    scale: scales,
                    ..Quantization::default()
                };
                self.push_tensor(
                    name,
                    ElementType::I32,
                    vec![channels],
                    Some(quantization),
                    Some(data),
                    0.0,
                )
            }
            _ => {
                let data = (0..channels)
                    .flat_map(|_| self.rng.uniform(-magnitude, magnitude).to_le_bytes())
                    .collect();
                self.push_tensor(
                    name,
                    ElementType::F32,
                    vec![channels],
                    None,
                    Some(data),
                    0.0,
                )
            }
        }
    }

    /// Adds a layer with seeded weights and an int32 bias (dense, convolution, depthwise),
    /// then its activation.
    fn emit_weighted(&mut self, layer: WeightedLayer) -> Result<TensorId> {
        let x = layer.x;
        let ty = layer.element_type;
        let name = self.layer(layer.name);
        let out_channels = layer.weight_shape[layer.channel_dim];
        let weights = self.weights(
            &name,
            ty,
            layer.weight_shape,
            layer.channel_dim,
            layer.fan_in,
            layer.weight_quantization,
        )?;
        let bias = self.bias(&name, x, &weights, out_channels)?;
        let gain = (layer.fan_in as f64 * weights.mean_square).sqrt() as f32;
        self.emit_with_activation(Layer {
            name,
            base: layer.base,
            opcode: layer.opcode,
            version: if ty == ElementType::I8 {
                layer.int8_version
            } else {
                1
            },
            inputs: vec![Some(x), Some(weights.tensor), Some(bias)],
            options: layer.options,
            shape: layer.shape,
            element_type: ty,
            rms: self.rms[x] * gain,
            activation: layer.activation,
        })
    }

    /// Pushes an op's output (quantized from the estimated `rms` of its pre-activation values
    /// and the fused activation), the op, and a `TANH` op after it for [`Activation::Tanh`].
    fn emit_with_activation(&mut self, layer: Layer) -> Result<TensorId> {
        let ty = layer.element_type;
        let sigma = if layer.rms.is_finite() && layer.rms > 1e-6 {
            layer.rms
        } else {
            1.0
        };
        let (range, rms_out, suffix) = match layer.activation {
            Activation::None | Activation::Tanh => ((-3.0 * sigma, 3.0 * sigma), sigma, layer.base),
            Activation::Relu => ((0.0, 3.0 * sigma), sigma / 2f32.sqrt(), "Relu"),
            Activation::Relu6 => (
                (0.0, (3.0 * sigma).min(6.0)),
                (sigma / 2f32.sqrt()).min(6.0),
                "Relu6",
            ),
        };
        let quantization = match integer_range(ty) {
            Some(_) => Some(range_quantization(range.0, range.1, ty)?),
            None => None,
        };
        let name = format!("{}/{suffix}", layer.name);
        let out = self.push_tensor(name, ty, layer.shape, quantization, None, rms_out)?;
        self.push_op(
            layer.opcode,
            layer.version,
            layer.inputs,
            out,
            Some(layer.options),
        );
        if layer.activation == Activation::Tanh {
            self.push_tanh(out, layer.name)
        } else {
            Ok(out)
        }
    }

    /// A `TANH` op with the fixed output quantization TFLite's quantized kernels require.
    fn push_tanh(&mut self, x: TensorId, layer: String) -> Result<TensorId> {
        let ty = self.tensors[x].element_type;
        let quantization = match ty {
            ElementType::I8 => Some(per_tensor(1.0 / 128.0, 0)),
            ElementType::U8 => Some(per_tensor(1.0 / 128.0, 128)),
            _ => None,
        };
        let sigma = self.rms[x];
        let rms = sigma / (1.0 + sigma * sigma).sqrt();
        let shape = self.shape(x);
        let out = self.push_tensor(format!("{layer}/Tanh"), ty, shape, quantization, None, rms)?;
        let version = if ty == ElementType::I8 { 2 } else { 1 };
        self.push_op(ops::TANH, version, vec![Some(x)], out, None);
        Ok(out)
    }

    fn pool(
        &mut self,
        x: TensorId,
        filter: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        opcode: i32,
    ) -> Result<TensorId> {
        let (op, base) = if opcode == ops::MAX_POOL_2D {
            ("MAX_POOL_2D", "max_pooling2d")
        } else {
            ("AVERAGE_POOL_2D", "average_pooling2d")
        };
        let ty = self.activation_type(x, op)?;
        let [n, h, w, c] = self.nhwc(x, op)?;
        let [oh, ow] = out_spatial(op, [h, w], filter, stride, padding)?;
        let layer = self.layer(base);
        let quantization = self.tensors[x].quantization.clone();
        let out = self.push_tensor(
            layer,
            ty,
            vec![n, oh, ow, c],
            quantization,
            None,
            self.rms[x],
        )?;
        let options = Options::table("Pool2DOptions")?
            .enum8("padding", padding.code())?
            .int("stride_w", stride[1])?
            .int("stride_h", stride[0])?
            .int("filter_width", filter[1])?
            .int("filter_height", filter[0])?
            .0;
        let version = if ty == ElementType::I8 { 2 } else { 1 };
        self.push_op(opcode, version, vec![Some(x)], out, Some(options));
        Ok(out)
    }
}

/// One op with weights or operands whose output is quantized from its activation.
/// A layer with weights, as [`ModelBuilder::emit_weighted`] adds it.
struct WeightedLayer {
    x: TensorId,
    /// Type of `x` and of the output (int8, uint8 or float32).
    element_type: ElementType,
    /// Layer name prefix (numbered on use, e.g. `dense` → `dense_1`).
    name: &'static str,
    base: &'static str,
    opcode: i32,
    /// Operator version for int8 kernels (uint8 and float use 1).
    int8_version: i32,
    weight_shape: Vec<usize>,
    /// Axis of `weight_shape` holding the output channels (per-channel scales run along it).
    channel_dim: usize,
    fan_in: usize,
    weight_quantization: WeightQuantization,
    options: BuiltinOptions,
    shape: Vec<usize>,
    activation: Activation,
}

struct Layer {
    name: String,
    /// Output name suffix when no activation is fused (e.g. `MatMul`).
    base: &'static str,
    opcode: i32,
    version: i32,
    inputs: Vec<Option<TensorId>>,
    options: BuiltinOptions,
    shape: Vec<usize>,
    element_type: ElementType,
    /// Estimated root mean square of the op's pre-activation output.
    rms: f32,
    activation: Activation,
}

/// Converts dimensions to the file's `i32`s, failing on overflow.
fn dims(shape: &[usize]) -> Result<Vec<i32>> {
    shape.iter().map(|&d| dim32(d)).collect()
}

fn dim32(d: usize) -> Result<i32> {
    i32::try_from(d)
        .map_err(|_| Error::invalid("builder shape", format!("dimension {d} too large")))
}

/// Spatial output size of a convolution or pool, checking kernel and strides.
fn out_spatial(
    op: &'static str,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
) -> Result<[usize; 2]> {
    if kernel.contains(&0) || stride.contains(&0) {
        return Err(Error::invalid(
            op,
            format!("kernel {kernel:?} and stride {stride:?} must be positive"),
        ));
    }
    let size = |i: usize| {
        padding
            .output_size(input[i], kernel[i], stride[i])
            .filter(|&s| s > 0)
            .ok_or_else(|| {
                Error::invalid(
                    op,
                    format!(
                        "kernel {kernel:?} does not fit input {input:?} with {padding:?} padding"
                    ),
                )
            })
    };
    Ok([size(0)?, size(1)?])
}

/// Resolves a reshape target with at most one -1 against the element count.
fn resolve_shape(shape: &[i32], elements: usize) -> Result<Vec<usize>> {
    let bad = |reason: String| Error::invalid("RESHAPE", reason);
    let mut unknown = None;
    let mut known = 1usize;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if unknown.is_none() => unknown = Some(i),
            d if d >= 0 => {
                known = known
                    .checked_mul(d as usize)
                    .ok_or_else(|| bad(format!("shape {shape:?} too large")))?;
            }
            _ => return Err(bad(format!("invalid target shape {shape:?}"))),
        }
    }
    let mut resolved: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    match unknown {
        Some(i) if known > 0 && elements.is_multiple_of(known) => resolved[i] = elements / known,
        None if known == elements => {}
        _ => {
            return Err(bad(format!(
                "cannot reshape {elements} elements to {shape:?}"
            )));
        }
    }
    Ok(resolved)
}

/// Errors unless `q` has exactly one scale and zero point with a positive finite scale.
fn check_per_tensor(q: &Quantization, tensor: &str) -> Result<()> {
    let ok =
        q.scale.len() == 1 && q.zero_point.len() == 1 && q.scale[0].is_finite() && q.scale[0] > 0.0;
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "builder quantization",
            format!("`{tensor}` needs one positive scale and one zero point, got {q:?}"),
        ))
    }
}

/// The real range a quantized tensor can represent.
fn real_range(q: Option<&Quantization>, ty: ElementType) -> (f32, f32) {
    match (q, integer_range(ty)) {
        (Some(q), Some((qmin, qmax))) => {
            let scale = q.scale.first().copied().unwrap_or(1.0);
            let zero = q.zero_point.first().copied().unwrap_or(0);
            (scale * (qmin - zero) as f32, scale * (qmax - zero) as f32)
        }
        _ => (-1.0, 1.0),
    }
}

/// Root mean square of values spread uniformly over a quantization's real range.
fn range_rms(q: &Quantization, ty: ElementType) -> f32 {
    let (lo, hi) = real_range(Some(q), ty);
    ((lo * lo + lo * hi + hi * hi) / 3.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int8_input(b: &mut ModelBuilder, shape: &[usize]) -> TensorId {
        let x = b.input("x", ElementType::F32, shape, None).unwrap();
        let q = range_quantization(-1.0, 1.0, ElementType::I8).unwrap();
        b.quantize(x, ElementType::I8, q).unwrap()
    }

    #[test]
    fn splitmix_is_deterministic_and_in_range() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let mut c = SplitMix64::new(43);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let f = a.next_f32();
            assert!((0.0..1.0).contains(&f));
            let i = a.int_in(-2, 2);
            seen[(i + 2) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "int_in covers its range");
        assert_eq!(a.bytes(13).len(), 13);
    }

    #[test]
    fn range_quantization_matches_converter_rules() {
        let q = range_quantization(-1.0, 1.0, ElementType::I8).unwrap();
        assert!((q.scale[0] - 2.0 / 255.0).abs() < 1e-7);
        assert_eq!(q.zero_point, vec![-1], "-128 + 127.5 rounds away from zero");
        let q = range_quantization(0.0, 6.0, ElementType::I8).unwrap();
        assert_eq!(q.zero_point, vec![-128]);
        let q = range_quantization(0.5, 2.0, ElementType::U8).unwrap();
        assert_eq!(q.zero_point, vec![0], "range widened to contain zero");
        let q = range_quantization(-2.0, 0.0, ElementType::U8).unwrap();
        assert_eq!(q.zero_point, vec![255]);
        assert!(range_quantization(0.0, 1.0, ElementType::F32).is_err());
        assert!(range_quantization(f32::NAN, 1.0, ElementType::I8).is_err());
        assert!(range_quantization(2.0, 1.0, ElementType::I8).is_err());
    }

    #[test]
    fn fully_connected_int8_layout() {
        let mut b = ModelBuilder::new(1);
        let x = int8_input(&mut b, &[2, 8]);
        let y = b.fully_connected(x, 5, Activation::Relu).unwrap();
        b.output(y).unwrap();
        let m = b.build().unwrap();
        let op = &m.operators[1];
        assert_eq!(op.opcode.builtin, ops::FULLY_CONNECTED);
        assert_eq!(op.opcode.version, 4);
        let [i, w, bias] = [0, 1, 2].map(|k| op.inputs[k].unwrap());
        assert_eq!(i, x);
        assert_eq!(m.tensors[w].name, "dense/weights");
        assert_eq!(m.tensors[w].shape, vec![5, 8]);
        assert_eq!(m.tensors[w].element_type, ElementType::I8);
        let wq = m.tensors[w].quantization.as_ref().unwrap();
        assert_eq!(wq.scale.len(), 1, "FC weights are per-tensor");
        assert_eq!(wq.zero_point, vec![0]);
        assert_eq!(m.tensors[bias].element_type, ElementType::I32);
        assert_eq!(m.tensors[bias].data.as_ref().unwrap().len(), 5 * 4);
        let bq = m.tensors[bias].quantization.as_ref().unwrap();
        let iq = m.tensors[x].quantization.as_ref().unwrap();
        let product = f64::from(iq.scale[0]) * f64::from(wq.scale[0]);
        assert!((f64::from(bq.scale[0]) - product).abs() <= 1e-6 * product);
        assert_eq!(m.tensors[y].name, "dense/Relu");
        assert_eq!(m.tensors[y].shape, vec![2, 5]);
        let yq = m.tensors[y].quantization.as_ref().unwrap();
        assert_eq!(yq.zero_point, vec![-128], "relu output range starts at 0");
        let opts = op.builtin_options.as_ref().unwrap();
        assert_eq!(opts.layout().unwrap().name, "FullyConnectedOptions");
        assert_eq!(opts.fields, vec![(0, FieldValue::I8(1))]);
        assert_eq!(
            opts.get("fused_activation_function"),
            Some(&FieldValue::I8(1))
        );
    }

    #[test]
    fn conv_int8_is_per_channel_by_default() {
        let mut b = ModelBuilder::new(1);
        let x = int8_input(&mut b, &[1, 8, 8, 3]);
        let y = b
            .conv2d(x, 4, [3, 3], [2, 2], Padding::Same, Activation::Relu6)
            .unwrap();
        let z = b
            .conv2d(y, 2, [3, 3], [1, 1], Padding::Valid, Activation::None)
            .unwrap();
        b.output(z).unwrap();
        let m = b.build().unwrap();
        assert_eq!(m.tensors[y].shape, vec![1, 4, 4, 4]);
        assert_eq!(m.tensors[z].shape, vec![1, 2, 2, 2]);
        let w = m.operators[1].inputs[1].unwrap();
        let wq = m.tensors[w].quantization.as_ref().unwrap();
        assert_eq!(wq.scale.len(), 4);
        assert_eq!(wq.quantized_dimension, 0);
        let bias = m.operators[1].inputs[2].unwrap();
        assert_eq!(
            m.tensors[bias].quantization.as_ref().unwrap().scale.len(),
            4
        );
        assert_eq!(m.operators[1].opcode.version, 3);
        let opts = m.operators[1].builtin_options.as_ref().unwrap();
        assert_eq!(
            opts.fields,
            vec![
                (1, FieldValue::I32(2)),
                (2, FieldValue::I32(2)),
                (3, FieldValue::I8(3))
            ]
        );
        let opts = m.operators[2].builtin_options.as_ref().unwrap();
        assert_eq!(opts.fields[0], (0, FieldValue::I8(1)), "VALID padding");
    }

    #[test]
    fn per_tensor_mode_and_uint8_weights() {
        let mut b = ModelBuilder::new(3);
        b.weight_quantization(WeightQuantization::PerTensor);
        let x = int8_input(&mut b, &[1, 4, 4, 2]);
        let y = b
            .depthwise_conv2d(x, 2, [3, 3], [1, 1], Padding::Same, Activation::None)
            .unwrap();
        assert_eq!(b.tensor(y).unwrap().shape, vec![1, 4, 4, 4]);
        let m = {
            b.output(y).unwrap();
            b.build().unwrap()
        };
        let w = m.operators[1].inputs[1].unwrap();
        assert_eq!(m.tensors[w].shape, vec![1, 3, 3, 4]);
        assert_eq!(m.tensors[w].quantization.as_ref().unwrap().scale.len(), 1);

        let mut b = ModelBuilder::new(3);
        let x = b
            .input("u", ElementType::U8, &[1, 6], Some(per_tensor(0.02, 128)))
            .unwrap();
        let y = b.fully_connected(x, 3, Activation::None).unwrap();
        b.output(y).unwrap();
        let m = b.build().unwrap();
        let w = m.operators[0].inputs[1].unwrap();
        let wq = m.tensors[w].quantization.as_ref().unwrap();
        assert_eq!(m.tensors[w].element_type, ElementType::U8);
        assert!((118..=138).contains(&wq.zero_point[0]));
        assert_eq!(m.operators[0].opcode.version, 1);
        let yq = m.tensors[y].quantization.as_ref().unwrap();
        assert!((120..=136).contains(&yq.zero_point[0]), "{yq:?}");
    }

    #[test]
    fn tanh_is_a_separate_op() {
        let mut b = ModelBuilder::new(1);
        let x = int8_input(&mut b, &[1, 8]);
        let y = b.fully_connected(x, 8, Activation::Tanh).unwrap();
        b.output(y).unwrap();
        let m = b.build().unwrap();
        assert_eq!(m.operators.len(), 3);
        assert_eq!(
            m.operators[1].builtin_options.as_ref().unwrap().fields,
            vec![]
        );
        assert_eq!(m.operators[2].opcode.builtin, ops::TANH);
        assert_eq!(m.operators[2].opcode.version, 2);
        assert_eq!(m.tensors[y].name, "dense/Tanh");
        assert_eq!(m.tensors[y].quantization, Some(per_tensor(1.0 / 128.0, 0)));
    }

    #[test]
    fn residual_concat_reshape_and_pools() {
        let mut b = ModelBuilder::new(9);
        let x = int8_input(&mut b, &[1, 8, 8, 4]);
        let y = b
            .conv2d(x, 4, [3, 3], [1, 1], Padding::Same, Activation::None)
            .unwrap();
        let r = b.add(x, y, Activation::Relu).unwrap();
        let c = b.concatenation(&[r, x], -1).unwrap();
        assert_eq!(b.tensor(c).unwrap().shape, vec![1, 8, 8, 8]);
        let p = b.max_pool_2d(c, [2, 2], [2, 2], Padding::Valid).unwrap();
        let a = b.average_pool_2d(p, [2, 2], [2, 2], Padding::Same).unwrap();
        assert_eq!(b.tensor(a).unwrap().shape, vec![1, 2, 2, 8]);
        let f = b.reshape(a, &[1, -1]).unwrap();
        assert_eq!(b.tensor(f).unwrap().shape, vec![1, 32]);
        let s = b.softmax(f, 1.0).unwrap();
        let out = b.dequantize(s).unwrap();
        b.output(out).unwrap();
        b.output(y).unwrap();
        let m = b.build().unwrap();
        assert_eq!(m.outputs, vec![out, y]);
        let names: HashSet<&str> = m.tensors.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names.len(), m.tensors.len(), "tensor names are unique");
        // The concat output quantization covers both inputs; the mismatched ones got requantized.
        let concat = m
            .operators
            .iter()
            .find(|op| op.opcode.builtin == ops::CONCATENATION)
            .unwrap();
        for input in concat.present_inputs() {
            assert_eq!(m.tensors[input].quantization, m.tensors[c].quantization);
        }
        // Every op's inputs come before it (execution order).
        let mut ready: HashSet<usize> = m.inputs.iter().copied().collect();
        ready.extend(
            m.tensors
                .iter()
                .enumerate()
                .filter(|(_, t)| t.is_constant())
                .map(|(i, _)| i),
        );
        for op in &m.operators {
            assert!(op.present_inputs().all(|i| ready.contains(&i)));
            ready.extend(op.outputs.iter().copied());
        }
    }

    #[test]
    fn same_seed_same_model_other_seed_other_weights() {
        let build = |seed| {
            let mut b = ModelBuilder::new(seed);
            let x = int8_input(&mut b, &[1, 16]);
            let y = b.fully_connected(x, 16, Activation::Tanh).unwrap();
            b.output(y).unwrap();
            b.build().unwrap()
        };
        assert_eq!(build(5), build(5));
        let (a, b) = (build(5), build(6));
        let w = a.operators[1].inputs[1].unwrap();
        assert_ne!(a.tensors[w].data, b.tensors[w].data);
    }

    #[test]
    fn float_layers_have_float_parameters() {
        let mut b = ModelBuilder::new(2);
        let x = b.input("x", ElementType::F32, &[1, 4, 4, 2], None).unwrap();
        let y = b
            .conv2d(x, 3, [1, 1], [1, 1], Padding::Valid, Activation::None)
            .unwrap();
        b.output(y).unwrap();
        let m = b.build().unwrap();
        let [w, bias] = [1, 2].map(|k| m.operators[0].inputs[k].unwrap());
        assert_eq!(m.tensors[w].element_type, ElementType::F32);
        assert_eq!(m.tensors[w].data.as_ref().unwrap().len(), 3 * 2 * 4);
        assert_eq!(m.tensors[bias].element_type, ElementType::F32);
        assert_eq!(m.tensors[y].quantization, None);
        assert_eq!(m.operators[0].opcode.version, 1);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut b = ModelBuilder::new(0);
        assert!(matches!(
            b.fully_connected(3, 4, Activation::None),
            Err(Error::TensorIndex { index: 3, .. })
        ));
        assert!(b.input("q", ElementType::I8, &[1, 4], None).is_err());
        assert!(
            b.input("q", ElementType::I8, &[1, 4], Some(Quantization::default()))
                .is_err()
        );
        let x = int8_input(&mut b, &[1, 4]);
        assert!(
            b.input("x", ElementType::F32, &[1], None).is_err(),
            "duplicate name"
        );
        assert!(
            b.conv2d(x, 2, [3, 3], [1, 1], Padding::Same, Activation::None)
                .is_err()
        );
        assert!(b.fully_connected(x, 0, Activation::None).is_err());
        assert!(
            b.fully_connected(x, 1 << 30, Activation::None).is_err(),
            "weights over 2 GiB"
        );
        let f = b.input("f", ElementType::F32, &[1, 4], None).unwrap();
        assert!(b.add(x, f, Activation::None).is_err(), "type mismatch");
        assert!(b.concatenation(&[], 0).is_err());
        assert!(b.concatenation(&[x], 2).is_err());
        let y = b.fully_connected(x, 3, Activation::None).unwrap();
        assert!(b.concatenation(&[x, y], 0).is_err(), "dims differ off-axis");
        assert!(b.reshape(x, &[3, -1]).is_err());
        assert!(b.reshape(x, &[-1, -1]).is_err());
        assert!(b.dequantize(f).is_err());
        assert!(b.quantize(x, ElementType::F32, per_tensor(1.0, 0)).is_err());
        let flat = b.quantize(f, ElementType::I8, per_tensor(0.1, 0)).unwrap();
        assert!(
            b.max_pool_2d(flat, [2, 2], [1, 1], Padding::Same).is_err(),
            "not NHWC"
        );
        b.output(y).unwrap();
        assert!(b.output(y).is_err(), "output twice");
        assert!(ModelBuilder::new(0).build().is_err());
    }

    #[test]
    fn layer_names_avoid_user_names() {
        let mut b = ModelBuilder::new(0);
        let x = b.input("dense", ElementType::F32, &[1, 4], None).unwrap();
        let y = b.fully_connected(x, 2, Activation::None).unwrap();
        assert_eq!(b.tensor(y).unwrap().name, "dense_1/MatMul");
        let z = b.fully_connected(y, 2, Activation::None).unwrap();
        assert_eq!(b.tensor(z).unwrap().name, "dense_2/MatMul");
    }
}
