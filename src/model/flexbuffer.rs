//! Reading the FlexBuffer maps that custom operators keep their options in, bounds-checked.
//!
//! TFLite hands a custom operator's options to its kernel as raw bytes, and the kernels
//! that take FlexBuffer maps (`TFLite_Detection_PostProcess`, the Edge TPU's
//! `edgetpu-custom-op`) read them without a verifier: a key is looked up by binary search
//! over the map's keys, and a value converted to whatever type the kernel asks for. This
//! reader takes only maps on which that lookup cannot go astray: keys strictly sorted
//! (so a binary search and a scan find the same entry), every offset and length inside the
//! bytes, and values of the plain types below. Anything else is `None`, never a panic.

/// One value of a map, as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'b> {
    /// A signed integer (inline or indirect).
    Int(i64),
    /// An unsigned integer (inline or indirect).
    UInt(u64),
    /// A float of 4 or 8 bytes (inline or indirect).
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// The bytes of a string or a blob.
    Bytes(&'b [u8]),
    /// Any other type (null, vectors, maps, ...), by its FlexBuffer type code.
    Other(u8),
}

impl Value<'_> {
    /// The value as a 32-bit signed integer, if it is an integer that fits.
    pub(crate) fn as_i32(self) -> Option<i32> {
        match self {
            Value::Int(v) => i32::try_from(v).ok(),
            Value::UInt(v) => i32::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is one.
    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(v),
            _ => None,
        }
    }
}

/// A FlexBuffer map: its entries in key order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Map<'b> {
    entries: Vec<(&'b [u8], Value<'b>)>,
}

impl<'b> Map<'b> {
    /// The value stored under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Value<'b>> {
        self.entries
            .binary_search_by(|(k, _)| (*k).cmp(key.as_bytes()))
            .ok()
            .map(|i| self.entries[i].1)
    }
}

// FlexBuffer type codes.
const INT: u8 = 1;
const UINT: u8 = 2;
const FLOAT: u8 = 3;
const STRING: u8 = 5;
const INDIRECT_INT: u8 = 6;
const INDIRECT_UINT: u8 = 7;
const INDIRECT_FLOAT: u8 = 8;
const MAP: u8 = 9;
const BLOB: u8 = 25;
const BOOL: u8 = 26;

/// Reads a little-endian unsigned integer of `width` bytes at `at`.
fn read_uint(bytes: &[u8], at: usize, width: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(width)?)?;
    Some(
        slice
            .iter()
            .enumerate()
            .fold(0u64, |value, (i, &b)| value | (u64::from(b) << (8 * i))),
    )
}

/// Reads a little-endian signed integer of `width` bytes at `at`.
fn read_int(bytes: &[u8], at: usize, width: usize) -> Option<i64> {
    let raw = read_uint(bytes, at, width)?;
    let shift = 64 - 8 * u32::try_from(width).ok()?;
    Some(((raw << shift) as i64) >> shift)
}

fn read_float(bytes: &[u8], at: usize, width: usize) -> Option<f64> {
    let raw = read_uint(bytes, at, width)?;
    match width {
        4 => Some(f64::from(f32::from_bits(u32::try_from(raw).ok()?))),
        8 => Some(f64::from_bits(raw)),
        _ => None,
    }
}

/// Follows a FlexBuffer offset stored at `at` (offsets point backwards).
fn follow(bytes: &[u8], at: usize, width: usize) -> Option<usize> {
    at.checked_sub(usize::try_from(read_uint(bytes, at, width)?).ok()?)
}

/// A byte width from its two-bit code.
fn width_of(code: u8) -> usize {
    1 << (code & 3)
}

/// The value of type byte `packed` stored in a slot of `width` bytes at `at`.
fn value(bytes: &[u8], at: usize, width: usize, packed: u8) -> Option<Value<'_>> {
    let own = width_of(packed);
    Some(match packed >> 2 {
        INT => Value::Int(read_int(bytes, at, width)?),
        UINT => Value::UInt(read_uint(bytes, at, width)?),
        FLOAT => Value::Float(read_float(bytes, at, width)?),
        BOOL => Value::Bool(read_uint(bytes, at, width)? != 0),
        INDIRECT_INT => Value::Int(read_int(bytes, follow(bytes, at, width)?, own)?),
        INDIRECT_UINT => Value::UInt(read_uint(bytes, follow(bytes, at, width)?, own)?),
        INDIRECT_FLOAT => Value::Float(read_float(bytes, follow(bytes, at, width)?, own)?),
        STRING | BLOB => {
            let data = follow(bytes, at, width)?;
            let size = usize::try_from(read_uint(bytes, data.checked_sub(own)?, own)?).ok()?;
            Value::Bytes(bytes.get(data..data.checked_add(size)?)?)
        }
        other => Value::Other(other),
    })
}

