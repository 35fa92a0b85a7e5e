//! A bounds-checked, zero-copy FlatBuffers reader.
//!
//! Every access checks its bounds and reports failures as [`Error::Malformed`] naming the
//! field path (e.g. `subgraphs[0].tensors[3].shape`) and the byte offset. Scalars are read
//! little-endian from byte slices, so unaligned data (seen in real TFLite files) reads fine.
//!
//! Amplification guard: a forged file can point many offsets at the same sub-table, so the
//! decoded size is not bounded by the file size. Every decoder charges the work it does and
//! the memory it allocates to a [`Budget`] proportional to the input length.

use std::cell::Cell;
use std::fmt;

use crate::error::{Error, Result};

/// Where a value sits in the file, as a field path for error messages. Built on the stack
/// as a linked list; rendered only when an error is reported.
#[derive(Clone, Copy)]
pub(super) struct Path<'p> {
    parent: Option<&'p Path<'p>>,
    segment: Segment,
}

#[derive(Clone, Copy)]
enum Segment {
    Field(&'static str),
    Index(usize),
}

impl<'p> Path<'p> {
    /// The path of the root table.
    pub(super) fn root(name: &'static str) -> Self {
        Path {
            parent: None,
            segment: Segment::Field(name),
        }
    }

    /// The path of field `name` under this one.
    pub(super) fn field(&'p self, name: &'static str) -> Path<'p> {
        Path {
            parent: Some(self),
            segment: Segment::Field(name),
        }
    }

    /// The path of element `index` of this vector.
    pub(super) fn index(&'p self, index: usize) -> Path<'p> {
        Path {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The depth is bounded by the static nesting of the decoders, not by the input.
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
            match self.segment {
                Segment::Field(name) => write!(f, ".{name}"),
                Segment::Index(i) => write!(f, "[{i}]"),
            }
        } else {
            match self.segment {
                Segment::Field(name) => f.write_str(name),
                Segment::Index(i) => write!(f, "[{i}]"),
            }
        }
    }
}

fn malformed(path: &Path<'_>, problem: &str, offset: usize) -> Error {
    Error::malformed(format!("{path}: {problem}"), offset)
}

/// A limit on the work and memory spent decoding one file.
pub(super) struct Budget {
    left: Cell<usize>,
}

impl Budget {
    /// A budget proportional to the input length: generous for real files, where every
    /// sub-table is reached once, and bounded for forged ones that share sub-tables.
    pub(super) fn for_input(len: usize) -> Self {
        Budget {
            left: Cell::new(len.saturating_mul(16).saturating_add(1 << 20)),
        }
    }

    /// Spends `units` (bytes allocated or scanned) on the value at `path`.
    pub(super) fn charge(&self, units: usize, path: &Path<'_>, offset: usize) -> Result<()> {
        match self.left.get().checked_sub(units) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(malformed(
                path,
                "decoding exceeds the size budget (shared or cyclic sub-tables)",
                offset,
            )),
        }
    }
}

/// A fixed-size little-endian scalar that can be read from unaligned bytes.
pub(super) trait Scalar: Copy {
    /// Size in bytes.
    const SIZE: usize;
    /// Decodes from exactly `SIZE` bytes.
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw)
            }
        }
    )*};
}

scalar!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// Reads a scalar at `offset`, checking bounds.
fn read<T: Scalar>(buf: &[u8], offset: usize, path: &Path<'_>) -> Result<T> {
    offset
        .checked_add(T::SIZE)
        .and_then(|end| buf.get(offset..end))
        .map(T::from_le)
        .ok_or_else(|| malformed(path, "value runs past the end of the file", offset))
}

/// Follows the uoffset stored at `offset`: the target is relative to `offset` itself.
fn follow(buf: &[u8], offset: usize, path: &Path<'_>) -> Result<usize> {
    let rel = read::<u32>(buf, offset, path)?;
    let target = usize::try_from(rel)
        .ok()
        .and_then(|rel| offset.checked_add(rel))
        .ok_or_else(|| malformed(path, "offset overflows", offset))?;
    if target >= buf.len() {
        return Err(malformed(
            path,
            "offset points past the end of the file",
            offset,
        ));
    }
    Ok(target)
}

