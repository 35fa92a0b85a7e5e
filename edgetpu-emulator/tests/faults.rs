//! Emulated devices whose timing departs from the cost model, and devices that fail, through
//! multitpu's `EdgeTpuBackend` as a pipeline sees them.
//!
//! Each test runs its scenario in a child process of this binary with a device list of its
//! own (`MULTITPU_EMULATED_EDGETPUS`) and a lock directory of its own: invokes are counted
//! per device per process, so every child starts from 0, and no test's devices are another's.
//! Needs `MULTITPU_TFLITE_LIB` and `MULTITPU_EDGETPU_LIB` / `MULTITPU_EDGETPU_COMPILER`
//! pointing at this crate's library and compiler (`scripts/test` sets them; under CI a
//! missing one fails the test instead of skipping it).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgetpu_emulator::devices;
use edgetpu_emulator::payload::Program;
use multitpu::Error;
use multitpu::backend::{
    Backend, DeviceInfo, DeviceKind, DeviceSelector, EdgeTpuBackend, EdgeTpuRuntime, Runtime, Stage,
};
use multitpu::device::{EdgeTpuCostModel, SegmentWorkload};
use multitpu::model::builder::SplitMix64;
use multitpu::model::edgetpu::{EDGETPU_CUSTOM_OP, device_program};
use multitpu::model::figures::OpKind;
use multitpu::model::{Model, paper};
use multitpu::verify::random_tensor;

/// Names the test a child process of this binary runs as.
const CHILD_ENV: &str = "EDGETPU_EMULATOR_FAULTS_CHILD";

/// Printed by a child that ran its scenario to the end.
const DONE: &str = "SCENARIO DONE";

/// Runs `test` in a child process with the emulated devices `devices`; its stdout and
/// stderr once it has succeeded and said [`DONE`]. `None` (after a skip notice, or a panic
/// under CI) without the runtime, the emulated library or its compiler.
fn in_child(test: &str, devices: &str) -> Option<(String, String)> {
    common::tflite_runtime()?;
    common::edgetpu_runtime()?;
    common::edgetpu_compiler()?;
    let locks = std::env::temp_dir().join(format!(
        "edgetpu-emulator-faults-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&locks).unwrap();
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .env(devices::DEVICES_ENV, devices)
        .env(devices::LOCK_DIR_ENV, &locks)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&locks);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success() && stdout.contains(DONE),
        "{test} with {devices}:\n{stdout}\n{stderr}"
    );
    Some((stdout, stderr))
}

/// Whether this process is the child running `test`.
fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|t| t == test)
}

/// The runtimes a child uses (the parent has checked that they are there).
fn runtimes() -> (Runtime, EdgeTpuRuntime) {
    (
        common::tflite_runtime().unwrap(),
        common::edgetpu_runtime().unwrap(),
    )
}

/// `model`, compiled by the emulated compiler.
fn compiled(model: &Model<'_>) -> Arc<[u8]> {
    let compiler = common::edgetpu_compiler().unwrap();
    compiler
        .compile(&model.to_bytes().unwrap())
        .unwrap()
        .model
        .into()
}

/// A small compiled model: fast on the CPU.
fn small_model() -> Arc<[u8]> {
    compiled(&paper::fc(64).unwrap())
}

/// One random item for `stage`, and room for its outputs.
fn item(stage: &dyn Stage, seed: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut rng = SplitMix64::new(seed);
    let inputs = stage
        .inputs()
        .iter()
        .map(|spec| random_tensor(spec, &mut rng).unwrap())
        .collect();
    let outputs = stage
        .outputs()
        .iter()
        .map(|spec| vec![0xA5; spec.byte_size])
        .collect();
    (inputs, outputs)
}

/// One `Stage::run` of a random item; its outputs.
fn run(stage: &mut dyn Stage) -> multitpu::Result<Vec<Vec<u8>>> {
    let (inputs, mut outputs) = item(stage, 7);
    let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut slots: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    stage.run(&inputs, &mut slots)?;
    Ok(outputs)
}

/// The message of an invoke that failed in the delegate, as TFLite reports it.
fn invoke_error(result: multitpu::Result<Vec<Vec<u8>>>) -> String {
    match result {
        Err(Error::Runtime { call, message }) => {
            assert_eq!(call, "TfLiteInterpreterInvoke", "{message}");
            message
        }
        Err(other) => panic!("expected Error::Runtime, got {other:?}"),
        Ok(_) => panic!("the invoke succeeded"),
    }
}

fn selector(s: &str) -> DeviceSelector {
    s.parse().expect("a device string")
}

fn paths(edgetpu: &EdgeTpuRuntime) -> Vec<String> {
    edgetpu
        .list_devices()
        .unwrap()
        .into_iter()
        .map(|d| d.path)
        .collect()
}

#[test]
fn a_failing_device_fails_its_fourth_invoke_with_a_typed_error() {
    in_child("fail_after_child", "usb:1@fail-after=3");
}

