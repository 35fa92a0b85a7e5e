//! An analytic cost model of one Coral Edge TPU, fitted to real measurements.
//!
//! The model predicts the latency of one inference of a segment (a run of operators) and how
//! many of its parameter bytes the Edge TPU compiler would cache on chip:
//!
//! ```text
//! latency = invoke_overhead
//!         + Σ_device ops  device_macs(op) / macs_per_s[kind(op)]             (compute)
//!         + Σ_device ops  per_op + copy_bytes(op) / concat_bw                (layers)
//!         + Σ_host ops    elements(op) · host_(de)quantize_per_element       (host)
//!         + Σ_off   bytes(t) · passes(op reading t) / stream_bw              (stream)
//!         + input_bytes / input_bw + output_bytes / output_bw                 (transfer)
//! ```
//!
//! where `Σ_off` runs over the parameter tensors the placement rule leaves in host memory,
//! the host ops are the float `QUANTIZE` / `DEQUANTIZE` the Edge TPU compiler leaves to the
//! CPU, and every other op is a device op. Each term is a physical cost:
//!
//! - **compute**: the device works on blocks of 64 output channels, as the compiler lays out
//!   weights ([`DeviceLayout`]), so a convolution with 32 outputs costs what one with 64
//!   does ([`OpWorkload::device_macs`]);
//! - **layers**: a fixed cost per device op, and the bytes a `CONCATENATION` copies;
//! - **stream**: a parameter left in host memory crosses the link on every inference, once
//!   for every pass over the output of the op reading it. A convolution whose output is
//!   larger than [`tile_bytes`](EdgeTpuCostModel::tile_bytes) is computed in
//!   `passes = ⌈output_bytes / tile_bytes⌉` tiles; cached weights are read from SRAM on each
//!   pass, streamed weights cross the link again ([`EdgeTpuCostModel::stream_passes`]). A
//!   ResNet's or VGG's streamed weights sit in layers with small outputs (one pass); the
//!   paper's 3×3 convolutions over 64×64 activations need several;
//! - **transfer**: the segment's inputs and outputs cross the link.
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
//! See `docs/cost-model.md` for the fit, which data pins which parameter, and its errors.

#[cfg(doc)]
use crate::device::workload::DeviceLayout;
use crate::device::workload::{HostConversion, OpWorkload, SegmentWorkload};
use crate::model::figures::OpKind;

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
    /// Seconds of the device ops' fixed cost and of the bytes concatenations copy.
    pub layers_s: f64,
    /// Seconds of the host's float conversions (`QUANTIZE` / `DEQUANTIZE`).
    pub host_s: f64,
    /// Seconds of streaming off-chip parameters, once per pass over their op's output.
    pub stream_s: f64,
    /// Seconds of moving the segment's inputs and outputs over the link.
    pub transfer_s: f64,
}

/// The Edge TPU cost model. Every parameter is public so that it can be re-fitted to
/// another host (`cargo run --release -p multitpu-paper --bin calibrate`, whose fit is
/// `multitpu_paper::calibration::fit`).
///
/// ```
/// use multitpu::model::paper;
/// use multitpu::device::{EdgeTpuCostModel, SegmentWorkload};
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
    /// Effective rate (bytes/s) at which off-chip parameters cross the link.
    pub stream_bytes_per_s: f64,
    /// Bytes of a convolution's output computed in one pass: a larger output takes
    /// [`stream_passes`](Self::stream_passes) passes, and its streamed weights cross the link
    /// once per pass.
    pub tile_bytes: u64,
    /// Effective rate (bytes/s) at which the segment's inputs cross the link to the device,
    /// including the host's handling of them.
    pub input_bytes_per_s: f64,
    /// Effective rate (bytes/s) at which the segment's outputs come back to the host.
    pub output_bytes_per_s: f64,
    /// Fixed seconds of one invoke.
    pub invoke_overhead_s: f64,
    /// Fixed seconds of every op run on the device (a layer's setup, whatever it computes).
    pub per_op_s: f64,
    /// Effective rate (bytes/s) at which a `CONCATENATION` copies its inputs into its output
    /// ([`OpWorkload::copy_bytes`]).
    pub concat_bytes_per_s: f64,
    /// Seconds per element of the host's float `QUANTIZE` ([`HostConversion::Quantize`]).
    pub host_quantize_s_per_element: f64,
    /// Seconds per element of the host's `DEQUANTIZE` to float
    /// ([`HostConversion::Dequantize`]).
    pub host_dequantize_s_per_element: f64,
    /// Multiply-accumulates per second by op kind, for device ops
    /// ([`OpWorkload::device_macs`]).
    pub macs_per_s: PerKind<f64>,
}

