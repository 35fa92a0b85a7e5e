//! The C boundary, and the crate's only unsafe code: libedgetpu's exported functions, the
//! TFLite delegate and kernel callbacks, and the device lock.
//!
//! Every exported function and callback catches panics: a panic never unwinds into C. A
//! callback that fails reports why through the context's `ReportError` and returns
//! `kTfLiteError`; an exported function that fails says why on stderr (as libedgetpu logs)
//! and returns NULL.
//!
//! The TFLite 2.9 structures are libedgetpu-sys's, whose tests check them against
//! `tensorflow/lite/c/common.h`.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::null_mut;
use std::sync::Mutex;
use std::time::Instant;

use libedgetpu_sys::{
    EdgeTpuDevice, EdgeTpuDeviceType, EdgeTpuOption, TFLITE_DELEGATE_FLAGS_ALLOW_DYNAMIC_TENSORS,
    TfLiteContext, TfLiteDelegate, TfLiteDelegateFields, TfLiteDelegateParams, TfLiteIntArray,
    TfLiteNode, TfLiteRegistration, TfLiteStatus, TfLiteTensorFields,
};
use multitpu::backend::DeviceKind;
use multitpu::model::BUILTIN_CUSTOM;
use multitpu::model::edgetpu::EDGETPU_CUSTOM_OP;

use crate::device::{OpenDevice, Segment, VERBOSITY};
use crate::{devices, health};

/// `edgetpu_version()`: says what this is.
const VERSION: &CStr = match CStr::from_bytes_with_nul(
    concat!(
        "emulated Edge TPU ",
        env!("CARGO_PKG_VERSION"),
        " (multitpu edgetpu-emulator: TFLite CPU runtime, timed by multitpu's cost model)\0"
    )
    .as_bytes(),
) {
    Ok(version) => version,
    Err(_) => panic!("the version string is NUL-terminated"),
};

/// The name of the emulator's delegate kernels in TFLite's node list.
const KERNEL_NAME: &CStr = c"emulated Edge TPU";

/// `kTfLiteBuiltinDelegate` (`tensorflow/lite/builtin_ops.h`): the code of delegate kernels.
const BUILTIN_DELEGATE: i32 = 51;

// ---- the delegate ----

/// What `edgetpu_create_delegate` returns a pointer to. `raw` comes first, so a pointer to
/// it is a pointer to the whole (`repr(C)`).
#[repr(C)]
struct EmulatedDelegate {
    raw: TfLiteDelegateFields,
    device: OpenDevice,
    /// Segments loaded by `Prepare` for the kernels TFLite is about to create, by node.
    pending: Mutex<HashMap<c_int, Kernel>>,
}

/// One delegate kernel: a segment and the context tensors it reads and writes.
struct Kernel {
    segment: Segment,
    inputs: Vec<c_int>,
    outputs: Vec<c_int>,
}

/// The elements of a `TfLiteIntArray` (none for NULL).
///
/// # Safety
///
/// `array` is NULL or a valid `TfLiteIntArray` that outlives the returned slice.
unsafe fn int_array<'a>(array: *const TfLiteIntArray) -> &'a [c_int] {
    if array.is_null() {
        return &[];
    }
    // SAFETY: a valid array holds `size` ints after its size field; the pointer to `data`
    // is derived from `array`, so it may read the whole allocation.
    unsafe {
        let size = usize::try_from((*array).size).unwrap_or(0);
        std::slice::from_raw_parts(std::ptr::addr_of!((*array).data).cast::<c_int>(), size)
    }
}

fn check(status: TfLiteStatus, call: &str) -> Result<(), String> {
    if status.is_ok() {
        Ok(())
    } else {
        Err(format!("{call} failed ({})", status.describe()))
    }
}

