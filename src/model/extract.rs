//! Cutting a contiguous range of operators out of a model as a standalone model.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::model::validate::Validation;
use crate::model::{Graph, Model};
use crate::{Error, Result};

/// Metadata entries that hold no tensor or operator indices and so stay valid in a segment.
/// Everything else (e.g. `TFLITE_METADATA`, which describes the whole model's inputs and
/// outputs) would describe the wrong tensors and is dropped.
const INDEX_FREE_METADATA: &[&str] = &["min_runtime_version"];

/// The activations a range of operators reads from outside it (its inputs) and the ones it
/// produces for later operators or the model's outputs (its outputs).
///
/// Inputs list the model's own inputs first, in the model's order, then the rest by tensor
/// index; outputs likewise list model outputs first, in the model's order.
pub(crate) fn interface(graph: &Graph<'_, '_>, ops: &Range<usize>) -> (Vec<usize>, Vec<usize>) {
    let model = graph.model();
    let mut read = BTreeSet::new();
    let mut produced = BTreeSet::new();
    for op in &model.operators[ops.clone()] {
        read.extend(op.present_inputs().filter(|&t| graph.is_activation(t)));
        produced.extend(op.outputs.iter().copied());
    }
    let external: BTreeSet<usize> = read.difference(&produced).copied().collect();
    let needed_later: BTreeSet<usize> = produced
        .iter()
        .copied()
        .filter(|&t| model.outputs.contains(&t) || graph.consumers(t).iter().any(|&c| c >= ops.end))
        .collect();
    (
        model_order_first(&model.inputs, &external),
        model_order_first(&model.outputs, &needed_later),
    )
}

fn model_order_first(model_order: &[usize], set: &BTreeSet<usize>) -> Vec<usize> {
    let mut ordered: Vec<usize> = model_order
        .iter()
        .copied()
        .filter(|t| set.contains(t))
        .collect();
    ordered.dedup();
    ordered.extend(set.iter().copied().filter(|t| !model_order.contains(t)));
    ordered
}

/// Writes operators `ops` of the graph's model as a model of their own.
///
/// Tensors keep their names (segments are joined by name), constant data is shared with the
/// source model, and tensors are renumbered in their original order. The segment's inputs are
/// the activations it reads from outside the range; its outputs are the ones it produces for
/// later operators or the model's outputs (both model-ordered first, as in
/// [`Segment`](crate::segment::Segment)).
///
/// The source model is not validated again: a [`Graph`] is only built from a model that
/// validates, and the segment then validates as the model does (strict or trusted). Every
/// check of validation is about one tensor, one operator and its tensors, or the interface,
/// and the segment's tensors and operators are the model's, unchanged but for their
/// numbering. Only its inputs and outputs are new, and they pass by construction: inputs
/// are activations (not constants or variables) that no operator of the segment writes,
/// outputs are written by an operator of the segment, and every activation an operator
/// reads is an input or written by an earlier operator. A segment takes the recorded
/// shapes of the tensors it reads from earlier segments as the shapes of its inputs, and
/// TFLite trusts those: validation of the source made them what its operators produce.
///
/// # Errors
///
/// [`Error::Invalid`] for an empty or out-of-range `ops`.
pub fn extract<'a>(graph: &Graph<'_, 'a>, ops: Range<usize>) -> Result<Model<'a>> {
    let model = graph.model();
    if ops.start >= ops.end || ops.end > model.operators.len() {
        return Err(Error::invalid(
            "segment",
            format!(
                "operator range {}..{} is empty or beyond the model's {} operators",
                ops.start,
                ops.end,
                model.operators.len()
            ),
        ));
    }
    let (inputs, outputs) = interface(graph, &ops);

    let mut used = BTreeSet::new();
    for op in &model.operators[ops.clone()] {
        used.extend(op.present_inputs());
        used.extend(op.outputs.iter().copied());
        used.extend(op.intermediates.iter().copied());
    }
    let mut new_index = vec![usize::MAX; model.tensors.len()];
    let mut tensors = Vec::with_capacity(used.len());
    for (new, &old) in used.iter().enumerate() {
        new_index[old] = new;
        tensors.push(model.tensors[old].clone());
    }
    let remap = |t: usize| new_index[t];

    let operators = model.operators[ops]
        .iter()
        .map(|op| {
            let mut op = op.clone();
            for input in op.inputs.iter_mut().flatten() {
                *input = remap(*input);
            }
            for t in op.outputs.iter_mut().chain(op.intermediates.iter_mut()) {
                *t = remap(*t);
            }
            op
        })
        .collect();

    let segment = Model {
        version: model.version,
        description: model.description.clone(),
        subgraph_name: model.subgraph_name.clone(),
        tensors,
        operators,
        inputs: inputs.into_iter().map(remap).collect(),
        outputs: outputs.into_iter().map(remap).collect(),
        metadata: model
            .metadata
            .iter()
            .filter(|m| INDEX_FREE_METADATA.contains(&m.name.as_ref()))
            .cloned()
            .collect(),
    };
    // What reaches TFLite is still validated where it is loaded (each backend validates the
    // bytes it is given under its own options); this only catches a cut that breaks the
    // argument above, in the builds the tests and fuzzers run.
    debug_assert!(
        segment.validate_with(&Validation::trusted()).is_ok(),
        "a segment of a validated model validates: {:?}",
        segment.validate_with(&Validation::trusted())
    );
    Ok(segment)
}