#[test]
fn fail_after_child() {
    if !is_child("fail_after_child") {
        return;
    }
    let (runtime, edgetpu) = runtimes();
    let backend = EdgeTpuBackend::with_devices(runtime, edgetpu, &[selector("usb:0")]).unwrap();
    let mut stage = backend.prepare(small_model(), 0).unwrap();
    assert_eq!(
        stage.describe(),
        "edgetpu #0 (usb at `emulated Edge TPU usb:0 (fail-after=3)`)"
    );
    for n in 1..=3 {
        run(&mut *stage).unwrap_or_else(|e| panic!("invoke {n}: {e}"));
    }
    for n in 4..=5 {
        let message = invoke_error(run(&mut *stage));
        assert!(
            message.contains(&format!(
                "emulated Edge TPU usb:0 (fail-after=3) failed: invoke {n}"
            )),
            "{message}"
        );
    }
    println!("{DONE}");
}

#[test]
fn a_vanished_device_is_unlisted_until_it_is_back() {
    let Some((_, stderr)) = in_child(
        "vanish_child",
        "usb:1@vanish-after=2@back-after=1@compute=skip,usb:1",
    ) else {
        return;
    };
    // Why the emulator refused to open it, as libedgetpu logs.
    assert!(
        stderr.contains(
            "emulated Edge TPU: edgetpu_create_delegate: emulated Edge TPU usb:0 \
             (vanish-after=2, back-after=1, compute=skip) has disappeared after 2 invokes"
        ),
        "{stderr}"
    );
}

