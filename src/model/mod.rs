//! TFLite models as plain data: read from bytes, written back, built from scratch.
//!
//! [`Model`] is the in-memory form of one `.tflite` file with a single subgraph.
//! It borrows constant data and names from the file bytes where it can (`Cow`), so reading
//! a model copies no weights; builders and segment extraction produce owned values.
//!
//! Tensor and operator indices are the positions in [`Model::tensors`] and
//! [`Model::operators`]; operators are in execution order, as in the file.
//!
//! [`Model::from_bytes`] reads a file (schema version 3, identifier `TFL3`) with a
//! bounds-checked reader that never panics and rejects what `Model` cannot represent;
//! [`Model::to_bytes`] writes one back, deterministically, with constant data aligned to
//! 16 bytes. [`Model::validate`] checks that TFLite can be given a model without risking the
//! process (see [`validate`]). Reading what was written gives an equal model:
//!
//! ```
//! use std::borrow::Cow;
//! use multitpu::model::{ElementType, Model, Tensor};
//!
//! let tensor = |name: &'static str| Tensor {
//!     name: Cow::Borrowed(name),
//!     element_type: ElementType::F32,
//!     shape: vec![1, 4],
//!     shape_signature: None,
//!     quantization: None,
//!     data: None,
//!     is_variable: false,
//!     has_rank: true,
//! };
//! let model = Model {
//!     description: Some(Cow::Borrowed("identity")),
//!     ..Model::new(vec![tensor("x")], Vec::new(), vec![0], vec![0])
//! };
//! let bytes = model.to_bytes()?;
//! assert_eq!(&bytes[4..8], b"TFL3");
//! assert_eq!(Model::from_bytes(&bytes)?, model);
//! # Ok::<(), multitpu::Error>(())
//! ```

use std::borrow::Cow;

pub mod builder;
pub mod edgetpu;
mod extract;
mod fbwrite;
pub mod figures;
mod flatbuf;
mod flexbuffer;
mod graph;
pub mod ops;
pub mod options;
pub mod paper;
mod reader;
pub mod validate;
mod writer;

pub use extract::extract;
pub(crate) use extract::interface;
pub use graph::Graph;

/// One TFLite model with a single subgraph.
///
/// ```no_run
/// # // no_run: reads a file of the reader's own.
/// use multitpu::model::Model;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bytes = std::fs::read("model.tflite")?;
/// let model = Model::from_bytes(&bytes)?; // borrows names and weights from `bytes`
/// model.validate()?;
/// println!("{} operators, inputs {:?}", model.operators.len(), model.inputs);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Model<'a> {
    /// Schema version from the file (3 for every current file).
    pub version: u32,
    /// Free-form description (the converter writes e.g. "MLIR Converted.").
    pub description: Option<Cow<'a, str>>,
    /// Name of the subgraph, if any.
    pub subgraph_name: Option<Cow<'a, str>>,
    /// All tensors of the subgraph.
    pub tensors: Vec<Tensor<'a>>,
    /// Operators in execution order.
    pub operators: Vec<Operator<'a>>,
    /// Indices of the subgraph's input tensors, in signature order.
    pub inputs: Vec<usize>,
    /// Indices of the subgraph's output tensors, in signature order.
    pub outputs: Vec<usize>,
    /// Named metadata blobs (`Model.metadata`), e.g. `min_runtime_version`.
    pub metadata: Vec<Metadata<'a>>,
}

/// A named metadata blob of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata<'a> {
    /// The entry's name, e.g. `min_runtime_version`.
    pub name: Cow<'a, str>,
    /// The contents of the buffer the entry points to.
    pub data: Cow<'a, [u8]>,
}

/// Element type of a tensor, numbered as in the file format's `TensorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ElementType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// 32-bit signed integer.
    I32,
    /// 8-bit unsigned integer (older quantized models).
    U8,
    /// 64-bit signed integer.
    I64,
    /// Variable-length strings (no fixed size).
    String,
    /// Boolean, one byte each.
    Bool,
    /// 16-bit signed integer.
    I16,
    /// Complex number of two 32-bit floats.
    Complex64,
    /// 8-bit signed integer (quantized models).
    I8,
    /// 64-bit float.
    F64,
    /// Complex number of two 64-bit floats.
    Complex128,
    /// 64-bit unsigned integer.
    U64,
    /// A resource handle (no fixed size).
    Resource,
    /// A variant tensor (no fixed size).
    Variant,
    /// 32-bit unsigned integer.
    U32,
    /// 16-bit unsigned integer.
    U16,
    /// 4-bit signed integer, packed (no whole-byte size).
    I4,
}

