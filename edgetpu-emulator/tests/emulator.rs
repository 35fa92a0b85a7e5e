//! The emulated Edge TPU through multitpu's public API, as an application sees a real one.
//!
//! Needs `MULTITPU_TFLITE_LIB`, `MULTITPU_ZOO`, and `MULTITPU_EDGETPU_LIB` /
//! `MULTITPU_EDGETPU_COMPILER` pointing at this crate's library and compiler, with at least
//! two USB devices and one PCIe device (`scripts/test` sets all of them; under CI a missing
//! one fails the test instead of skipping it). The shared models (`MULTITPU_TEST_MODELS`)
//! are checked too when they are there.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use edgetpu_emulator::devices;
use multitpu::Error;
use multitpu::backend::{
    Backend, DeviceInfo, DeviceSelector, EdgeTpuBackend, EdgeTpuRuntime, Interpreter,
    InterpreterOptions, Performance,
};
use multitpu::deploy::parse_report;
use multitpu::device::{EdgeTpuCostModel, SegmentWorkload};
use multitpu::model::builder::SplitMix64;
use multitpu::model::edgetpu::is_compiled;
use multitpu::model::{Graph, Model, paper};
use multitpu::pipeline::PipelineBuilder;
use multitpu::profile::{EdgeTpuProfiler, Profiler};
use multitpu::segment::{Segmenter, UniformByParams};
use multitpu::verify::random_tensor;

use common::zoo;

const MNIST: &str = "MNISTnet_uint8_quant.tflite";
const MOBILENET: &str = "mobilenet_v1_0.25_128_quant.tflite";
/// Compiled by Coral's compiler: its program is not the emulator's.
const MOBILENET_CORAL: &str = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";

/// Names the test a child process of this binary runs as.
const CHILD_ENV: &str = "EDGETPU_EMULATOR_TEST_CHILD";

fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|t| t == test)
}

/// This test binary, running only `test` as a child.
fn child(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test);
    command
}

fn selector(s: &str) -> DeviceSelector {
    s.parse().expect("a device string")
}

/// The emulated devices must include `usb:1` and `pci:0`, as `scripts/test` sets them.
fn has_test_devices() -> bool {
    let devices = devices::configured().expect("a valid device list");
    let count = |kind| devices.iter().filter(|d| d.kind == kind).count();
    let enough = count(multitpu::backend::DeviceKind::Usb) >= 2
        && count(multitpu::backend::DeviceKind::Pci) >= 1;
    if !enough {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} must list two USB and one PCIe device under CI",
            devices::DEVICES_ENV
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {} lists fewer than usb:2,pci:1",
            devices::DEVICES_ENV
        );
    }
    enough
}

#[test]
fn lists_the_configured_devices_and_says_it_is_emulated() {
    let Some(edgetpu) = common::edgetpu_runtime() else {
        return;
    };
    assert!(
        edgetpu.version().starts_with("emulated Edge TPU "),
        "{}",
        edgetpu.version()
    );
    let expected: Vec<DeviceInfo> = devices::configured()
        .unwrap()
        .iter()
        .map(|d| DeviceInfo::new(d.kind, d.path()))
        .collect();
    assert_eq!(edgetpu.list_devices().unwrap(), expected);

    // Another configuration, in a process of its own.
    let output = child("listing_child")
        .env(devices::DEVICES_ENV, "pci:2,usb:1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "LISTED: emulated Edge TPU pci:0|emulated Edge TPU pci:1|emulated Edge TPU usb:0\n"
        ),
        "{stdout}"
    );
}

#[test]
fn listing_child() {
    if !is_child("listing_child") {
        return;
    }
    let edgetpu = common::edgetpu_runtime().unwrap();
    let paths: Vec<String> = edgetpu
        .list_devices()
        .unwrap()
        .into_iter()
        .map(|d| d.path)
        .collect();
    println!("LISTED: {}", paths.join("|"));
}

