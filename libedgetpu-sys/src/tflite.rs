//! The TensorFlow Lite C API (`tensorflow/lite/c/c_api.h`, 2.x) and the XNNPack delegate's
//! C entry points, resolved from `libtensorflowlite_c` at run time.

use std::ffi::{OsString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libloading::Library;

use crate::error::{LibraryKind, LoadError};
use crate::kernel::TfLiteRegistration;
use crate::loader;

/// Environment variable naming the TFLite C library to load when no path is given.
pub const TFLITE_LIB_ENV: &str = "MULTITPU_TFLITE_LIB";

/// TFLite versions this crate accepts (checked with `TfLiteVersion()` at load).
const REQUIRED_VERSION: &str = "2.x";

/// The platform's usual file name of the TFLite C library.
pub fn default_tflite_library_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libtensorflowlite_c.dylib"
    } else if cfg!(target_os = "windows") {
        "tensorflowlite_c.dll"
    } else {
        "libtensorflowlite_c.so"
    }
}

/// Where `scripts/fetch-tflite` caches the TFLite 2.9 C library for this platform:
/// `<cache>/tflite-2.9/<platform>/<library file>` in the cache folder named by
/// `MULTITPU_CACHE`, else `XDG_CACHE_HOME/multitpu`, else `HOME/.cache/multitpu` (`var`
/// reads those variables). `None` on platforms the script has no library for, or when none
/// of the variables is set.
pub fn cached_tflite_library(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux_amd64",
        ("linux", "aarch64") => "linux_arm64",
        ("macos", "aarch64") => "darwin_arm64",
        _ => return None,
    };
    Some(
        loader::cache_dir(var)?
            .join("tflite-2.9")
            .join(platform)
            .join(default_tflite_library_name()),
    )
}

/// Opaque `TfLiteModel`: a model built over caller-owned bytes.
#[repr(C)]
pub struct TfLiteModel {
    _private: [u8; 0],
}

/// Opaque `TfLiteInterpreterOptions`.
#[repr(C)]
pub struct TfLiteInterpreterOptions {
    _private: [u8; 0],
}

/// Opaque `TfLiteInterpreter`.
#[repr(C)]
pub struct TfLiteInterpreter {
    _private: [u8; 0],
}

/// Opaque `TfLiteTensor` (only accessed through the `TfLiteTensor*` functions; its 2.9
/// fields, for kernels: [`TfLiteTensorFields`](crate::TfLiteTensorFields)).
#[repr(C)]
pub struct TfLiteTensor {
    _private: [u8; 0],
}

/// Opaque `TfLiteDelegate` (created by a delegate library, e.g. XNNPack or libedgetpu; its
/// 2.9 fields: [`TfLiteDelegateFields`](crate::TfLiteDelegateFields)).
#[repr(C)]
pub struct TfLiteDelegate {
    _private: [u8; 0],
}

/// `TfLiteStatus`, a C enum. Kept as its integer so that values unknown to this crate
/// (added by later TFLite versions) are representable; treat any non-`OK` value as failure.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TfLiteStatus(pub c_int);

impl TfLiteStatus {
    /// `kTfLiteOk`.
    pub const OK: Self = Self(0);
    /// `kTfLiteError`: an error in the runtime.
    pub const ERROR: Self = Self(1);
    /// `kTfLiteDelegateError`: an error from a delegate.
    pub const DELEGATE_ERROR: Self = Self(2);
    /// `kTfLiteApplicationError`: a delegate could not be applied.
    pub const APPLICATION_ERROR: Self = Self(3);
    /// `kTfLiteDelegateDataNotFound`.
    pub const DELEGATE_DATA_NOT_FOUND: Self = Self(4);
    /// `kTfLiteDelegateDataWriteError`.
    pub const DELEGATE_DATA_WRITE_ERROR: Self = Self(5);
    /// `kTfLiteDelegateDataReadError`.
    pub const DELEGATE_DATA_READ_ERROR: Self = Self(6);
    /// `kTfLiteUnresolvedOps`: the model uses ops the runtime does not provide.
    pub const UNRESOLVED_OPS: Self = Self(7);