/// Reports `message` through the context's error reporter.
///
/// # Safety
///
/// `context` is NULL or a live context.
unsafe fn report(context: *mut TfLiteContext, message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a live context's `ReportError` takes the context and a printf format; "%s"
    // consumes exactly the one string argument passed, which outlives the call.
    unsafe {
        if let Some(report_error) = context.as_ref().and_then(|c| c.report_error) {
            report_error(context, c"%s".as_ptr(), text.as_ptr());
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// Runs a callback's body: its error or panic is reported to TFLite as `kTfLiteError`.
///
/// # Safety
///
/// `context` is NULL or a live context.
unsafe fn guarded(
    context: *mut TfLiteContext,
    body: impl FnOnce() -> Result<(), String>,
) -> TfLiteStatus {
    let message = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return TfLiteStatus::OK,
        Ok(Err(message)) => message,
        Err(panic) => format!("emulated Edge TPU: panicked: {}", panic_message(&*panic)),
    };
    // SAFETY: by this function's contract.
    unsafe { report(context, &message) };
    TfLiteStatus::ERROR
}

/// `TfLiteDelegate::Prepare`: claims every `edgetpu-custom-op` node, loading its segment.
unsafe extern "C" fn delegate_prepare(
    context: *mut TfLiteContext,
    delegate: *mut TfLiteDelegate,
) -> TfLiteStatus {
    // SAFETY: TFLite calls Prepare with its live context and the delegate it was given,
    // which `edgetpu_create_delegate` made.
    unsafe { guarded(context, || prepare(context, delegate)) }
}

/// # Safety
///
/// `context` is a live context inside `ModifyGraphWithDelegate`, `delegate` an
/// [`EmulatedDelegate`].
unsafe fn prepare(
    context: *mut TfLiteContext,
    delegate: *mut TfLiteDelegate,
) -> Result<(), String> {
    // SAFETY: see the contract; every pointer TFLite hands back below (execution plan,
    // nodes, registrations, custom data) is valid during this call, and the execution plan
    // is copied before the next call into TFLite.
    unsafe {
        let this = &*delegate.cast::<EmulatedDelegate>();
        let device = this.device.device();
        let missing = |name: &str| format!("TFLite's context lacks {name}");
        let get_plan = (*context)
            .get_execution_plan
            .ok_or_else(|| missing("GetExecutionPlan"))?;
        let get_node = (*context)
            .get_node_and_registration
            .ok_or_else(|| missing("GetNodeAndRegistration"))?;
        let replace = (*context)
            .replace_node_subsets_with_delegate_kernels
            .ok_or_else(|| missing("ReplaceNodeSubsetsWithDelegateKernels"))?;
        let mut plan = null_mut();
        check(get_plan(context, &mut plan), "GetExecutionPlan")?;
        let nodes = int_array(plan).to_vec();

        let mut kernels = HashMap::new();
        for node_index in nodes {
            let (mut node, mut registration) = (null_mut(), null_mut());
            check(
                get_node(context, node_index, &mut node, &mut registration),
                "GetNodeAndRegistration",
            )?;
            let (node, registration) = (&*node, &*registration);
            let is_edgetpu_op = registration.builtin_code == BUILTIN_CUSTOM
                && !registration.custom_name.is_null()
                && CStr::from_ptr(registration.custom_name).to_bytes()
                    == EDGETPU_CUSTOM_OP.as_bytes();
            if !is_edgetpu_op {
                continue;
            }
            let options = match usize::try_from(node.custom_initial_data_size) {
                Ok(len) if len > 0 && !node.custom_initial_data.is_null() => {
                    std::slice::from_raw_parts(node.custom_initial_data.cast::<u8>(), len)
                }
                _ => &[],
            };
            let refuse = |reason: String| {
                format!("{device} refuses node {node_index} ({EDGETPU_CUSTOM_OP}): {reason}")
            };
            let segment = this.device.load(options).map_err(refuse)?;
            let kernel = Kernel {
                inputs: int_array(node.inputs).to_vec(),
                outputs: int_array(node.outputs).to_vec(),
                segment,
            };
            if kernel.inputs.len() != kernel.segment.input_sizes().len()
                || kernel.outputs.len() != kernel.segment.output_sizes().len()
            {
                return Err(refuse(
                    "its inputs and outputs differ from its program's".to_string(),
                ));
            }
            kernels.insert(node_index, kernel);
        }
        if kernels.is_empty() {
            return Ok(());
        }
        let mut claimed: Vec<c_int> = kernels.keys().copied().collect();
        claimed.sort_unstable();
        let count = c_int::try_from(claimed.len()).map_err(|_| "too many nodes")?;
        // A TfLiteIntArray: the size, then the elements.
        let array: Vec<c_int> = std::iter::once(count).chain(claimed).collect();
        // The kernels' `init` takes them from `pending`; whatever is left (nothing, unless
        // TFLite fails half-way) is dropped after the call: no segment outlives Prepare
        // without a kernel, and a refused node leaves none behind.
        *this.pending.lock().map_err(|_| "a lock was poisoned")? = kernels;
        let status = replace(
            context,
            registration(),
            array.as_ptr().cast::<TfLiteIntArray>(),
            delegate,
        );
        this.pending
            .lock()
            .map_err(|_| "a lock was poisoned")?
            .clear();
        check(status, "ReplaceNodeSubsetsWithDelegateKernels")
    }
}

fn registration() -> TfLiteRegistration {
    TfLiteRegistration {
        init: Some(kernel_init),
        free: Some(kernel_free),
        prepare: Some(kernel_prepare),
        invoke: Some(kernel_invoke),
        profiling_string: None,
        builtin_code: BUILTIN_DELEGATE,
        custom_name: KERNEL_NAME.as_ptr(),
        version: 1,
    }
}

/// A kernel's `user_data`: its kernel, or why it could not be made (reported by `prepare`).
type KernelData = Result<Kernel, String>;

/// `TfLiteRegistration::init` of a delegate kernel: `buffer` is its `TfLiteDelegateParams`.
unsafe extern "C" fn kernel_init(
    _context: *mut TfLiteContext,
    buffer: *const c_char,
    _length: usize,
) -> *mut c_void {
    let made = catch_unwind(AssertUnwindSafe(|| -> KernelData {
        let params = buffer.cast::<TfLiteDelegateParams>();
        if params.is_null() {
            return Err("no delegate parameters".into());
        }
        // SAFETY: TFLite passes the partition's parameters, valid during this call; its
        // delegate is ours, alive while TFLite uses it.
        let (this, nodes) = unsafe {
            (
                &*(*params).delegate.cast::<EmulatedDelegate>(),
                int_array((*params).nodes_to_replace),
            )
        };
        let &[node] = nodes else {
            return Err(format!(
                "TFLite put {} edgetpu-custom-ops in one partition; the emulator runs one \
                 per kernel",
                nodes.len()
            ));
        };
        let mut pending = this.pending.lock().map_err(|_| "a lock was poisoned")?;
        pending
            .remove(&node)
            .ok_or_else(|| format!("node {node} was not claimed"))
    }));
    let data: KernelData = made.unwrap_or_else(|panic| {
        Err(format!(
            "emulated Edge TPU: init panicked: {}",
            panic_message(&*panic)
        ))
    });
    Box::into_raw(Box::new(data)).cast()
}

/// `TfLiteRegistration::free`.
unsafe extern "C" fn kernel_free(_context: *mut TfLiteContext, buffer: *mut c_void) {
    if buffer.is_null() {
        return;
    }
    // Dropping a kernel frees its interpreter; a panic there must not reach TFLite.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `buffer` is what `kernel_init` returned, freed once by TFLite.
        drop(unsafe { Box::from_raw(buffer.cast::<KernelData>()) });
    }));
}

