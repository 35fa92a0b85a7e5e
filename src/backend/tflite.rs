//! The TensorFlow Lite interpreter: load the C library, build an interpreter over model
//! bytes, copy tensors in and out, invoke.

use std::ffi::{CStr, c_char, c_void};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};

use libedgetpu_sys::{
    TfLiteApi, TfLiteDelegate, TfLiteInterpreter, TfLiteInterpreterOptions, TfLiteModel,
    TfLiteStatus, TfLiteTensor, TfLiteType,
};

use super::Owned;
use super::custom_op::{self, Activation, CustomOp, CustomOps, Registered};
use super::edgetpu::Delegate;
use crate::model::validate::Validation;
use crate::model::{ElementType, Model, Quantization};
use crate::tensor::{Element, TensorSpec};
use crate::{Error, Result};

/// A loaded TensorFlow Lite C library (2.x). Cheap to clone: clones share the library,
/// which stays loaded while any clone or any interpreter created from it is alive.
///
/// ```
/// # fn main() -> multitpu::Result<()> {
/// let runtime = multitpu::backend::Runtime::load()?;
/// println!("TFLite {} from {}", runtime.version(), runtime.library_path().display());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Runtime {
    api: Arc<TfLiteApi>,
}

impl Runtime {
    /// The process-wide library, loaded once from the path in `MULTITPU_TFLITE_LIB`, or
    /// else by the platform's usual name (`libtensorflowlite_c.so`) on the loader's path,
    /// or else from the cache `scripts/fetch-tflite` fills
    /// (`~/.cache/multitpu/tflite-2.9/<platform>/`, see
    /// `libedgetpu_sys::cached_tflite_library`).
    ///
    /// ```no_run
    /// # // no_run: needs the TFLite C library, which documentation builds may lack.
    /// let runtime = multitpu::backend::Runtime::load()?;
    /// assert!(runtime.version().starts_with("2."));
    /// # Ok::<(), multitpu::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Library`] when the library cannot be loaded, naming every place tried and
    /// how to fix it.
    pub fn load() -> Result<Self> {
        let api = TfLiteApi::shared()?;
        tracing::debug!(path = %api.path().display(), version = api.version(), "TFLite runtime loaded");
        Ok(Self { api })
    }

    /// Loads the library at `path` (a new handle, independent of [`Runtime::load`]).
    ///
    /// # Errors
    ///
    /// [`Error::Library`] when the file cannot be loaded or is not a TFLite 2.x C library.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let api = TfLiteApi::load(Some(path.as_ref()))?;
        tracing::debug!(path = %api.path().display(), version = api.version(), "TFLite runtime loaded");
        Ok(Self { api: Arc::new(api) })
    }

    /// The version the library reports, e.g. `"2.9.0"`.
    pub fn version(&self) -> String {
        self.api.version().to_owned()
    }

    /// The path or file name the library was loaded from.
    pub fn library_path(&self) -> &Path {
        self.api.path()
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("path", &self.api.path())
            .field("version", &self.api.version())
            .finish()
    }
}

/// How to build an [`Interpreter`].
///
/// ```
/// use multitpu::backend::InterpreterOptions;
///
/// let options = InterpreterOptions::default().with_threads(4).with_xnnpack(true);
/// assert_eq!((options.threads, options.xnnpack), (4, true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpreterOptions {
    /// CPU threads for TFLite's kernels (and XNNPack's pool); at least 1. Default 1.
    pub threads: usize,
    /// Apply the XNNPack delegate (faster float kernels on CPU). Default `false`.
    pub xnnpack: bool,
    /// Kernels for the model's custom operators, by name (see [`CustomOp`]). Default none.
    pub custom_ops: CustomOps,
    /// Run models that strict validation refuses because they hold operators it does not
    /// model ([`Validation::trusted`]): only for models from a trusted source. Default
    /// `false`.
    pub trusted: bool,
}

impl Default for InterpreterOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            xnnpack: false,
            custom_ops: CustomOps::default(),
            trusted: false,
        }
    }
}

impl InterpreterOptions {
    /// Sets the number of CPU threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Enables or disables the XNNPack delegate.
    pub fn with_xnnpack(mut self, xnnpack: bool) -> Self {
        self.xnnpack = xnnpack;
        self
    }

    /// Runs the model's custom operator `name` with `op` (replacing any kernel registered
    /// for that name).
    pub fn with_custom_op(mut self, name: impl Into<String>, op: impl CustomOp + 'static) -> Self {
        self.custom_ops.insert(name, Arc::new(op));
        self
    }

    /// Trusts the models (see [`InterpreterOptions::trusted`]).
    pub fn with_trusted(mut self, trusted: bool) -> Self {
        self.trusted = trusted;
        self
    }

    /// What the models must pass before TFLite sees them: strict unless trusted, the
    /// registered custom operators let through.
    pub fn validation(&self) -> Validation {
        let base = if self.trusted {
            Validation::trusted()
        } else {
            Validation::strict()
        };
        self.custom_ops
            .names()
            .fold(base, Validation::with_custom_op)
    }
}

