//! Builtin operator codes of TFLite's `schema.fbs` (schema version 3, up to
//! `STABLEHLO_CASE = 209`): the names of every `enum BuiltinOperator` value, and which options
//! table each operator takes.

use crate::model::options::{self, OptionsUnion};

/// `BuiltinOperator.ADD`.
pub const ADD: i32 = 0;
/// `BuiltinOperator.AVERAGE_POOL_2D`.
pub const AVERAGE_POOL_2D: i32 = 1;
/// `BuiltinOperator.CONCATENATION`.
pub const CONCATENATION: i32 = 2;
/// `BuiltinOperator.CONV_2D`.
pub const CONV_2D: i32 = 3;
/// `BuiltinOperator.DEPTHWISE_CONV_2D`.
pub const DEPTHWISE_CONV_2D: i32 = 4;
/// `BuiltinOperator.DEQUANTIZE`.
pub const DEQUANTIZE: i32 = 6;
/// `BuiltinOperator.FULLY_CONNECTED`.
pub const FULLY_CONNECTED: i32 = 9;
/// `BuiltinOperator.LOGISTIC`.
pub const LOGISTIC: i32 = 14;
/// `BuiltinOperator.MAX_POOL_2D`.
pub const MAX_POOL_2D: i32 = 17;
/// `BuiltinOperator.MUL`.
pub const MUL: i32 = 18;
/// `BuiltinOperator.RESHAPE`.
pub const RESHAPE: i32 = 22;
/// `BuiltinOperator.SOFTMAX`.
pub const SOFTMAX: i32 = 25;
/// `BuiltinOperator.TANH`.
pub const TANH: i32 = 28;
/// `BuiltinOperator.CALL`.
pub const CALL: i32 = 31;
/// `BuiltinOperator.CUSTOM`.
pub const CUSTOM: i32 = 32;
/// `BuiltinOperator.PAD`.
pub const PAD: i32 = 34;
/// `BuiltinOperator.MEAN`.
pub const MEAN: i32 = 40;
/// `BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM`.
pub const UNIDIRECTIONAL_SEQUENCE_LSTM: i32 = 44;
/// `BuiltinOperator.STRIDED_SLICE`.
pub const STRIDED_SLICE: i32 = 45;
/// `BuiltinOperator.TRANSPOSE_CONV`.
pub const TRANSPOSE_CONV: i32 = 67;
/// `BuiltinOperator.QUANTIZE`.
pub const QUANTIZE: i32 = 114;
/// `BuiltinOperator.IF`.
pub const IF: i32 = 118;
/// `BuiltinOperator.WHILE`.
pub const WHILE: i32 = 119;
/// `BuiltinOperator.BATCH_MATMUL`.
pub const BATCH_MATMUL: i32 = 126;
/// `BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES`.
pub const PLACEHOLDER_FOR_GREATER_OP_CODES: i32 = 127;
/// `BuiltinOperator.CALL_ONCE`.
pub const CALL_ONCE: i32 = 129;
/// `BuiltinOperator.FLOOR`.
pub const FLOOR: i32 = 8;
/// `BuiltinOperator.L2_NORMALIZATION`.
pub const L2_NORMALIZATION: i32 = 11;
/// `BuiltinOperator.L2_POOL_2D`.
pub const L2_POOL_2D: i32 = 12;
/// `BuiltinOperator.LOCAL_RESPONSE_NORMALIZATION`.
pub const LOCAL_RESPONSE_NORMALIZATION: i32 = 13;
/// `BuiltinOperator.RELU`.
pub const RELU: i32 = 19;
/// `BuiltinOperator.RELU_N1_TO_1`.
pub const RELU_N1_TO_1: i32 = 20;
/// `BuiltinOperator.RELU6`.
pub const RELU6: i32 = 21;
/// `BuiltinOperator.RESIZE_BILINEAR`.
pub const RESIZE_BILINEAR: i32 = 23;
/// `BuiltinOperator.TRANSPOSE`.
pub const TRANSPOSE: i32 = 39;
/// `BuiltinOperator.SUB`.
pub const SUB: i32 = 41;
/// `BuiltinOperator.DIV`.
pub const DIV: i32 = 42;
/// `BuiltinOperator.SQUEEZE`.
pub const SQUEEZE: i32 = 43;
/// `BuiltinOperator.EXP`.
pub const EXP: i32 = 47;
/// `BuiltinOperator.LOG_SOFTMAX`.
pub const LOG_SOFTMAX: i32 = 50;
/// `BuiltinOperator.CAST`.
pub const CAST: i32 = 53;
/// `BuiltinOperator.PRELU`.
pub const PRELU: i32 = 54;
/// `BuiltinOperator.MAXIMUM`.
pub const MAXIMUM: i32 = 55;
/// `BuiltinOperator.ARG_MAX`.
pub const ARG_MAX: i32 = 56;
/// `BuiltinOperator.MINIMUM`.
pub const MINIMUM: i32 = 57;
/// `BuiltinOperator.NEG`.
pub const NEG: i32 = 59;
/// `BuiltinOperator.PADV2`.
pub const PADV2: i32 = 60;
/// `BuiltinOperator.SIN`.
pub const SIN: i32 = 66;
/// `BuiltinOperator.LOG`.
pub const LOG: i32 = 73;
/// `BuiltinOperator.SUM`.
pub const SUM: i32 = 74;
/// `BuiltinOperator.SQRT`.
pub const SQRT: i32 = 75;
/// `BuiltinOperator.RSQRT`.
pub const RSQRT: i32 = 76;
/// `BuiltinOperator.POW`.
pub const POW: i32 = 78;
/// `BuiltinOperator.ARG_MIN`.
pub const ARG_MIN: i32 = 79;
/// `BuiltinOperator.REDUCE_PROD`.
pub const REDUCE_PROD: i32 = 81;
/// `BuiltinOperator.REDUCE_MAX`.
pub const REDUCE_MAX: i32 = 82;
/// `BuiltinOperator.REDUCE_MIN`.
pub const REDUCE_MIN: i32 = 89;
/// `BuiltinOperator.FLOOR_DIV`.
pub const FLOOR_DIV: i32 = 90;
/// `BuiltinOperator.SQUARE`.
pub const SQUARE: i32 = 92;
/// `BuiltinOperator.FLOOR_MOD`.
pub const FLOOR_MOD: i32 = 95;
/// `BuiltinOperator.RESIZE_NEAREST_NEIGHBOR`.
pub const RESIZE_NEAREST_NEIGHBOR: i32 = 97;
/// `BuiltinOperator.LEAKY_RELU`.
pub const LEAKY_RELU: i32 = 98;
/// `BuiltinOperator.SQUARED_DIFFERENCE`.
pub const SQUARED_DIFFERENCE: i32 = 99;
/// `BuiltinOperator.MIRROR_PAD`.
pub const MIRROR_PAD: i32 = 100;
/// `BuiltinOperator.ABS`.
pub const ABS: i32 = 101;
/// `BuiltinOperator.CEIL`.
pub const CEIL: i32 = 104;
/// `BuiltinOperator.COS`.
pub const COS: i32 = 108;
/// `BuiltinOperator.ELU`.
pub const ELU: i32 = 111;
/// `BuiltinOperator.ROUND`.
pub const ROUND: i32 = 116;
/// `BuiltinOperator.HARD_SWISH`.
pub const HARD_SWISH: i32 = 117;
/// `BuiltinOperator.GELU`.
pub const GELU: i32 = 150;

