//! Hostile models never reach TFLite: real models (the zoo's, and the shared ones when
//! present) with one field changed (each change made here, on the parsed model, and written
//! back with our writer) end in a typed error from `Model::validate`, from `Graph::new` (so
//! no segment is cut) and from `Interpreter::new`, where without validation TFLite would
//! abort, crash or run for minutes. Every real model and the paper's
//! models still validate.
//!
//! The cases run in this process on the real runtime: a case that validation misses would
//! kill the test binary instead of failing it, which is the bug this suite guards against.

mod common;

use multitpu::Error;
use multitpu::backend::{Interpreter, InterpreterOptions};
use multitpu::model::options::FieldValue;
use multitpu::model::validate::{ModelLocation, Validation};
use multitpu::model::{ElementType, Graph, Model, extract, ops, paper};

use common::zoo;

const MNIST: &str = "MNISTnet_uint8_quant.tflite";
const MNIST_V2: &str = "MNISTnet_v2_uint8_quant.tflite";
const MOBILENET_V1: &str = "mobilenet_v1_0.25_128_quant.tflite";
const MOBILENET_V2: &str = "mobilenet_v2_1.0_224_quant.tflite";

/// MNISTnet's tensor 4: the `RESHAPE` output `[1, 10]` that feeds `SOFTMAX` (operator 8),
/// so it crosses the cut before operator 8.
const MNIST_SQUEEZE: usize = 4;
const MNIST_SQUEEZE_NAME: &str = "MNISTnet/Logits/SpatialSqueeze";

