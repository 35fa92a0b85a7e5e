//! Build-time routing: every tensor name resolved once to a slot index.
//!
//! An item travels through the pipeline as one frame holding a buffer per slot: the pipeline
//! inputs first, then every stage output in stage order. Stages read slots written by the
//! caller or by any earlier stage (so tensors can skip stages) and write their own slots; the
//! per-item path only ever indexes slots.

use std::collections::HashMap;

use crate::tensor::TensorSpec;
use crate::{Error, Result};

/// Slots one stage reads and writes, in the order of its `inputs()` and `outputs()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageRoute {
    pub(crate) inputs: Box<[usize]>,
    pub(crate) outputs: Box<[usize]>,
}

/// The resolved routing of a whole pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// Byte size of every slot.
    pub(crate) slot_sizes: Box<[usize]>,
    /// The pipeline inputs; input `i` lives in slot `i`.
    pub(crate) inputs: Box<[TensorSpec]>,
    /// The pipeline outputs, in the order they are reported.
    pub(crate) outputs: Box<[TensorSpec]>,
    /// Slot of each pipeline output.
    pub(crate) output_slots: Box<[usize]>,
    /// Routing of each stage.
    pub(crate) stages: Box<[StageRoute]>,
}

/// Where a tensor name was first defined.
#[derive(Clone, Copy)]
enum Origin {
    PipelineInput,
    Stage(usize),
}

impl Origin {
    fn stage(self) -> Option<usize> {
        match self {
            Origin::PipelineInput => None,
            Origin::Stage(s) => Some(s),
        }
    }
}

/// What the layout needs of one stage: its inputs, its outputs and its description.
pub(crate) type StageTensors<'a> = (&'a [TensorSpec], &'a [TensorSpec], &'a str);

fn invalid(reason: String) -> Error {
    Error::invalid("pipeline", reason)
}

/// Every tensor of a stage has a name, and no two of its inputs (or outputs) share one.
fn check_unique(stage: usize, kind: &str, specs: &[TensorSpec]) -> Result<()> {
    for (i, spec) in specs.iter().enumerate() {
        if spec.name.is_empty() {
            return Err(invalid(format!(
                "stage {stage} {kind} {i} is a tensor without a name, but stages are joined by \
                 tensor name"
            )));
        }
        if specs[..i].iter().any(|other| other.name == spec.name) {
            return Err(invalid(format!(
                "stage {stage} lists {kind} tensor `{}` twice",
                spec.name
            )));
        }
    }
    Ok(())
}

