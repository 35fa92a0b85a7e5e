//! Which operators validation models fully, and the preconditions of their TFLite 2.9
//! kernels that a file can break: input counts and absent inputs, element types, option
//! ranges that the kernels store in 16-bit fields, buffer sizes they take for granted.
//!
//! Each rule below stands for a crash, an abort or an out-of-bounds access in the kernel
//! TFLite 2.9's builtin resolver registers for the operator (checks that the kernel itself
//! turns into an error are left to it). Under [`Validation::strict`], the default, a model
//! runs only if every operator is listed in [`MODELLED`] (or is a custom operator this module
//! models or the caller supplies); [`Validation::trusted`] lets the others through with the
//! checks of the module documentation only.

use super::*;
use crate::model::flexbuffer::{self, Value};

/// The largest stride, dilation, filter size or dilated filter extent of a convolution or
/// pooling: TFLite 2.9 keeps them, and the paddings computed from them, in `int16_t` fields
/// (`ConvParams`, `DepthwiseParams`, `PaddingValues`); a larger value wraps, to 0 for
/// 65536, and a kernel then divides by it.
pub const MAX_WINDOW: i64 = i16::MAX as i64;

/// The most output channels of a depthwise convolution: the kernel's accumulator buffer
/// holds 2048 of them (quantized; 4832 in float) and steps by `2048 / channels` pixels,
/// which is 0, a loop that never ends, beyond.
pub const MAX_DEPTHWISE_CHANNELS: i64 = 2048;

/// The highest rank strict validation lets through: the modelled operators' kernels take at
/// most 6 dimensions (several fewer, checked per operator).
pub const MAX_RANK: usize = 6;

/// An operator validation models fully: how many inputs it takes, which of them may be
/// absent (`-1` in the file), and how many outputs it writes.
#[derive(Debug)]
pub(super) struct Modelled {
    pub(super) op: i32,
    inputs: &'static [usize],
    optional: &'static [usize],
    outputs: usize,
}

const fn modelled(
    op: i32,
    inputs: &'static [usize],
    optional: &'static [usize],
    outputs: usize,
) -> Modelled {
    Modelled {
        op,
        inputs,
        optional,
        outputs,
    }
}

/// The builtin operators validation models fully. Everything the real models of vision and
/// sequence networks use (the shared models, the test zoo, the benchmark zoo), and little
/// more: an operator enters this list only with every precondition of its kernel modelled.
pub(super) const MODELLED: &[Modelled] = &[
    modelled(ops::ADD, &[2], &[], 1),
    modelled(ops::SUB, &[2], &[], 1),
    modelled(ops::MUL, &[2], &[], 1),
    modelled(ops::AVERAGE_POOL_2D, &[1], &[], 1),
    modelled(ops::MAX_POOL_2D, &[1], &[], 1),
    // Inputs are counted below (at least one).
    modelled(ops::CONCATENATION, &[], &[], 1),
    // The 2.9 kernels read the bias unconditionally (depthwise copies it with memcpy).
    modelled(ops::CONV_2D, &[3], &[], 1),
    modelled(ops::DEPTHWISE_CONV_2D, &[3], &[], 1),
    modelled(ops::FULLY_CONNECTED, &[2, 3], &[2], 1),
    modelled(ops::QUANTIZE, &[1], &[], 1),
    modelled(ops::DEQUANTIZE, &[1], &[], 1),
    modelled(ops::MEAN, &[2], &[], 1),
    modelled(ops::PAD, &[2], &[], 1),
    modelled(ops::PADV2, &[3], &[], 1),
    modelled(ops::RESHAPE, &[1, 2], &[], 1),
    modelled(ops::RESIZE_BILINEAR, &[2], &[], 1),
    modelled(ops::SOFTMAX, &[1], &[], 1),
    modelled(ops::ARG_MAX, &[2], &[], 1),
    modelled(ops::STRIDED_SLICE, &[4], &[], 1),
    modelled(ops::LOGISTIC, &[1], &[], 1),
    modelled(ops::TANH, &[1], &[], 1),
    modelled(ops::RELU, &[1], &[], 1),
    modelled(ops::RELU6, &[1], &[], 1),
    modelled(ops::LEAKY_RELU, &[1], &[], 1),
    modelled(ops::HARD_SWISH, &[1], &[], 1),
    modelled(ops::SQUEEZE, &[1], &[], 1),
    modelled(ops::TRANSPOSE, &[2], &[], 1),
    // Peepholes, CIFG, projection and layer normalization are optional (checked below).
    modelled(
        ops::UNIDIRECTIONAL_SEQUENCE_LSTM,
        &[20, 24],
        &[1, 5, 9, 10, 11, 12, 16, 17, 20, 21, 22, 23],
        1,
    ),
];