/// The kernel of `node`, or why there is none.
///
/// # Safety
///
/// `node` is a live node of one of this emulator's kernels; no other reference to its
/// kernel exists while the result is used.
unsafe fn kernel<'a>(node: *mut TfLiteNode) -> Result<&'a mut Kernel, String> {
    // SAFETY: by the contract, `user_data` is NULL or what `kernel_init` returned.
    let data = unsafe { (*node).user_data.cast::<KernelData>().as_mut() };
    match data {
        Some(Ok(kernel)) => Ok(kernel),
        Some(Err(message)) => Err(message.clone()),
        None => Err("emulated Edge TPU: the kernel was not initialised".into()),
    }
}

/// Tensor `index` of the context.
///
/// # Safety
///
/// `context` is live.
unsafe fn tensor(
    context: *mut TfLiteContext,
    index: c_int,
) -> Result<*mut TfLiteTensorFields, String> {
    // SAFETY: a live context holds `tensors_size` tensors at `tensors`, laid out as
    // `TfLiteTensorFields` (the 2.9 layout, which the emulator assumes throughout).
    unsafe {
        match usize::try_from(index) {
            Ok(i) if i < (*context).tensors_size => {
                Ok((*context).tensors.cast::<TfLiteTensorFields>().add(i))
            }
            _ => Err(format!("tensor {index} is out of range")),
        }
    }
}

