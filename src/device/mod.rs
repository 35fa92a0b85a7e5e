//! What an Edge TPU does with a model, as pure functions of the model: which operators it
//! runs ([`support`]), how long a run of operators takes and how much of its parameter data
//! stays on chip ([`cost_model`]).
//!
//! Nothing here loads a library or touches a device, so the profilers ([`crate::profile`]),
//! the simulated backend ([`crate::backend::simulated`]) and the planners ([`crate::segment`])
//! all build on it without depending on each other.

pub mod cost_model;
pub mod support;

pub use cost_model::{
    DeviceLayout, EdgeTpuCostModel, Link, MIB, OpWorkload, PerKind, Prediction, SegmentWorkload,
};
pub use support::{DeviceSegments, OpSupport, compiled_split, op_support};
