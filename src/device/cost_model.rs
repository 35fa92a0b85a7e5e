//! An analytic cost model of one Coral Edge TPU, fitted to real single-device measurements.
//!
//! The model predicts the latency of one inference of a segment (a run of operators) and how
//! many of its parameter bytes the Edge TPU compiler would cache on chip:
//!
//! ```text
//! latency = invoke_overhead
//!         + Σ_device ops  macs(op) / macs_per_s[kind(op)]                    (compute)
//!         + Σ_device ops  per_op                                             (layers)
//!           + Σ_ops without MACs  activation_bytes(op) / activation_bw
//!         + Σ_host ops    elements(op) · host_(de)quantize_per_element       (host)
//!         + Σ_off   bytes(t) · stream_reads[kind(op reading t)] / stream_bw  (stream)
//!         + (input_bytes + output_bytes) / io_bw                             (transfer)
//! ```
//!
//! where `Σ_off` runs over the parameter tensors the placement rule leaves in host memory,
//! the host ops are the float `QUANTIZE` / `DEQUANTIZE` the Edge TPU compiler leaves to the
//! CPU, and every other op is a device op.
//!
//! **Placement** ([`EdgeTpuCostModel::placement`]): the compiler caches parameters a whole
//! tensor at a time, in execution order. A tensor is cached if it is no larger than
//! [`max_cached_tensor_bytes`](EdgeTpuCostModel::max_cached_tensor_bytes) and fits in what is
//! left of [`on_chip_budget_bytes`](EdgeTpuCostModel::on_chip_budget_bytes); otherwise it stays
//! off chip and the walk goes on, so a later, smaller tensor can still be cached (first fit).
//! This reproduces the calibration data: at fc N=2020 layers 1, 2 and 5 are cached and layers
//! 3 and 4 streamed; at fc N=2700 every 7.09 MiB hidden layer is streamed although a single
//! one would fit the budget, which is what the per-tensor limit captures.
//!
//! **Device bytes** ([`DeviceLayout`]): the compiler reports parameter sizes in its own layout,
//! not the TFLite file's. Weights of convolutions and dense layers are padded: output channels
//! to a multiple of 64, input depth to a multiple of 4, plus 8 bytes per (padded) output
//! channel when the weights are quantized per channel. Bias tensors are not reported. With
//! this rule the compiler's on+off totals of all 141 calibration models are matched to within
//! 0.02 MiB except one (fc N=2000, 0.1 MiB).
//!
//! See `docs/cost-model.md` for the fit and its errors.

use std::collections::HashSet;
use std::ops::Range;

use crate::model::figures::{OpFigures, OpKind, op_figures};
use crate::model::{ElementType, Model, Operator, Tensor, ops};

/// One mebibyte, the unit of the compiler's reports.
pub const MIB: f64 = 1024.0 * 1024.0;

/// How the Edge TPU is attached to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// USB 3 (the Coral USB Accelerator).
    Usb3,
    /// PCIe Gen2 x1 (M.2 / mini-PCIe Coral modules).
    Pcie,
}

impl Link {
    /// Nominal payload rate of the link in bytes/s: both USB 3 (5 Gb/s) and PCIe Gen2 x1
    /// (5 GT/s) use 8b/10b coding, so 500 MB/s. Measured rates are lower; see
    /// [`EdgeTpuCostModel::stream_bytes_per_s`].
    pub fn nominal_bytes_per_s(self) -> f64 {
        match self {
            Link::Usb3 | Link::Pcie => 500e6,
        }
    }
}

/// One value per [`OpKind`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerKind<T> {
    /// [`OpKind::Conv2d`].
    pub conv2d: T,
    /// [`OpKind::DepthwiseConv2d`].
    pub depthwise_conv2d: T,
    /// [`OpKind::FullyConnected`].
    pub fully_connected: T,
    /// [`OpKind::TransposeConv`].
    pub transpose_conv: T,
    /// [`OpKind::Elementwise`].
    pub elementwise: T,
    /// [`OpKind::Other`].
    pub other: T,
}

impl<T: Copy> PerKind<T> {
    /// The same value for every kind.
    pub fn splat(value: T) -> Self {
        PerKind {
            conv2d: value,
            depthwise_conv2d: value,
            fully_connected: value,
            transpose_conv: value,
            elementwise: value,
            other: value,
        }
    }