/// The entry of [`MODELLED`] for a builtin code.
pub(super) fn modelled_op(builtin: i32) -> Option<&'static Modelled> {
    MODELLED.iter().find(|m| m.op == builtin)
}

/// The custom operator TFLite 2.9's builtin resolver registers for SSD detectors, modelled
/// below (its other custom operators, `Mfcc` and `AudioSpectrogram`, are not).
pub const DETECTION_POSTPROCESS: &str = "TFLite_Detection_PostProcess";

/// Options fields that TFLite 2.9 does not know: a later runtime would read them, 2.9 runs
/// the operator as if they were absent, so strict validation takes them only at their
/// defaults.
const NEWER_FIELDS: &[(&str, &str)] = &[
    ("Conv2DOptions", "quantized_bias_type"),
    ("FullyConnectedOptions", "quantized_bias_type"),
    ("StridedSliceOptions", "offset"),
    (
        "UnidirectionalSequenceLSTMOptions",
        "diagonal_recurrent_tensors",
    ),
];

/// Element types of the kernels' input and output tensors.
use ElementType::{F32, I8, I16, I32, I64, U8};

impl OpCtx<'_, '_, '_> {
    /// The element type of input `slot`, `None` when it is absent or missing.
    fn type_at(&self, slot: usize) -> Option<ElementType> {
        let t = self.op.inputs.get(slot).copied().flatten()?;
        Some(self.tensor(t).element_type)
    }

    fn out_type(&self) -> Option<ElementType> {
        let t = *self.op.outputs.first()?;
        Some(self.tensor(t).element_type)
    }

    fn type_error(&self, what: &str) -> Error {
        let inputs: Vec<String> = (0..self.op.inputs.len())
            .map(|s| {
                self.type_at(s)
                    .map_or("absent".to_owned(), |t| format!("{t:?}"))
            })
            .collect();
        self.error(
            "type",
            format!(
                "{} does not take {what} (inputs {}, output {:?})",
                self.name(),
                inputs.join(", "),
                self.out_type()
            ),
        )
    }

    /// Input and output counts, and absent inputs only where the kernel allows them.
    pub(super) fn coverage(&self, modelled: &Modelled) -> Result<()> {
        let count = self.op.inputs.len();
        let counts_ok = if modelled.inputs.is_empty() {
            count >= 1
        } else {
            modelled.inputs.contains(&count)
        };
        if !counts_ok {
            return Err(self.error(
                "inputs",
                format!(
                    "{} takes {} inputs, got {count}",
                    self.name(),
                    if modelled.inputs.is_empty() {
                        "at least 1".to_owned()
                    } else {
                        format!("{:?}", modelled.inputs)
                    }
                ),
            ));
        }
        if let Some(slot) =
            (0..count).find(|&s| self.op.inputs[s].is_none() && !modelled.optional.contains(&s))
        {
            return Err(self.error(
                "inputs",
                format!(
                    "input {slot} of {} is absent (-1), but its kernel reads it",
                    self.name()
                ),
            ));
        }
        if self.op.outputs.len() != modelled.outputs {
            return Err(self.error(
                "outputs",
                format!(
                    "{} writes {} output(s), got {}",
                    self.name(),
                    modelled.outputs,
                    self.op.outputs.len()
                ),
            ));
        }
        Ok(())
    }

    /// The kernel preconditions of a modelled operator, beyond shapes (checked by
    /// [`OpCtx::output_shapes`]) and the quantization rules of [`OpCtx::quantization`].
    pub(super) fn preconditions(&self) -> Result<()> {
        match self.op.opcode.builtin {
            ops::CONV_2D => self.convolution("Conv2DOptions", false),
            ops::DEPTHWISE_CONV_2D => self.convolution("DepthwiseConv2DOptions", true),
            ops::FULLY_CONNECTED => self.fully_connected_types(),
            ops::AVERAGE_POOL_2D | ops::MAX_POOL_2D => self.pool_limits(),
            ops::ADD | ops::SUB | ops::MUL => self.binary_limits(),
            ops::SOFTMAX => self.softmax_limits(),
            ops::QUANTIZE => self.quantize_limits(),
            ops::DEQUANTIZE => match self.type_at(0) {
                Some(U8 | I8 | I16 | ElementType::F16) if self.out_type() == Some(F32) => Ok(()),
                _ => Err(self.type_error("these types")),
            },
            ops::MEAN => self.mean_limits(),
            ops::PAD | ops::PADV2 => self.pad_limits(),
            ops::RESIZE_BILINEAR => self.constant_of(1, I32, Some(2)),
            ops::STRIDED_SLICE => {
                for slot in 1..4 {
                    self.constant_of(slot, I32, None)?;
                }
                Ok(())
            }
            ops::TRANSPOSE => {
                self.constant_of(1, I32, None)?;
                self.rank_at_most(0, 5)
            }
            ops::SQUEEZE => self.rank_at_most(0, 8),
            ops::CONCATENATION => {
                if self.op.inputs.len() > usize::from(u16::MAX) {
                    return Err(self.error("inputs", "more than 65535 inputs"));
                }
                self.rank_at_most(0, MAX_RANK)
            }
            ops::UNIDIRECTIONAL_SEQUENCE_LSTM => self.lstm(),
            _ => Ok(()),
        }
    }

    /// Input `slot` must be a constant of type `ty`, holding `count` values if given: the
    /// kernel reads it as such whatever its type or length.
    fn constant_of(&self, slot: usize, ty: ElementType, count: Option<usize>) -> Result<()> {
        let t = self.input(slot)?;
        let tensor = self.tensor(t);
        let elements = tensor.num_elements();
        if !tensor.is_constant()
            || tensor.element_type != ty
            || count.is_some_and(|c| elements != Some(c))
        {
            return Err(self.error(
                "inputs",
                format!(
                    "input {slot} of {} must be a constant {ty:?} tensor{}, got {}{:?} {:?}",
                    self.name(),
                    count.map_or(String::new(), |c| format!(" of {c} values")),
                    if tensor.is_constant() {
                        "constant "
                    } else {
                        ""
                    },
                    tensor.element_type,
                    tensor.shape
                ),
            ));
        }
        Ok(())
    }

    fn rank_at_most(&self, slot: usize, rank: usize) -> Result<()> {
        let dims = self.input_dims(slot)?;
        if dims.len() > rank {
            return Err(self.error(
                "inputs",
                format!(
                    "input {slot} of {} has rank {}; its kernel takes at most {rank}",
                    self.name(),
                    dims.len()
                ),
            ));
        }
        Ok(())
    }

    /// A window option (stride, dilation, filter size) within [`MAX_WINDOW`].
    fn window_option(&self, table: &str, field: &'static str) -> Result<i64> {
        let value = self.positive_option(table, field)?;
        if value > MAX_WINDOW {
            return Err(self.error(
                "builtin_options",
                format!(
                    "{table}.{field} is {value}; TFLite keeps it in 16 bits (at most {MAX_WINDOW})"
                ),
            ));
        }
        Ok(value)
    }

    /// Dilated filter extents `(filter − 1) · dilation + 1` within [`MAX_WINDOW`].
    fn window_extent(&self, filter: i64, dilation: i64, axis: &str) -> Result<()> {
        let extent = (filter - 1).saturating_mul(dilation).saturating_add(1);
        if extent > MAX_WINDOW {
            return Err(self.error(
                "builtin_options",
                format!(
                    "the dilated filter spans {extent} {axis}; TFLite's 16-bit padding holds at most {MAX_WINDOW}"
                ),
            ));
        }
        Ok(())
    }

    /// `CONV_2D` and `DEPTHWISE_CONV_2D`: windows within 16 bits, one group only, the
    /// depthwise channel limit, and the type combinations the kernels dispatch on (a float
    /// input with an int16 filter, say, is read as float past the filter's end).
    fn convolution(&self, table: &str, depthwise: bool) -> Result<()> {
        let filter = self.input_dims_of_rank(1, 4)?;
        let input = self.input_dims_of_rank(0, 4)?;
        for field in ["stride_w", "stride_h"] {
            self.window_option(table, field)?;
        }
        let dilation_w = self.window_option(table, "dilation_w_factor")?;
        let dilation_h = self.window_option(table, "dilation_h_factor")?;
        self.window_extent(filter[1], dilation_h, "rows")?;
        self.window_extent(filter[2], dilation_w, "columns")?;
        if depthwise {
            let channels = filter[3];
            if !(1..=MAX_DEPTHWISE_CHANNELS).contains(&channels) {
                return Err(self.error(
                    "inputs",
                    format!(
                        "{channels} output channels; TFLite's depthwise kernel takes 1 to {MAX_DEPTHWISE_CHANNELS}"
                    ),
                ));
            }
        } else if filter[3] != input[3] {
            // Grouped convolutions take TFLite's reference kernel, whose group arithmetic
            // is checked only in debug builds.
            return Err(self.error(
                "inputs",
                format!(
                    "the filter reads {} channels of an input of {}: grouped convolutions are not modelled",
                    filter[3], input[3]
                ),
            ));
        }
        let types = (
            self.type_at(0),
            self.type_at(1),
            self.type_at(2),
            self.out_type(),
        );
        let known = matches!(
            types,
            (Some(F32), Some(F32), Some(F32), Some(F32))
                | (Some(U8), Some(U8), Some(I32), Some(U8))
                | (Some(I8), Some(I8), Some(I32), Some(I8))
                | (Some(I16), Some(I8), Some(I64 | I32), Some(I16))
                | (Some(F32), Some(I8), Some(F32), Some(F32))
        );
        if known {
            Ok(())
        } else {
            Err(self.type_error("this combination of types"))
        }
    }

    /// `FULLY_CONNECTED`: the default weights layout (the shuffled one writes a workspace
    /// output TFLite never sizes) and the type combinations its kernel dispatches on.
    fn fully_connected_types(&self) -> Result<()> {
        const T: &str = "FullyConnectedOptions";
        if self.int_option(T, "weights_format") != 0 {
            return Err(self.error(
                "builtin_options",
                "FullyConnectedOptions.weights_format must be DEFAULT (0): the shuffled layout is not modelled",
            ));
        }
        let bias = self.type_at(2);
        let known = match (self.type_at(0), self.type_at(1), self.out_type()) {
            (Some(F32), Some(F32), Some(F32)) => matches!(bias, None | Some(F32)),
            (Some(U8), Some(U8), Some(U8 | I16)) | (Some(I8), Some(I8), Some(I8)) => {
                matches!(bias, None | Some(I32))
            }
            (Some(I16), Some(I8), Some(I16)) => matches!(bias, None | Some(I64)),
            (Some(F32), Some(I8 | U8), Some(F32)) => matches!(bias, None | Some(F32)),
            _ => false,
        };
        if known {
            Ok(())
        } else {
            Err(self.type_error("this combination of types"))
        }
    }

    fn pool_limits(&self) -> Result<()> {
        const T: &str = "Pool2DOptions";
        for field in ["stride_w", "stride_h", "filter_width", "filter_height"] {
            self.window_option(T, field)?;
        }
        match self.type_at(0) {
            Some(F32 | U8 | I8 | I16) => Ok(()),
            _ => Err(self.type_error("this type")),
        }
    }

    /// `ADD`, `SUB`, `MUL`: broadcasting kernels extend shapes to 4 dimensions (`SUB` to 5)
    /// and abort beyond; int16 `ADD` and `SUB` may take a path without broadcasting.
    fn binary_limits(&self) -> Result<()> {
        let a = self.input_dims(0)?;
        let b = self.input_dims(1)?;
        let max_rank = if self.op.opcode.builtin == ops::SUB {
            5
        } else {
            4
        };
        if a != b && a.len().max(b.len()) > max_rank {
            return Err(self.error(
                "inputs",
                format!(
                    "{} broadcasts at most {max_rank} dimensions, got {} and {}",
                    self.name(),
                    fmt_dims(&a),
                    fmt_dims(&b)
                ),
            ));
        }
        match self.type_at(0) {
            Some(I16) if a != b && self.op.opcode.builtin != ops::MUL => Err(self.error(
                "inputs",
                format!("int16 {} of different shapes is not modelled", self.name()),
            )),
            Some(F32 | I32 | I64 | U8 | I8 | I16) => Ok(()),
            _ => Err(self.type_error("this type")),
        }
    }

    fn softmax_limits(&self) -> Result<()> {
        if let Some(FieldValue::F32(beta)) =
            self.options("SoftmaxOptions").and_then(|o| o.value("beta"))
            && !beta.is_finite()
        {
            return Err(self.error("builtin_options", format!("SoftmaxOptions.beta is {beta}")));
        }
        match (self.type_at(0), self.out_type()) {
            (Some(F32), Some(F32))
            | (Some(U8), Some(U8))
            | (Some(I8), Some(I8 | I16))
            | (Some(I16), Some(I16)) => Ok(()),
            _ => Err(self.type_error("these types")),
        }
    }

    /// `QUANTIZE`: its output is resized to the input's shape and indexed per channel by
    /// the input's coordinates, so a per-channel output is not modelled.
    fn quantize_limits(&self) -> Result<()> {
        let out = self.op.outputs[0];
        if self
            .tensor(out)
            .quantization
            .as_ref()
            .is_some_and(|q| q.scale.len() > 1)
        {
            return Err(self.checker.tensor_error(
                out,
                "quantization.scale",
                "a QUANTIZE output quantized per channel is not modelled",
            ));
        }
        match (self.type_at(0), self.out_type()) {
            (Some(F32 | ElementType::F16 | U8 | I8 | I16), Some(U8 | I8 | I16)) => Ok(()),
            _ => Err(self.type_error("these types")),
        }
    }

    /// `MEAN` resolves its axes into an array of 4 on the stack, whatever their count.
    fn mean_limits(&self) -> Result<()> {
        self.constant_of(1, I32, None)?;
        let axes = self.tensor(self.input(1)?).num_elements().unwrap_or(0);
        if !(1..=4).contains(&axes) {
            return Err(self.error(
                "inputs",
                format!("MEAN over {axes} axes: its kernel takes 1 to 4"),
            ));
        }
        self.rank_at_most(0, MAX_RANK)
    }

    /// `PAD` and `PADV2` read the paddings as int32 whatever their type, over at most 4
    /// dimensions here; `PADV2`'s padding value is one element of the input's type.
    fn pad_limits(&self) -> Result<()> {
        self.constant_of(1, I32, None)?;
        self.rank_at_most(0, 4)?;
        if self.op.opcode.builtin == ops::PADV2 {
            let value = self.tensor(self.input(2)?);
            if value.num_elements() != Some(1) || Some(value.element_type) != self.type_at(0) {
                return Err(self.error(
                    "inputs",
                    "PADV2's padding value must be one element of the input's type",
                ));
            }
        }
        Ok(())
    }

    /// `UNIDIRECTIONAL_SEQUENCE_LSTM`: a 3-D input, the state inputs variables, the
    /// optional weights in the groups the kernel checks together, and one of the kernel's
    /// three type paths throughout (it dispatches on one weight's type and reads every other
    /// tensor as that path's type).
    fn lstm(&self) -> Result<()> {
        self.input_dims_of_rank(0, 3)?;
        for slot in [18, 19] {
            let t = self.input(slot)?;
            if !self.tensor(t).is_variable {
                return Err(self.checker.tensor_error(
                    t,
                    "is_variable",
                    format!("input {slot} of the LSTM is its state and must be a variable"),
                ));
            }
        }
        let present = |slot: usize| self.op.inputs.get(slot).copied().flatten().is_some();
        let cifg = !present(1);
        let groups_ok = present(5) != cifg
            && present(12) != cifg
            && (present(10) == present(11))
            && (cifg || present(9) == present(10))
            && (!present(17) || present(16));
        let layer_norm = self.op.inputs.len() == 24 && present(21);
        let norm_ok = !layer_norm || (present(22) && present(23) && (cifg || present(20)));
        if !groups_ok || !norm_ok {
            return Err(self.error(
                "inputs",
                "the LSTM's optional inputs are not a combination its kernel takes \
                 (CIFG, peepholes, projection, layer normalization)",
            ));
        }
        let weights: Vec<usize> = [1, 2, 3, 4, 5, 6, 7, 8, 16]
            .into_iter()
            .filter(|&s| present(s))
            .collect();
        let all = |slots: &[usize], ty: ElementType| {
            slots
                .iter()
                .filter(|&&s| present(s))
                .all(|&s| self.type_at(s) == Some(ty))
        };
        let biases = [12, 13, 14, 15, 17];
        let coefficients = [9, 10, 11, 20, 21, 22, 23];
        let input = self.type_at(0);
        let path_ok = match (input, self.type_at(4)) {
            (Some(F32), Some(F32)) => {
                all(&weights, F32)
                    && all(&biases, F32)
                    && all(&coefficients, F32)
                    && all(&[18, 19], F32)
                    && self.out_type() == Some(F32)
            }
            (Some(F32), Some(weight @ (I8 | U8))) => {
                all(&weights, weight)
                    && all(&biases, F32)
                    && all(&[18, 19], F32)
                    && self.out_type() == Some(F32)
            }
            (Some(I8), Some(I8)) => {
                all(&weights, I8)
                    && all(&biases, I32)
                    && all(&coefficients, I16)
                    && self.type_at(18) == Some(I8)
                    && self.type_at(19) == Some(I16)
                    && self.out_type() == Some(I8)
                    && self.lstm_intermediates(layer_norm)?
            }
            _ => false,
        };
        if !path_ok {
            return Err(self.type_error("this combination of types"));
        }
        Ok(())
    }

    /// The integer LSTM reads five intermediates without checking them: the last, the
    /// hidden state's scale, always, the gates' four with layer normalization. Those it
    /// reads must be quantized per tensor.
    fn lstm_intermediates(&self, layer_norm: bool) -> Result<bool> {
        if self.op.intermediates.len() != 5 {
            return Err(self.error(
                "intermediates",
                format!(
                    "the integer LSTM needs 5 intermediates, got {}",
                    self.op.intermediates.len()
                ),
            ));
        }
        let read = if layer_norm { 0 } else { 4 };
        for &t in &self.op.intermediates[read..] {
            let per_tensor = self
                .tensor(t)
                .quantization
                .as_ref()
                .is_some_and(|q| q.scale.len() == 1);
            if !per_tensor {
                return Err(self.checker.tensor_error(
                    t,
                    "quantization",
                    "an intermediate of the integer LSTM must be quantized per tensor",
                ));
            }
        }
        Ok(true)
    }

    /// Strict only: options fields TFLite 2.9 does not read stay at their defaults.
    pub(super) fn no_newer_fields(&self) -> Result<()> {
        let Some(options) = &self.op.builtin_options else {
            return Ok(());
        };
        let Some(layout) = options.layout() else {
            return Ok(());
        };
        for &(table, field) in NEWER_FIELDS {
            if layout.name != table {
                continue;
            }
            let default = layout
                .field_id(field)
                .and_then(|id| layout.default_value(id));
            if options
                .get(field)
                .is_some_and(|v| Some(v) != default.as_ref())
            {
                return Err(self.error(
                    "builtin_options",
                    format!("{table}.{field} is set; TFLite 2.9 would run the operator without it"),
                ));
            }
        }
        Ok(())
    }

    /// `STRIDED_SLICE`, as TFLite 2.9 sizes its output (`strided_slice_logic.h`), for
    /// constant begin, end and strides of the input's rank and no ellipsis or new axes
    /// (`None` otherwise: not modelled). Shrunk axes must start inside their dimension (the
    /// kernel reads one past the end otherwise), and strides are bounded by the dimension.
    pub(super) fn strided_slice(&self) -> Result<Option<Dims>> {
        const T: &str = "StridedSliceOptions";
        let input = self.input_dims(0)?;
        let (Some(begin), Some(end), Some(strides)) = (
            self.constant_ints(1, false)?,
            self.constant_ints(2, false)?,
            self.constant_ints(3, false)?,
        ) else {
            return Ok(None);
        };
        let masks = |field| self.int_option(T, field);
        if masks("ellipsis_mask") != 0 || masks("new_axis_mask") != 0 {
            return Ok(None);
        }
        let rank = input.len();
        if rank > 5 || begin.len() != rank || end.len() != rank || strides.len() != rank {
            return Err(self.error(
                "inputs",
                format!(
                    "begin, end and strides of {}, {} and {} values for an input of rank {rank} \
                     (the kernel takes one per dimension, at most 5)",
                    begin.len(),
                    end.len(),
                    strides.len()
                ),
            ));
        }
        let (begin_mask, end_mask, shrink_mask) = (
            masks("begin_mask"),
            masks("end_mask"),
            masks("shrink_axis_mask"),
        );
        let mut out = Vec::new();
        for axis in 0..rank {
            let bit = |mask: i64| mask & (1 << axis) != 0;
            let (dim, stride) = (input[axis], strides[axis]);
            if stride == 0 || stride.saturating_abs() > dim.max(1) {
                return Err(self.error(
                    "inputs",
                    format!("stride {stride} along dimension {axis} of size {dim}"),
                ));
            }
            let clamp = |v: i64| {
                if stride > 0 {
                    v.clamp(0, dim)
                } else {
                    v.clamp(-1, dim - 1)
                }
            };
            let normalize = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let start = if bit(begin_mask) {
                if stride > 0 { 0 } else { dim - 1 }
            } else {
                clamp(normalize(begin[axis]))
            };
            if bit(shrink_mask) {
                let raw = begin[axis];
                if bit(begin_mask) || !(-dim..dim).contains(&raw) {
                    return Err(self.error(
                        "inputs",
                        format!(
                            "dimension {axis} is shrunk at {raw}, outside a dimension of size {dim}"
                        ),
                    ));
                }
                continue;
            }
            let stop = if bit(end_mask) {
                if stride > 0 { dim } else { -1 }
            } else {
                clamp(normalize(end[axis]))
            };
            let size = (stop - start + stride - stride.signum()) / stride;
            out.push(size.max(0));
        }
        Ok(Some(out))
    }
}

