//! Decoding `.tflite` bytes (schema version 3, identifier `TFL3`) into a [`Model`].
//!
//! The reader accepts what TFLite accepts for single-subgraph models and rejects, with
//! [`Error::Unsupported`], every feature the in-memory [`Model`] cannot represent, so a
//! model read and written back never silently loses meaning. Two things are dropped on
//! purpose: `signature_defs` (only aliases of the subgraph's inputs and outputs for the
//! single-subgraph models accepted here) and the deprecated `metadata_buffer` list (the
//! same blobs are reachable through `metadata`).

use std::borrow::Cow;

use super::flatbuf::{Budget, Path, Table};
use super::options::{self, BuiltinOptions, FieldType, FieldValue, OptionsUnion};
use super::{ElementType, Metadata, Model, OpCode, Operator, Quantization, Tensor};
use crate::error::{Error, Result};

/// The file identifier at bytes 4..8.
pub(super) const IDENTIFIER: &[u8; 4] = b"TFL3";

/// Field ids of the schema's tables.
pub(super) mod ids {
    pub mod model {
        pub const VERSION: u16 = 0;
        pub const OPERATOR_CODES: u16 = 1;
        pub const SUBGRAPHS: u16 = 2;
        pub const DESCRIPTION: u16 = 3;
        pub const BUFFERS: u16 = 4;
        pub const METADATA_BUFFER: u16 = 5;
        pub const METADATA: u16 = 6;
        pub const SIGNATURE_DEFS: u16 = 7;
        pub const COUNT: u16 = 8;
    }
    pub mod subgraph {
        pub const TENSORS: u16 = 0;
        pub const INPUTS: u16 = 1;
        pub const OUTPUTS: u16 = 2;
        pub const OPERATORS: u16 = 3;
        pub const NAME: u16 = 4;
        pub const COUNT: u16 = 5;
    }
    pub mod tensor {
        pub const SHAPE: u16 = 0;
        pub const TYPE: u16 = 1;
        pub const BUFFER: u16 = 2;
        pub const NAME: u16 = 3;
        pub const QUANTIZATION: u16 = 4;
        pub const IS_VARIABLE: u16 = 5;
        pub const SPARSITY: u16 = 6;
        pub const SHAPE_SIGNATURE: u16 = 7;
        pub const HAS_RANK: u16 = 8;
        pub const VARIANT_TENSORS: u16 = 9;
        pub const COUNT: u16 = 10;
    }
    pub mod quantization {
        pub const MIN: u16 = 0;
        pub const MAX: u16 = 1;
        pub const SCALE: u16 = 2;
        pub const ZERO_POINT: u16 = 3;
        pub const DETAILS_TYPE: u16 = 4;
        pub const DETAILS: u16 = 5;
        pub const QUANTIZED_DIMENSION: u16 = 6;
        pub const COUNT: u16 = 7;
    }
    pub mod buffer {
        pub const DATA: u16 = 0;
        pub const OFFSET: u16 = 1;
        pub const SIZE: u16 = 2;
        pub const COUNT: u16 = 3;
    }
    pub mod metadata {
        pub const NAME: u16 = 0;
        pub const BUFFER: u16 = 1;
        pub const COUNT: u16 = 2;
    }
    pub mod opcode {
        pub const DEPRECATED_BUILTIN_CODE: u16 = 0;
        pub const CUSTOM_CODE: u16 = 1;
        pub const VERSION: u16 = 2;
        pub const BUILTIN_CODE: u16 = 3;
        pub const COUNT: u16 = 4;
    }
    pub mod operator {
        pub const OPCODE_INDEX: u16 = 0;
        pub const INPUTS: u16 = 1;
        pub const OUTPUTS: u16 = 2;
        pub const BUILTIN_OPTIONS_TYPE: u16 = 3;
        pub const BUILTIN_OPTIONS: u16 = 4;
        pub const CUSTOM_OPTIONS: u16 = 5;
        pub const CUSTOM_OPTIONS_FORMAT: u16 = 6;
        pub const MUTATING_VARIABLE_INPUTS: u16 = 7;
        pub const INTERMEDIATES: u16 = 8;
        pub const LARGE_CUSTOM_OPTIONS_OFFSET: u16 = 9;
        pub const LARGE_CUSTOM_OPTIONS_SIZE: u16 = 10;
        pub const BUILTIN_OPTIONS_2_TYPE: u16 = 11;
        pub const BUILTIN_OPTIONS_2: u16 = 12;
        pub const COUNT: u16 = 13;
    }
}

/// Budget charged per decoded tensor, operator, op code or metadata entry: an upper bound
/// of their in-memory size (checked by a test).
const TABLE_COST: usize = 256;

impl<'a> Model<'a> {
    /// Decodes a `.tflite` file, borrowing names and constant data from `bytes`.
    ///
    /// Fails with [`Error::Malformed`] (naming the field path and byte offset) when the
    /// bytes are not a valid TFLite flatbuffer, and with [`Error::Unsupported`] for
    /// valid files using a feature [`Model`] does not represent: several subgraphs
    /// (control flow), sparse or variant tensors, custom quantization, unknown options
    /// tables or fields, or fields newer than this reader.
    ///
    /// Signature defs and the deprecated `metadata_buffer` list are checked but dropped,
    /// and bytes after the flatbuffer that nothing references (e.g. a zip of label files
    /// appended to the model) are ignored, so writing the model back loses them.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] naming the field and byte offset for bytes that are not a valid
    /// TFLite flatbuffer; [`Error::Unsupported`] for a feature [`Model`] does not
    /// represent.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>> {
        let _span = tracing::debug_span!("read_model", bytes = bytes.len()).entered();
        let path = Path::root("model");
        if bytes.len() < 8 {
            return Err(Error::malformed("model: file shorter than its header", 0));
        }
        if &bytes[4..8] != IDENTIFIER {
            return Err(Error::malformed(
                "model: file identifier is not \"TFL3\" (not a TFLite model)",
                4,
            ));
        }
        let reader = Reader {
            bytes,
            budget: Budget::for_input(bytes.len()),
        };
        reader.model(&path)
    }
}