    /// The value for `kind`.
    pub fn get(&self, kind: OpKind) -> T {
        match kind {
            OpKind::Conv2d => self.conv2d,
            OpKind::DepthwiseConv2d => self.depthwise_conv2d,
            OpKind::FullyConnected => self.fully_connected,
            OpKind::TransposeConv => self.transpose_conv,
            OpKind::Elementwise => self.elementwise,
            OpKind::Other => self.other,
        }
    }

    /// Every value, with its kind.
    pub fn iter(&self) -> impl Iterator<Item = (OpKind, T)> + '_ {
        [
            OpKind::Conv2d,
            OpKind::DepthwiseConv2d,
            OpKind::FullyConnected,
            OpKind::TransposeConv,
            OpKind::Elementwise,
            OpKind::Other,
        ]
        .into_iter()
        .map(|kind| (kind, self.get(kind)))
    }
}

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
    /// Device bytes ([`DeviceLayout`]) of the parameter tensors this op is the first in the
    /// segment to read, in input order.
    pub param_tensor_bytes: Vec<u64>,
    /// Bytes of the op's non-constant inputs and outputs: what an op without MACs (pooling,
    /// element-wise, concatenation, resize, …) moves.
    pub activation_bytes: u64,
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
        let mut work = Self::without_params(model, op, &figures);
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
    fn without_params(model: &Model, op: usize, figures: &OpFigures) -> Self {
        let mut work = OpWorkload {
            kind: figures.kind,
            macs: figures.macs,
            param_tensor_bytes: Vec::new(),
            activation_bytes: 0,
            host_conversion: None,
        };
        let Some(operator) = model.operators.get(op) else {
            return work;
        };
        work.activation_bytes = operator
            .present_inputs()
            .chain(operator.outputs.iter().copied())
            .filter_map(|t| model.tensors.get(t))
            .filter(|t| !t.is_constant())
            .fold(0u64, |acc, t| {
                acc.saturating_add(t.byte_size().map_or(0, |b| b as u64))
            });
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
            let mut work = OpWorkload::without_params(model, start + index, &figures);
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

/// What the cost model predicts for one segment on one Edge TPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Seconds of one inference: overhead + compute + layers + host + stream + transfer.
    pub latency_s: f64,
    /// Parameter bytes cached in the device's SRAM.
    pub on_chip_bytes: u64,
    /// Parameter bytes left in host memory and streamed on every inference.
    pub off_chip_bytes: u64,
    /// Seconds of multiply-accumulates.
    pub compute_s: f64,
    /// Seconds of the device ops' fixed cost and of the activations moved by ops without
    /// multiply-accumulates.
    pub layers_s: f64,
    /// Seconds of the host's float conversions (`QUANTIZE` / `DEQUANTIZE`).
    pub host_s: f64,
    /// Seconds of streaming off-chip parameters.
    pub stream_s: f64,
    /// Seconds of moving the segment's inputs and outputs over the link.
    pub transfer_s: f64,
}

