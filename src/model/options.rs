//! Builtin operator options, decoded field by field from the schema's option tables.
//!
//! Every options table of the TFLite schema (both the `BuiltinOptions` union and the newer
//! `BuiltinOptions2` union) is described here by its fields' types, so options are read and
//! written faithfully for every operator, not only the ones we have seen in files.
//!
//! The tables themselves are [`BUILTIN_OPTIONS`] and [`BUILTIN_OPTIONS_2`]; look one up by
//! union tag with [`layout`] or by name with [`by_name`]. No options table of the schema has
//! a field that is itself a table, a union or a vector of tables or strings, so every field is
//! one [`FieldType`].

use crate::{Error, Result};

mod table;

pub use table::{BUILTIN_OPTIONS, BUILTIN_OPTIONS_2};

/// Which union of the schema an options table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionsUnion {
    /// `Operator.builtin_options` (`BuiltinOptions`).
    Builtin,
    /// `Operator.builtin_options_2` (`BuiltinOptions2`, e.g. StableHLO ops).
    Builtin2,
}

impl OptionsUnion {
    /// The union's name in the schema.
    pub fn schema_name(self) -> &'static str {
        match self {
            OptionsUnion::Builtin => "BuiltinOptions",
            OptionsUnion::Builtin2 => "BuiltinOptions2",
        }
    }

    /// The union's members in declaration order (tag `k` at index `k - 1`).
    pub fn members(self) -> &'static [OptionsLayout] {
        match self {
            OptionsUnion::Builtin => &BUILTIN_OPTIONS,
            OptionsUnion::Builtin2 => &BUILTIN_OPTIONS_2,
        }
    }
}

/// The type of one field of an options table.
///
/// Enum-typed fields have their enum's underlying integer type (e.g. `Padding` and
/// `TensorType` are `byte`, so [`FieldType::I8`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// `bool`.
    Bool,
    /// `byte` / `int8`.
    I8,
    /// `ubyte` / `uint8`.
    U8,
    /// `short` / `int16`.
    I16,
    /// `ushort` / `uint16`.
    U16,
    /// `int` / `int32`.
    I32,
    /// `uint` / `uint32`.
    U32,
    /// `long` / `int64`.
    I64,
    /// `ulong` / `uint64`.
    U64,
    /// `float`.
    F32,
    /// `double`.
    F64,
    /// `string`.
    String,
    /// `[int]`.
    VecI32,
    /// `[long]`.
    VecI64,
    /// `[uint]` (also vectors of `uint` enums).
    VecU32,
    /// `[float]`.
    VecF32,
    /// `[ubyte]`.
    VecU8,
    /// `[bool]`.
    VecBool,
}

impl FieldType {
    /// Whether the field is a scalar stored inline in the table (not a string or vector).
    pub fn is_scalar(self) -> bool {
        !matches!(
            self,
            FieldType::String
                | FieldType::VecI32
                | FieldType::VecI64
                | FieldType::VecU32
                | FieldType::VecF32
                | FieldType::VecU8
                | FieldType::VecBool
        )
    }
}

/// The value of one field of an options table.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `bool`.
    Bool(bool),
    /// `byte` / `int8`, and enums over `byte`.
    I8(i8),
    /// `ubyte` / `uint8`.
    U8(u8),
    /// `short` / `int16`.
    I16(i16),
    /// `ushort` / `uint16`.
    U16(u16),
    /// `int` / `int32`, and enums over `int`.
    I32(i32),
    /// `uint` / `uint32`, and enums over `uint`.
    U32(u32),
    /// `long` / `int64`.
    I64(i64),
    /// `ulong` / `uint64`.
    U64(u64),
    /// `float`.
    F32(f32),
    /// `double`.
    F64(f64),
    /// `string`.
    String(String),
    /// `[int]`.
    VecI32(Vec<i32>),
    /// `[long]`.
    VecI64(Vec<i64>),
    /// `[uint]`.
    VecU32(Vec<u32>),
    /// `[float]`.
    VecF32(Vec<f32>),
    /// `[ubyte]`.
    VecU8(Vec<u8>),
    /// `[bool]`.
    VecBool(Vec<bool>),
}

