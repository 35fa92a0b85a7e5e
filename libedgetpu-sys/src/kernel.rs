//! What a custom operator's kernel and a delegate see: the structs of
//! `tensorflow/lite/c/common.h` that TFLite hands to a `TfLiteRegistration`'s callbacks and
//! to a `TfLiteDelegate`'s `Prepare`, as laid out by TFLite 2.9 (see
//! [`KERNEL_LAYOUT_VERSION`]), without `TF_LITE_STATIC_MEMORY`.
//!
//! These are read through pointers TFLite gives a kernel or delegate; a delegate library
//! builds a [`TfLiteDelegateFields`] and the registrations it hands over, nothing else is
//! built or moved by Rust. Function pointers nobody here calls are declared as
//! `*const c_void`, which has their size and alignment. The test
//! `layouts_match_the_2_9_header` compiles a C program against the 2.9 header and compares
//! every size and offset.

use std::ffi::{c_char, c_int, c_void};

use crate::tflite::{TfLiteDelegate, TfLiteQuantizationParams, TfLiteStatus, TfLiteTensor};

/// The TFLite `major.minor` whose kernel structs are declared here. `TfLiteTensor`,
/// `TfLiteContext` and `TfLiteDelegate` change between versions, so use them only with a
/// 2.9 library.
pub const KERNEL_LAYOUT_VERSION: &str = "2.9";

/// `kTfLiteDelegateFlagsAllowDynamicTensors`, a bit of [`TfLiteDelegateFields::flags`]: the
/// delegate's `Prepare` runs before the other nodes are prepared, and the graph may have
/// dynamic tensors.
pub const TFLITE_DELEGATE_FLAGS_ALLOW_DYNAMIC_TENSORS: i64 = 1;

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

/// `TfLiteStatus GetExecutionPlan(TfLiteContext*, TfLiteIntArray** execution_plan)`: the
/// nodes in execution order, in an array owned by the context (valid until the next call
/// into it).
pub type TfLiteGetExecutionPlanFn = unsafe extern "C" fn(
    context: *mut TfLiteContext,
    execution_plan: *mut *mut TfLiteIntArray,
) -> TfLiteStatus;

/// `TfLiteStatus GetNodeAndRegistration(TfLiteContext*, int node_index, TfLiteNode** node,
/// TfLiteRegistration** registration)`.
pub type TfLiteGetNodeAndRegistrationFn = unsafe extern "C" fn(
    context: *mut TfLiteContext,
    node_index: c_int,
    node: *mut *mut TfLiteNode,
    registration: *mut *mut TfLiteRegistration,
) -> TfLiteStatus;

/// `TfLiteStatus ReplaceNodeSubsetsWithDelegateKernels(TfLiteContext*, TfLiteRegistration
/// registration, const TfLiteIntArray* nodes_to_replace, TfLiteDelegate* delegate)`: each
/// connected subset of the nodes becomes one node of `registration`, whose `init` gets a
/// [`TfLiteDelegateParams`].
pub type TfLiteReplaceNodeSubsetsFn = unsafe extern "C" fn(
    context: *mut TfLiteContext,
    registration: TfLiteRegistration,
    nodes_to_replace: *const TfLiteIntArray,
    delegate: *mut TfLiteDelegate,
) -> TfLiteStatus;