/// The Edge TPU cost model. Every parameter is public so that it can be re-fitted to
/// another host with `paper/src/bin/calibrate.rs` and `multitpu_paper::calibration::fit`.
///
/// ```
/// use multitpu::model::paper;
/// use multitpu::profile::{EdgeTpuCostModel, SegmentWorkload};
///
/// # fn main() -> multitpu::Result<()> {
/// let model = paper::fc(2000)?; // about 12 MiB of parameters: more than the device caches
/// let prediction = EdgeTpuCostModel::usb_default()
///     .predict(&SegmentWorkload::from_model(&model, 0..model.operators.len()));
/// assert!(prediction.off_chip_bytes > 0);
/// println!("{:.2} ms on one USB Edge TPU (predicted)", prediction.latency_s * 1e3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeTpuCostModel {
    /// How the device is attached (informative; the rates below carry its effect).
    pub link: Link,
    /// Bytes of SRAM available for caching parameters. The compiler's own figure varies with
    /// the model because executable and activations share the SRAM (~8 MiB in all).
    pub on_chip_budget_bytes: u64,
    /// Largest parameter tensor the compiler caches; a bigger one is always streamed.
    pub max_cached_tensor_bytes: u64,
    /// Bytes of the parameter budget that each byte of the segment's input activations takes
    /// ([`segment_budget_bytes`](Self::segment_budget_bytes)): a segment whose input is a large
    /// activation (the second segment of a pipeline) caches less than the whole model would.
    pub input_reserve: f64,
    /// Effective rate (bytes/s) at which off-chip parameters are streamed to the device.
    pub stream_bytes_per_s: f64,
    /// How many times per inference a streamed parameter tensor is read, by the kind of the
    /// op that reads it (dense layers read each weight once; convolutions re-read streamed
    /// weights for tiles of their activations).
    pub stream_reads: PerKind<f64>,
    /// Effective rate (bytes/s) at which segment inputs and outputs cross the link,
    /// including the host's handling of them.
    pub io_bytes_per_s: f64,
    /// Fixed seconds of one invoke.
    pub invoke_overhead_s: f64,
    /// Fixed seconds of every op run on the device (a layer's setup, whatever it computes).
    pub per_op_s: f64,
    /// Effective rate (bytes/s) at which device ops without multiply-accumulates (pooling,
    /// element-wise, concatenation, resize, …) move their activations
    /// ([`OpWorkload::activation_bytes`]). Infinite: such ops cost only
    /// [`per_op_s`](Self::per_op_s).
    pub activation_bytes_per_s: f64,
    /// Seconds per element of the host's float `QUANTIZE` ([`HostConversion::Quantize`]).
    pub host_quantize_s_per_element: f64,
    /// Seconds per element of the host's `DEQUANTIZE` to float
    /// ([`HostConversion::Dequantize`]).
    pub host_dequantize_s_per_element: f64,
    /// Multiply-accumulates per second by op kind, for device ops.
    pub macs_per_s: PerKind<f64>,
}

/// Fitted figures: the output of
/// `cargo run --release -p multitpu-paper --bin calibrate -- ../shared/calibration` (195 single-device
/// measurements of the paper's fc and conv models over USB 3, and the placement lists of the
/// 197 two-device runs for the input reserve). See `docs/cost-model.md`.
mod fitted {
    /// 7.7719 MiB: the middle of the budgets (about 7.735–7.805 MiB) that place the
    /// parameters of every model as the compiler did, except fc N=2000.
    pub const ON_CHIP_BUDGET_BYTES: u64 = 8_149_376;
    /// 6.9423 MiB: between the largest tensor the compiler cached (6.80 MiB, fc N=2650)
    /// and the smallest it streamed with room to spare (7.09 MiB, fc N=2700).
    pub const MAX_CACHED_TENSOR_BYTES: u64 = 7_279_488;
    /// 0.6275 bytes of budget per input byte: the middle of the reserves (0.593–0.662) that
    /// place every segment of the 2-device files as the compiler did.
    pub const INPUT_RESERVE: f64 = 0.6275;
    /// 2.660 ms per streamed MiB.
    pub const STREAM_BYTES_PER_S: f64 = 3.94198e8;
    /// Streamed convolution weights cost about 4 times what dense weights do.
    pub const CONV_STREAM_READS: f64 = 4.03824;
    /// Includes the host's handling of inputs/outputs (the copies of int8 activations) and
    /// costs that grow with the conv models' activations (see docs/cost-model.md).
    pub const IO_BYTES_PER_S: f64 = 9.55971e7;
    /// 0.036 ms per invoke (plus 8.6 µs per device op: 0.114 ms for the fc models' 9).
    pub const INVOKE_OVERHEAD_S: f64 = 3.62494e-5;
    /// `CONV_2D`: 1.38 TMAC/s.
    pub const CONV_MACS_PER_S: f64 = 1.38282e12;
    /// `FULLY_CONNECTED`: 75 GMAC/s (each weight is used once per inference).
    pub const FC_MACS_PER_S: f64 = 7.54302e10;
    /// `DEPTHWISE_CONV_2D`: 119 GMAC/s, from Coral's published figures (MobileNet v1, v2).
    pub const DEPTHWISE_MACS_PER_S: f64 = 1.18659e11;
    /// 8.6 µs for every op on the device, from Coral's published figures.
    pub const PER_OP_S: f64 = 8.61332e-6;
    /// Activations moved by ops without MACs: not pinned by any data here, so free (such
    /// ops cost [`PER_OP_S`] only).
    pub const ACTIVATION_BYTES_PER_S: f64 = f64::INFINITY;
    /// The host's float quantize and dequantize: not fitted on Edge TPU data (the
    /// calibration models convert at most 12 288 elements), but timed on TFLite's CPU
    /// kernels (`calibrate --cpu`, the same figures as `CpuCostModel::default()`).
    pub const HOST_QUANTIZE_S_PER_ELEMENT: f64 = crate::device::cpu_cost::QUANTIZE_S_PER_ELEMENT;
    pub const HOST_DEQUANTIZE_S_PER_ELEMENT: f64 =
        crate::device::cpu_cost::DEQUANTIZE_S_PER_ELEMENT;
}

