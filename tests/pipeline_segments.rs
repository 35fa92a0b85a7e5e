//! Pipelines straight from a plan or from segment files, on simulated Edge TPUs (no runtime
//! needed): the model's inputs and outputs, segments out of order refused when built, and
//! errors that name the segment.

use std::path::PathBuf;
use std::sync::Arc;

use multitpu::Error;
use multitpu::backend::{Backend, SimCompute, SimulatedEdgeTpuBackend, Stage};
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::{Graph, Model, paper};
use multitpu::pipeline::{Pipeline, PipelineBuilder};
use multitpu::segment::{Plan, UniformByOps};

fn simulated() -> SimulatedEdgeTpuBackend {
    SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip)
}

fn names(model: &Model<'_>, tensors: &[usize]) -> Vec<String> {
    tensors
        .iter()
        .map(|&t| model.tensors[t].name.to_string())
        .collect()
}

/// A fresh directory for this test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multitpu-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn segment_models_take_and_give_the_models_tensors() {
    let model = paper::fc(300).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = Plan::new(&graph, 3, &UniformByOps).unwrap();
    let pipeline = Pipeline::from_models(
        &plan.segment_models(&graph).expect("segment models"),
        &simulated(),
    )
    .unwrap();
    assert_eq!(pipeline.stage_count(), 3);
    let inputs: Vec<String> = pipeline.inputs().iter().map(|s| s.name.clone()).collect();
    let outputs: Vec<String> = pipeline.outputs().iter().map(|s| s.name.clone()).collect();
    assert_eq!(inputs, names(&model, &model.inputs));
    assert_eq!(outputs, names(&model, &model.outputs));
    let input = &pipeline.inputs()[0];
    for seq in 0..4 {
        assert_eq!(
            pipeline
                .push(&[(&input.name, &vec![0; input.byte_size])])
                .unwrap(),
            seq
        );
    }
    pipeline.close().unwrap();
    assert_eq!(
        (&pipeline)
            .into_iter()
            .map(|o| o.unwrap().seq())
            .collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

#[test]
fn segment_files_out_of_order_are_refused_when_built() {
    let model = paper::fc(300).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = Plan::new(&graph, 3, &UniformByOps).unwrap();
    let dir = scratch("out-of-order");
    let files = plan
        .segment_models(&graph)
        .unwrap()
        .write(&dir, "fc")
        .unwrap()
        .segments;
    let backend = simulated();
    // Segment i reads what segment i - 1 writes.
    let reads = |i: usize| names(&model, &plan.segments[i].inputs)[0].clone();
    assert!(Pipeline::from_segment_files(&files, &backend).is_ok());

    // 0 then 2: segment 2 reads what only the missing segment 1 writes.
    let error = Pipeline::from_segment_files(&[&files[0], &files[2]], &backend).unwrap_err();
    match &error {
        Error::NoProducer {
            stage: 1,
            tensor,
            written_by: None,
            pipeline_inputs,
            ..
        } => {
            assert_eq!(tensor, &reads(2));
            assert_eq!(pipeline_inputs, &[reads(0)]);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(
        error.to_string().contains(&format!("reads `{}`", reads(2))),
        "{error}"
    );

    // 2 then 0: the pipeline input is segment 2's; segment 0 then reads the model's input
    // from nowhere, and the message shows the intermediate tensor taken as input.
    let error = Pipeline::from_segment_files(&[&files[2], &files[0]], &backend).unwrap_err();
    match &error {
        Error::NoProducer {
            stage: 1,
            tensor,
            pipeline_inputs,
            ..
        } => {
            assert_eq!(tensor, &reads(0));
            assert_eq!(pipeline_inputs, &[reads(2)]);
        }
        other => panic!("unexpected error {other}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segment_errors_name_the_index_and_the_file() {
    let model = paper::fc(300).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = Plan::new(&graph, 2, &UniformByOps).unwrap();
    let dir = scratch("segment-errors");
    let files = plan
        .segment_models(&graph)
        .unwrap()
        .write(&dir, "fc")
        .unwrap()
        .segments;
    let backend = simulated();

    let missing = dir.join("missing.tflite");
    let error = Pipeline::from_segment_files(&[&files[0], &missing], &backend).unwrap_err();
    match &error {
        Error::Segment {
            index: 1,
            file: None,
            source,
        } => assert!(matches!(&**source, Error::Io { path, .. } if path == &missing)),
        other => panic!("unexpected error {other}"),
    }
    assert!(error.to_string().starts_with("segment 1: "), "{error}");
    assert!(error.to_string().contains("missing.tflite"), "{error}");

    let garbage = dir.join("garbage.tflite");
    std::fs::write(&garbage, b"not a model").unwrap();
    let error = Pipeline::from_segment_files(&[&garbage, &files[1]], &backend).unwrap_err();
    match &error {
        Error::Segment {
            index: 0,
            file: Some(file),
            source,
        } => {
            assert_eq!(file, &garbage);
            assert!(matches!(**source, Error::Malformed { .. }), "{source}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(
        error
            .to_string()
            .starts_with(&format!("segment 0 ({}): ", garbage.display())),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend whose device `broken` cannot take a segment.
struct BrokenDevice {
    broken: usize,
    inner: SimulatedEdgeTpuBackend,
}

impl Backend for BrokenDevice {
    fn prepare(
        &self,
        segment_model: Arc<[u8]>,
        device_index: usize,
    ) -> multitpu::Result<Box<dyn Stage>> {
        if device_index == self.broken {
            return Err(Error::stage(format!("device {device_index} is unplugged")));
        }
        self.inner.prepare(segment_model, device_index)
    }

    fn name(&self) -> String {
        "broken".into()
    }
}

#[test]
fn from_models_names_the_segment_that_cannot_be_prepared() {
    let model = paper::fc(300).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = Plan::new(&graph, 3, &UniformByOps).unwrap();
    let backend = BrokenDevice {
        broken: 2,
        inner: simulated(),
    };
    let error = Pipeline::from_models(
        &plan.segment_models(&graph).expect("segment models"),
        &backend,
    )
    .unwrap_err();
    assert!(
        matches!(&error, Error::Segment { index: 2, file: None, source } if matches!(**source, Error::Stage { .. })),
        "{error}"
    );
    assert_eq!(error.to_string(), "segment 2: device 2 is unplugged");
}

/// A backend of `devices` simulated Edge TPUs, refusing the others as the Edge TPU backend
/// does: it knows only the device it was asked for.
struct FewDevices {
    devices: usize,
    inner: SimulatedEdgeTpuBackend,
}

impl Backend for FewDevices {
    fn prepare(
        &self,
        segment_model: Arc<[u8]>,
        device_index: usize,
    ) -> multitpu::Result<Box<dyn Stage>> {
        if device_index >= self.devices {
            return Err(Error::NoDevice {
                selector: format!(":{device_index}"),
                needed: device_index + 1,
                available: self.devices,
            });
        }
        self.inner.prepare(segment_model, device_index)
    }

    fn name(&self) -> String {
        "few".into()
    }
}

#[test]
fn too_few_devices_says_how_many_the_pipeline_needs() {
    let model = paper::fc(300).unwrap();
    let graph = Graph::new(&model).unwrap();
    let plan = Plan::new(&graph, 3, &UniformByOps).unwrap();
    assert_eq!(plan.devices(), 3);
    let backend = FewDevices {
        devices: 1,
        inner: simulated(),
    };
    let models = plan.segment_models(&graph).unwrap();
    let error = Pipeline::from_models(&models, &backend).unwrap_err();
    assert_eq!(
        error.to_string(),
        "segment 1: no Edge TPU matches device `:1`: 3 device(s) needed, 1 found"
    );
    let dir = scratch("few-devices");
    let written = models.write(&dir, "fc").unwrap();
    let error = Pipeline::open(&written.manifest, &backend).unwrap_err();
    assert!(
        matches!(&error, Error::Segment { index: 1, source, .. }
            if matches!(**source, Error::NoDevice { needed: 3, available: 1, .. })),
        "{error}"
    );
    let files = written.segments;
    let error = Pipeline::from_segment_files(&files, &backend).unwrap_err();
    assert!(
        matches!(&error, Error::Segment { index: 1, source, .. }
            if matches!(**source, Error::NoDevice { needed: 3, available: 1, .. })),
        "{error}"
    );
    let segments: Vec<Arc<[u8]>> = files
        .iter()
        .map(|file| Arc::from(std::fs::read(file).unwrap()))
        .collect();
    let Err(error) = PipelineBuilder::from_segments(&segments, &backend) else {
        panic!("three segments on one device");
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        matches!(&error, Error::Segment { index: 1, source, .. }
            if matches!(**source, Error::NoDevice { needed: 3, available: 1, .. })),
        "{error}"
    );
}

#[test]
fn too_many_segments_is_a_segment_count_error() {
    let model = paper::fc(300).unwrap();
    let graph = Graph::new(&model).unwrap();
    let error = Plan::new(&graph, 100, &UniformByOps).unwrap_err();
    let Error::SegmentCount {
        requested,
        max,
        operators,
    } = error
    else {
        panic!("unexpected error {error}");
    };
    assert_eq!((requested, operators), (100, graph.op_count()));
    assert_eq!(max, graph.op_count());
    assert!(Plan::new(&graph, max, &UniformByOps).is_ok());
}
