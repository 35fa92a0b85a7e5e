//! The vocabulary both cost models share: what one operator, and one run of operators (a
//! candidate segment), asks of a device.
//!
//! [`SegmentWorkload::from_model`] turns operators of a [`Model`] into per-operator figures
//! ([`OpWorkload`]: kind, multiply-accumulates as the model counts them and as the Edge TPU
//! computes them, parameter bytes in the Edge TPU compiler's layout ([`DeviceLayout`]),
//! activation bytes, the host's float conversions) and the segment's transfers. The Edge TPU
//! cost model ([`crate::device::EdgeTpuCostModel`]) and the CPU estimate
//! ([`crate::device::CpuCostModel`]) price the same figures.

use std::collections::HashSet;
use std::ops::Range;

use crate::model::figures::{OpFigures, OpKind, op_figures};
use crate::model::{ElementType, Model, Operator, Tensor, ops};

/// One mebibyte, the unit of the compiler's reports.
pub const MIB: f64 = 1024.0 * 1024.0;

/// How the Edge TPU compiler lays out parameters, i.e. how many bytes of its parameter
/// budget a TFLite parameter tensor takes.
///
/// For the weights of `CONV_2D`, `TRANSPOSE_CONV` (`[out_c, k_h, k_w, in_c]`),
/// `FULLY_CONNECTED` (`[units, in]`) and `DEPTHWISE_CONV_2D` (`[1, k_h, k_w, c]`):
///
/// ```text
/// bytes = ceil(out_c, channel_align) · (k_h · k_w · ceil(in_c, depth_align) + q)
/// ```
///
/// with `q = per_channel_quant_bytes` if the weights have more than one quantization scale,
/// else 0 (depthwise: no input depth factor). Bias tensors of those ops and the constant
/// output shape of `TRANSPOSE_CONV` take 0 bytes. Any other constant tensor (or weights of
/// an unexpected rank) takes its plain byte size.
///
/// The conv and dense rules reproduce the compiler's reports of the calibration models
/// exactly; the depthwise rule is the same idea, not checked against compiler output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLayout {
    /// Output channels are padded to a multiple of this.
    pub channel_align: u64,
    /// Input depth is padded to a multiple of this.
    pub depth_align: u64,
    /// Extra bytes per padded output channel for per-channel quantized weights.
    pub per_channel_quant_bytes: u64,
}

impl DeviceLayout {
    /// The layout of the `edgetpu_compiler` that produced the calibration data.
    pub const EDGE_TPU: DeviceLayout = DeviceLayout {
        channel_align: 64,
        depth_align: 4,
        per_channel_quant_bytes: 8,
    };

    /// Device bytes of input `position` (a constant tensor `tensor`) of an op of `kind`.
    pub fn param_bytes(&self, kind: OpKind, position: usize, tensor: &Tensor) -> u64 {
        let plain = tensor.byte_size().map_or(0, |b| b as u64);
        let dims: Option<Vec<u64>> = tensor
            .shape
            .iter()
            .map(|&d| u64::try_from(d).ok())
            .collect();
        let Some(dims) = dims else { return plain };
        let per_channel = tensor
            .quantization
            .as_ref()
            .is_some_and(|q| q.scale.len() > 1);
        let q = if per_channel {
            self.per_channel_quant_bytes
        } else {
            0
        };
        match (kind, position, dims.as_slice()) {
            (OpKind::Conv2d | OpKind::TransposeConv, 1, &[out_c, k_h, k_w, in_c]) => {
                let inner = k_h
                    .saturating_mul(k_w)
                    .saturating_mul(round_up(in_c, self.depth_align));
                round_up(out_c, self.channel_align).saturating_mul(inner.saturating_add(q))
            }
            (OpKind::FullyConnected, 1, &[units, inputs]) => {
                let inner = round_up(inputs, self.depth_align);
                round_up(units, self.channel_align).saturating_mul(inner.saturating_add(q))
            }
            (OpKind::DepthwiseConv2d, 1, &[_, k_h, k_w, c]) => round_up(c, self.channel_align)
                .saturating_mul(k_h.saturating_mul(k_w).saturating_add(q)),
            (OpKind::Conv2d | OpKind::FullyConnected | OpKind::DepthwiseConv2d, 2, _)
            | (OpKind::TransposeConv, 0 | 3, _) => 0,
            _ => plain,
        }
    }

