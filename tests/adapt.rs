//! Adaptive pipelines: a device that fails mid-run is taken out, the model is planned again
//! for the devices left (the CPU when none is), and every item comes out once, in order,
//! with the outputs the whole model gives.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use multitpu::Error;
use multitpu::adapt::{AdaptivePipeline, Devices, ReplanReason};
use multitpu::backend::{Backend, CpuBackend, Runtime, SimCompute, SimulatedEdgeTpuBackend, Stage};
use multitpu::device::EdgeTpuCostModel;
use multitpu::segment::{Profiled, Segmenter};
use multitpu::tensor::TensorSpec;

/// Simulated Edge TPUs computing on the CPU, of which some fail for good after a number of
/// runs (counted per device, across every stage prepared on it); CPU stages fail from the
/// first run when `cpu_fails`.
struct Flaky {
    inner: SimulatedEdgeTpuBackend,
    cpu: CpuBackend,
    fail_after: HashMap<usize, usize>,
    runs: Arc<Vec<AtomicUsize>>,
    cpu_fails: bool,
}

impl Flaky {
    fn new(runtime: &Runtime, fail_after: &[(usize, usize)], cpu_fails: bool) -> Self {
        Flaky {
            inner: SimulatedEdgeTpuBackend::new(
                EdgeTpuCostModel::usb_default(),
                SimCompute::Cpu {
                    runtime: runtime.clone(),
                    threads: 1,
                },
            ),
            cpu: CpuBackend::new(runtime.clone(), 1, false),
            fail_after: fail_after.iter().copied().collect(),
            runs: Arc::new((0..8).map(|_| AtomicUsize::new(0)).collect()),
            cpu_fails,
        }
    }
}

/// A stage that fails once its device has run `limit` items.
struct FlakyStage {
    inner: Box<dyn Stage>,
    device: Option<usize>,
    limit: Option<usize>,
    runs: Arc<Vec<AtomicUsize>>,
}

impl Stage for FlakyStage {
    fn inputs(&self) -> &[TensorSpec] {
        self.inner.inputs()
    }
    fn outputs(&self) -> &[TensorSpec] {
        self.inner.outputs()
    }
    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> multitpu::Result<()> {
        let done = self
            .device
            .map_or(0, |d| self.runs[d].fetch_add(1, Ordering::SeqCst));
        if self.limit.is_some_and(|limit| done >= limit) {
            return Err(Error::stage(match self.device {
                Some(d) => format!("device {d} stopped answering"),
                None => "the host ran out of luck".to_owned(),
            }));
        }
        self.inner.run(inputs, outputs)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

impl Backend for Flaky {
    fn prepare(&self, segment_model: Arc<[u8]>, device: usize) -> multitpu::Result<Box<dyn Stage>> {
        Ok(Box::new(FlakyStage {
            inner: self.inner.prepare(segment_model, device)?,
            device: Some(device),
            limit: self.fail_after.get(&device).copied(),
            runs: Arc::clone(&self.runs),
        }))
    }
    fn name(&self) -> String {
        "flaky".into()
    }
    fn prepare_cpu(&self, segment_model: Arc<[u8]>) -> multitpu::Result<Box<dyn Stage>> {
        Ok(Box::new(FlakyStage {
            inner: self.cpu.prepare_cpu(segment_model)?,
            device: None,
            limit: self.cpu_fails.then_some(0),
            runs: Arc::clone(&self.runs),
        }))
    }
}

fn planner() -> Box<dyn Segmenter + Send + Sync> {
    Box::new(Profiled::cost_model(EdgeTpuCostModel::usb_default()).with_exact_devices())
}

/// Pushes every input, popping as it goes, and returns the outputs in the order popped.
fn run(
    adaptive: &mut AdaptivePipeline,
    inputs: &[Vec<u8>],
) -> multitpu::Result<Vec<(u64, Vec<u8>)>> {
    let name = adaptive.pipeline()?.inputs()[0].name.clone();
    let mut popped = Vec::new();
    for (i, data) in inputs.iter().enumerate() {
        adaptive.push(&[(&name, data)])?;
        if i % 3 == 2 {
            let out = adaptive.pop()?.expect("an item in flight");
            popped.push((out.seq, out.output.tensor(0).expect("tensor").to_vec()));
        }
    }
    adaptive.close()?;
    while let Some(out) = adaptive.pop()? {
        popped.push((out.seq, out.output.tensor(0).expect("tensor").to_vec()));
    }
    Ok(popped)
}

#[test]
fn a_failed_device_is_planned_around_and_nothing_is_lost() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (model, inputs, reference) = common::fc_items_and_outputs(&runtime, 40);
    let backend = Arc::new(Flaky::new(&runtime, &[(1, 7)], false));
    let devices = Devices {
        backend,
        indices: vec![0, 1, 2],
        compiler: None,
    };
    let mut adaptive = AdaptivePipeline::new(model, planner(), devices).expect("start");
    assert_eq!(adaptive.plan().devices(), 3);
    let popped = run(&mut adaptive, &inputs).expect("every item");
    let seqs: Vec<u64> = popped.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (0..40).collect::<Vec<u64>>(),
        "each item once, in order"
    );
    for (seq, output) in &popped {
        assert_eq!(output, &reference[*seq as usize], "item {seq}");
    }
    let replans = adaptive.replans();
    assert_eq!(replans.len(), 1, "{replans:?}");
    assert!(
        matches!(&replans[0].reason, ReplanReason::DeviceLost { device: 1, message } if message.contains("stopped answering")),
        "{replans:?}"
    );
    assert_eq!(replans[0].devices, (3, 2));
    assert_eq!(adaptive.devices(), [0, 2]);
}