impl FieldValue {
    /// The type of this value.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::Bool(_) => FieldType::Bool,
            FieldValue::I8(_) => FieldType::I8,
            FieldValue::U8(_) => FieldType::U8,
            FieldValue::I16(_) => FieldType::I16,
            FieldValue::U16(_) => FieldType::U16,
            FieldValue::I32(_) => FieldType::I32,
            FieldValue::U32(_) => FieldType::U32,
            FieldValue::I64(_) => FieldType::I64,
            FieldValue::U64(_) => FieldType::U64,
            FieldValue::F32(_) => FieldType::F32,
            FieldValue::F64(_) => FieldType::F64,
            FieldValue::String(_) => FieldType::String,
            FieldValue::VecI32(_) => FieldType::VecI32,
            FieldValue::VecI64(_) => FieldType::VecI64,
            FieldValue::VecU32(_) => FieldType::VecU32,
            FieldValue::VecF32(_) => FieldType::VecF32,
            FieldValue::VecU8(_) => FieldType::VecU8,
            FieldValue::VecBool(_) => FieldType::VecBool,
        }
    }
}

/// The layout of one options table: its schema name and its fields by field id.
#[derive(Debug)]
pub struct OptionsLayout {
    /// Table name in the schema, e.g. `"Conv2DOptions"`.
    pub name: &'static str,
    /// Field `i` of the table has id `i`; `(field name, type)`. Deprecated fields are listed
    /// too (they still take their id), e.g. `new_height` of `ResizeBilinearOptions`.
    pub fields: &'static [(&'static str, FieldType)],
    /// Scalar fields whose schema default is not zero, as `(field id, default)`; a `bool`
    /// default `true` is 1 and an enum default is its integer value. Every other scalar
    /// field defaults to zero (`false`). Every default of the schema is an integer.
    pub nonzero_defaults: &'static [(u16, i64)],
}

impl OptionsLayout {
    /// The id of the field with this name.
    pub fn field_id(&self, field_name: &str) -> Option<u16> {
        let index = self
            .fields
            .iter()
            .position(|&(name, _)| name == field_name)?;
        u16::try_from(index).ok()
    }

    /// The schema default of a scalar field, used when the field is absent from a file;
    /// `None` for strings and vectors (absent means empty) and for unknown ids.
    pub fn default_value(&self, id: u16) -> Option<FieldValue> {
        let &(_, ty) = self.fields.get(usize::from(id))?;
        let d = self
            .nonzero_defaults
            .iter()
            .find(|&&(field, _)| field == id)
            .map_or(0, |&(_, value)| value);
        // The schema's defaults are small integers (0, 1, 2) that fit every scalar type.
        Some(match ty {
            FieldType::Bool => FieldValue::Bool(d != 0),
            FieldType::I8 => FieldValue::I8(d as i8),
            FieldType::U8 => FieldValue::U8(d as u8),
            FieldType::I16 => FieldValue::I16(d as i16),
            FieldType::U16 => FieldValue::U16(d as u16),
            FieldType::I32 => FieldValue::I32(d as i32),
            FieldType::U32 => FieldValue::U32(d as u32),
            FieldType::I64 => FieldValue::I64(d),
            FieldType::U64 => FieldValue::U64(d as u64),
            FieldType::F32 => FieldValue::F32(d as f32),
            FieldType::F64 => FieldValue::F64(d as f64),
            FieldType::String
            | FieldType::VecI32
            | FieldType::VecI64
            | FieldType::VecU32
            | FieldType::VecF32
            | FieldType::VecU8
            | FieldType::VecBool => return None,
        })
    }
}

/// The layout of the options table with union tag `kind` (1-based) in `union`.
pub fn layout(union: OptionsUnion, kind: u8) -> Option<&'static OptionsLayout> {
    union.members().get(usize::from(kind).checked_sub(1)?)
}

