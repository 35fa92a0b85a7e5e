//! Safe wrappers over the native runtimes: TensorFlow Lite's C library ([`Runtime`]) and
//! Coral's Edge TPU runtime ([`EdgeTpuRuntime`]).
//!
//! This is the one module of the crate allowed to use `unsafe` (every block carries a
//! `// SAFETY:` comment); everything above it sees owned types with typed errors.
//!
//! Ownership follows the C API's lifetime rules:
//!
//! - a [`Runtime`] is an `Arc` of the loaded library, and every object created through it
//!   holds a clone, so the library stays loaded while anything uses it;
//! - an [`Interpreter`] owns its model bytes, model, options, delegates and error buffer,
//!   and releases them in the order the C API requires (interpreter first, bytes last);
//! - an Edge TPU [`Delegate`] moves into the interpreter that uses it, so it cannot be
//!   freed while that interpreter lives.
//!
//! The libraries are loaded at run time (see `libedgetpu-sys`), each from the path in its
//! variable (`MULTITPU_TFLITE_LIB`, `MULTITPU_EDGETPU_LIB`), else where the loader finds it;
//! the TFLite library also from the cache `scripts/fetch-tflite` fills ([`Runtime::load`]).
//! A library that loads from none of them is an [`Error::Library`](crate::Error::Library)
//! ([`LoadError`]) naming every place tried.
#![allow(unsafe_code)]

mod cpu;
mod custom_op;
mod edgetpu;
mod edgetpu_backend;
#[cfg(target_os = "linux")]
pub(crate) mod shared_memory;
mod simulated;
mod stage;
mod tflite;

use std::ptr::NonNull;

pub use cpu::{CpuBackend, InterpreterStage};
pub use custom_op::{CustomOp, CustomOps, OpInput, OpOutput};
pub use edgetpu::{Delegate, DeviceInfo, DeviceKind, DeviceSelector, EdgeTpuRuntime};
pub use edgetpu_backend::{EdgeTpuBackend, Performance, check_compiled, resolve_devices};
pub use libedgetpu_sys::{LibraryKind, LoadError};
pub use simulated::{
    CATCH_UP_DIVISOR, SPIN_MARGIN, SimCompute, SimulatedEdgeTpuBackend, wait_until,
};
pub(crate) use stage::check_run_arity;
pub use stage::{Backend, Stage};
pub use tflite::{Interpreter, InterpreterOptions, Runtime};

/// An owned C object freed with its destructor on drop.
///
/// The destructor is a function pointer into a loaded library: whoever holds an `Owned`
/// keeps that library loaded for at least as long (the owning struct holds the library's
/// `Arc` in a field dropped after this one).
struct Owned<T> {
    ptr: NonNull<T>,
    delete: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// Takes ownership of `ptr`, or returns `None` if it is NULL.
    ///
    /// # Safety
    ///
    /// `ptr` must be NULL or a live object that nothing else frees, `delete` must be its
    /// matching destructor, and the library providing `delete` must stay loaded until this
    /// value is dropped.
    unsafe fn new(ptr: *mut T, delete: unsafe extern "C" fn(*mut T)) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Self { ptr, delete })
    }

    fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: by the contract of `Owned::new`, `ptr` is live, owned only by us, freed
        // exactly once here, and `delete` (its destructor) is still loaded.
        unsafe { (self.delete)(self.ptr.as_ptr()) }
    }
}
