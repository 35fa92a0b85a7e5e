//! The isolated children's protocol: jobs for checks and for workers, and every message a
//! child sends, read from arbitrary bytes, end in a value or a typed error, never a panic;
//! what reads back is written as what was read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    multitpu::isolate::fuzz_wire(data);
});