/// `TfLiteRegistration::prepare`: checks that the context's tensors fit the segment.
unsafe extern "C" fn kernel_prepare(
    context: *mut TfLiteContext,
    node: *mut TfLiteNode,
) -> TfLiteStatus {
    // SAFETY: TFLite calls prepare with its live context and the kernel's node, from one
    // thread at a time; tensors are read within the call.
    unsafe {
        guarded(context, || {
            let kernel = kernel(node)?;
            let sides = [
                (&kernel.inputs, kernel.segment.input_sizes()),
                (&kernel.outputs, kernel.segment.output_sizes()),
            ];
            for (indices, sizes) in sides {
                for (&index, size) in indices.iter().zip(sizes) {
                    let t = tensor(context, index)?;
                    if (*t).bytes != size {
                        let name = if (*t).name.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr((*t).name).to_string_lossy().into_owned()
                        };
                        return Err(format!(
                            "emulated Edge TPU: tensor `{name}` has {} bytes, its program {size}",
                            (*t).bytes
                        ));
                    }
                }
            }
            Ok(())
        })
    }
}

/// `TfLiteRegistration::invoke`: runs the segment and holds the outputs until the
/// device's time has passed, or fails as the device's options say ([`Segment::run`]).
unsafe extern "C" fn kernel_invoke(
    context: *mut TfLiteContext,
    node: *mut TfLiteNode,
) -> TfLiteStatus {
    let start = Instant::now();
    // SAFETY: TFLite calls invoke with its live context and the kernel's node, from one
    // thread at a time. The tensors' buffers hold `bytes` bytes during the call; a kernel's
    // outputs are distinct tensors, none of them among its inputs, so the mutable slices
    // alias nothing.
    unsafe {
        guarded(context, || {
            let kernel = kernel(node)?;
            let slice = |index: c_int| -> Result<(*mut u8, usize), String> {
                let t = tensor(context, index)?;
                let (data, bytes) = ((*t).data.cast::<u8>(), (*t).bytes);
                if data.is_null() && bytes > 0 {
                    return Err(format!("tensor {index} has no buffer"));
                }
                Ok((data, bytes))
            };
            let mut inputs = Vec::with_capacity(kernel.inputs.len());
            for &index in &kernel.inputs {
                let (data, bytes) = slice(index)?;
                inputs.push(if bytes == 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(data.cast_const(), bytes)
                });
            }
            let mut outputs = Vec::with_capacity(kernel.outputs.len());
            for &index in &kernel.outputs {
                let (data, bytes) = slice(index)?;
                outputs.push(if bytes == 0 {
                    &mut [][..]
                } else {
                    std::slice::from_raw_parts_mut(data, bytes)
                });
            }
            kernel.segment.run(start, &inputs, &mut outputs)
        })
    }
}

// ---- libedgetpu's C API (edgetpu_c.h) ----

/// A list handed out by `edgetpu_list_devices`, kept until `edgetpu_free_devices`.
struct DeviceList {
    entries: Box<[EdgeTpuDevice]>,
    _paths: Vec<CString>,
}

// SAFETY: the raw pointers in `entries` point into `_paths`, owned by the same value and
// never mutated; moving the value between threads moves the strings with it.
unsafe impl Send for DeviceList {}

static DEVICE_LISTS: Mutex<Vec<DeviceList>> = Mutex::new(Vec::new());

fn complain(function: &str, message: &str) {
    eprintln!("emulated Edge TPU: {function}: {message}");
}

/// `struct edgetpu_device* edgetpu_list_devices(size_t* num_devices)`.
///
/// # Safety
///
/// `num_devices` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edgetpu_list_devices(num_devices: *mut usize) -> *mut EdgeTpuDevice {
    let listed = catch_unwind(|| -> Result<(*mut EdgeTpuDevice, usize), String> {
        // A device that has vanished in this process is not listed until it is back.
        let devices: Vec<_> = devices::configured()?
            .into_iter()
            .filter(health::present)
            .collect();
        if devices.is_empty() {
            return Ok((null_mut(), 0));
        }
        let paths: Vec<CString> = devices
            .iter()
            .map(|d| CString::new(d.path()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let mut entries: Box<[EdgeTpuDevice]> = devices
            .iter()
            .zip(&paths)
            .map(|(d, path)| EdgeTpuDevice {
                type_: match d.kind {
                    DeviceKind::Usb => EdgeTpuDeviceType::APEX_USB,
                    DeviceKind::Pci => EdgeTpuDeviceType::APEX_PCI,
                },
                path: path.as_ptr(),
            })
            .collect();
        let listed = (entries.as_mut_ptr(), entries.len());
        DEVICE_LISTS
            .lock()
            .map_err(|_| "a lock was poisoned")?
            .push(DeviceList {
                entries,
                _paths: paths,
            });
        Ok(listed)
    });
    let (list, count) = match listed {
        Ok(Ok(listed)) => listed,
        Ok(Err(message)) => {
            complain("edgetpu_list_devices", &message);
            (null_mut(), 0)
        }
        Err(_) => (null_mut(), 0),
    };
    if !num_devices.is_null() {
        // SAFETY: non-NULL and writable by the contract.
        unsafe { *num_devices = count };
    }
    list
}

/// `void edgetpu_free_devices(struct edgetpu_device* dev)`.
///
/// # Safety
///
/// `dev` is NULL or a list from `edgetpu_list_devices`, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edgetpu_free_devices(dev: *mut EdgeTpuDevice) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if let Ok(mut lists) = DEVICE_LISTS.lock() {
            lists.retain(|l| !std::ptr::eq(l.entries.as_ptr(), dev));
        }
    }));
}