    /// The multiply-accumulates `macs` of an op of `kind` whose weights are `weights`, as
    /// the device computes them: a convolution's or transpose convolution's output channels
    /// (`[out_c, k_h, k_w, in_c]`) and a depthwise convolution's channels (`[1, k_h, k_w,
    /// c]`) rounded up to `channel_align`, the block the compiler lays their weights out in.
    /// `macs` unchanged for any other op, or weights of another rank.
    pub fn device_macs(&self, kind: OpKind, macs: u64, weights: &Tensor) -> u64 {
        let channels = match (kind, weights.shape.as_slice()) {
            (OpKind::Conv2d | OpKind::TransposeConv, &[out_c, _, _, _]) => out_c,
            (OpKind::DepthwiseConv2d, &[_, _, _, c]) => c,
            _ => return macs,
        };
        match u64::try_from(channels) {
            Ok(channels) if channels > 0 && macs.is_multiple_of(channels) => {
                (macs / channels).saturating_mul(round_up(channels, self.channel_align))
            }
            _ => macs,
        }
    }
}

impl Default for DeviceLayout {
    fn default() -> Self {
        DeviceLayout::EDGE_TPU
    }
}

/// `x` rounded up to a multiple of `align` (unchanged when `align` is 0), saturating.
fn round_up(x: u64, align: u64) -> u64 {
    if align == 0 {
        return x;
    }
    x.div_ceil(align).saturating_mul(align)
}

/// The work of one operator, as the cost model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpWorkload {
    /// What kind of work the op does.
    pub kind: OpKind,
    /// Multiply-accumulates of one inference.
    pub macs: u64,
    /// Multiply-accumulates as the Edge TPU computes them: a convolution's output channels
    /// (a depthwise convolution's channels) rounded up to the device's channel block
    /// ([`DeviceLayout::device_macs`]), since the device works on whole blocks, as the
    /// compiler lays out their weights. Equal to `macs` for every other op.
    pub device_macs: u64,
    /// Device bytes ([`DeviceLayout`]) of the parameter tensors this op is the first in the
    /// segment to read, in input order.
    pub param_tensor_bytes: Vec<u64>,
    /// Bytes of the op's non-constant inputs and outputs: what an op without MACs (pooling,
    /// element-wise, concatenation, resize, …) moves.
    pub activation_bytes: u64,
    /// Bytes of the op's outputs: for a convolution, what one pass over its output keeps on
    /// chip.
    pub output_bytes: u64,
    /// Bytes a `CONCATENATION` copies (its inputs and its output); 0 for any other op.
    pub copy_bytes: u64,
    /// `Some` for a float `QUANTIZE` or `DEQUANTIZE`, which the Edge TPU compiler leaves to
    /// the host CPU; `None` for an op that runs on the device.
    pub host_conversion: Option<HostConversion>,
}

/// A float conversion at a model's edge, which runs on the host CPU, with its element count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostConversion {
    /// `QUANTIZE` of a float tensor.
    Quantize(u64),
    /// `DEQUANTIZE` to a float tensor.
    Dequantize(u64),
}

impl OpWorkload {
    /// The work of operator `op` of `model` on its own: every constant tensor it reads is
    /// its parameter (device bytes in `layout`), in input order without repeats. An
    /// out-of-range `op` gives an empty workload of kind [`OpKind::Other`].
    pub fn of_operator(model: &Model, op: usize, layout: &DeviceLayout) -> Self {
        let figures = op_figures(model, op);
        let mut work = Self::without_params(model, op, &figures, layout);
        if let Some(operator) = model.operators.get(op) {
            work.param_tensor_bytes = figures
                .param_tensors
                .iter()
                .filter_map(|&t| param_bytes(model, operator, figures.kind, t, layout))
                .collect();
        }
        work
    }