    /// Whether this is `kTfLiteOk`.
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }

    /// A short description of the status.
    pub fn describe(self) -> &'static str {
        match self.0 {
            0 => "ok",
            1 => "runtime error",
            2 => "delegate error",
            3 => "delegate application error",
            4 => "delegate data not found",
            5 => "delegate data write error",
            6 => "delegate data read error",
            7 => "unresolved ops",
            _ => "unknown status",
        }
    }
}

/// `TfLiteType`, a C enum, kept as its integer (later versions add values). The numbering
/// differs from the `.tflite` file format's `TensorType`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TfLiteType(pub c_int);

impl TfLiteType {
    /// `kTfLiteNoType`.
    pub const NO_TYPE: Self = Self(0);
    /// `kTfLiteFloat32`.
    pub const FLOAT32: Self = Self(1);
    /// `kTfLiteInt32`.
    pub const INT32: Self = Self(2);
    /// `kTfLiteUInt8`.
    pub const UINT8: Self = Self(3);
    /// `kTfLiteInt64`.
    pub const INT64: Self = Self(4);
    /// `kTfLiteString`.
    pub const STRING: Self = Self(5);
    /// `kTfLiteBool`.
    pub const BOOL: Self = Self(6);
    /// `kTfLiteInt16`.
    pub const INT16: Self = Self(7);
    /// `kTfLiteComplex64`.
    pub const COMPLEX64: Self = Self(8);
    /// `kTfLiteInt8`.
    pub const INT8: Self = Self(9);
    /// `kTfLiteFloat16`.
    pub const FLOAT16: Self = Self(10);
    /// `kTfLiteFloat64`.
    pub const FLOAT64: Self = Self(11);
    /// `kTfLiteComplex128`.
    pub const COMPLEX128: Self = Self(12);
    /// `kTfLiteUInt64`.
    pub const UINT64: Self = Self(13);
    /// `kTfLiteResource`.
    pub const RESOURCE: Self = Self(14);
    /// `kTfLiteVariant`.
    pub const VARIANT: Self = Self(15);
    /// `kTfLiteUInt32`.
    pub const UINT32: Self = Self(16);
    /// `kTfLiteUInt16` (added after 2.9).
    pub const UINT16: Self = Self(17);
    /// `kTfLiteInt4` (added after 2.9).
    pub const INT4: Self = Self(18);
}

/// `TfLiteQuantizationParams`: per-tensor affine quantization,
/// `real = scale * (quantized - zero_point)`; `scale == 0` means "not quantized".
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TfLiteQuantizationParams {
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
}

/// The error reporter callback: `void (*)(void* user_data, const char* format, va_list)`.
///
/// The `va_list` is declared as a pointer: on x86-64 System V it is an array type that
/// decays to a pointer when passed, and on AArch64 (AAPCS64) the 32-byte struct is passed
/// by reference; on Apple and Windows targets it is a `char*`. Forward it unchanged to
/// [`vsnprintf`](crate::vsnprintf), once (it is consumed).
pub type TfLiteErrorReporter =
    Option<unsafe extern "C" fn(user_data: *mut c_void, format: *const c_char, args: *mut c_void)>;

/// `TfLiteXNNPackDelegateOptions` as laid out by TFLite 2.9 (see
/// [`XNNPACK_OPTIONS_LAYOUT_VERSION`]). It is returned by value from
/// `TfLiteXNNPackDelegateOptionsDefault`, so its size must match the library exactly.
///
/// The 2.9.0 C library returns it in one register (`xor eax, eax; ret`) and
/// `TfLiteXNNPackDelegateCreate` copies exactly 8 bytes from the pointer it gets: the
/// struct is `{ int32_t num_threads; uint32_t flags; }`. Later versions append fields
/// (`weights_cache`, `handle_variable_ops`, ...), so use it only with a 2.9 library.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TfLiteXNNPackDelegateOptions {
    /// Threads in XNNPack's thread pool; 0 or negative: no thread pool.
    pub num_threads: i32,
    /// Bit set of `TFLITE_XNNPACK_DELEGATE_FLAG_*` (QS8 = 1, QU8 = 2, FORCE_FP16 = 4).
    pub flags: u32,
}

/// The TFLite `major.minor` whose [`TfLiteXNNPackDelegateOptions`] layout is declared here.
pub const XNNPACK_OPTIONS_LAYOUT_VERSION: &str = "2.9";

