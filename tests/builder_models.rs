//! Models from `ModelBuilder` and `model::paper`: written with `to_bytes`, read back equal
//! with `from_bytes`, and run on the real TFLite runtime, where their outputs have the
//! built shapes and depend on the inputs.

mod common;

use multitpu::backend::{Interpreter, InterpreterOptions, Runtime};
use multitpu::model::builder::{
    Activation, ModelBuilder, Padding, SplitMix64, TensorId, WeightQuantization, per_tensor,
    range_quantization,
};
use multitpu::model::{ElementType, Model, paper};

/// Writes, re-reads and compares `model`; returns its bytes.
fn round_trip(model: &Model<'_>, what: &str) -> Vec<u8> {
    let bytes = model
        .to_bytes()
        .unwrap_or_else(|e| panic!("{what}: to_bytes: {e}"));
    let back = Model::from_bytes(&bytes).unwrap_or_else(|e| panic!("{what}: from_bytes: {e}"));
    assert_eq!(&back, model, "{what}: model read back differs");
    bytes
}

/// Random input bytes for an input tensor: floats in [-1, 1) or random quantized values.
fn random_input(rng: &mut SplitMix64, element_type: ElementType, byte_size: usize) -> Vec<u8> {
    match element_type {
        ElementType::F32 => (0..byte_size / 4)
            .flat_map(|_| rng.uniform(-1.0, 1.0).to_le_bytes())
            .collect(),
        _ => rng.bytes(byte_size),
    }
}

/// Round-trips `model`, runs it on TFLite with two different random inputs, and checks the
/// outputs' shapes and types against the model and that every output changes with the input.
fn check_model(runtime: &Runtime, model: &Model<'_>, what: &str) {
    let bytes = round_trip(model, what);
    let mut interpreter = Interpreter::new(runtime, bytes, &InterpreterOptions::default())
        .unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    assert_eq!(interpreter.inputs().len(), model.inputs.len(), "{what}");
    assert_eq!(interpreter.outputs().len(), model.outputs.len(), "{what}");
    for (info, &t) in interpreter.outputs().iter().zip(&model.outputs) {
        let tensor = &model.tensors[t];
        let shape: Vec<usize> = tensor.shape.iter().map(|&d| d as usize).collect();
        assert_eq!(info.name, tensor.name, "{what}: output name");
        assert_eq!(info.shape, shape, "{what}: output `{}` shape", tensor.name);
        assert_eq!(
            info.element_type, tensor.element_type,
            "{what}: output type"
        );
    }
    let inputs: Vec<(ElementType, usize)> = interpreter
        .inputs()
        .iter()
        .map(|i| (i.element_type, i.byte_size))
        .collect();
    let mut rng = SplitMix64::new(0x7E57);
    let mut runs = Vec::new();
    for _ in 0..2 {
        for (index, &(element_type, size)) in inputs.iter().enumerate() {
            let data = random_input(&mut rng, element_type, size);
            interpreter
                .set_input(index, &data)
                .unwrap_or_else(|e| panic!("{what}: set_input: {e}"));
        }
        interpreter
            .invoke()
            .unwrap_or_else(|e| panic!("{what}: invoke: {e}"));
        let outputs: Vec<Vec<u8>> = (0..model.outputs.len())
            .map(|i| {
                interpreter
                    .output(i)
                    .unwrap_or_else(|e| panic!("{what}: output: {e}"))
                    .to_vec()
            })
            .collect();
        runs.push(outputs);
    }
    for (i, (a, b)) in runs[0].iter().zip(&runs[1]).enumerate() {
        let name = &model.tensors[model.outputs[i]].name;
        assert_eq!(
            a.len(),
            interpreter.outputs()[i].byte_size,
            "{what}: `{name}` size"
        );
        assert_ne!(a, b, "{what}: output `{name}` does not depend on the input");
        let width = interpreter.outputs()[i].element_type.size().unwrap_or(1);
        let first = &a[..width];
        assert!(
            a.len() == width || a.chunks(width).any(|v| v != first),
            "{what}: output `{name}` is constant"
        );
    }
}

