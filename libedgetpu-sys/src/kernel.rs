//! What a custom operator's kernel sees: the structs of `tensorflow/lite/c/common.h` that
//! TFLite hands to a `TfLiteRegistration`'s callbacks, as laid out by TFLite 2.9 (see
//! [`KERNEL_LAYOUT_VERSION`]).
//!
//! These are declared for reading through pointers TFLite gives a kernel, never to be
//! built or moved by Rust. [`TfLiteContext`] declares only its leading fields.

use std::ffi::{c_char, c_int, c_void};

use crate::tflite::{TfLiteDelegate, TfLiteQuantizationParams, TfLiteStatus, TfLiteTensor};

/// The TFLite `major.minor` whose kernel structs are declared here. `TfLiteTensor` and
/// `TfLiteContext` change between versions, so use them only with a 2.9 library.
pub const KERNEL_LAYOUT_VERSION: &str = "2.9";

/// `TfLiteIntArray`: `size` followed by `size` ints (a flexible array member).
#[repr(C)]
pub struct TfLiteIntArray {
    /// Number of elements in `data`.
    pub size: c_int,
    /// The elements; read `size` of them through a pointer to this struct.
    pub data: [c_int; 0],
}

/// `TfLiteNode` (the layout without `TF_LITE_STATIC_MEMORY`): one operator of the graph.
#[repr(C)]
pub struct TfLiteNode {
    /// Indices of the input tensors in `TfLiteContext::tensors` (-1 for an absent optional
    /// input).
    pub inputs: *mut TfLiteIntArray,
    /// Indices of the output tensors.
    pub outputs: *mut TfLiteIntArray,
    /// Indices of intermediate tensors.
    pub intermediates: *mut TfLiteIntArray,
    /// Indices of temporary tensors.
    pub temporaries: *mut TfLiteIntArray,
    /// What the registration's `init` returned.
    pub user_data: *mut c_void,
    /// Parsed options of a builtin operator.
    pub builtin_data: *mut c_void,
    /// The operator's custom options from the model.
    pub custom_initial_data: *const c_void,
    /// Size of `custom_initial_data` in bytes.
    pub custom_initial_data_size: c_int,
    /// The delegate that created this node, if any.
    pub delegate: *mut TfLiteDelegate,
    /// Whether the operator may have side effects.
    pub might_have_side_effect: bool,
}

/// The leading fields of `TfLiteContext`, the interpreter state a kernel gets; the rest of
/// the C struct follows them and is not declared.
#[repr(C)]
pub struct TfLiteContext {
    /// Number of tensors in `tensors`.
    pub tensors_size: usize,
    /// `GetExecutionPlan` (for delegates; not declared further).
    pub get_execution_plan: *const c_void,
    /// Every tensor of the graph, [`TFLITE_TENSOR_SIZE`] bytes apart.
    pub tensors: *mut TfLiteTensor,
    /// The interpreter's private state.
    pub impl_: *mut c_void,
    /// `ResizeTensor` (not declared further).
    pub resize_tensor: *const c_void,
    /// `void ReportError(TfLiteContext*, const char* format, ...)`: reports through the
    /// interpreter's error reporter.
    pub report_error:
        Option<unsafe extern "C" fn(context: *mut TfLiteContext, format: *const c_char, ...)>,
}

/// `TfLiteQuantization`: a type tag and a pointer to its parameters.
#[repr(C)]
struct TfLiteQuantization {
    kind: c_int,
    params: *mut c_void,
}

/// The full `TfLiteTensor` of 2.9, declared only for its size: the API reads tensors with
/// the `TfLiteTensor*` accessor functions.
#[repr(C)]
#[allow(dead_code)] // never read: only its size matters
struct TfLiteTensorLayout {
    element_type: c_int,
    data: *mut c_void,
    dims: *mut TfLiteIntArray,
    params: TfLiteQuantizationParams,
    allocation_type: c_int,
    bytes: usize,
    allocation: *const c_void,
    name: *const c_char,
    delegate: *mut TfLiteDelegate,
    buffer_handle: c_int,
    data_is_stale: bool,
    is_variable: bool,
    quantization: TfLiteQuantization,
    sparsity: *mut c_void,
    dims_signature: *const TfLiteIntArray,
}

/// `sizeof(TfLiteTensor)`: the distance between two tensors of `TfLiteContext::tensors`.
pub const TFLITE_TENSOR_SIZE: usize = std::mem::size_of::<TfLiteTensorLayout>();

