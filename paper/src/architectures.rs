//! Published image-classification architectures, rebuilt with [`ModelBuilder`] for the cost
//! model's calibration against Coral's Edge TPU benchmark table (`docs/cost-model.md`).
//!
//! Only the architecture matters for latency: layer types, shapes, strides and the order of
//! the operators. Weights are seeded random values, quantized as the TF1 converter quantized
//! Coral's files (uint8 input and activations, per-tensor uint8 weights, int32 biases), with
//! batch normalisation folded into the convolutions' biases and ReLU / ReLU6 fused, as in the
//! converted files.
//!
//! - [`mobilenet_v1`]: TF-slim's MobileNet v1 (`mobilenet_v1.py`): a 3×3 stem and 13
//!   depthwise-separable blocks, average pool, 1×1 logits conv, squeeze, softmax. At width
//!   0.25 and 128×128 it has the operators, shapes and MACs of Coral's
//!   `mobilenet_v1_0.25_128_quant.tflite` (checked in `tests/builder_models.rs`).
//! - [`inception_v1`]: TF-slim's Inception v1 (`inception_v1.py`, the GoogLeNet variant with
//!   3×3 convolutions in the third branch of every module).
//! - [`efficientnet_edgetpu`]: EfficientNet-EdgeTPU S and M (the TensorFlow TPU reference
//!   implementation's block list): fused "edge residual" blocks (a full 3×3 expansion conv
//!   and a 1×1 projection) in the first three stages, inverted residuals with 5×5 depthwise
//!   convolutions after, ReLU throughout. Global pooling is written as an `AVERAGE_POOL_2D`
//!   over the whole map (the reference's reduce-mean converts to `MEAN`, a pooling of the
//!   same bytes).

use multitpu::Result;
use multitpu::model::builder::{Activation, ModelBuilder, Padding, TensorId, per_tensor};
use multitpu::model::{ElementType, Model};

/// Classes of the slim ImageNet classifiers (1000 and a background class).
const SLIM_CLASSES: usize = 1001;

/// Classes of the EfficientNet-EdgeTPU classifiers.
const EFFICIENTNET_CLASSES: usize = 1000;

/// The uint8 input of Coral's image classifiers: values 0..=255 for [-1, 1].
fn image_input(b: &mut ModelBuilder, resolution: usize) -> Result<TensorId> {
    b.input(
        "input",
        ElementType::U8,
        &[1, resolution, resolution, 3],
        Some(per_tensor(2.0 / 255.0, 128)),
    )
}

/// Spatial size of an NHWC tensor (its height; every map here is square).
fn spatial(b: &ModelBuilder, x: TensorId) -> usize {
    b.tensor(x)
        .and_then(|t| t.shape.get(1))
        .map_or(1, |&d| usize::try_from(d).unwrap_or(1))
}

/// Global average pool, logits, and softmax as the slim classifiers end: a 1×1 conv to
/// `classes`, a squeeze to `[1, classes]` and a softmax.
fn slim_head(b: &mut ModelBuilder, x: TensorId, classes: usize) -> Result<TensorId> {
    let size = spatial(b, x);
    let pooled = b.average_pool_2d(x, [size, size], [1, 1], Padding::Valid)?;
    let logits = b.conv2d(
        pooled,
        classes,
        [1, 1],
        [1, 1],
        Padding::Same,
        Activation::None,
    )?;
    let squeezed = b.reshape(logits, &[1, classes as i32])?;
    b.softmax(squeezed, 1.0)
}