/// Decoding state. Lists grow as their elements are decoded and charged to the budget,
/// never reserved from a length read from the file.
struct Reader<'a> {
    bytes: &'a [u8],
    budget: Budget,
}

/// Rejects fields with ids `>= known` that are present in `table`. The scan of the
/// vtable is charged to `budget`: a forged vtable may have 32765 slots.
fn reject_unknown(table: &Table<'_>, known: u16, budget: &Budget, path: &Path<'_>) -> Result<()> {
    budget.charge(table.slots(), path, table.offset())?;
    match table.first_present_from(known) {
        Some(id) => Err(Error::unsupported(format!(
            "{path}: field id {id} (newer schema than this reader)"
        ))),
        None => Ok(()),
    }
}

fn required<T>(value: Option<T>, path: &Path<'_>, offset: usize) -> Result<T> {
    value.ok_or_else(|| Error::malformed(format!("{path}: required field missing"), offset))
}

/// Converts a file index to `usize`, checking it against `count`.
fn index(value: i64, count: usize, what: &str, path: &Path<'_>, offset: usize) -> Result<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&i| i < count)
        .ok_or_else(|| {
            Error::malformed(
                format!("{path}: {what} index {value} out of range ({count})"),
                offset,
            )
        })
}

/// Raw buffer contents: data bytes (possibly empty).
type Buffers<'a> = Vec<&'a [u8]>;

impl<'a> Reader<'a> {
    fn model(&self, path: &Path<'_>) -> Result<Model<'a>> {
        use ids::model as f;
        let root = Table::root(self.bytes, path)?;
        reject_unknown(&root, f::COUNT, &self.budget, path)?;
        let version = root.scalar::<u32>(f::VERSION, 0, &path.field("version"))?;
        if version != super::SCHEMA_VERSION {
            return Err(Error::unsupported(format!("schema version {version}")));
        }

        let buffers = self.buffers(&root, &path.field("buffers"))?;

        let codes_path = path.field("operator_codes");
        let codes = match root.vector(f::OPERATOR_CODES, 4, &codes_path)? {
            Some(v) => {
                let mut codes = Vec::new();
                for i in 0..v.len() {
                    let p = codes_path.index(i);
                    self.budget.charge(TABLE_COST, &p, root.offset())?;
                    codes.push(self.opcode(&v.table(i, &p)?, &p)?);
                }
                codes
            }
            None => Vec::new(),
        };

        let sg_path = path.field("subgraphs");
        let subgraphs = required(
            root.vector(f::SUBGRAPHS, 4, &sg_path)?,
            &sg_path,
            root.offset(),
        )?;
        match subgraphs.len() {
            0 => {
                return Err(Error::malformed(
                    format!("{sg_path}: no subgraph"),
                    root.offset(),
                ));
            }
            1 => {}
            n => {
                return Err(Error::unsupported(format!(
                    "{n} subgraphs (control flow); only single-subgraph models are supported"
                )));
            }
        }
        let sg0 = sg_path.index(0);
        let subgraph = subgraphs.table(0, &sg0)?;

        let description = root
            .string(f::DESCRIPTION, &self.budget, &path.field("description"))?
            .map(Cow::Borrowed);

        let md_path = path.field("metadata");
        let mut metadata = Vec::new();
        if let Some(v) = root.vector(f::METADATA, 4, &md_path)? {
            for i in 0..v.len() {
                let p = md_path.index(i);
                self.budget.charge(TABLE_COST, &p, root.offset())?;
                metadata.push(self.metadata(&v.table(i, &p)?, &buffers, &p)?);
            }
        }
        // Checked for well-formedness only: see the module documentation.
        let mb_path = path.field("metadata_buffer");
        if let Some(list) = root.scalars::<i32>(f::METADATA_BUFFER, &self.budget, &mb_path)? {
            for &b in &list {
                index(
                    i64::from(b),
                    buffers.len(),
                    "buffer",
                    &mb_path,
                    root.offset(),
                )?;
            }
        }
        let _ = root.vector(f::SIGNATURE_DEFS, 4, &path.field("signature_defs"))?;

        let mut model = self.subgraph(&subgraph, &codes, &buffers, &sg0)?;
        model.version = version;
        model.description = description;
        model.metadata = metadata;
        Ok(model)
    }

    fn buffers(&self, root: &Table<'a>, path: &Path<'_>) -> Result<Buffers<'a>> {
        use ids::buffer as f;
        // TFLite refuses a model without a buffers vector ("No buffers in the model").
        let v = required(
            root.vector(ids::model::BUFFERS, 4, path)?,
            path,
            root.offset(),
        )?;
        let mut out = Vec::new();
        for i in 0..v.len() {
            let p = path.index(i);
            self.budget.charge(16, &p, root.offset())?;
            let t = v.table(i, &p)?;
            reject_unknown(&t, f::COUNT, &self.budget, &p)?;
            let offset = t.scalar::<u64>(f::OFFSET, 0, &p.field("offset"))?;
            let size = t.scalar::<u64>(f::SIZE, 0, &p.field("size"))?;
            let data = if offset > 1 {
                // Schema 3c: data stored after the flatbuffer, offset from the file start.
                // TFLite 2.9 knows only `data`, newer runtimes take the offset: with both,
                // two runtimes would run two models, so neither is taken.
                if t.has(f::DATA) {
                    return Err(Error::malformed(
                        format!("{p}: both inline data and external data at offset {offset}"),
                        t.offset(),
                    ));
                }
                self.external(offset, size, &p, t.offset())?
            } else {
                t.bytes(f::DATA, &p.field("data"))?.unwrap_or(&[])
            };
            out.push(data);
        }
        Ok(out)
    }