/// A one-op model of `element_type`: float input `[1, 8, 8, 4]`, quantized to
/// `element_type` unless it is F32, then `op`, then dequantized back to float.
fn single_op(
    element_type: ElementType,
    op: impl FnOnce(&mut ModelBuilder, TensorId) -> TensorId,
) -> Model<'static> {
    let mut b = ModelBuilder::new(11);
    let x = b
        .input("input", ElementType::F32, &[1, 8, 8, 4], None)
        .expect("input");
    let x = if element_type == ElementType::F32 {
        x
    } else {
        let q = range_quantization(-1.0, 1.0, element_type).expect("range");
        b.quantize(x, element_type, q).expect("quantize")
    };
    let y = op(&mut b, x);
    let y = if element_type == ElementType::F32 {
        y
    } else {
        b.dequantize(y).expect("dequantize")
    };
    b.output(y).expect("output");
    b.build().expect("build")
}

type OpCase = (&'static str, fn(&mut ModelBuilder, TensorId) -> TensorId);

/// Every builder op alone (with what it needs around it).
const OPS: &[OpCase] = &[
    ("fully_connected", |b, x| {
        b.fully_connected(x, 10, Activation::None).expect("op")
    }),
    ("fully_connected relu6", |b, x| {
        b.fully_connected(x, 10, Activation::Relu6).expect("op")
    }),
    ("fully_connected tanh", |b, x| {
        b.fully_connected(x, 10, Activation::Tanh).expect("op")
    }),
    ("conv2d same relu", |b, x| {
        b.conv2d(x, 6, [3, 3], [1, 1], Padding::Same, Activation::Relu)
            .expect("op")
    }),
    ("conv2d valid stride 2", |b, x| {
        b.conv2d(x, 5, [3, 2], [2, 2], Padding::Valid, Activation::None)
            .expect("op")
    }),
    ("depthwise_conv2d", |b, x| {
        b.depthwise_conv2d(x, 2, [3, 3], [1, 1], Padding::Same, Activation::Relu6)
            .expect("op")
    }),
    ("add", |b, x| {
        let y = b
            .conv2d(x, 4, [1, 1], [1, 1], Padding::Same, Activation::None)
            .expect("conv");
        b.add(x, y, Activation::None).expect("op")
    }),
    ("concatenation", |b, x| {
        let y = b
            .conv2d(x, 3, [3, 3], [1, 1], Padding::Same, Activation::Relu)
            .expect("conv");
        b.concatenation(&[x, y], -1).expect("op")
    }),
    ("reshape", |b, x| b.reshape(x, &[1, 16, -1]).expect("op")),
    ("average_pool_2d", |b, x| {
        b.average_pool_2d(x, [2, 2], [2, 2], Padding::Valid)
            .expect("op")
    }),
    ("max_pool_2d", |b, x| {
        b.max_pool_2d(x, [3, 3], [2, 2], Padding::Same).expect("op")
    }),
    ("softmax", |b, x| b.softmax(x, 1.0).expect("op")),
    ("tanh", |b, x| b.tanh(x).expect("op")),
];

#[test]
fn every_op_round_trips() {
    for ty in [ElementType::I8, ElementType::U8, ElementType::F32] {
        for (name, op) in OPS {
            round_trip(&single_op(ty, op), &format!("{ty:?} {name}"));
        }
    }
}

#[test]
fn every_op_runs_on_tflite() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    for ty in [ElementType::I8, ElementType::U8, ElementType::F32] {
        for (name, op) in OPS {
            check_model(&runtime, &single_op(ty, op), &format!("{ty:?} {name}"));
        }
    }
}

