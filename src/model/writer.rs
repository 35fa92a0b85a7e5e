//! Encoding a [`Model`] as `.tflite` bytes (schema version 3, identifier `TFL3`).
//!
//! Layout of the output: the model table, its operator codes, the one subgraph (tensors,
//! then operators), the description, then the buffers (constant data, 16-byte aligned)
//! and the metadata entries. Buffer 0 is the empty sentinel; constant tensors with the
//! same bytes share one buffer (as TensorFlow's converter writes them), whether or not they
//! borrow the same memory; a variable's initial value and every metadata blob get a buffer
//! of their own. The output is a pure function of the model's value.

use std::collections::HashMap;

use super::fbwrite::{self, Child, Value};
use super::options::{self, BuiltinOptions, FieldValue, OptionsUnion};
use super::reader::{IDENTIFIER, ids};
use super::{BUILTIN_CUSTOM, Model, OpCode, Operator, Quantization, Tensor};
use crate::error::{Error, Result};

/// Alignment of constant data in the file (the schema's `force_align: 16`).
const DATA_ALIGN: usize = 16;

fn invalid(reason: String) -> Error {
    Error::invalid("model", reason)
}

fn check_index(index: usize, count: usize, what: impl FnOnce() -> String) -> Result<()> {
    if index < count {
        Ok(())
    } else {
        Err(invalid(format!(
            "{}: tensor index {index} out of range ({count} tensors)",
            what()
        )))
    }
}

fn validate_options(opts: &BuiltinOptions, what: &str) -> Result<()> {
    let layout = options::layout(opts.union, opts.kind).ok_or_else(|| {
        invalid(format!(
            "{what}: options type {} of {:?} unknown",
            opts.kind, opts.union
        ))
    })?;
    let mut previous: Option<u16> = None;
    for (id, value) in &opts.fields {
        if previous.is_some_and(|p| p >= *id) {
            return Err(invalid(format!(
                "{what}: {} field ids not strictly ascending at {id}",
                layout.name
            )));
        }
        previous = Some(*id);
        let Some(&(name, ty)) = layout.fields.get(usize::from(*id)) else {
            return Err(invalid(format!(
                "{what}: {} has no field id {id}",
                layout.name
            )));
        };
        if value.field_type() != ty {
            return Err(invalid(format!(
                "{what}: {}.{name} is {ty:?}, got {:?}",
                layout.name,
                value.field_type()
            )));
        }
    }
    Ok(())
}

fn validate_quantization(q: &Quantization, tensor: &Tensor<'_>, what: &str) -> Result<()> {
    if q.min.len() != q.max.len() {
        return Err(invalid(format!(
            "{what}: {} min values but {} max values",
            q.min.len(),
            q.max.len()
        )));
    }
    if !q.scale.is_empty() && !q.zero_point.is_empty() && q.scale.len() != q.zero_point.len() {
        return Err(invalid(format!(
            "{what}: {} scales but {} zero points",
            q.scale.len(),
            q.zero_point.len()
        )));
    }
    if q.quantized_dimension < 0 {
        return Err(invalid(format!(
            "{what}: negative quantized_dimension {}",
            q.quantized_dimension
        )));
    }
    if q.scale.len() > 1 {
        let dim = usize::try_from(q.quantized_dimension)
            .ok()
            .and_then(|d| tensor.shape.get(d));
        if dim.and_then(|&d| usize::try_from(d).ok()) != Some(q.scale.len()) {
            return Err(invalid(format!(
                "{what}: {} per-channel scales do not match dimension {} of shape {:?}",
                q.scale.len(),
                q.quantized_dimension,
                tensor.shape
            )));
        }
    }
    Ok(())
}