/// The element type for a TFLite C API type code (which numbers types differently from
/// the file format), or `None` for "no type" and codes this crate does not know.
fn element_type(t: TfLiteType) -> Option<ElementType> {
    Some(match t {
        TfLiteType::FLOAT32 => ElementType::F32,
        TfLiteType::INT32 => ElementType::I32,
        TfLiteType::UINT8 => ElementType::U8,
        TfLiteType::INT64 => ElementType::I64,
        TfLiteType::STRING => ElementType::String,
        TfLiteType::BOOL => ElementType::Bool,
        TfLiteType::INT16 => ElementType::I16,
        TfLiteType::COMPLEX64 => ElementType::Complex64,
        TfLiteType::INT8 => ElementType::I8,
        TfLiteType::FLOAT16 => ElementType::F16,
        TfLiteType::FLOAT64 => ElementType::F64,
        TfLiteType::COMPLEX128 => ElementType::Complex128,
        TfLiteType::UINT64 => ElementType::U64,
        TfLiteType::RESOURCE => ElementType::Resource,
        TfLiteType::VARIANT => ElementType::Variant,
        TfLiteType::UINT32 => ElementType::U32,
        TfLiteType::UINT16 => ElementType::U16,
        TfLiteType::INT4 => ElementType::I4,
        _ => return None,
    })
}

/// Upper bound on the text kept from TFLite's error reporter between two calls, so a
/// kernel that reports on every element cannot grow memory without bound.
const MAX_ERROR_TEXT: usize = 16 * 1024;

/// Where TFLite's error reporter writes. Boxed by the interpreter so its address, handed
/// to TFLite as `user_data`, stays fixed when the interpreter moves.
struct ErrorSink {
    text: Mutex<String>,
    /// Whether messages also become `tracing` events (not for throw-away probes).
    traced: bool,
}

impl ErrorSink {
    fn new(traced: bool) -> Self {
        ErrorSink {
            text: Mutex::new(String::new()),
            traced,
        }
    }

    fn push(&self, message: &str) {
        // This reporter replaces TFLite's default one, which writes to stderr: the library
        // prints nothing, and a subscriber sees TFLite's messages as events.
        if self.traced {
            tracing::warn!(target: "multitpu::tflite", "{}", message.trim_end());
        }
        let mut text = self.text.lock().unwrap_or_else(|e| e.into_inner());
        if text.len() >= MAX_ERROR_TEXT {
            return;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(message.trim_end());
    }

    fn clear(&self) {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The text collected since the last `clear`, with `status` when TFLite said nothing.
    fn take(&self, status: Option<TfLiteStatus>) -> String {
        let text = std::mem::take(&mut *self.text.lock().unwrap_or_else(|e| e.into_inner()));
        match (text.is_empty(), status) {
            (false, _) => text,
            (true, Some(s)) => format!("status {} ({}), no message from TFLite", s.0, s.describe()),
            (true, None) => "no message from TFLite".to_owned(),
        }
    }
}

/// TFLite's error reporter: formats the message with libc's `vsnprintf` and appends it to
/// the interpreter's [`ErrorSink`]. Never unwinds (a panic here would abort).
unsafe extern "C" fn report_error(
    user_data: *mut c_void,
    format: *const c_char,
    args: *mut c_void,
) {
    if user_data.is_null() || format.is_null() {
        return;
    }
    let mut buf = [0 as c_char; 1024];
    // SAFETY: `buf` is writable for `buf.len()` bytes; `format` and `args` are the format
    // string and the (pointer-passed, see `TfLiteErrorReporter`) va_list TFLite gave us,
    // forwarded once and unchanged.
    let written = unsafe { libedgetpu_sys::vsnprintf(buf.as_mut_ptr(), buf.len(), format, args) };
    if written < 0 {
        return;
    }
    // SAFETY: vsnprintf NUL-terminates within `buf` when the size is non-zero.
    let message = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    // SAFETY: `user_data` is the address of the `ErrorSink` boxed inside the interpreter
    // that owns this reporter; the box is dropped only after the TFLite interpreter.
    let sink = unsafe { &*user_data.cast::<ErrorSink>() };
    let truncated = usize::try_from(written).is_ok_and(|w| w >= buf.len());
    // A panicking `tracing` subscriber must not unwind into C (that would abort).
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if truncated {
            sink.push(&format!("{message}..."));
        } else {
            sink.push(&message);
        }
    }));
}

