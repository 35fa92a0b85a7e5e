//! Raw bindings to the TensorFlow Lite C API and libedgetpu's C API, loaded at run time.
//!
//! Nothing here links against either library: [`TfLiteApi`] and [`EdgeTpuApi`] open the
//! shared library with `dlopen` (through `libloading`) and resolve every symbol once, so a
//! missing or wrong library is a typed [`LoadError`] instead of a link failure, and
//! `cargo check`/`cargo doc` work on machines without either library.
//!
//! Lookup order for each library: an explicit path given by the caller, then an environment
//! variable ([`TFLITE_LIB_ENV`], [`EDGETPU_LIB_ENV`]), then the platform's usual file name
//! (found through the dynamic loader's search path); for TFLite, last, the cache that
//! `scripts/fetch-tflite` fills ([`cached_tflite_library`]).
//!
//! All function pointers are only valid while the API struct that holds them (and so the
//! loaded library) is alive. Calling them is `unsafe`: the caller upholds the C API's
//! contracts, documented on each type below.
#![warn(missing_docs)]

mod edgetpu;
mod error;
mod kernel;
mod loader;
mod tflite;

pub use edgetpu::{
    EDGETPU_LIB_ENV, EdgeTpuApi, EdgeTpuDevice, EdgeTpuDeviceType, EdgeTpuOption,
    default_edgetpu_library_name,
};
pub use error::{LibraryKind, LoadError};
pub use kernel::{
    KERNEL_LAYOUT_VERSION, TFLITE_DELEGATE_FLAGS_ALLOW_DYNAMIC_TENSORS, TFLITE_TENSOR_SIZE,
    TfLiteContext, TfLiteDelegateFields, TfLiteDelegateParams, TfLiteDelegatePrepareFn,
    TfLiteFreeFn, TfLiteGetExecutionPlanFn, TfLiteGetNodeAndRegistrationFn, TfLiteInitFn,
    TfLiteIntArray, TfLiteKernelFn, TfLiteNode, TfLiteProfilingStringFn, TfLiteQuantization,
    TfLiteRegistration, TfLiteReplaceNodeSubsetsFn, TfLiteTensorFields,
};
pub use tflite::{
    TFLITE_LIB_ENV, TfLiteApi, TfLiteDelegate, TfLiteErrorReporter, TfLiteInterpreter,
    TfLiteInterpreterOptions, TfLiteModel, TfLiteQuantizationParams, TfLiteStatus, TfLiteTensor,
    TfLiteType, TfLiteXNNPackDelegateOptions, XNNPACK_OPTIONS_LAYOUT_VERSION, XnnPackFns,
    cached_tflite_library, default_tflite_library_name,
};

use std::ffi::{c_char, c_int, c_void};

// SAFETY: `vsnprintf` is part of the C standard library that every Rust program on the
// supported platforms links; the declaration matches C99's prototype, with `va_list`
// passed as the pointer it decays to (x86-64 System V, where va_list is an array type) or
// is passed as (AArch64 AAPCS64, where the 32-byte va_list struct is passed by reference;
// Apple and Windows targets, where va_list is `char*`).
unsafe extern "C" {
    /// C's `vsnprintf`: formats `fmt` with the variadic arguments in `ap` into `buf`
    /// (at most `size` bytes, NUL-terminated). Returns the length the full output would
    /// have, or a negative value on an encoding error. `ap` is consumed.
    pub fn vsnprintf(buf: *mut c_char, size: usize, fmt: *const c_char, ap: *mut c_void) -> c_int;
}
