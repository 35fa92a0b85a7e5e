//! Pipelines straight from segments: a plan and its model, segment files, or segment bytes.
//! Edge TPU segments take the backend's devices in order, one per replica; CPU segments run
//! on the host beside them ([`Backend::prepare_cpu`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::model::Graph;
use crate::pipeline::{Backend, Pipeline, PipelineBuilder, Stage};
use crate::segment::{Plan, SegmentKind, extract, segment_file_role};
use crate::{Error, Result};

/// The instances of one segment: `replicas` CPU stages on the host, or one stage per
/// replica on the next devices of `backend` (advancing `next_device`). `needed` is how many
/// devices the whole pipeline takes, for an error about a device that is not there.
fn prepare(
    backend: &dyn Backend,
    bytes: Arc<[u8]>,
    kind: SegmentKind,
    replicas: usize,
    next_device: &mut usize,
    needed: usize,
) -> Result<Vec<Box<dyn Stage>>> {
    match kind {
        SegmentKind::Cpu => (0..replicas.max(1))
            .map(|_| backend.prepare_cpu(Arc::clone(&bytes)))
            .collect(),
        SegmentKind::EdgeTpu => {
            let devices: Vec<usize> = (*next_device..*next_device + replicas.max(1)).collect();
            *next_device += devices.len();
            backend
                .prepare_replicas(bytes, &devices)
                .map_err(|error| needs(error, needed))
        }
    }
}

/// A backend knows only the device it was asked for: the pipeline knows how many it takes.
fn needs(error: Error, needed: usize) -> Error {
    match error {
        Error::NoDevice {
            selector,
            needed: asked,
            available,
        } => Error::NoDevice {
            selector,
            needed: needed.max(asked),
            available,
        },
        other => other,
    }
}

/// Names a segment in an error about it.
fn in_segment(index: usize, file: Option<&Path>) -> impl FnOnce(Error) -> Error {
    let file = file.map(Path::to_path_buf);
    move |source| Error::Segment {
        index,
        file,
        source: Box::new(source),
    }
}

impl PipelineBuilder {
    /// A builder with one stage per segment of `plan`, one instance per replica. The Edge
    /// TPU segments take the backend's devices in order, one per replica (a segment with two
    /// replicas is one stage of two instances, on two devices); the CPU segments run on the
    /// host ([`Backend::prepare_cpu`]). The pipeline inputs and outputs are the model's, in the
    /// model's order (leaving out any that no segment reads or writes).
    ///
    /// `graph` is the model's that `plan` was made for; each segment is extracted from it
    /// and handed to the backend as a standalone model.
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming the segment that could not be extracted or prepared.
    pub fn from_plan(plan: &Plan, graph: &Graph<'_, '_>, backend: &dyn Backend) -> Result<Self> {
        let model = graph.model();
        let read: BTreeSet<usize> = plan
            .segments
            .iter()
            .flat_map(|s| s.inputs.clone())
            .collect();
        let written: BTreeSet<usize> = plan
            .segments
            .iter()
            .flat_map(|s| s.outputs.clone())
            .collect();
        let names = |tensors: &[usize], used: &BTreeSet<usize>| -> Vec<String> {
            tensors
                .iter()
                .filter(|t| used.contains(t))
                .map(|&t| model.tensors[t].name.to_string())
                .collect()
        };
        let mut builder = PipelineBuilder::new()
            .inputs(names(&model.inputs, &read))
            .outputs(names(&model.outputs, &written));
        let mut next_device = 0;
        let needed = plan.devices();
        for (index, segment) in plan.segments.iter().enumerate() {
            let bytes: Arc<[u8]> = extract(graph, segment.ops.clone())
                .and_then(|m| m.to_bytes())
                .map(Arc::from)
                .map_err(in_segment(index, None))?;
            let instances = prepare(
                backend,
                bytes,
                segment.kind,
                segment.replicas,
                &mut next_device,
                needed,
            )
            .map_err(in_segment(index, None))?;
            builder = builder.replicated_stage(instances);
        }
        Ok(builder)
    }

    /// A builder with one stage per segment file (complete `.tflite` models, such as those
    /// [`Plan::write`] writes), in the order given, run as their names say
    /// ([`segment_file_role`]): files named as CPU segments on the host
    /// ([`Backend::prepare_cpu`]), the others on the backend's devices in order, one per
    /// replica. The pipeline inputs are the first segment's (see
    /// [`inputs`](Self::inputs)).
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming the segment whose file could not be read or prepared.
    pub fn from_segment_files<P: AsRef<Path>>(files: &[P], backend: &dyn Backend) -> Result<Self> {
        let mut builder = PipelineBuilder::new();
        let mut next_device = 0;
        // A file whose name is not a segment's is refused below, where its turn comes.
        let needed = files
            .iter()
            .filter_map(|file| segment_file_role(file.as_ref()).ok())
            .filter(|&(kind, _)| kind == SegmentKind::EdgeTpu)
            .map(|(_, replicas)| replicas.max(1))
            .sum();
        for (index, file) in files.iter().enumerate() {
            let path = file.as_ref();
            let bytes = std::fs::read(path)
                .map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    source,
                })
                .map_err(in_segment(index, None))?;
            let (kind, replicas) = segment_file_role(path).map_err(in_segment(index, None))?;
            let instances = prepare(
                backend,
                Arc::from(bytes),
                kind,
                replicas,
                &mut next_device,
                needed,
            )
            .map_err(in_segment(index, Some(path)))?;
            builder = builder.replicated_stage(instances);
        }
        Ok(builder)
    }

    /// A builder with one stage per segment model (the bytes of a complete `.tflite` file),
    /// in the order given, stage `i` on device `i` of `backend`. The pipeline inputs are the
    /// first segment's (see [`inputs`](Self::inputs)).
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming the segment that could not be prepared.
    pub fn from_segments(segments: &[Arc<[u8]>], backend: &dyn Backend) -> Result<Self> {
        let mut builder = PipelineBuilder::new();
        for (index, segment) in segments.iter().enumerate() {
            let stage = backend
                .prepare(Arc::clone(segment), index)
                .map_err(|error| needs(error, segments.len()))
                .map_err(in_segment(index, None))?;
            builder = builder.stage(stage);
        }
        Ok(builder)
    }
}

impl Pipeline {
    /// Runs `plan`'s segments of the model in `graph` on `backend`'s devices, CPU segments
    /// on the host, with the default queues: [`PipelineBuilder::from_plan`], then
    /// [`build`](PipelineBuilder::build).
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming a segment that could not be extracted or prepared, or an
    /// error of [`PipelineBuilder::build`].
    pub fn from_plan(plan: &Plan, graph: &Graph<'_, '_>, backend: &dyn Backend) -> Result<Self> {
        PipelineBuilder::from_plan(plan, graph, backend)?.build()
    }

    /// Runs segment files in the order given, CPU segment files on the host and the others
    /// on `backend`'s devices in order, with the default queues: [`PipelineBuilder::from_segment_files`], then
    /// [`build`](PipelineBuilder::build).
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming a segment whose file could not be read or prepared, or an
    /// error of [`PipelineBuilder::build`] (such as [`Error::NoProducer`] for files given
    /// out of order).
    pub fn from_segment_files<P: AsRef<Path>>(files: &[P], backend: &dyn Backend) -> Result<Self> {
        PipelineBuilder::from_segment_files(files, backend)?.build()
    }
}