#[test]
fn without_devices_the_model_runs_on_the_cpu() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (model, inputs, reference) = common::fc_items_and_outputs(&runtime, 20);
    let backend = Arc::new(Flaky::new(&runtime, &[(0, 3), (1, 5)], false));
    let devices = Devices {
        backend,
        indices: vec![0, 1],
        compiler: None,
    };
    let mut adaptive = AdaptivePipeline::new(model, planner(), devices).expect("start");
    let popped = run(&mut adaptive, &inputs).expect("every item");
    assert_eq!(popped.len(), 20);
    for (i, (seq, output)) in popped.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(output, &reference[i], "item {i}");
    }
    assert_eq!(adaptive.replans().len(), 2, "{:?}", adaptive.replans());
    assert!(adaptive.devices().is_empty());
    assert!(adaptive.plan().runs_on_cpu());
    assert_eq!(adaptive.plan().devices(), 0);
}

#[test]
fn a_failure_nothing_can_recover_from_accounts_for_every_item() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (model, inputs, _) = common::fc_items_and_outputs(&runtime, 12);
    let backend = Arc::new(Flaky::new(&runtime, &[(0, 4)], true));
    let devices = Devices {
        backend,
        indices: vec![0],
        compiler: None,
    };
    let mut adaptive = AdaptivePipeline::new(model, planner(), devices).expect("start");
    let name = adaptive.pipeline().expect("running").inputs()[0]
        .name
        .clone();
    let mut pushed = 0u64;
    for data in &inputs {
        if adaptive.push(&[(&name, data)]).is_err() {
            break;
        }
        pushed += 1;
    }
    // As a pipeline does: what finished before the failure still comes out, then the error.
    let mut popped = 0u64;
    let error = loop {
        match adaptive.pop() {
            Ok(Some(out)) => {
                assert_eq!(out.seq, popped);
                popped += 1;
            }
            Ok(None) => panic!("the CPU fails too"),
            Err(error) => break error,
        }
    };
    match &error {
        Error::StageFailed { lost, message, .. } => {
            assert!(message.contains("out of luck"), "{message}");
            assert_eq!(popped + lost.len() as u64, pushed, "{error}");
            assert!(lost.windows(2).all(|w| w[0] < w[1]));
        }
        other => panic!("expected StageFailed, got {other:?}"),
    }
    let again = adaptive.pop().expect_err("stopped");
    assert_eq!(
        again.to_string(),
        error.to_string(),
        "the failure, said again"
    );
}

#[test]
fn a_device_taken_in_again_joins_the_plan() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let (model, inputs, reference) = common::fc_items_and_outputs(&runtime, 30);
    let backend = Arc::new(Flaky::new(&runtime, &[(1, 4)], false));
    let devices = Devices {
        backend: Arc::clone(&backend) as Arc<dyn Backend>,
        indices: vec![0, 1],
        compiler: None,
    };
    let mut adaptive = AdaptivePipeline::new(model, planner(), devices).expect("start");
    let popped_before = run_some(&mut adaptive, &inputs[..15]);
    assert_eq!(adaptive.devices(), [0]);
    // Device 1 recovers: its count starts again below the limit.
    backend.runs[1].store(0, Ordering::SeqCst);
    adaptive.take_device(1).expect("taken in");
    assert_eq!(adaptive.devices(), [0, 1]);
    assert_eq!(adaptive.plan().devices(), 2);
    assert!(adaptive.take_device(1).is_err(), "already in use");
    let rest = run(&mut adaptive, &inputs[15..]).expect("the rest");
    let all: Vec<(u64, Vec<u8>)> = popped_before.into_iter().chain(rest).collect();
    assert_eq!(all.len(), 30);
    for (i, (seq, output)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(output, &reference[i], "item {i}");
    }
    let reasons: Vec<&ReplanReason> = adaptive.replans().iter().map(|r| &r.reason).collect();
    assert!(
        matches!(
            reasons[..],
            [
                ReplanReason::DeviceLost { device: 1, .. },
                ReplanReason::DeviceAdded { device: 1 },
                ..
            ]
        ),
        "{reasons:?}"
    );
}

/// Pushes and pops `inputs` one by one without closing.
fn run_some(adaptive: &mut AdaptivePipeline, inputs: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
    let name = adaptive.pipeline().expect("running").inputs()[0]
        .name
        .clone();
    inputs
        .iter()
        .map(|data| {
            adaptive.push(&[(&name, data)]).expect("push");
            let out = adaptive.pop().expect("pop").expect("the item");
            (out.seq, out.output.tensor(0).expect("tensor").to_vec())
        })
        .collect()
}
