use super::*;
use crate::model::Quantization;
use crate::model::figures::tests::{model, operator, tensor};
use crate::model::ops::builtin_op_code;
use crate::model::options::BuiltinOptions;
use ElementType::{F32, I32, U8};

#[test]
fn codes_match_the_schema_names() {
    let named = [
        ("ADD", ops::ADD),
        ("AVERAGE_POOL_2D", ops::AVERAGE_POOL_2D),
        ("CONCATENATION", ops::CONCATENATION),
        ("CONV_2D", ops::CONV_2D),
        ("DEPTHWISE_CONV_2D", ops::DEPTHWISE_CONV_2D),
        ("DEQUANTIZE", ops::DEQUANTIZE),
        ("FLOOR", ops::FLOOR),
        ("FULLY_CONNECTED", ops::FULLY_CONNECTED),
        ("L2_NORMALIZATION", ops::L2_NORMALIZATION),
        ("L2_POOL_2D", ops::L2_POOL_2D),
        (
            "LOCAL_RESPONSE_NORMALIZATION",
            ops::LOCAL_RESPONSE_NORMALIZATION,
        ),
        ("LOGISTIC", ops::LOGISTIC),
        ("MAX_POOL_2D", ops::MAX_POOL_2D),
        ("MUL", ops::MUL),
        ("RELU", ops::RELU),
        ("RELU_N1_TO_1", ops::RELU_N1_TO_1),
        ("RELU6", ops::RELU6),
        ("RESHAPE", ops::RESHAPE),
        ("RESIZE_BILINEAR", ops::RESIZE_BILINEAR),
        ("SOFTMAX", ops::SOFTMAX),
        ("TANH", ops::TANH),
        ("PAD", ops::PAD),
        ("TRANSPOSE", ops::TRANSPOSE),
        ("MEAN", ops::MEAN),
        ("SUB", ops::SUB),
        ("DIV", ops::DIV),
        ("SQUEEZE", ops::SQUEEZE),
        (
            "UNIDIRECTIONAL_SEQUENCE_LSTM",
            ops::UNIDIRECTIONAL_SEQUENCE_LSTM,
        ),
        ("EXP", ops::EXP),
        ("LOG_SOFTMAX", ops::LOG_SOFTMAX),
        ("CAST", ops::CAST),
        ("PRELU", ops::PRELU),
        ("MAXIMUM", ops::MAXIMUM),
        ("ARG_MAX", ops::ARG_MAX),
        ("MINIMUM", ops::MINIMUM),
        ("NEG", ops::NEG),
        ("PADV2", ops::PADV2),
        ("SIN", ops::SIN),
        ("LOG", ops::LOG),
        ("SUM", ops::SUM),
        ("SQRT", ops::SQRT),
        ("RSQRT", ops::RSQRT),
        ("POW", ops::POW),
        ("ARG_MIN", ops::ARG_MIN),
        ("REDUCE_PROD", ops::REDUCE_PROD),
        ("REDUCE_MAX", ops::REDUCE_MAX),
        ("REDUCE_MIN", ops::REDUCE_MIN),
        ("FLOOR_DIV", ops::FLOOR_DIV),
        ("SQUARE", ops::SQUARE),
        ("FLOOR_MOD", ops::FLOOR_MOD),
        ("RESIZE_NEAREST_NEIGHBOR", ops::RESIZE_NEAREST_NEIGHBOR),
        ("LEAKY_RELU", ops::LEAKY_RELU),
        ("SQUARED_DIFFERENCE", ops::SQUARED_DIFFERENCE),
        ("MIRROR_PAD", ops::MIRROR_PAD),
        ("ABS", ops::ABS),
        ("CEIL", ops::CEIL),
        ("COS", ops::COS),
        ("ELU", ops::ELU),
        ("QUANTIZE", ops::QUANTIZE),
        ("ROUND", ops::ROUND),
        ("HARD_SWISH", ops::HARD_SWISH),
        ("GELU", ops::GELU),
    ];
    for (name, value) in named {
        assert_eq!(builtin_op_code(name), Some(value), "{name}");
    }
}

fn quantized(mut t: Tensor<'static>, scale: f32, zero_point: i64) -> Tensor<'static> {
    t.quantization = Some(Quantization {
        scale: vec![scale],
        zero_point: vec![zero_point],
        ..Quantization::default()
    });
    t
}

fn with_options(
    mut op: Operator<'static>,
    table: &str,
    fields: &[(&str, FieldValue)],
) -> Operator<'static> {
    let mut options = BuiltinOptions::by_name(table).expect("table");
    for (field, value) in fields {
        options = options.with(field, value.clone()).expect("field");
    }
    op.builtin_options = Some(options);
    op
}

