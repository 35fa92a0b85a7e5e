//! Isolated checks with a real child on the real runtime: this test binary is the child (its
//! `main` starts with `run_if_child`, which is why it runs without the test harness).
//!
//! A model that crashes TFLite would need a defect validation misses; the parent's handling
//! of crashes, hangs and aborts is tested against stand-in children in `src/isolate/tests.rs`.
//! Here: the real child gives the in-process results, TFLite's errors come back typed, and a
//! model larger than the memory limit ends in an error, not in the death of this process.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

use multitpu::Error;
use multitpu::backend::Runtime;
use multitpu::isolate::{self, ChildExit, Isolation, NamedModel};
use multitpu::model::builder::{ModelBuilder, Padding};
use multitpu::model::{ElementType, Graph, Model};
use multitpu::segment::{Segmenter, UniformByOps};
use multitpu::verify::verify_chain;

/// `model` cut into `n` segments of about equal operator counts, named as `plan.write`
/// would name them.
fn segments(model: &[u8], n: usize) -> Vec<NamedModel> {
    let model = Model::from_bytes(model).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = UniformByOps.plan(&graph, n).unwrap();
    plan.extract(&graph)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            let name = multitpu::segment::segment_file_name(
                "model",
                i,
                n,
                multitpu::segment::SegmentKind::EdgeTpu,
                1,
            );
            NamedModel::new(name, segment.to_bytes().unwrap())
        })
        .collect()
}

fn verify_chain_gives_the_in_process_report(runtime: &Runtime) {
    let zoo = [
        common::zoo::RESNET,
        common::zoo::LSTM,
        common::zoo::MULTI_IO,
    ]
    .map(|name| (name, common::zoo_model(name)));
    let shared = [
        "MNISTnet_v2_uint8_quant.tflite",
        "keras_lstm_mnist_ptq.tflite",
    ]
    .map(|name| (name, common::shared_model(name)));
    for (name, bytes) in zoo.into_iter().chain(shared) {
        let Some(bytes) = bytes else { continue };
        let parts = segments(&bytes, 3);
        let isolated = Isolation::new()
            .verify_chain(runtime, &NamedModel::new(name, bytes.clone()), &parts, 3, 7)
            .unwrap();
        let in_process = verify_chain(
            runtime,
            &bytes,
            parts.iter().map(|p| p.bytes().to_vec()).collect(),
            3,
            7,
        )
        .unwrap();
        assert_eq!(isolated, in_process, "{name}");
        assert_eq!(isolated.identical, 3, "{name}: {isolated:?}");
    }
}

fn every_real_cpu_model_passes_the_check(runtime: &Runtime) {
    let models: Vec<NamedModel> = common::cpu_models()
        .into_iter()
        .map(|(name, bytes)| NamedModel::new(name, bytes))
        .collect();
    let start = Instant::now();
    Isolation::new().check(runtime, &models, 1, 0).unwrap();
    println!(
        "  {} models checked in one child in {:.1} s",
        models.len(),
        start.elapsed().as_secs_f64()
    );
}

fn tflite_errors_come_back_typed(runtime: &Runtime) {
    // Compiled for the Edge TPU: TFLite cannot resolve its custom op without the delegate.
    let compiled = common::compiled_zoo_model(common::zoo::CNN_INT8);
    let edgetpu = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";
    let shared = common::shared_model(edgetpu);
    for (name, bytes) in [("compiled zoo model", compiled), (edgetpu, shared)] {
        let Some(bytes) = bytes else { continue };
        match Isolation::new().check(runtime, &[NamedModel::new(name, bytes)], 1, 0) {
            Err(Error::Runtime { call, message }) => {
                assert_eq!(call, "TfLiteInterpreterAllocateTensors");
                assert!(message.contains("edgetpu-custom-op"), "{message}");
            }
            other => panic!("{name}: expected a TFLite error, got {other:?}"),
        }
    }
}

fn a_model_larger_than_the_memory_limit_is_contained(runtime: &Runtime) {
    // A valid model whose tensors need 2 × 256 MiB, checked with 256 MiB of address space.
    let mut b = ModelBuilder::new(1);
    let x = b
        .input(
            "x",
            ElementType::U8,
            &[1, 8192, 8192, 4],
            Some(multitpu::model::builder::per_tensor(0.1, 0)),
        )
        .unwrap();
    let y = b.max_pool_2d(x, [1, 1], [1, 1], Padding::Valid).unwrap();
    b.output(y).unwrap();
    let model = b.build().unwrap();
    model.validate().unwrap();
    let model = NamedModel::new("the large model", model.to_bytes().unwrap());
    let result = Isolation::new()
        .with_memory_limit(Some(256 << 20))
        .check(runtime, &[model], 1, 0);
    println!("  256 MiB limit, 512 MiB of tensors: {result:?}");
    match result {
        Err(Error::Isolated {
            reason: ChildExit::OutOfMemory { .. } | ChildExit::Signal(_),
            what,
            ..
        }) => assert_eq!(what, "loading the large model"),
        // TFLite may also report the failed allocation itself.
        Err(Error::Runtime { .. }) => {}
        other => panic!("expected the child to run out of memory, got {other:?}"),
    }
}

/// A test: its name and body.
type Test = (&'static str, fn(&Runtime));

fn main() -> ExitCode {
    isolate::run_if_child();
    let Some(runtime) = common::tflite_runtime() else {
        return ExitCode::SUCCESS;
    };
    let tests: &[Test] = &[
        (
            "verify_chain_gives_the_in_process_report",
            verify_chain_gives_the_in_process_report,
        ),
        (
            "every_real_cpu_model_passes_the_check",
            every_real_cpu_model_passes_the_check,
        ),
        (
            "tflite_errors_come_back_typed",
            tflite_errors_come_back_typed,
        ),
        (
            "a_model_larger_than_the_memory_limit_is_contained",
            a_model_larger_than_the_memory_limit_is_contained,
        ),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        let ok = catch_unwind(AssertUnwindSafe(|| test(&runtime))).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    println!("{} passed, {failed} failed", tests.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
