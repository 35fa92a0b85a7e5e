//! The crate's one error type, and how an isolated child ended ([`ChildExit`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::model::ElementType;
use crate::model::options::FieldType;
use crate::model::validate::ModelLocation;
use crate::tensor::TensorSpec;

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

    /// A model cannot be split into the number of segments asked for: 0, or more than its
    /// valid cut points allow (a cut may not split a stateful operator's variables).
    #[error(
        "cannot split the model into {requested} segment(s): it allows 1 to {max} \
         ({operators} operators, {} valid cut point(s))",
        .max - 1
    )]
    SegmentCount {
        /// Segments asked for.
        requested: usize,
        /// The most segments the model allows: its valid cut points + 1.
        max: usize,
        /// Operators in the model.
        operators: usize,
    },

    /// A plan with exactly one segment on each of `requested` Edge TPUs does not exist: the
    /// operators the Edge TPU runs form at most `max` device segments between the CPU ones.
    #[error(
        "cannot give each of {requested} Edge TPUs a segment of its own: this model's \
         operators make at most {max} Edge TPU segment(s) (a budget of devices, or fewer, works)"
    )]
    DeviceSegmentCount {
        /// Edge TPUs asked for.
        requested: usize,
        /// The most Edge TPU segments the model allows.
        max: usize,
    },

    /// A device budget the profiled planner does not take: at least 1, and at most
    /// [`MAX_DEVICES`](crate::deploy::MAX_DEVICES), since its search grows with the cube of
    /// the budget.
    #[error("a budget of {requested} devices: the profiled planner takes 1 to {max}")]
    DeviceBudget {
        /// Devices asked for.
        requested: usize,
        /// The largest budget taken.
        max: usize,
    },

    /// A cut given to [`Plan::from_cuts`](crate::segment::Plan::from_cuts) (the first operator
    /// of a segment) cannot be used.
    #[error("cannot cut before operator {cut}: {reason}")]
    InvalidCut {
        /// The operator the cut was asked before.
        cut: usize,
        /// Why: out of order, out of range, or splitting a stateful operator's variables.
        reason: String,
    },

    /// A model, graph or plan given to the library is inconsistent.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was inconsistent (a plan, a segment model, the cost model...).
        what: &'static str,
        /// How.
        reason: String,
    },

    /// A plan manifest ([`crate::deploy`]) that cannot be run: what is wrong, and on which
    /// line (`None` for the file as a whole).
    #[error("plan manifest {}{}: {reason}", path.display(), line.map(|n| format!(", line {n}")).unwrap_or_default())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The 1-based line, when one line is at fault.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },

    /// A model fails validation: a field TFLite would trust is out of range or contradicts
    /// the rest of the model (see [`Model::validate`](crate::model::Model::validate)).
    #[error("invalid model: {location}, field `{field}`: {reason}")]
    InvalidModel {
        /// The tensor or operator (index and name), or the subgraph.
        location: ModelLocation,
        /// The field at fault, as named in the schema (`shape`, `quantization.scale`,
        /// `type`, `outputs`, `builtin_options`, ...).
        field: &'static str,
        /// What is wrong, with the values involved.
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

    /// Tensor data was read or written as another element type than the tensor has (e.g.
    /// `get_as::<f32>` on an int8 output, or `quantize::<u8>` for an int8 tensor).
    #[error("tensor `{tensor}` holds {actual:?} elements, not {expected:?}")]
    TensorType {
        /// The tensor's name.
        tensor: String,
        /// The element type asked for.
        expected: ElementType,
        /// The tensor's element type.
        actual: ElementType,
    },

    /// A buffer holds another number of elements than the tensor it is converted for.
    #[error("tensor `{tensor}`: expected {expected} elements, got {actual}")]
    ElementCount {
        /// The tensor's name.
        tensor: String,
        /// Elements the tensor holds.
        expected: usize,
        /// Elements given.
        actual: usize,
    },

    /// Quantizing or dequantizing a tensor that has no quantization parameters.
    #[error("tensor `{tensor}` is not quantized (it has no scale and zero point)")]
    NotQuantized {
        /// The tensor's name.
        tensor: String,
    },

    /// A byte buffer is not aligned for the element type it was to be viewed as; copy it
    /// instead (e.g. with [`TensorSpec::to_f32`]).
    #[error("tensor `{tensor}`: the buffer is not aligned to {alignment} bytes")]
    TensorAlignment {
        /// The tensor's name.
        tensor: String,
        /// The alignment its element type needs.
        alignment: usize,
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
    #[error(
        "no Edge TPU matches device `{selector}`: {needed} device(s) needed, {available} found"
    )]
    NoDevice {
        /// The selector (`":N"` for a device index).
        selector: String,
        /// How many devices of the kind asked for are needed: a plan's or pipeline's Edge
        /// TPU devices in all, else the selector's position among them plus one.
        needed: usize,
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
        /// The program's name or path.
        program: String,
        /// What is missing or unreadable.
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

    /// A segment could not become a pipeline stage: its file could not be read, or it could
    /// not be extracted from the model or prepared by the backend.
    #[error(
        "segment {index}{}: {source}",
        .file.as_ref().map(|f| format!(" ({})", f.display())).unwrap_or_default()
    )]
    Segment {
        /// Index of the segment, which is also its stage's and device's.
        index: usize,
        /// The segment's file, when the segment was read from one (a failed read names it
        /// in its [`Error::Io`] instead).
        file: Option<PathBuf>,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },

    /// A pipeline stage reads a tensor that neither a pipeline input nor an earlier stage
    /// provides: a stage is missing or out of order, or a pipeline input was not named
    /// (see [`PipelineBuilder::inputs`](crate::pipeline::PipelineBuilder::inputs)).
    #[error(
        "pipeline stage {stage} ({stage_desc}) reads `{tensor}`, which neither a pipeline input \
         ({}) nor an earlier stage provides{}",
        names_text(.pipeline_inputs),
        .written_by.map(|p| format!(" (stage {p} writes it: are the stages out of order?)")).unwrap_or_default()
    )]
    NoProducer {
        /// Index of the stage that reads the tensor.
        stage: usize,
        /// That stage's `describe()`.
        stage_desc: String,
        /// The tensor's name.
        tensor: String,
        /// A later stage that writes the tensor, if any.
        written_by: Option<usize>,
        /// The pipeline inputs, named or taken from the first stage.
        pipeline_inputs: Vec<String>,
    },

    /// A pipeline stage reads a tensor with another element type, byte size or quantization
    /// than the pipeline input or earlier stage that provides it.
    #[error(
        "pipeline stage {stage} ({stage_desc}) reads `{tensor}` as {}, but {} provides it as {}",
        spec_text(.read),
        .provided_by.map_or_else(|| "the pipeline input".to_string(), |p| format!("stage {p}")),
        spec_text(.provided)
    )]
    TensorMismatch {
        /// Index of the stage that reads the tensor.
        stage: usize,
        /// That stage's `describe()`.
        stage_desc: String,
        /// The tensor's name.
        tensor: String,
        /// The stage that provides the tensor, or `None` for a pipeline input (whose spec is
        /// the first reader's).
        provided_by: Option<usize>,
        /// The tensor as provided.
        provided: Box<TensorSpec>,
        /// The tensor as the stage reads it.
        read: Box<TensorSpec>,
    },

    /// `push` after `close`: the pipeline takes no more input.
    #[error("the pipeline is closed to new input")]
    PipelineClosed,

    /// A stage's own failure: what a [`Stage`](crate::backend::Stage) written outside this
    /// crate returns from `run` when its work fails (see [`Error::stage`]). The pipeline
    /// reports it as the `cause` of [`Error::StageFailed`].
    #[error("{message}")]
    Stage {
        /// What went wrong.
        message: String,
        /// The error that caused it, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// A pipeline stage failed or panicked while running an item; the pipeline stopped.
    ///
    /// Every item pushed came out of `pop` or is in `lost`, never both: the items before the
    /// failed one still finish every stage and come out first, in order; `lost` lists the
    /// failed item and every later one.
    #[error(
        "pipeline stage {stage} ({stage_desc}) {}{}: {message}; {} item(s) lost",
        if *.panicked { "panicked" } else { "failed" },
        .item.map(|seq| format!(" on item {seq}")).unwrap_or_default(),
        .lost.len()
    )]
    StageFailed {
        /// Index of the stage in the pipeline.
        stage: usize,
        /// Which instance of a replicated stage (0 when not replicated).
        instance: usize,
        /// The stage's `describe()`: backend and device.
        stage_desc: String,
        /// Sequence number of the item the stage was running (`None` if its thread failed
        /// between items).
        item: Option<u64>,
        /// What the stage reported, or the panic message.
        message: String,
        /// Whether the stage panicked rather than returned an error.
        panicked: bool,
        /// The error the stage returned (`None` after a panic), to match on its variant.
        #[source]
        cause: Option<Arc<Error>>,
        /// Sequence numbers of the pushed items that will never come out, ascending.
        lost: Vec<u64>,
    },

    /// A child process (see [`crate::isolate`]: a check, or an isolated stage's worker) died
    /// or hung: TFLite crashed, aborted, ran out of memory or ran past the time limit on a
    /// model, and the child went down instead of the caller.
    #[error("the isolated child died {what}: {reason}{}", last_line(stderr))]
    Isolated {
        /// What the child was doing, naming the model: e.g. `invoking
        /// segments/m_segment_1_of_2.tflite (trial 0)`, `loading segment 2 of 4`.
        what: String,
        /// The file of that model, when it came from one.
        path: Option<PathBuf>,
        /// How the child ended.
        reason: ChildExit,
        /// The last 4 KiB the child wrote on stderr (TFLite's and the C++ runtime's last
        /// words, e.g. `terminate called after throwing an instance of 'std::bad_alloc'`).
        stderr: String,
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
    /// A stage's own failure ([`Error::Stage`]) with no underlying error.
    pub fn stage(message: impl Into<String>) -> Self {
        Error::Stage {
            message: message.into(),
            source: None,
        }
    }

    /// A stage's own failure ([`Error::Stage`]) caused by `source`.
    pub fn stage_with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Stage {
            message: message.into(),
            source: Some(source.into()),
        }
    }

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