/// A table: its position and its vtable, both checked to lie inside the buffer.
#[derive(Clone, Copy)]
pub(super) struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    /// The root table of a buffer: the uoffset at byte 0.
    pub(super) fn root(buf: &'a [u8], path: &Path<'_>) -> Result<Self> {
        let pos = follow(buf, 0, path)?;
        Table::at(buf, pos, path)
    }

    /// The table starting at `pos`.
    fn at(buf: &'a [u8], pos: usize, path: &Path<'_>) -> Result<Self> {
        let soffset = read::<i32>(buf, pos, path)?;
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|pos| pos.checked_sub(i64::from(soffset)))
            .and_then(|vt| usize::try_from(vt).ok())
            .ok_or_else(|| malformed(path, "vtable offset out of range", pos))?;
        let vtable_len = usize::from(read::<u16>(buf, vtable, path)?);
        if vtable_len < 4 || vtable_len % 2 != 0 {
            return Err(malformed(path, "bad vtable size", vtable));
        }
        if vtable
            .checked_add(vtable_len)
            .is_none_or(|end| end > buf.len())
        {
            return Err(malformed(
                path,
                "vtable runs past the end of the file",
                vtable,
            ));
        }
        let object_len = usize::from(read::<u16>(buf, vtable + 2, path)?);
        if object_len < 4
            || pos
                .checked_add(object_len)
                .is_none_or(|end| end > buf.len())
        {
            return Err(malformed(path, "table runs past the end of the file", pos));
        }
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    /// Byte offset of the table in the file.
    pub(super) fn offset(&self) -> usize {
        self.pos
    }

    /// Number of field slots in the vtable (field ids `0..slots`).
    pub(super) fn slots(&self) -> usize {
        (self.vtable_len - 4) / 2
    }

    /// Absolute position of field `id`, or `None` when the field is absent.
    pub(super) fn field(&self, id: u16) -> Option<usize> {
        let slot = 4 + 2 * usize::from(id);
        if slot + 2 > self.vtable_len {
            return None;
        }
        // In bounds: the vtable was checked to lie inside the buffer.
        let rel = <u16 as Scalar>::from_le(&self.buf[self.vtable + slot..self.vtable + slot + 2]);
        if rel == 0 {
            None
        } else {
            // Cannot overflow: pos < buf.len() and rel < 2^16.
            Some(self.pos + usize::from(rel))
        }
    }

    /// Whether field `id` is present.
    pub(super) fn has(&self, id: u16) -> bool {
        self.field(id).is_some()
    }

    /// The first present field with id `>= first`, if any (for rejecting unknown fields).
    pub(super) fn first_present_from(&self, first: u16) -> Option<u16> {
        (usize::from(first)..self.slots())
            .filter_map(|id| u16::try_from(id).ok())
            .find(|&id| self.has(id))
    }

    /// Scalar field `id`, or `default` when absent.
    pub(super) fn scalar<T: Scalar>(&self, id: u16, default: T, path: &Path<'_>) -> Result<T> {
        match self.field(id) {
            Some(at) => read::<T>(self.buf, at, path),
            None => Ok(default),
        }
    }

    /// Bool field `id` (any non-zero byte is true).
    pub(super) fn boolean(&self, id: u16, default: bool, path: &Path<'_>) -> Result<bool> {
        Ok(self.scalar::<u8>(id, u8::from(default), path)? != 0)
    }

    /// Sub-table field `id`.
    pub(super) fn table(&self, id: u16, path: &Path<'_>) -> Result<Option<Table<'a>>> {
        match self.field(id) {
            Some(at) => {
                let target = follow(self.buf, at, path)?;
                Table::at(self.buf, target, path).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Vector field `id` of elements of `elem_size` bytes (scalars) or uoffsets (4 bytes).
    pub(super) fn vector(
        &self,
        id: u16,
        elem_size: usize,
        path: &Path<'_>,
    ) -> Result<Option<Vector<'a>>> {
        match self.field(id) {
            Some(at) => {
                let target = follow(self.buf, at, path)?;
                Vector::at(self.buf, target, elem_size, path).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Scalar vector field `id` copied out (empty when absent), charged to `budget`.
    pub(super) fn scalars<T: Scalar>(
        &self,
        id: u16,
        budget: &Budget,
        path: &Path<'_>,
    ) -> Result<Option<Vec<T>>> {
        match self.vector(id, T::SIZE, path)? {
            Some(v) => v.scalars(budget, path).map(Some),
            None => Ok(None),
        }
    }

    /// Byte vector field `id`, borrowed from the file.
    pub(super) fn bytes(&self, id: u16, path: &Path<'_>) -> Result<Option<&'a [u8]>> {
        Ok(self.vector(id, 1, path)?.map(|v| v.raw()))
    }

    /// String field `id`, borrowed from the file; UTF-8 checked and charged to `budget`.
    pub(super) fn string(
        &self,
        id: u16,
        budget: &Budget,
        path: &Path<'_>,
    ) -> Result<Option<&'a str>> {
        match self.field(id) {
            Some(at) => {
                let target = follow(self.buf, at, path)?;
                string_at(self.buf, target, budget, path).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Union with type field `type_id` and value field `value_id`: `(type, table)`.
    ///
    /// `None` when the type is NONE (0). A type without a value table gives `None` for
    /// the table (readers then use the schema defaults, as TFLite does).
    pub(super) fn union(
        &self,
        type_id: u16,
        value_id: u16,
        path: &Path<'_>,
    ) -> Result<Option<(u8, Option<Table<'a>>)>> {
        let kind = self.scalar::<u8>(type_id, 0, path)?;
        if kind == 0 {
            return Ok(None);
        }
        Ok(Some((kind, self.table(value_id, path)?)))
    }
}

fn string_at<'a>(buf: &'a [u8], pos: usize, budget: &Budget, path: &Path<'_>) -> Result<&'a str> {
    let vector = Vector::at(buf, pos, 1, path)?;
    let bytes = vector.raw();
    // Flatbuffer strings end in a NUL, which TFLite's verifier requires inside the buffer.
    if buf.get(vector.start + bytes.len()) != Some(&0) {
        return Err(malformed(path, "string without its terminating NUL", pos));
    }
    budget.charge(bytes.len(), path, pos)?;
    std::str::from_utf8(bytes).map_err(|_| malformed(path, "string is not UTF-8", pos))
}

/// A vector whose elements lie inside the buffer.
#[derive(Clone, Copy)]
pub(super) struct Vector<'a> {
    buf: &'a [u8],
    start: usize,
    len: usize,
    elem_size: usize,
}

impl<'a> Vector<'a> {
    fn at(buf: &'a [u8], pos: usize, elem_size: usize, path: &Path<'_>) -> Result<Self> {
        let len = usize::try_from(read::<u32>(buf, pos, path)?)
            .map_err(|_| malformed(path, "vector length overflows", pos))?;
        let start = pos + 4; // read() checked pos + 4 <= buf.len()
        let fits = len
            .checked_mul(elem_size)
            .and_then(|bytes| start.checked_add(bytes))
            .is_some_and(|end| end <= buf.len());
        if !fits {
            return Err(malformed(
                path,
                "vector length runs past the end of the file",
                pos,
            ));
        }
        Ok(Vector {
            buf,
            start,
            len,
            elem_size,
        })
    }

    /// Number of elements.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The element bytes.
    pub(super) fn raw(&self) -> &'a [u8] {
        // In bounds: checked in `at`.
        &self.buf[self.start..self.start + self.len * self.elem_size]
    }

    /// Byte offset of element `i` (`i < len`).
    fn elem(&self, i: usize) -> usize {
        self.start + i * self.elem_size
    }

    /// All elements as scalars (the vector must have been made with `T::SIZE`).
    pub(super) fn scalars<T: Scalar>(&self, budget: &Budget, path: &Path<'_>) -> Result<Vec<T>> {
        budget.charge(
            self.len.saturating_mul(std::mem::size_of::<T>().max(1)),
            path,
            self.start,
        )?;
        Ok(self.raw().chunks_exact(T::SIZE).map(T::from_le).collect())
    }

    /// Element `i` of a vector of tables.
    pub(super) fn table(&self, i: usize, path: &Path<'_>) -> Result<Table<'a>> {
        if i >= self.len {
            return Err(malformed(path, "vector index out of range", self.start));
        }
        let at = self.elem(i);
        let target = follow(self.buf, at, path)?;
        Table::at(self.buf, target, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root table with one vtable and fields: u32 at id 0, string at id 1.
    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&16u32.to_le_bytes()); // root -> 16
        b.extend_from_slice(b"TFL3");
        // vtable at 8: size 8, object 12, field0 at 4, field1 at 8
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(&12u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&8u16.to_le_bytes());
        // table at 16: soffset = 16 - 8 = 8
        b.extend_from_slice(&8i32.to_le_bytes());
        b.extend_from_slice(&7u32.to_le_bytes());
        // field1 at 24 -> string at 28
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(b"hi\0\0");
        b
    }

    #[test]
    fn reads_scalars_and_strings() {
        let buf = sample();
        let path = Path::root("t");
        let budget = Budget::for_input(buf.len());
        let t = Table::root(&buf, &path).expect("root");
        assert_eq!(t.scalar::<u32>(0, 0, &path).expect("u32"), 7);
        assert_eq!(t.scalar::<u32>(5, 9, &path).expect("default"), 9);
        assert_eq!(t.string(1, &budget, &path).expect("str"), Some("hi"));
        assert_eq!(t.first_present_from(0), Some(0));
        assert_eq!(t.first_present_from(2), None);
    }

    #[test]
    fn string_without_its_terminating_nul_is_rejected() {
        // As TFLite's flatbuffer verifier does: a file cut right before a string's NUL,
        // or a string whose NUL is overwritten, is not a model.
        let whole = sample();
        let path = Path::root("t");
        for buf in [whole[..30].to_vec(), {
            let mut b = whole.clone();
            b[30] = b'!';
            b
        }] {
            let budget = Budget::for_input(buf.len());
            let t = Table::root(&buf, &path).expect("root");
            let err = t.string(1, &budget, &path).expect_err("no terminator");
            assert!(matches!(err, Error::Malformed { offset: 28, .. }), "{err}");
        }
    }

    #[test]
    fn forged_vector_length_is_rejected() {
        let mut buf = sample();
        buf[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        let path = Path::root("t");
        let budget = Budget::for_input(buf.len());
        let t = Table::root(&buf, &path).expect("root");
        let err = t.string(1, &budget, &path).expect_err("must fail");
        assert!(matches!(err, Error::Malformed { offset: 28, .. }), "{err}");
    }

    #[test]
    fn bad_vtable_offset_is_rejected() {
        let mut buf = sample();
        buf[16..20].copy_from_slice(&i32::MIN.to_le_bytes());
        assert!(Table::root(&buf, &Path::root("t")).is_err());
        buf[16..20].copy_from_slice(&(-1000i32).to_le_bytes());
        assert!(Table::root(&buf, &Path::root("t")).is_err());
    }

    #[test]
    fn unaligned_scalars_read_fine() {
        let buf = [0u8, 1, 0, 0, 0, 0, 0, 0, 0];
        let v = read::<i64>(&buf, 1, &Path::root("x")).expect("read");
        assert_eq!(v, 1);
        assert!(read::<i64>(&buf, 2, &Path::root("x")).is_err());
        assert!(read::<i64>(&buf, usize::MAX, &Path::root("x")).is_err());
    }

    #[test]
    fn paths_render_as_field_paths() {
        let root = Path::root("subgraphs");
        let s0 = root.index(0);
        let t = s0.field("tensors");
        let t3 = t.index(3);
        let shape = t3.field("shape");
        assert_eq!(shape.to_string(), "subgraphs[0].tensors[3].shape");
    }

    #[test]
    fn budget_runs_out() {
        let b = Budget {
            left: Cell::new(10),
        };
        let p = Path::root("x");
        assert!(b.charge(6, &p, 0).is_ok());
        assert!(b.charge(6, &p, 0).is_err());
    }
}