/// A TensorFlow Lite interpreter over one model, with tensors allocated.
///
/// # Ownership and drop order
///
/// TFLite does not copy the model bytes, and delegates and the error reporter's buffer must
/// outlive the interpreter. Fields are dropped in declaration order, which is the required
/// release order: the TFLite interpreter, then its options and model, then the delegates
/// it used (XNNPack, Edge TPU), then the error buffer, then the model bytes, and last the
/// [`Runtime`] whose library provides every destructor.
///
/// # Threads
///
/// `Interpreter` is `Send`: it owns everything it points to, TFLite interpreters have no
/// thread affinity, and the error buffer is behind a mutex, so an interpreter can move into
/// a pipeline stage's thread. It is not `Sync`: TFLite does not allow concurrent calls on
/// one interpreter, and even the `&self` methods ([`output`](Self::output),
/// [`copy_output`](Self::copy_output)) call into it; running one interpreter from several
/// threads needs external locking (e.g. a `Mutex<Interpreter>`).
/// # Example
///
/// ```
/// use multitpu::backend::{Interpreter, InterpreterOptions, Runtime};
/// use multitpu::model::paper;
///
/// # fn main() -> multitpu::Result<()> {
/// let model = paper::fc(100)?.to_bytes()?; // F32 [1, 64] in, F32 [1, 10] out
/// let mut interpreter = Interpreter::new(&Runtime::load()?, model, &InterpreterOptions::default())?;
/// interpreter.set_input_as(0, &[0.5f32; 64])?;
/// interpreter.invoke()?;
/// let scores: &[f32] = interpreter.output_as(0)?;
/// assert_eq!(scores.len(), 10);
/// # Ok(())
/// # }
/// ```
///
pub struct Interpreter {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    // Release order: see the type's documentation. Do not reorder.
    interpreter: Owned<TfLiteInterpreter>,
    _options: Owned<TfLiteInterpreterOptions>,
    /// The custom operators' node table and the names TFLite points to.
    custom_ops: Option<Registered>,
    _model: Owned<TfLiteModel>,
    _xnnpack: Option<Owned<TfLiteDelegate>>,
    _edgetpu: Option<Delegate>,
    errors: Box<ErrorSink>,
    _bytes: Arc<[u8]>,
    runtime: Runtime,
}

// SAFETY: see "Threads" above: every pointer is owned by this value (no aliasing outside
// it), TFLite interpreters may be used from any one thread at a time, the error sink is a
// `Mutex`, and the Edge TPU delegate is `Send`.
unsafe impl Send for Interpreter {}

impl fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interpreter")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("xnnpack", &self._xnnpack.is_some())
            .field("edgetpu", &self._edgetpu.as_ref().map(Delegate::device))
            .finish_non_exhaustive()
    }
}

/// Which bytes TFLite loads: the writer's of the validated model, or (for the fuzz target
/// that compares the parsers) the caller's.
#[derive(Clone, Copy)]
enum Bytes {
    Rewritten,
    #[cfg(fuzzing)]
    AsGiven,
}

impl Interpreter {
    /// Builds an interpreter for the model in `model_bytes` and allocates
    /// its tensors.
    ///
    /// The bytes are read and validated before TFLite sees them: bytes that are not a model
    /// this crate reads give [`Error::Malformed`] or [`Error::Unsupported`] (several
    /// subgraphs, sparse tensors, ...), and a model that fails [`Model::validate`] gives
    /// [`Error::InvalidModel`], so that a model TFLite's kernels would crash on never
    /// reaches them (as far as validation can tell: see [`crate::model::validate`]). TFLite
    /// then loads the model as this crate's writer writes it, never the bytes given, so
    /// the two parsers cannot read two models from one file.
    /// TFLite's own messages are returned in [`Error::Runtime`] when an op is not
    /// available (e.g. `edgetpu-custom-op` without an Edge TPU delegate) or allocation
    /// fails.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`], [`Error::Unsupported`] or [`Error::InvalidModel`] for a model
    /// refused before TFLite sees it; [`Error::Runtime`] with TFLite's own message when it
    /// cannot build or allocate the interpreter (e.g. an operator without a kernel);
    /// [`Error::Invalid`] for zero threads.
    pub fn new(
        runtime: &Runtime,
        model_bytes: impl Into<Arc<[u8]>>,
        options: &InterpreterOptions,
    ) -> Result<Self> {
        Self::build(runtime, model_bytes.into(), options, None, Bytes::Rewritten)
    }

    /// For the `parsers` fuzz target only: [`Interpreter::new`], except that TFLite loads
    /// `model_bytes` as given rather than as this crate's writer writes the model, so that
    /// the target can compare the two parsers' readings of one file.
    #[cfg(fuzzing)]
    #[doc(hidden)]
    pub fn new_verbatim(
        runtime: &Runtime,
        model_bytes: impl Into<Arc<[u8]>>,
        options: &InterpreterOptions,
    ) -> Result<Self> {
        Self::build(runtime, model_bytes.into(), options, None, Bytes::AsGiven)
    }

