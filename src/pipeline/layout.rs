//! Build-time routing: every tensor name resolved once to a slot index.
//!
//! An item travels through the pipeline as one frame holding a buffer per slot: the pipeline
//! inputs first, then every stage output in stage order. Stages read slots written by the
//! caller or by any earlier stage (so tensors can skip stages) and write their own slots; the
//! per-item path only ever indexes slots.

use std::collections::HashMap;

use crate::pipeline::stage::TensorSpec;
use crate::{Error, Result};

/// Slots one stage reads and writes, in the order of its `inputs()` and `outputs()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageRoute {
    pub(crate) inputs: Box<[usize]>,
    pub(crate) outputs: Box<[usize]>,
}

/// The resolved routing of a whole pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
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

fn invalid(reason: String) -> Error {
    Error::invalid("pipeline", reason)
}

fn check_unique(stage: usize, kind: &str, specs: &[TensorSpec]) -> Result<()> {
    for (i, spec) in specs.iter().enumerate() {
        if specs[..i].iter().any(|other| other.name == spec.name) {
            return Err(invalid(format!(
                "stage {stage} lists {kind} tensor `{}` twice",
                spec.name
            )));
        }
    }
    Ok(())
}

impl Layout {
    /// Resolves the routing of stages given by their `(inputs, outputs)` specs.
    ///
    /// Stage inputs that no earlier stage produces become pipeline inputs, in order of first
    /// use. `requested` names the pipeline outputs; `None` means the outputs of the last stage
    /// plus every stage output that no later stage reads.
    pub(crate) fn resolve(
        stages: &[(&[TensorSpec], &[TensorSpec])],
        requested: Option<&[String]>,
    ) -> Result<Layout> {
        if stages.is_empty() {
            return Err(invalid("a pipeline needs at least one stage".into()));
        }
        let mut slot_of: HashMap<&str, (usize, Origin)> = HashMap::new();
        let mut inputs: Vec<TensorSpec> = Vec::new();
        // Pass 1: check each stage on its own and find the first producer of every name.
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (s, (ins, outs)) in stages.iter().enumerate() {
            check_unique(s, "input", ins)?;
            check_unique(s, "output", outs)?;
            if let Some(spec) = outs.iter().find(|o| ins.iter().any(|i| i.name == o.name)) {
                return Err(invalid(format!(
                    "stage {s} both reads and writes tensor `{}`",
                    spec.name
                )));
            }
            for spec in outs.iter() {
                producer.entry(spec.name.as_str()).or_insert(s);
            }
        }
        // Pipeline inputs are the stage inputs that no stage produces, in order of first use.
        for (s, (ins, _)) in stages.iter().enumerate() {
            for spec in ins.iter() {
                match producer.get(spec.name.as_str()) {
                    Some(&p) if p >= s => {
                        return Err(invalid(format!(
                            "stage {s} reads `{}`, which is written only by stage {p}",
                            spec.name
                        )));
                    }
                    Some(_) => {}
                    None => {
                        if !inputs.iter().any(|i| i.name == spec.name) {
                            inputs.push(spec.clone());
                        }
                    }
                }
            }
        }
        let mut slot_sizes: Vec<usize> = Vec::new();
        for spec in &inputs {
            slot_of.insert(
                spec.name.as_str(),
                (slot_sizes.len(), Origin::PipelineInput),
            );
            slot_sizes.push(spec.byte_size);
        }
        // Pass 2: give every stage output a slot and resolve every stage input.
        let mut routes = Vec::with_capacity(stages.len());
        let mut specs_of_slot: Vec<&TensorSpec> = inputs.iter().collect();
        let mut read_by_later = vec![false; inputs.len()];
        for (s, (ins, outs)) in stages.iter().enumerate() {
            let mut in_slots = Vec::with_capacity(ins.len());
            for spec in ins.iter() {
                let &(slot, _) = slot_of.get(spec.name.as_str()).ok_or_else(|| {
                    invalid(format!(
                        "stage {s} reads `{}`, which has no producer",
                        spec.name
                    ))
                })?;
                let source = specs_of_slot[slot];
                if source.byte_size != spec.byte_size {
                    return Err(invalid(format!(
                        "stage {s} reads `{}` as {} bytes, but it has {} bytes where it is \
                         first defined",
                        spec.name, spec.byte_size, source.byte_size
                    )));
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
        let output_slots: Vec<usize> = match requested {
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

    fn specs(names: &[(&str, usize)]) -> Vec<TensorSpec> {
        names
            .iter()
            .map(|&(n, size)| TensorSpec::bytes(n, size))
            .collect()
    }

    #[test]
    fn chain_routes_by_name() {
        let (i0, o0) = (specs(&[("x", 4)]), specs(&[("a", 8)]));
        let (i1, o1) = (specs(&[("a", 8)]), specs(&[("y", 2)]));
        let layout = Layout::resolve(&[(&i0, &o0), (&i1, &o1)], None).unwrap();
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
        let layout = Layout::resolve(&[(&i0, &o0), (&i1, &o1), (&i2, &o2)], None).unwrap();
        assert_eq!(layout.inputs.len(), 1);
        assert_eq!(&*layout.stages[2].inputs, &[3, 1, 0]);
        let names: Vec<_> = layout.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["side", "y"]);
    }

    #[test]
    fn requested_outputs_in_requested_order() {
        let (i0, o0) = (specs(&[("x", 4)]), specs(&[("a", 4)]));
        let (i1, o1) = (specs(&[("a", 4)]), specs(&[("y", 4)]));
        let requested = ["y".to_string(), "a".to_string()];
        let layout = Layout::resolve(&[(&i0, &o0), (&i1, &o1)], Some(&requested)).unwrap();
        assert_eq!(&*layout.output_slots, &[2, 1]);
        let unknown = ["nope".to_string()];
        assert!(matches!(
            Layout::resolve(&[(&i0, &o0), (&i1, &o1)], Some(&unknown)),
            Err(Error::UnknownTensor { .. })
        ));
        let input = ["x".to_string()];
        assert!(Layout::resolve(&[(&i0, &o0)], Some(&input)).is_err());
    }

    #[test]
    fn rejects_inconsistent_stages() {
        let x = specs(&[("x", 4)]);
        let a = specs(&[("a", 4)]);
        let a_small = specs(&[("a", 2)]);
        let xx = specs(&[("x", 4), ("x", 4)]);
        // Size mismatch between producer and consumer.
        assert!(Layout::resolve(&[(&x, &a), (&a_small, &x)], None).is_err());
        // Output shadows a pipeline input.
        assert!(Layout::resolve(&[(&x, &a), (&a, &x)], None).is_err());
        // Same output written twice.
        assert!(Layout::resolve(&[(&x, &a), (&x, &a)], None).is_err());
        // Duplicate names within a stage.
        assert!(Layout::resolve(&[(&xx, &a)], None).is_err());
        // Reads and writes the same tensor.
        assert!(Layout::resolve(&[(&x, &x)], None).is_err());
        // No stages.
        assert!(Layout::resolve(&[], None).is_err());
    }
}
