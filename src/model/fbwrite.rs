//! A small FlatBuffers builder that writes front to back.
//!
//! A table is written before its children: its offset fields start as placeholders and
//! are patched once each child is placed, so every uoffset points forward, as the format
//! requires. Children are given as closures ([`Child`]) and written right after their
//! parent, in field-id order, which keeps the output deterministic.
//!
//! Positions are absolute from the start of the file, so alignment is exact as long as the
//! file itself is loaded at a 16-byte aligned address (as TFLite does): scalars and vector
//! elements are aligned to their size, tables to 4, and byte vectors can ask for more
//! (16 for buffer data). Identical vtables are shared.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Largest file the format can address: TFLite's flatbuffers limit is 2 GiB − 1.
const MAX_SIZE: usize = i32::MAX as usize;

/// Writes one child (table, vector or string) and returns its position.
pub(super) type Child<'c> = Box<dyn FnOnce(&mut Builder) -> Result<usize> + 'c>;

/// A little-endian scalar that a table field or vector can hold.
pub(super) trait LeScalar: Copy {
    /// Size in bytes (also the alignment).
    const SIZE: usize;
    /// Appends the little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! le_scalar {
    ($($t:ty),*) => {$(
        impl LeScalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

le_scalar!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// The value of one table field.
pub(super) enum Value<'c> {
    /// An inline scalar: its little-endian bytes (1, 2, 4 or 8 of them).
    Scalar(Vec<u8>),
    /// A uoffset to a child written after the table.
    Child(Child<'c>),
}

impl<'c> Value<'c> {
    /// An inline scalar field.
    pub(super) fn scalar<T: LeScalar>(v: T) -> Self {
        let mut bytes = Vec::with_capacity(T::SIZE);
        v.put(&mut bytes);
        Value::Scalar(bytes)
    }

    /// A bool field (one byte, 0 or 1).
    pub(super) fn boolean(v: bool) -> Self {
        Value::scalar(u8::from(v))
    }

    /// An offset field to a child.
    pub(super) fn child(f: impl FnOnce(&mut Builder) -> Result<usize> + 'c) -> Self {
        Value::Child(Box::new(f))
    }

    /// An offset field to a string.
    pub(super) fn string(s: &'c str) -> Self {
        Value::child(move |b| b.string(s))
    }

    /// An offset field to a vector of scalars (borrowed or owned).
    pub(super) fn scalars<T: LeScalar, V: AsRef<[T]> + 'c>(v: V) -> Self {
        Value::child(move |b| b.scalars(v.as_ref()))
    }

    /// An offset field to a byte vector whose data is aligned to `align` bytes.
    pub(super) fn bytes(v: &'c [u8], align: usize) -> Self {
        Value::child(move |b| b.bytes(v, align))
    }

    /// An offset field to a vector of tables (or strings).
    pub(super) fn children(v: Vec<Child<'c>>) -> Self {
        Value::child(move |b| b.children(v))
    }

    fn size(&self) -> usize {
        match self {
            Value::Scalar(bytes) => bytes.len(),
            Value::Child(_) => 4,
        }
    }
}

fn too_large() -> Error {
    Error::unsupported("models larger than 2 GiB (uoffsets are 32-bit)")
}

/// The output buffer being built.
pub(super) struct Builder {
    buf: Vec<u8>,
    /// Vtables already written, by content, to share identical ones.
    vtables: HashMap<Vec<u8>, usize>,
}

/// Builds a whole file: the root uoffset, the 4-byte identifier, then the root table.
pub(super) fn build(identifier: &[u8; 4], root: Child<'_>) -> Result<Vec<u8>> {
    let mut b = Builder {
        buf: Vec::new(),
        vtables: HashMap::new(),
    };
    b.buf.extend_from_slice(&[0; 4]);
    b.buf.extend_from_slice(identifier);
    let at = root(&mut b)?;
    b.patch(0, at)?;
    if b.buf.len() > MAX_SIZE {
        return Err(too_large());
    }
    Ok(b.buf)
}

fn align_up(pos: usize, align: usize) -> usize {
    pos.div_ceil(align) * align
}

impl Builder {
    /// Current write position.
    fn pos(&self) -> usize {
        self.buf.len()
    }

    /// Zero-pads up to `pos`.
    fn pad_to(&mut self, pos: usize) {
        self.buf.resize(pos, 0);
    }

    /// Points the placeholder uoffset at `at` to `target` (which must lie after it).
    fn patch(&mut self, at: usize, target: usize) -> Result<()> {
        let rel = target
            .checked_sub(at)
            .filter(|&rel| rel > 0)
            .ok_or_else(|| Error::invalid("flatbuffer", "uoffset would point backwards"))?;
        let rel = u32::try_from(rel)
            .ok()
            .filter(|_| target <= MAX_SIZE)
            .ok_or_else(too_large)?;
        self.buf[at..at + 4].copy_from_slice(&rel.to_le_bytes());
        Ok(())
    }

    /// Field layout of a table starting at `start`: the vtable bytes (which hold the
    /// object length) and the field offsets in the order of `fields`, sorted by id.
    fn layout(fields: &[(u16, Value<'_>)], start: usize) -> Result<(Vec<u8>, Vec<usize>)> {
        // Place large fields first to keep padding small; ties keep id order.
        let mut order: Vec<usize> = (0..fields.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(fields[i].1.size()));
        let mut offsets = vec![0usize; fields.len()];
        let mut cursor = start + 4;
        for i in order {
            let size = fields[i].1.size();
            cursor = align_up(cursor, size);
            offsets[i] = cursor - start;
            cursor += size;
        }
        let object_len = u16::try_from(cursor - start)
            .map_err(|_| Error::invalid("flatbuffer", "table larger than 64 KiB"))?;
        let slots = fields.last().map_or(0, |(id, _)| usize::from(*id) + 1);
        let vtable_len = u16::try_from(4 + 2 * slots)
            .map_err(|_| Error::invalid("flatbuffer", "vtable larger than 64 KiB"))?;
        let mut vtable = Vec::with_capacity(usize::from(vtable_len));
        vtable.extend_from_slice(&vtable_len.to_le_bytes());
        vtable.extend_from_slice(&object_len.to_le_bytes());
        vtable.resize(usize::from(vtable_len), 0);
        for ((id, _), &offset) in fields.iter().zip(&offsets) {
            // offset < object_len <= u16::MAX
            let slot = 4 + 2 * usize::from(*id);
            vtable[slot..slot + 2].copy_from_slice(&(offset as u16).to_le_bytes());
        }
        Ok((vtable, offsets))
    }

    /// Writes a table with `fields` (any order, ids distinct), then its children.
    /// Returns the table's position.
    pub(super) fn table(&mut self, mut fields: Vec<(u16, Value<'_>)>) -> Result<usize> {
        fields.sort_by_key(|(id, _)| *id);
        if fields.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid("flatbuffer", "table field written twice"));
        }
        let mut start = align_up(self.pos(), 4);
        let (mut vtable, mut offsets) = Self::layout(&fields, start)?;
        let vtable_pos = match self.vtables.get(&vtable) {
            Some(&shared) => shared,
            None => {
                let at = align_up(self.pos(), 2);
                start = align_up(at + vtable.len(), 4);
                (vtable, offsets) = Self::layout(&fields, start)?;
                self.pad_to(at);
                self.buf.extend_from_slice(&vtable);
                self.vtables.insert(vtable.clone(), at);
                at
            }
        };
        self.pad_to(start);
        let soffset = i32::try_from(start - vtable_pos).map_err(|_| too_large())?;
        self.buf.extend_from_slice(&soffset.to_le_bytes());
        let object_len = usize::from(u16::from_le_bytes([vtable[2], vtable[3]]));
        self.pad_to(start + object_len);
        let mut children = Vec::new();
        for ((_, value), offset) in fields.into_iter().zip(offsets) {
            let at = start + offset;
            match value {
                Value::Scalar(bytes) => self.buf[at..at + bytes.len()].copy_from_slice(&bytes),
                Value::Child(child) => children.push((at, child)),
            }
        }
        for (at, child) in children {
            let target = child(self)?;
            self.patch(at, target)?;
        }
        Ok(start)
    }

    /// Starts a vector of `count` elements whose first element is aligned to `align`;
    /// returns the vector's position (its length field).
    fn vector_start(&mut self, count: usize, align: usize) -> Result<usize> {
        let align = align.max(4);
        let mut at = align_up(self.pos(), 4);
        while !(at + 4).is_multiple_of(align) {
            at += 4;
        }
        let count = u32::try_from(count).map_err(|_| too_large())?;
        self.pad_to(at);
        self.buf.extend_from_slice(&count.to_le_bytes());
        Ok(at)
    }

    /// Writes a vector of scalars; returns its position.
    pub(super) fn scalars<T: LeScalar>(&mut self, v: &[T]) -> Result<usize> {
        let at = self.vector_start(v.len(), T::SIZE)?;
        for &x in v {
            x.put(&mut self.buf);
        }
        Ok(at)
    }

    /// Writes a byte vector with its data aligned to `align`; returns its position.
    pub(super) fn bytes(&mut self, v: &[u8], align: usize) -> Result<usize> {
        if self.pos().saturating_add(v.len()) > MAX_SIZE {
            return Err(too_large());
        }
        let at = self.vector_start(v.len(), align)?;
        self.buf.extend_from_slice(v);
        Ok(at)
    }

    /// Writes a string (length, UTF-8 bytes, NUL); returns its position.
    pub(super) fn string(&mut self, s: &str) -> Result<usize> {
        let at = self.vector_start(s.len(), 4)?;
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        Ok(at)
    }

    /// Writes a vector of uoffsets, then each child; returns the vector's position.
    pub(super) fn children(&mut self, v: Vec<Child<'_>>) -> Result<usize> {
        let at = self.vector_start(v.len(), 4)?;
        self.buf.resize(at + 4 + 4 * v.len(), 0);
        for (i, child) in v.into_iter().enumerate() {
            let target = child(self)?;
            self.patch(at + 4 + 4 * i, target)?;
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::super::flatbuf::{Budget, Path, Table};
    use super::*;

    fn sample() -> Vec<u8> {
        build(
            b"TEST",
            Box::new(|b| {
                b.table(vec![
                    (0, Value::scalar(7u8)),
                    (3, Value::scalar(-5i64)),
                    (1, Value::string("name")),
                    (2, Value::bytes(&[1, 2, 3], 16)),
                    (
                        4,
                        Value::children(vec![
                            Box::new(|b| b.table(vec![(0, Value::scalar(1i32))])),
                            Box::new(|b| b.table(vec![(0, Value::scalar(2i32))])),
                        ]),
                    ),
                ])
            }),
        )
        .expect("build")
    }

    #[test]
    fn written_tables_read_back() {
        let buf = sample();
        assert_eq!(&buf[4..8], b"TEST");
        let p = Path::root("t");
        let budget = Budget::for_input(buf.len());
        let t = Table::root(&buf, &p).expect("root");
        assert_eq!(t.scalar::<u8>(0, 0, &p).expect("u8"), 7);
        assert_eq!(t.scalar::<i64>(3, 0, &p).expect("i64"), -5);
        assert_eq!(t.string(1, &budget, &p).expect("s"), Some("name"));
        let data = t.bytes(2, &p).expect("bytes").expect("present");
        assert_eq!(data, &[1, 2, 3]);
        let data_pos = data.as_ptr() as usize - buf.as_ptr() as usize;
        assert_eq!(data_pos % 16, 0, "byte vector data must be 16-aligned");
        let v = t.vector(4, 4, &p).expect("vec").expect("present");
        assert_eq!(v.len(), 2);
        for i in 0..2 {
            let child = v.table(i, &p).expect("child");
            assert_eq!(child.scalar::<i32>(0, 0, &p).expect("i32"), i as i32 + 1);
        }
    }

    #[test]
    fn scalars_are_aligned_to_their_size() {
        let buf = sample();
        let p = Path::root("t");
        let t = Table::root(&buf, &p).expect("root");
        assert_eq!(t.offset() % 4, 0);
        let at = t.field(3).expect("i64 field");
        assert_eq!(at % 8, 0);
    }

    #[test]
    fn identical_vtables_are_shared() {
        let buf = sample();
        let p = Path::root("t");
        let t = Table::root(&buf, &p).expect("root");
        let v = t.vector(4, 4, &p).expect("vec").expect("present");
        let a = v.table(0, &p).expect("a").offset();
        let b = v.table(1, &p).expect("b").offset();
        let soff = |pos: usize| i32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4"));
        assert_eq!(a as i64 - soff(a) as i64, b as i64 - soff(b) as i64);
    }

    #[test]
    fn duplicate_fields_are_rejected() {
        let r = build(
            b"TEST",
            Box::new(|b| b.table(vec![(0, Value::scalar(1u8)), (0, Value::scalar(2u8))])),
        );
        assert!(r.is_err());
    }

    #[test]
    fn output_is_deterministic() {
        assert_eq!(sample(), sample());
    }
}