/// TF-slim's MobileNet v1 at width multiplier `alpha` (channels `max(⌊c·alpha⌋, 8)`) and
/// input `resolution`×`resolution`: ReLU6 everywhere, 1001 classes. `mobilenet_v1(1.0, 224)`
/// is the model of Coral's benchmark table.
///
/// # Errors
///
/// If `alpha` or `resolution` give an empty layer or a tensor too large for the format.
pub fn mobilenet_v1(alpha: f64, resolution: usize) -> Result<Model<'static>> {
    let depth = |channels: usize| ((channels as f64 * alpha) as usize).max(8);
    // (stride, output channels) of the 13 depthwise-separable blocks.
    const BLOCKS: [(usize, usize); 13] = [
        (1, 64),
        (2, 128),
        (1, 128),
        (2, 256),
        (1, 256),
        (2, 512),
        (1, 512),
        (1, 512),
        (1, 512),
        (1, 512),
        (1, 512),
        (2, 1024),
        (1, 1024),
    ];
    let mut b = ModelBuilder::new(0x4D42_0001 ^ resolution as u64);
    b.description(format!(
        "MobileNet v1 {alpha} {resolution} (slim architecture)"
    ));
    let input = image_input(&mut b, resolution)?;
    let mut h = b.conv2d(
        input,
        depth(32),
        [3, 3],
        [2, 2],
        Padding::Same,
        Activation::Relu6,
    )?;
    for (stride, channels) in BLOCKS {
        h = b.depthwise_conv2d(
            h,
            1,
            [3, 3],
            [stride, stride],
            Padding::Same,
            Activation::Relu6,
        )?;
        h = b.conv2d(
            h,
            depth(channels),
            [1, 1],
            [1, 1],
            Padding::Same,
            Activation::Relu6,
        )?;
    }
    let out = slim_head(&mut b, h, SLIM_CLASSES)?;
    b.output(out)?;
    b.build()
}

/// Filters of one Inception module: the 1×1 branch, the 1×1 → 3×3 branch, the second
/// 1×1 → 3×3 branch, and the 1×1 after the 3×3 max pool.
struct Module {
    b0: usize,
    b1: (usize, usize),
    b2: (usize, usize),
    b3: usize,
}

const fn module(b0: usize, b1: (usize, usize), b2: (usize, usize), b3: usize) -> Module {
    Module { b0, b1, b2, b3 }
}

fn conv_relu(b: &mut ModelBuilder, x: TensorId, filters: usize, kernel: usize) -> Result<TensorId> {
    b.conv2d(
        x,
        filters,
        [kernel, kernel],
        [1, 1],
        Padding::Same,
        Activation::Relu,
    )
}

fn inception_module(b: &mut ModelBuilder, x: TensorId, m: &Module) -> Result<TensorId> {
    let branch0 = conv_relu(b, x, m.b0, 1)?;
    let reduce1 = conv_relu(b, x, m.b1.0, 1)?;
    let branch1 = conv_relu(b, reduce1, m.b1.1, 3)?;
    let reduce2 = conv_relu(b, x, m.b2.0, 1)?;
    let branch2 = conv_relu(b, reduce2, m.b2.1, 3)?;
    let pooled = b.max_pool_2d(x, [3, 3], [1, 1], Padding::Same)?;
    let branch3 = conv_relu(b, pooled, m.b3, 1)?;
    b.concatenation(&[branch0, branch1, branch2, branch3], 3)
}

