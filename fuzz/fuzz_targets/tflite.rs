//! What validation promises, tried on the real runtime: a model that passes strict
//! validation loads in TFLite 2.9 and survives several invokes on inputs derived from the
//! fuzz input. A crash, an abort or a hang here is a finding: a precondition of a modelled
//! operator's kernel that validation does not check.
//!
//! Needs `MULTITPU_TFLITE_LIB` (`scripts/fuzz` sets it from `scripts/fetch-tflite`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use multitpu::backend::{Interpreter, InterpreterOptions};
use multitpu::model::Model;

/// Invokes per model: state (LSTM variables) builds up from one to the next.
const INVOKES: usize = 3;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    if model.validate().is_err() {
        return;
    }
    // TFLite may still refuse it with an error (an operator version it lacks, say): that is
    // not a finding, a crash is.
    let Ok(mut interpreter) = Interpreter::new(
        common::runtime(),
        data.to_vec(),
        &InterpreterOptions::default(),
    ) else {
        return;
    };
    for invoke in 0..INVOKES {
        for slot in 0..interpreter.inputs().len() {
            let size = interpreter.inputs()[slot].byte_size;
            let input: Vec<u8> = (0..size)
                .map(|i| data[(i * 7 + invoke) % data.len()] ^ (i as u8))
                .collect();
            if interpreter.set_input(slot, &input).is_err() {
                return;
            }
        }
        if interpreter.invoke().is_err() {
            return;
        }
    }
});