/// `in [1,8,8,3] u8 -> CONV_2D(3x3, 4 filters, stride 2, SAME) -> [1,4,4,4] -> RESHAPE [1,64]`.
fn conv_model() -> Model<'static> {
    let conv = with_options(
        operator(ops::CONV_2D, &[Some(0), Some(1), Some(2)], &[3]),
        "Conv2DOptions",
        &[
            ("stride_w", FieldValue::I32(2)),
            ("stride_h", FieldValue::I32(2)),
        ],
    );
    let reshape = with_options(
        operator(ops::RESHAPE, &[Some(3)], &[4]),
        "ReshapeOptions",
        &[("new_shape", FieldValue::VecI32(vec![1, -1]))],
    );
    model(
        vec![
            quantized(tensor("in", U8, &[1, 8, 8, 3], false), 0.5, 128),
            quantized(tensor("w", U8, &[4, 3, 3, 3], true), 0.25, 100),
            quantized(tensor("b", I32, &[4], true), 0.125, 0),
            quantized(tensor("conv", U8, &[1, 4, 4, 4], false), 1.0, 0),
            quantized(tensor("flat", U8, &[1, 64], false), 1.0, 0),
        ],
        vec![conv, reshape],
        &[0],
        &[4],
    )
}

fn expect_invalid(m: &Model<'_>, location: ModelLocation, field: &str) -> String {
    match m.validate() {
        Err(Error::InvalidModel {
            location: l,
            field: f,
            reason,
        }) if l == location && f == field => reason,
        other => panic!("expected InvalidModel at {location}, {field}; got {other:?}"),
    }
}

fn at_tensor(m: &Model<'_>, index: usize) -> ModelLocation {
    ModelLocation::Tensor {
        index,
        name: m.tensors[index].name.to_string(),
    }
}

fn at_op(index: usize, op: &str) -> ModelLocation {
    ModelLocation::Operator {
        index,
        op: op.to_owned(),
    }
}

#[test]
fn a_consistent_model_validates() {
    conv_model().validate().expect("valid");
}

#[test]
fn recorded_shapes_must_match_the_producers() {
    let mut m = conv_model();
    m.tensors[3].shape = vec![2, 4, 4, 4];
    let reason = expect_invalid(&m, at_tensor(&m, 3), "shape");
    assert!(reason.contains("[1, 4, 4, 4]"), "{reason}");

    let mut m = conv_model();
    m.tensors[4].shape = vec![64, 1];
    expect_invalid(&m, at_tensor(&m, 4), "shape");
}

#[test]
fn a_different_input_shape_is_refused_downstream() {
    let mut m = conv_model();
    m.tensors[0].shape = vec![65536, 8, 8, 3];
    expect_invalid(&m, at_tensor(&m, 3), "shape");
}

#[test]
fn negative_zero_and_huge_dimensions_are_refused() {
    for (shape, needle) in [
        (vec![1, i32::MIN, 4, 4], "negative"),
        (vec![1, 0, 4, 4], "is 0"),
        (vec![i32::MAX, i32::MAX, 4, 4], "larger than"),
        (vec![1, 1 << 30, 2, 1], "larger than"),
    ] {
        let mut m = conv_model();
        m.tensors[3].shape = shape;
        let reason = expect_invalid(&m, at_tensor(&m, 3), "shape");
        assert!(reason.contains(needle), "{reason}");
    }
}

#[test]
fn constant_data_must_fit_its_shape() {
    let mut m = conv_model();
    m.tensors[1].shape = vec![4, 3, 3, 2];
    expect_invalid(&m, at_tensor(&m, 1), "buffer");
}

#[test]
fn scales_must_be_finite_normal_and_positive() {
    for bad in [f32::INFINITY, f32::NAN, 0.0, -0.5, 1e-45, 1e10] {
        let mut m = conv_model();
        m.tensors[3].quantization.as_mut().unwrap().scale[0] = bad;
        expect_invalid(&m, at_tensor(&m, 3), "quantization.scale");
    }
}