/// Fitted figures: printed by `cargo run --release -p multitpu-paper --bin calibrate` from the
/// paper's measurements (one device, and 2 and 3 devices as a pipeline, through a model of the
/// measuring programs) and Coral's published figures for the rows of its table named in
/// docs/cost-model.md. See there for which data pins which parameter.
mod fitted {
    /// 7.7719 MiB: the middle of the budgets (about 7.735–7.805 MiB) that place the
    /// parameters of every model as the compiler did, except fc N=2000.
    pub const ON_CHIP_BUDGET_BYTES: u64 = 8_149_376;
    /// 6.9423 MiB: between the largest tensor the compiler cached (6.80 MiB, fc N=2650)
    /// and the smallest it streamed with room to spare (7.09 MiB, fc N=2700).
    pub const MAX_CACHED_TENSOR_BYTES: u64 = 7_279_488;
    /// 0.6275 bytes of budget per input byte: the middle of the reserves (0.593–0.662) that
    /// place every segment of the 2- and 3-device files as the compiler did.
    pub const INPUT_RESERVE: f64 = 0.6275;
    /// 2.486 ms per MiB crossing the link: between the author's host (2.7–2.8 ms per MiB)
    /// and Coral's benchmark host, where the published figures' weight puts it.
    pub const STREAM_BYTES_PER_S: f64 = 4.21755e8;
    /// 0.5 MiB of a convolution's output per pass: the paper's 3×3 convolutions over
    /// 64×64×F outputs stream their weights 4 to 6 times, a ResNet's or VGG's once.
    pub const TILE_BYTES: u64 = 524_288;
    /// Inputs in, outputs out, with the host's handling of them.
    pub const INPUT_BYTES_PER_S: f64 = 1.25139e8;
    pub const OUTPUT_BYTES_PER_S: f64 = 8.04495e7;
    /// 0.109 ms per invoke; the fit finds no cost per op beyond what the rates carry.
    pub const INVOKE_OVERHEAD_S: f64 = 1.09167e-4;
    pub const PER_OP_S: f64 = 0.0;
    /// `CONV_2D` on whole blocks of 64 output channels: 1.88 TMAC/s (the device's peak is
    /// 2 TMAC/s, 4 TOPS).
    pub const CONV_MACS_PER_S: f64 = 1.88040e12;
    /// `FULLY_CONNECTED`: 61 GMAC/s (each weight is used once per inference).
    pub const FC_MACS_PER_S: f64 = 6.06767e10;
    /// `DEPTHWISE_CONV_2D`: 26 GMAC/s, pinned by MobileNet v2 alone.
    pub const DEPTHWISE_MACS_PER_S: f64 = 2.55793e10;
    /// `CONCATENATION` copies 1.9 GB/s, pinned by DenseNet-121 and Inception v1.
    pub const CONCAT_BYTES_PER_S: f64 = 1.87044e9;
    /// The host's float quantize and dequantize: not fitted on Edge TPU data (the
    /// calibration models convert at most 12 288 elements), but timed on TFLite's CPU
    /// kernels (`calibrate --cpu`, the same figures as `CpuCostModel::default()`).
    pub const HOST_QUANTIZE_S_PER_ELEMENT: f64 = crate::device::cpu_cost::QUANTIZE_S_PER_ELEMENT;
    pub const HOST_DEQUANTIZE_S_PER_ELEMENT: f64 =
        crate::device::cpu_cost::DEQUANTIZE_S_PER_ELEMENT;
}

