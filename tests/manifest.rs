//! Plans on disk: segment models written beside a plan manifest run as planned, whatever
//! the files are called, and a manifest or file that is not what was written is refused
//! with an error naming the line or the file.

mod common;

use std::path::PathBuf;

use multitpu::Error;
use multitpu::backend::{CpuBackend, EdgeTpuBackend};
use multitpu::deploy::{SegmentKind, SegmentModels};
use multitpu::model::{Graph, paper};
use multitpu::pipeline::Pipeline;
use multitpu::segment::Plan;

/// A fresh folder of this test's own.
fn folder(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multitpu-manifest-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary folder");
    dir
}

/// The paper's fc model cut in two, its second segment in two replicas.
fn replicated_fc_models() -> SegmentModels {
    let model = paper::fc(300).expect("fc");
    let graph = Graph::new(&model).expect("graph");
    let mut plan = Plan::from_cuts("test", &graph, &[graph.op_count() / 2]).expect("cut");
    plan.segments[1].replicas = 2;
    plan.segment_models(&graph).expect("segment models")
}

/// Every output of `items` equal items pushed through `pipeline`, in order.
fn run(pipeline: &Pipeline, items: usize) -> Vec<Vec<Vec<u8>>> {
    let inputs: Vec<(String, Vec<u8>)> = pipeline
        .inputs()
        .iter()
        .map(|spec| (spec.name.clone(), common::pattern(spec.byte_size)))
        .collect();
    for _ in 0..items {
        let named: Vec<(&str, &[u8])> = inputs
            .iter()
            .map(|(name, data)| (name.as_str(), data.as_slice()))
            .collect();
        pipeline.push(&named).expect("push");
    }
    pipeline.close().expect("close");
    pipeline
        .into_iter()
        .map(|output| {
            let output = output.expect("an output");
            (0..pipeline.outputs().len())
                .map(|i| output.tensor(i).expect("tensor").to_vec())
                .collect()
        })
        .collect()
}

