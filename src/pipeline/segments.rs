//! Pipelines straight from segment models: in memory, from a plan manifest, from segment
//! files, or from bare segment bytes. Edge TPU segments take the backend's devices in order,
//! one per replica; CPU segments run on the host beside them ([`Backend::prepare_cpu`]).

use std::path::Path;
use std::sync::Arc;

use crate::backend::Backend;
use crate::deploy::{SegmentKind, SegmentModels};
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::{Error, Result};

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
    /// A builder with one stage per segment of `models`, one instance per replica. The Edge
    /// TPU segments take the backend's devices in order, one per replica (a segment with two
    /// replicas is one stage of two instances, on two devices); the CPU segments run on the
    /// host ([`Backend::prepare_cpu`]). The pipeline inputs and outputs are those `models`
    /// names ([`SegmentModels::inputs`]; when it names none, see [`inputs`](Self::inputs)).
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming the segment the backend could not prepare.
    pub fn from_models(models: &SegmentModels, backend: &dyn Backend) -> Result<Self> {
        let mut builder = PipelineBuilder::new();
        if !models.inputs().is_empty() {
            builder = builder.inputs(models.inputs().to_vec());
        }
        if !models.outputs().is_empty() {
            builder = builder.outputs(models.outputs().to_vec());
        }
        let mut next_device = 0;
        let needed = models.devices();
        for (index, segment) in models.segments().iter().enumerate() {
            let bytes = Arc::clone(segment.bytes());
            let instances = match segment.kind() {
                SegmentKind::Cpu => backend.prepare_cpu(bytes).map(|stage| vec![stage]),
                SegmentKind::EdgeTpu => {
                    let devices: Vec<usize> =
                        (next_device..next_device + segment.replicas()).collect();
                    next_device += devices.len();
                    backend
                        .prepare_replicas(bytes, &devices)
                        .map_err(|error| needs(error, needed))
                }
            }
            .map_err(in_segment(index, segment.file()))?;
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
    /// Runs `models` on `backend`'s devices, CPU segments on the host, with the default
    /// queues: [`PipelineBuilder::from_models`], then [`build`](PipelineBuilder::build).
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming a segment that could not be prepared, or an error of
    /// [`PipelineBuilder::build`].
    pub fn from_models(models: &SegmentModels, backend: &dyn Backend) -> Result<Self> {
        PipelineBuilder::from_models(models, backend)?.build()
    }

    /// Runs the plan whose manifest is at `manifest` (written by
    /// [`SegmentModels::write`]) on `backend`, each segment as the manifest says:
    /// [`SegmentModels::read`], then [`from_models`](Self::from_models).
    ///
    /// # Errors
    ///
    /// Those of [`SegmentModels::read`] and [`from_models`](Self::from_models).
    pub fn open(manifest: &Path, backend: &dyn Backend) -> Result<Self> {
        Pipeline::from_models(&SegmentModels::read(manifest)?, backend)
    }

    /// Runs segment files in the order given, each as its name says (CPU segment files on
    /// the host, the others on `backend`'s devices in order), with the default queues:
    /// [`SegmentModels::from_files`], then [`from_models`](Self::from_models).
    ///
    /// # Errors
    ///
    /// Those of [`SegmentModels::from_files`] and [`from_models`](Self::from_models) (such
    /// as [`Error::NoProducer`] for files given out of order).
    pub fn from_segment_files<P: AsRef<Path>>(files: &[P], backend: &dyn Backend) -> Result<Self> {
        Pipeline::from_models(&SegmentModels::from_files(files)?, backend)
    }
}
