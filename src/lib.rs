//! # multitpu
//!
//! Split TensorFlow Lite models into segments that each fit one Coral Edge TPU, and run the
//! segments as a pipeline over several devices.
//!
//! Data flows one way: bytes → [`model`] → graph → plan → segment models → pipeline stages.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
mod error;
pub mod isolate;
pub mod model;
pub mod pipeline;
pub mod profile;
pub mod reproduce;
pub mod segment;
pub mod verify;

pub use error::{Error, Result};