#[test]
fn scale_and_zero_point_counts_must_agree_with_the_shape() {
    let mut m = conv_model();
    m.tensors[3].quantization.as_mut().unwrap().scale.clear();
    expect_invalid(&m, at_tensor(&m, 3), "quantization.scale");

    let mut m = conv_model();
    let q = m.tensors[1].quantization.as_mut().unwrap();
    q.scale = vec![0.5; 3];
    q.zero_point = vec![0; 3];
    expect_invalid(&m, at_tensor(&m, 1), "quantization.scale");
    m.tensors[1]
        .quantization
        .as_mut()
        .unwrap()
        .quantized_dimension = 3;
    m.validate().expect("3 slices along dimension 3");
    m.tensors[1]
        .quantization
        .as_mut()
        .unwrap()
        .quantized_dimension = 4;
    expect_invalid(&m, at_tensor(&m, 1), "quantization.quantized_dimension");
}

#[test]
fn a_model_that_validates_can_be_written() {
    // Found by fuzzing (fuzz target `validate`): a tensor with 1 min and 33 max values
    // validated, and the writer then refused the model and every segment of it.
    let mut m = conv_model();
    let q = m.tensors[3].quantization.as_mut().unwrap();
    q.min = vec![0.0];
    q.max = vec![1.0; 33];
    expect_invalid(&m, at_tensor(&m, 3), "quantization.min");
    assert!(m.to_bytes().is_err(), "the writer refuses it too");

    let mut m = conv_model();
    m.tensors[0]
        .quantization
        .as_mut()
        .unwrap()
        .quantized_dimension = -1;
    expect_invalid(&m, at_tensor(&m, 0), "quantization.quantized_dimension");

    let mut m = conv_model();
    m.tensors[0].quantization = Some(Quantization {
        min: Vec::new(),
        max: Vec::new(),
        scale: Vec::new(),
        zero_point: Vec::new(),
        quantized_dimension: -2,
    });
    expect_invalid(&m, at_tensor(&m, 0), "quantization.quantized_dimension");

    let mut m = conv_model();
    m.operators[1].mutating_variable_inputs = vec![false; 2];
    expect_invalid(&m, at_op(1, "RESHAPE"), "mutating_variable_inputs");

    let mut m = conv_model();
    m.operators[1].opcode.builtin = BUILTIN_CUSTOM;
    expect_invalid(&m, at_op(1, "CUSTOM"), "opcode.custom_code");

    let mut m = conv_model();
    m.operators[1].opcode.builtin = -3;
    let location = ModelLocation::Operator {
        index: 1,
        op: op_name(&m.operators[1]),
    };
    expect_invalid(&m, location, "opcode.builtin_code");
}

#[test]
fn zero_points_must_fit_the_type() {
    let mut m = conv_model();
    m.tensors[3].quantization.as_mut().unwrap().zero_point[0] = 256;
    expect_invalid(&m, at_tensor(&m, 3), "quantization.zero_point");
}

#[test]
fn requantizing_ops_need_quantized_operands() {
    let mut m = conv_model();
    m.tensors[3].quantization = None;
    expect_invalid(&m, at_tensor(&m, 3), "quantization");
}

#[test]
fn resource_variant_and_int4_activations_are_refused() {
    for t in [ElementType::Resource, ElementType::Variant, ElementType::I4] {
        let mut m = conv_model();
        m.tensors[4].element_type = t;
        expect_invalid(&m, at_tensor(&m, 4), "type");
    }
}

#[test]
fn outputs_must_be_written_by_operators() {
    let mut m = conv_model();
    m.outputs = vec![1];
    let reason = expect_invalid(&m, ModelLocation::Subgraph, "outputs");
    assert!(reason.contains("a constant"), "{reason}");
    m.outputs = vec![0];
    let reason = expect_invalid(&m, ModelLocation::Subgraph, "outputs");
    assert!(reason.contains("a model input"), "{reason}");
}

#[test]
fn operators_must_not_write_variables() {
    // Found by the mutation campaign: a crossing activation marked variable ran, and the
    // segments then lost it (no segment output of that name) or differed from the whole
    // model.
    let mut m = conv_model();
    m.tensors[3].is_variable = true;
    expect_invalid(&m, at_op(0, "CONV_2D"), "outputs");
    let mut m = conv_model();
    m.tensors[0].is_variable = true;
    expect_invalid(&m, ModelLocation::Subgraph, "inputs");
}