/// Tensor names for messages: `` `a`, `b` ``.
fn names_text(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// A tensor's type, shape, size and quantization for messages, e.g. `U8[1, 10] (10 bytes)`
/// or `I8[1, 10] (10 bytes, scale [0.5], zero point [-3])`.
fn spec_text(spec: &TensorSpec) -> String {
    let quantization = spec
        .quantization
        .as_ref()
        .map(|q| format!(", scale {:?}, zero point {:?}", q.scale, q.zero_point))
        .unwrap_or_default();
    format!(
        "{:?}{:?} ({} bytes{quantization})",
        spec.element_type, spec.shape, spec.byte_size
    )
}

/// `; last on stderr: <line>` for the last non-empty line of `stderr`, or nothing.
fn last_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map_or(String::new(), |line| format!("; last on stderr: {line}"))
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How an isolated child ended without giving a result: the `reason` of
/// [`Error::Isolated`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildExit {
    /// Killed by a signal: `SIGSEGV` or `SIGBUS` (a bad memory access), `SIGABRT` (an abort:
    /// a failed check in TFLite, an uncaught C++ exception), `SIGKILL` from outside the
    /// parent (the kernel's out-of-memory killer, a user), ...
    Signal(i32),
    /// Ran out of memory: an allocation failed under the memory limit (in bytes, if one was
    /// set) and the child aborted.
    OutOfMemory {
        /// The child's memory limit, if any.
        limit: Option<u64>,
    },
    /// Still running after the time limit: killed.
    Timeout(Duration),
    /// A Rust panic (a bug in this crate, or in the program before [`run_if_child`](crate::isolate::run_if_child)).
    Panicked,
    /// Exited with this code without a result.
    Exited(i32),
    /// The program did not answer as an isolated child: its `main` does not start with
    /// [`run_if_child`](crate::isolate::run_if_child), or it is not a program using this crate.
    NoAnswer,
}

