//! # multitpu-paper
//!
//! Tools around the `multitpu` library, not part of it: the reproduction of Villarrubia et
//! al., *Improving inference time in multi-TPU systems with profiled model segmentation*
//! (PDP 2023), and the offline fitting of the library's cost models.
//!
//! - [`calibration`]: the real Edge TPU measurements (one device and pipelines of several),
//!   Coral's published figures, and the fits that give the constants of
//!   `multitpu::device::EdgeTpuCostModel::usb_default()` and
//!   `multitpu::device::CpuCostModel::default()`;
//! - [`reproduce`]: the paper's sweeps, the models of the author's measuring programs, and
//!   every measurement beside its prediction;
//! - [`architectures`]: published networks rebuilt from their reference definitions.
//!
//! The binaries drive them: `reproduce` (the paper's sweeps, plots and the comparison with the
//! measurements), `calibrate` (the fits, printing the constants the library bakes in) and
//! `event_model` (the event-level pipeline model against pipelines of simulated devices).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod architectures;
pub mod calibration;
mod error;
pub mod reproduce;

pub use error::{Error, Result};