impl Model<'_> {
    /// Checks that the model can be written: tensor indices in range, options matching
    /// their layouts, quantization vectors consistent, custom ops named.
    fn check_writable(&self) -> Result<()> {
        if self.version != super::SCHEMA_VERSION {
            return Err(invalid(format!(
                "schema version {} (only 3 can be written)",
                self.version
            )));
        }
        let count = self.tensors.len();
        for &i in &self.inputs {
            check_index(i, count, || "subgraph inputs".into())?;
        }
        for &i in &self.outputs {
            check_index(i, count, || "subgraph outputs".into())?;
        }
        for (t, tensor) in self.tensors.iter().enumerate() {
            if let Some(q) = &tensor.quantization {
                validate_quantization(q, tensor, &format!("tensor {t} `{}`", tensor.name))?;
            }
        }
        for (o, op) in self.operators.iter().enumerate() {
            let what = || format!("operator {o}");
            for &i in op.inputs.iter().flatten() {
                check_index(i, count, || format!("{} inputs", what()))?;
            }
            for &i in &op.outputs {
                check_index(i, count, || format!("{} outputs", what()))?;
            }
            for &i in &op.intermediates {
                check_index(i, count, || format!("{} intermediates", what()))?;
            }
            if !op.mutating_variable_inputs.is_empty()
                && op.mutating_variable_inputs.len() != op.inputs.len()
            {
                return Err(invalid(format!(
                    "{}: {} mutating_variable_inputs flags for {} inputs",
                    what(),
                    op.mutating_variable_inputs.len(),
                    op.inputs.len()
                )));
            }
            if op.opcode.builtin < 0 {
                return Err(invalid(format!(
                    "{}: negative builtin code {}",
                    what(),
                    op.opcode.builtin
                )));
            }
            if op.opcode.builtin == BUILTIN_CUSTOM && op.opcode.custom.is_none() {
                return Err(invalid(format!("{}: custom op without a name", what())));
            }
            if let Some(opts) = &op.builtin_options {
                validate_options(opts, &what())?;
            }
        }
        Ok(())
    }

    /// Encodes the model as a `.tflite` file.
    ///
    /// The model is validated first ([`Error::Invalid`] on bad indices, options that do
    /// not match their layout, inconsistent quantization). A constant tensor with empty
    /// data is written without a buffer, so it reads back with `data == None`. Files over
    /// 2 GiB are refused with [`Error::Unsupported`]. The same model always gives the
    /// same bytes. Nothing outside the model is written: bytes a source file carried
    /// after its flatbuffer (e.g. a zip of label files) and its signature defs are gone.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for bad indices, options that do not match their layout or
    /// inconsistent quantization; [`Error::Unsupported`] for files over 2 GiB.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.check_writable()?;

        // Operator codes in first-use order.
        let mut codes: Vec<&OpCode<'_>> = Vec::new();
        let mut code_index: HashMap<&OpCode<'_>, u32> = HashMap::new();
        let mut op_codes = Vec::with_capacity(self.operators.len());
        for op in &self.operators {
            let next = u32::try_from(codes.len())
                .map_err(|_| invalid("too many operator codes".into()))?;
            let i = *code_index.entry(&op.opcode).or_insert_with(|| {
                codes.push(&op.opcode);
                next
            });
            op_codes.push(i);
        }

        // Buffers: the empty sentinel, constant data, then metadata blobs.
        let mut buffers: Vec<&[u8]> = vec![&[]];
        // Keyed by content, not address: a model and its `into_owned` copy are equal and
        // must write the same bytes.
        let mut shared: HashMap<&[u8], u32> = HashMap::new();
        let mut tensor_buffers = Vec::with_capacity(self.tensors.len());
        for tensor in &self.tensors {
            let b = match tensor.data.as_deref() {
                Some(data) if !data.is_empty() => {
                    let next = u32::try_from(buffers.len())
                        .map_err(|_| invalid("too many buffers".into()))?;
                    if tensor.is_variable {
                        buffers.push(data);
                        next
                    } else {
                        *shared.entry(data).or_insert_with(|| {
                            buffers.push(data);
                            next
                        })
                    }
                }
                _ => 0,
            };
            tensor_buffers.push(b);
        }
        let mut metadata_buffers = Vec::with_capacity(self.metadata.len());
        for m in &self.metadata {
            metadata_buffers.push(
                u32::try_from(buffers.len()).map_err(|_| invalid("too many buffers".into()))?,
            );
            buffers.push(&m.data);
        }

        let root: Child<'_> = Box::new(|b| {
            use ids::model as f;
            let mut fields = vec![
                (f::VERSION, Value::scalar(self.version)),
                (
                    f::OPERATOR_CODES,
                    Value::children(codes.iter().map(|&c| opcode(c)).collect()),
                ),
                (
                    f::SUBGRAPHS,
                    Value::children(vec![Box::new(|b| {
                        self.write_subgraph(b, &tensor_buffers, &op_codes)
                    })]),
                ),
                (
                    f::BUFFERS,
                    Value::children(buffers.iter().map(|&data| buffer(data)).collect()),
                ),
            ];
            if let Some(d) = &self.description {
                fields.push((f::DESCRIPTION, Value::string(d)));
            }
            if !self.metadata.is_empty() {
                let entries = self
                    .metadata
                    .iter()
                    .zip(&metadata_buffers)
                    .map(|(m, &buf)| -> Child<'_> {
                        Box::new(move |b| {
                            b.table(vec![
                                (ids::metadata::NAME, Value::string(&m.name)),
                                (ids::metadata::BUFFER, Value::scalar(buf)),
                            ])
                        })
                    })
                    .collect();
                fields.push((f::METADATA, Value::children(entries)));
            }
            b.table(fields)
        });
        fbwrite::build(IDENTIFIER, root)
    }

    fn write_subgraph(
        &self,
        b: &mut fbwrite::Builder,
        tensor_buffers: &[u32],
        op_codes: &[u32],
    ) -> Result<usize> {
        use ids::subgraph as f;
        let tensors = self
            .tensors
            .iter()
            .zip(tensor_buffers)
            .map(|(t, &buf)| -> Child<'_> { Box::new(move |b| write_tensor(b, t, buf)) })
            .collect();
        let operators = self
            .operators
            .iter()
            .zip(op_codes)
            .map(|(op, &code)| -> Child<'_> { Box::new(move |b| write_operator(b, op, code)) })
            .collect();
        let mut fields = vec![
            (f::TENSORS, Value::children(tensors)),
            (f::INPUTS, Value::scalars(indices(&self.inputs)?)),
            (f::OUTPUTS, Value::scalars(indices(&self.outputs)?)),
            (f::OPERATORS, Value::children(operators)),
        ];
        if let Some(name) = &self.subgraph_name {
            fields.push((f::NAME, Value::string(name)));
        }
        b.table(fields)
    }
}

/// Tensor indices as the file's int32.
fn indices(v: &[usize]) -> Result<Vec<i32>> {
    v.iter()
        .map(|&i| i32::try_from(i).map_err(|_| invalid(format!("tensor index {i} too large"))))
        .collect()
}

fn opcode<'c>(c: &'c OpCode<'_>) -> Child<'c> {
    Box::new(move |b| {
        use ids::opcode as f;
        // The 127 rule: codes above 126 live only in `builtin_code`.
        let deprecated = i8::try_from(c.builtin.min(127)).unwrap_or(127);
        let mut fields = vec![
            (f::DEPRECATED_BUILTIN_CODE, Value::scalar(deprecated)),
            (f::VERSION, Value::scalar(c.version)),
            (f::BUILTIN_CODE, Value::scalar(c.builtin)),
        ];
        if let Some(name) = &c.custom {
            fields.push((f::CUSTOM_CODE, Value::string(name)));
        }
        b.table(fields)
    })
}

fn buffer(data: &[u8]) -> Child<'_> {
    Box::new(move |b| {
        if data.is_empty() {
            b.table(Vec::new())
        } else {
            b.table(vec![(ids::buffer::DATA, Value::bytes(data, DATA_ALIGN))])
        }
    })
}