#[test]
fn a_written_plan_opens_as_planned_even_renamed() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let models = replicated_fc_models();
    let dir = folder("opens");
    let written = models.write(&dir, "fc").expect("write");
    assert_eq!(written.manifest, dir.join("fc.plan"));
    assert_eq!(written.segments.len(), 2);
    assert!(written.segments[1].ends_with("fc_segment_1_of_2_x2.tflite"));

    // The manifest, not the name, says the second segment runs in two replicas.
    let renamed = dir.join("second.tflite");
    std::fs::rename(&written.segments[1], &renamed).expect("rename");
    let text = std::fs::read_to_string(&written.manifest).expect("manifest");
    std::fs::write(
        &written.manifest,
        text.replace("fc_segment_1_of_2_x2.tflite", "second.tflite"),
    )
    .expect("manifest renamed");

    let backend = CpuBackend::new(runtime, 1, false);
    let opened = Pipeline::open(&written.manifest, &backend).expect("open");
    let instances: Vec<usize> = opened
        .stats()
        .stages
        .iter()
        .map(|s| s.instances.len())
        .collect();
    assert_eq!(instances, [1, 2]);
    let in_memory = Pipeline::from_models(&models, &backend).expect("in memory");
    assert_eq!(
        opened.inputs().iter().map(|s| &s.name).collect::<Vec<_>>(),
        in_memory
            .inputs()
            .iter()
            .map(|s| &s.name)
            .collect::<Vec<_>>()
    );
    assert_eq!(run(&opened, 6), run(&in_memory, 6), "the same outputs");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_file_that_is_not_the_one_written_is_refused() {
    let dir = folder("tampered");
    let written = replicated_fc_models().write(&dir, "fc").expect("write");
    let first = &written.segments[0];
    let original = std::fs::read(first).expect("segment");
    let refused = |what: &str, says: &str| {
        let error = SegmentModels::read(&written.manifest).expect_err(what);
        match &error {
            Error::Segment {
                index: 0,
                file: Some(file),
                source,
            } if file == first => {
                assert!(source.to_string().contains(says), "{what}: {error}");
            }
            other => panic!("{what}: expected a segment 0 error, got {other:?}"),
        }
    };

    let mut longer = original.clone();
    longer.push(0);
    std::fs::write(first, &longer).expect("write");
    refused("a longer file", "bytes, not");

    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    std::fs::write(first, &flipped).expect("write");
    refused("one byte changed", "other bytes");

    std::fs::remove_file(first).expect("remove");
    refused("a missing file", "No such file");

    std::fs::write(first, &original).expect("restore");
    let models = SegmentModels::read(&written.manifest).expect("the file written");
    assert_eq!(models.segments().len(), 2);
    assert_eq!(models.segments()[1].replicas(), 2);
    assert_eq!(models.devices(), 3);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn manifests_this_library_did_not_write_are_refused_by_line() {
    let dir = folder("hostile");
    let written = replicated_fc_models().write(&dir, "fc").expect("write");
    let good = std::fs::read_to_string(&written.manifest).expect("manifest");
    let segment_line = good
        .lines()
        .find(|line| line.starts_with("segment "))
        .expect("a segment line")
        .to_owned();
    let with_file = |file: &str| {
        let mut fields: Vec<&str> = segment_line.split(' ').collect();
        *fields.last_mut().expect("a file field") = file;
        format!("multitpu-plan 1\n{}\n", fields.join(" "))
    };
    let cases: Vec<(String, Option<usize>, &str)> = vec![
        (String::new(), None, "empty"),
        ("# nothing\n\n".to_owned(), None, "empty"),
        ("multitpu-plan 2\n".to_owned(), Some(1), "version"),
        ("multitpu-plan 1\n".to_owned(), None, "no segment"),
        (
            "multitpu-plan 1\nstage x\n".to_owned(),
            Some(2),
            "`stage` is not a manifest line",
        ),
        (
            "multitpu-plan 1\ninput a b\n".to_owned(),
            Some(2),
            "1 field(s) after its keyword, one space apart; this one has 2",
        ),
        (
            "multitpu-plan 1\noutput a\noutput a\n".to_owned(),
            Some(3),
            "output `a` is named twice",
        ),
        (
            format!("multitpu-plan 1\n{segment_line} \n"),
            Some(2),
            "this one has 7",
        ),
        (
            "multitpu-plan 1\ninput %zz\n".to_owned(),
            Some(2),
            "percent-encoded",
        ),
        (with_file("..%2Fescape.tflite"), Some(2), "plain name"),
        (with_file(".."), Some(2), "plain name"),
        (with_file("%2Fetc%2Fpasswd"), Some(2), "plain name"),
        (
            format!(
                "multitpu-plan 1\n{}\n",
                segment_line.replacen("segment edgetpu 1", "segment edgetpu 0", 1)
            ),
            Some(2),
            "0 replicas",
        ),
        (
            format!(
                "multitpu-plan 1\n{}\n",
                segment_line
                    .replace(" source ", " compiled ")
                    .replace("edgetpu", "cpu")
            ),
            Some(2),
            "not compiled",
        ),
    ];
    let manifest = dir.join("hostile.plan");
    for (text, line, says) in cases {
        std::fs::write(&manifest, &text).expect("write");
        match SegmentModels::read(&manifest) {
            Err(Error::Manifest {
                path,
                line: at,
                reason,
            }) => {
                assert_eq!(path, manifest, "{text:?}");
                assert_eq!(at, line, "{text:?}: {reason}");
                assert!(reason.contains(says), "{text:?}: {reason}");
            }
            other => panic!("{text:?}: expected a manifest error, got {other:?}"),
        }
    }
    // A model where the manifest belongs, and a file too large to be a manifest: refused
    // before they are read.
    std::fs::copy(&written.segments[0], &manifest).expect("copy a model");
    let error = SegmentModels::read(&manifest).expect_err("a model");
    assert!(
        error.to_string().contains("this is a .tflite model"),
        "{error}"
    );
    let file = std::fs::File::create(&manifest).expect("create");
    file.set_len(2 << 20).expect("grow");
    let error = SegmentModels::read(&manifest).expect_err("2 MiB");
    assert!(
        matches!(error, Error::Manifest { line: None, .. }),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compiled_segments_run_from_their_manifest_on_edge_tpus() {
    let Some((runtime, edgetpu, compiler)) = common::edgetpu_toolchain() else {
        return;
    };
    let model = paper::conv(32).expect("conv");
    let graph = Graph::new(&model).expect("graph");
    let plan = Plan::from_cuts("test", &graph, &[graph.op_count() / 2]).expect("cut");
    let models = plan.segment_models(&graph).expect("segment models");
    let compiled = models.clone().compile(&compiler).expect("compile");
    for (source, compiled) in models.segments().iter().zip(compiled.segments()) {
        assert_eq!(
            compiled.is_compiled(),
            compiled.kind() == SegmentKind::EdgeTpu,
            "only Edge TPU segments are compiled"
        );
        assert!(!source.is_compiled());
    }
    let dir = folder("edgetpu");
    let written = compiled.write(&dir, "conv").expect("write");
    // A line that says `source` over a compiled file is refused, naming the file.
    let text = std::fs::read_to_string(&written.manifest).expect("manifest");
    std::fs::write(
        &written.manifest,
        text.replacen(" compiled ", " source ", 1),
    )
    .expect("edit");
    let error = SegmentModels::read(&written.manifest).expect_err("says source");
    assert!(
        error
            .to_string()
            .contains("says `source`, but the file is compiled"),
        "{error}"
    );
    std::fs::write(&written.manifest, text).expect("restore");
    for file in &written.segments {
        let name = file.file_name().and_then(|n| n.to_str()).expect("a name");
        assert!(name.ends_with("_edgetpu.tflite"), "{name}");
    }
    let _devices = common::devices();
    let on_devices = Pipeline::open(
        &written.manifest,
        &EdgeTpuBackend::new(runtime.clone(), edgetpu).expect("Edge TPUs"),
    )
    .expect("open on Edge TPUs");
    let cpu = CpuBackend::new(runtime, 1, false);
    let error = Pipeline::open(&written.manifest, &cpu).expect_err("compiled on the CPU");
    assert!(
        matches!(&error, Error::Segment { index: 0, source, .. }
            if matches!(**source, Error::Unsupported { .. })),
        "{error}"
    );
    assert!(
        error.to_string().contains("run it on EdgeTpuBackend"),
        "{error}"
    );
    let on_cpu = Pipeline::from_models(&models, &cpu).expect("cpu");
    assert_eq!(
        run(&on_devices, 3),
        run(&on_cpu, 3),
        "the emulated Edge TPU computes as the CPU"
    );
    std::fs::remove_dir_all(&dir).ok();
}
