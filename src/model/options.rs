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

/// The layout of options table `kind` (1-based union tag) of `union`, if known.
pub fn layout(union: OptionsUnion, kind: u8) -> Option<&'static OptionsLayout> {
    use FieldType::*;
    static CONV_2D: OptionsLayout = OptionsLayout {
        name: "Conv2DOptions",
        fields: &[
            ("padding", I8),
            ("stride_w", I32),
            ("stride_h", I32),
            ("fused_activation_function", I8),
            ("dilation_w_factor", I32),
            ("dilation_h_factor", I32),
            ("quantized_bias_type", I8),
        ],
    };
    static DEPTHWISE: OptionsLayout = OptionsLayout {
        name: "DepthwiseConv2DOptions",
        fields: &[
            ("padding", I8),
            ("stride_w", I32),
            ("stride_h", I32),
            ("depth_multiplier", I32),
            ("fused_activation_function", I8),
            ("dilation_w_factor", I32),
            ("dilation_h_factor", I32),
        ],
    };
    static POOL: OptionsLayout = OptionsLayout {
        name: "Pool2DOptions",
        fields: &[
            ("padding", I8),
            ("stride_w", I32),
            ("stride_h", I32),
            ("filter_width", I32),
            ("filter_height", I32),
            ("fused_activation_function", I8),
        ],
    };
    static FC: OptionsLayout = OptionsLayout {
        name: "FullyConnectedOptions",
        fields: &[
            ("fused_activation_function", I8),
            ("weights_format", I8),
            ("keep_num_dims", Bool),
            ("asymmetric_quantize_inputs", Bool),
            ("quantized_bias_type", I8),
        ],
    };
    static SOFTMAX: OptionsLayout = OptionsLayout {
        name: "SoftmaxOptions",
        fields: &[("beta", F32)],
    };
    static CONCAT: OptionsLayout = OptionsLayout {
        name: "ConcatenationOptions",
        fields: &[("axis", I32), ("fused_activation_function", I8)],
    };
    static ADD: OptionsLayout = OptionsLayout {
        name: "AddOptions",
        fields: &[("fused_activation_function", I8), ("pot_scale_int16", Bool)],
    };
    static RESHAPE: OptionsLayout = OptionsLayout {
        name: "ReshapeOptions",
        fields: &[("new_shape", VecI32)],
    };
    static RESIZE_BILINEAR: OptionsLayout = OptionsLayout {
        name: "ResizeBilinearOptions",
        fields: &[
            ("new_height", I32),
            ("new_width", I32),
            ("align_corners", Bool),
            ("half_pixel_centers", Bool),
        ],
    };
    static REDUCER: OptionsLayout = OptionsLayout {
        name: "ReducerOptions",
        fields: &[("keep_dims", Bool)],
    };
    static DEQUANTIZE: OptionsLayout = OptionsLayout {
        name: "DequantizeOptions",
        fields: &[],
    };
    static SEQ_LSTM: OptionsLayout = OptionsLayout {
        name: "UnidirectionalSequenceLSTMOptions",
        fields: &[
            ("fused_activation_function", I8),
            ("cell_clip", F32),
            ("proj_clip", F32),
            ("time_major", Bool),
            ("asymmetric_quantize_inputs", Bool),
            ("diagonal_recurrent_tensors", Bool),
        ],
    };
    static ARG_MAX: OptionsLayout = OptionsLayout {
        name: "ArgMaxOptions",
        fields: &[("output_type", I8)],
    };
    match (union, kind) {
        (OptionsUnion::Builtin, 40) => Some(&ARG_MAX),
        (OptionsUnion::Builtin, 15) => Some(&RESIZE_BILINEAR),
        (OptionsUnion::Builtin, 27) => Some(&REDUCER),
        (OptionsUnion::Builtin, 38) => Some(&DEQUANTIZE),
        (OptionsUnion::Builtin, 71) => Some(&SEQ_LSTM),
        (OptionsUnion::Builtin, 1) => Some(&CONV_2D),
        (OptionsUnion::Builtin, 2) => Some(&DEPTHWISE),
        (OptionsUnion::Builtin, 5) => Some(&POOL),
        (OptionsUnion::Builtin, 8) => Some(&FC),
        (OptionsUnion::Builtin, 9) => Some(&SOFTMAX),
        (OptionsUnion::Builtin, 10) => Some(&CONCAT),
        (OptionsUnion::Builtin, 11) => Some(&ADD),
        (OptionsUnion::Builtin, 17) => Some(&RESHAPE),
        _ => None,
    }
}
