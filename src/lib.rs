//! # multitpu
//!
//! Split TensorFlow Lite models into segments that each fit one Coral Edge TPU, and run the
//! segments as a pipeline over several devices.
//!
//! Data flows one way: bytes → [`model`] → graph → plan → segment models → pipeline stages.
//!
//! # Example
//!
//! Plan the paper's fully connected model for two Edge TPUs, write the segments as Coral's
//! tools name them, and run them as a pipeline of simulated USB Edge TPUs (each stage takes
//! as long as the cost model predicts; swap in [`backend::CpuBackend`] to compute on the CPU,
//! or [`backend::EdgeTpuBackend`] with segments compiled by `edgetpu_compiler`):
//!
//! ```
//! use multitpu::backend::{SimCompute, SimulatedEdgeTpuBackend};
//! use multitpu::model::{Graph, paper};
//! use multitpu::pipeline::Pipeline;
//! use multitpu::profile::EdgeTpuCostModel;
//! use multitpu::segment::{Plan, Profiled};
//!
//! # fn main() -> multitpu::Result<()> {
//! let model = paper::fc(1000)?; // or Model::from_bytes(&bytes)? for a .tflite file
//! let graph = Graph::new(&model)?;
//! let cost_model = EdgeTpuCostModel::usb_default();
//! let plan = Plan::new(&graph, 2, &Profiled::cost_model(cost_model.clone()))?;
//! let dir = std::env::temp_dir().join(format!("multitpu-{}", std::process::id()));
//! let files = plan.write(&graph, &dir, "fc")?; // fc_segment_0_of_2.tflite, ...
//! let backend = SimulatedEdgeTpuBackend::new(cost_model, SimCompute::Skip);
//! let pipeline = Pipeline::from_segment_files(&files, &backend)?;
//! let input = &pipeline.inputs()[0];
//! pipeline.push(&[(&input.name, &vec![0; input.byte_size])])?;
//! let output = pipeline.pop()?.expect("the item pushed");
//! assert_eq!(output.specs(), pipeline.outputs());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! [`Pipeline::from_plan`](pipeline::Pipeline::from_plan) runs a plan without writing files.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod device;
mod error;
pub mod isolate;
pub mod model;
pub mod pipeline;
pub mod profile;
pub mod reproduce;
pub mod segment;
pub mod tensor;
pub mod verify;

pub use error::{Error, Result};