/// `BuiltinOperator.TEMP_STREAMING_CONV_2D`, the one code outside `0..=209`.
const TEMP_STREAMING_CONV_2D: i32 = 225;

/// Names of codes `0..=209`, in code order (transcribed from `enum BuiltinOperator`).
#[rustfmt::skip]
static NAMES: [&str; 210] = [
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D",
    "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "EMBEDDING_LOOKUP",
    "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION",
    "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION",
    "LSTM", "MAX_POOL_2D", "MUL", "RELU",
    "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
    "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF",
    "TANH", "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL",
    "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN",
    "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE",
    "MEAN", "SUB", "DIV", "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP",
    "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM",
    "ARG_MAX", "MINIMUM", "LESS", "NEG",
    "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL",
    "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL",
    "NOT_EQUAL", "LOG", "SUM", "SQRT",
    "RSQRT", "SHAPE", "POW", "ARG_MIN",
    "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK",
    "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT",
    "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY",
    "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD",
    "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE",
    "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE",
    "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND",
    "COS", "WHERE", "RANK", "ELU",
    "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG",
    "ROUND", "HARD_SWISH", "IF", "WHILE",
    "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2",
    "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL", "PLACEHOLDER_FOR_GREATER_OP_CODES",
    "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D",
    "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS",
    "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE",
    "REDUCE_ALL", "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE",
    "ASSIGN_VARIABLE", "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL", "BUCKETIZE",
    "RANDOM_UNIFORM", "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE",
    "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM",
    "ATAN2", "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST",
    "BITWISE_XOR", "RIGHT_SHIFT", "STABLEHLO_LOGISTIC", "STABLEHLO_ADD",
    "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY", "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE",
    "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE", "STABLEHLO_BROADCAST_IN_DIM", "STABLEHLO_CONVOLUTION",
    "STABLEHLO_SLICE", "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE", "STABLEHLO_ABS",
    "STABLEHLO_AND", "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL", "STABLEHLO_FLOOR",
    "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR",
    "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT", "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE", "STABLEHLO_PAD",
    "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW", "STABLEHLO_SORT",
    "STABLEHLO_WHILE", "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE", "STABLEHLO_SHIFT_LEFT",
    "STABLEHLO_CBRT", "STABLEHLO_CASE",
];

