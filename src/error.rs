//! The crate's one error type.

use std::path::PathBuf;

use crate::model::options::FieldType;

/// Everything that can go wrong in multitpu, naming what failed and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model bytes are not a valid TFLite flatbuffer.
    #[error("malformed model: {what} (at byte {offset})")]
    Malformed { what: String, offset: usize },

    /// The model is valid but uses a feature this crate does not handle.
    #[error("unsupported model feature: {feature}")]
    Unsupported { feature: String },

    /// A model, graph or plan given to the library is inconsistent.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A TFLite runtime call failed; `message` holds what TFLite reported.
    #[error("TFLite {call} failed: {message}")]
    Runtime { call: &'static str, message: String },

    /// A buffer's size does not match the tensor it is copied to or from.
    #[error("tensor `{tensor}`: expected {expected} bytes, got {actual}")]
    TensorSize {
        tensor: String,
        expected: usize,
        actual: usize,
    },

    /// No tensor with this name among the inputs or outputs.
    #[error("no {kind} tensor named `{name}`")]
    UnknownTensor { kind: &'static str, name: String },

    /// A native library (TFLite or libedgetpu) could not be loaded; the message says how
    /// to fix it.
    #[error(transparent)]
    Library(#[from] libedgetpu_sys::LoadError),

    /// An Edge TPU device string (`""`, `":N"`, `"usb"`, `"usb:N"`, `"pci"`, `"pci:N"`)
    /// could not be parsed.
    #[error("invalid Edge TPU device `{input}`: {reason}")]
    DeviceSelector { input: String, reason: &'static str },

    /// No Edge TPU matches a device selector.
    #[error("no Edge TPU matches device `{selector}` ({available} matching device(s) found)")]
    NoDevice { selector: String, available: usize },

    /// Two pipeline stages of this process asked for the same Edge TPU (`index` is the device
    /// index, or the position of the selector, that asked second).
    #[error("Edge TPU {device} is already taken by another stage (asked for as device {index})")]
    DeviceTaken { device: String, index: usize },

    /// A segment given to the Edge TPU backend holds no `edgetpu-custom-op`.
    #[error(
        "the segment for Edge TPU device {index} is not compiled for the Edge TPU \
         (no edgetpu-custom-op); compile it with edgetpu_compiler first"
    )]
    NotCompiled { index: usize },

    /// A tensor index out of range.
    #[error("{kind} tensor index {index} out of range ({count} tensors)")]
    TensorIndex {
        kind: &'static str,
        index: usize,
        count: usize,
    },

    /// No builtin options table with this name or union tag in the schema.
    #[error("unknown builtin options table {table}")]
    UnknownOptionsTable { table: String },

    /// A builtin options table has no field of this name.
    #[error("options table `{table}` has no field `{field}`")]
    UnknownOptionsField { table: &'static str, field: String },

    /// A value's type differs from the type of its options field in the schema.
    #[error("options table `{table}`, field `{field}`: expected {expected:?}, got {actual:?}")]
    OptionsFieldType {
        table: &'static str,
        field: &'static str,
        expected: FieldType,
        actual: FieldType,
    },

    /// An external program is not installed or not executable; `hint` says how to get it.
    #[error("`{program}` not found: {hint}")]
    ToolNotFound {
        /// The program's name, or the path that was tried.
        program: String,
        /// How to install it or point to it.
        hint: &'static str,
    },

    /// An external program ran and reported failure.
    #[error("`{}` failed ({status}): {stderr}", program.display())]
    ToolFailed {
        /// The program that ran.
        program: PathBuf,
        /// How it ended (exit code or signal).
        status: String,
        /// What it printed on stderr (its stdout if stderr was empty).
        stderr: String,
    },

    /// An external program succeeded but its output lacks what was expected.
    #[error("cannot read the output of `{program}`: {reason}")]
    ToolOutput {
        /// The program's name.
        program: &'static str,
        /// What is missing or unreadable.
        reason: String,
    },

    /// A calibration file is malformed; `line` is 1-based (0 for the file as a whole).
    #[error("calibration data {path}, line {line}: {reason}")]
    Calibration {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    /// A named tensor given twice, e.g. the same pipeline input twice in one `push`.
    #[error("{kind} tensor `{name}` given twice")]
    DuplicateTensor { kind: &'static str, name: String },

    /// A required named tensor is missing, e.g. a pipeline input left out of a `push`.
    #[error("{kind} tensor `{name}` is missing")]
    MissingTensor { kind: &'static str, name: String },

    /// `push` after `close`: the pipeline takes no more input.
    #[error("the pipeline is closed to new input")]
    PipelineClosed,

    /// A pipeline stage failed or panicked; the pipeline stopped.
    ///
    /// Every item pushed before the failure either came out of `pop` before this error was
    /// reported, or its sequence number is in `lost` (sorted, no duplicates).
    #[error(
        "pipeline stage {stage} ({stage_desc}) {}: {message}; {} item(s) lost",
        if *.panicked { "panicked" } else { "failed" },
        .lost.len()
    )]
    StageFailed {
        /// Index of the stage in the pipeline.
        stage: usize,
        /// Which instance of a replicated stage (0 when not replicated).
        instance: usize,
        /// The stage's `describe()`: backend and device.
        stage_desc: String,
        /// What the backend reported, or the panic message.
        message: String,
        /// Whether the stage panicked rather than returned an error.
        panicked: bool,
        /// Sequence numbers of the pushed items that will never come out.
        lost: Vec<u64>,
    },

    /// The operating system refused to start a thread.
    #[error("cannot start thread `{thread}`: {source}")]
    Spawn {
        thread: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn malformed(what: impl Into<String>, offset: usize) -> Self {
        Error::Malformed {
            what: what.into(),
            offset,
        }
    }

    pub(crate) fn unsupported(feature: impl Into<String>) -> Self {
        Error::Unsupported {
            feature: feature.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