/// TF-slim's Inception v1 at 224×224 (1001 classes), the model of Coral's benchmark table.
///
/// # Errors
///
/// Never for this fixed architecture, short of a builder failure.
pub fn inception_v1() -> Result<Model<'static>> {
    const MIXED_3: [Module; 2] = [
        module(64, (96, 128), (16, 32), 32),
        module(128, (128, 192), (32, 96), 64),
    ];
    const MIXED_4: [Module; 5] = [
        module(192, (96, 208), (16, 48), 64),
        module(160, (112, 224), (24, 64), 64),
        module(128, (128, 256), (24, 64), 64),
        module(112, (144, 288), (32, 64), 64),
        module(256, (160, 320), (32, 128), 128),
    ];
    const MIXED_5: [Module; 2] = [
        module(256, (160, 320), (32, 128), 128),
        module(384, (192, 384), (48, 128), 128),
    ];
    let mut b = ModelBuilder::new(0x1A_CE97_1001);
    b.description("Inception v1 224 (slim architecture)");
    let input = image_input(&mut b, 224)?;
    let mut h = b.conv2d(input, 64, [7, 7], [2, 2], Padding::Same, Activation::Relu)?;
    h = b.max_pool_2d(h, [3, 3], [2, 2], Padding::Same)?;
    h = conv_relu(&mut b, h, 64, 1)?;
    h = conv_relu(&mut b, h, 192, 3)?;
    h = b.max_pool_2d(h, [3, 3], [2, 2], Padding::Same)?;
    for m in &MIXED_3 {
        h = inception_module(&mut b, h, m)?;
    }
    h = b.max_pool_2d(h, [3, 3], [2, 2], Padding::Same)?;
    for m in &MIXED_4 {
        h = inception_module(&mut b, h, m)?;
    }
    h = b.max_pool_2d(h, [2, 2], [2, 2], Padding::Same)?;
    for m in &MIXED_5 {
        h = inception_module(&mut b, h, m)?;
    }
    let out = slim_head(&mut b, h, SLIM_CLASSES)?;
    b.output(out)?;
    b.build()
}

/// The EfficientNet-EdgeTPU sizes of Coral's benchmark table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EfficientNetEdgeTpu {
    /// Small: 224×224, the base block list.
    S,
    /// Medium: 240×240, every stage's repeats × 1.1 (rounded up).
    M,
}

impl EfficientNetEdgeTpu {
    /// Input height and width.
    pub fn resolution(self) -> usize {
        match self {
            EfficientNetEdgeTpu::S => 224,
            EfficientNetEdgeTpu::M => 240,
        }
    }

    fn depth_multiplier(self) -> f64 {
        match self {
            EfficientNetEdgeTpu::S => 1.0,
            EfficientNetEdgeTpu::M => 1.1,
        }
    }
}

/// One stage of EfficientNet-EdgeTPU's block list.
struct Stage {
    /// Fused (full-conv expansion) blocks, or inverted residuals with a depthwise conv.
    fused: bool,
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand: usize,
    /// Input channels the first block's expansion is computed from (the reference's
    /// `i24` in the first stage, whose real input has 32 channels).
    expand_from: Option<usize>,
    out: usize,
    skip: bool,
}

const fn stage(
    fused: bool,
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand: usize,
    out: usize,
) -> Stage {
    Stage {
        fused,
        repeats,
        kernel,
        stride,
        expand,
        expand_from: None,
        out,
        skip: true,
    }
}

