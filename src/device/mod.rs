//! What a device does with a model, as pure functions of the model: which operators an Edge
//! TPU runs ([`support`]), how long a run of operators takes on an Edge TPU and how much of
//! its parameter data stays on chip ([`cost_model`], over the figures of [`workload`]), and an estimate of the same run on the
//! host CPU ([`cpu_cost`]).
//!
//! Nothing here loads a library or touches a device, so the profilers ([`crate::profile`]),
//! the simulated backend ([`crate::backend::SimulatedEdgeTpuBackend`]) and the planners
//! ([`crate::segment`]) all build on it without depending on each other.

pub mod cost_model;
pub mod cpu_cost;
pub mod support;
pub mod workload;

pub use cost_model::{EdgeTpuCostModel, Link, PerKind, Prediction};
pub use cpu_cost::{CpuCostModel, CpuWork, DataClass, MacKinds, PerClass};
pub use support::{DeviceSegments, OpSupport, compiled_split, compiled_tail, op_support};
pub use workload::{DeviceLayout, HostConversion, MIB, OpWorkload, SegmentWorkload};
