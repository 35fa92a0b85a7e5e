//! Segment files, re-read by our reader, describe exactly the operators, options and tensors
//! of the range they were cut from; compiled Edge TPU models are recognised and refused; the
//! plan tables of real models fit a terminal.

mod common;

use multitpu::Error;
use multitpu::device::CpuCostModel;
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::validate::Validation;
use multitpu::model::{Graph, Model, Tensor, edgetpu};
use multitpu::segment::{STRATEGY_NAMES, Segmenter, TABLE_WIDTH, UniformByParams, strategy};

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

#[test]
fn plan_tables_of_real_models_fit_a_terminal_and_name_every_exchanged_tensor() {
    let cost_model = EdgeTpuCostModel::usb_default();
    let models = common::cpu_models();
    let mut elided = false;
    for (name, bytes) in &models {
        let model = Model::from_bytes(bytes).unwrap();
        let graph = Graph::new(&model).unwrap();
        for strategy_name in STRATEGY_NAMES {
            let segmenter = strategy(strategy_name, &cost_model).unwrap();
            for segments in 1..=graph.op_count().min(3) {
                let mut plan = segmenter.plan(&graph, segments).unwrap();
                plan.with_predictions(&model, &cost_model, &CpuCostModel::default())
                    .unwrap();
                let table = plan
                    .table()
                    .with_names(&model)
                    .with_prediction_label("predicted (simulated)")
                    .to_string();
                let context = format!("{name}, {strategy_name} into {segments}:\n{table}");
                elided |= table.contains('…');
                for line in table.lines() {
                    assert!(line.chars().count() <= TABLE_WIDTH, "{context}");
                }
                for segment in &plan.segments {
                    for &t in segment.inputs.iter().chain(&segment.outputs) {
                        // Whole, or elided because it could not fit a line: its start shown.
                        let tensor = &model.tensors[t].name;
                        let start: String = tensor.chars().take(30).collect();
                        let shown = table.contains(tensor.as_ref())
                            || (tensor.chars().count() > TABLE_WIDTH - 10
                                && table.contains(&start));
                        assert!(shown, "tensor `{tensor}` is missing: {context}");
                    }
                }
            }
        }
    }
    // The zoo's MobileNetV2 names tensors by whole scopes, longer than a line.
    assert!(elided || models.is_empty(), "no table elided a name");
}
