//! What a plan becomes on its way to devices: segment models with the role each plays
//! ([`SegmentModels`]), compiled for the Edge TPU, written to files beside a plan manifest
//! that says how to run them, and read back.
//!
//! The planner makes them ([`Plan::segment_models`](crate::segment::Plan::segment_models)),
//! the pipeline runs them ([`Pipeline::from_models`](crate::pipeline::Pipeline::from_models),
//! [`Pipeline::open`](crate::pipeline::Pipeline::open) for a manifest on disk); neither knows
//! the other. A segment's role (where it runs, how many replicas) travels with its bytes and,
//! on disk, in the manifest: a renamed file still runs as planned, and a file that is not the
//! one the manifest names is refused.
//!
//! # The plan manifest
//!
//! A text file, `<stem>.plan`, beside the segment files, saying how to run them:
//!
//! ```text
//! multitpu-plan 1
//! input <tensor name>
//! output <tensor name>
//! segment <edgetpu|cpu> <replicas> <compiled|source> <bytes> <checksum> <file name>
//! ```
//!
//! One `input` and `output` line per pipeline input and output, in push and pop order; one
//! `segment` line per segment, in pipeline order. Fields are separated by one space; names
//! are percent-encoded (every byte that is not printable ASCII, a space or `%` is `%XX`), so
//! any tensor name survives. The checksum is the 64-bit FNV-1a hash of the file, in hex:
//! enough to tell that a file is not the one the manifest was written with, which is all it
//! is for (it is not a defence against someone who can write the folder); `compiled` or
//! `source` must say what the file is. Lines starting with `#` and blank lines are
//! comments.

mod compiler;
mod manifest;
mod names;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::{Model, edgetpu};
use crate::{Error, Result};

pub use compiler::{
    COMPILER_ENV, COMPILER_PROGRAM, CompiledSegment, CompilerReport, EdgeTpuCompiler, parse_report,
};
pub use manifest::MANIFEST_EXTENSION;
pub use names::{segment_file_name, segment_file_role};

/// The most Edge TPUs a plan uses, and so the most replicas a segment has.
pub const MAX_DEVICES: usize = 32;

/// Where a segment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    /// On an Edge TPU (and the host quantisation at its edges on the host, as a compiled
    /// segment does): every operator is one the compiler maps whole.
    EdgeTpu,
    /// On the host CPU, with TFLite's CPU kernels: a segment holding an operator the Edge TPU
    /// cannot run, or no operator it can.
    Cpu,
}

impl SegmentKind {
    /// `edgetpu` or `cpu`, as tables, file names and manifests show it.
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentKind::EdgeTpu => "edgetpu",
            SegmentKind::Cpu => "cpu",
        }
    }
}

/// One segment as a standalone `.tflite` model, with how a pipeline runs it.
#[derive(Debug, Clone)]
pub struct SegmentModel {
    kind: SegmentKind,
    replicas: usize,
    compiled: bool,
    bytes: Arc<[u8]>,
    file: Option<PathBuf>,
}

impl SegmentModel {
    /// A segment of `kind` run by `replicas` instances (each on a device of its own for an
    /// Edge TPU segment), from the bytes of a complete `.tflite` model.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for 0 replicas, more than [`MAX_DEVICES`], or a CPU segment of
    /// more than one (it runs once on the host); the reader's errors for bytes that are not
    /// a model.
    pub fn new(kind: SegmentKind, replicas: usize, bytes: impl Into<Arc<[u8]>>) -> Result<Self> {
        let bytes = bytes.into();
        check_role(kind, replicas).map_err(|reason| Error::invalid("segment role", reason))?;
        let compiled = edgetpu::is_compiled(&Model::from_bytes(&bytes)?);
        Ok(SegmentModel {
            kind,
            replicas,
            compiled,
            bytes,
            file: None,
        })
    }

    /// A segment the planner just cut out of an uncompiled model, so not compiled itself.
    pub(crate) fn planned(kind: SegmentKind, replicas: usize, bytes: Vec<u8>) -> Result<Self> {
        check_role(kind, replicas).map_err(|reason| Error::invalid("segment role", reason))?;
        Ok(SegmentModel {
            kind,
            replicas,
            compiled: false,
            bytes: Arc::from(bytes),
            file: None,
        })
    }

    /// Where the segment runs.
    pub fn kind(&self) -> SegmentKind {
        self.kind
    }

    /// How many instances run the segment side by side.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Whether the bytes are compiled for the Edge TPU (hold an `edgetpu-custom-op`).
    pub fn is_compiled(&self) -> bool {
        self.compiled
    }