#[test]
fn vanish_child() {
    if !is_child("vanish_child") {
        return;
    }
    let (runtime, edgetpu) = runtimes();
    let gone = "emulated Edge TPU usb:0 (vanish-after=2, back-after=1, compute=skip)";
    let other = "emulated Edge TPU usb:1";
    assert_eq!(paths(&edgetpu), [gone, other]);
    let backend =
        EdgeTpuBackend::with_devices(runtime, edgetpu.clone(), &[selector("usb:0")]).unwrap();
    let model = small_model();
    let mut stage = backend.prepare(Arc::clone(&model), 0).unwrap();
    run(&mut *stage).unwrap();
    assert_eq!(paths(&edgetpu), [gone, other]);
    run(&mut *stage).unwrap();
    // Gone after its second invoke: unlisted, its invokes fail, it cannot be opened.
    assert_eq!(paths(&edgetpu), [other]);
    let message = invoke_error(run(&mut *stage));
    assert!(
        message.contains(&format!("{gone} has disappeared after 2 invokes")),
        "{message}"
    );
    let info = DeviceInfo::new(DeviceKind::Usb, gone);
    let err = edgetpu.create_delegate(&info, &[]).expect_err("vanished");
    assert!(
        matches!(
            err,
            Error::Runtime {
                call: "edgetpu_create_delegate",
                ..
            }
        ),
        "{err:?}"
    );
    // Back within a second, in a new life: listed and free to open (the old delegate gave
    // its lock up when the device went), while the delegate of the old life stays dead.
    let deadline = Instant::now() + Duration::from_secs(20);
    while paths(&edgetpu).len() < 2 {
        assert!(Instant::now() < deadline, "the device did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(paths(&edgetpu), [gone, other]);
    drop(edgetpu.create_delegate(&info, &[]).expect("back"));
    let message = invoke_error(run(&mut *stage));
    assert!(
        message.contains("disappeared and came back since this delegate opened it"),
        "{message}"
    );
    drop(stage);
    let mut stage = backend.prepare(model, 0).unwrap();
    run(&mut *stage).unwrap();
    run(&mut *stage).unwrap();
    // A new life counts from 0 again: it vanishes after two more invokes.
    assert_eq!(paths(&edgetpu), [other]);
    println!("{DONE}");
}

#[test]
fn a_hanging_device_blocks_then_fails() {
    in_child("hang_child", "usb:1@hang-after=1:1");
}

#[test]
fn hang_child() {
    if !is_child("hang_child") {
        return;
    }
    let (runtime, edgetpu) = runtimes();
    let backend = EdgeTpuBackend::with_devices(runtime, edgetpu, &[selector("usb:0")]).unwrap();
    let mut stage = backend.prepare(small_model(), 0).unwrap();
    run(&mut *stage).unwrap();
    let message = invoke_error(run(&mut *stage));
    assert!(
        message.contains(
            "emulated Edge TPU usb:0 (hang-after=1:1) hung: invoke 2 blocked for 1 s, then \
             failed"
        ),
        "{message}"
    );
    println!("{DONE}");
}

/// Devices of each timing option, each invoked twice at verbosity 2: the emulator says how
/// long it holds every invoke.
const TIMED: &str = "usb:1,usb:1@slow=2@compute=skip,usb:1@conv=1.5@compute=skip,\
                     usb:1@link=2@compute=skip,usb:1@throttle=1:3@compute=skip";

/// The model of the timing test: convolutions, whose time `conv` changes (the unit tests
/// check the other kinds' factors on models that have them).
fn timed_model() -> Arc<[u8]> {
    compiled(&paper::conv(32).unwrap())
}

#[test]
fn timing_options_change_what_an_invoke_is_held_for() {
    let Some((_, stderr)) = in_child("timing_child", TIMED) else {
        return;
    };
    // What the cost model predicts for the compiled program, and its convolutions' compute.
    let model = timed_model();
    let model = Model::from_bytes(&model).unwrap();
    let op = model
        .operators
        .iter()
        .find(|op| op.opcode.custom.as_deref() == Some(EDGETPU_CUSTOM_OP))
        .expect("a compiled model");
    let options = op.custom_options.as_deref().expect("a program");
    assert!(device_program(options).is_some());
    let workload: SegmentWorkload = Program::from_custom_options(options)
        .unwrap()
        .workload()
        .unwrap();
    let cost_model = EdgeTpuCostModel::usb_default();
    let p = cost_model.predict(&workload);
    let conv: f64 = workload
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Conv2d && op.host_conversion.is_none())
        .map(|op| op.device_macs as f64 / cost_model.macs_per_s.conv2d)
        .sum();
    assert!(conv > 1e-4 * p.latency_s, "{p:?}");

    let latency = p.latency_s;
    let expected: [(&str, [f64; 2]); 5] = [
        ("usb:0", [latency; 2]),
        ("usb:1 (slow=2, compute=skip)", [2.0 * latency; 2]),
        ("usb:2 (conv=1.5, compute=skip)", [latency + 0.5 * conv; 2]),
        (
            "usb:3 (link=2, compute=skip)",
            [latency + p.stream_s + p.transfer_s; 2],
        ),
        (
            "usb:4 (throttle=1:3, compute=skip)",
            [latency, 3.0 * latency],
        ),
    ];
    // "emulated Edge TPU usb:1 (slow=2, compute=skip): invoke 1 holds 0.004676123 s"
    let mut held: BTreeMap<(String, u64), f64> = BTreeMap::new();
    for line in stderr.lines() {
        let Some((path, rest)) = line.split_once(": invoke ") else {
            continue;
        };
        let Some((n, rest)) = rest.split_once(" holds ") else {
            continue;
        };
        let seconds = rest.strip_suffix(" s").expect("seconds").parse().unwrap();
        held.insert((path.to_owned(), n.parse().unwrap()), seconds);
    }
    assert_eq!(held.len(), 10, "{stderr}");
    for (name, holds) in expected {
        for (n, want) in (1..).zip(holds) {
            let path = format!("emulated Edge TPU {name}");
            let got = held
                .get(&(path.clone(), n))
                .unwrap_or_else(|| panic!("no hold of invoke {n} of {path}:\n{stderr}"));
            // Printed to the nanosecond, as a Duration holds it.
            assert!(
                (got - want).abs() <= 2e-9,
                "{path}, invoke {n}: held {got} s, expected {want} s"
            );
        }
    }
}

#[test]
fn timing_child() {
    if !is_child("timing_child") {
        return;
    }
    let (runtime, edgetpu) = runtimes();
    edgetpu.set_verbosity(2);
    let count = paths(&edgetpu).len();
    let selectors: Vec<DeviceSelector> = (0..count).map(|i| selector(&format!(":{i}"))).collect();
    let backend = EdgeTpuBackend::with_devices(runtime, edgetpu, &selectors).unwrap();
    let model = timed_model();
    let mut outputs = Vec::new();
    for index in 0..count {
        let mut stage = backend.prepare(Arc::clone(&model), index).unwrap();
        run(&mut *stage).unwrap();
        outputs.push(run(&mut *stage).unwrap());
    }
    // compute=skip writes zeroed outputs; the CPU's are not all zero.
    assert!(outputs[0].iter().flatten().any(|&b| b != 0));
    for skipped in &outputs[1..] {
        assert!(skipped.iter().flatten().all(|&b| b == 0));
    }
    println!("{DONE}");
}

#[test]
fn a_malformed_entry_is_reported_naming_it() {
    let Some((_, stderr)) = in_child("malformed_child", "usb:1,usb:1@slow=fast") else {
        return;
    };
    assert!(
        stderr.contains(
            "emulated Edge TPU: edgetpu_list_devices: MULTITPU_EMULATED_EDGETPUS: `slow=fast` \
             in `usb:1@slow=fast`: `fast` is not a positive factor"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("emulated Edge TPU: edgetpu_create_delegate: MULTITPU_EMULATED_EDGETPUS"),
        "{stderr}"
    );
}

#[test]
fn malformed_child() {
    if !is_child("malformed_child") {
        return;
    }
    let (_, edgetpu) = runtimes();
    // No device list: libedgetpu lists none.
    assert!(paths(&edgetpu).is_empty());
    let info = DeviceInfo::new(DeviceKind::Usb, "emulated Edge TPU usb:0");
    assert!(edgetpu.create_delegate(&info, &[]).is_err());
    println!("{DONE}");
}