    /// Everything but the parameters of operator `op`, whose figures are `figures`.
    fn without_params(
        model: &Model,
        op: usize,
        figures: &OpFigures,
        layout: &DeviceLayout,
    ) -> Self {
        let mut work = OpWorkload {
            kind: figures.kind,
            macs: figures.macs,
            device_macs: figures.macs,
            param_tensor_bytes: Vec::new(),
            activation_bytes: 0,
            output_bytes: 0,
            copy_bytes: 0,
            host_conversion: None,
        };
        let Some(operator) = model.operators.get(op) else {
            return work;
        };
        let bytes = |tensors: &mut dyn Iterator<Item = usize>| {
            tensors
                .filter_map(|t| model.tensors.get(t))
                .filter(|t| !t.is_constant())
                .fold(0u64, |acc, t| {
                    acc.saturating_add(t.byte_size().map_or(0, |b| b as u64))
                })
        };
        work.output_bytes = bytes(&mut operator.outputs.iter().copied());
        work.activation_bytes =
            bytes(&mut operator.present_inputs()).saturating_add(work.output_bytes);
        if operator.opcode.builtin == ops::CONCATENATION {
            work.copy_bytes = work.activation_bytes;
        }
        let weights = operator.inputs.get(1).copied().flatten();
        if let Some(weights) = weights.and_then(|t| model.tensors.get(t)) {
            work.device_macs = layout.device_macs(figures.kind, figures.macs, weights);
        }
        work.host_conversion = host_conversion(model, operator);
        work
    }

    /// Whether the op runs on the device (everything but the host's float conversions).
    pub fn on_device(&self) -> bool {
        self.host_conversion.is_none()
    }
}

/// Device bytes of constant tensor `t` as an input of `operator` (of kind `kind`), if it is
/// one of its inputs.
fn param_bytes(
    model: &Model,
    operator: &Operator,
    kind: OpKind,
    t: usize,
    layout: &DeviceLayout,
) -> Option<u64> {
    let position = operator.inputs.iter().position(|&i| i == Some(t))?;
    let tensor = model.tensors.get(t)?;
    Some(layout.param_bytes(kind, position, tensor))
}

/// The conversion a float `QUANTIZE` (float input) or `DEQUANTIZE` (float output) does on
/// the host; `None` for any other op.
fn host_conversion(model: &Model, operator: &Operator) -> Option<HostConversion> {
    let float = |t: Option<usize>| {
        t.and_then(|t| model.tensors.get(t))
            .is_some_and(|t| t.element_type == ElementType::F32)
    };
    let elements = || {
        operator
            .outputs
            .first()
            .and_then(|&t| model.tensors.get(t))
            .and_then(Tensor::num_elements)
            .map_or(0, |n| n as u64)
    };
    match operator.opcode.builtin {
        ops::QUANTIZE if float(operator.inputs.first().copied().flatten()) => {
            Some(HostConversion::Quantize(elements()))
        }
        ops::DEQUANTIZE if float(operator.outputs.first().copied()) => {
            Some(HostConversion::Dequantize(elements()))
        }
        _ => None,
    }
}

/// The work of one segment: its operators in execution order and its host transfers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentWorkload {
    /// The segment's operators, in execution order.
    pub ops: Vec<OpWorkload>,
    /// Bytes of the non-constant tensors the segment reads but does not produce.
    pub input_bytes: u64,
    /// Bytes of the tensors the segment produces that a later operator reads or that are
    /// model outputs.
    pub output_bytes: u64,
}

impl SegmentWorkload {
    /// The workload of operators `ops` of `model`, with the Edge TPU compiler's layout.
    /// A range beyond the model is clamped to it (an empty range gives an empty workload).
    pub fn from_model(model: &Model, ops: Range<usize>) -> Self {
        Self::from_model_with_layout(model, ops, &DeviceLayout::EDGE_TPU)
    }

    /// [`from_model`](Self::from_model) with another parameter layout.
    pub fn from_model_with_layout(model: &Model, ops: Range<usize>, layout: &DeviceLayout) -> Self {
        let end = ops.end.min(model.operators.len());
        let start = ops.start.min(end);
        let mut params_seen = HashSet::new();
        let mut produced = HashSet::new();
        let mut inputs_seen = HashSet::new();
        let mut workload = SegmentWorkload::default();
        let tensor_bytes = |t: usize| {
            model
                .tensors
                .get(t)
                .and_then(Tensor::byte_size)
                .map_or(0, |b| b as u64)
        };
        for (index, operator) in model.operators[start..end].iter().enumerate() {
            let figures = op_figures(model, start + index);
            let mut work = OpWorkload::without_params(model, start + index, &figures, layout);
            work.param_tensor_bytes = figures
                .param_tensors
                .iter()
                .filter(|&&t| params_seen.insert(t))
                .filter_map(|&t| param_bytes(model, operator, figures.kind, t, layout))
                .collect();
            for t in operator.present_inputs() {
                let constant = model.tensors.get(t).is_some_and(Tensor::is_constant);
                if !constant && !produced.contains(&t) && inputs_seen.insert(t) {
                    workload.input_bytes = workload.input_bytes.saturating_add(tensor_bytes(t));
                }
            }
            produced.extend(operator.outputs.iter().copied());
            workload.ops.push(work);
        }
        let read_later: HashSet<usize> = model.operators[end..]
            .iter()
            .flat_map(|op| op.present_inputs())
            .collect();
        let mut outputs: Vec<usize> = produced
            .into_iter()
            .filter(|t| read_later.contains(t) || model.outputs.contains(t))
            .collect();
        outputs.sort_unstable();
        workload.output_bytes = outputs
            .into_iter()
            .fold(0u64, |acc, t| acc.saturating_add(tensor_bytes(t)));
        workload
    }