impl EdgeTpuCostModel {
    /// The model fitted to the USB 3 calibration data and to Coral's published figures for
    /// real models (`paper/src/bin/calibrate.rs`).
    ///
    /// Transpose convolutions were not measured: they take the fitted `CONV_2D` figures.
    pub fn usb_default() -> Self {
        let conv_like = |conv: f64, fc: f64| PerKind {
            conv2d: conv,
            depthwise_conv2d: conv,
            fully_connected: fc,
            transpose_conv: conv,
            elementwise: 1.0,
            other: 1.0,
        };
        let mut macs_per_s = conv_like(fitted::CONV_MACS_PER_S, fitted::FC_MACS_PER_S);
        macs_per_s.depthwise_conv2d = fitted::DEPTHWISE_MACS_PER_S;
        EdgeTpuCostModel {
            link: Link::Usb3,
            on_chip_budget_bytes: fitted::ON_CHIP_BUDGET_BYTES,
            max_cached_tensor_bytes: fitted::MAX_CACHED_TENSOR_BYTES,
            input_reserve: fitted::INPUT_RESERVE,
            stream_bytes_per_s: fitted::STREAM_BYTES_PER_S,
            stream_reads: conv_like(fitted::CONV_STREAM_READS, 1.0),
            io_bytes_per_s: fitted::IO_BYTES_PER_S,
            invoke_overhead_s: fitted::INVOKE_OVERHEAD_S,
            per_op_s: fitted::PER_OP_S,
            activation_bytes_per_s: fitted::ACTIVATION_BYTES_PER_S,
            host_quantize_s_per_element: fitted::HOST_QUANTIZE_S_PER_ELEMENT,
            host_dequantize_s_per_element: fitted::HOST_DEQUANTIZE_S_PER_ELEMENT,
            macs_per_s,
        }
    }

    /// A PCIe model. There are no PCIe measurements: PCIe Gen2 x1 has the same nominal
    /// rate as USB 3 ([`Link::nominal_bytes_per_s`]), so this is
    /// [`usb_default`](Self::usb_default) with `link` set to [`Link::Pcie`]. Re-fit it on a PCIe host.
    pub fn pcie_default() -> Self {
        EdgeTpuCostModel {
            link: Link::Pcie,
            ..Self::usb_default()
        }
    }

