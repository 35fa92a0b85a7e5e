//! The dataflow view of a model: who produces and who consumes each tensor.

use super::Model;
use super::validate::{self, Validation};
use crate::{Error, Result};

/// Producers and consumers of every tensor of a validated [`Model`].
///
/// A graph is only built from a model that passes validation ([`Graph::new`]: strict, the
/// default; [`Graph::with_validation`]: trusted, or with custom operators), so what works
/// on a graph (planning, [`extract`](crate::model::extract)) trusts its model and does not
/// validate it again. The dataflow part of that validation is what extraction relies on:
/// every index is in range, every tensor has at most one producer, and every operator reads
/// only tensors that are constants, variables, model inputs, or produced by an earlier
/// operator (execution order).
///
/// ```
/// use multitpu::model::{Graph, paper};
///
/// # fn main() -> multitpu::Result<()> {
/// let model = paper::fc(100)?;
/// let graph = Graph::new(&model)?;
/// let input = graph.model().inputs[0];
/// let first = graph.consumers(input)[0]; // the QUANTIZE at the front
/// assert_eq!(first, 0);
/// assert!(graph.op_count() > 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Graph<'m, 'a> {
    model: &'m Model<'a>,
    producer: Vec<Option<usize>>,
    consumers: Vec<Vec<usize>>,
    /// For each tensor, the last operator that reads it (`None` if no operator does).
    last_reader: Vec<Option<usize>>,
}

impl<'m, 'a> Graph<'m, 'a> {
    /// Validates `model` strictly ([`Model::validate`]) and builds the view, or says which
    /// operator or tensor breaks it.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the operator or tensor when an index is out of range, a
    /// tensor has two producers, or an operator reads a tensor produced later;
    /// [`Error::InvalidModel`] for any other defect validation finds.
    pub fn new(model: &'m Model<'a>) -> Result<Self> {
        Self::with_validation(model, &Validation::strict())
    }

    /// [`Graph::new`] under `validation`: for a model the caller trusts
    /// ([`Validation::trusted`]) or one with custom operators it has kernels for
    /// ([`Validation::with_custom_op`]). Whatever the graph was built under, a segment cut
    /// from it is validated again where it is loaded, under that loader's options.
    ///
    /// # Errors
    ///
    /// As [`Graph::new`].
    pub fn with_validation(model: &'m Model<'a>, validation: &Validation) -> Result<Self> {
        let graph = Self::dataflow(model)?;
        validate::check(&graph, validation)?;
        Ok(graph)
    }

    /// The view without validation: what validation itself builds first.
    pub(super) fn dataflow(model: &'m Model<'a>) -> Result<Self> {
        let tensor_count = model.tensors.len();
        let in_range = |t: usize, what: String| {
            if t < tensor_count {
                Ok(())
            } else {
                Err(Error::invalid(
                    "model",
                    format!("{what} refers to tensor {t}, but there are {tensor_count} tensors"),
                ))
            }
        };
        for (i, &t) in model.inputs.iter().enumerate() {
            in_range(t, format!("model input {i}"))?;
        }
        for (i, &t) in model.outputs.iter().enumerate() {
            in_range(t, format!("model output {i}"))?;
        }

        let mut producer = vec![None; tensor_count];
        let mut consumers = vec![Vec::new(); tensor_count];
        let mut last_reader = vec![None; tensor_count];
        let mut available: Vec<bool> = model
            .tensors
            .iter()
            .map(|t| t.is_constant() || t.is_variable)
            .collect();
        for &t in &model.inputs {
            available[t] = true;
        }

        for (op_index, op) in model.operators.iter().enumerate() {
            for (slot, t) in op.present_inputs().enumerate() {
                in_range(t, format!("operator {op_index} input {slot}"))?;
                if !available[t] {
                    return Err(Error::invalid(
                        "model",
                        format!(
                            "operator {op_index} reads tensor {t} (`{}`) before any operator produces it",
                            model.tensors[t].name
                        ),
                    ));
                }
                if consumers[t].last() != Some(&op_index) {
                    consumers[t].push(op_index);
                }
                last_reader[t] = Some(op_index);
            }
            for &t in op.intermediates.iter() {
                in_range(t, format!("operator {op_index} intermediate"))?;
            }
            for (slot, &t) in op.outputs.iter().enumerate() {
                in_range(t, format!("operator {op_index} output {slot}"))?;
                if let Some(first) = producer[t] {
                    return Err(Error::invalid(
                        "model",
                        format!(
                            "tensor {t} (`{}`) is written by operators {first} and {op_index}",
                            model.tensors[t].name
                        ),
                    ));
                }
                producer[t] = Some(op_index);
                available[t] = true;
            }
        }
        for &t in &model.outputs {
            if !available[t] {
                return Err(Error::invalid(
                    "model",
                    format!("model output `{}` is never produced", model.tensors[t].name),
                ));
            }
        }
        Ok(Graph {
            model,
            producer,
            consumers,
            last_reader,
        })
    }

    /// The model this graph describes.
    pub fn model(&self) -> &'m Model<'a> {
        self.model
    }

    /// Number of operators.
    pub fn op_count(&self) -> usize {
        self.model.operators.len()
    }

    /// The operator that writes tensor `t`, if any.
    pub fn producer(&self, t: usize) -> Option<usize> {
        self.producer.get(t).copied().flatten()
    }

    /// The operators that read tensor `t`, ascending, each once.
    pub fn consumers(&self, t: usize) -> &[usize] {
        self.consumers.get(t).map_or(&[], Vec::as_slice)
    }

    /// Whether tensor `t` is produced at run time from the model inputs (not a constant or
    /// a variable): the tensors that travel between segments.
    pub fn is_activation(&self, t: usize) -> bool {
        let tensor = &self.model.tensors[t];
        !tensor.is_constant() && !tensor.is_variable
    }

    /// The activations that cross the cut before operator `cut` (`0 < cut < op_count`):
    /// produced before it (or model inputs) and read at or after it. Ascending indices.
    ///
    /// A skip connection crosses every cut between its producer and its last reader, so it
    /// appears at each of those boundaries.
    pub fn crossing(&self, cut: usize) -> Vec<usize> {
        (0..self.model.tensors.len())
            .filter(|&t| self.is_activation(t))
            .filter(|&t| match self.producer[t] {
                Some(p) => p < cut,
                None => self.model.inputs.contains(&t),
            })
            .filter(|&t| self.last_reader[t].is_some_and(|r| r >= cut))
            .collect()
    }

    /// Whether operator `op` reads or writes a variable tensor: state kept from one
    /// invocation to the next, so that two interpreters running the operator side by side
    /// would each see only part of the items.
    pub fn is_stateful(&self, op: usize) -> bool {
        self.model.operators.get(op).is_some_and(|operator| {
            operator
                .present_inputs()
                .chain(operator.outputs.iter().copied())
                .any(|t| self.model.tensors.get(t).is_some_and(|t| t.is_variable))
        })
    }

    /// Whether tensors of variables (stateful ops such as LSTMs) are touched by operators on
    /// both sides of `cut`: such a cut would split state across two interpreters.
    pub fn cut_splits_state(&self, cut: usize) -> bool {
        self.model
            .tensors
            .iter()
            .enumerate()
            .filter(|(_, tensor)| tensor.is_variable)
            .any(|(t, _)| {
                let readers = &self.consumers[t];
                readers.first().is_some_and(|&f| f < cut)
                    && readers.last().is_some_and(|&l| l >= cut)
            })
    }
}
