//! Recognising models compiled for the Edge TPU.
//!
//! `edgetpu_compiler` replaces the operators it maps to the device by one custom operator
//! named `edgetpu-custom-op`. Its custom options are a FlexBuffer map whose entry `"4"` holds
//! the device program: a string holding a flatbuffer with the file identifier `DWN1` (bytes
//! 4..8, after its root offset).

use super::{BUILTIN_CUSTOM, Model};

/// Custom op name of the operators `edgetpu_compiler` produces.
pub const EDGETPU_CUSTOM_OP: &str = "edgetpu-custom-op";

/// One `edgetpu-custom-op` of a compiled model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTpuProgram {
    /// Index of the operator in execution order.
    pub op: usize,
    /// Size in bytes of the device program (entry `"4"` of the custom options), if found.
    pub program_bytes: Option<usize>,
}

/// The Edge TPU programs of a model, empty when it is not compiled for the Edge TPU.
pub fn programs(model: &Model<'_>) -> Vec<EdgeTpuProgram> {
    model
        .operators
        .iter()
        .enumerate()
        .filter(|(_, op)| {
            op.opcode.builtin == BUILTIN_CUSTOM
                && op.opcode.custom.as_deref() == Some(EDGETPU_CUSTOM_OP)
        })
        .map(|(index, op)| EdgeTpuProgram {
            op: index,
            program_bytes: op
                .custom_options
                .as_deref()
                .and_then(device_program)
                .map(<[u8]>::len),
        })
        .collect()
}

/// The device program (entry `"4"`) of an `edgetpu-custom-op`'s custom options, or `None`
/// when the options are not a FlexBuffer map holding one.
pub fn device_program(custom_options: &[u8]) -> Option<&[u8]> {
    flexbuffer_map_blob(custom_options, "4")
}

/// Whether the model holds at least one `edgetpu-custom-op`.
pub fn is_compiled(model: &Model<'_>) -> bool {
    !programs(model).is_empty()
}

// FlexBuffer type codes used below.
const FBX_MAP: u8 = 9;
const FBX_STRING: u8 = 5;
const FBX_BLOB: u8 = 25;

/// Reads a little-endian unsigned integer of `width` bytes at `at`.
fn read_uint(bytes: &[u8], at: usize, width: usize) -> Option<usize> {
    let slice = bytes.get(at..at.checked_add(width)?)?;
    let mut value = 0u64;
    for (i, &b) in slice.iter().enumerate() {
        value |= u64::from(b) << (8 * i);
    }
    usize::try_from(value).ok()
}

/// Follows a FlexBuffer offset stored at `at` (offsets point backwards).
fn follow(bytes: &[u8], at: usize, width: usize) -> Option<usize> {
    at.checked_sub(read_uint(bytes, at, width)?)
}

/// The bytes of the string or blob stored under `key` in a FlexBuffer whose root is a map,
/// bounds-checked.
fn flexbuffer_map_blob<'b>(bytes: &'b [u8], key: &str) -> Option<&'b [u8]> {
    let len = bytes.len();
    let root_width = usize::from(*bytes.last()?);
    let root_type = *bytes.get(len.checked_sub(2)?)?;
    if !matches!(root_width, 1 | 2 | 4 | 8) || root_type >> 2 != FBX_MAP {
        return None;
    }
    let width = 1usize << (root_type & 3);
    let root_at = len.checked_sub(2 + root_width)?;
    let values = follow(bytes, root_at, root_width)?;
    let count = read_uint(bytes, values.checked_sub(width)?, width)?;
    let keys_at = values.checked_sub(3 * width)?;
    let keys = follow(bytes, keys_at, width)?;
    let key_width = read_uint(bytes, values.checked_sub(2 * width)?, width)?;
    let types = values.checked_add(count.checked_mul(width)?)?;
    if bytes.len() < types.checked_add(count)? {
        return None;
    }
    // Keys are sorted, but a linear scan is cheap for the handful of entries.
    for i in 0..count {
        let key_at = keys.checked_add(i.checked_mul(key_width)?)?;
        let name_at = follow(bytes, key_at, key_width)?;
        let name_end = name_at + bytes.get(name_at..)?.iter().position(|&b| b == 0)?;
        if &bytes[name_at..name_end] != key.as_bytes() {
            continue;
        }
        // The compiler stores the program as a string; a blob has the same layout.
        let packed = bytes[types + i];
        if !matches!(packed >> 2, FBX_STRING | FBX_BLOB) {
            return None;
        }
        let value_at = values + i * width;
        let data = follow(bytes, value_at, width)?;
        let data_width = 1usize << (packed & 3);
        let size = read_uint(bytes, data.checked_sub(data_width)?, data_width)?;
        return bytes.get(data..data.checked_add(size)?);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FlexBuffer map `{ "4": blob[DWN1 + 3 bytes], "a": blob[1] }` written by hand with
    /// 1-byte widths.
    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        // keys: "4\0" at 0, "a\0" at 2
        b.extend_from_slice(b"4\0a\0");
        // blob 1: size 7 at 4, data at 5..12
        b.push(7);
        b.extend_from_slice(b"DWN1xyz");
        // blob 2: size 1 at 12, data at 13
        b.push(1);
        b.push(0xAA);
        // keys vector: size 2 at 14, offsets at 15, 16
        b.push(2);
        b.push(15); // -> key "4" at 0
        b.push(16 - 2); // -> key "a" at 2
        // map prefix: keys offset at 17 (-> 15), key width at 18, size at 19, values at 20..22
        b.push(17 - 15);
        b.push(1);
        b.push(2);
        b.push(20 - 5); // -> blob 1 data at 5
        b.push(21 - 13); // -> blob 2 data at 13
        // types at 22, 23: blob, width 1
        b.push(FBX_BLOB << 2);
        b.push(FBX_BLOB << 2);
        // root: offset at 24 -> values at 20, type map (width 1), root width 1
        b.push(24 - 20);
        b.push(FBX_MAP << 2);
        b.push(1);
        b
    }

    #[test]
    fn finds_blob_by_key() {
        let bytes = sample();
        assert_eq!(flexbuffer_map_blob(&bytes, "4"), Some(&b"DWN1xyz"[..]));
        assert_eq!(flexbuffer_map_blob(&bytes, "a"), Some(&[0xAA][..]));
        assert_eq!(flexbuffer_map_blob(&bytes, "b"), None);
    }

    #[test]
    fn every_truncation_and_corruption_is_none_or_in_bounds() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let _ = flexbuffer_map_blob(&bytes[cut..], "4");
            let _ = flexbuffer_map_blob(&bytes[..cut], "4");
        }
        for i in 0..bytes.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[i] = v;
                let _ = flexbuffer_map_blob(&corrupt, "4");
            }
        }
    }
}
