//! An emulated Coral Edge TPU, so that the real device path of multitpu (libedgetpu, the
//! Edge TPU delegate, `edgetpu_compiler`) runs end to end on machines without one.
//!
//! - The shared library (`libedgetpu_emulator.so`) exports libedgetpu's C API
//!   (`edgetpu_c.h`): it lists the devices of [`devices::DEVICES_ENV`], opens each for one
//!   process at a time, and its delegate runs every `edgetpu-custom-op` by executing the
//!   segment it stands for on the TFLite CPU runtime, then holding the result until the
//!   cost model's predicted device latency has passed ([`device`]). A device's options
//!   ([`devices::Behaviour`]) make its timing differ from the cost model, or make it fail,
//!   hang or vanish.
//! - The `edgetpu_compiler` binary has the real compiler's command line for what multitpu
//!   uses; it writes one `edgetpu-custom-op` whose program ([`payload`]) carries the
//!   uncompiled segment, and reports placement from the cost model ([`compiler`]).
//!
//! Everything it prints or reports says "emulated Edge TPU". See `docs/emulator.md`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod compiler;
pub mod device;
pub mod devices;
#[allow(unsafe_code)]
mod ffi;
mod health;
pub mod payload;