/// The XNNPack delegate's entry points, present only in TFLite builds that include it.
#[derive(Clone, Copy)]
pub struct XnnPackFns {
    /// `TfLiteXNNPackDelegateOptions TfLiteXNNPackDelegateOptionsDefault(void)`.
    pub options_default: unsafe extern "C" fn() -> TfLiteXNNPackDelegateOptions,
    /// `TfLiteDelegate* TfLiteXNNPackDelegateCreate(const TfLiteXNNPackDelegateOptions*)`;
    /// NULL options mean defaults. Free with `delete`.
    pub create:
        unsafe extern "C" fn(options: *const TfLiteXNNPackDelegateOptions) -> *mut TfLiteDelegate,
    /// `void TfLiteXNNPackDelegateDelete(TfLiteDelegate*)`.
    pub delete: unsafe extern "C" fn(delegate: *mut TfLiteDelegate),
}

/// The TFLite C API, resolved from one loaded library.
///
/// Every pointer is valid only while this struct is alive (it owns the `Library`). The
/// contracts are those of `c_api.h`: pointers passed in must come from the same library,
/// objects are freed exactly once with their `*Delete` function, a model's bytes outlive the
/// model and every interpreter built from it, delegates and the error reporter's
/// `user_data` outlive the interpreters created with them, and one interpreter is never used
/// from two threads at once.
pub struct TfLiteApi {
    path: PathBuf,
    version: String,

