//! What the emulated compiler puts in an `edgetpu-custom-op`, and how the emulated device
//! reads it back.
//!
//! The custom options are a FlexBuffer map whose entry `"4"` is the device program, as in
//! models compiled by Coral's compiler. Coral's programs are flatbuffers with the file
//! identifier `DWN1` (bytes 4..8, after the root offset). An emulated program keeps that
//! identifier and is otherwise the emulator's own:
//!
//! ```text
//! 8: u32 LE  "DWN1"  MARKER  input_bytes: u64 LE  output_bytes: u64 LE  segment: .tflite bytes
//! ```
//!
//! `segment` is the uncompiled subgraph the custom op stands for (its inputs and outputs in
//! the custom op's order), run on the TFLite CPU runtime. `input_bytes` and `output_bytes`
//! are the host transfers of the whole model given to the compiler, so that the device's
//! timing is the cost model's prediction for that model (see [`Program::workload`]).
//! A program without the [`MARKER`] was written by Coral's compiler and is refused.

use multitpu::device::SegmentWorkload;
use multitpu::model::edgetpu::device_program;
use multitpu::model::validate::Validation;
use multitpu::model::{Graph, Model};

/// The file identifier of Edge TPU programs, at bytes 4..8.
pub const PROGRAM_IDENTIFIER: &[u8] = b"DWN1";

/// Follows the [`PROGRAM_IDENTIFIER`] in programs written by the emulated compiler.
pub const MARKER: &[u8] = b"multitpu emulated Edge TPU program v1\0";

/// An emulated device program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program<'a> {
    /// Bytes of the non-constant inputs of the whole compiled model.
    pub input_bytes: u64,
    /// Bytes of the outputs of the whole compiled model.
    pub output_bytes: u64,
    /// The uncompiled subgraph, as a `.tflite` file.
    pub segment: &'a [u8],
}

impl<'a> Program<'a> {
    /// The program bytes (entry `"4"` of the custom options).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + MARKER.len() + 16 + self.segment.len());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(PROGRAM_IDENTIFIER);
        out.extend_from_slice(MARKER);
        out.extend_from_slice(&self.input_bytes.to_le_bytes());
        out.extend_from_slice(&self.output_bytes.to_le_bytes());
        out.extend_from_slice(self.segment);
        out
    }

    /// Reads the program in an `edgetpu-custom-op`'s custom options, or says why it cannot.
    pub fn from_custom_options(options: &'a [u8]) -> Result<Self, String> {
        let program = device_program(options).ok_or(
            "its custom options hold no device program (no FlexBuffer map with entry \"4\")",
        )?;
        let rest = program
            .get(4..)
            .and_then(|p| p.strip_prefix(PROGRAM_IDENTIFIER))
            .ok_or("its device program lacks the DWN1 identifier of Edge TPU programs")?;
        let rest = rest.strip_prefix(MARKER).ok_or(
            "its device program was not written by the emulator's edgetpu_compiler: it was \
             compiled by Coral's edgetpu_compiler for a real Edge TPU; compile the uncompiled \
             model with the emulator's compiler (MULTITPU_EDGETPU_COMPILER) instead",
        )?;
        let (input, rest) = rest.split_at_checked(8).ok_or("its program is truncated")?;
        let (output, segment) = rest.split_at_checked(8).ok_or("its program is truncated")?;
        let u64_le = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        Ok(Program {
            input_bytes: u64_le(input),
            output_bytes: u64_le(output),
            segment,
        })
    }

    /// The work the cost model times: the segment's operators, with the host transfers of
    /// the whole compiled model.
    pub fn workload(&self) -> Result<SegmentWorkload, String> {
        let model = Model::from_bytes(self.segment).map_err(|e| format!("its segment: {e}"))?;
        // As trusted, as the compiler cut it: only timed here, run where it is loaded.
        Graph::with_validation(&model, &Validation::trusted())
            .map_err(|e| format!("its segment: {e}"))?;
        let mut workload = SegmentWorkload::from_model(&model, 0..model.operators.len());
        workload.input_bytes = self.input_bytes;
        workload.output_bytes = self.output_bytes;
        Ok(workload)
    }
}