/// The schema name of a builtin operator code, e.g. `FULLY_CONNECTED` for 9.
///
/// Covers every value of the schema's `BuiltinOperator`, including the StableHLO ops and
/// `PLACEHOLDER_FOR_GREATER_OP_CODES` (127); `None` for codes the schema does not define.
pub fn builtin_op_name(code: i32) -> Option<&'static str> {
    if code == TEMP_STREAMING_CONV_2D {
        return Some("TEMP_STREAMING_CONV_2D");
    }
    NAMES.get(usize::try_from(code).ok()?).copied()
}

/// The builtin operator code with this schema name, e.g. 3 for `CONV_2D`.
pub fn builtin_op_code(name: &str) -> Option<i32> {
    if name == "TEMP_STREAMING_CONV_2D" {
        return Some(TEMP_STREAMING_CONV_2D);
    }
    let index = NAMES.iter().position(|&n| n == name)?;
    i32::try_from(index).ok()
}

/// The options union member that goes with a builtin operator, e.g. `Conv2DOptions` (tag 1 of
/// `BuiltinOptions`) for `CONV_2D`; `None` for operators that take no options table.
///
/// Operators whose options table is named after them (`CONV_2D` and `Conv2DOptions`, also
/// empty tables like `QuantizeOptions`) pair by name; the others are explicit: the pooling ops
/// share `Pool2DOptions`, the reductions (`MEAN`, `SUM`, `REDUCE_*`) `ReducerOptions`,
/// `MAXIMUM`/`MINIMUM` `MaximumMinimumOptions`, `CONV_3D_TRANSPOSE` `Conv3DOptions`, the random
/// ops `RandomOptions`, `L2_NORMALIZATION` `L2NormOptions`, `UNIDIRECTIONAL_SEQUENCE_RNN`
/// `SequenceRNNOptions`.
///
/// Converters may leave options out altogether (seen: `QUANTIZE` and some `RESHAPE` ops
/// without a table); the runtime then uses the schema defaults, so writing the empty table or
/// none is equivalent.
pub fn default_options_for(code: i32) -> Option<(OptionsUnion, u8)> {
    options::by_name(options_table_for(code)?)
}