impl ElementType {
    /// The type for a file-format `TensorType` code, if the code is known.
    pub fn from_code(code: i8) -> Option<Self> {
        use ElementType::*;
        Some(match code {
            0 => F32,
            1 => F16,
            2 => I32,
            3 => U8,
            4 => I64,
            5 => String,
            6 => Bool,
            7 => I16,
            8 => Complex64,
            9 => I8,
            10 => F64,
            11 => Complex128,
            12 => U64,
            13 => Resource,
            14 => Variant,
            15 => U32,
            16 => U16,
            17 => I4,
            _ => return None,
        })
    }

    /// The file-format `TensorType` code.
    pub fn code(self) -> i8 {
        use ElementType::*;
        match self {
            F32 => 0,
            F16 => 1,
            I32 => 2,
            U8 => 3,
            I64 => 4,
            String => 5,
            Bool => 6,
            I16 => 7,
            Complex64 => 8,
            I8 => 9,
            F64 => 10,
            Complex128 => 11,
            U64 => 12,
            Resource => 13,
            Variant => 14,
            U32 => 15,
            U16 => 16,
            I4 => 17,
        }
    }

    /// Bytes per element, or `None` for types without a fixed size (string, resource,
    /// variant, and int4, which packs two elements per byte).
    pub fn size(self) -> Option<usize> {
        use ElementType::*;
        match self {
            Bool | U8 | I8 => Some(1),
            F16 | I16 | U16 => Some(2),
            F32 | I32 | U32 => Some(4),
            F64 | I64 | U64 | Complex64 => Some(8),
            Complex128 => Some(16),
            String | Resource | Variant | I4 => None,
        }
    }
}

/// Affine quantization of a tensor: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quantization {
    /// Smallest real value per channel, when the converter recorded it.
    pub min: Vec<f32>,
    /// Largest real value per channel, when the converter recorded it.
    pub max: Vec<f32>,
    /// Scale per channel (one value when per-tensor).
    pub scale: Vec<f32>,
    /// Zero point per channel (one value when per-tensor).
    pub zero_point: Vec<i64>,
    /// Axis of per-channel scales (0 when per-tensor).
    pub quantized_dimension: i32,
}

/// One tensor of the subgraph.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<'a> {
    /// Name from the file; segments are joined by tensor name.
    pub name: Cow<'a, str>,
    /// Type of each element.
    pub element_type: ElementType,
    /// Static shape (dimension sizes).
    pub shape: Vec<i32>,
    /// Shape with -1 for unknown dimensions, when the file gives one.
    pub shape_signature: Option<Vec<i32>>,
    /// Quantization parameters, for quantized tensors.
    pub quantization: Option<Quantization>,
    /// Constant contents, for parameters (weights, biases, shapes); `None` for activations.
    pub data: Option<Cow<'a, [u8]>>,
    /// A variable tensor (e.g. LSTM state): mutable, kept between invocations.
    pub is_variable: bool,
    /// `has_rank` from newer converters: true for scalars with a known rank of 0.
    pub has_rank: bool,
}

impl Tensor<'_> {
    /// Whether the tensor holds constant data (a parameter).
    pub fn is_constant(&self) -> bool {
        self.data.is_some()
    }

    /// Number of elements from the static shape (1 for a scalar); `None` if a dimension is
    /// negative or the product overflows.
    pub fn num_elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
    }

    /// Bytes the tensor occupies: its data length if constant, else elements × element size.
    pub fn byte_size(&self) -> Option<usize> {
        match &self.data {
            Some(data) => Some(data.len()),
            None => self.num_elements()?.checked_mul(self.element_type.size()?),
        }
    }
}