    /// `const char* TfLiteVersion(void)`.
    pub version_fn: unsafe extern "C" fn() -> *const c_char,
    /// `TfLiteModel* TfLiteModelCreate(const void* data, size_t size)`: does not copy;
    /// NULL on failure.
    pub model_create: unsafe extern "C" fn(data: *const c_void, size: usize) -> *mut TfLiteModel,
    /// `TfLiteModel* TfLiteModelCreateFromFile(const char* path)`: NULL on failure.
    pub model_create_from_file: unsafe extern "C" fn(path: *const c_char) -> *mut TfLiteModel,
    /// `void TfLiteModelDelete(TfLiteModel*)`.
    pub model_delete: unsafe extern "C" fn(model: *mut TfLiteModel),
    /// `TfLiteInterpreterOptions* TfLiteInterpreterOptionsCreate(void)`.
    pub interpreter_options_create: unsafe extern "C" fn() -> *mut TfLiteInterpreterOptions,
    /// `void TfLiteInterpreterOptionsDelete(TfLiteInterpreterOptions*)`.
    pub interpreter_options_delete: unsafe extern "C" fn(options: *mut TfLiteInterpreterOptions),
    /// `void TfLiteInterpreterOptionsSetNumThreads(TfLiteInterpreterOptions*, int32_t)`.
    pub interpreter_options_set_num_threads:
        unsafe extern "C" fn(options: *mut TfLiteInterpreterOptions, num_threads: i32),
    /// `void TfLiteInterpreterOptionsAddDelegate(TfLiteInterpreterOptions*, TfLiteDelegate*)`:
    /// the delegate must outlive every interpreter created with these options.
    pub interpreter_options_add_delegate:
        unsafe extern "C" fn(options: *mut TfLiteInterpreterOptions, delegate: *mut TfLiteDelegate),
    /// `void TfLiteInterpreterOptionsSetErrorReporter(TfLiteInterpreterOptions*,
    /// reporter, void* user_data)`: `user_data` must outlive the interpreters.
    pub interpreter_options_set_error_reporter: unsafe extern "C" fn(
        options: *mut TfLiteInterpreterOptions,
        reporter: TfLiteErrorReporter,
        user_data: *mut c_void,
    ),
    /// `TfLiteInterpreter* TfLiteInterpreterCreate(const TfLiteModel*,
    /// const TfLiteInterpreterOptions*)`: NULL on failure (reported to the error reporter);
    /// options may be NULL and may be deleted after the call.
    pub interpreter_create: unsafe extern "C" fn(
        model: *const TfLiteModel,
        options: *const TfLiteInterpreterOptions,
    ) -> *mut TfLiteInterpreter,
    /// `void TfLiteInterpreterDelete(TfLiteInterpreter*)`.
    pub interpreter_delete: unsafe extern "C" fn(interpreter: *mut TfLiteInterpreter),
    /// `int32_t TfLiteInterpreterGetInputTensorCount(const TfLiteInterpreter*)`.
    pub interpreter_get_input_tensor_count:
        unsafe extern "C" fn(interpreter: *const TfLiteInterpreter) -> i32,
    /// `TfLiteTensor* TfLiteInterpreterGetInputTensor(const TfLiteInterpreter*, int32_t)`.
    pub interpreter_get_input_tensor: unsafe extern "C" fn(
        interpreter: *const TfLiteInterpreter,
        index: i32,
    ) -> *mut TfLiteTensor,
    /// `TfLiteStatus TfLiteInterpreterResizeInputTensor(TfLiteInterpreter*, int32_t index,
    /// const int* dims, int32_t dims_size)`: call AllocateTensors afterwards.
    pub interpreter_resize_input_tensor: unsafe extern "C" fn(
        interpreter: *mut TfLiteInterpreter,
        index: i32,
        dims: *const c_int,
        dims_size: i32,
    ) -> TfLiteStatus,
    /// `TfLiteStatus TfLiteInterpreterAllocateTensors(TfLiteInterpreter*)`.
    pub interpreter_allocate_tensors:
        unsafe extern "C" fn(interpreter: *mut TfLiteInterpreter) -> TfLiteStatus,
    /// `TfLiteStatus TfLiteInterpreterInvoke(TfLiteInterpreter*)`.
    pub interpreter_invoke:
        unsafe extern "C" fn(interpreter: *mut TfLiteInterpreter) -> TfLiteStatus,
    /// `int32_t TfLiteInterpreterGetOutputTensorCount(const TfLiteInterpreter*)`.
    pub interpreter_get_output_tensor_count:
        unsafe extern "C" fn(interpreter: *const TfLiteInterpreter) -> i32,
    /// `const TfLiteTensor* TfLiteInterpreterGetOutputTensor(const TfLiteInterpreter*,
    /// int32_t)`.
    pub interpreter_get_output_tensor: unsafe extern "C" fn(
        interpreter: *const TfLiteInterpreter,
        index: i32,
    ) -> *const TfLiteTensor,
    /// `TfLiteType TfLiteTensorType(const TfLiteTensor*)`.
    pub tensor_type: unsafe extern "C" fn(tensor: *const TfLiteTensor) -> TfLiteType,
    /// `int32_t TfLiteTensorNumDims(const TfLiteTensor*)`.
    pub tensor_num_dims: unsafe extern "C" fn(tensor: *const TfLiteTensor) -> i32,
    /// `int32_t TfLiteTensorDim(const TfLiteTensor*, int32_t dim_index)`.
    pub tensor_dim: unsafe extern "C" fn(tensor: *const TfLiteTensor, dim_index: i32) -> i32,
    /// `size_t TfLiteTensorByteSize(const TfLiteTensor*)`.
    pub tensor_byte_size: unsafe extern "C" fn(tensor: *const TfLiteTensor) -> usize,
    /// `void* TfLiteTensorData(const TfLiteTensor*)`: NULL before allocation.
    pub tensor_data: unsafe extern "C" fn(tensor: *const TfLiteTensor) -> *mut c_void,
    /// `const char* TfLiteTensorName(const TfLiteTensor*)`.
    pub tensor_name: unsafe extern "C" fn(tensor: *const TfLiteTensor) -> *const c_char,
    /// `TfLiteQuantizationParams TfLiteTensorQuantizationParams(const TfLiteTensor*)`.
    pub tensor_quantization_params:
        unsafe extern "C" fn(tensor: *const TfLiteTensor) -> TfLiteQuantizationParams,
    /// `TfLiteStatus TfLiteTensorCopyFromBuffer(TfLiteTensor*, const void*, size_t)`:
    /// the size must equal the tensor's byte size.
    pub tensor_copy_from_buffer: unsafe extern "C" fn(
        tensor: *mut TfLiteTensor,
        input_data: *const c_void,
        input_data_size: usize,
    ) -> TfLiteStatus,
    /// `TfLiteStatus TfLiteTensorCopyToBuffer(const TfLiteTensor*, void*, size_t)`:
    /// the size must equal the tensor's byte size.
    pub tensor_copy_to_buffer: unsafe extern "C" fn(
        tensor: *const TfLiteTensor,
        output_data: *mut c_void,
        output_data_size: usize,
    ) -> TfLiteStatus,
    /// `void TfLiteInterpreterOptionsAddCustomOp(TfLiteInterpreterOptions*, const char*
    /// name, const TfLiteRegistration*, int32_t min_version, int32_t max_version)` (from
    /// `c_api_experimental.h`), if the library exports it: the registration is copied, and
    /// `name` and the callbacks must outlive every interpreter created with the options.
    pub interpreter_options_add_custom_op: Option<
        unsafe extern "C" fn(
            options: *mut TfLiteInterpreterOptions,
            name: *const c_char,
            registration: *const TfLiteRegistration,
            min_version: i32,
            max_version: i32,
        ),
    >,
    /// The XNNPack delegate, if this build of the library exports it.
    pub xnnpack: Option<XnnPackFns>,

