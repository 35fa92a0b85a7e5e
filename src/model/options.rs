//! Builtin operator options, decoded field by field from the schema's option tables.
//!
//! Every options table of the TFLite schema (both the `BuiltinOptions` union and the newer
//! `BuiltinOptions2` union) is described here by its fields' types, so options are read and
//! written faithfully for every operator, not only the ones we have seen in files.

/// Which union of the schema an options table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionsUnion {
    /// `Operator.builtin_options` (`BuiltinOptions`).
    Builtin,
    /// `Operator.builtin_options_2` (`BuiltinOptions2`, e.g. StableHLO ops).
    Builtin2,
}

/// The type of one field of an options table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    String,
    VecI32,
    VecI64,
    VecU32,
    VecF32,
    VecU8,
}

/// The value of one field of an options table.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    String(String),
    VecI32(Vec<i32>),
    VecI64(Vec<i64>),
    VecU32(Vec<u32>),
    VecF32(Vec<f32>),
    VecU8(Vec<u8>),
}

/// The layout of one options table: its schema name and its fields by field id.
#[derive(Debug)]
pub struct OptionsLayout {
    /// Table name in the schema, e.g. `"Conv2DOptions"`.
    pub name: &'static str,
    /// Field `i` of the table has id `i`; `(field name, type)`.
    pub fields: &'static [(&'static str, FieldType)],
}

/// Options of one operator: the union member and the fields present in the file.
///
/// Fields absent in the file (left at their schema default) are absent here too, so a
/// table written back has exactly the fields it was read with.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinOptions {
    pub union: OptionsUnion,
    /// Union type tag (1-based; 0 is NONE and never stored).
    pub kind: u8,
    /// Present fields, ascending by field id.
    pub fields: Vec<(u16, FieldValue)>,
}
