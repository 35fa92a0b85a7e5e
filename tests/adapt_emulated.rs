//! An adaptive pipeline on emulated Edge TPUs loses a device mid-run, as a real one that
//! vanishes from its bus, then another that hangs and fails, and every item still comes out
//! once, in order, identical to the whole model on the CPU. Its own main: the emulated devices are configured through the
//! environment, so the checks run in a child process started with the devices they need.

mod common;

use std::process::{Command, ExitCode};
use std::sync::Arc;

use multitpu::adapt::{AdaptivePipeline, Devices, ReplanReason};
use multitpu::backend::EdgeTpuBackend;
use multitpu::device::EdgeTpuCostModel;
use multitpu::segment::Profiled;

/// Set in the child, which runs the checks.
const CHILD_ENV: &str = "MULTITPU_ADAPT_EMULATED_CHILD";

/// Three USB devices: the second vanishes after its 5th invoke, the third hangs for a second
/// on its 10th, then fails.
const DEVICES: &str = "usb:1,usb:1@vanish-after=5,usb:1@hang-after=9:1";

fn main() -> ExitCode {
    if std::env::var_os(CHILD_ENV).is_none() {
        if common::edgetpu_runtime().is_none() || common::tflite_runtime().is_none() {
            return ExitCode::SUCCESS;
        }
        let locks =
            std::env::temp_dir().join(format!("multitpu-adapt-locks-{}", std::process::id()));
        std::fs::create_dir_all(&locks).expect("a lock folder");
        let status = Command::new(std::env::current_exe().expect("this test"))
            .env(CHILD_ENV, "1")
            .env("MULTITPU_EMULATED_EDGETPUS", DEVICES)
            .env("MULTITPU_EMULATED_EDGETPU_LOCKS", &locks)
            .status()
            .expect("the child runs");
        std::fs::remove_dir_all(&locks).ok();
        return if status.success() {
            println!("test vanished_and_hung_edge_tpus_are_planned_around ... ok");
            ExitCode::SUCCESS
        } else {
            println!("test vanished_and_hung_edge_tpus_are_planned_around ... FAILED ({status})");
            ExitCode::FAILURE
        };
    }
    vanished_and_hung_edge_tpus_are_planned_around();
    ExitCode::SUCCESS
}

fn vanished_and_hung_edge_tpus_are_planned_around() {
    let Some((runtime, edgetpu, compiler)) = common::edgetpu_toolchain() else {
        panic!("the parent checked the runtimes");
    };
    // Every item's expected output: the whole model on the CPU.
    let (bytes, inputs, expected) = common::fc_items_and_outputs(&runtime, 40);
    let backend = EdgeTpuBackend::new(runtime, edgetpu).expect("three emulated Edge TPUs");
    assert_eq!(backend.devices().len(), 3);
    let devices = Devices {
        backend: Arc::new(backend),
        indices: vec![0, 1, 2],
        compiler: Some(compiler),
    };
    let planner = Profiled::cost_model(EdgeTpuCostModel::usb_default()).with_exact_devices();
    let mut adaptive = AdaptivePipeline::new(bytes.clone(), Box::new(planner), devices)
        .expect("a pipeline on three devices");
    let name = adaptive.pipeline().expect("running").inputs()[0]
        .name
        .clone();
    assert_eq!(adaptive.plan().devices(), 3);
    let mut popped = Vec::new();
    for (i, data) in inputs.iter().enumerate() {
        adaptive.push(&[(&name, data)]).expect("push");
        if i % 2 == 1 {
            popped.push(adaptive.pop().expect("pop").expect("an item"));
        }
    }
    adaptive.close().expect("close");
    while let Some(output) = adaptive.pop().expect("pop") {
        popped.push(output);
    }
    assert_eq!(popped.len(), inputs.len(), "every item");
    for (i, output) in popped.iter().enumerate() {
        assert_eq!(output.seq, i as u64, "in order");
        assert_eq!(
            output.output.tensor(0).expect("tensor"),
            &expected[i][..],
            "item {i}"
        );
    }
    let lost: Vec<usize> = adaptive
        .replans()
        .iter()
        .map(|replan| match &replan.reason {
            ReplanReason::DeviceLost { device, .. } => *device,
            other => panic!("expected lost devices only, got {other:?}"),
        })
        .collect();
    assert_eq!(lost, [1, 2], "{:?}", adaptive.replans());
    match &adaptive.replans()[0].reason {
        ReplanReason::DeviceLost { message, .. } => {
            assert!(message.contains("disappeared"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(adaptive.devices(), [0]);
    assert_eq!(adaptive.plan().devices(), 1);
}