    /// Like [`Interpreter::new`], with an Edge TPU delegate that runs the model's
    /// `edgetpu-custom-op`. The interpreter takes the delegate and frees it after itself.
    /// A delegate that refuses the model (or fails while TFLite applies it) gives
    /// [`Error::EdgeTpuDelegate`] with what it reported.
    ///
    /// # Errors
    ///
    /// As [`Interpreter::new`], and [`Error::EdgeTpuDelegate`] when the delegate refuses
    /// the model.
    pub fn with_edgetpu(
        runtime: &Runtime,
        model_bytes: impl Into<Arc<[u8]>>,
        options: &InterpreterOptions,
        delegate: Delegate,
    ) -> Result<Self> {
        Self::build(
            runtime,
            model_bytes.into(),
            options,
            Some(delegate),
            Bytes::Rewritten,
        )
    }

    fn build(
        runtime: &Runtime,
        bytes: Arc<[u8]>,
        options: &InterpreterOptions,
        edgetpu: Option<Delegate>,
        given: Bytes,
    ) -> Result<Self> {
        let _span = tracing::debug_span!("load_interpreter", bytes = bytes.len()).entered();
        let api = &*runtime.api;
        let threads = i32::try_from(options.threads)
            .ok()
            .filter(|&t| t >= 1)
            .ok_or_else(|| {
                Error::invalid(
                    "interpreter options",
                    format!(
                        "threads must be in 1..={}, got {}",
                        i32::MAX,
                        options.threads
                    ),
                )
            })?;
        if bytes.is_empty() {
            return Err(Error::Runtime {
                call: "TfLiteModelCreate",
                message: "the model is empty (0 bytes)".to_owned(),
            });
        }
        let parsed = Model::from_bytes(&bytes)?;
        parsed.validate_with(&options.validation())?;
        // TFLite is given the bytes this crate's writer makes of the model it validated, not
        // the caller's: whatever the caller's bytes encode that one flatbuffer reader sees
        // and another does not (tables shared or overlapping, fields of newer schemas,
        // padding), TFLite runs exactly the model that validation checked.
        let bytes: Arc<[u8]> = match given {
            Bytes::Rewritten => Arc::from(parsed.to_bytes()?),
            #[cfg(fuzzing)]
            Bytes::AsGiven => Arc::clone(&bytes),
        };
        // TFLite's C API gives one scale and zero point per tensor; the model has them all.
        let quantization = |tensors: &[usize]| -> Vec<Option<Quantization>> {
            tensors
                .iter()
                .map(|&t| parsed.tensors[t].quantization.clone())
                .collect()
        };
        let model_quantization = (quantization(&parsed.inputs), quantization(&parsed.outputs));

        // SAFETY: `bytes` is valid for its length and is stored in the returned interpreter
        // after everything built from it, so it outlives the model.
        let model = unsafe {
            Owned::new(
                (api.model_create)(bytes.as_ptr().cast(), bytes.len()),
                api.model_delete,
            )
        }
        .ok_or_else(|| Error::Runtime {
            call: "TfLiteModelCreate",
            message: format!(
                "the {} bytes are not a valid TFLite model (rejected by TFLite's flatbuffer verifier)",
                bytes.len()
            ),
        })?;

        // SAFETY: creates a fresh options object, freed by its matching destructor.
        let opts = unsafe {
            Owned::new(
                (api.interpreter_options_create)(),
                api.interpreter_options_delete,
            )
        }
        .ok_or_else(|| Error::Runtime {
            call: "TfLiteInterpreterOptionsCreate",
            message: "returned NULL (out of memory)".to_owned(),
        })?;

        let errors = Box::new(ErrorSink::new(true));
        // SAFETY: `opts` is live. The reporter never unwinds, and its `user_data` is the
        // boxed sink, which the interpreter drops only after the TFLite interpreter.
        unsafe {
            (api.interpreter_options_set_num_threads)(opts.as_ptr(), threads);
            (api.interpreter_options_set_error_reporter)(
                opts.as_ptr(),
                Some(report_error),
                std::ptr::from_ref::<ErrorSink>(&errors).cast_mut().cast(),
            );
        }

        let custom_ops = if options.custom_ops.is_empty() {
            None
        } else {
            // SAFETY: `opts` is a live options object of this library.
            Some(unsafe {
                custom_op::register(&runtime.api, opts.as_ptr(), &parsed, &options.custom_ops)
            }?)
        };
        drop(parsed);

        if let Some(delegate) = &edgetpu {
            // SAFETY: both live; the delegate is stored in the interpreter and dropped
            // after the TFLite interpreter.
            unsafe { (api.interpreter_options_add_delegate)(opts.as_ptr(), delegate.as_ptr()) };
        }
        let xnnpack = if options.xnnpack {
            let delegate = create_xnnpack(api, threads)?;
            // SAFETY: both live; the delegate is stored in the interpreter and dropped
            // after the TFLite interpreter.
            unsafe { (api.interpreter_options_add_delegate)(opts.as_ptr(), delegate.as_ptr()) };
            Some(delegate)
        } else {
            None
        };

        let activation = custom_ops.as_ref().map(|c| Activation::new(&c.table));
        // SAFETY: model and options are live and from this library; everything the
        // interpreter refers to (bytes, delegates, error sink, custom operator names) is
        // stored beside it.
        let interpreter = unsafe {
            Owned::new(
                (api.interpreter_create)(model.as_ptr(), opts.as_ptr()),
                api.interpreter_delete,
            )
        };
        let Some(interpreter) = interpreter else {
            let message = errors.take(None);
            return Err(match &edgetpu {
                // The C API returns NULL both when the model cannot be built and when a
                // delegate fails to apply (a status TFLite does not pass on). A model that
                // builds without the delegate tells the two apart.
                Some(delegate) if builds_without_delegates(api, &model) => Error::EdgeTpuDelegate {
                    device: format!("{} at `{}`", delegate.device().kind, delegate.device().path),
                    message,
                },
                _ => Error::Runtime {
                    call: "TfLiteInterpreterCreate",
                    message,
                },
            });
        };

        let mut this = Self {
            inputs: Vec::new(),
            outputs: Vec::new(),
            interpreter,
            _options: opts,
            custom_ops,
            _model: model,
            _xnnpack: xnnpack,
            _edgetpu: edgetpu,
            errors,
            _bytes: bytes,
            runtime: runtime.clone(),
        };
        this.errors.clear();
        // SAFETY: the interpreter is live and used from this thread only.
        let status = unsafe { (api.interpreter_allocate_tensors)(this.interpreter.as_ptr()) };
        drop(activation);
        this.check(status, "TfLiteInterpreterAllocateTensors")?;
        this.inputs = this.read_infos(Side::Input, model_quantization.0)?;
        this.outputs = this.read_infos(Side::Output, model_quantization.1)?;
        this.zero_io_buffers()?;
        Ok(this)
    }