fn write_tensor(b: &mut fbwrite::Builder, t: &Tensor<'_>, buffer: u32) -> Result<usize> {
    use ids::tensor as f;
    let mut fields = vec![
        (f::SHAPE, Value::scalars(&t.shape[..])),
        (f::TYPE, Value::scalar(t.element_type.code())),
        (f::BUFFER, Value::scalar(buffer)),
        (f::NAME, Value::string(&t.name)),
    ];
    if let Some(q) = &t.quantization {
        fields.push((
            f::QUANTIZATION,
            Value::child(move |b| write_quantization(b, q)),
        ));
    }
    if t.is_variable {
        fields.push((f::IS_VARIABLE, Value::boolean(true)));
    }
    if let Some(sig) = &t.shape_signature {
        fields.push((f::SHAPE_SIGNATURE, Value::scalars(&sig[..])));
    }
    if t.has_rank {
        fields.push((f::HAS_RANK, Value::boolean(true)));
    }
    b.table(fields)
}

fn write_quantization(b: &mut fbwrite::Builder, q: &Quantization) -> Result<usize> {
    use ids::quantization as f;
    let mut fields = Vec::new();
    if !q.min.is_empty() {
        fields.push((f::MIN, Value::scalars(&q.min[..])));
    }
    if !q.max.is_empty() {
        fields.push((f::MAX, Value::scalars(&q.max[..])));
    }
    if !q.scale.is_empty() {
        fields.push((f::SCALE, Value::scalars(&q.scale[..])));
    }
    if !q.zero_point.is_empty() {
        fields.push((f::ZERO_POINT, Value::scalars(&q.zero_point[..])));
    }
    if q.quantized_dimension != 0 {
        fields.push((f::QUANTIZED_DIMENSION, Value::scalar(q.quantized_dimension)));
    }
    b.table(fields)
}