    // Declared last so it is dropped (dlclose) after nothing else can use the pointers.
    _library: Library,
}

impl std::fmt::Debug for TfLiteApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfLiteApi")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("xnnpack", &self.xnnpack.is_some())
            .finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Arc<TfLiteApi>> = OnceLock::new();

impl TfLiteApi {
    /// Loads the library: from `path` if given, else from [`TFLITE_LIB_ENV`] if set, else
    /// [`default_tflite_library_name`] through the loader's search path, and if that fails,
    /// from the cache of `scripts/fetch-tflite` ([`cached_tflite_library`]). Resolves every
    /// symbol and checks that `TfLiteVersion()` is 2.x.
    ///
    /// A path given or set is the only one tried; otherwise an error lists every place
    /// tried ([`LoadError::NotFound`]).
    pub fn load(path: Option<&Path>) -> Result<Self, LoadError> {
        if let Some(path) = loader::chosen_path(path, TFLITE_LIB_ENV) {
            return Self::load_from(path);
        }
        let candidates = std::iter::once(PathBuf::from(default_tflite_library_name()))
            .chain(cached_tflite_library(|name| std::env::var_os(name)));
        Self::load_first(candidates)
    }

    fn load_from(path: PathBuf) -> Result<Self, LoadError> {
        let lib = loader::open(LibraryKind::TfLite, &path)?;
        Self::from_library(lib, path)
    }

    /// The first of `candidates` that loads, or [`LoadError::NotFound`] listing them all.
    fn load_first(candidates: impl IntoIterator<Item = PathBuf>) -> Result<Self, LoadError> {
        let mut tried = Vec::new();
        for path in candidates {
            match Self::load_from(path.clone()) {
                Ok(api) => return Ok(api),
                Err(error) => tried.push((path, error.reason())),
            }
        }
        Err(LoadError::NotFound {
            library: LibraryKind::TfLite,
            tried,
        })
    }

    /// The process-wide instance loaded from [`TFLITE_LIB_ENV`] or the default name.
    /// Only a successful load is cached, so a failed attempt can be retried after fixing
    /// the environment.
    pub fn shared() -> Result<Arc<Self>, LoadError> {
        loader::shared(&SHARED, || Self::load(None))
    }