/// `TfLiteContext`: the interpreter state a kernel or a delegate gets.
#[repr(C)]
pub struct TfLiteContext {
    /// Number of tensors in `tensors`.
    pub tensors_size: usize,
    /// `GetExecutionPlan`, for delegates.
    pub get_execution_plan: Option<TfLiteGetExecutionPlanFn>,
    /// Every tensor of the graph, [`TFLITE_TENSOR_SIZE`] bytes apart (read them as
    /// [`TfLiteTensorFields`]).
    pub tensors: *mut TfLiteTensor,
    /// The interpreter's private state.
    pub impl_: *mut c_void,
    /// `ResizeTensor` (not declared further).
    pub resize_tensor: *const c_void,
    /// `void ReportError(TfLiteContext*, const char* format, ...)`: reports through the
    /// interpreter's error reporter.
    pub report_error:
        Option<unsafe extern "C" fn(context: *mut TfLiteContext, format: *const c_char, ...)>,
    /// `AddTensors` (not declared further).
    pub add_tensors: *const c_void,
    /// `GetNodeAndRegistration`, for delegates.
    pub get_node_and_registration: Option<TfLiteGetNodeAndRegistrationFn>,
    /// `ReplaceNodeSubsetsWithDelegateKernels`, for delegates.
    pub replace_node_subsets_with_delegate_kernels: Option<TfLiteReplaceNodeSubsetsFn>,
    /// The number of threads kernels are advised to use.
    pub recommended_num_threads: c_int,
    /// `GetExternalContext` (not declared further).
    pub get_external_context: *const c_void,
    /// `SetExternalContext` (not declared further).
    pub set_external_context: *const c_void,
    /// Whether float kernels may compute in fp16.
    pub allow_fp32_relax_to_fp16: bool,
    /// The interpreter's profiler, if any.
    pub profiler: *mut c_void,
    /// `AllocatePersistentBuffer` (not declared further).
    pub allocate_persistent_buffer: *const c_void,
    /// `AllocateBufferForEval` (not declared further).
    pub allocate_buffer_for_eval: *const c_void,
    /// `RequestScratchBufferInArena` (not declared further).
    pub request_scratch_buffer_in_arena: *const c_void,
    /// `GetScratchBuffer` (not declared further).
    pub get_scratch_buffer: *const c_void,
    /// `ResizeTensorExplicit` (not declared further).
    pub resize_tensor_explicit: *const c_void,
    /// `PreviewDelegatePartitioning` (not declared further).
    pub preview_delegate_partitioning: *const c_void,
    /// `GetTensor` (not declared further).
    pub get_tensor: *const c_void,
    /// `GetEvalTensor` (not declared further).
    pub get_eval_tensor: *const c_void,
    /// `GetModelMetadata` (not declared further).
    pub get_model_metadata: *const c_void,
}

/// `TfLiteQuantization`: a type tag and a pointer to its parameters.
#[repr(C)]
pub struct TfLiteQuantization {
    /// `TfLiteQuantizationType`: 0 none, 1 affine.
    pub kind: c_int,
    /// The parameters of `kind` (`TfLiteAffineQuantization*` for affine).
    pub params: *mut c_void,
}

/// The fields of a 2.9 `TfLiteTensor`, the elements of [`TfLiteContext::tensors`]. The C
/// API's tensors are the same objects, declared opaque as [`TfLiteTensor`] so that they are
/// read with the `TfLiteTensor*` functions, which suit any 2.x library; cast a pointer to
/// this type only with a 2.9 library.
#[repr(C)]
pub struct TfLiteTensorFields {
    /// `TfLiteType` of the elements.
    pub element_type: c_int,
    /// The data buffer (`TfLitePtrUnion`, a union of pointers); NULL before allocation.
    pub data: *mut c_void,
    /// The shape.
    pub dims: *mut TfLiteIntArray,
    /// Per-tensor quantization (deprecated in favour of `quantization`).
    pub params: TfLiteQuantizationParams,
    /// `TfLiteAllocationType`.
    pub allocation_type: c_int,
    /// Size of `data` in bytes.
    pub bytes: usize,
    /// The allocation backing a memory-mapped tensor.
    pub allocation: *const c_void,
    /// The tensor's name, NUL-terminated, or NULL.
    pub name: *const c_char,
    /// The delegate whose buffer handle holds the data, if any.
    pub delegate: *mut TfLiteDelegate,
    /// The delegate's buffer handle (-1 for none).
    pub buffer_handle: c_int,
    /// Whether `data` is older than the delegate's buffer.
    pub data_is_stale: bool,
    /// Whether the tensor is a variable.
    pub is_variable: bool,
    /// The tensor's quantization.
    pub quantization: TfLiteQuantization,
    /// Sparsity parameters (`TfLiteSparsity*`), if any.
    pub sparsity: *mut c_void,
    /// The shape with -1 for dimensions unknown in the model, or NULL.
    pub dims_signature: *const TfLiteIntArray,
}