fn write_operator(b: &mut fbwrite::Builder, op: &Operator<'_>, code: u32) -> Result<usize> {
    use ids::operator as f;
    let inputs = op
        .inputs
        .iter()
        .map(|i| match i {
            Some(i) => {
                i32::try_from(*i).map_err(|_| invalid(format!("tensor index {i} too large")))
            }
            None => Ok(-1),
        })
        .collect::<Result<Vec<i32>>>()?;
    let mut fields = vec![
        (f::OPCODE_INDEX, Value::scalar(code)),
        (f::INPUTS, Value::scalars(inputs)),
        (f::OUTPUTS, Value::scalars(indices(&op.outputs)?)),
    ];
    if let Some(opts) = &op.builtin_options {
        let (type_id, value_id) = match opts.union {
            OptionsUnion::Builtin => (f::BUILTIN_OPTIONS_TYPE, f::BUILTIN_OPTIONS),
            OptionsUnion::Builtin2 => (f::BUILTIN_OPTIONS_2_TYPE, f::BUILTIN_OPTIONS_2),
        };
        fields.push((type_id, Value::scalar(opts.kind)));
        fields.push((value_id, Value::child(move |b| write_options(b, opts))));
    }
    if let Some(custom) = &op.custom_options {
        fields.push((f::CUSTOM_OPTIONS, Value::bytes(custom, DATA_ALIGN)));
    }
    if op.custom_options_format != 0 {
        fields.push((
            f::CUSTOM_OPTIONS_FORMAT,
            Value::scalar(op.custom_options_format),
        ));
    }
    if !op.mutating_variable_inputs.is_empty() {
        let flags: Vec<u8> = op
            .mutating_variable_inputs
            .iter()
            .map(|&m| u8::from(m))
            .collect();
        fields.push((f::MUTATING_VARIABLE_INPUTS, Value::scalars(flags)));
    }
    if !op.intermediates.is_empty() {
        fields.push((
            f::INTERMEDIATES,
            Value::scalars(indices(&op.intermediates)?),
        ));
    }
    b.table(fields)
}

