//! Shape and type rules of each builtin operator: what an operator must read and what it
//! writes, recomputed from its inputs and compared with what the file records.

use super::*;

/// One operator under check.
pub(super) struct OpCtx<'k, 'c, 'a> {
    pub(super) checker: &'k Checker<'c, 'a>,
    pub(super) index: usize,
    pub(super) op: &'c Operator<'a>,
}

impl OpCtx<'_, '_, '_> {
    pub(super) fn error(&self, field: &'static str, reason: impl Into<String>) -> Error {
        self.checker.op_error(self.index, field, reason)
    }

    pub(super) fn name(&self) -> String {
        op_name(self.op)
    }

    pub(super) fn tensor(&self, t: usize) -> &Tensor<'_> {
        &self.checker.model.tensors[t]
    }

    /// The tensor index of input `slot`, which must be present.
    pub(super) fn input(&self, slot: usize) -> Result<usize> {
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
    pub(super) fn input_dims(&self, slot: usize) -> Result<Dims> {
        let t = self.input(slot)?;
        Ok(self.tensor(t).shape.iter().map(|&d| i64::from(d)).collect())
    }

    /// The shape of input `slot`, which must have `rank` dimensions.
    pub(super) fn input_dims_of_rank(&self, slot: usize, rank: usize) -> Result<Dims> {
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
    pub(super) fn constant_ints(&self, slot: usize, allow_i64: bool) -> Result<Option<Vec<i64>>> {
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
    pub(super) fn options(&self, name: &str) -> Option<&crate::model::options::BuiltinOptions> {
        self.op
            .builtin_options
            .as_ref()
            .filter(|o| o.layout().is_some_and(|l| l.name == name))
    }

    /// The options table `name`, required (TFLite would divide by its zero strides).
    fn required_options(&self, name: &str) -> Result<&crate::model::options::BuiltinOptions> {
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
    pub(super) fn int_option(&self, table: &str, field: &str) -> i64 {
        match self.options(table).and_then(|o| o.value(field)) {
            Some(FieldValue::I8(v)) => i64::from(v),
            Some(FieldValue::I32(v)) => i64::from(v),
            Some(FieldValue::Bool(v)) => i64::from(v),
            _ => 0,
        }
    }

    /// An option that must be at least 1 (strides, dilations, filter sizes).
    pub(super) fn positive_option(&self, table: &str, field: &'static str) -> Result<i64> {
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
    pub(super) fn quantization(&self) -> Result<()> {
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
    pub(super) fn element_types(&self) -> Result<()> {
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
    pub(super) fn output_shapes(&self) -> Result<Option<Vec<Dims>>> {
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
            ops::STRIDED_SLICE => Ok(self.strided_slice()?.map(|d| vec![d])),
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