/// `sizeof(TfLiteTensor)`: the distance between two tensors of `TfLiteContext::tensors`.
pub const TFLITE_TENSOR_SIZE: usize = std::mem::size_of::<TfLiteTensorFields>();

/// `TfLiteStatus Prepare(TfLiteContext*, TfLiteDelegate*)`: a delegate claims nodes.
pub type TfLiteDelegatePrepareFn = unsafe extern "C" fn(
    context: *mut TfLiteContext,
    delegate: *mut TfLiteDelegate,
) -> TfLiteStatus;

/// The fields of a 2.9 `TfLiteDelegate`, as a delegate library builds one; TFLite and the C
/// API take a pointer to it as the opaque [`TfLiteDelegate`].
#[repr(C)]
pub struct TfLiteDelegateFields {
    /// The delegate's own data.
    pub data: *mut c_void,
    /// Called by `ModifyGraphWithDelegate` to claim nodes.
    pub prepare: Option<TfLiteDelegatePrepareFn>,
    /// `CopyFromBufferHandle` (not declared further; may be NULL).
    pub copy_from_buffer_handle: *const c_void,
    /// `CopyToBufferHandle` (not declared further; may be NULL).
    pub copy_to_buffer_handle: *const c_void,
    /// `FreeBufferHandle` (not declared further; may be NULL).
    pub free_buffer_handle: *const c_void,
    /// `TfLiteDelegateFlags`, e.g. [`TFLITE_DELEGATE_FLAGS_ALLOW_DYNAMIC_TENSORS`].
    pub flags: i64,
}