impl ChildExit {
    /// A signal's usual name (`SIGSEGV`), or `None` for one not listed here.
    fn signal_name(signal: i32) -> Option<&'static str> {
        #[cfg(target_os = "linux")]
        {
            Some(match signal {
                libc::SIGILL => "SIGILL",
                libc::SIGTRAP => "SIGTRAP",
                libc::SIGABRT => "SIGABRT",
                libc::SIGBUS => "SIGBUS",
                libc::SIGFPE => "SIGFPE",
                libc::SIGKILL => "SIGKILL",
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGPIPE => "SIGPIPE",
                libc::SIGTERM => "SIGTERM",
                libc::SIGXCPU => "SIGXCPU",
                libc::SIGSYS => "SIGSYS",
                _ => return None,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = signal;
            None
        }
    }
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildExit::Signal(signal) => match ChildExit::signal_name(*signal) {
                Some(name) => write!(f, "killed by signal {signal} ({name})"),
                None => write!(f, "killed by signal {signal}"),
            },
            ChildExit::OutOfMemory { limit: Some(limit) } => write!(
                f,
                "ran out of memory (limit {} MiB)",
                limit.div_ceil(1 << 20)
            ),
            ChildExit::OutOfMemory { limit: None } => write!(f, "ran out of memory"),
            ChildExit::Timeout(limit) => {
                write!(
                    f,
                    "still running after {:.1} s, killed",
                    limit.as_secs_f64()
                )
            }
            ChildExit::Panicked => write!(f, "panicked"),
            ChildExit::Exited(code) => write!(f, "exited with code {code} without a result"),
            ChildExit::NoAnswer => write!(
                f,
                "did not answer as an isolated child: its program must call \
                 multitpu::isolate::run_if_child() first thing in main"
            ),
        }
    }
}
