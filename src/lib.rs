//! # multitpu
//!
//! Split TensorFlow Lite models into segments that each fit one Coral Edge TPU, and run the
//! segments as a pipeline over several devices.
//!
//! Data flows one way: bytes → [`model`] → graph → plan ([`segment`]) → segment files →
//! pipeline stages ([`pipeline`], on a [`backend`]) → typed outputs ([`tensor`]).
//!
//! # Quick start
//!
//! Read a `.tflite` model, plan it for two Edge TPUs with the profiled search (cost model of a
//! USB Edge TPU), write the segments as Coral's tools name them, run them as a pipeline of
//! TFLite CPU interpreters (swap in [`backend::EdgeTpuBackend`] with segments compiled by
//! `edgetpu_compiler`, or [`backend::SimulatedEdgeTpuBackend`]), and read the scores as
//! real numbers:
//!
//! ```
//! use multitpu::backend::{CpuBackend, Runtime};
//! use multitpu::model::{Graph, Model};
//! use multitpu::pipeline::Pipeline;
//! use multitpu::device::EdgeTpuCostModel;
//! use multitpu::segment::{Plan, Profiled};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("multitpu-quick-start-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("conv.tflite");
//! # std::fs::write(&path, multitpu::model::paper::conv(32)?.to_bytes()?)?; // float in, int8 out
//! let bytes = std::fs::read(&path)?; // any .tflite file
//! let model = Model::from_bytes(&bytes)?;
//! let graph = Graph::new(&model)?;
//! let plan = Plan::new(&graph, 2, &Profiled::cost_model(EdgeTpuCostModel::usb_default()))?;
//! let files = plan.write(&graph, &dir, "conv")?; // conv_segment_<i>_of_<n>[_cpu][_x<R>].tflite
//! let pipeline = Pipeline::from_segment_files(&files, &CpuBackend::new(Runtime::load()?, 1, false))?;
//! let input = &pipeline.inputs()[0]; // F32 [1, 64, 64, 3]
//! pipeline.push_as(&[(&input.name, &vec![0.5f32; input.num_elements()])])?;
//! let scores: Vec<f32> = pipeline.pop()?.expect("the item pushed").tensor_f32(0)?; // int8, dequantized
//! # assert_eq!(scores.len(), pipeline.outputs()[0].num_elements());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! [`Runtime::load`](backend::Runtime::load) finds the TFLite C library through
//! `MULTITPU_TFLITE_LIB`, the loader's search path, or the cache `scripts/fetch-tflite`
//! fills; without one this example fails with an error naming every place tried.
//! [`Pipeline::from_plan`](pipeline::Pipeline::from_plan) runs a plan without writing files.
//! Typed views ([`Output::get_as`](pipeline::Output::get_as)), typed pushes and
//! [`quantize`](tensor::TensorSpec::quantize) / [`dequantize`](tensor::TensorSpec::dequantize)
//! check element types and return [`Error::TensorType`] rather than panic.
//!
//! # Logging
//!
//! The library prints nothing: it emits [`tracing`](https://docs.rs/tracing) spans and events
//! (model loading, planning, writing segment files, pipeline stages, and TFLite's own messages
//! under the target `multitpu::tflite`) and never installs a subscriber.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
mod backoff;
pub mod device;
mod error;
pub mod isolate;
pub mod model;
pub mod pipeline;
pub mod profile;
pub mod segment;
pub mod tensor;
pub mod verify;

pub use error::{ChildExit, Error, Result};