    /// Zeroes the input and output buffers once after allocation. TFLite's arena memory
    /// starts uninitialised, and [`output`](Self::output) hands out `&[u8]` over it, which
    /// must never expose uninitialised bytes, even before the first invoke.
    fn zero_io_buffers(&mut self) -> Result<()> {
        let api = &*self.runtime.api;
        for (side, infos) in [(Side::Input, &self.inputs), (Side::Output, &self.outputs)] {
            for (index, info) in infos.iter().enumerate() {
                if info.element_type.size().is_none() {
                    // Strings and other dynamic tensors get their buffers at invoke time.
                    continue;
                }
                let tensor = self.raw_tensor(side, index)?;
                // SAFETY: `tensor` is a live tensor of our allocated interpreter.
                let (data, size) =
                    unsafe { ((api.tensor_data)(tensor), (api.tensor_byte_size)(tensor)) };
                if !data.is_null() {
                    // SAFETY: TFLite allocated `size` writable bytes at `data` for this
                    // tensor, and no borrow of them exists (`&mut self`).
                    unsafe { std::ptr::write_bytes(data.cast::<u8>(), 0, size) };
                }
            }
        }
        Ok(())
    }

    /// The input tensors, in the model's input order.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// The output tensors, in the model's output order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// The index of the input tensor called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTensor`] if no input is called `name`.
    pub fn input_index(&self, name: &str) -> Result<usize> {
        find(&self.inputs, Side::Input, name)
    }

    /// The index of the output tensor called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTensor`] if no output is called `name`.
    pub fn output_index(&self, name: &str) -> Result<usize> {
        find(&self.outputs, Side::Output, name)
    }

    /// Copies `data` into input tensor `index`; its length must equal the tensor's
    /// byte size.
    ///
    /// # Errors
    ///
    /// [`Error::TensorIndex`] for an index out of range, [`Error::TensorSize`] if `data`
    /// does not fill the tensor exactly.
    pub fn set_input(&mut self, index: usize, data: &[u8]) -> Result<()> {
        let tensor = self.tensor(Side::Input, index)?;
        check_size(&self.inputs[index], data.len())?;
        let api = &*self.runtime.api;
        self.errors.clear();
        // SAFETY: `tensor` is a live input tensor of our interpreter, and the buffer holds
        // exactly the tensor's byte size, as the C API requires.
        let status = unsafe {
            (api.tensor_copy_from_buffer)(tensor.cast_mut(), data.as_ptr().cast(), data.len())
        };
        self.check(status, "TfLiteTensorCopyFromBuffer")
    }

    /// Copies typed `data` into input tensor `index`, whose element type must be `T`.
    ///
    /// # Errors
    ///
    /// [`Error::TensorIndex`] for an index out of range, [`Error::TensorType`] if `T` is not
    /// the tensor's element type, [`Error::TensorSize`] if `data` does not fill it exactly.
    pub fn set_input_as<T: Element>(&mut self, index: usize, data: &[T]) -> Result<()> {
        self.tensor(Side::Input, index)?;
        self.inputs[index].check_type::<T>()?;
        self.set_input(index, bytemuck::cast_slice(data))
    }