impl Checker<'_, '_> {
    /// A custom operator: under strict validation, only `edgetpu-custom-op` (run by the
    /// Edge TPU delegate, which checks its program itself), [`DETECTION_POSTPROCESS`]
    /// (modelled here) and the custom operators the caller supplies kernels for.
    pub(super) fn custom_op(&self, o: usize, op: &Operator<'_>) -> Result<()> {
        let name = op.opcode.custom.as_deref().unwrap_or("");
        if name == DETECTION_POSTPROCESS {
            return self.detection_postprocess(o, op);
        }
        if self.validation.trusted
            || name == crate::model::edgetpu::EDGETPU_CUSTOM_OP
            || self.validation.custom_ops.iter().any(|c| c == name)
        {
            return Ok(());
        }
        Err(self.op_error(
            o,
            "opcode.custom_code",
            format!(
                "custom operator `{name}` is not one validation models, and no kernel for it was \
                 given: register one, or validate the model as trusted"
            ),
        ))
    }

    /// `TFLite_Detection_PostProcess`: its options, a FlexBuffer map read without a verifier,
    /// and the shapes its kernel takes for granted (it reads anchors by the boxes' count and
    /// writes `max_detections` rows whatever the outputs hold).
    fn detection_postprocess(&self, o: usize, op: &Operator<'_>) -> Result<()> {
        let fail = |field: &'static str, reason: String| Err(self.op_error(o, field, reason));
        let Some(options) = op.custom_options.as_deref().and_then(flexbuffer::root_map) else {
            return fail(
                "custom_options",
                "not a FlexBuffer map with sorted keys and plain values".to_owned(),
            );
        };
        let int = |key: &str, default: Option<i32>| -> Result<i32> {
            match (options.get(key), default) {
                (Some(v), _) => v.as_i32().ok_or_else(|| {
                    self.op_error(
                        o,
                        "custom_options",
                        format!("`{key}` is {v:?}, not a 32-bit integer"),
                    )
                }),
                (None, Some(d)) => Ok(d),
                (None, None) => {
                    Err(self.op_error(o, "custom_options", format!("`{key}` is missing")))
                }
            }
        };
        let float = |key: &str| -> Result<f64> {
            options
                .get(key)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    self.op_error(
                        o,
                        "custom_options",
                        format!("`{key}` must be a finite float"),
                    )
                })
        };
        if let Some(v) = options.get("use_regular_nms")
            && !matches!(v, Value::Bool(_))
        {
            return fail(
                "custom_options",
                format!("`use_regular_nms` is {v:?}, not a bool"),
            );
        }
        let max_detections = int("max_detections", None)?;
        let per_detection = int("max_classes_per_detection", None)?;
        let per_class = int("detections_per_class", Some(100))?;
        let classes = int("num_classes", None)?;
        let iou = float("nms_iou_threshold")?;
        float("nms_score_threshold")?;
        for key in ["y_scale", "x_scale", "h_scale", "w_scale"] {
            if float(key)? == 0.0 {
                return fail("custom_options", format!("`{key}` is 0"));
            }
        }
        if !(1..=MAX_DETECTIONS).contains(&max_detections)
            || !(1..=classes).contains(&per_detection)
            || classes < 1
            || per_class < 1
            || !(iou > 0.0 && iou <= 1.0)
        {
            return fail(
                "custom_options",
                format!(
                    "max_detections {max_detections} (1 to {MAX_DETECTIONS}), \
                     max_classes_per_detection {per_detection} (1 to num_classes {classes}), \
                     detections_per_class {per_class} (at least 1), nms_iou_threshold {iou} (in (0, 1])"
                ),
            );
        }
        let [Some(boxes), Some(scores), Some(anchors)] = op.inputs[..] else {
            return fail("inputs", "takes 3 inputs, all present".to_owned());
        };
        if op.outputs.len() != 4 {
            return fail(
                "outputs",
                format!("writes 4 outputs, got {}", op.outputs.len()),
            );
        }
        let dims = |t: usize| self.model.tensors[t].shape.clone();
        let (b, s, a) = (dims(boxes), dims(scores), dims(anchors));
        let shapes_ok = matches!(b[..], [1, n, w] if n >= 1 && w >= 4)
            && matches!(s[..], [1, n, c] if n == b[1] && (c == classes || c == classes + 1))
            && a[..] == [b[1], 4]
            && i64::from(b[1]) * i64::from(classes) <= MAX_BOX_SCORES;
        let types_ok = matches!(self.model.tensors[boxes].element_type, F32 | U8)
            && self.model.tensors[anchors].element_type == self.model.tensors[boxes].element_type
            && matches!(self.model.tensors[scores].element_type, F32 | U8);
        if !shapes_ok || !types_ok {
            return fail(
                "inputs",
                format!(
                    "boxes {b:?}, scores {s:?} and anchors {a:?} do not fit {classes} classes \
                     (want [1, N, 4+], [1, N, classes (+1)], [N, 4], float or uint8, \
                     N · classes at most {MAX_BOX_SCORES})"
                ),
            );
        }
        let rows = i64::from(max_detections) * i64::from(per_detection);
        let expected: [&[i64]; 4] = [&[1, rows, 4], &[1, rows], &[1, rows], &[1]];
        for (&t, dims) in op.outputs.iter().zip(expected) {
            if self.model.tensors[t].element_type != F32 {
                return Err(self.tensor_error(t, "type", "detection outputs are float"));
            }
            self.compare_shape(o, t, dims)?;
        }
        Ok(())
    }
}

/// The most detections `TFLite_Detection_PostProcess` may be asked for: its kernel allocates
/// and sorts that many on every invoke (Coral's detectors ask for 10 to 100).
pub const MAX_DETECTIONS: i32 = 10_000;

/// The most box scores (boxes · classes) it may score: non-maximum suppression is
/// quadratic in the boxes kept (Coral's SSD scores 1917 · 91).
const MAX_BOX_SCORES: i64 = 1 << 20;