/// The union and tag of the options table with this schema name, e.g. `"Conv2DOptions"`.
pub fn by_name(name: &str) -> Option<(OptionsUnion, u8)> {
    [OptionsUnion::Builtin, OptionsUnion::Builtin2]
        .into_iter()
        .find_map(|union| {
            let index = union.members().iter().position(|l| l.name == name)?;
            Some((union, u8::try_from(index + 1).ok()?))
        })
}

/// Options of one operator: the union member and the fields present in the file.
///
/// Fields absent in the file (left at their schema default) are absent here too, so a
/// table written back has exactly the fields it was read with.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinOptions {
    /// Which union the table belongs to.
    pub union: OptionsUnion,
    /// Union type tag (1-based; 0 is NONE and never stored).
    pub kind: u8,
    /// Present fields, ascending by field id.
    pub fields: Vec<(u16, FieldValue)>,
}

impl BuiltinOptions {
    /// Options of union member `kind` with no field set (every field at its default).
    pub fn new(union: OptionsUnion, kind: u8) -> Self {
        BuiltinOptions {
            union,
            kind,
            fields: Vec::new(),
        }
    }

    /// Empty options of the table with this schema name, e.g. `"Conv2DOptions"`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownOptionsTable`] if the schema has no table of that name.
    pub fn by_name(name: &str) -> Result<Self> {
        let (union, kind) = by_name(name).ok_or_else(|| Error::UnknownOptionsTable {
            table: format!("`{name}`"),
        })?;
        Ok(Self::new(union, kind))
    }