/// `bytes` of model `name`, parsed and owned, with `change` applied.
fn mutate(name: &str, bytes: &[u8], change: impl FnOnce(&mut Model<'static>)) -> Model<'static> {
    let mut model = Model::from_bytes(bytes)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_owned();
    change(&mut model);
    model
}

/// Zoo model `name` with `change` applied; `None` (skip) without the zoo.
fn zoo_mutated(name: &str, change: impl FnOnce(&mut Model<'static>)) -> Option<Model<'static>> {
    Some(mutate(name, &common::zoo_model(name)?, change))
}

/// Shared model `name` with `change` applied; `None` without the shared models.
fn shared_mutated(name: &str, change: impl FnOnce(&mut Model<'static>)) -> Option<Model<'static>> {
    Some(mutate(name, &common::shared_model(name)?, change))
}

/// The `nth` operator with builtin code `builtin`: its index and the tensor it reads first,
/// which crosses a cut in front of it.
fn nth_op(model: &Model<'_>, builtin: i32, nth: usize) -> (usize, usize) {
    let (index, op) = model
        .operators
        .iter()
        .enumerate()
        .filter(|(_, op)| op.opcode.builtin == builtin)
        .nth(nth)
        .expect("the model has this operator");
    (index, op.inputs[0].expect("a first input"))
}

/// The output of the first operator with builtin code `builtin`.
fn first_output_of(model: &Model<'_>, builtin: i32) -> usize {
    model
        .operators
        .iter()
        .find(|op| op.opcode.builtin == builtin)
        .map(|op| op.outputs[0])
        .expect("the model has this operator")
}

/// What a refusal must name.
#[derive(Debug, Clone)]
struct Expect {
    location: ModelLocation,
    field: &'static str,
}

fn at_tensor(model: &Model<'_>, index: usize, field: &'static str) -> Expect {
    Expect {
        location: ModelLocation::Tensor {
            index,
            name: model.tensors[index].name.to_string(),
        },
        field,
    }
}

fn at_subgraph(field: &'static str) -> Expect {
    Expect {
        location: ModelLocation::Subgraph,
        field,
    }
}

fn assert_refused(result: Result<impl std::fmt::Debug, Error>, expect: &Expect, what: &str) {
    match result {
        Err(Error::InvalidModel {
            location, field, ..
        }) if location == expect.location && field == expect.field => {}
        other => panic!("{what}: expected InvalidModel at {expect:?}, got {other:?}"),
    }
}

/// The mutated model is refused by `validate`, after a round trip through the writer, by
/// `Interpreter::new` (when the runtime is available), and where it would enter
/// segmentation: no graph is built of it, strict or trusted, so no plan is made of it and
/// no segment cut from it (extraction trusts its graph). Most changes are to tensors that
/// cross a cut, which the segment after it would take as its inputs.
fn check_refused(model: &Model<'_>, expect: &Expect) {
    assert_refused(model.validate(), expect, "validate");
    let bytes = model
        .to_bytes()
        .expect("the writer takes the mutated model");
    let reread = Model::from_bytes(&bytes).expect("re-read");
    assert_refused(reread.validate(), expect, "validate after a round trip");
    if let Some(runtime) = common::tflite_runtime() {
        assert_refused(
            Interpreter::new(&runtime, bytes, &InterpreterOptions::default()),
            expect,
            "Interpreter::new",
        );
    }
    assert_refused(Graph::new(model), expect, "Graph::new");
    assert_refused(
        Graph::with_validation(model, &Validation::trusted()),
        expect,
        "Graph::with_validation, trusted",
    );
}

// Each case runs on a zoo model, where the tensor to change is found by its operator, and
// on the shared MNISTnet / MobileNet files when they are there, where the indices are
// known.

#[test]
fn crossing_tensor_with_a_negative_dimension() {
    // Without validation: std::bad_alloc (SIGABRT) in TfLiteInterpreterAllocateTensors of
    // the segment that starts at SOFTMAX.
    let mut at = (0, 0);
    if let Some(m) = zoo_mutated(zoo::CNN_FLOAT_IO, |m| {
        at = nth_op(m, ops::SOFTMAX, 0);
        m.tensors[at.1].shape[1] = i32::MIN;
    }) {
        let (_, target) = at;
        check_refused(&m, &at_tensor(&m, target, "shape"));
    }
    if let Some(m) = shared_mutated(MNIST, |m| m.tensors[MNIST_SQUEEZE].shape[1] = i32::MIN) {
        assert_eq!(m.tensors[MNIST_SQUEEZE].name, MNIST_SQUEEZE_NAME);
        check_refused(&m, &at_tensor(&m, MNIST_SQUEEZE, "shape"));
    }
}

#[test]
fn crossing_tensor_with_a_huge_batch() {
    // Without validation the segment after the cut runs on 65536 rows, and the whole model
    // runs because TFLite recomputes the shape: neither matches the file.
    let mut at = (0, 0);
    if let Some(m) = zoo_mutated(zoo::CNN_FLOAT_IO, |m| {
        at = nth_op(m, ops::SOFTMAX, 0);
        m.tensors[at.1].shape[0] = 65536;
    }) {
        let (_, target) = at;
        check_refused(&m, &at_tensor(&m, target, "shape"));
    }
    // A batch of 65536 on a feature map crossing a cut in the middle of the network.
    if let Some(m) = zoo_mutated(zoo::CNN_FLOAT_IO, |m| {
        at = nth_op(m, ops::CONV_2D, 1);
        m.tensors[at.1].shape[0] = 65536;
    }) {
        let (_, target) = at;
        assert_eq!(m.tensors[target].shape.len(), 4, "a feature map");
        check_refused(&m, &at_tensor(&m, target, "shape"));
    }

    if let Some(m) = shared_mutated(MNIST, |m| m.tensors[MNIST_SQUEEZE].shape[0] = 65536) {
        check_refused(&m, &at_tensor(&m, MNIST_SQUEEZE, "shape"));
    }
    if let Some(m) = shared_mutated(MNIST, |m| m.tensors[19].shape[0] = 65536) {
        assert_eq!(m.tensors[19].shape, vec![65536, 7, 7, 128]);
        check_refused(&m, &at_tensor(&m, 19, "shape"));
    }
}

#[test]
fn model_input_with_a_huge_batch_is_refused_downstream() {
    // The input's shape is the caller's to choose, but the recorded shapes after it were
    // computed for batch 1: the first one that disagrees is named.
    if let Some(m) = zoo_mutated(zoo::CNN_INT8, |m| m.tensors[m.inputs[0]].shape[0] = 65536) {
        let first_output = m.operators[0].outputs[0];
        check_refused(&m, &at_tensor(&m, first_output, "shape"));
    }
    if let Some(m) = shared_mutated(MNIST, |m| m.tensors[22].shape[0] = 65536) {
        assert_eq!(m.inputs, vec![22]);
        check_refused(&m, &at_tensor(&m, 7, "shape"));
    }
}

#[test]
fn scales_that_abort_tflite() {
    // Each of these aborts TFLite in the first ADD of MobileNet v2 (a failed TFLITE_CHECK
    // while preparing its fixed-point rescaling); the zoo's residual network has the same
    // ADD on int8.
    for (what, change) in [
        (
            "+inf",
            Box::new(|s: &mut Vec<f32>| s[0] = f32::INFINITY) as Box<dyn Fn(&mut Vec<f32>)>,
        ),
        (
            "1e-45 (subnormal)",
            Box::new(|s: &mut Vec<f32>| s[0] = 1e-45),
        ),
        ("emptied", Box::new(|s: &mut Vec<f32>| s.clear())),
        (
            "1e-30 (normal, too small for ADD)",
            Box::new(|s: &mut Vec<f32>| s[0] = 1e-30),
        ),
    ] {
        let mut target = 0;
        let mut scale_of_first_add = |m: &mut Model<'static>| {
            target = first_output_of(m, ops::ADD);
            change(&mut m.tensors[target].quantization.as_mut().unwrap().scale);
        };
        let models = [
            zoo_mutated(zoo::RESNET, &mut scale_of_first_add),
            shared_mutated(MOBILENET_V2, &mut scale_of_first_add),
        ];
        for m in models.into_iter().flatten() {
            eprintln!("scale {what}");
            let target = first_output_of(&m, ops::ADD);
            check_refused(&m, &at_tensor(&m, target, "quantization.scale"));
        }
    }
}

#[test]
fn add_output_scale_that_overflows_in_single_precision() {
    // 2^20 · 3e38 is +inf in f32: TFLite's ADD gets a multiplier of 0 and aborts. Refused
    // as a scale above MAX_SCALE.
    let overflow = |m: &mut Model<'static>| {
        let target = first_output_of(m, ops::ADD);
        m.tensors[target].quantization.as_mut().unwrap().scale[0] = 3e38;
    };
    let models = [
        zoo_mutated(zoo::RESNET, overflow),
        shared_mutated(MNIST_V2, overflow),
    ];
    for m in models.into_iter().flatten() {
        let target = first_output_of(&m, ops::ADD);
        check_refused(&m, &at_tensor(&m, target, "quantization.scale"));
    }
}

#[test]
fn scales_on_other_tensors() {
    // The zoo model's first operator is a convolution: its output, the model input it
    // reads, its filter and its bias.
    if let Some(model) = common::zoo_model(zoo::CNN_INT8) {
        let conv = Model::from_bytes(&model).unwrap().operators[0]
            .clone()
            .into_owned();
        assert_eq!(conv.opcode.builtin, ops::CONV_2D);
        let [input, filter, bias] = [0, 1, 2].map(|i| conv.inputs[i].expect("conv input"));
        let cases = [
            (conv.outputs[0], f32::INFINITY),
            (input, 1e-45),
            (filter, f32::NAN),
            (bias, 0.0),
        ];
        for (t, scale) in cases {
            let m = mutate(zoo::CNN_INT8, &model, |m| {
                m.tensors[t].quantization.as_mut().unwrap().scale[0] = scale;
            });
            check_refused(&m, &at_tensor(&m, t, "quantization.scale"));
        }
    }
    for (t, scale) in [(7, f32::INFINITY), (22, 1e-45), (3, f32::NAN), (2, 0.0)] {
        if let Some(m) = shared_mutated(MNIST, |m| {
            m.tensors[t].quantization.as_mut().unwrap().scale[0] = scale;
        }) {
            check_refused(&m, &at_tensor(&m, t, "quantization.scale"));
        }
    }
}

#[test]
fn activations_typed_resource_or_variant() {
    // Without validation: SIGSEGV invoking the whole model or any segment that reads it.
    for element_type in [ElementType::Resource, ElementType::Variant] {
        let mut at = (0, 0);
        if let Some(m) = zoo_mutated(zoo::CNN_FLOAT_IO, |m| {
            at = nth_op(m, ops::SOFTMAX, 0);
            m.tensors[at.1].element_type = element_type;
        }) {
            let (_, target) = at;
            check_refused(&m, &at_tensor(&m, target, "type"));
        }
        if let Some(m) = shared_mutated(MNIST, |m| {
            m.tensors[MNIST_SQUEEZE].element_type = element_type
        }) {
            check_refused(&m, &at_tensor(&m, MNIST_SQUEEZE, "type"));
        }
    }
}

#[test]
fn reshape_input_of_another_type() {
    // Without validation: RESHAPE copies the float input's bytes into its quantized output,
    // past its end (SIGSEGV in the segment that starts at RESHAPE). The operator that
    // writes the input is named: it reads and writes quantized tensors.
    let reshape_input_to_float = |m: &mut Model<'static>| {
        let (_, target) = nth_op(m, ops::RESHAPE, 0);
        m.tensors[target].element_type = ElementType::F32;
    };
    let models = [
        zoo_mutated(zoo::CNN_INT8, reshape_input_to_float),
        shared_mutated(MOBILENET_V1, reshape_input_to_float),
    ];
    for m in models.into_iter().flatten() {
        let (_, target) = nth_op(&m, ops::RESHAPE, 0);
        check_refused(&m, &at_tensor(&m, target, "type"));
    }
}

#[test]
fn model_output_rewired_to_a_constant() {
    // TFLite runs it and returns the constant: only a comparison with the original shows it.
    let to_first_constant = |m: &mut Model<'static>| {
        let constant = m.tensors.iter().position(|t| t.is_constant()).unwrap();
        m.outputs[0] = constant;
    };
    if let Some(m) = zoo_mutated(zoo::CNN_INT8, to_first_constant) {
        check_refused(&m, &at_subgraph("outputs"));
    }
    if let Some(m) = shared_mutated(MNIST, |m| m.outputs[0] = 5) {
        assert!(m.tensors[5].is_constant());
        check_refused(&m, &at_subgraph("outputs"));
    }
}

#[test]
fn model_output_rewired_to_the_model_input() {
    let to_input = |m: &mut Model<'static>| m.outputs[0] = m.inputs[0];
    let models = [
        zoo_mutated(zoo::CNN_INT8, to_input),
        shared_mutated(MNIST, to_input),
    ];
    for m in models.into_iter().flatten() {
        check_refused(&m, &at_subgraph("outputs"));
    }
}

/// Every real model passes strict validation: the zoo's, the shared folder's, the benchmark
/// zoo's. The one exception is the shared model whose custom operator no runtime has
/// (TFLite fails on it anyway): strict validation names that operator, and trusted
/// validation lets it through.
#[test]
fn every_real_model_passes_strict_validation() {
    let mut files = common::every_model_file();
    // The zoo's eight, and the shared folder's eleven when it is there.
    let expected = common::zoo_dir().map_or(0, |_| common::zoo::ALL.len())
        + common::shared_dir().map_or(0, |_| 11);
    assert!(files.len() >= expected, "{} model files", files.len());
    if let Some(dir) = common::bench_zoo_dir() {
        let before = files.len();
        for entry in std::fs::read_dir(&dir).expect("list the benchmark zoo") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "tflite") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                files.push((name, std::fs::read(&path).expect("read model")));
            }
        }
        assert_eq!(files.len() - before, 10, "the benchmark zoo's ten networks");
    }
    for (name, bytes) in files {
        let model = Model::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        match model.validate() {
            Ok(()) => {}
            Err(Error::InvalidModel {
                location: ModelLocation::Operator { op, .. },
                ..
            }) if name == "model_invoking_error.tflite" && op == "fake-op-double" => {
                model
                    .validate_with(&Validation::trusted())
                    .unwrap_or_else(|e| panic!("{name}, trusted: {e}"));
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn every_segment_of_the_real_models_validates() {
    for (name, bytes) in common::cpu_models() {
        let model = Model::from_bytes(&bytes).unwrap();
        let graph = Graph::new(&model).unwrap();
        for cut in 1..graph.op_count() {
            for ops in [0..cut, cut..graph.op_count()] {
                extract(&graph, ops.clone())
                    .unwrap_or_else(|e| panic!("{name} {ops:?}: {e}"))
                    .validate()
                    .unwrap_or_else(|e| panic!("{name} {ops:?}: {e}"));
            }
        }
    }
}

#[test]
fn the_paper_models_validate() {
    for hidden in [100, 1000, 2640] {
        paper::fc(hidden).unwrap().validate().unwrap();
    }
    for filters in [32, 742] {
        paper::conv(filters).unwrap().validate().unwrap();
    }
}

/// A one-field patch of Coral's MobileNet v1 (and of the zoo's depthwise network): the
/// first depthwise convolution's dilation set to 65536, which TFLite 2.9 stores in 16 bits
/// as 0 and divides by (SIGFPE). Refused, trusted or not, naming the operator.
#[test]
fn a_depthwise_dilation_beyond_sixteen_bits() {
    let dilate = |m: &mut Model<'static>| {
        let (index, _) = nth_op(m, ops::DEPTHWISE_CONV_2D, 0);
        let options = m.operators[index].builtin_options.take().expect("options");
        m.operators[index].builtin_options = Some(
            options
                .with("dilation_h_factor", FieldValue::I32(65536))
                .expect("field"),
        );
    };
    let models = [
        shared_mutated(MOBILENET_V1, dilate),
        zoo_mutated(zoo::DEPTHWISE, dilate),
    ];
    for m in models.into_iter().flatten() {
        let (index, _) = nth_op(&m, ops::DEPTHWISE_CONV_2D, 0);
        for validation in [Validation::strict(), Validation::trusted()] {
            match m.validate_with(&validation) {
                Err(Error::InvalidModel {
                    location: ModelLocation::Operator { index: i, .. },
                    field: "builtin_options",
                    reason,
                }) => {
                    assert_eq!(i, index);
                    assert!(reason.contains("16 bits"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

/// Coral's SSD detector's second segment ends in `TFLite_Detection_PostProcess`, whose
/// kernel reads its FlexBuffer options without a verifier and trusts them against the
/// tensors' shapes. Options that break what it takes for granted are refused.
#[test]
fn detection_postprocess_options_are_checked() {
    const SSD: &str = "ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_2_edgetpu.tflite";
    let Some(bytes) = common::shared_model(SSD) else {
        return;
    };
    let original = Model::from_bytes(&bytes).unwrap();
    original.validate().expect("Coral's detector validates");
    let (index, op) = original
        .operators
        .iter()
        .enumerate()
        .find(|(_, op)| op.opcode.custom.as_deref() == Some("TFLite_Detection_PostProcess"))
        .expect("the detector's postprocess");
    let options = op.custom_options.as_deref().expect("options").to_vec();
    let patched = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut model = original.clone().into_owned();
        let mut o = options.clone();
        change(&mut o);
        model.operators[index].custom_options = Some(o.into());
        model
    };
    let refused = |model: &Model<'_>, what: &str| match model.validate() {
        Err(Error::InvalidModel {
            location: ModelLocation::Operator { index: i, .. },
            ..
        }) if i == index => {}
        other => panic!("{what}: {other:?}"),
    };
    refused(&patched(&|o| o.clear()), "no options");
    refused(&patched(&|o| o.truncate(o.len() / 2)), "truncated options");
    // The keys are stored in order; one renamed out of order breaks TFLite's binary search.
    let at = options
        .windows(b"num_classes".len())
        .position(|w| w == b"num_classes")
        .expect("a num_classes key");
    refused(&patched(&|o| o[at] = b'z'), "unsorted keys");
    // Outputs of another size than the options ask the kernel to write are refused, naming
    // the output.
    let mut model = original.clone().into_owned();
    let out = model.operators[index].outputs[0];
    model.tensors[out].shape[1] += 1;
    match model.validate() {
        Err(Error::InvalidModel {
            location: ModelLocation::Tensor { index: t, .. },
            field: "shape",
            ..
        }) if t == out => {}
        other => panic!("an output of another size: {other:?}"),
    }
}