/// `void* init(TfLiteContext*, const char* buffer, size_t length)`.
pub type TfLiteInitFn = unsafe extern "C" fn(
    context: *mut TfLiteContext,
    buffer: *const c_char,
    length: usize,
) -> *mut c_void;
/// `void free(TfLiteContext*, void* buffer)`.
pub type TfLiteFreeFn = unsafe extern "C" fn(context: *mut TfLiteContext, buffer: *mut c_void);
/// `TfLiteStatus prepare(TfLiteContext*, TfLiteNode*)`, and the same for `invoke`.
pub type TfLiteKernelFn =
    unsafe extern "C" fn(context: *mut TfLiteContext, node: *mut TfLiteNode) -> TfLiteStatus;
/// `const char* profiling_string(const TfLiteContext*, const TfLiteNode*)`.
pub type TfLiteProfilingStringFn =
    unsafe extern "C" fn(context: *const TfLiteContext, node: *const TfLiteNode) -> *const c_char;

/// `TfLiteRegistration`: a kernel's callbacks. TFLite copies the struct when it is
/// registered; the function pointers must stay valid as long as any interpreter built with
/// it, and `custom_name` is set by the registering call.
#[repr(C)]
pub struct TfLiteRegistration {
    /// Called once per node when the interpreter is built; its result becomes
    /// `TfLiteNode::user_data`. May be `None`.
    pub init: Option<TfLiteInitFn>,
    /// Frees what `init` returned. May be `None`.
    pub free: Option<TfLiteFreeFn>,
    /// Called when tensors are allocated (and again after inputs are resized).
    pub prepare: Option<TfLiteKernelFn>,
    /// Runs the node.
    pub invoke: Option<TfLiteKernelFn>,
    /// A string for profiling reports. May be `None`.
    pub profiling_string: Option<TfLiteProfilingStringFn>,
    /// The builtin operator code (`BuiltinOperator_CUSTOM` = 32 for custom operators).
    pub builtin_code: i32,
    /// The custom operator's name.
    pub custom_name: *const c_char,
    /// The operator version.
    pub version: c_int,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sizeof`/`offsetof` as a C compiler computes them from TFLite 2.9's `common.h`
    /// (fetched beside the library by `scripts/fetch-tflite`), or `None` with a loud notice
    /// when the headers or a C compiler are missing (a failure under `CI`).
    fn layouts_from_the_header() -> Option<Vec<usize>> {
        let skip = |why: String| {
            assert!(std::env::var_os("CI").is_none(), "{why}");
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
            None
        };
        let Some(library) = std::env::var_os(crate::TFLITE_LIB_ENV) else {
            return skip(format!("{} is not set", crate::TFLITE_LIB_ENV));
        };
        // <cache>/tflite-2.9/<platform>/<library> → <cache>/tflite-2.9/include
        let include = std::path::Path::new(&library)
            .parent()
            .and_then(std::path::Path::parent)
            .map(|dir| dir.join("include"));
        let Some(include) = include.filter(|dir| dir.join("tensorflow/lite/c/common.h").is_file())
        else {
            return skip("no TFLite 2.9 headers beside the library".into());
        };
        let dir = std::env::temp_dir().join(format!("kernel-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("layout.c");
        std::fs::write(
            &source,
            r#"#include <stdio.h>
#include <stddef.h>
#include "tensorflow/lite/c/common.h"
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(TfLiteTensor), sizeof(TfLiteRegistration),
         offsetof(TfLiteContext, tensors), offsetof(TfLiteContext, ReportError),
         offsetof(TfLiteNode, outputs), offsetof(TfLiteNode, custom_initial_data),
         offsetof(TfLiteNode, custom_initial_data_size), offsetof(TfLiteIntArray, data));
  return 0;
}
"#,
        )
        .unwrap();
        let binary = dir.join("layout");
        let compiled = std::process::Command::new("cc")
            .arg("-I")
            .arg(&include)
            .arg(&source)
            .arg("-o")
            .arg(&binary)
            .status();
        if !compiled.is_ok_and(|status| status.success()) {
            std::fs::remove_dir_all(&dir).ok();
            return skip("no C compiler (`cc`) to read the header's layouts".into());
        }
        let output = std::process::Command::new(&binary).output().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        Some(
            String::from_utf8(output.stdout)
                .unwrap()
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect(),
        )
    }

    #[test]
    fn layouts_match_the_2_9_header() {
        let Some(from_header) = layouts_from_the_header() else {
            return;
        };
        let declared = [
            TFLITE_TENSOR_SIZE,
            std::mem::size_of::<TfLiteRegistration>(),
            std::mem::offset_of!(TfLiteContext, tensors),
            std::mem::offset_of!(TfLiteContext, report_error),
            std::mem::offset_of!(TfLiteNode, outputs),
            std::mem::offset_of!(TfLiteNode, custom_initial_data),
            std::mem::offset_of!(TfLiteNode, custom_initial_data_size),
            std::mem::offset_of!(TfLiteIntArray, data),
        ];
        assert_eq!(from_header, declared);
    }
}