#[test]
fn operators_must_not_write_constants() {
    let mut m = conv_model();
    m.operators[1].outputs = vec![2];
    m.outputs = vec![3];
    expect_invalid(&m, at_op(1, "RESHAPE"), "outputs");
}

#[test]
fn conv_needs_its_options_and_positive_strides() {
    let mut m = conv_model();
    m.operators[0].builtin_options = None;
    expect_invalid(&m, at_op(0, "CONV_2D"), "builtin_options");
    let mut m = conv_model();
    let options = m.operators[0].builtin_options.take().unwrap();
    m.operators[0].builtin_options = Some(options.with("stride_h", FieldValue::I32(0)).unwrap());
    expect_invalid(&m, at_op(0, "CONV_2D"), "builtin_options");
}

#[test]
fn reshape_element_counts_must_agree() {
    let mut m = conv_model();
    m.operators[1].builtin_options = Some(
        BuiltinOptions::by_name("ReshapeOptions")
            .and_then(|o| o.with("new_shape", FieldValue::VecI32(vec![0, -1])))
            .unwrap(),
    );
    expect_invalid(&m, at_op(1, "RESHAPE"), "inputs");
}

#[test]
fn quantized_add_needs_a_large_enough_output_scale() {
    let add = |out_scale: f32| {
        model(
            vec![
                quantized(tensor("a", U8, &[1, 4], false), 0.5, 0),
                quantized(tensor("b", U8, &[1, 4], false), 0.25, 0),
                quantized(tensor("sum", U8, &[1, 4], false), out_scale, 0),
            ],
            vec![operator(ops::ADD, &[Some(0), Some(1)], &[2])],
            &[0, 1],
            &[2],
        )
    };
    add(0.5).validate().expect("usual scales");
    let m = add(1e-30);
    expect_invalid(&m, at_tensor(&m, 2), "quantization.scale");
    // 2^20 · 3e38 overflows in single precision, as TFLite computes it (and 3e38 is
    // above MAX_SCALE anyway).
    let m = add(3e38);
    expect_invalid(&m, at_tensor(&m, 2), "quantization.scale");
}

#[test]
fn shape_ops_write_the_type_they_read() {
    let mut m = conv_model();
    m.tensors[4].element_type = ElementType::I8;
    m.tensors[4].quantization.as_mut().unwrap().zero_point[0] = -128;
    let reason = expect_invalid(&m, at_tensor(&m, 4), "type");
    assert!(reason.contains("RESHAPE"), "{reason}");
}

#[test]
fn broadcasting_and_unknown_ops() {
    let m = model(
        vec![
            tensor("a", F32, &[2, 1, 3], false),
            tensor("b", F32, &[4, 1], false),
            tensor("c", F32, &[2, 4, 3], false),
            tensor("d", F32, &[7], false),
        ],
        vec![
            operator(ops::MUL, &[Some(0), Some(1)], &[2]),
            // GATHER is not modelled: trusted, its recorded shape is kept.
            operator(36, &[Some(2)], &[3]),
        ],
        &[0, 1],
        &[3],
    );
    m.validate_with(&Validation::trusted()).expect("valid");
    let mut bad = m.clone();
    bad.tensors[1].shape = vec![4, 2];
    expect_invalid(&bad, at_op(0, "MUL"), "inputs");
    expect_invalid(&m, at_op(1, "GATHER"), "opcode.builtin_code");
}

/// `in [1,4] u8 -> OP(in, c) -> out [1,4]`, `c` a constant of `constant_type` and shape;
/// the shape of what many unmodelled operators are given.
fn one_op_model(
    builtin: i32,
    constant_type: ElementType,
    constant_shape: &[i32],
) -> Model<'static> {
    model(
        vec![
            quantized(tensor("in", U8, &[1, 4], false), 0.5, 128),
            if constant_type == U8 {
                quantized(tensor("c", U8, constant_shape, true), 0.5, 128)
            } else {
                tensor("c", constant_type, constant_shape, true)
            },
            quantized(tensor("out", U8, &[1, 4], false), 0.5, 128),
        ],
        vec![operator(builtin, &[Some(0), Some(1)], &[2])],
        &[0],
        &[2],
    )
}