    /// Whether every parameter is usable: rates positive (an infinite rate makes that part
    /// free), overhead and read counts finite and not negative.
    ///
    /// # Errors
    ///
    /// What is wrong with the first bad parameter, in words.
    pub fn check(&self) -> Result<(), String> {
        let rate = |name: &str, v: f64| {
            if v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} = {v} must be positive"))
            }
        };
        let amount = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name} = {v} must be finite and not negative"))
            }
        };
        rate("stream_bytes_per_s", self.stream_bytes_per_s)?;
        rate("io_bytes_per_s", self.io_bytes_per_s)?;
        rate("activation_bytes_per_s", self.activation_bytes_per_s)?;
        amount("invoke_overhead_s", self.invoke_overhead_s)?;
        amount("per_op_s", self.per_op_s)?;
        amount(
            "host_quantize_s_per_element",
            self.host_quantize_s_per_element,
        )?;
        amount(
            "host_dequantize_s_per_element",
            self.host_dequantize_s_per_element,
        )?;
        amount("input_reserve", self.input_reserve)?;
        for (kind, v) in self.macs_per_s.iter() {
            rate(&format!("macs_per_s[{kind:?}]"), v)?;
        }
        for (kind, v) in self.stream_reads.iter() {
            amount(&format!("stream_reads[{kind:?}]"), v)?;
        }
        Ok(())
    }

    /// The parameter budget of one segment, compiled on its own:
    /// `on_chip_budget_bytes − input_reserve · input_bytes`.
    ///
    /// The 2-device calibration files show the compiler caching one layer fewer in a second
    /// segment (whose input is a 64×64×F activation) than the whole model's budget allows:
    /// conv F = 502 caches 2 of its 3 layers of 2.22 MiB, where the whole model caches
    /// 6.78 MiB. A budget shrinking with the segment's input reproduces every list of those
    /// files; the single-device models, whose inputs are small, are hardly affected.
    pub fn segment_budget_bytes(&self, workload: &SegmentWorkload) -> u64 {
        let reserved = self.input_reserve * workload.input_bytes as f64;
        // Saturating float → integer conversion: a reserve beyond the budget leaves 0.
        self.on_chip_budget_bytes.saturating_sub(reserved as u64)
    }

    /// Where each parameter tensor goes: `result[i][j]` is true if tensor `j` of op `i`
    /// is cached on chip (see the module docs for the rule).
    pub fn placement(&self, workload: &SegmentWorkload) -> Vec<Vec<bool>> {
        let budget = self.segment_budget_bytes(workload);
        let mut used = 0u64;
        workload
            .ops
            .iter()
            .map(|op| {
                op.param_tensor_bytes
                    .iter()
                    .map(|&bytes| {
                        let fits = bytes <= self.max_cached_tensor_bytes
                            && used.saturating_add(bytes) <= budget;
                        if fits {
                            used = used.saturating_add(bytes);
                        }
                        fits
                    })
                    .collect()
            })
            .collect()
    }

    /// Seconds of one op that do not depend on where its parameters are: for a device op,
    /// [`per_op_s`](Self::per_op_s) and its multiply-accumulates, or (without MACs) the
    /// activations it moves; for the host's float conversion, its elements.
    pub fn op_time_s(&self, op: &OpWorkload) -> f64 {
        self.op_parts_s(op).iter().sum()
    }

    /// [`op_time_s`](Self::op_time_s) in parts: compute, layer, host.
    fn op_parts_s(&self, op: &OpWorkload) -> [f64; 3] {
        match op.host_conversion {
            Some(HostConversion::Quantize(n)) => {
                return [0.0, 0.0, n as f64 * self.host_quantize_s_per_element];
            }
            Some(HostConversion::Dequantize(n)) => {
                return [0.0, 0.0, n as f64 * self.host_dequantize_s_per_element];
            }
            None => {}
        }
        let compute = if op.macs > 0 {
            op.macs as f64 / self.macs_per_s.get(op.kind)
        } else {
            0.0
        };
        let moved = if op.kind.has_weights() {
            0.0
        } else {
            op.activation_bytes as f64 / self.activation_bytes_per_s
        };
        [compute, self.per_op_s + moved, 0.0]
    }

    /// Predicted latency and parameter placement of one inference of `workload`.
    pub fn predict(&self, workload: &SegmentWorkload) -> Prediction {
        let placement = self.placement(workload);
        let mut on_chip_bytes = 0u64;
        let mut off_chip_bytes = 0u64;
        let [mut compute_s, mut layers_s, mut host_s] = [0.0; 3];
        let mut streamed_reads = 0.0;
        for (op, cached) in workload.ops.iter().zip(&placement) {
            let [compute, layer, host] = self.op_parts_s(op);
            compute_s += compute;
            layers_s += layer;
            host_s += host;
            for (&bytes, &on_chip) in op.param_tensor_bytes.iter().zip(cached) {
                if on_chip {
                    on_chip_bytes = on_chip_bytes.saturating_add(bytes);
                } else {
                    off_chip_bytes = off_chip_bytes.saturating_add(bytes);
                    streamed_reads += bytes as f64 * self.stream_reads.get(op.kind);
                }
            }
        }
        let stream_s = streamed_reads / self.stream_bytes_per_s;
        let io_bytes = workload.input_bytes.saturating_add(workload.output_bytes);
        let transfer_s = io_bytes as f64 / self.io_bytes_per_s;
        Prediction {
            latency_s: self.invoke_overhead_s
                + compute_s
                + layers_s
                + host_s
                + stream_s
                + transfer_s,
            on_chip_bytes,
            off_chip_bytes,
            compute_s,
            layers_s,
            host_s,
            stream_s,
            transfer_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::figures::tests::{model, operator, tensor};
    use crate::model::{ElementType, Quantization, ops};

    fn op(kind: OpKind, macs: u64, params: &[u64]) -> OpWorkload {
        OpWorkload {
            kind,
            macs,
            param_tensor_bytes: params.to_vec(),
            activation_bytes: 0,
            host_conversion: None,
        }
    }

    fn workload(ops: Vec<OpWorkload>) -> SegmentWorkload {
        SegmentWorkload {
            ops,
            input_bytes: 0,
            output_bytes: 0,
        }
    }

    fn small_model(budget: u64, max_tensor: u64) -> EdgeTpuCostModel {
        EdgeTpuCostModel {
            on_chip_budget_bytes: budget,
            max_cached_tensor_bytes: max_tensor,
            ..EdgeTpuCostModel::usb_default()
        }
    }

    #[test]
    fn tensor_that_does_not_fit_goes_off_chip_and_later_ones_are_still_placed() {
        let cm = small_model(100, 100);
        let w = workload(vec![
            op(OpKind::FullyConnected, 0, &[40]),
            op(OpKind::FullyConnected, 0, &[50]),
            op(OpKind::FullyConnected, 0, &[50]),
            op(OpKind::FullyConnected, 0, &[10]),
        ]);
        assert_eq!(
            cm.placement(&w),
            vec![vec![true], vec![true], vec![false], vec![true]]
        );
        let p = cm.predict(&w);
        assert_eq!((p.on_chip_bytes, p.off_chip_bytes), (100, 50));
    }

    #[test]
    fn placement_follows_execution_order() {
        let cm = small_model(100, 100);
        let big_first = workload(vec![
            op(OpKind::Conv2d, 0, &[90]),
            op(OpKind::Conv2d, 0, &[20, 5]),
        ]);
        assert_eq!(
            cm.placement(&big_first),
            vec![vec![true], vec![false, true]]
        );
        let small_first = workload(vec![
            op(OpKind::Conv2d, 0, &[20, 5]),
            op(OpKind::Conv2d, 0, &[90]),
        ]);
        assert_eq!(
            cm.placement(&small_first),
            vec![vec![true, true], vec![false]]
        );
    }

    #[test]
    fn tensor_above_the_per_tensor_limit_is_streamed_even_with_room() {
        let cm = small_model(100, 60);
        let w = workload(vec![op(OpKind::FullyConnected, 0, &[70, 30])]);
        assert_eq!(cm.placement(&w), vec![vec![false, true]]);
    }

    #[test]
    fn latency_grows_with_off_chip_bytes() {
        let cm = small_model(1000, 1000);
        let mut last = None;
        for extra in [0u64, 1, 500, 1000, 5000, 50_000, 1 << 30] {
            let w = workload(vec![
                op(OpKind::FullyConnected, 1000, &[900]),
                op(OpKind::FullyConnected, 1000, &[200 + extra]),
            ]);
            let p = cm.predict(&w);
            if let Some((last_latency, last_off)) = last {
                assert!(p.off_chip_bytes > last_off);
                assert!(p.latency_s > last_latency, "{extra}: {p:?}");
            }
            last = Some((p.latency_s, p.off_chip_bytes));
        }
    }

    #[test]
    fn prediction_adds_its_parts() {
        let cm = EdgeTpuCostModel {
            on_chip_budget_bytes: 10,
            max_cached_tensor_bytes: 10,
            input_reserve: 0.0,
            stream_bytes_per_s: 100.0,
            stream_reads: PerKind {
                conv2d: 2.0,
                ..PerKind::splat(1.0)
            },
            io_bytes_per_s: 1000.0,
            invoke_overhead_s: 0.5,
            per_op_s: 0.25,
            activation_bytes_per_s: 40.0,
            host_quantize_s_per_element: 0.01,
            host_dequantize_s_per_element: 0.02,
            macs_per_s: PerKind {
                fully_connected: 10.0,
                ..PerKind::splat(100.0)
            },
            link: Link::Usb3,
        };
        let moving = |kind, macs, bytes| OpWorkload {
            activation_bytes: bytes,
            ..op(kind, macs, &[])
        };
        let w = SegmentWorkload {
            ops: vec![
                OpWorkload {
                    host_conversion: Some(HostConversion::Quantize(60)),
                    ..moving(OpKind::Elementwise, 0, 500)
                },
                OpWorkload {
                    host_conversion: Some(HostConversion::Dequantize(20)),
                    ..moving(OpKind::Elementwise, 0, 100)
                },
                OpWorkload {
                    activation_bytes: 80,
                    ..op(OpKind::FullyConnected, 20, &[10])
                },
                op(OpKind::Conv2d, 300, &[50]),
                moving(OpKind::Elementwise, 0, 20),
            ],
            input_bytes: 400,
            output_bytes: 600,
        };
        let p = cm.predict(&w);
        assert_eq!((p.on_chip_bytes, p.off_chip_bytes), (10, 50));
        assert!((p.compute_s - (2.0 + 3.0)).abs() < 1e-12);
        // three device ops; only the one without MACs pays for its activations
        assert!((p.layers_s - (3.0 * 0.25 + 0.5)).abs() < 1e-12);
        assert!((p.host_s - 1.0).abs() < 1e-12);
        assert!((p.stream_s - 1.0).abs() < 1e-12);
        assert!((p.transfer_s - 1.0).abs() < 1e-12);
        assert!((p.latency_s - 9.75).abs() < 1e-12);
        let op_times: f64 = w.ops.iter().map(|o| cm.op_time_s(o)).sum();
        assert!((op_times - (p.compute_s + p.layers_s + p.host_s)).abs() < 1e-12);
    }

    #[test]
    fn check_rejects_bad_rates() {
        assert_eq!(EdgeTpuCostModel::usb_default().check(), Ok(()));
        assert_eq!(EdgeTpuCostModel::pcie_default().check(), Ok(()));
        let bad = EdgeTpuCostModel {
            stream_bytes_per_s: 0.0,
            ..EdgeTpuCostModel::usb_default()
        };
        assert!(bad.check().is_err());
        let bad = EdgeTpuCostModel {
            per_op_s: -1e-6,
            ..EdgeTpuCostModel::usb_default()
        };
        assert!(bad.check().unwrap_err().contains("per_op_s"));
        let mut bad = EdgeTpuCostModel::usb_default();
        bad.macs_per_s.transpose_conv = f64::NAN;
        assert!(bad.check().unwrap_err().contains("TransposeConv"));
    }

    proptest::proptest! {
        /// First fit: cached bytes stay within the budget, every cached tensor within the
        /// limit, every streamed tensor was too big for the limit or for what was left, and
        /// nothing is lost.
        #[test]
        fn placement_is_first_fit(
            sizes in proptest::collection::vec(
                proptest::collection::vec(0u64..5_000, 0..4), 0..12),
            budget in 0u64..20_000,
            limit in 0u64..6_000,
        ) {
            let cm = small_model(budget, limit);
            let w = workload(sizes.iter().map(|s| op(OpKind::Conv2d, 1, s)).collect());
            let placement = cm.placement(&w);
            let mut used = 0u64;
            for (op_sizes, cached) in sizes.iter().zip(&placement) {
                proptest::prop_assert_eq!(op_sizes.len(), cached.len());
                for (&size, &on) in op_sizes.iter().zip(cached) {
                    if on {
                        proptest::prop_assert!(size <= limit);
                        used += size;
                    } else {
                        proptest::prop_assert!(size > limit || used + size > budget);
                    }
                }
            }
            proptest::prop_assert!(used <= budget);
            let p = cm.predict(&w);
            proptest::prop_assert_eq!(p.on_chip_bytes, used);
            proptest::prop_assert_eq!(p.on_chip_bytes + p.off_chip_bytes, w.param_bytes());
            proptest::prop_assert!(p.latency_s >= p.compute_s + p.stream_s + p.transfer_s);
        }
    }

    fn per_channel(mut t: Tensor<'static>, channels: usize) -> Tensor<'static> {
        t.quantization = Some(Quantization {
            scale: vec![0.1; channels],
            zero_point: vec![0; channels],
            ..Quantization::default()
        });
        t
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
