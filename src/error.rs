//! The crate's one error type.

use std::path::PathBuf;

use crate::model::options::FieldType;

/// Everything that can go wrong in multitpu, naming what failed and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model bytes are not a valid TFLite flatbuffer.
    #[error("malformed model: {what} (at byte {offset})")]
    Malformed {
        /// What is wrong, with the path of the field in the schema.
        what: String,
        /// Byte offset in the file where it was found.
        offset: usize,
    },

    /// The model is valid but uses a feature this crate does not handle.
    #[error("unsupported model feature: {feature}")]
    Unsupported {
        /// The feature, and what to do instead when there is a way.
        feature: String,
    },

    /// A model, graph or plan given to the library is inconsistent.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was inconsistent (a plan, a segment model, the cost model...).
        what: &'static str,
        /// How.
        reason: String,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A TFLite runtime call failed; `message` holds what TFLite reported.
    #[error("TFLite {call} failed: {message}")]
    Runtime {
        /// The C API function, or the step that failed.
        call: &'static str,
        /// TFLite's (or libedgetpu's) own message.
        message: String,
    },

    /// A buffer's size does not match the tensor it is copied to or from.
    #[error("tensor `{tensor}`: expected {expected} bytes, got {actual}")]
    TensorSize {
        /// The tensor's name.
        tensor: String,
        /// Bytes the tensor holds.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },

    /// No tensor with this name among the inputs or outputs.
    #[error("no {kind} tensor named `{name}`")]
    UnknownTensor {
        /// Which tensors were looked in, e.g. `input`, `output` or `pipeline input`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },

    /// A native library (TFLite or libedgetpu) could not be loaded; the message says how
    /// to fix it.
    #[error(transparent)]
    Library(#[from] libedgetpu_sys::LoadError),

    /// An Edge TPU device string (`""`, `":N"`, `"usb"`, `"usb:N"`, `"pci"`, `"pci:N"`)
    /// could not be parsed.
    #[error("invalid Edge TPU device `{input}`: {reason}")]
    DeviceSelector {
        /// The string given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// No Edge TPU matches a device selector.
    #[error("no Edge TPU matches device `{selector}` ({available} matching device(s) found)")]
    NoDevice {
        /// The selector (`":N"` for a device index).
        selector: String,
        /// How many devices of the kind asked for are attached.
        available: usize,
    },

    /// Two pipeline stages of this process asked for the same Edge TPU (`index` is the device
    /// index, or the position of the selector, that asked second).
    #[error("Edge TPU {device} is already taken by another stage (asked for as device {index})")]
    DeviceTaken {
        /// The device's kind and path.
        device: String,
        /// The device index (or selector position) that asked second.
        index: usize,
    },

    /// A segment given to the Edge TPU backend holds no `edgetpu-custom-op`.
    #[error(
        "the segment for Edge TPU device {index} is not compiled for the Edge TPU \
         (no edgetpu-custom-op); compile it with edgetpu_compiler first"
    )]
    NotCompiled {
        /// The device index the segment was given for.
        index: usize,
    },

    /// The Edge TPU delegate refused the model or failed while TFLite applied it (for
    /// example, a compiled program its runtime cannot run); `message` is what the delegate
    /// and TFLite reported.
    #[error("the Edge TPU delegate of {device} could not be applied: {message}")]
    EdgeTpuDelegate {
        /// The device's kind and path.
        device: String,
        /// What the delegate and TFLite reported.
        message: String,
    },

    /// A tensor index out of range.
    #[error("{kind} tensor index {index} out of range ({count} tensors)")]
    TensorIndex {
        /// Which tensors were looked in, e.g. `input`, `output` or `pipeline input`.
        kind: &'static str,
        /// The index given.
        index: usize,
        /// How many there are.
        count: usize,
    },

    /// No builtin options table with this name or union tag in the schema.
    #[error("unknown builtin options table {table}")]
    UnknownOptionsTable {
        /// The name or tag given.
        table: String,
    },

    /// A builtin options table has no field of this name.
    #[error("options table `{table}` has no field `{field}`")]
    UnknownOptionsField {
        /// The options table.
        table: &'static str,
        /// The field name given.
        field: String,
    },

    /// A value's type differs from the type of its options field in the schema.
    #[error("options table `{table}`, field `{field}`: expected {expected:?}, got {actual:?}")]
    OptionsFieldType {
        /// The options table.
        table: &'static str,
        /// The field.
        field: &'static str,
        /// The field's type in the schema.
        expected: FieldType,
        /// The type of the value given.
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
        /// The file.
        path: PathBuf,
        /// 1-based line, or 0 for the whole file.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// A named tensor given twice, e.g. the same pipeline input twice in one `push`.
    #[error("{kind} tensor `{name}` given twice")]
    DuplicateTensor {
        /// Which tensors were looked in, e.g. `input`, `output` or `pipeline input`.
        kind: &'static str,
        /// The tensor's name.
        name: String,
    },

    /// A required named tensor is missing, e.g. a pipeline input left out of a `push`.
    #[error("{kind} tensor `{name}` is missing")]
    MissingTensor {
        /// Which tensors were looked in, e.g. `input`, `output` or `pipeline input`.
        kind: &'static str,
        /// The tensor's name.
        name: String,
    },

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
        /// The thread's name.
        thread: String,
        /// The operating system's error.
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

    /// `Ok` if a buffer of `actual` bytes fits tensor `tensor` of `expected` bytes, else
    /// [`Error::TensorSize`].
    pub(crate) fn check_tensor_size(tensor: &str, expected: usize, actual: usize) -> Result<()> {
        if actual == expected {
            Ok(())
        } else {
            Err(Error::TensorSize {
                tensor: tensor.to_string(),
                expected,
                actual,
            })
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