    /// Runs the model on the current inputs.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] with TFLite's message (or a custom operator's) when a kernel
    /// fails.
    pub fn invoke(&mut self) -> Result<()> {
        let _span = tracing::trace_span!("tflite_invoke").entered();
        let _activation = self.custom_ops.as_ref().map(|c| Activation::new(&c.table));
        self.errors.clear();
        // SAFETY: the interpreter is live, its tensors are allocated, and `&mut self`
        // rules out concurrent use and outstanding borrows of output data.
        let status = unsafe { (self.runtime.api.interpreter_invoke)(self.interpreter.as_ptr()) };
        self.check(status, "TfLiteInterpreterInvoke")
    }

    /// The data of output tensor `index`, valid until the next call that takes
    /// `&mut self` (such as [`invoke`](Self::invoke)).
    ///
    /// # Errors
    ///
    /// [`Error::TensorIndex`] for an index out of range; [`Error::Runtime`] if TFLite has
    /// no buffer for the tensor.
    pub fn output(&self, index: usize) -> Result<&[u8]> {
        let tensor = self.tensor(Side::Output, index)?;
        let api = &*self.runtime.api;
        // SAFETY: `tensor` is a live output tensor of our interpreter.
        let (data, size) = unsafe { ((api.tensor_data)(tensor), (api.tensor_byte_size)(tensor)) };
        if size == 0 {
            return Ok(&[]);
        }
        if data.is_null() {
            return Err(Error::Runtime {
                call: "TfLiteTensorData",
                message: format!(
                    "output tensor `{}` has no data buffer",
                    self.outputs[index].name
                ),
            });
        }
        // SAFETY: TFLite's tensor buffer holds `size` initialised bytes (zeroed after
        // allocation by `zero_io_buffers`, then written only by TFLite). It stays valid and
        // unmodified while `&self` is borrowed: only `&mut self` methods invoke, copy inputs
        // or reallocate.
        Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>().cast_const(), size) })
    }

    /// The data of output tensor `index` as elements of `T` (its element type), valid until
    /// the next call that takes `&mut self`.
    ///
    /// # Errors
    ///
    /// [`Error::TensorIndex`] for an index out of range, [`Error::TensorType`] if `T` is not
    /// the tensor's element type.
    pub fn output_as<T: Element>(&self, index: usize) -> Result<&[T]> {
        let data = self.output(index)?;
        self.outputs[index].view(data)
    }

    /// Copies output tensor `index` into `out`, whose length must equal the tensor's
    /// byte size.
    ///
    /// # Errors
    ///
    /// [`Error::TensorIndex`] for an index out of range, [`Error::TensorSize`] if `out` is
    /// not the tensor's size.
    pub fn copy_output(&self, index: usize, out: &mut [u8]) -> Result<()> {
        let tensor = self.tensor(Side::Output, index)?;
        check_size(&self.outputs[index], out.len())?;
        let api = &*self.runtime.api;
        self.errors.clear();
        // SAFETY: `tensor` is a live output tensor of our interpreter, and `out` holds
        // exactly the tensor's byte size, as the C API requires.
        let status =
            unsafe { (api.tensor_copy_to_buffer)(tensor, out.as_mut_ptr().cast(), out.len()) };
        self.check(status, "TfLiteTensorCopyToBuffer")
    }

    /// Turns a TFLite status into a result carrying what TFLite reported.
    fn check(&self, status: TfLiteStatus, call: &'static str) -> Result<()> {
        if status.is_ok() {
            Ok(())
        } else {
            Err(Error::Runtime {
                call,
                message: self.errors.take(Some(status)),
            })
        }
    }

    /// The TFLite tensor for `index` on `side`, after a range check.
    fn tensor(&self, side: Side, index: usize) -> Result<*const TfLiteTensor> {
        let count = match side {
            Side::Input => self.inputs.len(),
            Side::Output => self.outputs.len(),
        };
        if index >= count {
            return Err(Error::TensorIndex {
                kind: side.kind(),
                index,
                count,
            });
        }
        self.raw_tensor(side, index)
    }

    /// The TFLite tensor for `index` on `side`; `index` must be below TFLite's count.
    fn raw_tensor(&self, side: Side, index: usize) -> Result<*const TfLiteTensor> {
        let api = &*self.runtime.api;
        // Counts come from TFLite as `i32`, so an index below one always fits.
        let raw_index = i32::try_from(index).map_err(|_| Error::TensorIndex {
            kind: side.kind(),
            index,
            count: i32::MAX as usize,
        })?;
        // SAFETY: the interpreter is live and `raw_index` is below the tensor count (the
        // callers check it against the count TFLite reported).
        let tensor = unsafe {
            match side {
                Side::Input => {
                    (api.interpreter_get_input_tensor)(self.interpreter.as_ptr(), raw_index)
                        .cast_const()
                }
                Side::Output => {
                    (api.interpreter_get_output_tensor)(self.interpreter.as_ptr(), raw_index)
                }
            }
        };
        if tensor.is_null() {
            return Err(Error::Runtime {
                call: side.getter(),
                message: format!("returned NULL for {} tensor {index}", side.kind()),
            });
        }
        Ok(tensor)
    }

    /// Reads name, shape and type of every tensor on `side`, and its quantization: the
    /// model's (`from_model[i]` for tensor `i`, which may be per channel), else TFLite's.
    fn read_infos(
        &self,
        side: Side,
        from_model: Vec<Option<Quantization>>,
    ) -> Result<Vec<TensorSpec>> {
        let api = &*self.runtime.api;
        // SAFETY: the interpreter is live.
        let count = unsafe {
            match side {
                Side::Input => (api.interpreter_get_input_tensor_count)(self.interpreter.as_ptr()),
                Side::Output => {
                    (api.interpreter_get_output_tensor_count)(self.interpreter.as_ptr())
                }
            }
        };
        let count = usize::try_from(count).map_err(|_| Error::Runtime {
            call: side.counter(),
            message: format!("negative tensor count {count}"),
        })?;
        let mut from_model = from_model.into_iter();
        (0..count)
            .map(|index| {
                let tensor = self.raw_tensor(side, index)?;
                // SAFETY: `tensor` is a live tensor of our allocated interpreter.
                let spec = unsafe { tensor_info(api, tensor) }?;
                Ok(match from_model.next().flatten() {
                    Some(q) if !q.scale.is_empty() => spec.with_quantization(q),
                    _ => spec,
                })
            })
            .collect()
    }
}