    /// The `.tflite` bytes.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// The file the segment was read from, if it was.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// Why a role cannot be run, if it cannot.
fn check_role(kind: SegmentKind, replicas: usize) -> std::result::Result<(), String> {
    if !(1..=MAX_DEVICES).contains(&replicas) {
        return Err(format!(
            "{replicas} replicas; a segment has 1 to {MAX_DEVICES}"
        ));
    }
    if kind == SegmentKind::Cpu && replicas > 1 {
        return Err(format!(
            "a CPU segment runs once on the host, not in {replicas} replicas"
        ));
    }
    Ok(())
}

/// The segments of a plan in pipeline order, with the model's inputs and outputs by name.
///
/// From a plan: [`Plan::segment_models`](crate::segment::Plan::segment_models); compiled:
/// [`compile`](Self::compile); on disk: [`write`](Self::write) and [`read`](Self::read) (a
/// plan manifest), or [`from_files`](Self::from_files) for files named as Coral's tools name
/// segments. A pipeline runs them with
/// [`Pipeline::from_models`](crate::pipeline::Pipeline::from_models).
#[derive(Debug, Clone)]
pub struct SegmentModels {
    segments: Vec<SegmentModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// Where [`SegmentModels::write`] put a plan: the manifest, and the segment files it names
/// in segment order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenPlan {
    /// The plan manifest, `<stem>.` [`MANIFEST_EXTENSION`], which
    /// [`Pipeline::open`](crate::pipeline::Pipeline::open) opens.
    pub manifest: PathBuf,
    /// The segment files, beside it.
    pub segments: Vec<PathBuf>,
}

impl SegmentModels {
    /// Segments in pipeline order, joined into a pipeline whose inputs are `inputs` and
    /// outputs `outputs` (tensor names, in the order a user pushes and pops them; empty for
    /// the first segment's inputs and every output no later segment reads).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when `segments` is empty.
    pub fn new(
        segments: Vec<SegmentModel>,
        inputs: Vec<String>,
        outputs: Vec<String>,
    ) -> Result<Self> {
        if segments.is_empty() {
            return Err(Error::invalid(
                "segment models",
                "a plan has at least one segment",
            ));
        }
        Ok(SegmentModels {
            segments,
            inputs,
            outputs,
        })
    }

    /// Segment files in pipeline order, each run as its name says ([`segment_file_role`]:
    /// `_cpu` on the host, `_x<R>` in R replicas, otherwise on one Edge TPU), such as
    /// segments compiled by Coral's tools. The pipeline's inputs are the first segment's.
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming the file that cannot be read, is named with a role no
    /// segment has, or is not a model.
    pub fn from_files<P: AsRef<Path>>(files: &[P]) -> Result<Self> {
        let segments = files
            .iter()
            .enumerate()
            .map(|(index, file)| {
                let path = file.as_ref();
                // The role and read errors name the file themselves.
                let unnamed = |source| Error::Segment {
                    index,
                    file: None,
                    source: Box::new(source),
                };
                let (kind, replicas) = segment_file_role(path).map_err(unnamed)?;
                let bytes = std::fs::read(path)
                    .map_err(|source| Error::Io {
                        path: path.to_path_buf(),
                        source,
                    })
                    .map_err(unnamed)?;
                let mut segment =
                    SegmentModel::new(kind, replicas, bytes).map_err(in_segment(index, path))?;
                segment.file = Some(path.to_path_buf());
                Ok(segment)
            })
            .collect::<Result<Vec<_>>>()?;
        SegmentModels::new(segments, Vec::new(), Vec::new())
    }

    /// Reads the plan `manifest` written by [`write`](Self::write) and the segment files it
    /// names (in its folder), checking each against the size and checksum the manifest
    /// holds.
    ///
    /// # Errors
    ///
    /// [`Error::Manifest`] saying what is wrong on which line of the manifest (unknown
    /// version or field, a file name that leaves the manifest's folder, a role no segment
    /// has, more than [`MAX_DEVICES`] segments or a manifest over 1 MiB);
    /// [`Error::Segment`] naming a segment file that cannot be read, is not the one the
    /// manifest names, or is compiled where the manifest says `source` (or the reverse);
    /// [`Error::Io`] for the manifest itself.
    pub fn read(manifest: &Path) -> Result<Self> {
        manifest::read(manifest)
    }

    /// The segments, in pipeline order.
    pub fn segments(&self) -> &[SegmentModel] {
        &self.segments
    }

    /// The pipeline's inputs by name, in push order (empty: the first segment's).
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The pipeline's outputs by name, in pop order (empty: every output no later segment
    /// reads, in segment order).
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// How many Edge TPUs a pipeline of these segments takes: one per replica of every Edge
    /// TPU segment.
    pub fn devices(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| s.kind == SegmentKind::EdgeTpu)
            .map(|s| s.replicas)
            .sum()
    }

    /// Compiles every Edge TPU segment not compiled yet with `compiler` (one compiler run
    /// per segment, in segment order); CPU segments stay as they are.
    ///
    /// # Errors
    ///
    /// [`Error::Segment`] naming the segment the compiler failed on, with its error
    /// ([`EdgeTpuCompiler::compile`]).
    pub fn compile(mut self, compiler: &EdgeTpuCompiler) -> Result<Self> {
        for (index, segment) in self.segments.iter_mut().enumerate() {
            if segment.kind != SegmentKind::EdgeTpu || segment.compiled {
                continue;
            }
            let compiled = compiler
                .compile(&segment.bytes)
                .map_err(|source| Error::Segment {
                    index,
                    file: segment.file.clone(),
                    source: Box::new(source),
                })?;
            segment.bytes = Arc::from(compiled.model);
            segment.compiled = true;
            segment.file = None;
        }
        Ok(self)
    }

    /// Writes the segments into `dir` (created if missing) as
    /// `<stem>_segment_<i>_of_<n>[_cpu][_x<R>][_edgetpu].tflite` ([`segment_file_name`],
    /// `_edgetpu` for compiled ones as `edgetpu_compiler` names them) and, beside them, the
    /// plan manifest `<stem>.` [`MANIFEST_EXTENSION`] that
    /// [`Pipeline::open`](crate::pipeline::Pipeline::open) runs them from.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a `stem` that is not a plain file name (a path separator,
    /// `..`, NUL); [`Error::Io`] naming the folder or file that cannot be created or
    /// written. A link already at a file's path is replaced, never written through.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<WrittenPlan> {
        manifest::write(self, dir, stem)
    }
}

/// Names a segment in an error about it.
fn in_segment(index: usize, file: &Path) -> impl FnOnce(Error) -> Error + '_ {
    move |source| Error::Segment {
        index,
        file: Some(file.to_path_buf()),
        source: Box::new(source),
    }
}