/// `TfLiteDelegateParams`: what `init` of a delegate kernel (registered with
/// `ReplaceNodeSubsetsWithDelegateKernels`) gets as its buffer.
#[repr(C)]
pub struct TfLiteDelegateParams {
    /// The delegate that replaced the nodes.
    pub delegate: *mut TfLiteDelegate,
    /// The nodes this kernel replaces.
    pub nodes_to_replace: *mut TfLiteIntArray,
    /// The kernel's input tensors.
    pub input_tensors: *mut TfLiteIntArray,
    /// The kernel's output tensors.
    pub output_tensors: *mut TfLiteIntArray,
}

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
    use std::mem::{offset_of, size_of};
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;

    /// Sizes (`field` = "sizeof") and field offsets of the declared structs, by C name.
    fn rust_layouts() -> Vec<(&'static str, &'static str, usize)> {
        macro_rules! layout {
            ($($c_ty:literal $ty:ident { $($field:ident $(as $c:literal)?),* })*) => {
                vec![$(
                    ($c_ty, "sizeof", size_of::<$ty>()),
                    $(($c_ty, layout!(@name $field $($c)?), offset_of!($ty, $field)),)*
                )*]
            };
            (@name $field:ident $c:literal) => { $c };
            (@name $field:ident) => { stringify!($field) };
        }
        layout! {
            "TfLiteIntArray" TfLiteIntArray { size, data }
            "TfLiteQuantization" TfLiteQuantization { kind as "type", params }
            "TfLiteTensor" TfLiteTensorFields {
                element_type as "type", data, dims, params, allocation_type, bytes, allocation,
                name, delegate, buffer_handle, data_is_stale, is_variable, quantization,
                sparsity, dims_signature
            }
            "TfLiteNode" TfLiteNode {
                inputs, outputs, intermediates, temporaries, user_data, builtin_data,
                custom_initial_data, custom_initial_data_size, delegate, might_have_side_effect
            }
            "TfLiteDelegateParams" TfLiteDelegateParams {
                delegate, nodes_to_replace, input_tensors, output_tensors
            }
            "TfLiteContext" TfLiteContext {
                tensors_size, get_execution_plan as "GetExecutionPlan", tensors, impl_,
                resize_tensor as "ResizeTensor", report_error as "ReportError",
                add_tensors as "AddTensors",
                get_node_and_registration as "GetNodeAndRegistration",
                replace_node_subsets_with_delegate_kernels
                    as "ReplaceNodeSubsetsWithDelegateKernels",
                recommended_num_threads, get_external_context as "GetExternalContext",
                set_external_context as "SetExternalContext", allow_fp32_relax_to_fp16,
                profiler, allocate_persistent_buffer as "AllocatePersistentBuffer",
                allocate_buffer_for_eval as "AllocateBufferForEval",
                request_scratch_buffer_in_arena as "RequestScratchBufferInArena",
                get_scratch_buffer as "GetScratchBuffer",
                resize_tensor_explicit as "ResizeTensorExplicit",
                preview_delegate_partitioning as "PreviewDelegatePartitioning",
                get_tensor as "GetTensor", get_eval_tensor as "GetEvalTensor",
                get_model_metadata as "GetModelMetadata"
            }
            "TfLiteRegistration" TfLiteRegistration {
                init, free, prepare, invoke, profiling_string, builtin_code, custom_name, version
            }
            "TfLiteDelegate" TfLiteDelegateFields {
                data as "data_", prepare as "Prepare",
                copy_from_buffer_handle as "CopyFromBufferHandle",
                copy_to_buffer_handle as "CopyToBufferHandle",
                free_buffer_handle as "FreeBufferHandle", flags
            }
        }
    }

    /// TFLite 2.9's C headers: `MULTITPU_TFLITE_INCLUDE`, else `include` beside the platform
    /// folder of the library (`<cache>/tflite-2.9/<platform>/<library>`, as
    /// `scripts/fetch-tflite` installs them), or why there are none.
    fn tflite_include_dir() -> Result<PathBuf, String> {
        if let Some(dir) = std::env::var_os("MULTITPU_TFLITE_INCLUDE") {
            return Ok(PathBuf::from(dir));
        }
        let library = std::env::var_os(crate::TFLITE_LIB_ENV)
            .ok_or_else(|| format!("{} is not set", crate::TFLITE_LIB_ENV))?;
        std::path::Path::new(&library)
            .parent()
            .and_then(std::path::Path::parent)
            .map(|dir| dir.join("include"))
            .filter(|dir| dir.join("tensorflow/lite/c/common.h").is_file())
            .ok_or_else(|| "no TFLite 2.9 headers beside the library".to_string())
    }

    /// Compiles a C program against the 2.9 `common.h` that prints every size and offset of
    /// [`rust_layouts`]; skips loudly without the headers or a C compiler (fails under CI).
    #[test]
    fn layouts_match_the_2_9_header() {
        let skip = |why: String| {
            assert!(std::env::var_os("CI").is_none(), "{why}");
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
        };
        let include = match tflite_include_dir() {
            Ok(include) => include,
            Err(why) => return skip(why),
        };
        let layouts = rust_layouts();
        let mut program = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"tensorflow/lite/c/common.h\"\n\
             int main(void) {\n",
        );
        for (ty, field, _) in &layouts {
            let value = if *field == "sizeof" {
                format!("sizeof({ty})")
            } else {
                format!("offsetof({ty}, {field})")
            };
            program.push_str(&format!("  printf(\"{ty} {field} %zu\\n\", {value});\n"));
        }
        program.push_str("  return 0;\n}\n");
        let dir = std::env::temp_dir().join(format!("kernel-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (source, binary) = (dir.join("layout.c"), dir.join("layout"));
        std::fs::write(&source, program).unwrap();
        let compiled = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .arg("-I")
            .arg(&include)
            .arg(&source)
            .arg("-o")
            .arg(&binary)
            .output();
        let compiled = match compiled {
            Ok(output) => output,
            Err(e) => {
                std::fs::remove_dir_all(&dir).ok();
                return skip(format!(
                    "no C compiler (`cc`) to read the header's layouts: {e}"
                ));
            }
        };
        assert!(
            compiled.status.success(),
            "{}",
            String::from_utf8_lossy(&compiled.stderr)
        );
        let output = Command::new(&binary).output().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let from_header: Vec<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let declared: Vec<String> = layouts
            .iter()
            .map(|(ty, field, value)| format!("{ty} {field} {value}"))
            .collect();
        assert_eq!(declared, from_header);
    }
}