/// Operators validation does not model are refused under strict validation, naming the
/// operator, and let through when the model is trusted. Each of these crashed or corrupted
/// TFLite 2.9 in a probe of hostile models that passed the earlier, trusting validation.
#[test]
fn unmodelled_operators_are_refused_unless_trusted() {
    for name in [
        "GATHER",
        "GATHER_ND",
        "SCATTER_ND",
        "SLICE",
        "BATCH_MATMUL",
        "SPLIT",
        "SPLIT_V",
        "ONE_HOT",
        "CUMSUM",
        "TILE",
        "FILL",
        "TRANSPOSE_CONV",
        "SPACE_TO_BATCH_ND",
        "BATCH_TO_SPACE_ND",
        "LOCAL_RESPONSE_NORMALIZATION",
        "SQUARED_DIFFERENCE",
        "IF",
        "CALL_ONCE",
    ] {
        let code = builtin_op_code(name).expect(name);
        let m = if code == ops::SQUARED_DIFFERENCE {
            one_op_model(code, U8, &[1, 4])
        } else {
            one_op_model(code, I32, &[2])
        };
        let reason = expect_invalid(&m, at_op(0, name), "opcode.builtin_code");
        assert!(reason.contains("trusted"), "{name}: {reason}");
        // Trusted, only the structural checks apply (outputs of unmodelled operators keep
        // their recorded shapes).
        m.validate_with(&Validation::trusted())
            .unwrap_or_else(|e| panic!("{name}, trusted: {e}"));
    }
}

#[test]
fn every_modelled_operator_has_a_name() {
    let names: Vec<&str> = modelled_operators().collect();
    assert_eq!(names.len(), coverage::MODELLED.len());
    for expected in ["CONV_2D", "STRIDED_SLICE", "UNIDIRECTIONAL_SEQUENCE_LSTM"] {
        assert!(names.contains(&expected), "{names:?}");
    }
}