/// The map at the root of `bytes`, or `None` when the root is not a map this reader takes
/// (see the module documentation).
pub(crate) fn root_map(bytes: &[u8]) -> Option<Map<'_>> {
    let len = bytes.len();
    let root_width = usize::from(*bytes.last()?);
    let root_type = *bytes.get(len.checked_sub(2)?)?;
    if !matches!(root_width, 1 | 2 | 4 | 8) || root_type >> 2 != MAP {
        return None;
    }
    let width = width_of(root_type);
    let root_at = len.checked_sub(2 + root_width)?;
    let values = follow(bytes, root_at, root_width)?;
    let count = usize::try_from(read_uint(bytes, values.checked_sub(width)?, width)?).ok()?;
    let key_width =
        usize::try_from(read_uint(bytes, values.checked_sub(2 * width)?, width)?).ok()?;
    if !matches!(key_width, 1 | 2 | 4 | 8) {
        return None;
    }
    let keys = follow(bytes, values.checked_sub(3 * width)?, width)?;
    let key_count =
        usize::try_from(read_uint(bytes, keys.checked_sub(key_width)?, key_width)?).ok()?;
    let types = values.checked_add(count.checked_mul(width)?)?;
    if key_count != count || bytes.len() < types.checked_add(count)? {
        return None;
    }
    let mut entries: Vec<(&[u8], Value<'_>)> = Vec::with_capacity(count.min(len));
    for i in 0..count {
        let name_at = follow(
            bytes,
            keys.checked_add(i.checked_mul(key_width)?)?,
            key_width,
        )?;
        let name = bytes.get(name_at..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        if entries
            .last()
            .is_some_and(|(previous, _)| *previous >= name)
        {
            return None; // unsorted or repeated keys: lookups would disagree
        }
        let packed = bytes[types + i];
        let stored = value(bytes, values + i * width, width, packed)?;
        entries.push((name, stored));
    }
    Some(Map { entries })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a FlexBuffer map of 1-byte widths where every value is inline or a blob:
    /// `(key, type code, payload)`, keys in the order given (so tests can unsort them).
    pub(crate) fn map(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        let mut key_at = Vec::new();
        for (key, _, _) in entries {
            key_at.push(b.len());
            b.extend_from_slice(key.as_bytes());
            b.push(0);
        }
        let mut blob_at = Vec::new();
        for (_, code, payload) in entries {
            if matches!(*code, STRING | BLOB) {
                b.push(u8::try_from(payload.len()).expect("small blob"));
                blob_at.push(b.len());
                b.extend_from_slice(payload);
            } else {
                blob_at.push(0);
            }
        }
        b.push(u8::try_from(entries.len()).expect("few keys"));
        let keys = b.len();
        for &at in &key_at {
            let here = b.len();
            b.push(u8::try_from(here - at).expect("near"));
        }
        b.push(u8::try_from(b.len() - keys).expect("near")); // keys offset
        b.push(1); // key width
        b.push(u8::try_from(entries.len()).expect("few keys"));
        let values = b.len();
        for ((_, code, payload), &blob) in entries.iter().zip(&blob_at) {
            if matches!(*code, STRING | BLOB) {
                let here = b.len();
                b.push(u8::try_from(here - blob).expect("near"));
            } else {
                b.push(payload.first().copied().unwrap_or(0));
            }
        }
        for (_, code, _) in entries {
            b.push(code << 2);
        }
        b.push(u8::try_from(b.len() - values).expect("near"));
        b.push(MAP << 2);
        b.push(1);
        b
    }

    #[test]
    fn reads_sorted_maps_and_refuses_the_rest() {
        let bytes = map(&[
            ("a", INT, &[0xFE]),
            ("b", BLOB, b"DWN1"),
            ("c", BOOL, &[1]),
            ("d", UINT, &[200]),
        ]);
        let m = root_map(&bytes).expect("a map");
        assert_eq!(m.get("a"), Some(Value::Int(-2)));
        assert_eq!(m.get("b"), Some(Value::Bytes(b"DWN1")));
        assert_eq!(m.get("c"), Some(Value::Bool(true)));
        assert_eq!(m.get("d").and_then(Value::as_i32), Some(200));
        assert_eq!(m.get("e"), None);
        // Unsorted or repeated keys: TFLite's binary search and a scan could differ.
        assert!(root_map(&map(&[("b", INT, &[1]), ("a", INT, &[2])])).is_none());
        assert!(root_map(&map(&[("a", INT, &[1]), ("a", INT, &[2])])).is_none());
    }

    #[test]
    fn every_truncation_and_corruption_is_none_or_in_bounds() {
        let bytes = map(&[("4", BLOB, b"DWN1xyz"), ("x", FLOAT, &[0])]);
        for cut in 0..bytes.len() {
            let _ = root_map(&bytes[cut..]);
            let _ = root_map(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[i] = v;
                let _ = root_map(&corrupt);
            }
        }
    }
}