#[test]
fn selects_devices_by_coral_names() {
    let (Some(runtime), Some(edgetpu)) = (common::tflite_runtime(), common::edgetpu_runtime())
    else {
        return;
    };
    if !has_test_devices() {
        return;
    }
    let _devices = common::devices();
    for (name, path) in [
        ("usb:1", "emulated Edge TPU usb:1"),
        ("pci:0", "emulated Edge TPU pci:0"),
        ("usb", "emulated Edge TPU usb:0"),
        ("pci", "emulated Edge TPU pci:0"),
    ] {
        let delegate = edgetpu.open(&selector(name), &[]).expect(name);
        assert_eq!(delegate.device().path, path, "{name}");
    }
    let count = edgetpu.list_devices().unwrap().len();
    let err = edgetpu
        .open(&selector(&format!(":{count}")), &[])
        .expect_err("one past the last device");
    assert!(matches!(err, Error::NoDevice { .. }), "{err:?}");

    // Stage descriptions come from the device, and so say "emulated Edge TPU".
    let backend =
        EdgeTpuBackend::with_devices(runtime, edgetpu, &[selector("pci:0"), selector("usb:1")])
            .unwrap();
    let Some(compiled) = compiled(zoo::CNN_INT8) else {
        return;
    };
    let stage = backend.prepare(compiled.into(), 0).unwrap();
    assert_eq!(
        stage.describe(),
        "edgetpu #0 (pci at `emulated Edge TPU pci:0`)"
    );
}