/// What an operator computes: a builtin code or a custom op name, and the op version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpCode<'a> {
    /// Builtin operator code, already resolved with the 127 rule
    /// (`max(builtin_code, deprecated_builtin_code)`); `CUSTOM` (32) for custom ops.
    pub builtin: i32,
    /// Name of a custom op (`builtin == 32`).
    pub custom: Option<Cow<'a, str>>,
    /// Version of the operator's kernel the model needs.
    pub version: i32,
}

/// The `BuiltinOperator` code of custom ops.
pub const BUILTIN_CUSTOM: i32 = 32;

/// One operator, in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator<'a> {
    /// What the operator computes.
    pub opcode: OpCode<'a>,
    /// Input tensor indices; `None` marks an optional input that is absent (-1 in the file).
    pub inputs: Vec<Option<usize>>,
    /// Output tensor indices.
    pub outputs: Vec<usize>,
    /// Tensor indices of intermediates (used by quantized LSTMs).
    pub intermediates: Vec<usize>,
    /// Builtin options, decoded field by field (see [`options`]).
    pub builtin_options: Option<options::BuiltinOptions>,
    /// Opaque options of custom ops (a FlexBuffer for `edgetpu-custom-op`).
    pub custom_options: Option<Cow<'a, [u8]>>,
    /// `custom_options_format` (0 = FlexBuffers).
    pub custom_options_format: i8,
    /// Per input, whether the operator writes to that (variable) input.
    pub mutating_variable_inputs: Vec<bool>,
}

impl Operator<'_> {
    /// Input tensor indices that are present, in order.
    pub fn present_inputs(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs.iter().flatten().copied()
    }
}

/// The schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 3;

impl<'a> Model<'a> {
    /// A model of the current schema version with these tensors, operators and
    /// interface, and no description, subgraph name or metadata.
    pub fn new(
        tensors: Vec<Tensor<'a>>,
        operators: Vec<Operator<'a>>,
        inputs: Vec<usize>,
        outputs: Vec<usize>,
    ) -> Self {
        Model {
            version: SCHEMA_VERSION,
            description: None,
            subgraph_name: None,
            tensors,
            operators,
            inputs,
            outputs,
            metadata: Vec::new(),
        }
    }
}

fn own<T: ToOwned + ?Sized>(c: Cow<'_, T>) -> Cow<'static, T> {
    Cow::Owned(c.into_owned())
}

impl Model<'_> {
    /// Copies every borrowed name and constant into owned storage, detaching the model
    /// from the file bytes it was read from.
    pub fn into_owned(self) -> Model<'static> {
        Model {
            version: self.version,
            description: self.description.map(own),
            subgraph_name: self.subgraph_name.map(own),
            tensors: self.tensors.into_iter().map(Tensor::into_owned).collect(),
            operators: self
                .operators
                .into_iter()
                .map(Operator::into_owned)
                .collect(),
            inputs: self.inputs,
            outputs: self.outputs,
            metadata: self
                .metadata
                .into_iter()
                .map(|m| Metadata {
                    name: own(m.name),
                    data: own(m.data),
                })
                .collect(),
        }
    }
}

impl Tensor<'_> {
    /// The same tensor with owned name and data.
    pub fn into_owned(self) -> Tensor<'static> {
        Tensor {
            name: own(self.name),
            element_type: self.element_type,
            shape: self.shape,
            shape_signature: self.shape_signature,
            quantization: self.quantization,
            data: self.data.map(own),
            is_variable: self.is_variable,
            has_rank: self.has_rank,
        }
    }
}

impl OpCode<'_> {
    /// The same op code with an owned custom name.
    pub fn into_owned(self) -> OpCode<'static> {
        OpCode {
            builtin: self.builtin,
            custom: self.custom.map(own),
            version: self.version,
        }
    }
}

impl Operator<'_> {
    /// The same operator with owned op code and custom options.
    pub fn into_owned(self) -> Operator<'static> {
        Operator {
            opcode: self.opcode.into_owned(),
            inputs: self.inputs,
            outputs: self.outputs,
            intermediates: self.intermediates,
            builtin_options: self.builtin_options,
            custom_options: self.custom_options.map(own),
            custom_options_format: self.custom_options_format,
            mutating_variable_inputs: self.mutating_variable_inputs,
        }
    }
}
