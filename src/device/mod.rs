//! What a device does with a model, as pure functions of the model: which operators an Edge
//! TPU runs ([`op_support`]), how long a run of operators takes on an Edge TPU and how much
//! of its parameter data stays on chip ([`EdgeTpuCostModel`], over the figures of
//! [`SegmentWorkload`]), and an estimate of the same run on the host CPU ([`CpuCostModel`]).
//!
//! Nothing here loads a library or touches a device, so the profilers ([`crate::profile`]),
//! the simulated backend ([`crate::backend::SimulatedEdgeTpuBackend`]) and the planners
//! ([`crate::segment`]) all build on it without depending on each other.

mod cost_model;
mod cpu_cost;
mod support;
mod workload;

pub use cost_model::{EdgeTpuCostModel, Link, PerKind, Prediction};
pub use cpu_cost::{
    CpuCostModel, CpuWork, DEQUANTIZE_S_PER_ELEMENT, DataClass, MacKinds, PerClass,
    QUANTIZE_S_PER_ELEMENT,
};
pub use support::{
    DeviceSegments, EDGE_TPU_OPERATORS, OpSupport, compiled_split, compiled_tail, op_support,
};
pub use workload::{DeviceLayout, HostConversion, MIB, OpWorkload, SegmentWorkload};