/// EfficientNet-EdgeTPU of the given size (1000 classes, uint8 input).
///
/// # Errors
///
/// Never for these fixed architectures, short of a builder failure.
pub fn efficientnet_edgetpu(size: EfficientNetEdgeTpu) -> Result<Model<'static>> {
    let stages = [
        Stage {
            expand_from: Some(24),
            skip: false,
            ..stage(true, 1, 3, 1, 4, 24)
        },
        stage(true, 2, 3, 2, 8, 32),
        stage(true, 4, 3, 2, 8, 48),
        stage(false, 5, 5, 2, 8, 96),
        stage(false, 4, 5, 1, 8, 144),
        stage(false, 2, 5, 2, 8, 192),
    ];
    let resolution = size.resolution();
    let mut b = ModelBuilder::new(0xEFF1_0000 ^ resolution as u64);
    b.description(format!(
        "EfficientNet-EdgeTPU-{size:?} (reference architecture)"
    ));
    let input = image_input(&mut b, resolution)?;
    let mut h = b.conv2d(input, 32, [3, 3], [2, 2], Padding::Same, Activation::Relu)?;
    let mut channels = 32;
    for s in &stages {
        let repeats = (s.repeats as f64 * size.depth_multiplier()).ceil() as usize;
        for block in 0..repeats {
            let stride = if block == 0 { s.stride } else { 1 };
            let expand_from = s.expand_from.unwrap_or(channels);
            let mid = expand_from * s.expand;
            let k = [s.kernel, s.kernel];
            let x = h;
            let expanded = if s.fused {
                b.conv2d(x, mid, k, [stride, stride], Padding::Same, Activation::Relu)?
            } else {
                let e = b.conv2d(x, mid, [1, 1], [1, 1], Padding::Same, Activation::Relu)?;
                b.depthwise_conv2d(e, 1, k, [stride, stride], Padding::Same, Activation::Relu)?
            };
            h = b.conv2d(
                expanded,
                s.out,
                [1, 1],
                [1, 1],
                Padding::Same,
                Activation::None,
            )?;
            if s.skip && stride == 1 && channels == s.out {
                h = b.add(h, x, Activation::None)?;
            }
            channels = s.out;
        }
    }
    h = b.conv2d(h, 1280, [1, 1], [1, 1], Padding::Same, Activation::Relu)?;
    let map = spatial(&b, h);
    let pooled = b.average_pool_2d(h, [map, map], [1, 1], Padding::Valid)?;
    let flat = b.reshape(pooled, &[1, 1280])?;
    let logits = b.fully_connected(flat, EFFICIENTNET_CLASSES, Activation::None)?;
    let out = b.softmax(logits, 1.0)?;
    b.output(out)?;
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use multitpu::model::figures::{OpKind, op_figures};
    use multitpu::model::ops;

    fn count(model: &Model<'_>, builtin: i32) -> usize {
        model
            .operators
            .iter()
            .filter(|op| op.opcode.builtin == builtin)
            .count()
    }

    fn macs(model: &Model<'_>) -> u64 {
        (0..model.operators.len())
            .map(|op| op_figures(model, op).macs)
            .sum()
    }

    #[test]
    fn mobilenet_v1_has_the_published_size() {
        let m = mobilenet_v1(1.0, 224).expect("builds");
        assert_eq!(m.operators.len(), 31);
        assert_eq!(count(&m, ops::DEPTHWISE_CONV_2D), 13);
        assert_eq!(count(&m, ops::CONV_2D), 15);
        // The paper's figure: 569 million multiply-adds (with the 1001-class logits).
        let millions = macs(&m) as f64 / 1e6;
        assert!((millions - 569.0).abs() < 1.0, "{millions}");
        let out = &m.tensors[m.outputs[0]];
        assert_eq!(out.shape, vec![1, 1001]);
    }

    #[test]
    fn inception_v1_has_the_published_size() {
        let m = inception_v1().expect("builds");
        assert_eq!(count(&m, ops::CONCATENATION), 9);
        assert_eq!(count(&m, ops::CONV_2D), 3 + 9 * 6 + 1);
        assert_eq!(count(&m, ops::MAX_POOL_2D), 4 + 9);
        // About 1.5 billion multiply-adds, as reported for GoogLeNet.
        let billions = macs(&m) as f64 / 1e9;
        assert!((1.4..1.6).contains(&billions), "{billions}");
        let out = &m.tensors[m.outputs[0]];
        assert_eq!(out.shape, vec![1, 1001]);
    }

    #[test]
    fn efficientnet_edgetpu_stages() {
        let s = efficientnet_edgetpu(EfficientNetEdgeTpu::S).expect("builds");
        // 1 + 2 + 4 fused blocks, 5 + 4 + 2 inverted residuals.
        assert_eq!(count(&s, ops::DEPTHWISE_CONV_2D), 11);
        assert_eq!(count(&s, ops::ADD), 1 + 3 + 4 + 3 + 1);
        let dw = (0..s.operators.len())
            .map(|op| op_figures(&s, op))
            .find(|f| f.kind == OpKind::DepthwiseConv2d)
            .expect("a depthwise conv");
        assert_eq!(dw.macs, 14 * 14 * 384 * 25);
        let m = efficientnet_edgetpu(EfficientNetEdgeTpu::M).expect("builds");
        assert_eq!(count(&m, ops::DEPTHWISE_CONV_2D), 6 + 5 + 3);
        assert!(macs(&m) > macs(&s));
    }
}
