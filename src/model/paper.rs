//! The synthetic models of the PDP 2023 paper "Improving inference time in multi-TPU systems
//! with profiled model segmentation" (Villarrubia, Costero, Igual, Olcoz), built with
//! [`ModelBuilder`] as the author's TF2 converter settings quantize them: float32 input with a
//! `QUANTIZE` first, int8 activations, int8 weights (per-channel for convolutions, per-tensor
//! for dense layers) and int32 biases. The fc model also ends in a `DEQUANTIZE` (float32
//! output); the conv model was converted with `inference_output_type = int8`, so its output
//! stays int8 and it has no `DEQUANTIZE`.
//!
//! The inputs are quantized for values in `[-1, 1]`. Weights are seeded from the size knob,
//! so a model is the same on every call.
//!
//! # Parameter sizes
//!
//! [`parameter_bytes`] of [`fc`] is `64·N + 3·N² + 10·N` weight bytes plus
//! `4·(4·N + 10)` bias bytes; of [`conv`], `27·F + 36·F²` weight bytes plus `20·F` bias
//! bytes. The calibration's `On chip mem used + Off chip mem used` (what `edgetpu_compiler`
//! reported for the paper's own files) is always somewhat larger, as the compiler stores
//! parameters in its own padded layout:
//!
//! | model | here (MiB) | compiler (MiB) |
//! | --- | --- | --- |
//! | fc N = 100 | 0.037 | 0.051 |
//! | fc N = 1000 | 2.947 | 3.05 |
//! | fc N = 1580 | 7.278 | 7.43 (all on chip) |
//! | fc N = 1620 | 7.648 | 7.91 (2.57 off chip) |
//! | fc N = 3000 | 26.007 | 26.19 |
//! | conv F = 32 | 0.037 | 0.075 |
//! | conv F = 442 | 6.727 | 6.86 (all on chip) |
//! | conv F = 742 | 18.935 | 19.67 |
//!
//! For fc with N ≥ 1000 the two agree within 1–4 %, so the parameter cliff falls between
//! the same sizes; small models and conv carry more compiler overhead (2–46 % for conv with
//! F ≥ 52, twice the bytes at F = 32).

use crate::model::builder::{Activation, ModelBuilder, Padding, range_quantization};
use crate::model::{ElementType, Model};
use crate::{Error, Result};

/// Input values the quantization of the paper's models is calibrated for.
const INPUT_RANGE: (f32, f32) = (-1.0, 1.0);

/// The fc model: float32 `[1, 64]` → `QUANTIZE` int8 → 4 × (`FULLY_CONNECTED`(N) + `TANH`)
/// → `FULLY_CONNECTED`(10) → `DEQUANTIZE` → float32 `[1, 10]`.
///
/// `hidden` is the paper's N (it measured 100 to 3000). Errors if `hidden` is 0 or too large
/// for the file format.
///
/// # Errors
///
/// [`Error::Invalid`] if `hidden` is 0 or too large for the file format.
pub fn fc(hidden: usize) -> Result<Model<'static>> {
    let mut b = ModelBuilder::new(0xFC00_0000 ^ hidden as u64);
    b.description(format!("paper fc model, N = {hidden}"));
    let x = b.input("input", ElementType::F32, &[1, 64], None)?;
    let quantization = range_quantization(INPUT_RANGE.0, INPUT_RANGE.1, ElementType::I8)?;
    let mut h = b.quantize(x, ElementType::I8, quantization)?;
    for _ in 0..4 {
        h = b.fully_connected(h, hidden, Activation::Tanh)?;
    }
    let logits = b.fully_connected(h, 10, Activation::None)?;
    let out = b.dequantize(logits)?;
    b.output(out)?;
    b.build()
}