/// A small CNN: conv chain, a residual branch, pooling, dense head and softmax.
fn chain_with_residual(element_type: ElementType, mode: WeightQuantization) -> Model<'static> {
    let mut b = ModelBuilder::new(21);
    b.weight_quantization(mode);
    let x = b
        .input("image", ElementType::F32, &[1, 16, 16, 3], None)
        .expect("input");
    let q = range_quantization(-1.0, 1.0, element_type).expect("range");
    let x = b.quantize(x, element_type, q).expect("quantize");
    let c1 = b
        .conv2d(x, 8, [3, 3], [2, 2], Padding::Same, Activation::Relu6)
        .expect("conv");
    let d = b
        .depthwise_conv2d(c1, 1, [3, 3], [1, 1], Padding::Same, Activation::Relu)
        .expect("dw");
    let p = b
        .conv2d(d, 8, [1, 1], [1, 1], Padding::Same, Activation::None)
        .expect("pointwise");
    let r = b.add(c1, p, Activation::Relu).expect("residual");
    let pooled = b
        .average_pool_2d(r, [8, 8], [8, 8], Padding::Valid)
        .expect("pool");
    let flat = b.reshape(pooled, &[1, -1]).expect("reshape");
    let h = b
        .fully_connected(flat, 16, Activation::Tanh)
        .expect("dense");
    let logits = b.fully_connected(h, 5, Activation::None).expect("logits");
    let probs = b.softmax(logits, 1.0).expect("softmax");
    let out = b.dequantize(probs).expect("dequantize");
    b.output(out).expect("output");
    b.build().expect("build")
}

/// Two inputs (one float, one already int8), two branches joined by a concatenation, and
/// three outputs: two float, one int8.
fn multi_input_output() -> Model<'static> {
    let mut b = ModelBuilder::new(31);
    let a = b
        .input("camera", ElementType::F32, &[1, 8, 8, 3], None)
        .expect("input a");
    let qa = b
        .quantize(
            a,
            ElementType::I8,
            range_quantization(-1.0, 1.0, ElementType::I8).expect("range"),
        )
        .expect("quantize");
    let qb = b
        .input(
            "depth",
            ElementType::I8,
            &[1, 8, 8, 2],
            Some(per_tensor(0.05, -10)),
        )
        .expect("input b");
    let fa = b
        .conv2d(qa, 4, [3, 3], [1, 1], Padding::Same, Activation::Relu)
        .expect("conv a");
    let fb = b
        .conv2d(qb, 4, [3, 3], [1, 1], Padding::Same, Activation::Relu)
        .expect("conv b");
    let joined = b.concatenation(&[fa, fb], 3).expect("concat");
    let mixed = b
        .conv2d(joined, 6, [1, 1], [1, 1], Padding::Valid, Activation::None)
        .expect("mix");
    let pooled = b
        .max_pool_2d(mixed, [2, 2], [2, 2], Padding::Valid)
        .expect("pool");
    let flat = b.reshape(pooled, &[1, 96]).expect("reshape");
    let head = b.fully_connected(flat, 3, Activation::None).expect("head");
    let out_head = b.dequantize(head).expect("dequantize head");
    let out_mixed = b.dequantize(mixed).expect("dequantize mixed");
    b.output(out_head).expect("output");
    b.output(out_mixed).expect("output");
    b.output(fb).expect("output");
    b.build().expect("build")
}

#[test]
fn composite_models_round_trip() {
    for ty in [ElementType::I8, ElementType::U8] {
        round_trip(
            &chain_with_residual(ty, WeightQuantization::PerChannel),
            &format!("{ty:?} chain"),
        );
    }
    round_trip(&multi_input_output(), "multi");
}

#[test]
fn composite_models_run_on_tflite() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    for ty in [ElementType::I8, ElementType::U8] {
        for mode in [
            WeightQuantization::PerChannel,
            WeightQuantization::PerTensor,
        ] {
            let what = format!("{ty:?} {mode:?} chain with residual");
            check_model(&runtime, &chain_with_residual(ty, mode), &what);
        }
    }
    check_model(&runtime, &multi_input_output(), "multi input/output");
}

#[test]
fn paper_models_run_on_tflite() {
    let fc = paper::fc(100).expect("fc");
    let conv = paper::conv(32).expect("conv");
    round_trip(&fc, "paper fc(100)");
    round_trip(&conv, "paper conv(32)");
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    check_model(&runtime, &fc, "paper fc(100)");
    check_model(&runtime, &conv, "paper conv(32)");
}