    fn from_library(lib: Library, path: PathBuf) -> Result<Self, LoadError> {
        let kind = LibraryKind::TfLite;
        macro_rules! sym {
            ($name:literal) => {
                loader::symbol(&lib, kind, &path, $name)?
            };
        }
        let version_fn: unsafe extern "C" fn() -> *const c_char = sym!("TfLiteVersion");
        let version = loader::version_string(version_fn);
        if version.split('.').next() != Some("2") {
            return Err(LoadError::BadVersion {
                library: kind,
                path,
                found: version,
                required: REQUIRED_VERSION,
            });
        }
        let xnnpack = match (
            loader::symbol(&lib, kind, &path, "TfLiteXNNPackDelegateOptionsDefault"),
            loader::symbol(&lib, kind, &path, "TfLiteXNNPackDelegateCreate"),
            loader::symbol(&lib, kind, &path, "TfLiteXNNPackDelegateDelete"),
        ) {
            (Ok(options_default), Ok(create), Ok(delete)) => Some(XnnPackFns {
                options_default,
                create,
                delete,
            }),
            _ => None,
        };
        Ok(Self {
            version_fn,
            model_create: sym!("TfLiteModelCreate"),
            model_create_from_file: sym!("TfLiteModelCreateFromFile"),
            model_delete: sym!("TfLiteModelDelete"),
            interpreter_options_create: sym!("TfLiteInterpreterOptionsCreate"),
            interpreter_options_delete: sym!("TfLiteInterpreterOptionsDelete"),
            interpreter_options_set_num_threads: sym!("TfLiteInterpreterOptionsSetNumThreads"),
            interpreter_options_add_delegate: sym!("TfLiteInterpreterOptionsAddDelegate"),
            interpreter_options_set_error_reporter: sym!(
                "TfLiteInterpreterOptionsSetErrorReporter"
            ),
            interpreter_create: sym!("TfLiteInterpreterCreate"),
            interpreter_delete: sym!("TfLiteInterpreterDelete"),
            interpreter_get_input_tensor_count: sym!("TfLiteInterpreterGetInputTensorCount"),
            interpreter_get_input_tensor: sym!("TfLiteInterpreterGetInputTensor"),
            interpreter_resize_input_tensor: sym!("TfLiteInterpreterResizeInputTensor"),
            interpreter_allocate_tensors: sym!("TfLiteInterpreterAllocateTensors"),
            interpreter_invoke: sym!("TfLiteInterpreterInvoke"),
            interpreter_get_output_tensor_count: sym!("TfLiteInterpreterGetOutputTensorCount"),
            interpreter_get_output_tensor: sym!("TfLiteInterpreterGetOutputTensor"),
            tensor_type: sym!("TfLiteTensorType"),
            tensor_num_dims: sym!("TfLiteTensorNumDims"),
            tensor_dim: sym!("TfLiteTensorDim"),
            tensor_byte_size: sym!("TfLiteTensorByteSize"),
            tensor_data: sym!("TfLiteTensorData"),
            tensor_name: sym!("TfLiteTensorName"),
            tensor_quantization_params: sym!("TfLiteTensorQuantizationParams"),
            tensor_copy_from_buffer: sym!("TfLiteTensorCopyFromBuffer"),
            tensor_copy_to_buffer: sym!("TfLiteTensorCopyToBuffer"),
            interpreter_options_add_custom_op: loader::symbol(
                &lib,
                kind,
                &path,
                "TfLiteInterpreterOptionsAddCustomOp",
            )
            .ok(),
            xnnpack,
            path,
            version,
            _library: lib,
        })
    }

    /// The path or file name the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version string `TfLiteVersion()` reported at load, e.g. `"2.9.0"`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the kernel structs declared here ([`TfLiteContext`](crate::TfLiteContext),
    /// [`TfLiteNode`](crate::TfLiteNode), [`TfLiteTensorFields`](crate::TfLiteTensorFields),
    /// [`TfLiteDelegateFields`](crate::TfLiteDelegateFields) and the others of their module)
    /// match this library's layout (its version is
    /// [`KERNEL_LAYOUT_VERSION`](crate::KERNEL_LAYOUT_VERSION)`.x`).
    pub fn kernel_layout_matches(&self) -> bool {
        self.version
            .strip_prefix(crate::KERNEL_LAYOUT_VERSION)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    }