/// The conv model: float32 `[1, 64, 64, 3]` → `QUANTIZE` int8 → 5 × `CONV_2D`(F filters,
/// 3×3, stride 1, SAME, fused ReLU) → int8 `[1, 64, 64, F]`.
///
/// There is no `DEQUANTIZE`: the output leaves the device as `64·64·F` int8 bytes, as in the
/// author's files (converted with `inference_output_type = int8`).
///
/// `filters` is the paper's F (it measured 32 to 742). Errors if `filters` is 0 or too large
/// for the file format.
///
/// # Errors
///
/// [`Error::Invalid`] if `filters` is 0 or too large for the file format.
pub fn conv(filters: usize) -> Result<Model<'static>> {
    let mut b = ModelBuilder::new(0xC0 ^ ((filters as u64) << 8));
    b.description(format!("paper conv model, F = {filters}"));
    let x = b.input("input", ElementType::F32, &[1, 64, 64, 3], None)?;
    let quantization = range_quantization(INPUT_RANGE.0, INPUT_RANGE.1, ElementType::I8)?;
    let mut h = b.quantize(x, ElementType::I8, quantization)?;
    for _ in 0..5 {
        h = b.conv2d(h, filters, [3, 3], [1, 1], Padding::Same, Activation::Relu)?;
    }
    b.output(h)?;
    b.build()
}

/// Total bytes of constant tensor data (weights, biases, shapes) of a model: what the Edge
/// TPU compiler places on chip or streams.
pub fn parameter_bytes(model: &Model<'_>) -> usize {
    model
        .tensors
        .iter()
        .filter_map(|t| t.data.as_ref().map(|d| d.len()))
        .sum()
}

/// The bytes of the model a command line names: the paper's `fc:N` ([`fc`]) or `conv:F`
/// ([`conv`]), built in memory, or else the `.tflite` file at that path.
///
/// ```
/// use multitpu::model::paper;
///
/// assert!(!paper::load("fc:100")?.is_empty());
/// assert!(matches!(paper::load("conv:lots"), Err(multitpu::Error::Invalid { .. })));
/// assert!(matches!(paper::load("no/such.tflite"), Err(multitpu::Error::Io { .. })));
/// # Ok::<(), multitpu::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Invalid`] for a size that is not a number; the errors of [`fc`] and [`conv`];
/// [`Error::Io`] naming a file that cannot be read.
pub fn load(spec: &str) -> Result<Vec<u8>> {
    let size = |text: &str| {
        text.parse::<usize>()
            .map_err(|e| Error::invalid("paper model", format!("size in `{spec}`: {e}")))
    };
    if let Some(n) = spec.strip_prefix("fc:") {
        return fc(size(n)?)?.to_bytes();
    }
    if let Some(f) = spec.strip_prefix("conv:") {
        return conv(size(f)?)?.to_bytes();
    }
    std::fs::read(spec).map_err(|source| Error::Io {
        path: spec.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fc_structure_and_size() {
        let m = fc(100).unwrap();
        let codes: Vec<i32> = m.operators.iter().map(|op| op.opcode.builtin).collect();
        assert_eq!(codes, vec![114, 9, 28, 9, 28, 9, 28, 9, 28, 9, 6]);
        assert_eq!(m.tensors[m.inputs[0]].shape, vec![1, 64]);
        assert_eq!(m.tensors[m.outputs[0]].shape, vec![1, 10]);
        assert_eq!(m.tensors[m.outputs[0]].element_type, ElementType::F32);
        let n = 100;
        assert_eq!(
            parameter_bytes(&m),
            64 * n + 3 * n * n + 10 * n + 4 * (4 * n + 10)
        );
    }

    #[test]
    fn conv_structure_and_size() {
        let m = conv(8).unwrap();
        let codes: Vec<i32> = m.operators.iter().map(|op| op.opcode.builtin).collect();
        assert_eq!(codes, vec![114, 3, 3, 3, 3, 3]);
        let output = &m.tensors[m.outputs[0]];
        assert_eq!(output.shape, vec![1, 64, 64, 8]);
        assert_eq!(output.element_type, ElementType::I8);
        let f = 8;
        assert_eq!(parameter_bytes(&m), 27 * f + 36 * f * f + 20 * f);
    }

    #[test]
    fn paper_models_are_deterministic() {
        assert_eq!(fc(20).unwrap(), fc(20).unwrap());
        assert_ne!(fc(20).unwrap(), fc(21).unwrap());
        assert_eq!(conv(4).unwrap(), conv(4).unwrap());
    }

    #[test]
    fn zero_size_is_an_error() {
        assert!(fc(0).is_err());
        assert!(conv(0).is_err());
    }
}