    /// Total device bytes of the segment's parameters.
    pub fn param_bytes(&self) -> u64 {
        self.ops
            .iter()
            .flat_map(|op| &op.param_tensor_bytes)
            .fold(0u64, |acc, &b| acc.saturating_add(b))
    }

    /// Total multiply-accumulates of the segment.
    pub fn macs(&self) -> u64 {
        self.ops
            .iter()
            .fold(0u64, |acc, op| acc.saturating_add(op.macs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Quantization;
    use crate::model::figures::tests::{model, operator, tensor};

    fn per_channel(mut t: Tensor<'static>, channels: usize) -> Tensor<'static> {
        t.quantization = Some(Quantization {
            scale: vec![0.1; channels],
            zero_point: vec![0; channels],
            ..Quantization::default()
        });
        t
    }

    #[test]
    fn device_macs_count_whole_channel_blocks() {
        use ElementType::I8;
        let layout = DeviceLayout::EDGE_TPU;
        // 32 output channels on a 64-channel block: twice the model's MACs.
        let conv = tensor("w", I8, &[32, 3, 3, 16], true);
        assert_eq!(
            layout.device_macs(OpKind::Conv2d, 1000 * 32, &conv),
            1000 * 64
        );
        let wide = tensor("w", I8, &[130, 1, 1, 8], true);
        assert_eq!(layout.device_macs(OpKind::Conv2d, 7 * 130, &wide), 7 * 192);
        let depthwise = tensor("w", I8, &[1, 3, 3, 96], true);
        assert_eq!(
            layout.device_macs(OpKind::DepthwiseConv2d, 5 * 96, &depthwise),
            5 * 128
        );
        // Dense layers, odd shapes and MACs that are not whole per channel stay as they are.
        let dense = tensor("w", I8, &[10, 64], true);
        assert_eq!(layout.device_macs(OpKind::FullyConnected, 640, &dense), 640);
        assert_eq!(layout.device_macs(OpKind::Conv2d, 1001, &conv), 1001);
        let odd = tensor("w", I8, &[-1, 3, 3, 16], false);
        assert_eq!(layout.device_macs(OpKind::Conv2d, 99, &odd), 99);
    }

    /// A concatenation's copied bytes are its inputs and output; every op's output bytes.
    #[test]
    fn concatenations_copy_their_activations() {
        use ElementType::I8;
        let m = model(
            vec![
                tensor("a", I8, &[1, 8], false),
                tensor("b", I8, &[1, 8], false),
                tensor("c", I8, &[1, 16], false),
                tensor("d", I8, &[1, 16], false),
            ],
            vec![
                operator(ops::CONCATENATION, &[Some(0), Some(1)], &[2]),
                operator(ops::RELU, &[Some(2)], &[3]),
            ],
            &[0, 1],
            &[3],
        );
        let w = SegmentWorkload::from_model(&m, 0..2);
        assert_eq!(w.ops[0].copy_bytes, 8 + 8 + 16);
        assert_eq!(w.ops[0].output_bytes, 16);
        assert_eq!((w.ops[1].copy_bytes, w.ops[1].output_bytes), (0, 16));
    }

    #[test]
    fn device_layout_pads_like_the_compiler() {
        use ElementType::{I8, I32};
        let layout = DeviceLayout::EDGE_TPU;
        // fc N=100, hidden layer: 100 units padded to 128, 100 inputs
        let w = tensor("w", I8, &[100, 100], true);
        assert_eq!(layout.param_bytes(OpKind::FullyConnected, 1, &w), 128 * 100);
        // fc N=250: inputs padded to 252
        let w = tensor("w", I8, &[250, 250], true);
        assert_eq!(layout.param_bytes(OpKind::FullyConnected, 1, &w), 256 * 252);
        // conv F=42, per channel: (9 · 44 + 8) bytes per padded output channel
        let w = per_channel(tensor("w", I8, &[42, 3, 3, 42], true), 42);
        assert_eq!(layout.param_bytes(OpKind::Conv2d, 1, &w), 64 * (9 * 44 + 8));
        // bias: not counted
        let b = tensor("b", I32, &[42], true);
        assert_eq!(layout.param_bytes(OpKind::Conv2d, 2, &b), 0);
        // other constants: plain size
        let c = tensor("c", I8, &[7, 3], true);
        assert_eq!(layout.param_bytes(OpKind::Elementwise, 1, &c), 21);
        // odd shapes: plain size, no panic
        let odd = tensor("odd", I8, &[3, -1], false);
        assert_eq!(layout.param_bytes(OpKind::FullyConnected, 1, &odd), 0);
    }

    /// x → quantize → fc(w0,b0) → fc(w1) (reads w0 again) → out, plus a side branch.
    fn chain() -> Model<'static> {
        use ElementType::{F32, I8, I32};
        model(
            vec![
                tensor("x", F32, &[1, 64], false),   // 0
                tensor("q", I8, &[1, 64], false),    // 1
                tensor("w0", I8, &[64, 64], true),   // 2
                tensor("b0", I32, &[64], true),      // 3
                tensor("h", I8, &[1, 64], false),    // 4
                tensor("y", I8, &[1, 64], false),    // 5
                tensor("out", F32, &[1, 64], false), // 6
            ],
            vec![
                operator(ops::QUANTIZE, &[Some(0)], &[1]),
                operator(ops::FULLY_CONNECTED, &[Some(1), Some(2), Some(3)], &[4]),
                operator(ops::FULLY_CONNECTED, &[Some(4), Some(2), None], &[5]),
                operator(ops::DEQUANTIZE, &[Some(5)], &[6]),
            ],
            &[0],
            &[6],
        )
    }

    #[test]
    fn workload_from_model_counts_shared_parameters_once() {
        let m = chain();
        let w = SegmentWorkload::from_model(&m, 1..3);
        assert_eq!(w.ops.len(), 2);
        assert_eq!(w.ops[0].param_tensor_bytes, vec![64 * 64, 0]);
        assert!(w.ops[1].param_tensor_bytes.is_empty());
        assert_eq!(w.macs(), 2 * 64 * 64);
        assert_eq!(w.input_bytes, 64, "q");
        assert_eq!(w.output_bytes, 64, "y, read by the dequantize");
        assert_eq!(w.ops[0].activation_bytes, 64 + 64, "q in, h out");
        assert!(w.ops.iter().all(OpWorkload::on_device));
        let all = SegmentWorkload::from_model(&m, 0..4);
        assert_eq!(
            all.ops[0].host_conversion,
            Some(HostConversion::Quantize(64))
        );
        assert_eq!(
            all.ops[3].host_conversion,
            Some(HostConversion::Dequantize(64))
        );
        assert_eq!(all.ops[3].activation_bytes, 64 + 256);
        let alone = OpWorkload::of_operator(&m, 2, &DeviceLayout::EDGE_TPU);
        assert_eq!(
            alone.param_tensor_bytes,
            vec![64 * 64],
            "w1 is its own when alone"
        );
        assert_eq!(
            OpWorkload::of_operator(&m, 9, &DeviceLayout::EDGE_TPU).macs,
            0,
            "out of range"
        );
    }

    #[test]
    fn workload_io_bytes() {
        let m = chain();
        let all = SegmentWorkload::from_model(&m, 0..4);
        assert_eq!((all.input_bytes, all.output_bytes), (256, 256));
        let head = SegmentWorkload::from_model(&m, 0..2);
        assert_eq!((head.input_bytes, head.output_bytes), (256, 64));
        let empty = SegmentWorkload::from_model(&m, 2..2);
        assert_eq!(empty, SegmentWorkload::default());
        let clamped = SegmentWorkload::from_model(&m, 3..99);
        assert_eq!(clamped.ops.len(), 1);
        assert_eq!(
            SegmentWorkload::from_model(&m, 7..9),
            SegmentWorkload::default()
        );
    }
}