    /// Whether [`TfLiteXNNPackDelegateOptions`] as declared here matches this library's
    /// layout (its version is [`XNNPACK_OPTIONS_LAYOUT_VERSION`]`.x`).
    pub fn xnnpack_options_layout_matches(&self) -> bool {
        self.version
            .strip_prefix(XNNPACK_OPTIONS_LAYOUT_VERSION)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real library from `MULTITPU_TFLITE_LIB`, or `None` (with a loud message) when the
    /// variable is unset; under `CI` an unset variable fails the test instead.
    fn real_library_path() -> Option<PathBuf> {
        match std::env::var_os(TFLITE_LIB_ENV) {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{TFLITE_LIB_ENV} must be set when CI is set"
                );
                eprintln!(
                    "SKIPPED: {TFLITE_LIB_ENV} is not set; cannot load the real TFLite library"
                );
                None
            }
        }
    }

    #[test]
    fn wrong_path_gives_open_error_with_the_path() {
        let bad = Path::new("/definitely/not/here/libtensorflowlite_c.so");
        let err = TfLiteApi::load(Some(bad)).expect_err("no library at that path");
        match &err {
            LoadError::Open {
                library,
                path,
                error,
            } => {
                assert_eq!(*library, LibraryKind::TfLite);
                assert_eq!(path, bad);
                assert!(!error.is_empty());
            }
            other => panic!("expected LoadError::Open, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("/definitely/not/here/libtensorflowlite_c.so"),
            "{msg}"
        );
        assert!(msg.contains(TFLITE_LIB_ENV), "{msg}");
    }

    #[test]
    fn without_a_path_every_place_tried_is_named() {
        let places = [
            PathBuf::from("libtensorflowlite_c_not_installed.so"),
            PathBuf::from("/definitely/not/here/libtensorflowlite_c.so"),
        ];
        let Err(err) = TfLiteApi::load_first(places.clone()) else {
            panic!("neither place holds a library");
        };
        assert!(
            matches!(&err, LoadError::NotFound { tried, .. } if tried.len() == 2),
            "{err:?}"
        );
        let msg = err.to_string();
        for place in &places {
            assert!(msg.contains(&*place.to_string_lossy()), "{msg}");
        }
        assert!(msg.contains("scripts/fetch-tflite"), "{msg}");
    }

    #[test]
    fn the_cache_is_tried_after_the_loaders_search_path() {
        let Some(path) = real_library_path() else {
            return;
        };
        // The second place is where the library is: it loads from there.
        let api = TfLiteApi::load_first([
            PathBuf::from("libtensorflowlite_c_not_installed.so"),
            path.clone(),
        ])
        .expect("the second place holds the library");
        assert_eq!(api.path(), path);
        let cached = cached_tflite_library(|name| {
            (name == "MULTITPU_CACHE").then(|| OsString::from("/cache"))
        });
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(
                cached,
                Some(PathBuf::from(
                    "/cache/tflite-2.9/linux_amd64/libtensorflowlite_c.so"
                ))
            );
        }
    }

    #[test]
    fn a_library_without_the_api_gives_missing_symbol() {
        // The C library itself is always loadable and certainly lacks TfLiteVersion.
        let libc = if cfg!(target_os = "macos") {
            "libSystem.B.dylib"
        } else {
            "libc.so.6"
        };
        if !cfg!(any(target_os = "linux", target_os = "macos")) {
            eprintln!("SKIPPED: no well-known C library name on this platform");
            return;
        }
        let err = TfLiteApi::load(Some(Path::new(libc))).expect_err("libc is not TFLite");
        assert!(
            matches!(
                err,
                LoadError::MissingSymbol {
                    symbol: "TfLiteVersion",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn loads_the_real_library_and_reports_2_9() {
        let Some(path) = real_library_path() else {
            return;
        };
        let api = TfLiteApi::load(Some(&path)).expect("MULTITPU_TFLITE_LIB must load");
        assert!(
            api.version().starts_with("2.9."),
            "version {}",
            api.version()
        );
        assert!(api.xnnpack_options_layout_matches());
        assert_eq!(api.path(), path);
        let shared = TfLiteApi::shared().expect("the shared instance loads from the env var");
        assert_eq!(shared.version(), api.version());
    }

    #[test]
    fn xnnpack_options_default_is_eight_zero_bytes() {
        let Some(path) = real_library_path() else {
            return;
        };
        let api = TfLiteApi::load(Some(&path)).expect("MULTITPU_TFLITE_LIB must load");
        let fns = api
            .xnnpack
            .expect("the 2.9 C library exports the XNNPack delegate");
        assert_eq!(std::mem::size_of::<TfLiteXNNPackDelegateOptions>(), 8);
        // SAFETY: no arguments; the struct layout matches 2.9 (checked above).
        let opts = unsafe { (fns.options_default)() };
        assert_eq!(opts, TfLiteXNNPackDelegateOptions::default());
    }

    #[test]
    fn status_descriptions() {
        assert!(TfLiteStatus::OK.is_ok());
        assert!(!TfLiteStatus::UNRESOLVED_OPS.is_ok());
        assert_eq!(TfLiteStatus::UNRESOLVED_OPS.describe(), "unresolved ops");
        assert_eq!(TfLiteStatus(42).describe(), "unknown status");
    }
}
