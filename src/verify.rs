//! Checking that chained segments compute exactly what the whole model computes.
//!
//! [`SegmentChain`] runs segment models one after another on the TFLite CPU runtime, passing
//! tensors by name (as Coral's pipeline does), so a tensor that skips segments still reaches
//! the one that reads it. [`verify_chain`] feeds the same random inputs to the whole model
//! and to the chain and compares every model output byte for byte.
//!
//! Both run TFLite in this process, where a model that crashes TFLite's kernels takes the
//! process with it. For models from untrusted sources, [`Isolation`](crate::isolate::Isolation)
//! runs the same checks in a child process with bounded memory and time, and reports a crash
//! as [`Error::Isolated`] naming the model.

use std::sync::Arc;

use crate::backend::{Interpreter, InterpreterOptions, Runtime};
use crate::model::ElementType;
use crate::model::builder::SplitMix64;
use crate::tensor::TensorSpec;
use crate::{Error, Result};

/// Named tensors travelling between segments.
pub type NamedTensors = Vec<(String, Vec<u8>)>;

/// Segment models run in sequence on CPU interpreters, joined by tensor name.
pub struct SegmentChain {
    interpreters: Vec<Interpreter>,
}

impl SegmentChain {
    /// Loads every segment (serialized `.tflite` bytes, in order) into its own interpreter.
    ///
    /// # Errors
    ///
    /// As [`Interpreter::new`] for each segment.
    pub fn new(
        runtime: &Runtime,
        segments: impl IntoIterator<Item = Vec<u8>>,
        options: &InterpreterOptions,
    ) -> Result<Self> {
        let interpreters = segments
            .into_iter()
            .map(|bytes| Interpreter::new(runtime, Arc::<[u8]>::from(bytes), options))
            .collect::<Result<Vec<_>>>()?;
        Ok(SegmentChain { interpreters })
    }

    /// The interpreters, in segment order.
    pub fn interpreters(&self) -> &[Interpreter] {
        &self.interpreters
    }

    /// Runs the chain: `inputs` are the model inputs by name; returns every tensor any
    /// segment produced, by name, in the order they were produced.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when a segment reads a tensor neither the inputs nor an earlier
    /// segment provide; errors of the interpreters' calls.
    pub fn run(&mut self, inputs: &[(String, Vec<u8>)]) -> Result<NamedTensors> {
        self.run_reporting(inputs, &mut |_| {})
    }

    /// [`run`](Self::run), calling `before_invoke` with each segment's index before it runs.
    fn run_reporting(
        &mut self,
        inputs: &[(String, Vec<u8>)],
        before_invoke: &mut dyn FnMut(usize),
    ) -> Result<NamedTensors> {
        let mut available: NamedTensors = inputs.to_vec();
        let mut produced = NamedTensors::new();
        for (index, interpreter) in self.interpreters.iter_mut().enumerate() {
            for slot in 0..interpreter.inputs().len() {
                let name = &interpreter.inputs()[slot].name;
                let data = available
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, d)| d)
                    .ok_or_else(|| {
                        Error::invalid(
                            "segment chain",
                            format!(
                                "segment {index} reads `{name}`, which nothing before it produces"
                            ),
                        )
                    })?;
                interpreter.set_input(slot, data)?;
            }
            before_invoke(index);
            interpreter.invoke()?;
            for slot in 0..interpreter.outputs().len() {
                let name = interpreter.outputs()[slot].name.clone();
                let data = interpreter.output(slot)?.to_vec();
                available.push((name.clone(), data.clone()));
                produced.push((name, data));
            }
        }
        Ok(produced)
    }
}

/// The outcome of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Trials whose every model output was byte-identical.
    pub identical: usize,
    /// Trials run.
    pub trials: usize,
    /// The first difference seen: trial, output name, first differing byte.
    pub first_difference: Option<String>,
}

/// Runs `trials` random inputs (seeded) through the whole model and through the chained
/// segments, comparing every model output byte for byte.
///
/// Errors loading the models are returned; an error while running a trial is reported as
/// that trial's difference and ends the check.
///
/// # Errors
///
/// As [`Interpreter::new`] for the whole model and each segment.
pub fn verify_chain(
    runtime: &Runtime,
    whole_model: &[u8],
    segments: Vec<Vec<u8>>,
    trials: usize,
    seed: u64,
) -> Result<VerifyReport> {
    let segments = segments.into_iter().map(Arc::from).collect();
    verify_chain_reporting(
        runtime,
        Arc::from(whole_model),
        segments,
        trials,
        seed,
        &InterpreterOptions::default(),
        &mut |_| {},
    )
}

/// What a check is about to do with which model, reported before it starts: the step a crash
/// happened in, for isolated checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Reading the model and building its interpreter.
    Load {
        /// The model's position in the check (for [`verify_chain`]: 0 is the whole model,
        /// segment `i` is `i + 1`).
        model: usize,
    },
    /// Running it on one input.
    Invoke {
        /// As in [`Step::Load`].
        model: usize,
        /// The trial, from 0.
        trial: usize,
    },
}