/// The name/value pairs of `edgetpu_create_delegate`'s options.
///
/// # Safety
///
/// `options` points at `count` options with NUL-terminated strings, or `count` is 0.
unsafe fn option_pairs(
    options: *const EdgeTpuOption,
    count: usize,
) -> Result<Vec<(String, String)>, String> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if options.is_null() {
        return Err(format!("{count} options at NULL"));
    }
    // SAFETY: by the contract; every string is checked for NULL before it is read.
    unsafe {
        std::slice::from_raw_parts(options, count)
            .iter()
            .map(|o| {
                if o.name.is_null() || o.value.is_null() {
                    return Err("an option with a NULL name or value".to_string());
                }
                Ok((
                    CStr::from_ptr(o.name).to_string_lossy().into_owned(),
                    CStr::from_ptr(o.value).to_string_lossy().into_owned(),
                ))
            })
            .collect()
    }
}

/// `TfLiteDelegate* edgetpu_create_delegate(enum edgetpu_device_type type,
/// const char* name, const struct edgetpu_option* options, size_t num_options)`.
///
/// Opens the device of `type` whose path is `name` (the first of `type` if `name` is
/// NULL); NULL if there is none, another delegate or process holds it, or an option is
/// unknown or has a bad value.
///
/// # Safety
///
/// `name` is NULL or NUL-terminated; `options` as for [`option_pairs`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edgetpu_create_delegate(
    type_: EdgeTpuDeviceType,
    name: *const c_char,
    options: *const EdgeTpuOption,
    num_options: usize,
) -> *mut TfLiteDelegate {
    let created = catch_unwind(AssertUnwindSafe(
        || -> Result<*mut TfLiteDelegate, String> {
            let kind = match type_ {
                EdgeTpuDeviceType::APEX_USB => DeviceKind::Usb,
                EdgeTpuDeviceType::APEX_PCI => DeviceKind::Pci,
                other => return Err(format!("unknown device type {}", other.0)),
            };
            // SAFETY: by the contract.
            let path = (!name.is_null()).then(|| {
                unsafe { CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned()
            });
            // SAFETY: by the contract.
            let pairs = unsafe { option_pairs(options, num_options)? };
            let device = OpenDevice::open(kind, path.as_deref(), &pairs)?;
            let delegate = Box::into_raw(Box::new(EmulatedDelegate {
                raw: TfLiteDelegateFields {
                    data: null_mut(),
                    prepare: Some(delegate_prepare),
                    copy_from_buffer_handle: std::ptr::null(),
                    copy_to_buffer_handle: std::ptr::null(),
                    free_buffer_handle: std::ptr::null(),
                    // Without it, TFLite prepares every node before calling Prepare, and the
                    // still unresolved edgetpu-custom-op fails to prepare.
                    flags: TFLITE_DELEGATE_FLAGS_ALLOW_DYNAMIC_TENSORS,
                },
                device,
                pending: Mutex::new(HashMap::new()),
            }));
            // SAFETY: just allocated; `data_` identifies the delegate, as TFLite suggests.
            unsafe { (*delegate).raw.data = delegate.cast() };
            Ok(delegate.cast())
        },
    ));
    match created {
        Ok(Ok(delegate)) => delegate,
        Ok(Err(message)) => {
            complain("edgetpu_create_delegate", &message);
            null_mut()
        }
        Err(_) => null_mut(),
    }
}

/// `void edgetpu_free_delegate(TfLiteDelegate* delegate)`: closes the device.
///
/// Freeing a delegate that a live interpreter still uses is a use-after-free with real
/// libedgetpu; the emulator aborts the process with a message instead.
///
/// # Safety
///
/// `delegate` is NULL or from `edgetpu_create_delegate`, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edgetpu_free_delegate(delegate: *mut TfLiteDelegate) {
    if delegate.is_null() {
        return;
    }
    // SAFETY: by the contract, `delegate` is a boxed `EmulatedDelegate` freed only here.
    let delegate = unsafe { Box::from_raw(delegate.cast::<EmulatedDelegate>()) };
    let live = delegate.device.live_segments();
    if live > 0 {
        eprintln!(
            "emulated Edge TPU: edgetpu_free_delegate: {} is still used by {live} kernel(s) of \
             a live interpreter; free the delegate only after every interpreter using it",
            delegate.device.device()
        );
        std::process::abort();
    }
    let _ = catch_unwind(AssertUnwindSafe(|| drop(delegate)));
}