impl EdgeTpuCostModel {
    /// The model fitted to the USB 3 measurements of the paper's models and to Coral's
    /// published figures for real networks (`calibrate` in the `multitpu-paper` crate).
    ///
    /// Transpose convolutions were not measured: they take the fitted `CONV_2D` rate.
    pub fn usb_default() -> Self {
        let macs_per_s = PerKind {
            conv2d: fitted::CONV_MACS_PER_S,
            depthwise_conv2d: fitted::DEPTHWISE_MACS_PER_S,
            fully_connected: fitted::FC_MACS_PER_S,
            transpose_conv: fitted::CONV_MACS_PER_S,
            // No MACs: never divided by.
            elementwise: 1.0,
            other: 1.0,
        };
        EdgeTpuCostModel {
            link: Link::Usb3,
            on_chip_budget_bytes: fitted::ON_CHIP_BUDGET_BYTES,
            max_cached_tensor_bytes: fitted::MAX_CACHED_TENSOR_BYTES,
            input_reserve: fitted::INPUT_RESERVE,
            stream_bytes_per_s: fitted::STREAM_BYTES_PER_S,
            tile_bytes: fitted::TILE_BYTES,
            input_bytes_per_s: fitted::INPUT_BYTES_PER_S,
            output_bytes_per_s: fitted::OUTPUT_BYTES_PER_S,
            invoke_overhead_s: fitted::INVOKE_OVERHEAD_S,
            per_op_s: fitted::PER_OP_S,
            concat_bytes_per_s: fitted::CONCAT_BYTES_PER_S,
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
    /// free), overheads finite and not negative, a tile of at least one byte.
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
        rate("input_bytes_per_s", self.input_bytes_per_s)?;
        rate("output_bytes_per_s", self.output_bytes_per_s)?;
        rate("concat_bytes_per_s", self.concat_bytes_per_s)?;
        if self.tile_bytes == 0 {
            return Err("tile_bytes = 0 must be at least 1".to_owned());
        }
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
    /// [`per_op_s`](Self::per_op_s), its multiply-accumulates and the bytes it copies; for
    /// the host's float conversion, its elements.
    pub fn op_time_s(&self, op: &OpWorkload) -> f64 {
        self.op_parts_s(op).iter().sum()
    }

    /// How many times per inference a streamed parameter of `op` crosses the link: once
    /// per pass over the op's output, `⌈output_bytes / tile_bytes⌉` for a convolution
    /// (at least 1), once for any other op.
    pub fn stream_passes(&self, op: &OpWorkload) -> u64 {
        match op.kind {
            OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::TransposeConv => {
                op.output_bytes.div_ceil(self.tile_bytes.max(1)).max(1)
            }
            _ => 1,
        }
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
        let compute = if op.device_macs > 0 {
            op.device_macs as f64 / self.macs_per_s.get(op.kind)
        } else {
            0.0
        };
        let copied = op.copy_bytes as f64 / self.concat_bytes_per_s;
        [compute, self.per_op_s + copied, 0.0]
    }

    /// Predicted latency and parameter placement of one inference of `workload`.
    pub fn predict(&self, workload: &SegmentWorkload) -> Prediction {
        let placement = self.placement(workload);
        let mut on_chip_bytes = 0u64;
        let mut off_chip_bytes = 0u64;
        let [mut compute_s, mut layers_s, mut host_s] = [0.0; 3];
        let mut crossing_bytes = 0.0;
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
                    crossing_bytes += bytes as f64 * self.stream_passes(op) as f64;
                }
            }
        }
        let stream_s = crossing_bytes / self.stream_bytes_per_s;
        let transfer_s = workload.input_bytes as f64 / self.input_bytes_per_s
            + workload.output_bytes as f64 / self.output_bytes_per_s;
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

    fn op(kind: OpKind, macs: u64, params: &[u64]) -> OpWorkload {
        OpWorkload {
            kind,
            macs,
            device_macs: macs,
            param_tensor_bytes: params.to_vec(),
            activation_bytes: 0,
            output_bytes: 0,
            copy_bytes: 0,
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
            tile_bytes: 40,
            input_bytes_per_s: 1000.0,
            output_bytes_per_s: 500.0,
            invoke_overhead_s: 0.5,
            per_op_s: 0.25,
            concat_bytes_per_s: 40.0,
            host_quantize_s_per_element: 0.01,
            host_dequantize_s_per_element: 0.02,
            macs_per_s: PerKind {
                fully_connected: 10.0,
                ..PerKind::splat(100.0)
            },
            link: Link::Usb3,
        };
        let w = SegmentWorkload {
            ops: vec![
                OpWorkload {
                    host_conversion: Some(HostConversion::Quantize(60)),
                    ..op(OpKind::Elementwise, 0, &[])
                },
                OpWorkload {
                    host_conversion: Some(HostConversion::Dequantize(20)),
                    ..op(OpKind::Elementwise, 0, &[])
                },
                op(OpKind::FullyConnected, 20, &[10]),
                // 100 output bytes in tiles of 40: the streamed 50 bytes cross 3 times
                OpWorkload {
                    device_macs: 600,
                    output_bytes: 100,
                    ..op(OpKind::Conv2d, 300, &[50])
                },
                OpWorkload {
                    copy_bytes: 20,
                    ..op(OpKind::Other, 0, &[])
                },
            ],
            input_bytes: 400,
            output_bytes: 300,
        };
        let p = cm.predict(&w);
        assert_eq!((p.on_chip_bytes, p.off_chip_bytes), (10, 50));
        assert_eq!(cm.stream_passes(&w.ops[3]), 3);
        assert_eq!(cm.stream_passes(&w.ops[2]), 1);
        // the device's MACs: 20 / 10 + 600 / 100
        assert!((p.compute_s - (2.0 + 6.0)).abs() < 1e-12);
        // three device ops; the concatenation copies 20 bytes at 40 bytes/s
        assert!((p.layers_s - (3.0 * 0.25 + 0.5)).abs() < 1e-12);
        assert!((p.host_s - 1.0).abs() < 1e-12);
        assert!((p.stream_s - 1.5).abs() < 1e-12);
        assert!((p.transfer_s - 1.0).abs() < 1e-12);
        assert!((p.latency_s - 13.25).abs() < 1e-12);
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
        let bad = EdgeTpuCostModel {
            tile_bytes: 0,
            ..EdgeTpuCostModel::usb_default()
        };
        assert!(bad.check().unwrap_err().contains("tile_bytes"));
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
}