    /// The layout of this table, or `None` if the tag is not in the schema.
    pub fn layout(&self) -> Option<&'static OptionsLayout> {
        layout(self.union, self.kind)
    }

    /// The value of a field present in the table (`None` if absent or not in the table).
    pub fn get(&self, field_name: &str) -> Option<&FieldValue> {
        let id = self.layout()?.field_id(field_name)?;
        let index = self.fields.binary_search_by_key(&id, |&(f, _)| f).ok()?;
        Some(&self.fields[index].1)
    }

    /// The value a reader sees: the present value, else the schema default of a scalar
    /// field; `None` for an absent string or vector, or a name not in the table.
    pub fn value(&self, field_name: &str) -> Option<FieldValue> {
        match self.get(field_name) {
            Some(value) => Some(value.clone()),
            None => {
                let layout = self.layout()?;
                layout.default_value(layout.field_id(field_name)?)
            }
        }
    }

    /// Sets a field, replacing any earlier value; the field must exist in the table and
    /// `value` must have its type. Fields stay sorted by id.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownOptionsField`] if the table has no such field,
    /// [`Error::OptionsFieldType`] if `value` has another type.
    pub fn with(mut self, field_name: &str, value: FieldValue) -> Result<Self> {
        let layout = self.layout().ok_or_else(|| Error::UnknownOptionsTable {
            table: format!("with tag {} in {}", self.kind, self.union.schema_name()),
        })?;
        let id = layout
            .field_id(field_name)
            .ok_or_else(|| Error::UnknownOptionsField {
                table: layout.name,
                field: field_name.to_owned(),
            })?;
        let (name, expected) = layout.fields[usize::from(id)];
        let actual = value.field_type();
        if actual != expected {
            return Err(Error::OptionsFieldType {
                table: layout.name,
                field: name,
                expected,
                actual,
            });
        }
        match self.fields.binary_search_by_key(&id, |&(f, _)| f) {
            Ok(index) => self.fields[index].1 = value,
            Err(index) => self.fields.insert(index, (id, value)),
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_sizes_match_schema() {
        // `union BuiltinOptions` ends with RightShiftOptions = 126;
        // `union BuiltinOptions2` ends with StablehloCaseOptions = 23.
        assert_eq!(BUILTIN_OPTIONS.len(), 126);
        assert_eq!(BUILTIN_OPTIONS_2.len(), 23);
        assert_eq!(
            layout(OptionsUnion::Builtin, 126).map(|l| l.name),
            Some("RightShiftOptions")
        );
        assert_eq!(
            layout(OptionsUnion::Builtin2, 20).map(|l| l.name),
            Some("ReduceWindowOptions")
        );
        assert!(layout(OptionsUnion::Builtin, 0).is_none());
        assert!(layout(OptionsUnion::Builtin, 127).is_none());
        assert_eq!(
            layout(OptionsUnion::Builtin2, 23).map(|l| l.name),
            Some("StablehloCaseOptions")
        );
        assert!(layout(OptionsUnion::Builtin2, 24).is_none());
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for union in [OptionsUnion::Builtin, OptionsUnion::Builtin2] {
            for (i, l) in union.members().iter().enumerate() {
                let tag = u8::try_from(i + 1).unwrap();
                assert_eq!(by_name(l.name), Some((union, tag)), "{}", l.name);
                for (id, &(field, _)) in l.fields.iter().enumerate() {
                    assert_eq!(l.field_id(field), Some(id as u16), "{}.{field}", l.name);
                }
                for &(id, _) in l.nonzero_defaults {
                    assert!(l.fields[usize::from(id)].1.is_scalar(), "{}", l.name);
                }
            }
        }
        assert_eq!(by_name("NoSuchOptions"), None);
    }

    #[test]
    fn conv2d_layout() {
        let l = layout(OptionsUnion::Builtin, 1).unwrap();
        assert_eq!(l.name, "Conv2DOptions");
        assert_eq!(
            l.fields,
            &[
                ("padding", FieldType::I8),
                ("stride_w", FieldType::I32),
                ("stride_h", FieldType::I32),
                ("fused_activation_function", FieldType::I8),
                ("dilation_w_factor", FieldType::I32),
                ("dilation_h_factor", FieldType::I32),
                ("quantized_bias_type", FieldType::I8),
            ]
        );
        assert_eq!(l.default_value(4), Some(FieldValue::I32(1)));
        assert_eq!(l.default_value(1), Some(FieldValue::I32(0)));
        assert_eq!(l.default_value(7), None);
    }

    #[test]
    fn spot_checks() {
        let reshape = layout(OptionsUnion::Builtin, 17).unwrap();
        assert_eq!(reshape.name, "ReshapeOptions");
        assert_eq!(reshape.fields, &[("new_shape", FieldType::VecI32)]);

        let (union, kind) = by_name("SqueezeOptions").unwrap();
        assert_eq!((union, kind), (OptionsUnion::Builtin, 30));
        let squeeze = layout(union, kind).unwrap();
        assert_eq!(squeeze.fields, &[("squeeze_dims", FieldType::VecI32)]);
        assert_eq!(squeeze.default_value(0), None);

        let fc = layout(OptionsUnion::Builtin, 8).unwrap();
        assert_eq!(fc.name, "FullyConnectedOptions");
        assert_eq!(fc.field_id("keep_num_dims"), Some(2));

        let bilstm = BuiltinOptions::by_name("BidirectionalSequenceLSTMOptions").unwrap();
        assert_eq!(bilstm.value("time_major"), Some(FieldValue::Bool(true)));
        assert_eq!(bilstm.value("merge_outputs"), Some(FieldValue::Bool(false)));

        let unique = BuiltinOptions::by_name("UniqueOptions").unwrap();
        assert_eq!(unique.value("idx_out_type"), Some(FieldValue::I8(2)));
        let add = BuiltinOptions::by_name("AddOptions").unwrap();
        assert_eq!(add.value("pot_scale_int16"), Some(FieldValue::Bool(true)));
    }

    #[test]
    fn deprecated_field_keeps_its_id() {
        let l = layout(OptionsUnion::Builtin, 15).unwrap();
        assert_eq!(l.name, "ResizeBilinearOptions");
        assert_eq!(l.fields[0], ("new_height", FieldType::I32));
        assert_eq!(l.fields[1], ("new_width", FieldType::I32));
        assert_eq!(l.field_id("align_corners"), Some(2));
        assert_eq!(l.field_id("half_pixel_centers"), Some(3));
    }

    #[test]
    fn builtin_options_2_members() {
        let conv = layout(OptionsUnion::Builtin2, 4).unwrap();
        assert_eq!(conv.name, "StablehloConvolutionOptions");
        assert_eq!(conv.fields.len(), 17);
        assert_eq!(conv.fields[4], ("window_reversal", FieldType::VecBool));
        assert_eq!(conv.fields[16], ("precision_config", FieldType::VecU32));

        let compare = layout(OptionsUnion::Builtin2, 8).unwrap();
        assert_eq!(compare.name, "StablehloCompareOptions");
        assert_eq!(compare.fields[0], ("comparison_direction", FieldType::U32));

        let call = layout(OptionsUnion::Builtin2, 5).unwrap();
        assert_eq!(call.name, "StablehloCustomCallOptions");
        assert_eq!(call.fields[0], ("call_target_name", FieldType::String));
        assert_eq!(call.fields[5], ("custom_attributes", FieldType::VecU8));

        let rng = layout(OptionsUnion::Builtin2, 19).unwrap();
        assert_eq!(rng.fields, &[("algorithm", FieldType::I8)]);
        let window = layout(OptionsUnion::Builtin2, 20).unwrap();
        assert_eq!(window.fields, &[("reduce_function", FieldType::I32)]);

        let composite = layout(OptionsUnion::Builtin2, 21).unwrap();
        assert_eq!(composite.name, "StableHLOCompositeOptions");
        assert_eq!(
            composite.fields[2],
            ("composite_attributes", FieldType::VecU8)
        );
        assert_eq!(
            composite.fields[3],
            ("composite_attributes_format", FieldType::I8)
        );
    }

    #[test]
    fn with_sets_fields_in_id_order() {
        let opts = BuiltinOptions::by_name("Conv2DOptions")
            .and_then(|o| o.with("stride_h", FieldValue::I32(2)))
            .and_then(|o| o.with("padding", FieldValue::I8(1)))
            .and_then(|o| o.with("stride_w", FieldValue::I32(1)))
            .and_then(|o| o.with("stride_h", FieldValue::I32(3)))
            .unwrap();
        assert_eq!((opts.union, opts.kind), (OptionsUnion::Builtin, 1));
        assert_eq!(
            opts.fields,
            vec![
                (0, FieldValue::I8(1)),
                (1, FieldValue::I32(1)),
                (2, FieldValue::I32(3)),
            ]
        );
        assert_eq!(opts.get("stride_h"), Some(&FieldValue::I32(3)));
        assert_eq!(opts.get("dilation_w_factor"), None);
        assert_eq!(opts.value("dilation_w_factor"), Some(FieldValue::I32(1)));
        assert_eq!(opts.get("no_such_field"), None);
    }

    #[test]
    fn with_rejects_unknown_field() {
        let err = BuiltinOptions::by_name("Conv2DOptions")
            .and_then(|o| o.with("stride", FieldValue::I32(1)))
            .unwrap_err();
        assert!(
            matches!(&err, Error::UnknownOptionsField { table: "Conv2DOptions", field } if field == "stride"),
            "{err}"
        );
    }

    #[test]
    fn with_rejects_wrong_type() {
        let err = BuiltinOptions::by_name("ReshapeOptions")
            .and_then(|o| o.with("new_shape", FieldValue::VecI64(vec![1, 2])))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::OptionsFieldType {
                    table: "ReshapeOptions",
                    field: "new_shape",
                    expected: FieldType::VecI32,
                    actual: FieldType::VecI64,
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_tables_are_errors() {
        assert!(matches!(
            BuiltinOptions::by_name("Conv2D"),
            Err(Error::UnknownOptionsTable { .. })
        ));
        let bad = BuiltinOptions::new(OptionsUnion::Builtin2, 200);
        assert!(bad.layout().is_none());
        assert!(matches!(
            bad.with("x", FieldValue::Bool(true)),
            Err(Error::UnknownOptionsTable { .. })
        ));
    }

    #[test]
    fn field_type_of_values() {
        assert_eq!(
            FieldValue::VecBool(vec![true]).field_type(),
            FieldType::VecBool
        );
        assert_eq!(
            FieldValue::String("a".into()).field_type(),
            FieldType::String
        );
        assert_eq!(FieldValue::U64(7).field_type(), FieldType::U64);
        assert!(FieldType::U64.is_scalar());
        assert!(!FieldType::VecU8.is_scalar());
    }
}