    /// Bytes `offset..offset + size` of the file (data stored outside the flatbuffer).
    fn external(&self, offset: u64, size: u64, path: &Path<'_>, at: usize) -> Result<&'a [u8]> {
        usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, s)| Some((o, o.checked_add(s)?)))
            .and_then(|(start, end)| self.bytes.get(start..end))
            .ok_or_else(|| {
                Error::malformed(
                    format!("{path}: external data {offset}+{size} outside the file"),
                    at,
                )
            })
    }

    fn metadata(
        &self,
        t: &Table<'a>,
        buffers: &Buffers<'a>,
        path: &Path<'_>,
    ) -> Result<Metadata<'a>> {
        use ids::metadata as f;
        reject_unknown(t, f::COUNT, &self.budget, path)?;
        let name = t
            .string(f::NAME, &self.budget, &path.field("name"))?
            .unwrap_or("");
        let b = t.scalar::<u32>(f::BUFFER, 0, &path.field("buffer"))?;
        let b = index(
            i64::from(b),
            buffers.len(),
            "buffer",
            &path.field("buffer"),
            t.offset(),
        )?;
        Ok(Metadata {
            name: Cow::Borrowed(name),
            data: Cow::Borrowed(buffers[b]),
        })
    }

    fn opcode(&self, t: &Table<'a>, path: &Path<'_>) -> Result<OpCode<'a>> {
        use ids::opcode as f;
        reject_unknown(t, f::COUNT, &self.budget, path)?;
        let deprecated = t.scalar::<i8>(
            f::DEPRECATED_BUILTIN_CODE,
            0,
            &path.field("deprecated_builtin_code"),
        )?;
        let code = t.scalar::<i32>(f::BUILTIN_CODE, 0, &path.field("builtin_code"))?;
        let custom = t
            .string(f::CUSTOM_CODE, &self.budget, &path.field("custom_code"))?
            .map(Cow::Borrowed);
        let version = t.scalar::<i32>(f::VERSION, 1, &path.field("version"))?;
        Ok(OpCode {
            builtin: code.max(i32::from(deprecated)),
            custom,
            version,
        })
    }

    fn subgraph(
        &self,
        t: &Table<'a>,
        codes: &[OpCode<'a>],
        buffers: &Buffers<'a>,
        path: &Path<'_>,
    ) -> Result<Model<'a>> {
        use ids::subgraph as f;
        reject_unknown(t, f::COUNT, &self.budget, path)?;
        let t_path = path.field("tensors");
        let mut tensors = Vec::new();
        // TFLite refuses a subgraph without a tensors vector ("Did not get tensors"), where
        // an empty one is a subgraph of no tensors: required, so both read the file alike.
        let v = required(t.vector(f::TENSORS, 4, &t_path)?, &t_path, t.offset())?;
        for i in 0..v.len() {
            let p = t_path.index(i);
            self.budget.charge(TABLE_COST, &p, t.offset())?;
            tensors.push(self.tensor(&v.table(i, &p)?, buffers, &p)?);
        }
        let count = tensors.len();
        let inputs = self.indices(t, f::INPUTS, count, &path.field("inputs"))?;
        let outputs = self.indices(t, f::OUTPUTS, count, &path.field("outputs"))?;

        let o_path = path.field("operators");
        let mut operators = Vec::new();
        if let Some(v) = t.vector(f::OPERATORS, 4, &o_path)? {
            for i in 0..v.len() {
                let p = o_path.index(i);
                self.budget.charge(TABLE_COST, &p, t.offset())?;
                operators.push(self.operator(&v.table(i, &p)?, codes, count, &p)?);
            }
        }
        let subgraph_name = t
            .string(f::NAME, &self.budget, &path.field("name"))?
            .map(Cow::Borrowed);
        Ok(Model {
            subgraph_name,
            ..Model::new(tensors, operators, inputs, outputs)
        })
    }

    /// A vector of tensor indices (no -1 allowed), empty when absent.
    fn indices(&self, t: &Table<'a>, id: u16, count: usize, path: &Path<'_>) -> Result<Vec<usize>> {
        let raw = t
            .scalars::<i32>(id, &self.budget, path)?
            .unwrap_or_default();
        raw.into_iter()
            .map(|i| index(i64::from(i), count, "tensor", path, t.offset()))
            .collect()
    }

    fn tensor(&self, t: &Table<'a>, buffers: &Buffers<'a>, path: &Path<'_>) -> Result<Tensor<'a>> {
        use ids::tensor as f;
        reject_unknown(t, f::COUNT, &self.budget, path)?;
        if t.has(f::SPARSITY) {
            return Err(Error::unsupported(format!("{path}: sparse tensor")));
        }
        if t.has(f::VARIANT_TENSORS) {
            return Err(Error::unsupported(format!("{path}: variant_tensors")));
        }
        let shape = t
            .scalars::<i32>(f::SHAPE, &self.budget, &path.field("shape"))?
            .unwrap_or_default();
        let type_path = path.field("type");
        let code = t.scalar::<i8>(f::TYPE, 0, &type_path)?;
        let element_type = ElementType::from_code(code)
            .ok_or_else(|| Error::unsupported(format!("{type_path}: tensor type code {code}")))?;
        let b_path = path.field("buffer");
        let b = t.scalar::<u32>(f::BUFFER, 0, &b_path)?;
        let data = if b == 0 {
            None
        } else {
            let b = index(i64::from(b), buffers.len(), "buffer", &b_path, t.offset())?;
            Some(buffers[b])
                .filter(|d| !d.is_empty())
                .map(Cow::Borrowed)
        };
        let name = t
            .string(f::NAME, &self.budget, &path.field("name"))?
            .unwrap_or("");
        let q_path = path.field("quantization");
        let quantization = match t.table(f::QUANTIZATION, &q_path)? {
            Some(q) => Some(self.quantization(&q, &q_path)?),
            None => None,
        };
        let is_variable = t.boolean(f::IS_VARIABLE, false, &path.field("is_variable"))?;
        let shape_signature = t.scalars::<i32>(
            f::SHAPE_SIGNATURE,
            &self.budget,
            &path.field("shape_signature"),
        )?;
        let has_rank = t.boolean(f::HAS_RANK, false, &path.field("has_rank"))?;
        Ok(Tensor {
            name: Cow::Borrowed(name),
            element_type,
            shape,
            shape_signature,
            quantization,
            data,
            is_variable,
            has_rank,
        })
    }

    fn quantization(&self, t: &Table<'a>, path: &Path<'_>) -> Result<Quantization> {
        use ids::quantization as f;
        reject_unknown(t, f::COUNT, &self.budget, path)?;
        if t.scalar::<u8>(f::DETAILS_TYPE, 0, &path.field("details_type"))? != 0
            || t.has(f::DETAILS)
        {
            return Err(Error::unsupported(format!(
                "{path}: custom quantization (details)"
            )));
        }
        let b = &self.budget;
        Ok(Quantization {
            min: t
                .scalars(f::MIN, b, &path.field("min"))?
                .unwrap_or_default(),
            max: t
                .scalars(f::MAX, b, &path.field("max"))?
                .unwrap_or_default(),
            scale: t
                .scalars(f::SCALE, b, &path.field("scale"))?
                .unwrap_or_default(),
            zero_point: t
                .scalars(f::ZERO_POINT, b, &path.field("zero_point"))?
                .unwrap_or_default(),
            quantized_dimension: t.scalar::<i32>(
                f::QUANTIZED_DIMENSION,
                0,
                &path.field("quantized_dimension"),
            )?,
        })
    }

    fn operator(
        &self,
        t: &Table<'a>,
        codes: &[OpCode<'a>],
        count: usize,
        path: &Path<'_>,
    ) -> Result<Operator<'a>> {
        use ids::operator as f;
        reject_unknown(t, f::COUNT, &self.budget, path)?;
        let oi_path = path.field("opcode_index");
        let oi = t.scalar::<u32>(f::OPCODE_INDEX, 0, &oi_path)?;
        let opcode = codes[index(
            i64::from(oi),
            codes.len(),
            "operator code",
            &oi_path,
            t.offset(),
        )?]
        .clone();

        let in_path = path.field("inputs");
        let inputs = t
            .scalars::<i32>(f::INPUTS, &self.budget, &in_path)?
            .unwrap_or_default()
            .into_iter()
            .map(|i| match i {
                -1 => Ok(None),
                i => index(i64::from(i), count, "tensor", &in_path, t.offset()).map(Some),
            })
            .collect::<Result<Vec<_>>>()?;
        let outputs = self.indices(t, f::OUTPUTS, count, &path.field("outputs"))?;
        let intermediates =
            self.indices(t, f::INTERMEDIATES, count, &path.field("intermediates"))?;

        let opts1 = t.union(
            f::BUILTIN_OPTIONS_TYPE,
            f::BUILTIN_OPTIONS,
            &path.field("builtin_options"),
        )?;
        let opts2 = t.union(
            f::BUILTIN_OPTIONS_2_TYPE,
            f::BUILTIN_OPTIONS_2,
            &path.field("builtin_options_2"),
        )?;
        let builtin_options = match (opts1, opts2) {
            (Some(_), Some(_)) => {
                return Err(Error::unsupported(format!(
                    "{path}: both builtin_options and builtin_options_2"
                )));
            }
            (Some((kind, table)), None) => Some(self.options(
                OptionsUnion::Builtin,
                kind,
                table,
                &path.field("builtin_options"),
            )?),
            (None, Some((kind, table))) => Some(self.options(
                OptionsUnion::Builtin2,
                kind,
                table,
                &path.field("builtin_options_2"),
            )?),
            (None, None) => None,
        };

        let large_offset = t.scalar::<u64>(
            f::LARGE_CUSTOM_OPTIONS_OFFSET,
            0,
            &path.field("large_custom_options_offset"),
        )?;
        let custom_options = if large_offset > 1 {
            if t.has(f::CUSTOM_OPTIONS) {
                return Err(Error::malformed(
                    format!(
                        "{}: both custom_options and large_custom_options at offset {large_offset}",
                        path
                    ),
                    t.offset(),
                ));
            }
            let size = t.scalar::<u64>(
                f::LARGE_CUSTOM_OPTIONS_SIZE,
                0,
                &path.field("large_custom_options_size"),
            )?;
            Some(self.external(
                large_offset,
                size,
                &path.field("large_custom_options"),
                t.offset(),
            )?)
        } else {
            t.bytes(f::CUSTOM_OPTIONS, &path.field("custom_options"))?
        };
        let custom_options_format = t.scalar::<i8>(
            f::CUSTOM_OPTIONS_FORMAT,
            0,
            &path.field("custom_options_format"),
        )?;
        let mutating_variable_inputs = t
            .scalars::<u8>(
                f::MUTATING_VARIABLE_INPUTS,
                &self.budget,
                &path.field("mutating_variable_inputs"),
            )?
            .unwrap_or_default()
            .into_iter()
            .map(|b| b != 0)
            .collect();
        Ok(Operator {
            opcode,
            inputs,
            outputs,
            intermediates,
            builtin_options,
            custom_options: custom_options.map(Cow::Borrowed),
            custom_options_format,
            mutating_variable_inputs,
        })
    }

    fn options(
        &self,
        union: OptionsUnion,
        kind: u8,
        table: Option<Table<'a>>,
        path: &Path<'_>,
    ) -> Result<BuiltinOptions> {
        let layout = options::layout(union, kind).ok_or_else(|| {
            Error::unsupported(format!("{path}: options type {kind} of {union:?} unknown"))
        })?;
        let mut fields = Vec::new();
        if let Some(t) = table {
            self.budget.charge(t.slots(), path, t.offset())?;
            for slot in 0..t.slots() {
                let Ok(id) = u16::try_from(slot) else { break };
                if !t.has(id) {
                    continue;
                }
                let Some(&(name, ty)) = layout.fields.get(slot) else {
                    return Err(Error::unsupported(format!(
                        "{path}: {} field id {id} (unknown field)",
                        layout.name
                    )));
                };
                let p = path.field(name);
                self.budget.charge(32, &p, t.offset())?;
                fields.push((id, self.field_value(&t, id, ty, &p)?));
            }
        }
        Ok(BuiltinOptions {
            union,
            kind,
            fields,
        })
    }

    fn field_value(
        &self,
        t: &Table<'a>,
        id: u16,
        ty: FieldType,
        p: &Path<'_>,
    ) -> Result<FieldValue> {
        let b = &self.budget;
        // `id` is present, so the defaults below are never used.
        Ok(match ty {
            FieldType::Bool => FieldValue::Bool(t.boolean(id, false, p)?),
            FieldType::I8 => FieldValue::I8(t.scalar(id, 0, p)?),
            FieldType::U8 => FieldValue::U8(t.scalar(id, 0, p)?),
            FieldType::I16 => FieldValue::I16(t.scalar(id, 0, p)?),
            FieldType::U16 => FieldValue::U16(t.scalar(id, 0, p)?),
            FieldType::I32 => FieldValue::I32(t.scalar(id, 0, p)?),
            FieldType::U32 => FieldValue::U32(t.scalar(id, 0, p)?),
            FieldType::I64 => FieldValue::I64(t.scalar(id, 0, p)?),
            FieldType::U64 => FieldValue::U64(t.scalar(id, 0, p)?),
            FieldType::F32 => FieldValue::F32(t.scalar(id, 0.0, p)?),
            FieldType::F64 => FieldValue::F64(t.scalar(id, 0.0, p)?),
            FieldType::String => {
                let s = t.string(id, b, p)?.unwrap_or("");
                FieldValue::String(s.to_owned())
            }
            FieldType::VecI32 => FieldValue::VecI32(t.scalars(id, b, p)?.unwrap_or_default()),
            FieldType::VecI64 => FieldValue::VecI64(t.scalars(id, b, p)?.unwrap_or_default()),
            FieldType::VecU32 => FieldValue::VecU32(t.scalars(id, b, p)?.unwrap_or_default()),
            FieldType::VecF32 => FieldValue::VecF32(t.scalars(id, b, p)?.unwrap_or_default()),
            FieldType::VecU8 => FieldValue::VecU8(t.scalars(id, b, p)?.unwrap_or_default()),
            FieldType::VecBool => FieldValue::VecBool(
                t.scalars::<u8>(id, b, p)?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|x| x != 0)
                    .collect(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fbwrite::{self, Child, Value};
    use super::*;

    /// Variations of a minimal hand-built file.
    #[derive(Default)]
    struct Raw {
        version: Option<u32>,
        subgraphs: Option<usize>,
        deprecated_code: i8,
        builtin_code: i32,
        tensor_buffer: Option<u32>,
        external: Option<(u64, u64)>,
        sparsity: bool,
        quant_details: bool,
        unknown_tensor_field: bool,
        options: Option<(u8, Vec<(u16, Value<'static>)>)>,
        options2: Option<u8>,
        large_custom: Option<(u64, u64)>,
        /// With `external` or `large_custom`: the inline field too.
        inline_too: bool,
        /// Leave out the subgraph's tensors vector, or the model's buffers vector.
        no_tensors: bool,
        no_buffers: bool,
        input: Option<i32>,
        metadata_buffer: Option<u32>,
    }

    fn quant(details: bool) -> Child<'static> {
        Box::new(move |b| {
            let mut f = vec![
                (ids::quantization::SCALE, Value::scalars(vec![0.5f32])),
                (ids::quantization::ZERO_POINT, Value::scalars(vec![3i64])),
            ];
            if details {
                f.push((ids::quantization::DETAILS_TYPE, Value::scalar(1u8)));
                f.push((
                    ids::quantization::DETAILS,
                    Value::child(|b| b.table(vec![])),
                ));
            }
            b.table(f)
        })
    }

    fn build(raw: Raw) -> Vec<u8> {
        let Raw {
            version,
            subgraphs,
            deprecated_code,
            builtin_code,
            tensor_buffer,
            external,
            sparsity,
            quant_details,
            unknown_tensor_field,
            options,
            options2,
            large_custom,
            inline_too,
            no_tensors,
            no_buffers,
            input,
            metadata_buffer,
        } = raw;
        let tensor = move |name: &'static str, buffer: u32, extra: bool| -> Child<'static> {
            Box::new(move |b| {
                let mut f = vec![
                    (ids::tensor::SHAPE, Value::scalars(vec![1i32, 4])),
                    (ids::tensor::TYPE, Value::scalar(3i8)),
                    (ids::tensor::BUFFER, Value::scalar(buffer)),
                    (ids::tensor::NAME, Value::string(name)),
                    (
                        ids::tensor::QUANTIZATION,
                        Value::child(quant(extra && quant_details)),
                    ),
                ];
                if extra && sparsity {
                    f.push((ids::tensor::SPARSITY, Value::child(|b| b.table(vec![]))));
                }
                if extra && unknown_tensor_field {
                    f.push((ids::tensor::COUNT, Value::scalar(1u8)));
                }
                b.table(f)
            })
        };
        let subgraph = move || -> Child<'static> {
            Box::new(move |b| {
                let mut op = vec![
                    (ids::operator::OPCODE_INDEX, Value::scalar(0u32)),
                    (
                        ids::operator::INPUTS,
                        Value::scalars(vec![input.unwrap_or(0), 1, -1]),
                    ),
                    (ids::operator::OUTPUTS, Value::scalars(vec![2i32])),
                ];
                if let Some((kind, fields)) = options {
                    op.push((ids::operator::BUILTIN_OPTIONS_TYPE, Value::scalar(kind)));
                    op.push((
                        ids::operator::BUILTIN_OPTIONS,
                        Value::child(move |b| b.table(fields)),
                    ));
                }
                if let Some(kind) = options2 {
                    op.push((ids::operator::BUILTIN_OPTIONS_2_TYPE, Value::scalar(kind)));
                    op.push((
                        ids::operator::BUILTIN_OPTIONS_2,
                        Value::child(|b| b.table(vec![])),
                    ));
                }
                if let Some((offset, size)) = large_custom {
                    if inline_too {
                        op.push((ids::operator::CUSTOM_OPTIONS, Value::bytes(&[1, 2], 1)));
                    }
                    op.push((
                        ids::operator::LARGE_CUSTOM_OPTIONS_OFFSET,
                        Value::scalar(offset),
                    ));
                    op.push((
                        ids::operator::LARGE_CUSTOM_OPTIONS_SIZE,
                        Value::scalar(size),
                    ));
                }
                let mut fields = vec![
                    (
                        ids::subgraph::TENSORS,
                        Value::children(vec![
                            tensor("in", 0, false),
                            tensor("w", tensor_buffer.unwrap_or(1), true),
                            tensor("out", 0, false),
                        ]),
                    ),
                    (ids::subgraph::INPUTS, Value::scalars(vec![0i32])),
                    (ids::subgraph::OUTPUTS, Value::scalars(vec![2i32])),
                    (
                        ids::subgraph::OPERATORS,
                        Value::children(vec![Box::new(move |b| b.table(op))]),
                    ),
                ];
                if no_tensors {
                    fields.remove(0);
                }
                b.table(fields)
            })
        };
        let root: Child<'static> = Box::new(move |b| {
            let mut sgs: Vec<Child<'static>> = vec![subgraph()];
            for _ in 1..subgraphs.unwrap_or(1) {
                sgs.push(Box::new(|b| b.table(vec![])));
            }
            let weights: Child<'static> = match external {
                Some((offset, size)) => Box::new(move |b| {
                    let mut f = vec![
                        (ids::buffer::OFFSET, Value::scalar(offset)),
                        (ids::buffer::SIZE, Value::scalar(size)),
                    ];
                    if inline_too {
                        f.push((ids::buffer::DATA, Value::bytes(&[9, 8, 7], 16)));
                    }
                    b.table(f)
                }),
                None => Box::new(|b| {
                    b.table(vec![(ids::buffer::DATA, Value::bytes(&[9, 8, 7, 6], 16))])
                }),
            };
            let mut fields = vec![
                (ids::model::VERSION, Value::scalar(version.unwrap_or(3))),
                (
                    ids::model::OPERATOR_CODES,
                    Value::children(vec![Box::new(move |b| {
                        b.table(vec![
                            (
                                ids::opcode::DEPRECATED_BUILTIN_CODE,
                                Value::scalar(deprecated_code),
                            ),
                            (ids::opcode::BUILTIN_CODE, Value::scalar(builtin_code)),
                        ])
                    })]),
                ),
                (ids::model::SUBGRAPHS, Value::children(sgs)),
                (
                    ids::model::BUFFERS,
                    Value::children(vec![Box::new(|b| b.table(vec![])), weights]),
                ),
            ];
            if no_buffers {
                fields.pop();
            }
            if let Some(mb) = metadata_buffer {
                fields.push((ids::model::METADATA_BUFFER, Value::scalars(vec![mb as i32])));
            }
            b.table(fields)
        });
        fbwrite::build(IDENTIFIER, root).expect("build raw model")
    }

    fn unsupported(raw: Raw, needle: &str) {
        let bytes = build(raw);
        match Model::from_bytes(&bytes) {
            Err(Error::Unsupported { feature }) => {
                assert!(feature.contains(needle), "`{feature}` lacks `{needle}`")
            }
            other => panic!("expected Unsupported({needle}), got {other:?}"),
        }
    }

    fn malformed(raw: Raw, needle: &str) {
        let bytes = build(raw);
        match Model::from_bytes(&bytes) {
            Err(Error::Malformed { what, .. }) => {
                assert!(what.contains(needle), "`{what}` lacks `{needle}`")
            }
            other => panic!("expected Malformed({needle}), got {other:?}"),
        }
    }

    #[test]
    fn table_cost_bounds_the_decoded_sizes() {
        use std::mem::size_of;
        assert!(size_of::<Tensor<'_>>() <= TABLE_COST);
        assert!(size_of::<Operator<'_>>() <= TABLE_COST);
        assert!(size_of::<OpCode<'_>>() <= TABLE_COST);
        assert!(size_of::<Metadata<'_>>() <= TABLE_COST);
    }

    #[test]
    fn reads_a_minimal_model() {
        let bytes = build(Raw {
            builtin_code: 3,
            deprecated_code: 3,
            ..Raw::default()
        });
        let m = Model::from_bytes(&bytes).expect("read");
        assert_eq!(m.version, 3);
        assert_eq!(m.tensors.len(), 3);
        assert_eq!(m.tensors[1].data.as_deref(), Some(&[9u8, 8, 7, 6][..]));
        assert!(m.tensors[0].data.is_none());
        assert_eq!(m.tensors[1].element_type, ElementType::U8);
        let q = m.tensors[1].quantization.as_ref().expect("quantized");
        assert_eq!(
            (q.scale.clone(), q.zero_point.clone()),
            (vec![0.5], vec![3])
        );
        assert_eq!(m.operators[0].inputs, vec![Some(0), Some(1), None]);
        assert_eq!(m.operators[0].opcode.builtin, 3);
        assert_eq!(m.operators[0].opcode.version, 1);
        assert_eq!((m.inputs.clone(), m.outputs.clone()), (vec![0], vec![2]));
    }

    #[test]
    fn builtin_code_follows_the_127_rule() {
        for (deprecated, builtin, expect) in [(127, 150, 150), (3, 0, 3), (9, 9, 9)] {
            let bytes = build(Raw {
                deprecated_code: deprecated,
                builtin_code: builtin,
                ..Raw::default()
            });
            let m = Model::from_bytes(&bytes).expect("read");
            assert_eq!(m.operators[0].opcode.builtin, expect);
        }
    }

    #[test]
    fn rejects_wrong_identifier_and_short_files() {
        let mut bytes = build(Raw::default());
        bytes[4..8].copy_from_slice(b"TFL2");
        assert!(matches!(
            Model::from_bytes(&bytes),
            Err(Error::Malformed { offset: 4, .. })
        ));
        assert!(Model::from_bytes(&bytes[..5]).is_err());
        assert!(Model::from_bytes(&[]).is_err());
    }

    #[test]
    fn rejects_unsupported_features() {
        unsupported(
            Raw {
                subgraphs: Some(2),
                ..Raw::default()
            },
            "control flow",
        );
        unsupported(
            Raw {
                sparsity: true,
                ..Raw::default()
            },
            "sparse",
        );
        unsupported(
            Raw {
                quant_details: true,
                ..Raw::default()
            },
            "custom quantization",
        );
        unsupported(
            Raw {
                unknown_tensor_field: true,
                ..Raw::default()
            },
            "tensors[1]: field id 10",
        );
        unsupported(
            Raw {
                version: Some(2),
                ..Raw::default()
            },
            "schema version 2",
        );
        unsupported(
            Raw {
                options: Some((250, Vec::new())),
                ..Raw::default()
            },
            "options type 250",
        );
        unsupported(
            Raw {
                options2: Some(250),
                ..Raw::default()
            },
            "options type 250 of Builtin2",
        );
    }

    #[test]
    fn unknown_options_field_names_the_table() {
        // Conv2DOptions (kind 1) has 7 fields in every schema revision we know of;
        // field id 40 is beyond any layout.
        unsupported(
            Raw {
                options: Some((1, vec![(40, Value::scalar(1u8))])),
                ..Raw::default()
            },
            "Conv2DOptions field id 40",
        );
    }

    #[test]
    fn decodes_options_fields_present_in_the_file() {
        let bytes = build(Raw {
            options: Some((
                17,
                vec![(0, Value::scalars(vec![1i32, -1]))], // ReshapeOptions.new_shape
            )),
            ..Raw::default()
        });
        let m = Model::from_bytes(&bytes).expect("read");
        let opts = m.operators[0].builtin_options.as_ref().expect("options");
        assert_eq!(opts.union, OptionsUnion::Builtin);
        assert_eq!(opts.kind, 17);
        assert_eq!(opts.fields, vec![(0, FieldValue::VecI32(vec![1, -1]))]);
    }

    #[test]
    fn rejects_bad_indices() {
        malformed(
            Raw {
                tensor_buffer: Some(7),
                ..Raw::default()
            },
            "tensors[1].buffer: buffer index 7 out of range",
        );
        malformed(
            Raw {
                input: Some(3),
                ..Raw::default()
            },
            "operators[0].inputs: tensor index 3",
        );
        malformed(
            Raw {
                input: Some(-2),
                ..Raw::default()
            },
            "tensor index -2",
        );
        malformed(
            Raw {
                metadata_buffer: Some(5),
                ..Raw::default()
            },
            "metadata_buffer",
        );
    }

    /// TFLite refuses a model without buffers and a subgraph without tensors, where empty
    /// vectors are a model without them: the reader refuses the absent ones too.
    #[test]
    fn absent_tensors_and_buffers_are_refused() {
        malformed(
            Raw {
                no_tensors: true,
                input: Some(-1),
                ..Raw::default()
            },
            "subgraphs[0].tensors: required field missing",
        );
        malformed(
            Raw {
                no_buffers: true,
                tensor_buffer: Some(0),
                ..Raw::default()
            },
            "buffers: required field missing",
        );
    }

    /// TFLite 2.9 reads a buffer's inline `data` and an operator's `custom_options`; newer
    /// runtimes take the external offset when both are set. Such a file is refused, so
    /// validation and every runtime see one model.
    #[test]
    fn inline_and_external_data_together_are_refused() {
        for (external, large_custom, field) in [
            (Some((2, 3)), None, "external data"),
            (None, Some((2, 2)), "large_custom_options"),
        ] {
            let probe = build(Raw {
                external,
                large_custom,
                inline_too: true,
                ..Raw::default()
            });
            let at = probe.len() as u64;
            let mut bytes = build(Raw {
                external: external.map(|(_, n)| (at, n)),
                large_custom: large_custom.map(|(_, n)| (at, n)),
                inline_too: true,
                ..Raw::default()
            });
            assert_eq!(bytes.len() as u64, at);
            bytes.extend_from_slice(&[5, 6, 7]);
            match Model::from_bytes(&bytes) {
                Err(Error::Malformed { what, .. }) => {
                    assert!(what.contains(field), "{what}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn reads_data_stored_after_the_flatbuffer() {
        let probe = build(Raw {
            external: Some((2, 3)),
            large_custom: Some((2, 2)),
            ..Raw::default()
        });
        let offset = probe.len() as u64;
        let mut bytes = build(Raw {
            external: Some((offset, 3)),
            large_custom: Some((offset + 1, 2)),
            ..Raw::default()
        });
        assert_eq!(bytes.len() as u64, offset);
        bytes.extend_from_slice(&[5, 6, 7]);
        let m = Model::from_bytes(&bytes).expect("read");
        assert_eq!(m.tensors[1].data.as_deref(), Some(&[5u8, 6, 7][..]));
        assert_eq!(
            m.operators[0].custom_options.as_deref(),
            Some(&[6u8, 7][..])
        );
        // Past the end of the file.
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(
            Model::from_bytes(&bytes),
            Err(Error::Malformed { .. })
        ));
    }

    /// Forges a file whose tensors vector holds `n` offsets to one tensor with a shape of
    /// `dims` dimensions and a vtable of `slots` field slots.
    fn forge_shared_tensors(n: usize, dims: usize, slots: usize) -> Vec<u8> {
        let mut bytes = build(Raw::default());
        let path = Path::root("model");
        let root = Table::root(&bytes, &path).expect("root");
        let sg = root
            .vector(ids::model::SUBGRAPHS, 4, &path)
            .expect("vec")
            .expect("present")
            .table(0, &path)
            .expect("subgraph");
        let field = sg.field(ids::subgraph::TENSORS).expect("tensors field");
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let vec_pos = bytes.len();
        let vtable_len = (4 + 2 * slots).div_ceil(4) * 4;
        let tensor_pos = vec_pos + 4 + 4 * n + vtable_len;
        bytes.extend_from_slice(&(n as u32).to_le_bytes());
        for i in 0..n {
            let at = vec_pos + 4 + 4 * i;
            bytes.extend_from_slice(&((tensor_pos - at) as u32).to_le_bytes());
        }
        let vtable_pos = bytes.len();
        bytes.extend_from_slice(&((4 + 2 * slots) as u16).to_le_bytes());
        bytes.extend_from_slice(&8u16.to_le_bytes()); // object: soffset + shape offset
        bytes.extend_from_slice(&4u16.to_le_bytes()); // shape at +4
        bytes.resize(tensor_pos, 0);
        bytes.extend_from_slice(&((tensor_pos - vtable_pos) as i32).to_le_bytes());
        bytes.extend_from_slice(&4u32.to_le_bytes()); // shape -> right after this field
        bytes.extend_from_slice(&(dims as u32).to_le_bytes());
        bytes.extend(std::iter::repeat_n(1i32.to_le_bytes(), dims).flatten());
        let rel = (vec_pos - field) as u32;
        bytes[field..field + 4].copy_from_slice(&rel.to_le_bytes());
        bytes
    }

    fn assert_budget_runs_out(bytes: &[u8]) {
        match Model::from_bytes(bytes) {
            Err(Error::Malformed { what, .. }) => assert!(what.contains("budget"), "{what}"),
            other => panic!("expected the budget to run out, got {other:?}"),
        }
    }

    #[test]
    fn shared_subtables_cannot_amplify_memory() {
        // Decoding naively would allocate 2000 shapes of 16 KiB (the per-table charge alone would not stop it).
        assert_budget_runs_out(&forge_shared_tensors(2_000, 4096, 1));
    }

    #[test]
    fn huge_shared_vtables_cannot_amplify_time() {
        // Decoding naively would scan 2000 vtables of 32765 slots (the per-table charge alone would not stop it).
        assert_budget_runs_out(&forge_shared_tensors(2_000, 1, 32_765));
    }

    #[test]
    fn forged_tensor_decodes_when_not_shared_much() {
        // The forging helper itself makes a valid file: few shared tensors read fine.
        let bytes = forge_shared_tensors(3, 2, 1);
        let m = Model::from_bytes(&bytes).expect("read");
        assert_eq!(m.tensors.len(), 3);
        assert_eq!(m.tensors[2].shape, vec![1, 1]);
    }
}