/// The pipeline inputs: the tensors named in `requested`, with the spec of their first
/// reader, or else the first stage's inputs.
fn pipeline_inputs(
    stages: &[StageTensors<'_>],
    requested: Option<&[String]>,
) -> Result<Vec<TensorSpec>> {
    let Some(names) = requested else {
        return Ok(stages[0].0.to_vec());
    };
    let mut inputs: Vec<TensorSpec> = Vec::with_capacity(names.len());
    for name in names {
        if inputs.iter().any(|i| &i.name == name) {
            return Err(Error::DuplicateTensor {
                kind: "pipeline input",
                name: name.clone(),
            });
        }
        let first_reader = stages
            .iter()
            .find_map(|(ins, _, _)| ins.iter().find(|spec| &spec.name == name));
        match first_reader {
            Some(spec) => inputs.push(spec.clone()),
            None => {
                return Err(Error::UnknownTensor {
                    kind: "stage input",
                    name: name.clone(),
                });
            }
        }
    }
    Ok(inputs)
}

impl Layout {
    /// Resolves the routing of stages given by their inputs, outputs and descriptions.
    ///
    /// `inputs` names the pipeline inputs; `None` takes the first stage's inputs, the one
    /// choice that needs no guess: any other tensor a stage reads must be written by an
    /// earlier stage. `outputs` names the pipeline outputs; `None` means the outputs of the
    /// last stage plus every stage output that no later stage reads.
    ///
    /// Every tensor a stage reads must come from a pipeline input or an earlier stage with
    /// the same element type, byte size and quantization (shapes may differ, e.g. a flat
    /// view).
    pub(crate) fn resolve(
        stages: &[StageTensors<'_>],
        inputs: Option<&[String]>,
        outputs: Option<&[String]>,
    ) -> Result<Layout> {
        if stages.is_empty() {
            return Err(invalid("a pipeline needs at least one stage".into()));
        }
        for (s, (ins, outs, _)) in stages.iter().enumerate() {
            check_unique(s, "input", ins)?;
            check_unique(s, "output", outs)?;
            if let Some(spec) = outs.iter().find(|o| ins.iter().any(|i| i.name == o.name)) {
                return Err(invalid(format!(
                    "stage {s} both reads and writes tensor `{}`",
                    spec.name
                )));
            }
        }
        let inputs = pipeline_inputs(stages, inputs)?;
        let mut slot_of: HashMap<&str, (usize, Origin)> = HashMap::new();
        let mut slot_sizes: Vec<usize> = Vec::new();
        for spec in &inputs {
            slot_of.insert(
                spec.name.as_str(),
                (slot_sizes.len(), Origin::PipelineInput),
            );
            slot_sizes.push(spec.byte_size);
        }
        // Give every stage output a slot and resolve every stage input, in stage order.
        let mut routes = Vec::with_capacity(stages.len());
        let mut specs_of_slot: Vec<&TensorSpec> = inputs.iter().collect();
        let mut read_by_later = vec![false; inputs.len()];
        for (s, &(ins, outs, desc)) in stages.iter().enumerate() {
            let mut in_slots = Vec::with_capacity(ins.len());
            for spec in ins.iter() {
                let Some(&(slot, origin)) = slot_of.get(spec.name.as_str()) else {
                    let written_by = stages[s..]
                        .iter()
                        .position(|(_, outs, _)| outs.iter().any(|o| o.name == spec.name))
                        .map(|p| s + p);
                    return Err(Error::NoProducer {
                        stage: s,
                        stage_desc: desc.to_string(),
                        tensor: spec.name.clone(),
                        written_by,
                        pipeline_inputs: inputs.iter().map(|i| i.name.clone()).collect(),
                    });
                };
                let provided = specs_of_slot[slot];
                if !provided.same_data(spec) {
                    return Err(Error::TensorMismatch {
                        stage: s,
                        stage_desc: desc.to_string(),
                        tensor: spec.name.clone(),
                        provided_by: origin.stage(),
                        provided: Box::new(provided.clone()),
                        read: Box::new(spec.clone()),
                    });
                }
                read_by_later[slot] = true;
                in_slots.push(slot);
            }
            let mut out_slots = Vec::with_capacity(outs.len());
            for spec in outs.iter() {
                if let Some(&(_, origin)) = slot_of.get(spec.name.as_str()) {
                    let first = match origin {
                        Origin::PipelineInput => "a pipeline input".to_string(),
                        Origin::Stage(p) => format!("an output of stage {p}"),
                    };
                    return Err(invalid(format!(
                        "stage {s} writes `{}`, which is already {first}",
                        spec.name
                    )));
                }
                let slot = slot_sizes.len();
                slot_of.insert(spec.name.as_str(), (slot, Origin::Stage(s)));
                slot_sizes.push(spec.byte_size);
                specs_of_slot.push(spec);
                read_by_later.push(false);
                out_slots.push(slot);
            }
            routes.push(StageRoute {
                inputs: in_slots.into(),
                outputs: out_slots.into(),
            });
        }
        let output_slots: Vec<usize> = match outputs {
            Some(names) => {
                let mut slots = Vec::with_capacity(names.len());
                for name in names {
                    match slot_of.get(name.as_str()) {
                        Some(&(slot, Origin::Stage(_))) => {
                            if slots.contains(&slot) {
                                return Err(invalid(format!("output `{name}` is requested twice")));
                            }
                            slots.push(slot);
                        }
                        Some(&(_, Origin::PipelineInput)) => {
                            return Err(invalid(format!(
                                "`{name}` is a pipeline input, not a stage output"
                            )));
                        }
                        None => {
                            return Err(Error::UnknownTensor {
                                kind: "stage output",
                                name: name.clone(),
                            });
                        }
                    }
                }
                slots
            }
            None => {
                let last = &routes[routes.len() - 1];
                (inputs.len()..slot_sizes.len())
                    .filter(|&slot| !read_by_later[slot] || last.outputs.contains(&slot))
                    .collect()
            }
        };
        if output_slots.is_empty() {
            return Err(invalid("the pipeline has no outputs".into()));
        }
        let outputs = output_slots
            .iter()
            .map(|&slot| specs_of_slot[slot].clone())
            .collect();
        Ok(Layout {
            slot_sizes: slot_sizes.into(),
            inputs: inputs.into(),
            outputs,
            output_slots: output_slots.into(),
            stages: routes.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ElementType, Quantization};

    fn specs(names: &[(&str, usize)]) -> Vec<TensorSpec> {
        names
            .iter()
            .map(|&(n, size)| TensorSpec::bytes(n, size))
            .collect()
    }

    /// Stages without descriptions.
    fn stages<'a>(pairs: &[(&'a [TensorSpec], &'a [TensorSpec])]) -> Vec<StageTensors<'a>> {
        pairs.iter().map(|&(i, o)| (i, o, "")).collect()
    }

    fn resolve(pairs: &[(&[TensorSpec], &[TensorSpec])]) -> Result<Layout> {
        Layout::resolve(&stages(pairs), None, None)
    }

    #[test]
    fn chain_routes_by_name() {
        let (i0, o0) = (specs(&[("x", 4)]), specs(&[("a", 8)]));
        let (i1, o1) = (specs(&[("a", 8)]), specs(&[("y", 2)]));
        let layout = resolve(&[(&i0, &o0), (&i1, &o1)]).unwrap();
        assert_eq!(&*layout.slot_sizes, &[4, 8, 2]);
        assert_eq!(layout.inputs.len(), 1);
        assert_eq!(&*layout.stages[0].inputs, &[0]);
        assert_eq!(&*layout.stages[0].outputs, &[1]);
        assert_eq!(&*layout.stages[1].inputs, &[1]);
        assert_eq!(&*layout.output_slots, &[2]);
        assert_eq!(layout.outputs[0].name, "y");
    }

    #[test]
    fn skip_connection_and_unconsumed_outputs() {
        // Stage 0 writes a (read by stage 2) and side (read by nobody); stage 2 also reads
        // the pipeline input x directly.
        let (i0, o0) = (specs(&[("x", 4)]), specs(&[("a", 4), ("side", 1)]));
        let (i1, o1) = (specs(&[("x", 4)]), specs(&[("b", 4)]));
        let (i2, o2) = (specs(&[("b", 4), ("a", 4), ("x", 4)]), specs(&[("y", 4)]));
        let layout = resolve(&[(&i0, &o0), (&i1, &o1), (&i2, &o2)]).unwrap();
        assert_eq!(layout.inputs.len(), 1);
        assert_eq!(&*layout.stages[2].inputs, &[3, 1, 0]);
        let names: Vec<_> = layout.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["side", "y"]);
    }

    #[test]
    fn requested_outputs_in_requested_order() {
        let (i0, o0) = (specs(&[("x", 4)]), specs(&[("a", 4)]));
        let (i1, o1) = (specs(&[("a", 4)]), specs(&[("y", 4)]));
        let two = stages(&[(&i0, &o0), (&i1, &o1)]);
        let requested = ["y".to_string(), "a".to_string()];
        let layout = Layout::resolve(&two, None, Some(&requested)).unwrap();
        assert_eq!(&*layout.output_slots, &[2, 1]);
        let unknown = ["nope".to_string()];
        assert!(matches!(
            Layout::resolve(&two, None, Some(&unknown)),
            Err(Error::UnknownTensor { .. })
        ));
        let input = ["x".to_string()];
        assert!(Layout::resolve(&two[..1], None, Some(&input)).is_err());
    }

    #[test]
    fn inputs_beyond_the_first_stage_must_be_named() {
        // Stage 1 reads z, which stage 0 does not: a skip from a pipeline input, or a
        // missing stage? Only naming the inputs tells.
        let (i0, o0) = (specs(&[("x", 4)]), specs(&[("a", 4)]));
        let (i1, o1) = (specs(&[("a", 4), ("z", 2)]), specs(&[("y", 4)]));
        let two = stages(&[(&i0, &o0), (&i1, &o1)]);
        assert!(matches!(
            Layout::resolve(&two, None, None),
            Err(Error::NoProducer { stage: 1, ref tensor, written_by: None, .. }) if tensor == "z"
        ));
        let named = ["z".to_string(), "x".to_string()];
        let layout = Layout::resolve(&two, Some(&named), None).unwrap();
        let names: Vec<_> = layout.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["z", "x"]);
        assert_eq!(&*layout.stages[1].inputs, &[2, 0]);
        // Named inputs are read by some stage, once each.
        let unread = ["x".to_string(), "z".to_string(), "w".to_string()];
        assert!(matches!(
            Layout::resolve(&two, Some(&unread), None),
            Err(Error::UnknownTensor { ref name, .. }) if name == "w"
        ));
        let twice = ["x".to_string(), "z".to_string(), "x".to_string()];
        assert!(matches!(
            Layout::resolve(&two, Some(&twice), None),
            Err(Error::DuplicateTensor { .. })
        ));
    }

    #[test]
    fn out_of_order_stages_name_the_tensor_and_the_writer() {
        let (i0, o0) = (specs(&[("x", 4)]), specs(&[("a", 4)]));
        let (i1, o1) = (specs(&[("a", 4)]), specs(&[("y", 4)]));
        let swapped = stages(&[(&i1, &o1), (&i0, &o0)]);
        let named = ["x".to_string()];
        let error = Layout::resolve(&swapped, Some(&named), None).unwrap_err();
        assert!(
            matches!(&error, Error::NoProducer { stage: 0, tensor, written_by: Some(1), .. } if tensor == "a"),
            "{error}"
        );
    }

    #[test]
    fn type_and_size_must_match_the_provider() {
        let x = specs(&[("x", 4)]);
        let a = specs(&[("a", 4)]);
        let a_small = specs(&[("a", 2)]);
        let a_signed = vec![TensorSpec::new("a", ElementType::I8, vec![4], 4)];
        let a_flat = vec![TensorSpec::new("a", ElementType::U8, vec![2, 2], 4)];
        let a_quantized = vec![TensorSpec::bytes("a", 4).with_quantization(Quantization {
            scale: vec![0.5],
            zero_point: vec![3],
            ..Default::default()
        })];
        for wrong in [&a_small, &a_signed, &a_quantized] {
            let error = resolve(&[(&x, &a), (wrong, &specs(&[("y", 1)]))]).unwrap_err();
            assert!(
                matches!(&error, Error::TensorMismatch { stage: 1, tensor, provided_by: Some(0), .. } if tensor == "a"),
                "{error}"
            );
        }
        assert!(resolve(&[(&x, &a), (&a_flat, &specs(&[("y", 1)]))]).is_ok());
        // Two readers of a pipeline input disagree.
        let x_small = specs(&[("x", 2)]);
        let error = resolve(&[(&x, &a), (&x_small, &specs(&[("y", 1)]))]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::TensorMismatch {
                    provided_by: None,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn rejects_inconsistent_stages() {
        let x = specs(&[("x", 4)]);
        let a = specs(&[("a", 4)]);
        let xx = specs(&[("x", 4), ("x", 4)]);
        // Output shadows a pipeline input.
        assert!(resolve(&[(&x, &a), (&a, &x)]).is_err());
        // Same output written twice.
        assert!(resolve(&[(&x, &a), (&x, &a)]).is_err());
        // Duplicate names within a stage.
        assert!(resolve(&[(&xx, &a)]).is_err());
        // Reads and writes the same tensor.
        assert!(resolve(&[(&x, &x)]).is_err());
        // Tensors without a name: named by their place in the stage.
        let unnamed = specs(&[("", 4)]);
        let check = |result: Result<Layout>, place: &str| {
            let message = result.unwrap_err().to_string();
            assert!(
                message.contains(&format!("{place} is a tensor without a name")),
                "{message}"
            );
        };
        check(resolve(&[(&unnamed, &a)]), "stage 0 input 0");
        check(resolve(&[(&x, &a), (&a, &unnamed)]), "stage 1 output 0");
        check(resolve(&[(&unnamed, &unnamed)]), "stage 0 input 0");
        // No stages.
        assert!(resolve(&[]).is_err());
    }
}