/// The name of the options table of a builtin operator (see [`default_options_for`]).
fn options_table_for(code: i32) -> Option<&'static str> {
    match code {
        0 => Some("AddOptions"),                         // ADD
        1 => Some("Pool2DOptions"),                      // AVERAGE_POOL_2D
        2 => Some("ConcatenationOptions"),               // CONCATENATION
        3 => Some("Conv2DOptions"),                      // CONV_2D
        4 => Some("DepthwiseConv2DOptions"),             // DEPTHWISE_CONV_2D
        5 => Some("DepthToSpaceOptions"),                // DEPTH_TO_SPACE
        6 => Some("DequantizeOptions"),                  // DEQUANTIZE
        9 => Some("FullyConnectedOptions"),              // FULLY_CONNECTED
        11 => Some("L2NormOptions"),                     // L2_NORMALIZATION
        12 => Some("Pool2DOptions"),                     // L2_POOL_2D
        13 => Some("LocalResponseNormalizationOptions"), // LOCAL_RESPONSE_NORMALIZATION
        15 => Some("LSHProjectionOptions"),              // LSH_PROJECTION
        16 => Some("LSTMOptions"),                       // LSTM
        17 => Some("Pool2DOptions"),                     // MAX_POOL_2D
        18 => Some("MulOptions"),                        // MUL
        22 => Some("ReshapeOptions"),                    // RESHAPE
        23 => Some("ResizeBilinearOptions"),             // RESIZE_BILINEAR
        24 => Some("RNNOptions"),                        // RNN
        25 => Some("SoftmaxOptions"),                    // SOFTMAX
        26 => Some("SpaceToDepthOptions"),               // SPACE_TO_DEPTH
        27 => Some("SVDFOptions"),                       // SVDF
        29 => Some("ConcatEmbeddingsOptions"),           // CONCAT_EMBEDDINGS
        30 => Some("SkipGramOptions"),                   // SKIP_GRAM
        31 => Some("CallOptions"),                       // CALL
        33 => Some("EmbeddingLookupSparseOptions"),      // EMBEDDING_LOOKUP_SPARSE
        34 => Some("PadOptions"),                        // PAD
        35 => Some("SequenceRNNOptions"),                // UNIDIRECTIONAL_SEQUENCE_RNN
        36 => Some("GatherOptions"),                     // GATHER
        37 => Some("BatchToSpaceNDOptions"),             // BATCH_TO_SPACE_ND
        38 => Some("SpaceToBatchNDOptions"),             // SPACE_TO_BATCH_ND
        39 => Some("TransposeOptions"),                  // TRANSPOSE
        40 => Some("ReducerOptions"),                    // MEAN
        41 => Some("SubOptions"),                        // SUB
        42 => Some("DivOptions"),                        // DIV
        43 => Some("SqueezeOptions"),                    // SQUEEZE
        44 => Some("UnidirectionalSequenceLSTMOptions"), // UNIDIRECTIONAL_SEQUENCE_LSTM
        45 => Some("StridedSliceOptions"),               // STRIDED_SLICE
        46 => Some("BidirectionalSequenceRNNOptions"),   // BIDIRECTIONAL_SEQUENCE_RNN
        47 => Some("ExpOptions"),                        // EXP
        48 => Some("TopKV2Options"),                     // TOPK_V2
        49 => Some("SplitOptions"),                      // SPLIT
        50 => Some("LogSoftmaxOptions"),                 // LOG_SOFTMAX
        52 => Some("BidirectionalSequenceLSTMOptions"),  // BIDIRECTIONAL_SEQUENCE_LSTM
        53 => Some("CastOptions"),                       // CAST
        55 => Some("MaximumMinimumOptions"),             // MAXIMUM
        56 => Some("ArgMaxOptions"),                     // ARG_MAX
        57 => Some("MaximumMinimumOptions"),             // MINIMUM
        58 => Some("LessOptions"),                       // LESS
        59 => Some("NegOptions"),                        // NEG
        60 => Some("PadV2Options"),                      // PADV2
        61 => Some("GreaterOptions"),                    // GREATER
        62 => Some("GreaterEqualOptions"),               // GREATER_EQUAL
        63 => Some("LessEqualOptions"),                  // LESS_EQUAL
        64 => Some("SelectOptions"),                     // SELECT
        65 => Some("SliceOptions"),                      // SLICE
        67 => Some("TransposeConvOptions"),              // TRANSPOSE_CONV
        68 => Some("SparseToDenseOptions"),              // SPARSE_TO_DENSE
        69 => Some("TileOptions"),                       // TILE
        70 => Some("ExpandDimsOptions"),                 // EXPAND_DIMS
        71 => Some("EqualOptions"),                      // EQUAL
        72 => Some("NotEqualOptions"),                   // NOT_EQUAL
        74 => Some("ReducerOptions"),                    // SUM
        77 => Some("ShapeOptions"),                      // SHAPE
        78 => Some("PowOptions"),                        // POW
        79 => Some("ArgMinOptions"),                     // ARG_MIN
        80 => Some("FakeQuantOptions"),                  // FAKE_QUANT
        81 => Some("ReducerOptions"),                    // REDUCE_PROD
        82 => Some("ReducerOptions"),                    // REDUCE_MAX
        83 => Some("PackOptions"),                       // PACK
        84 => Some("LogicalOrOptions"),                  // LOGICAL_OR
        85 => Some("OneHotOptions"),                     // ONE_HOT
        86 => Some("LogicalAndOptions"),                 // LOGICAL_AND
        87 => Some("LogicalNotOptions"),                 // LOGICAL_NOT
        88 => Some("UnpackOptions"),                     // UNPACK
        89 => Some("ReducerOptions"),                    // REDUCE_MIN
        90 => Some("FloorDivOptions"),                   // FLOOR_DIV
        91 => Some("ReducerOptions"),                    // REDUCE_ANY
        92 => Some("SquareOptions"),                     // SQUARE
        93 => Some("ZerosLikeOptions"),                  // ZEROS_LIKE
        94 => Some("FillOptions"),                       // FILL
        95 => Some("FloorModOptions"),                   // FLOOR_MOD
        96 => Some("RangeOptions"),                      // RANGE
        97 => Some("ResizeNearestNeighborOptions"),      // RESIZE_NEAREST_NEIGHBOR
        98 => Some("LeakyReluOptions"),                  // LEAKY_RELU
        99 => Some("SquaredDifferenceOptions"),          // SQUARED_DIFFERENCE
        100 => Some("MirrorPadOptions"),                 // MIRROR_PAD
        101 => Some("AbsOptions"),                       // ABS
        102 => Some("SplitVOptions"),                    // SPLIT_V
        103 => Some("UniqueOptions"),                    // UNIQUE
        105 => Some("ReverseV2Options"),                 // REVERSE_V2
        106 => Some("AddNOptions"),                      // ADD_N
        107 => Some("GatherNdOptions"),                  // GATHER_ND
        108 => Some("CosOptions"),                       // COS
        109 => Some("WhereOptions"),                     // WHERE
        110 => Some("RankOptions"),                      // RANK
        112 => Some("ReverseSequenceOptions"),           // REVERSE_SEQUENCE
        113 => Some("MatrixDiagOptions"),                // MATRIX_DIAG
        114 => Some("QuantizeOptions"),                  // QUANTIZE
        115 => Some("MatrixSetDiagOptions"),             // MATRIX_SET_DIAG
        117 => Some("HardSwishOptions"),                 // HARD_SWISH
        118 => Some("IfOptions"),                        // IF
        119 => Some("WhileOptions"),                     // WHILE
        120 => Some("NonMaxSuppressionV4Options"),       // NON_MAX_SUPPRESSION_V4
        121 => Some("NonMaxSuppressionV5Options"),       // NON_MAX_SUPPRESSION_V5
        122 => Some("ScatterNdOptions"),                 // SCATTER_ND
        123 => Some("SelectV2Options"),                  // SELECT_V2
        124 => Some("DensifyOptions"),                   // DENSIFY
        125 => Some("SegmentSumOptions"),                // SEGMENT_SUM
        126 => Some("BatchMatMulOptions"),               // BATCH_MATMUL
        128 => Some("CumsumOptions"),                    // CUMSUM
        129 => Some("CallOnceOptions"),                  // CALL_ONCE
        130 => Some("BroadcastToOptions"),               // BROADCAST_TO
        131 => Some("Rfft2dOptions"),                    // RFFT2D
        132 => Some("Conv3DOptions"),                    // CONV_3D
        136 => Some("HashtableOptions"),                 // HASHTABLE
        137 => Some("HashtableFindOptions"),             // HASHTABLE_FIND
        138 => Some("HashtableImportOptions"),           // HASHTABLE_IMPORT
        139 => Some("HashtableSizeOptions"),             // HASHTABLE_SIZE
        140 => Some("ReducerOptions"),                   // REDUCE_ALL
        141 => Some("Conv3DOptions"),                    // CONV_3D_TRANSPOSE
        142 => Some("VarHandleOptions"),                 // VAR_HANDLE
        143 => Some("ReadVariableOptions"),              // READ_VARIABLE
        144 => Some("AssignVariableOptions"),            // ASSIGN_VARIABLE
        146 => Some("RandomOptions"),                    // RANDOM_STANDARD_NORMAL
        147 => Some("BucketizeOptions"),                 // BUCKETIZE
        148 => Some("RandomOptions"),                    // RANDOM_UNIFORM
        149 => Some("RandomOptions"),                    // MULTINOMIAL
        150 => Some("GeluOptions"),                      // GELU
        151 => Some("DynamicUpdateSliceOptions"),        // DYNAMIC_UPDATE_SLICE
        153 => Some("UnsortedSegmentProdOptions"),       // UNSORTED_SEGMENT_PROD
        154 => Some("UnsortedSegmentMaxOptions"),        // UNSORTED_SEGMENT_MAX
        155 => Some("UnsortedSegmentSumOptions"),        // UNSORTED_SEGMENT_SUM
        156 => Some("ATan2Options"),                     // ATAN2
        157 => Some("UnsortedSegmentMinOptions"),        // UNSORTED_SEGMENT_MIN
        158 => Some("SignOptions"),                      // SIGN
        159 => Some("BitcastOptions"),                   // BITCAST
        160 => Some("BitwiseXorOptions"),                // BITWISE_XOR
        161 => Some("RightShiftOptions"),                // RIGHT_SHIFT
        169 => Some("StablehloConcatenateOptions"),      // STABLEHLO_CONCATENATE
        170 => Some("StablehloBroadcastInDimOptions"),   // STABLEHLO_BROADCAST_IN_DIM
        171 => Some("StablehloConvolutionOptions"),      // STABLEHLO_CONVOLUTION
        172 => Some("StablehloSliceOptions"),            // STABLEHLO_SLICE
        173 => Some("StablehloCustomCallOptions"),       // STABLEHLO_CUSTOM_CALL
        174 => Some("StablehloReduceOptions"),           // STABLEHLO_REDUCE
        190 => Some("StablehloScatterOptions"),          // STABLEHLO_SCATTER
        191 => Some("StablehloCompareOptions"),          // STABLEHLO_COMPARE
        193 => Some("StablehloDynamicSliceOptions"),     // STABLEHLO_DYNAMIC_SLICE
        195 => Some("StablehloPadOptions"),              // STABLEHLO_PAD
        196 => Some("StablehloIotaOptions"),             // STABLEHLO_IOTA
        197 => Some("StablehloDotGeneralOptions"),       // STABLEHLO_DOT_GENERAL
        198 => Some("StablehloReduceWindowOptions"),     // STABLEHLO_REDUCE_WINDOW
        199 => Some("StablehloSortOptions"),             // STABLEHLO_SORT
        200 => Some("StablehloWhileOptions"),            // STABLEHLO_WHILE
        201 => Some("StablehloGatherOptions"),           // STABLEHLO_GATHER
        202 => Some("StablehloTransposeOptions"),        // STABLEHLO_TRANSPOSE
        203 => Some("DilateOptions"),                    // DILATE
        204 => Some("StablehloRngBitGeneratorOptions"),  // STABLEHLO_RNG_BIT_GENERATOR
        205 => Some("ReduceWindowOptions"),              // REDUCE_WINDOW
        206 => Some("StableHLOCompositeOptions"),        // STABLEHLO_COMPOSITE
        207 => Some("StablehloShiftLeftOptions"),        // STABLEHLO_SHIFT_LEFT
        209 => Some("StablehloCaseOptions"),             // STABLEHLO_CASE
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_codes() {
        assert_eq!(builtin_op_name(0), Some("ADD"));
        assert_eq!(builtin_op_name(9), Some("FULLY_CONNECTED"));
        assert_eq!(builtin_op_name(32), Some("CUSTOM"));
        assert_eq!(
            builtin_op_name(127),
            Some("PLACEHOLDER_FOR_GREATER_OP_CODES")
        );
        assert_eq!(builtin_op_name(128), Some("CUMSUM"));
        assert_eq!(builtin_op_name(161), Some("RIGHT_SHIFT"));
        assert_eq!(builtin_op_name(162), Some("STABLEHLO_LOGISTIC"));
        assert_eq!(builtin_op_name(204), Some("STABLEHLO_RNG_BIT_GENERATOR"));
        assert_eq!(builtin_op_name(205), Some("REDUCE_WINDOW"));
        assert_eq!(builtin_op_name(206), Some("STABLEHLO_COMPOSITE"));
        assert_eq!(builtin_op_name(209), Some("STABLEHLO_CASE"));
        assert_eq!(builtin_op_name(210), None);
        assert_eq!(builtin_op_name(224), None);
        assert_eq!(builtin_op_name(225), Some("TEMP_STREAMING_CONV_2D"));
        assert_eq!(builtin_op_name(-1), None);
    }

    #[test]
    fn codes_of_names_round_trip() {
        for code in (0..=209).chain([225]) {
            let name = builtin_op_name(code).unwrap();
            assert_eq!(builtin_op_code(name), Some(code), "{name}");
        }
        assert_eq!(builtin_op_code("NO_SUCH_OP"), None);
    }

    #[test]
    fn constants_match_names() {
        let named = [
            (ADD, "ADD"),
            (AVERAGE_POOL_2D, "AVERAGE_POOL_2D"),
            (CONCATENATION, "CONCATENATION"),
            (CONV_2D, "CONV_2D"),
            (DEPTHWISE_CONV_2D, "DEPTHWISE_CONV_2D"),
            (DEQUANTIZE, "DEQUANTIZE"),
            (FULLY_CONNECTED, "FULLY_CONNECTED"),
            (LOGISTIC, "LOGISTIC"),
            (MAX_POOL_2D, "MAX_POOL_2D"),
            (MUL, "MUL"),
            (RESHAPE, "RESHAPE"),
            (SOFTMAX, "SOFTMAX"),
            (TANH, "TANH"),
            (CALL, "CALL"),
            (CUSTOM, "CUSTOM"),
            (PAD, "PAD"),
            (MEAN, "MEAN"),
            (UNIDIRECTIONAL_SEQUENCE_LSTM, "UNIDIRECTIONAL_SEQUENCE_LSTM"),
            (TRANSPOSE_CONV, "TRANSPOSE_CONV"),
            (QUANTIZE, "QUANTIZE"),
            (IF, "IF"),
            (WHILE, "WHILE"),
            (BATCH_MATMUL, "BATCH_MATMUL"),
            (
                PLACEHOLDER_FOR_GREATER_OP_CODES,
                "PLACEHOLDER_FOR_GREATER_OP_CODES",
            ),
            (CALL_ONCE, "CALL_ONCE"),
        ];
        for (code, name) in named {
            assert_eq!(builtin_op_name(code), Some(name));
        }
        assert_eq!(CUSTOM, crate::model::BUILTIN_CUSTOM);
    }

    fn options_name(code: i32) -> Option<&'static str> {
        let (union, kind) = default_options_for(code)?;
        options::layout(union, kind).map(|l| l.name)
    }

    #[test]
    fn options_of_ops() {
        assert_eq!(
            default_options_for(CONV_2D),
            Some((OptionsUnion::Builtin, 1))
        );
        assert_eq!(options_name(FULLY_CONNECTED), Some("FullyConnectedOptions"));
        assert_eq!(options_name(MAX_POOL_2D), Some("Pool2DOptions"));
        assert_eq!(options_name(AVERAGE_POOL_2D), Some("Pool2DOptions"));
        assert_eq!(options_name(12), Some("Pool2DOptions")); // L2_POOL_2D
        assert_eq!(options_name(MEAN), Some("ReducerOptions"));
        assert_eq!(options_name(140), Some("ReducerOptions")); // REDUCE_ALL
        assert_eq!(options_name(61), Some("GreaterOptions"));
        assert_eq!(options_name(57), Some("MaximumMinimumOptions")); // MINIMUM
        assert_eq!(options_name(35), Some("SequenceRNNOptions"));
        assert_eq!(
            options_name(UNIDIRECTIONAL_SEQUENCE_LSTM),
            Some("UnidirectionalSequenceLSTMOptions")
        );
        assert_eq!(options_name(156), Some("ATan2Options")); // ATAN2
        assert_eq!(default_options_for(171), Some((OptionsUnion::Builtin2, 4)));
        assert_eq!(options_name(204), Some("StablehloRngBitGeneratorOptions"));
        for code in [
            LOGISTIC,
            TANH,
            CUSTOM,
            PLACEHOLDER_FOR_GREATER_OP_CODES,
            19,
            163,
            225,
            -5,
        ] {
            assert_eq!(default_options_for(code), None, "{code}");
        }
    }

    #[test]
    fn every_options_table_has_an_op() {
        // Every member of both unions is named by at least one operator.
        for union in [OptionsUnion::Builtin, OptionsUnion::Builtin2] {
            for l in union.members() {
                let found = (0..=209).any(|code| options_table_for(code) == Some(l.name));
                assert!(found, "{}", l.name);
            }
        }
    }

    #[test]
    fn paired_tables_exist() {
        for code in 0..=209 {
            if let Some(name) = options_table_for(code) {
                assert!(options::by_name(name).is_some(), "{name}");
            }
        }
    }
}
