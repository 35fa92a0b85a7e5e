//! Segment files, re-read by our reader, describe exactly the operators, options and tensors
//! of the range they were cut from; compiled Edge TPU models are recognised and refused.

mod common;

use multitpu::Error;
use multitpu::model::validate::Validation;
use multitpu::model::{Graph, Model, Tensor, edgetpu};
use multitpu::segment::{Segmenter, UniformByParams};

use common::zoo;

const COMPILED_MODELS: &[&str] = &[
    "mobilenet_v1_0.25_128_quant_edgetpu.tflite",
    "ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_2_edgetpu.tflite",
    "ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_2_edgetpu.tflite",
];

#[test]
fn segment_files_round_trip_to_the_original_range() {
    let mut models = common::cpu_models();
    models.extend(
        common::unregistered_op_model().map(|bytes| (common::UNREGISTERED_OP.to_string(), bytes)),
    );
    let invoking_error = "model_invoking_error.tflite";
    models.extend(common::shared_model(invoking_error).map(|b| (invoking_error.to_string(), b)));
    for (name, bytes) in &models {
        let model = Model::from_bytes(bytes).unwrap();
        // Trusted: two of the models have a custom operator no runtime registers.
        let graph = Graph::with_validation(&model, &Validation::trusted()).unwrap();
        let max_segments = graph.op_count().min(4);
        for segments in 1..=max_segments {
            let plan = UniformByParams.plan(&graph, segments).unwrap();
            for (segment, part) in plan.segments.iter().zip(plan.extract(&graph).unwrap()) {
                let written = part.to_bytes().unwrap();
                let reread = Model::from_bytes(&written).unwrap();
                assert_eq!(
                    reread, part,
                    "{name}: segment {:?} changes when re-read",
                    segment.ops
                );
                let original = &model.operators[segment.ops.clone()];
                assert_eq!(reread.operators.len(), original.len());
                for (new_op, old_op) in reread.operators.iter().zip(original) {
                    assert_eq!(new_op.opcode, old_op.opcode, "{name}");
                    assert_eq!(new_op.builtin_options, old_op.builtin_options, "{name}");
                    assert_eq!(new_op.custom_options, old_op.custom_options, "{name}");
                    fn tensors<'m>(
                        m: &'m Model<'_>,
                        ts: Vec<Option<usize>>,
                    ) -> Vec<Option<&'m Tensor<'m>>> {
                        ts.into_iter().map(|t| t.map(|t| &m.tensors[t])).collect()
                    }
                    assert_eq!(
                        tensors(&reread, new_op.inputs.clone()),
                        tensors(&model, old_op.inputs.clone()),
                        "{name}: inputs of a {:?} op",
                        old_op.opcode
                    );
                    assert_eq!(
                        tensors(&reread, new_op.outputs.iter().map(|&t| Some(t)).collect()),
                        tensors(&model, old_op.outputs.iter().map(|&t| Some(t)).collect()),
                        "{name}"
                    );
                }
                let names = |m: &Model<'_>, ts: &[usize]| -> Vec<String> {
                    ts.iter().map(|&t| m.tensors[t].name.to_string()).collect()
                };
                assert_eq!(
                    names(&reread, &reread.inputs),
                    names(&model, &segment.inputs)
                );
                assert_eq!(
                    names(&reread, &reread.outputs),
                    names(&model, &segment.outputs)
                );
            }
        }
    }
}

#[test]
fn compiled_models_are_recognised_and_not_split() {
    let mut compiled = Vec::new();
    for name in [zoo::CNN_INT8, zoo::MULTI_IO] {
        compiled.extend(common::compiled_zoo_model(name).map(|b| (name.to_string(), b)));
    }
    for name in COMPILED_MODELS {
        compiled.extend(common::shared_model(name).map(|b| (name.to_string(), b)));
    }
    for (name, bytes) in &compiled {
        let model = Model::from_bytes(bytes).unwrap();
        let programs = edgetpu::programs(&model);
        assert!(!programs.is_empty(), "{name} is compiled");
        for program in &programs {
            let size = program.program_bytes.expect("the program blob is found");
            assert!(size > 4, "{name}: program of {size} bytes");
        }
        let graph = Graph::new(&model).unwrap();
        let err = UniformByParams.plan(&graph, 2).unwrap_err();
        assert!(
            matches!(&err, Error::Unsupported { feature } if feature.contains("compiled")),
            "{name}: {err}"
        );
    }
    for (name, bytes) in common::cpu_models() {
        assert!(
            !edgetpu::is_compiled(&Model::from_bytes(&bytes).unwrap()),
            "{name}"
        );
    }
}