fn write_options(b: &mut fbwrite::Builder, opts: &BuiltinOptions) -> Result<usize> {
    let fields = opts
        .fields
        .iter()
        .map(|(id, value)| {
            let v = match value {
                FieldValue::Bool(x) => Value::boolean(*x),
                FieldValue::I8(x) => Value::scalar(*x),
                FieldValue::U8(x) => Value::scalar(*x),
                FieldValue::I16(x) => Value::scalar(*x),
                FieldValue::U16(x) => Value::scalar(*x),
                FieldValue::I32(x) => Value::scalar(*x),
                FieldValue::U32(x) => Value::scalar(*x),
                FieldValue::I64(x) => Value::scalar(*x),
                FieldValue::U64(x) => Value::scalar(*x),
                FieldValue::F32(x) => Value::scalar(*x),
                FieldValue::F64(x) => Value::scalar(*x),
                FieldValue::String(s) => Value::string(s),
                FieldValue::VecI32(v) => Value::scalars(&v[..]),
                FieldValue::VecI64(v) => Value::scalars(&v[..]),
                FieldValue::VecU32(v) => Value::scalars(&v[..]),
                FieldValue::VecF32(v) => Value::scalars(&v[..]),
                FieldValue::VecU8(v) => Value::scalars(&v[..]),
                FieldValue::VecBool(v) => {
                    Value::scalars(v.iter().map(|&x| u8::from(x)).collect::<Vec<u8>>())
                }
            };
            (*id, v)
        })
        .collect();
    b.table(fields)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::super::flatbuf::{Budget, Path, Table};
    use super::super::{ElementType, Metadata};
    use super::*;

    const WEIGHTS: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    fn tensor(name: &'static str, data: Option<&'static [u8]>) -> Tensor<'static> {
        Tensor {
            name: Cow::Borrowed(name),
            element_type: ElementType::I8,
            shape: vec![2, 4],
            shape_signature: Some(vec![-1, 4]),
            quantization: Some(Quantization {
                scale: vec![0.5, 0.25],
                zero_point: vec![0, 0],
                ..Quantization::default()
            }),
            data: data.map(Cow::Borrowed),
            is_variable: false,
            has_rank: true,
        }
    }

    fn op(
        builtin: i32,
        custom: Option<&'static str>,
        inputs: Vec<Option<usize>>,
    ) -> Operator<'static> {
        Operator {
            opcode: OpCode {
                builtin,
                custom: custom.map(Cow::Borrowed),
                version: 2,
            },
            inputs,
            outputs: vec![2],
            intermediates: Vec::new(),
            builtin_options: None,
            custom_options: None,
            custom_options_format: 0,
            mutating_variable_inputs: Vec::new(),
        }
    }

    /// Three tensors (input, shared weights, output) and three operators, two sharing
    /// an op code, one with a code above 127.
    fn sample() -> Model<'static> {
        let mut conv = op(3, None, vec![Some(0), Some(1), None]);
        conv.builtin_options = Some(
            BuiltinOptions::by_name("Conv2DOptions")
                .and_then(|o| o.with("stride_w", FieldValue::I32(2)))
                .and_then(|o| o.with("padding", FieldValue::I8(1)))
                .expect("options"),
        );
        conv.mutating_variable_inputs = vec![false, true, false];
        let mut custom = op(BUILTIN_CUSTOM, Some("my-op"), vec![Some(0)]);
        custom.custom_options = Some(Cow::Borrowed(&[0xAA, 0xBB]));
        custom.intermediates = vec![1];
        let mut big = op(150, None, vec![Some(2)]);
        big.builtin_options = Some(
            BuiltinOptions::by_name("StablehloConcatenateOptions")
                .and_then(|o| o.with("dimension", FieldValue::I64(-1)))
                .expect("options 2"),
        );
        Model {
            version: 3,
            description: Some(Cow::Borrowed("test model")),
            subgraph_name: Some(Cow::Borrowed("main")),
            tensors: vec![
                tensor("in", None),
                tensor("w", Some(&WEIGHTS)),
                tensor("out", None),
            ],
            operators: vec![conv, custom.clone(), big, op(3, None, vec![Some(0)])],
            inputs: vec![0],
            outputs: vec![2],
            metadata: vec![Metadata {
                name: Cow::Borrowed("min_runtime_version"),
                data: Cow::Borrowed(b"1.5.0"),
            }],
        }
    }

    fn invalid_reason(m: &Model<'_>) -> String {
        match m.to_bytes() {
            Err(Error::Invalid { reason, .. }) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn hand_built_model_round_trips() {
        let m = sample();
        let bytes = m.to_bytes().expect("write");
        let back = Model::from_bytes(&bytes).expect("read");
        assert_eq!(back, m);
        assert_eq!(bytes, back.to_bytes().expect("write again"));
    }

    #[test]
    fn operator_codes_are_deduplicated_in_first_use_order() {
        let bytes = sample().to_bytes().expect("write");
        let p = Path::root("model");
        let budget = Budget::for_input(bytes.len());
        let root = Table::root(&bytes, &p).expect("root");
        let codes = root
            .vector(ids::model::OPERATOR_CODES, 4, &p)
            .expect("codes")
            .expect("present");
        assert_eq!(codes.len(), 3);
        let code = |i: usize| {
            let t = codes.table(i, &p).expect("code");
            (
                t.scalar::<i8>(ids::opcode::DEPRECATED_BUILTIN_CODE, 0, &p)
                    .expect("dep"),
                t.scalar::<i32>(ids::opcode::BUILTIN_CODE, 0, &p)
                    .expect("code"),
                t.string(ids::opcode::CUSTOM_CODE, &budget, &p)
                    .expect("custom"),
            )
        };
        assert_eq!(code(0), (3, 3, None));
        assert_eq!(code(1), (32, 32, Some("my-op")));
        assert_eq!(code(2), (127, 150, None));
    }

    #[test]
    fn options_of_the_second_union_use_their_own_fields() {
        let bytes = sample().to_bytes().expect("write");
        let p = Path::root("model");
        let root = Table::root(&bytes, &p).expect("root");
        let sg = root
            .vector(ids::model::SUBGRAPHS, 4, &p)
            .and_then(|v| v.expect("subgraphs").table(0, &p))
            .expect("subgraph");
        let ops = sg
            .vector(ids::subgraph::OPERATORS, 4, &p)
            .expect("ops")
            .expect("present");
        let conv = ops.table(0, &p).expect("conv");
        assert!(
            conv.has(ids::operator::BUILTIN_OPTIONS_TYPE)
                && conv.has(ids::operator::BUILTIN_OPTIONS)
        );
        assert!(!conv.has(ids::operator::BUILTIN_OPTIONS_2));
        let big = ops.table(2, &p).expect("op 2");
        assert!(!big.has(ids::operator::BUILTIN_OPTIONS_TYPE));
        assert_eq!(
            big.scalar::<u8>(ids::operator::BUILTIN_OPTIONS_2_TYPE, 0, &p)
                .expect("type"),
            1
        );
        assert!(big.has(ids::operator::BUILTIN_OPTIONS_2));
    }

    #[test]
    fn buffers_hold_the_sentinel_shared_constants_and_metadata() {
        let mut m = sample();
        // A second tensor borrowing the very same bytes shares their buffer.
        m.tensors.push(tensor("w2", Some(&WEIGHTS)));
        let bytes = m.to_bytes().expect("write");
        let p = Path::root("model");
        let root = Table::root(&bytes, &p).expect("root");
        let buffers = root
            .vector(ids::model::BUFFERS, 4, &p)
            .expect("buffers")
            .expect("present");
        assert_eq!(buffers.len(), 3, "sentinel, weights, metadata");
        let sentinel = buffers.table(0, &p).expect("buffer 0");
        assert!(!sentinel.has(ids::buffer::DATA));
        let back = Model::from_bytes(&bytes).expect("read");
        assert_eq!(back.tensors[3].data, back.tensors[1].data);
        assert_eq!(back.metadata, m.metadata);
    }

    #[test]
    fn equal_constants_share_a_buffer_wherever_their_bytes_live() {
        // Found on TensorFlow 2.12's output, whose tensors share buffers: the model read
        // from the file and its owned copy are equal, and wrote different files when
        // sharing followed addresses.
        let mut m = sample();
        m.tensors.push(tensor("w2", Some(&WEIGHTS)));
        m.tensors[3].data = Some(Cow::Owned(WEIGHTS.to_vec()));
        let mut variable = tensor("state", None);
        variable.data = Some(Cow::Owned(WEIGHTS.to_vec()));
        variable.is_variable = true;
        m.tensors.push(variable);
        let bytes = m.to_bytes().expect("write");
        let p = Path::root("model");
        let buffers = Table::root(&bytes, &p)
            .expect("root")
            .vector(ids::model::BUFFERS, 4, &p)
            .expect("buffers")
            .expect("present");
        assert_eq!(
            buffers.len(),
            4,
            "sentinel, the shared weights, the variable's own, metadata"
        );
        let owned = Model::from_bytes(&bytes).expect("read").into_owned();
        assert_eq!(owned.to_bytes().expect("write owned"), bytes);
    }

    #[test]
    fn empty_constant_data_reads_back_as_none() {
        let mut m = sample();
        m.tensors[1].data = Some(Cow::Borrowed(&[]));
        let back_bytes = m.to_bytes().expect("write");
        let back = Model::from_bytes(&back_bytes).expect("read");
        assert_eq!(back.tensors[1].data, None);
    }

    #[test]
    fn rejects_out_of_range_tensor_indices() {
        let mut m = sample();
        m.inputs = vec![3];
        assert!(invalid_reason(&m).contains("subgraph inputs: tensor index 3"));
        let mut m = sample();
        m.outputs = vec![9];
        assert!(invalid_reason(&m).contains("subgraph outputs"));
        let mut m = sample();
        m.operators[0].inputs[2] = Some(5);
        assert!(invalid_reason(&m).contains("operator 0 inputs"));
        let mut m = sample();
        m.operators[1].outputs = vec![3];
        assert!(invalid_reason(&m).contains("operator 1 outputs"));
        let mut m = sample();
        m.operators[1].intermediates = vec![4];
        assert!(invalid_reason(&m).contains("operator 1 intermediates"));
    }

    #[test]
    fn rejects_options_not_matching_their_layout() {
        let mut m = sample();
        let opts = m.operators[0].builtin_options.as_mut().expect("options");
        opts.fields[0].1 = FieldValue::F32(1.0);
        assert!(invalid_reason(&m).contains("Conv2DOptions.padding is I8"));

        let mut m = sample();
        let opts = m.operators[0].builtin_options.as_mut().expect("options");
        opts.fields.push((200, FieldValue::I8(0)));
        assert!(invalid_reason(&m).contains("no field id 200"));

        let mut m = sample();
        let opts = m.operators[0].builtin_options.as_mut().expect("options");
        opts.fields.reverse();
        assert!(invalid_reason(&m).contains("not strictly ascending"));

        let mut m = sample();
        m.operators[0].builtin_options = Some(BuiltinOptions::new(OptionsUnion::Builtin, 0));
        assert!(invalid_reason(&m).contains("options type 0"));
    }

    #[test]
    fn rejects_inconsistent_quantization() {
        let mut m = sample();
        m.tensors[0].quantization.as_mut().expect("q").zero_point = vec![0];
        assert!(invalid_reason(&m).contains("2 scales but 1 zero points"));

        let mut m = sample();
        m.tensors[0].quantization.as_mut().expect("q").min = vec![0.0];
        assert!(invalid_reason(&m).contains("min values"));

        let mut m = sample();
        m.tensors[0]
            .quantization
            .as_mut()
            .expect("q")
            .quantized_dimension = 1;
        assert!(invalid_reason(&m).contains("per-channel scales"));

        let mut m = sample();
        m.tensors[0]
            .quantization
            .as_mut()
            .expect("q")
            .quantized_dimension = -1;
        assert!(invalid_reason(&m).contains("negative quantized_dimension"));
    }

    #[test]
    fn rejects_other_schema_versions() {
        let mut m = sample();
        m.version = 2;
        assert!(invalid_reason(&m).contains("schema version 2"));
    }

    #[test]
    fn rejects_bad_operators() {
        let mut m = sample();
        m.operators[1].opcode.custom = None;
        assert!(invalid_reason(&m).contains("custom op without a name"));
        let mut m = sample();
        m.operators[0].mutating_variable_inputs = vec![true];
        assert!(invalid_reason(&m).contains("mutating_variable_inputs"));
        let mut m = sample();
        m.operators[0].opcode.builtin = -4;
        assert!(invalid_reason(&m).contains("negative builtin code"));
    }

    #[test]
    fn constant_data_is_16_byte_aligned() {
        let m = sample();
        let bytes = m.to_bytes().expect("write");
        let back = Model::from_bytes(&bytes).expect("read");
        let data = back.tensors[1].data.as_deref().expect("weights");
        assert_eq!((data.as_ptr() as usize - bytes.as_ptr() as usize) % 16, 0);
        let custom = back.operators[1].custom_options.as_deref().expect("custom");
        assert_eq!((custom.as_ptr() as usize - bytes.as_ptr() as usize) % 16, 0);
    }
}