/// `void edgetpu_verbosity(int verbosity)`.
#[unsafe(no_mangle)]
pub extern "C" fn edgetpu_verbosity(verbosity: c_int) {
    VERBOSITY.store(verbosity, std::sync::atomic::Ordering::Relaxed);
}

/// `const char* edgetpu_version()`.
#[unsafe(no_mangle)]
pub extern "C" fn edgetpu_version() -> *const c_char {
    VERSION.as_ptr()
}

// ---- the device lock ----

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` if another open file
/// description (of any process) holds it. Released when the file is closed.
pub(crate) fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock takes a descriptor, valid while `file` is borrowed, and flags; no
    // memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::Command;

    use super::*;

    const CHILD_ENV: &str = "EDGETPU_EMULATOR_FFI_CHILD";

    /// Frees a delegate while an interpreter still uses it: the emulator must abort, since
    /// with real libedgetpu that order is a use-after-free. (multitpu's own wrappers cannot
    /// free in that order; this drives the C API directly, in a child process.)
    #[test]
    fn freeing_a_delegate_in_use_aborts() {
        if std::env::var_os(CHILD_ENV).is_some() {
            free_in_use_child();
            return;
        }
        if std::env::var_os(libedgetpu_sys::TFLITE_LIB_ENV).is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "MULTITPU_TFLITE_LIB must be set under CI"
            );
            let _ = writeln!(std::io::stderr(), "SKIPPED: MULTITPU_TFLITE_LIB is not set");
            return;
        }
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ffi::tests::freeing_a_delegate_in_use_aborts",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "the child was not aborted: {stderr}"
        );
        assert!(
            stderr.contains("is still used by 1 kernel(s) of a live interpreter"),
            "{stderr}"
        );
    }

    fn free_in_use_child() {
        let api = libedgetpu_sys::TfLiteApi::load(None).unwrap();
        let model = multitpu::model::paper::fc(64).unwrap().to_bytes().unwrap();
        let compiled = crate::compiler::compile(&model).unwrap().model;
        // SAFETY: a NULL name and no options are allowed; the objects are used as the C API
        // prescribes until the deliberate early free, which aborts the process.
        unsafe {
            let delegate = edgetpu_create_delegate(
                EdgeTpuDeviceType::APEX_USB,
                std::ptr::null(),
                std::ptr::null(),
                0,
            );
            assert!(!delegate.is_null(), "an emulated USB device");
            let model = (api.model_create)(compiled.as_ptr().cast(), compiled.len());
            let options = (api.interpreter_options_create)();
            (api.interpreter_options_add_delegate)(options, delegate.cast());
            let interpreter = (api.interpreter_create)(model, options);
            assert!(!interpreter.is_null());
            edgetpu_free_delegate(delegate);
        }
        println!("the emulator did not abort");
    }

    #[test]
    fn version_says_emulated() {
        // SAFETY: returns a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr(edgetpu_version()) };
        assert!(version.to_str().unwrap().starts_with("emulated Edge TPU "));
    }

    #[test]
    fn the_int_array_view_reads_size_then_elements() {
        let raw: [c_int; 4] = [3, 7, 8, 9];
        // SAFETY: `raw` is laid out as a TfLiteIntArray of 3 elements and outlives the view.
        let view = unsafe { int_array(raw.as_ptr().cast()) };
        assert_eq!(view, [7, 8, 9]);
        // SAFETY: NULL is allowed.
        assert!(unsafe { int_array(std::ptr::null()) }.is_empty());
    }
}
