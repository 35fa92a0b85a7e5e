//! # multitpu
//!
//! Split TensorFlow Lite models into segments that each fit one Coral Edge TPU, and run the
//! segments as a pipeline over several devices.
//!
//! Data flows one way: bytes → [`model`] → graph → plan ([`segment`]) → segment models
//! ([`deploy`]: compiled, written with a plan manifest) → pipeline stages ([`pipeline`], on a
//! [`backend`]) → typed outputs ([`tensor`]). An [`adapt::AdaptivePipeline`] plans again
//! and carries on when a device fails.
//!
//! # Quick start
//!
//! Read a `.tflite` model, plan it for at most two Edge TPUs with the profiled search (cost
//! model of a USB Edge TPU), compile the device segments with `edgetpu_compiler`, write them
//! beside a plan manifest, open a pipeline from the manifest on the attached Edge TPUs, and
//! read the scores as real numbers:
//!
//! ```
//! use multitpu::backend::EdgeTpuBackend;
//! use multitpu::device::EdgeTpuCostModel;
//! use multitpu::model::{Graph, Model};
//! use multitpu::pipeline::Pipeline;
//! use multitpu::deploy::EdgeTpuCompiler;
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
//! let segments = plan.segment_models(&graph)?.compile(&EdgeTpuCompiler::find()?)?;
//! let written = segments.write(&dir, "conv")?; // conv.plan and its segment files
//! let pipeline = Pipeline::open(&written.manifest, &EdgeTpuBackend::load()?)?;
//! let input = &pipeline.inputs()[0]; // F32 [1, 64, 64, 3]
//! pipeline.push_as(&[(&input.name, &vec![0.5f32; input.num_elements()])])?;
//! let scores: Vec<f32> = pipeline.pop()?.expect("the item pushed").tensor_f32(0)?; // int8, dequantized
//! # assert_eq!(scores.len(), pipeline.outputs()[0].num_elements());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! The Edge TPU runtime (`MULTITPU_EDGETPU_LIB` or the loader's search path), the compiler
//! (`MULTITPU_EDGETPU_COMPILER` or `PATH`) and TFLite's C library
//! ([`Runtime::load`](backend::Runtime::load): `MULTITPU_TFLITE_LIB`, the loader's search
//! path, or the cache `scripts/fetch-tflite` fills) are found at run time; without one, the
//! example fails with a typed error saying what is missing and where it looked
//! (`scripts/emulate` provides an emulated Edge TPU and compiler over TFLite's CPU kernels).
//! The same segments run without a device: uncompiled on TFLite's CPU kernels
//! ([`backend::CpuBackend`]), or on simulated Edge TPUs ([`backend::SimulatedEdgeTpuBackend`]),
//! in memory with [`Pipeline::from_models`](pipeline::Pipeline::from_models). Files named as
//! Coral's tools name segments run with
//! [`Pipeline::from_segment_files`](pipeline::Pipeline::from_segment_files).
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

pub mod adapt;
pub mod backend;
mod backoff;
pub mod deploy;
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
