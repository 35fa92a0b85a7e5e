//! The TFLite CPU backend: every pipeline stage is a TFLite interpreter on the host CPU.
//!
//! [`InterpreterStage`] adapts any [`Interpreter`] to the pipeline's [`Stage`] trait, so an
//! Edge TPU backend (an interpreter with an Edge TPU delegate) can reuse it.
#![deny(unsafe_code)]

use std::sync::Arc;

use crate::backend::custom_op::CustomOp;
use crate::backend::tflite::{Interpreter, InterpreterOptions, Runtime};
use crate::backend::{Backend, Stage, check_run_arity};
use crate::model::Model;
use crate::model::edgetpu::{self, EDGETPU_CUSTOM_OP};
use crate::tensor::TensorSpec;
use crate::{Error, Result};

/// Runs segments with TFLite's CPU kernels.
///
/// "Devices" are independent interpreters: `device_index` only labels the stage, so a
/// replicated stage on the CPU runs one interpreter per replica, each on its own thread.
///
/// ```
/// use multitpu::backend::{Backend, CpuBackend, Runtime};
/// use multitpu::model::paper;
///
/// # fn main() -> multitpu::Result<()> {
/// let backend = CpuBackend::new(Runtime::load()?, 2, false); // 2 kernel threads, no XNNPack
/// let stage = backend.prepare(paper::fc(100)?.to_bytes()?.into(), 0)?;
/// assert_eq!(stage.describe(), "tflite-cpu #0 (2 threads)");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CpuBackend {
    runtime: Runtime,
    options: InterpreterOptions,
}

impl CpuBackend {
    /// A backend over `runtime` whose interpreters use `threads` kernel threads each, and
    /// the XNNPack delegate if `xnnpack`.
    pub fn new(runtime: Runtime, threads: usize, xnnpack: bool) -> Self {
        CpuBackend {
            runtime,
            options: InterpreterOptions {
                threads,
                xnnpack,
                ..InterpreterOptions::default()
            },
        }
    }

    /// The same backend, whose interpreters run the models' custom operator `name` with `op`.
    pub fn with_custom_op(mut self, name: impl Into<String>, op: impl CustomOp + 'static) -> Self {
        self.options = self.options.with_custom_op(name, op);
        self
    }

    /// The same backend, trusting its models: operators strict validation does not model
    /// are let through ([`InterpreterOptions::trusted`]). Only for models from a trusted
    /// source.
    pub fn trusting_models(mut self) -> Self {
        self.options = self.options.with_trusted(true);
        self
    }

    /// Kernel threads per interpreter.
    pub fn threads(&self) -> usize {
        self.options.threads
    }

    /// A model compiled for the Edge TPU runs only behind the Edge TPU delegate (unless a
    /// kernel of its own was registered for `edgetpu-custom-op`): refused here with advice,
    /// rather than by TFLite's message about an unresolved custom operator.
    fn refuse_compiled(&self, segment_model: &[u8]) -> Result<()> {
        if self.options.custom_ops.get(EDGETPU_CUSTOM_OP).is_some() {
            return Ok(());
        }
        if edgetpu::is_compiled(&Model::from_bytes(segment_model)?) {
            return Err(Error::unsupported(
                "a segment compiled for the Edge TPU (it holds an edgetpu-custom-op) on the CPU \
                 backend: run it on EdgeTpuBackend, or give the CPU the segment from before \
                 edgetpu_compiler",
            ));
        }
        Ok(())
    }

    /// Whether interpreters use the XNNPack delegate.
    pub fn xnnpack(&self) -> bool {
        self.options.xnnpack
    }
}

impl Backend for CpuBackend {
    fn prepare(&self, segment_model: Arc<[u8]>, device_index: usize) -> Result<Box<dyn Stage>> {
        self.refuse_compiled(&segment_model)?;
        let interpreter = Interpreter::new(&self.runtime, segment_model, &self.options)?;
        let description = format!(
            "{} #{device_index} ({} thread{}{})",
            self.name(),
            self.options.threads,
            if self.options.threads == 1 { "" } else { "s" },
            if self.options.xnnpack {
                ", XNNPack"
            } else {
                ""
            },
        );
        Ok(Box::new(InterpreterStage::new(interpreter, description)))
    }

    fn name(&self) -> String {
        "tflite-cpu".to_string()
    }

    /// A CPU segment runs like any other stage of this backend.
    fn prepare_cpu(&self, segment_model: Arc<[u8]>) -> Result<Box<dyn Stage>> {
        self.refuse_compiled(&segment_model)?;
        let interpreter = Interpreter::new(&self.runtime, segment_model, &self.options)?;
        Ok(Box::new(InterpreterStage::new(
            interpreter,
            host_description(&self.options),
        )))
    }
}

/// How a CPU segment's stage describes itself: `"tflite-cpu host (2 threads)"`.
pub(crate) fn host_description(options: &InterpreterOptions) -> String {
    format!(
        "tflite-cpu host ({} thread{}{})",
        options.threads,
        if options.threads == 1 { "" } else { "s" },
        if options.xnnpack { ", XNNPack" } else { "" },
    )
}

/// A TFLite [`Interpreter`] as a pipeline [`Stage`]: copies the inputs in, invokes, copies
/// the outputs out.
#[derive(Debug)]
pub struct InterpreterStage {
    interpreter: Interpreter,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    description: String,
}

impl InterpreterStage {
    /// Wraps `interpreter`; `description` (backend and device) names the stage in
    /// statistics and errors.
    pub fn new(interpreter: Interpreter, description: impl Into<String>) -> Self {
        InterpreterStage {
            inputs: interpreter.inputs().to_vec(),
            outputs: interpreter.outputs().to_vec(),
            interpreter,
            description: description.into(),
        }
    }

    /// The wrapped interpreter.
    pub fn interpreter(&self) -> &Interpreter {
        &self.interpreter
    }
}

impl Stage for InterpreterStage {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
        check_run_arity(
            &self.description,
            (&self.inputs, &self.outputs),
            inputs.len(),
            outputs.len(),
        )?;
        for (index, data) in inputs.iter().enumerate() {
            self.interpreter.set_input(index, data)?;
        }
        self.interpreter.invoke()?;
        for (index, out) in outputs.iter_mut().enumerate() {
            self.interpreter.copy_output(index, out)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