/// Absent inputs (-1) where a modelled operator's kernel reads the input unconditionally
/// are refused whatever the trust: each is a null pointer TFLite 2.9 dereferences.
#[test]
fn absent_inputs_that_kernels_read_are_refused() {
    for (name, slots) in [
        ("PAD", 2),
        ("MEAN", 2),
        ("STRIDED_SLICE", 4),
        ("TRANSPOSE", 2),
        ("RESIZE_BILINEAR", 2),
        ("ARG_MAX", 2),
    ] {
        let code = builtin_op_code(name).expect(name);
        let mut m = one_op_model(code, I32, &[2]);
        m.operators[0].inputs = (0..slots).map(|s| (s == 0).then_some(0)).collect();
        for validation in [Validation::strict(), Validation::trusted()] {
            match m.validate_with(&validation) {
                Err(Error::InvalidModel {
                    location,
                    field,
                    reason,
                }) => {
                    assert_eq!((location, field), (at_op(0, name), "inputs"), "{reason}");
                    assert!(reason.contains("absent"), "{name}: {reason}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
    // The depthwise kernel copies its bias with memcpy, present or not.
    let mut m = conv_model();
    m.operators[0].opcode.builtin = ops::DEPTHWISE_CONV_2D;
    m.operators[0].inputs[2] = None;
    let reason = expect_invalid(&m, at_op(0, "DEPTHWISE_CONV_2D"), "inputs");
    assert!(reason.contains("absent"), "{reason}");
}

/// Strides and dilations live in 16-bit fields of TFLite's kernel parameters: a dilation
/// of 65536 wraps to 0 and the depthwise kernel divides by it (SIGFPE).
#[test]
fn windows_beyond_sixteen_bits_are_refused() {
    for (field, value) in [
        ("dilation_h_factor", 65536),
        ("dilation_w_factor", 40000),
        ("stride_h", 32768),
        // 3×3 filter: (3 - 1) · 16384 + 1 = 32769 rows, one past the 16-bit padding.
        ("dilation_h_factor", 16384),
    ] {
        let mut m = conv_model();
        let mut options = m.operators[0].builtin_options.clone().expect("options");
        options = options.with(field, FieldValue::I32(value)).expect("field");
        m.operators[0].builtin_options = Some(options);
        for validation in [Validation::strict(), Validation::trusted()] {
            let err = m.validate_with(&validation).expect_err(field);
            assert!(
                matches!(
                    &err,
                    Error::InvalidModel {
                        field: "builtin_options",
                        ..
                    }
                ),
                "{field} {value}: {err}"
            );
        }
    }
}

#[test]
fn strict_validation_refuses_strings_high_ranks_and_newer_fields() {
    let m = one_op_model(ops::ADD, ElementType::String, &[2]);
    expect_invalid(&m, at_tensor(&m, 1), "type");

    let mut m = conv_model();
    m.operators[0].builtin_options = Some(
        m.operators[0]
            .builtin_options
            .clone()
            .expect("options")
            .with("quantized_bias_type", FieldValue::I8(9))
            .expect("field"),
    );
    let reason = expect_invalid(&m, at_op(0, "CONV_2D"), "builtin_options");
    assert!(reason.contains("2.9"), "{reason}");
    m.validate_with(&Validation::trusted()).expect("trusted");
}

#[test]
fn custom_operators_need_a_kernel_or_trust() {
    let mut m = one_op_model(BUILTIN_CUSTOM, I32, &[2]);
    m.operators[0].opcode.custom = Some("Mfcc".into());
    let reason = expect_invalid(&m, at_op(0, "Mfcc"), "opcode.custom_code");
    assert!(reason.contains("register"), "{reason}");
    m.validate_with(&Validation::strict().with_custom_op("Mfcc"))
        .expect("the caller's kernel");
    m.validate_with(&Validation::trusted()).expect("trusted");
    m.operators[0].opcode.custom = Some(crate::model::edgetpu::EDGETPU_CUSTOM_OP.into());
    m.validate().expect("run by the Edge TPU delegate");
}

/// `in [1,5,4] -> STRIDED_SLICE(begin, end, strides) -> out`, int8.
fn strided_slice_model(
    begin: &[i32],
    end: &[i32],
    strides: &[i32],
    masks: &[(&str, i32)],
    out_shape: &[i32],
) -> Model<'static> {
    let ints = |name: &str, values: &[i32]| {
        let mut t = tensor(name, I32, &[values.len() as i32], true);
        t.data = Some(
            values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        );
        t
    };
    let fields: Vec<(&str, FieldValue)> = masks
        .iter()
        .map(|&(f, v)| (f, FieldValue::I32(v)))
        .collect();
    let op = with_options(
        operator(
            ops::STRIDED_SLICE,
            &[Some(0), Some(1), Some(2), Some(3)],
            &[4],
        ),
        "StridedSliceOptions",
        &fields,
    );
    model(
        vec![
            quantized(tensor("in", ElementType::I8, &[1, 5, 4], false), 0.5, 0),
            ints("begin", begin),
            ints("end", end),
            ints("strides", strides),
            quantized(tensor("out", ElementType::I8, out_shape, false), 0.5, 0),
        ],
        vec![op],
        &[0],
        &[4],
    )
}

#[test]
fn strided_slice_shapes_as_tflite_computes_them() {
    // The last time step, as Keras' LSTM models take it: axis 1 shrunk at -1.
    strided_slice_model(
        &[0, -1, 0],
        &[0, 0, 0],
        &[1, 1, 1],
        &[("begin_mask", 5), ("end_mask", 5), ("shrink_axis_mask", 2)],
        &[1, 4],
    )
    .validate()
    .expect("last step");
    // Every other row backwards: 4, 2, 0.
    strided_slice_model(&[0, 4, 0], &[1, -6, 4], &[1, -2, 1], &[], &[1, 3, 4])
        .validate()
        .expect("backwards");
    // A recorded shape that is not what the kernel computes.
    let m = strided_slice_model(&[0, 0, 0], &[1, 5, 4], &[1, 2, 1], &[], &[1, 2, 4]);
    expect_invalid(&m, at_tensor(&m, 4), "shape");
    // Shrinking at the end of a dimension reads one past it.
    let m = strided_slice_model(
        &[0, 5, 0],
        &[1, 6, 4],
        &[1, 1, 1],
        &[("shrink_axis_mask", 2)],
        &[1, 4],
    );
    expect_invalid(&m, at_op(0, "STRIDED_SLICE"), "inputs");
    // Strides shorter than the rank are read past their end.
    let m = strided_slice_model(&[0, 0, 0], &[1, 5, 4], &[1, 1], &[], &[1, 5, 4]);
    expect_invalid(&m, at_op(0, "STRIDED_SLICE"), "inputs");
    // Ellipsis and new axes are not modelled: strict refuses, trusted keeps the record.
    let m = strided_slice_model(
        &[0, 0, 0],
        &[1, 5, 4],
        &[1, 1, 1],
        &[("new_axis_mask", 1)],
        &[1, 1, 5, 4],
    );
    expect_invalid(&m, at_op(0, "STRIDED_SLICE"), "inputs");
    m.validate_with(&Validation::trusted()).expect("trusted");
}