#[test]
fn same_seed_gives_identical_bytes() {
    let bytes = |seed| {
        let mut b = ModelBuilder::new(seed);
        let x = b
            .input("x", ElementType::F32, &[1, 32], None)
            .expect("input");
        let q = b
            .quantize(
                x,
                ElementType::I8,
                range_quantization(-1.0, 1.0, ElementType::I8).expect("range"),
            )
            .expect("quantize");
        let h = b.fully_connected(q, 24, Activation::Tanh).expect("dense");
        let y = b.dequantize(h).expect("dequantize");
        b.output(y).expect("output");
        b.build().expect("build").to_bytes().expect("to_bytes")
    };
    assert_eq!(bytes(1), bytes(1));
    assert_ne!(bytes(1), bytes(2));
    assert_eq!(
        paper::fc(64).expect("fc").to_bytes().expect("bytes"),
        paper::fc(64).expect("fc").to_bytes().expect("bytes")
    );
    assert_eq!(
        paper::conv(8).expect("conv").to_bytes().expect("bytes"),
        paper::conv(8).expect("conv").to_bytes().expect("bytes")
    );
}

/// Quantized activations use their range: few values pinned at the top of the range, many
/// distinct values, and (before a ReLU) few pinned at the bottom.
#[test]
fn activations_do_not_saturate() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    for ty in [ElementType::I8, ElementType::U8] {
        for conv in [false, true] {
            let mut b = ModelBuilder::new(41);
            let shape: &[usize] = if conv { &[1, 32, 32, 3] } else { &[1, 64] };
            let x = b
                .input("input", ElementType::F32, shape, None)
                .expect("input");
            let q = range_quantization(-1.0, 1.0, ty).expect("range");
            let mut h = b.quantize(x, ty, q).expect("quantize");
            // (tensor, whether a ReLU zeroes about half of it)
            let mut probes = Vec::new();
            for _ in 0..5 {
                if conv {
                    h = b
                        .conv2d(h, 32, [3, 3], [1, 1], Padding::Same, Activation::Relu)
                        .expect("conv");
                    probes.push((h, true));
                } else {
                    let pre = b.fully_connected(h, 300, Activation::None).expect("dense");
                    h = b.tanh(pre).expect("tanh");
                    probes.push((pre, false));
                    probes.push((h, false));
                }
            }
            for &(t, _) in &probes {
                b.output(t).expect("output");
            }
            let model = b.build().expect("build");
            let bytes = model.to_bytes().expect("to_bytes");
            let mut interpreter = Interpreter::new(&runtime, bytes, &InterpreterOptions::default())
                .expect("interpreter");
            let size = interpreter.inputs()[0].byte_size;
            let input = random_input(&mut SplitMix64::new(5), ElementType::F32, size);
            interpreter.set_input(0, &input).expect("set_input");
            interpreter.invoke().expect("invoke");
            for (i, &(t, relu)) in probes.iter().enumerate() {
                let name = &model.tensors[t].name;
                let values: Vec<i32> = interpreter
                    .output(i)
                    .expect("output")
                    .iter()
                    .map(|&v| {
                        if ty == ElementType::I8 {
                            i32::from(v as i8)
                        } else {
                            i32::from(v)
                        }
                    })
                    .collect();
                let (lo, hi) = if ty == ElementType::I8 {
                    (-128, 127)
                } else {
                    (0, 255)
                };
                let share = |q: i32| {
                    values.iter().filter(|&&v| v == q).count() as f64 / values.len() as f64
                };
                let distinct = values
                    .iter()
                    .collect::<std::collections::HashSet<_>>()
                    .len();
                let what = format!("{ty:?} `{name}`");
                assert!(share(hi) < 0.05, "{what}: {:.3} at the top", share(hi));
                let bottom_limit = if relu { 0.9 } else { 0.05 };
                assert!(
                    share(lo) < bottom_limit,
                    "{what}: {:.3} at the bottom",
                    share(lo)
                );
                assert!(distinct >= 64, "{what}: only {distinct} distinct values");
            }
        }
    }
}