/// [`verify_chain`], calling `progress` before each step.
pub(crate) fn verify_chain_reporting(
    runtime: &Runtime,
    whole_model: Arc<[u8]>,
    segments: Vec<Arc<[u8]>>,
    trials: usize,
    seed: u64,
    options: &InterpreterOptions,
    progress: &mut dyn FnMut(Step),
) -> Result<VerifyReport> {
    progress(Step::Load { model: 0 });
    let mut whole = Interpreter::new(runtime, whole_model, options)?;
    let interpreters = segments
        .into_iter()
        .enumerate()
        .map(|(index, bytes)| {
            progress(Step::Load { model: index + 1 });
            Interpreter::new(runtime, bytes, options)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut chain = SegmentChain { interpreters };
    let mut rng = SplitMix64::new(seed);
    let mut report = VerifyReport {
        identical: 0,
        trials,
        first_difference: None,
    };
    for trial in 0..trials {
        let inputs = whole
            .inputs()
            .iter()
            .map(|info| Ok((info.name.clone(), random_tensor(info, &mut rng)?)))
            .collect::<Result<NamedTensors>>()?;
        // A run that fails ends the check: later trials would fail the same way.
        match compare_once(&mut whole, &mut chain, &inputs, trial, progress) {
            Ok(None) => report.identical += 1,
            Ok(Some(difference)) => {
                report
                    .first_difference
                    .get_or_insert(format!("trial {trial}: {difference}"));
            }
            Err(error) => {
                report.first_difference = Some(format!("trial {trial}: {error}"));
                break;
            }
        }
    }
    Ok(report)
}

/// Loads each model into its own CPU interpreter and invokes it on `trials` seeded random
/// inputs, one model after the other, calling `progress` before each step. Fails with the
/// first error.
pub(crate) fn check_models(
    runtime: &Runtime,
    models: Vec<Arc<[u8]>>,
    trials: usize,
    seed: u64,
    options: &InterpreterOptions,
    progress: &mut dyn FnMut(Step),
) -> Result<()> {
    let mut rng = SplitMix64::new(seed);
    for (model, bytes) in models.into_iter().enumerate() {
        progress(Step::Load { model });
        let mut interpreter = Interpreter::new(runtime, bytes, options)?;
        for trial in 0..trials {
            for slot in 0..interpreter.inputs().len() {
                let data = random_tensor(&interpreter.inputs()[slot], &mut rng)?;
                interpreter.set_input(slot, &data)?;
            }
            progress(Step::Invoke { model, trial });
            interpreter.invoke()?;
        }
    }
    Ok(())
}

/// Runs one input through the whole model and the chain; describes the first output that
/// differs, if any.
fn compare_once(
    whole: &mut Interpreter,
    chain: &mut SegmentChain,
    inputs: &[(String, Vec<u8>)],
    trial: usize,
    progress: &mut dyn FnMut(Step),
) -> Result<Option<String>> {
    for (slot, (_, data)) in inputs.iter().enumerate() {
        whole.set_input(slot, data)?;
    }
    progress(Step::Invoke { model: 0, trial });
    whole.invoke()?;
    let produced = chain.run_reporting(inputs, &mut |segment| {
        progress(Step::Invoke {
            model: segment + 1,
            trial,
        })
    })?;
    for (slot, info) in whole.outputs().iter().enumerate() {
        let expected = whole.output(slot)?;
        let difference = match produced.iter().rev().find(|(n, _)| *n == info.name) {
            None => Some(format!("the segments never produce `{}`", info.name)),
            Some((_, actual)) if actual.len() != expected.len() => Some(format!(
                "`{}` has {} bytes from the segments, {} from the whole model",
                info.name,
                actual.len(),
                expected.len()
            )),
            Some((_, actual)) => actual
                .iter()
                .zip(expected)
                .position(|(a, e)| a != e)
                .map(|at| format!("`{}` differs at byte {at}", info.name)),
        };
        if difference.is_some() {
            return Ok(difference);
        }
    }
    Ok(None)
}

/// Random contents for a tensor, valid for its type: any bit pattern for integer types,
/// values in [-1, 1) for floats, 0 or 1 for booleans. Strings, resources and variants have
/// no fixed layout to fill, so they are refused.
///
/// # Errors
///
/// [`Error::Unsupported`] for strings, resources, variants and other types without a fixed
/// layout.
pub fn random_tensor(info: &TensorSpec, rng: &mut SplitMix64) -> Result<Vec<u8>> {
    let mut data = vec![0u8; info.byte_size];
    match info.element_type {
        ElementType::F32 => {
            for chunk in data.chunks_exact_mut(4) {
                chunk.copy_from_slice(&rng.uniform(-1.0, 1.0).to_le_bytes());
            }
        }
        ElementType::F64 => {
            for chunk in data.chunks_exact_mut(8) {
                chunk.copy_from_slice(&f64::from(rng.uniform(-1.0, 1.0)).to_le_bytes());
            }
        }
        ElementType::Bool => data
            .iter_mut()
            .for_each(|b| *b = (rng.next_u64() & 1) as u8),
        ElementType::String | ElementType::Resource | ElementType::Variant => {
            return Err(Error::unsupported(format!(
                "random inputs for tensor `{}` of type {:?}",
                info.name, info.element_type
            )));
        }
        _ => return Ok(rng.bytes(info.byte_size)),
    }
    Ok(data)
}