/// Reads a tensor's metadata.
///
/// # Safety
///
/// `tensor` must be a live tensor of an interpreter created with `api`.
unsafe fn tensor_info(api: &TfLiteApi, tensor: *const TfLiteTensor) -> Result<TensorSpec> {
    // SAFETY: `tensor` is live by the caller's contract (this holds for every block below);
    // the name, when non-NULL, is a NUL-terminated string owned by the tensor.
    let name_ptr = unsafe { (api.tensor_name)(tensor) };
    let name = if name_ptr.is_null() {
        String::new()
    } else {
        // SAFETY: see above.
        unsafe { CStr::from_ptr(name_ptr) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: see above.
    let raw_type = unsafe { (api.tensor_type)(tensor) };
    let element_type = element_type(raw_type).ok_or_else(|| {
        Error::unsupported(format!(
            "TFLite tensor type code {} of tensor `{name}`",
            raw_type.0
        ))
    })?;
    // SAFETY: see above.
    let num_dims = unsafe { (api.tensor_num_dims)(tensor) };
    let mut shape = Vec::with_capacity(usize::try_from(num_dims).unwrap_or(0));
    for d in 0..num_dims.max(0) {
        // SAFETY: see above; `d` is below the tensor's dimension count.
        let dim = unsafe { (api.tensor_dim)(tensor, d) };
        let dim = usize::try_from(dim).map_err(|_| Error::Runtime {
            call: "TfLiteTensorDim",
            message: format!("tensor `{name}` has dimension {d} of size {dim}"),
        })?;
        shape.push(dim);
    }
    // SAFETY: see above.
    let (byte_size, q) = unsafe {
        (
            (api.tensor_byte_size)(tensor),
            (api.tensor_quantization_params)(tensor),
        )
    };
    let spec = TensorSpec::new(name, element_type, shape, byte_size);
    Ok(if q.scale != 0.0 {
        spec.with_quantization(Quantization {
            scale: vec![q.scale],
            zero_point: vec![i64::from(q.zero_point)],
            ..Quantization::default()
        })
    } else {
        spec
    })
}

/// Whether TFLite builds an interpreter for `model` with no delegates and default options
/// (quietly: its messages go to a throw-away reporter).
fn builds_without_delegates(api: &TfLiteApi, model: &Owned<TfLiteModel>) -> bool {
    let sink = ErrorSink::new(false);
    // SAFETY: creates a fresh options object, freed by its matching destructor.
    let Some(opts) = (unsafe {
        Owned::new(
            (api.interpreter_options_create)(),
            api.interpreter_options_delete,
        )
    }) else {
        return false;
    };
    // SAFETY: `opts` and `model` are live; the reporter never unwinds and `sink` outlives
    // the interpreter, which is dropped before this function returns.
    unsafe {
        (api.interpreter_options_set_error_reporter)(
            opts.as_ptr(),
            Some(report_error),
            std::ptr::from_ref::<ErrorSink>(&sink).cast_mut().cast(),
        );
        Owned::new(
            (api.interpreter_create)(model.as_ptr(), opts.as_ptr()),
            api.interpreter_delete,
        )
    }
    .is_some()
}

/// Creates the XNNPack delegate with `threads` threads (no pool for one thread).
fn create_xnnpack(api: &TfLiteApi, threads: i32) -> Result<Owned<TfLiteDelegate>> {
    let fns = api.xnnpack.ok_or_else(|| {
        Error::unsupported(format!(
            "XNNPack: the TFLite library at `{}` does not export the XNNPack delegate",
            api.path().display()
        ))
    })?;
    if !api.xnnpack_options_layout_matches() {
        return Err(Error::unsupported(format!(
            "XNNPack with TFLite {}: its delegate options layout is only known for {}.x",
            api.version(),
            libedgetpu_sys::XNNPACK_OPTIONS_LAYOUT_VERSION
        )));
    }
    // SAFETY: the options struct matches this library's layout (checked above).
    let mut xnn_options = unsafe { (fns.options_default)() };
    xnn_options.num_threads = if threads > 1 { threads } else { 0 };
    // SAFETY: `xnn_options` is a valid options struct for this library; the delegate is
    // freed by its matching destructor.
    unsafe { Owned::new((fns.create)(&xnn_options), fns.delete) }.ok_or_else(|| Error::Runtime {
        call: "TfLiteXNNPackDelegateCreate",
        message: "returned NULL".to_owned(),
    })
}

/// Inputs or outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Input,
    Output,
}

impl Side {
    fn kind(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }

    fn getter(self) -> &'static str {
        match self {
            Side::Input => "TfLiteInterpreterGetInputTensor",
            Side::Output => "TfLiteInterpreterGetOutputTensor",
        }
    }

    fn counter(self) -> &'static str {
        match self {
            Side::Input => "TfLiteInterpreterGetInputTensorCount",
            Side::Output => "TfLiteInterpreterGetOutputTensorCount",
        }
    }
}