#[test]
fn options_are_passed_through_by_name() {
    let Some(edgetpu) = common::edgetpu_runtime() else {
        return;
    };
    let _devices = common::devices();
    for bad in [
        ("Performance", "Turbo"),
        ("Usb.MaxBulkInQueueLength", "0"),
        ("Clock", "Max"),
    ] {
        let err = edgetpu
            .open(&DeviceSelector::default(), &[bad])
            .expect_err("refused");
        assert!(
            matches!(
                &err,
                Error::Runtime {
                    call: "edgetpu_create_delegate",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
    }
    // With verbosity 1 the emulator says on stderr how it opened the device.
    let output = child("options_child").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "emulated Edge TPU usb:0: opened with Performance=Low (compute takes 8x as long as \
             at Max), Usb.AlwaysDfu=true, Usb.MaxBulkInQueueLength=Some(32)"
        ),
        "{stderr}"
    );
}

#[test]
fn options_child() {
    if !is_child("options_child") {
        return;
    }
    let edgetpu = common::edgetpu_runtime().unwrap();
    edgetpu.set_verbosity(1);
    let options = [
        ("Performance", Performance::Low.as_str()),
        ("Usb.AlwaysDfu", "True"),
        ("Usb.MaxBulkInQueueLength", "32"),
    ];
    edgetpu.open(&selector("usb:0"), &options).unwrap();
}

#[test]
fn a_device_held_by_another_process_is_refused() {
    let Some(edgetpu) = common::edgetpu_runtime() else {
        return;
    };
    let _devices = common::devices();
    let mut holder = child("holder_child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let held = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.ends_with("HOLDING"));
    assert!(held, "the child did not open usb:0");
    let err = edgetpu
        .open(&selector("usb:0"), &[])
        .expect_err("held by the child");
    match &err {
        Error::Runtime { call, message } => {
            assert_eq!(*call, "edgetpu_create_delegate");
            assert!(message.contains("emulated Edge TPU usb:0"), "{message}");
        }
        other => panic!("expected Error::Runtime, got {other:?}"),
    }
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    edgetpu
        .open(&selector("usb:0"), &[])
        .expect("free once the child has exited");
}

#[test]
fn holder_child() {
    if !is_child("holder_child") {
        return;
    }
    let edgetpu = common::edgetpu_runtime().unwrap();
    let delegate = edgetpu.open(&selector("usb:0"), &[]).unwrap();
    println!("HOLDING");
    // Holds the device until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(delegate);
}

#[test]
fn the_interpreter_frees_its_delegate_after_itself() {
    let (Some(runtime), Some(edgetpu)) = (common::tflite_runtime(), common::edgetpu_runtime())
    else {
        return;
    };
    let Some(compiled) = compiled(zoo::CNN_INT8) else {
        return;
    };
    let _devices = common::devices();
    for _ in 0..3 {
        // The emulator aborts the process if a delegate is freed while a kernel of a live
        // interpreter uses it, and refuses a device whose delegate was not freed.
        let delegate = edgetpu.open(&selector("usb:0"), &[]).unwrap();
        let mut interpreter = Interpreter::with_edgetpu(
            &runtime,
            compiled.clone(),
            &InterpreterOptions::default(),
            delegate,
        )
        .unwrap();
        interpreter.invoke().unwrap();
        drop(interpreter);
    }
}

#[test]
fn a_model_not_compiled_is_refused() {
    let (Some(runtime), Some(edgetpu), Some(plain)) = (
        common::tflite_runtime(),
        common::edgetpu_runtime(),
        common::zoo_model(zoo::CNN_INT8),
    ) else {
        return;
    };
    let backend = EdgeTpuBackend::new(runtime, edgetpu).unwrap();
    let err = backend
        .prepare(plain.into(), 0)
        .map(|s| s.describe())
        .expect_err("not compiled");
    assert!(matches!(err, Error::NotCompiled { index: 0 }), "{err:?}");
}

/// A zoo model compiled by the emulator, with its program's marker altered: the program of
/// some other compiler, as Coral's is.
fn foreign_program() -> Option<Vec<u8>> {
    let compiled = compiled(zoo::CNN_INT8)?;
    let mut model = Model::from_bytes(&compiled).unwrap().into_owned();
    let op = model
        .operators
        .iter_mut()
        .find(|op| op.opcode.custom.as_deref() == Some("edgetpu-custom-op"))
        .expect("a compiled model");
    let mut options = op.custom_options.take().expect("the program").into_owned();
    let marker = edgetpu_emulator::payload::MARKER;
    let at = options
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the emulator's marker");
    options[at] ^= 0x20;
    op.custom_options = Some(options.into());
    Some(model.to_bytes().unwrap())
}

#[test]
fn a_program_the_emulator_did_not_write_is_refused() {
    let (Some(runtime), Some(edgetpu), Some(foreign)) = (
        common::tflite_runtime(),
        common::edgetpu_runtime(),
        foreign_program(),
    ) else {
        return;
    };
    let _devices = common::devices();
    for program in [Some(foreign), common::shared_model(MOBILENET_CORAL)]
        .into_iter()
        .flatten()
    {
        refuse_foreign_program(&runtime, &edgetpu, program);
    }
}

/// The emulated delegate refuses `foreign`, directly and through the backend, and the
/// device is free again afterwards.
fn refuse_foreign_program(
    runtime: &multitpu::backend::Runtime,
    edgetpu: &EdgeTpuRuntime,
    coral: Vec<u8>,
) {
    let delegate = edgetpu.open(&selector("usb:0"), &[]).unwrap();
    let err = Interpreter::with_edgetpu(
        runtime,
        coral.clone(),
        &InterpreterOptions::default(),
        delegate,
    )
    .map(|_| ())
    .expect_err("a program of Coral's compiler");
    match &err {
        Error::EdgeTpuDelegate { device, message } => {
            assert_eq!(device, "usb at `emulated Edge TPU usb:0`");
            assert!(
                message.contains("not written by the emulator's edgetpu_compiler"),
                "{message}"
            );
        }
        other => panic!("expected Error::EdgeTpuDelegate, got {other:?}"),
    }
    // The same through the backend, and the device is free again afterwards.
    let backend = EdgeTpuBackend::new(runtime.clone(), edgetpu.clone()).unwrap();
    let err = backend
        .prepare(coral.into(), 0)
        .map(|s| s.describe())
        .expect_err("refused");
    assert!(matches!(err, Error::EdgeTpuDelegate { .. }), "{err:?}");
    let ours = compiled(zoo::CNN_INT8).expect("the zoo, read above");
    backend.prepare(ours.into(), 0).unwrap();
}

/// Zoo model `name`, compiled by the emulated compiler; `None` (after a visible skip notice,
/// or a panic under CI) without the zoo or the compiler.
fn compiled(name: &str) -> Option<Vec<u8>> {
    common::compiled_zoo_model(name)
}

/// Cuts `name` in two as `edgetpu_compiler --num_segments` would, compiles each part with
/// the emulated compiler, runs random inputs through a pipeline of two emulated USB Edge
/// TPUs, and checks every output against the whole model on the TFLite CPU runtime.
fn segments_match_the_whole_model(name: &str, bytes: &[u8]) {
    let Some((runtime, edgetpu, compiler)) = common::edgetpu_toolchain() else {
        return;
    };
    let model = Model::from_bytes(bytes).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = UniformByParams.plan(&graph, 2).unwrap();
    let segments: Vec<Arc<[u8]>> = plan
        .extract(&graph)
        .unwrap()
        .iter()
        .map(|segment| {
            let compiled = compiler.compile(&segment.to_bytes().unwrap()).unwrap();
            let as_model = Model::from_bytes(&compiled.model).unwrap();
            assert!(is_compiled(&as_model), "{name}: a segment maps nothing");
            compiled.model.into()
        })
        .collect();

    let _devices = common::devices();
    let selectors: Vec<DeviceSelector> = (0..segments.len())
        .map(|i| selector(&format!("usb:{i}")))
        .collect();
    let backend = EdgeTpuBackend::with_devices(runtime.clone(), edgetpu, &selectors).unwrap();
    let mut builder = PipelineBuilder::new();
    for (i, segment) in segments.iter().enumerate() {
        builder = builder.stage(backend.prepare(Arc::clone(segment), i).unwrap());
    }
    // The model's inputs: a later segment may read one the first does not (the zoo's
    // two-input model reads its second input only in the box head).
    let inputs = model
        .inputs
        .iter()
        .map(|&t| model.tensors[t].name.to_string());
    let pipeline = builder.inputs(inputs).build().unwrap();
    let mut rng = SplitMix64::new(0xE_7B0);
    let items: Vec<Vec<(String, Vec<u8>)>> = (0..3)
        .map(|_| {
            pipeline
                .inputs()
                .iter()
                .map(|spec| (spec.name.clone(), random_tensor(spec, &mut rng).unwrap()))
                .collect()
        })
        .collect();
    for item in &items {
        let named: Vec<(&str, &[u8])> = item.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
        pipeline.push(&named).unwrap();
    }
    pipeline.close().unwrap();
    let outputs: Vec<_> = (&pipeline).into_iter().collect::<Result<_, _>>().unwrap();

    let mut whole =
        Interpreter::new(&runtime, bytes.to_vec(), &InterpreterOptions::default()).unwrap();
    for (item, output) in items.iter().zip(&outputs) {
        for (name, data) in item {
            let index = whole.input_index(name).unwrap();
            whole.set_input(index, data).unwrap();
        }
        whole.invoke().unwrap();
        for (spec, data) in output.iter() {
            let index = whole.output_index(&spec.name).unwrap();
            assert_eq!(
                whole.output(index).unwrap(),
                data,
                "{name}: output `{}`",
                spec.name
            );
        }
    }
}

real_model_tests!(segments_match_the_whole_model);

/// Half a unit of the last digit the compiler prints (two decimals of B, KiB, MiB, GiB).
fn printed_precision(bytes: u64) -> u64 {
    let unit = match bytes {
        0..1024 => 1,
        1024..1_048_576 => 1024,
        1_048_576..1_073_741_824 => 1_048_576,
        _ => 1_073_741_824,
    };
    unit / 200 + 1
}

#[test]
fn the_profiler_reports_the_cost_models_figures() {
    let (Some(runtime), Some(edgetpu), Some(compiler), Some(cnn)) = (
        common::tflite_runtime(),
        common::edgetpu_runtime(),
        common::edgetpu_compiler(),
        common::zoo_model(zoo::CNN_INT8),
    ) else {
        return;
    };
    let profiler = EdgeTpuProfiler::new(compiler, edgetpu, runtime, selector("usb:0"));
    let cost_model = EdgeTpuCostModel::usb_default();
    let mnist = common::shared_model(MNIST);
    let mut models = vec![Model::from_bytes(&cnn).unwrap()];
    models.extend(mnist.as_deref().map(|m| Model::from_bytes(m).unwrap()));
    // fc N = 1620 streams about 2.6 MiB of its parameters.
    let fc = paper::fc(1620).unwrap();
    models.push(fc.clone());
    let _devices = common::devices();
    for model in &models {
        let n = model.operators.len();
        for range in [0..n, 0..n / 2, n / 2..n] {
            let profile = profiler.profile(model, range.clone()).unwrap();
            let predicted = cost_model.predict(&SegmentWorkload::from_model(model, range.clone()));
            for (what, measured, expected) in [
                ("on chip", profile.on_chip_bytes, predicted.on_chip_bytes),
                ("off chip", profile.off_chip_bytes, predicted.off_chip_bytes),
            ] {
                assert!(
                    measured.abs_diff(expected) <= printed_precision(expected),
                    "{range:?} {what}: compiler {measured}, cost model {expected}"
                );
            }
            assert!(
                profile.latency_s >= predicted.latency_s,
                "{range:?}: {} s measured, {} s predicted",
                profile.latency_s,
                predicted.latency_s
            );
        }
    }
    let whole = profiler.profile(&fc, 0..fc.operators.len()).unwrap();
    assert!(whole.off_chip_bytes > 2 << 20, "{whole:?}");
}

/// Every invoke lasts at least the cost model's prediction; prints how much longer the
/// median is (the emulator's overhead, and the CPU's time where it is slower than the
/// predicted device).
#[test]
fn invokes_last_at_least_the_prediction() {
    let Some((runtime, edgetpu, compiler)) = common::edgetpu_toolchain() else {
        return;
    };
    let _devices = common::devices();
    for (name, model) in [
        ("fc N=1620", paper::fc(1620).unwrap()),
        ("fc N=2640", paper::fc(2640).unwrap()),
    ] {
        let bytes = model.to_bytes().unwrap();
        let predicted = EdgeTpuCostModel::usb_default()
            .predict(&SegmentWorkload::from_model(
                &model,
                0..model.operators.len(),
            ))
            .latency_s;
        let delegate = edgetpu.open(&selector("usb:0"), &[]).unwrap();
        let mut interpreter = Interpreter::with_edgetpu(
            &runtime,
            compiler.compile(&bytes).unwrap().model,
            &InterpreterOptions::default(),
            delegate,
        )
        .unwrap();
        interpreter.invoke().unwrap();
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                let start = Instant::now();
                interpreter.invoke().unwrap();
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        assert!(
            times[0] >= predicted,
            "{name}: {} s against {predicted} s",
            times[0]
        );
        eprintln!(
            "{name}: predicted {:.3} ms, median invoke {:.3} ms ({:+.1} %)",
            predicted * 1e3,
            times[7] * 1e3,
            (times[7] / predicted - 1.0) * 100.0
        );
    }
}

#[test]
fn the_compiler_has_edgetpu_compilers_command_line() {
    let Some(zoo_dir) = common::zoo_dir() else {
        return;
    };
    let out = std::env::temp_dir().join(format!("edgetpu-emulator-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let mut models = vec![zoo_dir.join(zoo::CNN_INT8)];
    models.extend(common::shared_dir().map(|dir| dir.join(MOBILENET)));
    for model in &models {
        let compiled = compile_in_two(model, &out);
        // A compiled model is refused, as by Coral's compiler.
        let refused = Command::new(env!("CARGO_BIN_EXE_edgetpu_compiler"))
            .arg("-o")
            .arg(&out)
            .arg(&compiled)
            .output()
            .unwrap();
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("already compiled"));
    }
    let compiler = env!("CARGO_BIN_EXE_edgetpu_compiler");
    for args in [&["--bogus"][..], &["-o"][..], &[][..]] {
        let status = Command::new(compiler).args(args).output().unwrap().status;
        assert!(!status.success(), "{args:?}");
    }
    if let Some(dir) = common::shared_dir() {
        let refused = Command::new(compiler)
            .arg("-o")
            .arg(&out)
            .arg(dir.join(MOBILENET_CORAL))
            .output()
            .unwrap();
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("already compiled"));
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `edgetpu_compiler -s --num_segments=2 -o OUT MODEL`: checks its report and its two
/// files, and returns the first one's path.
fn compile_in_two(model: &std::path::Path, out: &std::path::Path) -> std::path::PathBuf {
    let compiler = env!("CARGO_BIN_EXE_edgetpu_compiler");
    let output = Command::new(compiler)
        .args(["-s", "--num_segments=2", "-o"])
        .arg(out)
        .arg(model)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.starts_with("emulated Edge TPU Compiler"), "{stdout}");
    assert!(stdout.contains("Mapped to emulated Edge TPU"), "{stdout}");
    assert!(
        stdout
            .lines()
            .all(|l| !l.contains("Edge TPU") || l.contains("emulated Edge TPU")),
        "{stdout}"
    );
    parse_report(&stdout).expect("the real compiler's report lines");
    let stem = model
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a file name");
    let files: Vec<std::path::PathBuf> = (0..2)
        .map(|i| out.join(format!("{stem}_segment_{i}_of_2_edgetpu.tflite")))
        .collect();
    for path in &files {
        let bytes = std::fs::read(path).expect("segment written");
        assert!(is_compiled(&Model::from_bytes(&bytes).unwrap()));
    }
    files[0].clone()
}

#[test]
fn the_runtime_is_found_by_path_too() {
    // `EdgeTpuRuntime::load` goes through MULTITPU_EDGETPU_LIB, as applications do.
    let Some(edgetpu) = common::edgetpu_runtime() else {
        return;
    };
    let loaded = EdgeTpuRuntime::load().expect("MULTITPU_EDGETPU_LIB loads");
    assert_eq!(loaded.version(), edgetpu.version());
}

/// multitpu's `pipeline` example, built next to the test binaries unless it is there.
fn pipeline_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    // Built here (a no-op when up to date): `cargo test --all-targets` builds examples as
    // test harnesses, and a binary left by an earlier build may be stale.
    let status = Command::new(env!("CARGO"))
        // The test profile reuses the library `cargo test` built.
        .args([
            "build",
            "--profile",
            "test",
            "-p",
            "multitpu",
            "--example",
            "pipeline",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the pipeline example failed");
    profile_dir.join("examples").join("pipeline")
}

/// `pipeline --backend edgetpu --reference MODEL` on emulator-compiled segments ends in
/// `identical`, and every line that names an Edge TPU says it is emulated.
#[test]
fn the_pipeline_example_runs_emulated_segments() {
    let (Some(_), Some(_), Some(compiler), Some(zoo_dir)) = (
        common::tflite_runtime(),
        common::edgetpu_runtime(),
        common::edgetpu_compiler(),
        common::zoo_dir(),
    ) else {
        return;
    };
    let mut references = vec![zoo_dir.join(zoo::RESNET)];
    references.extend(common::shared_dir().map(|dir| dir.join(MOBILENET)));
    for reference in &references {
        run_the_pipeline_example(&compiler, reference);
    }
}

/// Cuts `reference` in two, compiles the segments, and runs them with the example.
fn run_the_pipeline_example(
    compiler: &multitpu::deploy::EdgeTpuCompiler,
    reference: &std::path::Path,
) {
    let model = Model::from_bytes(&std::fs::read(reference).unwrap())
        .unwrap()
        .into_owned();
    let graph = Graph::new(&model).unwrap();
    let out =
        std::env::temp_dir().join(format!("edgetpu-emulator-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let files: Vec<String> = UniformByParams
        .plan(&graph, 2)
        .unwrap()
        .extract(&graph)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            let path = out.join(format!("segment_{i}_edgetpu.tflite"));
            let compiled = compiler.compile(&segment.to_bytes().unwrap()).unwrap();
            std::fs::write(&path, compiled.model).unwrap();
            path.display().to_string()
        })
        .collect();
    let _devices = common::devices();
    let output = Command::new(pipeline_example())
        .arg(files.join(","))
        .args(["--backend", "edgetpu", "--batch", "8", "--reference"])
        .arg(reference)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("pipeline: 8 items") && last.ends_with(", identical"),
        "{stdout}"
    );
    assert!(stdout.contains("libedgetpu: emulated Edge TPU"), "{stdout}");
    assert!(stdout.contains("`emulated Edge TPU usb:1`"), "{stdout}");
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(
            !line.contains("Edge TPU") || line.contains("emulated Edge TPU"),
            "{line}"
        );
    }
}
