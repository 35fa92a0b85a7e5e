//! Trivial stages for the pipeline tests.
#![allow(dead_code)]

use multitpu::backend::Stage;
use multitpu::tensor::TensorSpec;
use multitpu::{Error, Result};

/// What a test stage does with one item: `(run count, inputs, outputs)`.
pub type Body = Box<dyn FnMut(u64, &[&[u8]], &mut [&mut [u8]]) -> Result<()> + Send>;

/// A stage made of a closure.
pub struct FnStage {
    pub name: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub runs: u64,
    pub body: Body,
}

impl FnStage {
    pub fn boxed(
        name: &str,
        inputs: &[(&str, usize)],
        outputs: &[(&str, usize)],
        body: Body,
    ) -> Box<dyn Stage> {
        Box::new(FnStage {
            name: name.to_string(),
            inputs: inputs
                .iter()
                .map(|&(n, s)| TensorSpec::bytes(n, s))
                .collect(),
            outputs: outputs
                .iter()
                .map(|&(n, s)| TensorSpec::bytes(n, s))
                .collect(),
            runs: 0,
            body,
        })
    }
}

impl Stage for FnStage {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
        let runs = self.runs;
        self.runs += 1;
        (self.body)(runs, inputs, outputs)
    }
    fn describe(&self) -> String {
        format!("test stage {}", self.name)
    }
}

/// A stage reading `input` and writing `output` (same size): each byte plus `add`.
pub fn adder(name: &str, input: &str, output: &str, size: usize, add: u8) -> Box<dyn Stage> {
    FnStage::boxed(
        name,
        &[(input, size)],
        &[(output, size)],
        Box::new(move |_, ins, outs| {
            for (o, i) in outs[0].iter_mut().zip(ins[0]) {
                *o = i.wrapping_add(add);
            }
            Ok(())
        }),
    )
}

/// How a fault-injection stage misbehaves.
#[derive(Clone, Copy)]
pub enum Fault {
    Error,
    Panic,
    /// A panic whose payload panics again when it is dropped.
    PanicPayloadPanicsOnDrop,
}

/// A panic payload whose `Drop` panics.
pub struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("panic payload dropped");
    }
}

/// Like [`adder`], but fails (or panics) on its run number `at`.
pub fn faulty(
    name: &str,
    input: &str,
    output: &str,
    size: usize,
    at: u64,
    fault: Fault,
) -> Box<dyn Stage> {
    FnStage::boxed(
        name,
        &[(input, size)],
        &[(output, size)],
        Box::new(move |run, ins, outs| {
            if run == at {
                match fault {
                    Fault::Error => {
                        return Err(Error::stage(format!("injected failure at run {run}")));
                    }
                    Fault::Panic => panic!("injected panic at run {run}"),
                    Fault::PanicPayloadPanicsOnDrop => std::panic::panic_any(PanicsOnDrop),
                }
            }
            outs[0].copy_from_slice(ins[0]);
            Ok(())
        }),
    )
}

/// 8 bytes holding `seq`, then `pad` bytes of `seq as u8`.
pub fn payload(seq: u64, pad: usize) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    v.extend(std::iter::repeat_n(seq as u8, pad));
    v
}

/// The sequence number [`payload`] wrote, after `add` was added to every byte.
pub fn seq_of(data: &[u8], add: u8) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(data) {
        *d = s.wrapping_sub(add);
    }
    u64::from_le_bytes(b)
}

/// A real stage (e.g. a TFLite interpreter) that fails instead of running on its run `at`.
pub struct FailingAt {
    pub inner: Box<dyn Stage>,
    pub at: u64,
    pub runs: u64,
}

impl FailingAt {
    pub fn boxed(inner: Box<dyn Stage>, at: u64) -> Box<dyn Stage> {
        Box::new(FailingAt { inner, at, runs: 0 })
    }
}

impl Stage for FailingAt {
    fn inputs(&self) -> &[TensorSpec] {
        self.inner.inputs()
    }
    fn outputs(&self) -> &[TensorSpec] {
        self.inner.outputs()
    }
    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
        let run = self.runs;
        self.runs += 1;
        if run == self.at {
            return Err(Error::stage(format!("injected failure at run {run}")));
        }
        self.inner.run(inputs, outputs)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