fn find(infos: &[TensorSpec], side: Side, name: &str) -> Result<usize> {
    infos
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| Error::UnknownTensor {
            kind: side.kind(),
            name: name.to_owned(),
        })
}

fn check_size(info: &TensorSpec, actual: usize) -> Result<()> {
    Error::check_tensor_size(&info.name, info.byte_size, actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tflite_type_codes_map_to_file_type_codes() {
        // The two numberings agree on a few codes and differ on others.
        let pairs = [
            (TfLiteType::FLOAT32, ElementType::F32, 0),
            (TfLiteType::INT32, ElementType::I32, 2),
            (TfLiteType::UINT8, ElementType::U8, 3),
            (TfLiteType::INT8, ElementType::I8, 9),
            (TfLiteType::FLOAT16, ElementType::F16, 1),
            (TfLiteType::FLOAT64, ElementType::F64, 10),
            (TfLiteType::UINT64, ElementType::U64, 12),
            (TfLiteType::UINT32, ElementType::U32, 15),
            (TfLiteType::UINT16, ElementType::U16, 16),
        ];
        for (c, e, file_code) in pairs {
            assert_eq!(element_type(c), Some(e), "C type {}", c.0);
            assert_eq!(e.code(), file_code);
        }
        assert_eq!(element_type(TfLiteType::NO_TYPE), None);
        assert_eq!(element_type(TfLiteType(99)), None);
        // Every known C code maps to a distinct element type.
        let mapped: Vec<_> = (1..=18)
            .filter_map(|c| element_type(TfLiteType(c)))
            .collect();
        assert_eq!(mapped.len(), 18);
        for (i, a) in mapped.iter().enumerate() {
            assert!(!mapped[i + 1..].contains(a), "{a:?} mapped twice");
        }
    }

    #[test]
    fn error_sink_collects_and_clears() {
        let sink = ErrorSink::new(false);
        assert_eq!(
            sink.take(Some(TfLiteStatus::ERROR)),
            "status 1 (runtime error), no message from TFLite"
        );
        sink.push("first\n");
        sink.push("second");
        assert_eq!(sink.take(None), "first\nsecond");
        sink.push("stale");
        sink.clear();
        assert_eq!(sink.take(None), "no message from TFLite");
    }

    #[test]
    fn error_sink_is_bounded() {
        let sink = ErrorSink::new(false);
        let line = "x".repeat(1000);
        for _ in 0..100 {
            sink.push(&line);
        }
        assert!(sink.take(None).len() <= MAX_ERROR_TEXT + line.len() + 1);
    }

    #[test]
    fn size_and_name_errors_name_the_tensor() {
        let infos = vec![TensorSpec::new(
            "image",
            ElementType::U8,
            vec![1, 2, 2, 1],
            4,
        )];
        assert_eq!(find(&infos, Side::Input, "image").ok(), Some(0));
        let err = find(&infos, Side::Output, "nope").expect_err("unknown name");
        assert!(matches!(&err, Error::UnknownTensor { kind: "output", name } if name == "nope"));
        let err = check_size(&infos[0], 5).expect_err("wrong size");
        assert!(matches!(
            &err,
            Error::TensorSize { tensor, expected: 4, actual: 5 } if tensor == "image"
        ));
        assert!(check_size(&infos[0], 4).is_ok());
    }

    #[test]
    fn options_builder_and_defaults() {
        let o = InterpreterOptions::default();
        assert_eq!((o.threads, o.xnnpack), (1, false));
        let o = o.with_threads(4).with_xnnpack(true);
        assert_eq!((o.threads, o.xnnpack), (4, true));
    }
}