// FlexBuffer type codes.
const FBX_MAP: u8 = 9;
const FBX_BLOB: u8 = 25;
/// Every offset and size below is 4 bytes wide (bit width code 2).
const WIDTH: usize = 4;
const WIDTH_CODE: u8 = 2;

/// A FlexBuffer whose root is the map `{ "4": blob }`, as the custom options of an
/// `edgetpu-custom-op`. Everything is 4-byte wide and aligned, so blobs up to 4 GiB fit.
pub fn custom_options(program: &[u8]) -> Result<Vec<u8>, String> {
    let size = u32::try_from(program.len())
        .map_err(|_| format!("a device program of {} bytes is too large", program.len()))?;
    let mut b: Vec<u8> = Vec::with_capacity(program.len() + 64);
    let pad = |b: &mut Vec<u8>| b.resize(b.len().next_multiple_of(WIDTH), 0);
    let u32_at = |b: &mut Vec<u8>, value: usize| {
        // Every value written is an offset or size within a buffer below 4 GiB + 64.
        b.extend_from_slice(&u32::try_from(value).unwrap_or(u32::MAX).to_le_bytes());
    };
    // The key "4".
    let key = b.len();
    b.extend_from_slice(b"4\0");
    // The blob: its size, then its bytes.
    pad(&mut b);
    b.extend_from_slice(&size.to_le_bytes());
    let blob = b.len();
    b.extend_from_slice(program);
    // The keys vector: its length, then an offset back to each key.
    pad(&mut b);
    u32_at(&mut b, 1);
    let keys = b.len();
    u32_at(&mut b, keys - key);
    // The map: offset back to the keys vector, its byte width, the length, the values, then
    // one packed type per value.
    let keys_field = b.len();
    u32_at(&mut b, keys_field - keys);
    u32_at(&mut b, WIDTH);
    u32_at(&mut b, 1);
    let values = b.len();
    u32_at(&mut b, values - blob);
    b.push((FBX_BLOB << 2) | WIDTH_CODE);
    // The root: an offset back to the map, the map's packed type, the root's byte width.
    pad(&mut b);
    let root = b.len();
    u32_at(&mut b, root - values);
    b.push((FBX_MAP << 2) | WIDTH_CODE);
    b.push(WIDTH as u8);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_round_trip_through_custom_options() {
        for len in [0usize, 1, 3, 300, 70_000] {
            let segment: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let program = Program {
                input_bytes: 12_345,
                output_bytes: u64::MAX,
                segment: &segment,
            };
            let options = custom_options(&program.encode()).unwrap();
            assert_eq!(device_program(&options).unwrap()[4..8], *PROGRAM_IDENTIFIER);
            assert_eq!(Program::from_custom_options(&options).unwrap(), program);
        }
    }

    #[test]
    fn foreign_programs_are_refused_with_a_reason() {
        let coral = custom_options(b"\xc8\x0f\0\0DWN1 a program of Coral's compiler").unwrap();
        let err = Program::from_custom_options(&coral).unwrap_err();
        assert!(err.contains("not written by the emulator"), "{err}");
        let other = custom_options(b"XYZ").unwrap();
        assert!(
            Program::from_custom_options(&other)
                .unwrap_err()
                .contains("DWN1")
        );
        assert!(Program::from_custom_options(b"not a flexbuffer").is_err());
        let mut truncated = 8u32.to_le_bytes().to_vec();
        truncated.extend_from_slice(PROGRAM_IDENTIFIER);
        truncated.extend_from_slice(MARKER);
        truncated.extend_from_slice(&[1, 2, 3]);
        let err = Program::from_custom_options(&custom_options(&truncated).unwrap()).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }
}
