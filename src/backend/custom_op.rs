//! Custom operators for CPU interpreters: a model's `CUSTOM` operator run by Rust code.
//!
//! A [`CustomOp`] is registered by name in [`InterpreterOptions`](super::InterpreterOptions)
//! (or on a [`CpuBackend`](super::CpuBackend)); TFLite then calls it for every node of that
//! name, through `TfLiteInterpreterOptionsAddCustomOp` of its C API.
//!
//! # How a node finds its Rust kernel
//!
//! TFLite 2.9's `TfLiteRegistration` has no user data, so one set of C callbacks serves every
//! registered operator, and the callbacks must find the kernel from what they are given: a
//! node. While an interpreter with custom operators is inside TFLite (building, allocating,
//! invoking), a thread-local names its node table, built from the model before TFLite saw
//! it; a node is found there by its first output tensor (each tensor has one producer), and
//! its input and output indices must match the model's. Kernels run on the thread that
//! called into TFLite, so the thread-local is always the caller's interpreter.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CString, c_int};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use libedgetpu_sys::{
    TFLITE_TENSOR_SIZE, TfLiteApi, TfLiteContext, TfLiteIntArray, TfLiteNode, TfLiteRegistration,
    TfLiteStatus, TfLiteTensor,
};

use crate::model::{BUILTIN_CUSTOM, Model};
use crate::tensor::{Element, TensorSpec};
use crate::{Error, Result};

/// A custom operator's kernel, run by CPU interpreters for every node of its name.
///
/// A kernel is shared by every interpreter it is registered with, possibly on several
/// threads at once (pipeline stages), hence `Send + Sync` and `&self`; keep per-call state
/// on the stack, or behind a lock. Closures `Fn(&[OpInput], &mut [OpOutput]) -> Result<()>`
/// are kernels too.
///
/// A kernel's error (or panic) fails the call into TFLite, and its message reaches the
/// caller in [`Error::Runtime`] (and `tracing`), with the node TFLite names.
///
/// ```
/// use multitpu::backend::{CustomOp, OpInput, OpOutput};
/// use multitpu::tensor::TensorSpec;
///
/// /// Doubles every float.
/// struct Double;
///
/// impl CustomOp for Double {
///     fn prepare(&self, inputs: &[TensorSpec], outputs: &[TensorSpec], _options: &[u8]) -> multitpu::Result<()> {
///         if inputs.len() != 1 || outputs.len() != 1 || inputs[0].byte_size != outputs[0].byte_size {
///             return Err(multitpu::Error::stage("double: one input and one output of one size"));
///         }
///         Ok(())
///     }
///
///     fn invoke(&self, inputs: &[OpInput<'_>], outputs: &mut [OpOutput<'_>], _options: &[u8]) -> multitpu::Result<()> {
///         let x = inputs[0].as_slice::<f32>()?;
///         for (y, x) in outputs[0].as_mut_slice::<f32>()?.iter_mut().zip(x) {
///             *y = 2.0 * x;
///         }
///         Ok(())
///     }
/// }
///
/// let options = multitpu::backend::InterpreterOptions::default().with_custom_op("double", Double);
/// # let _ = options;
/// ```
pub trait CustomOp: Send + Sync {
    /// Checks a node's tensors when the interpreter allocates them; an error refuses the
    /// model. `options` are the node's custom options from the model. Accepts anything
    /// unless overridden.
    ///
    /// # Errors
    ///
    /// Whatever the kernel reports; [`Error::stage`] suits a kernel's own message.
    fn prepare(&self, inputs: &[TensorSpec], outputs: &[TensorSpec], options: &[u8]) -> Result<()> {
        let _ = (inputs, outputs, options);
        Ok(())
    }

    /// Runs one node: reads `inputs` and writes every output.
    ///
    /// # Errors
    ///
    /// Whatever the kernel reports (the typed accessors of [`OpInput`] and [`OpOutput`]
    /// return [`Error::TensorType`] for a wrong element type).
    fn invoke(
        &self,
        inputs: &[OpInput<'_>],
        outputs: &mut [OpOutput<'_>],
        options: &[u8],
    ) -> Result<()>;
}

impl<F> CustomOp for F
where
    F: Fn(&[OpInput<'_>], &mut [OpOutput<'_>]) -> Result<()> + Send + Sync,
{
    fn invoke(
        &self,
        inputs: &[OpInput<'_>],
        outputs: &mut [OpOutput<'_>],
        _options: &[u8],
    ) -> Result<()> {
        self(inputs, outputs)
    }
}

/// One input tensor of a custom operator's node: its spec (from the model) and its data.
#[derive(Debug)]
pub struct OpInput<'a> {
    spec: &'a TensorSpec,
    data: &'a [u8],
}

impl<'a> OpInput<'a> {
    /// Name, type, shape and quantization.
    pub fn spec(&self) -> &'a TensorSpec {
        self.spec
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The data as elements of `T`, its element type.
    ///
    /// # Errors
    ///
    /// [`Error::TensorType`] if `T` is not the tensor's element type.
    pub fn as_slice<T: Element>(&self) -> Result<&'a [T]> {
        self.spec.view(self.data)
    }
}

/// One output tensor of a custom operator's node: its spec and its buffer, which the kernel
/// must fill.
#[derive(Debug)]
pub struct OpOutput<'a> {
    spec: &'a TensorSpec,
    data: &'a mut [u8],
}

impl OpOutput<'_> {
    /// Name, type, shape and quantization.
    pub fn spec(&self) -> &TensorSpec {
        self.spec
    }

    /// The raw bytes, to write.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.data
    }

    /// The buffer as elements of `T`, its element type, to write.
    ///
    /// # Errors
    ///
    /// [`Error::TensorType`] if `T` is not the tensor's element type.
    pub fn as_mut_slice<T: Element>(&mut self) -> Result<&mut [T]> {
        self.spec.view_mut(self.data)
    }
}

/// Custom operators by name, as registered in
/// [`InterpreterOptions`](super::InterpreterOptions). Two sets are equal when they hold the
/// same kernels (the same `Arc`s) under the same names.
#[derive(Clone, Default)]
pub struct CustomOps {
    ops: Vec<(String, Arc<dyn CustomOp>)>,
}

impl CustomOps {
    /// Registers `op` under `name`, replacing any kernel of that name.
    pub fn insert(&mut self, name: impl Into<String>, op: Arc<dyn CustomOp>) {
        let name = name.into();
        self.ops.retain(|(other, _)| *other != name);
        self.ops.push((name, op));
    }

    /// Whether no operator is registered.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().map(|(name, _)| name.as_str())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn CustomOp>> {
        self.ops.iter().find(|(n, _)| n == name).map(|(_, op)| op)
    }
}

impl fmt::Debug for CustomOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl PartialEq for CustomOps {
    fn eq(&self, other: &Self) -> bool {
        self.ops.len() == other.ops.len()
            && self
                .ops
                .iter()
                .zip(&other.ops)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
    }
}

impl Eq for CustomOps {}

/// One node of a registered custom operator, as the model describes it.
struct Node {
    name: String,
    op: Arc<dyn CustomOp>,
    input_indices: Vec<c_int>,
    output_indices: Vec<c_int>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

/// The custom-operator nodes of one interpreter's model, by first output tensor, and the
/// library whose accessors read their tensors.
pub(crate) struct NodeTable {
    api: Arc<TfLiteApi>,
    nodes: HashMap<c_int, Node>,
}

/// What an interpreter keeps for its custom operators: the node table, and the names TFLite
/// points to (which must outlive the TFLite interpreter and its options).
pub(crate) struct Registered {
    pub(crate) table: Arc<NodeTable>,
    _names: Vec<CString>,
}

impl NodeTable {
    /// The nodes of `model` whose operator is in `ops`.
    fn new(api: &Arc<TfLiteApi>, model: &Model<'_>, ops: &CustomOps) -> Result<Self> {
        let mut nodes = HashMap::new();
        for (index, operator) in model.operators.iter().enumerate() {
            let Some(name) = operator
                .opcode
                .custom
                .as_deref()
                .filter(|_| operator.opcode.builtin == BUILTIN_CUSTOM)
            else {
                continue;
            };
            let Some(op) = ops.get(name) else {
                continue;
            };
            let unsupported = |what: &str| {
                Error::unsupported(format!(
                    "custom operator `{name}` (operator {index}) {what}"
                ))
            };
            let Some(&first_output) = operator.outputs.first() else {
                return Err(unsupported("has no output"));
            };
            let mut input_indices = Vec::with_capacity(operator.inputs.len());
            for input in &operator.inputs {
                let input = input.ok_or_else(|| unsupported("has an absent optional input"))?;
                input_indices.push(tensor_index(input)?);
            }
            let specs = |tensors: &mut dyn Iterator<Item = usize>| -> Result<Vec<TensorSpec>> {
                tensors
                    .map(|t| TensorSpec::from_model_tensor(&model.tensors[t]))
                    .collect()
            };
            let inputs = specs(&mut operator.present_inputs())?;
            let outputs = specs(&mut operator.outputs.iter().copied())?;
            let output_indices = operator
                .outputs
                .iter()
                .map(|&t| tensor_index(t))
                .collect::<Result<Vec<_>>>()?;
            if output_indices
                .iter()
                .enumerate()
                .any(|(i, t)| output_indices[..i].contains(t) || input_indices.contains(t))
            {
                return Err(unsupported("writes a tensor twice, or one it reads"));
            }
            nodes.insert(
                tensor_index(first_output)?,
                Node {
                    name: name.to_string(),
                    op: Arc::clone(op),
                    input_indices,
                    output_indices,
                    inputs,
                    outputs,
                },
            );
        }
        Ok(NodeTable {
            api: Arc::clone(api),
            nodes,
        })
    }
}

fn tensor_index(index: usize) -> Result<c_int> {
    c_int::try_from(index).map_err(|_| Error::unsupported(format!("tensor index {index}")))
}

/// Registers every operator of `ops` in `options`, and returns what the interpreter must keep.
///
/// # Safety
///
/// `options` must be a live options object of `api`'s library.
pub(crate) unsafe fn register(
    api: &Arc<TfLiteApi>,
    options: *mut libedgetpu_sys::TfLiteInterpreterOptions,
    model: &Model<'_>,
    ops: &CustomOps,
) -> Result<Registered> {
    let add = api
        .interpreter_options_add_custom_op
        .filter(|_| api.kernel_layout_matches())
        .ok_or_else(|| {
            Error::unsupported(format!(
                "custom operators with the TFLite library at `{}` (version {}): they need \
                 TfLiteInterpreterOptionsAddCustomOp and the kernel structs of TFLite {}.x",
                api.path().display(),
                api.version(),
                libedgetpu_sys::KERNEL_LAYOUT_VERSION
            ))
        })?;
    let table = NodeTable::new(api, model, ops)?;
    let mut names = Vec::new();
    for name in ops.names() {
        let c_name = CString::new(name).map_err(|_| {
            Error::invalid(
                "custom operator",
                format!("name `{name}` contains a NUL byte"),
            )
        })?;
        let registration = TfLiteRegistration {
            init: None,
            free: None,
            prepare: Some(prepare_node),
            invoke: Some(invoke_node),
            profiling_string: None,
            builtin_code: BUILTIN_CUSTOM,
            custom_name: std::ptr::null(),
            version: 1,
        };
        // TFLite stores one registration per version in the range: cover the versions the
        // model asks for, not every possible one.
        let max_version = model
            .operators
            .iter()
            .filter(|op| op.opcode.custom.as_deref() == Some(name))
            .map(|op| op.opcode.version)
            .max()
            .unwrap_or(1)
            .clamp(1, MAX_VERSION);
        // SAFETY: `options` is live (the caller's contract); TFLite copies `registration`
        // (whose callbacks are functions of this crate, valid for the program's life) and
        // keeps `c_name`'s pointer, which the interpreter stores beside itself and drops
        // after the TFLite interpreter and options.
        unsafe { add(options, c_name.as_ptr(), &registration, 1, max_version) };
        names.push(c_name);
    }
    Ok(Registered {
        table: Arc::new(table),
        _names: names,
    })
}

/// The highest operator version registered: a model asking for more is refused by
/// TFLite as an unresolved operator, rather than making it store a registration per version.
const MAX_VERSION: i32 = 1024;

thread_local! {
    /// The node table of the interpreter this thread is running inside TFLite, if it has
    /// custom operators.
    static ACTIVE: RefCell<Option<Arc<NodeTable>>> = const { RefCell::new(None) };
}

/// Makes `table` the thread's active node table until dropped, then restores the previous
/// one (a kernel may itself run another interpreter).
pub(crate) struct Activation {
    previous: Option<Arc<NodeTable>>,
}

impl Activation {
    pub(crate) fn new(table: &Arc<NodeTable>) -> Self {
        let previous = ACTIVE.with(|active| active.replace(Some(Arc::clone(table))));
        Activation { previous }
    }
}

impl Drop for Activation {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ACTIVE.with(|active| *active.borrow_mut() = previous);
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Prepare,
    Invoke,
}

unsafe extern "C" fn prepare_node(
    context: *mut TfLiteContext,
    node: *mut TfLiteNode,
) -> TfLiteStatus {
    // SAFETY: TFLite calls this with its live context and node.
    unsafe { run_node(context, node, Phase::Prepare) }
}

unsafe extern "C" fn invoke_node(
    context: *mut TfLiteContext,
    node: *mut TfLiteNode,
) -> TfLiteStatus {
    // SAFETY: TFLite calls this with its live context and node.
    unsafe { run_node(context, node, Phase::Invoke) }
}

/// Runs a node's kernel, turning an error or a panic into `kTfLiteError` and a message on
/// the interpreter's error reporter. Never unwinds.
///
/// # Safety
///
/// `context` and `node` are the live pointers TFLite passes to a kernel callback.
unsafe fn run_node(
    context: *mut TfLiteContext,
    node: *mut TfLiteNode,
    phase: Phase,
) -> TfLiteStatus {
    // SAFETY: forwarded from the caller.
    let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { kernel(context, node, phase) }));
    let message = match outcome {
        Ok(Ok(())) => return TfLiteStatus::OK,
        Ok(Err(error)) => error.to_string(),
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".to_string());
            // Dropping a payload can panic too: leak a second one rather than unwind.
            if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
            format!("kernel panicked: {text}")
        }
    };
    // SAFETY: `context` is live; `report_error` is the interpreter's reporter, called with a
    // "%s" format and one NUL-terminated string argument.
    unsafe {
        if let Some(report) = (*context).report_error {
            let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
            report(context, c"%s".as_ptr(), message.as_ptr());
        }
    }
    TfLiteStatus::ERROR
}

/// Reads an int array of TFLite's.
///
/// # Safety
///
/// `array` is NULL or a live `TfLiteIntArray`.
unsafe fn int_array(array: *const TfLiteIntArray) -> Vec<c_int> {
    if array.is_null() {
        return Vec::new();
    }
    // SAFETY: a live array holds `size` ints after its header.
    unsafe {
        let size = usize::try_from((*array).size).unwrap_or(0);
        std::slice::from_raw_parts(std::ptr::addr_of!((*array).data).cast::<c_int>(), size).to_vec()
    }
}

/// Finds the node's kernel and runs its phase.
///
/// # Safety
///
/// As [`run_node`].
unsafe fn kernel(context: *mut TfLiteContext, node: *mut TfLiteNode, phase: Phase) -> Result<()> {
    let table = ACTIVE
        .with(|active| active.borrow().clone())
        .ok_or_else(|| {
            Error::invalid(
                "custom operator",
                "called by TFLite outside an interpreter of this crate",
            )
        })?;
    // SAFETY: `node` is live (the caller's contract).
    let (inputs, outputs, options) = unsafe {
        let node = &*node;
        let options = if node.custom_initial_data.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(
                node.custom_initial_data.cast::<u8>(),
                usize::try_from(node.custom_initial_data_size).unwrap_or(0),
            )
        };
        (int_array(node.inputs), int_array(node.outputs), options)
    };
    let entry = outputs
        .first()
        .and_then(|first| table.nodes.get(first))
        .filter(|entry| entry.input_indices == inputs && entry.output_indices == outputs)
        .ok_or_else(|| {
            Error::invalid(
                "custom operator",
                format!("TFLite ran a node (inputs {inputs:?}, outputs {outputs:?}) the model does not have"),
            )
        })?;
    let kernel_error =
        |error: Error| Error::stage(format!("custom operator `{}`: {error}", entry.name));
    // SAFETY: `context` is live, of the library in `table.api` (the caller's contract).
    let data =
        |index: c_int, spec: &TensorSpec| unsafe { tensor_data(&table.api, context, index, spec) };
    match phase {
        Phase::Prepare => {
            for (&index, spec) in inputs
                .iter()
                .zip(&entry.inputs)
                .chain(outputs.iter().zip(&entry.outputs))
            {
                // Buffers are planned after every node is prepared: check sizes only.
                // SAFETY: `context` is live, of the library in `table.api`.
                unsafe { tensor_size(&table.api, context, index, spec) }.map_err(kernel_error)?;
            }
            entry
                .op
                .prepare(&entry.inputs, &entry.outputs, options)
                .map_err(kernel_error)
        }
        Phase::Invoke => {
            let mut input_views = Vec::with_capacity(inputs.len());
            for (&index, spec) in inputs.iter().zip(&entry.inputs) {
                let (ptr, len) = data(index, spec).map_err(kernel_error)?;
                // SAFETY: TFLite's buffer for this input holds `len` initialised bytes that
                // nothing writes while the node runs (outputs are other tensors: checked
                // when the table was built).
                let bytes = unsafe { std::slice::from_raw_parts(ptr.cast_const(), len) };
                input_views.push(OpInput { spec, data: bytes });
            }
            let mut output_views = Vec::with_capacity(outputs.len());
            for (&index, spec) in outputs.iter().zip(&entry.outputs) {
                let (ptr, len) = data(index, spec).map_err(kernel_error)?;
                // SAFETY: TFLite's buffer for this output holds `len` writable bytes that
                // only this node touches while it runs; each output is a distinct tensor,
                // apart from the inputs (checked when the table was built), so no two slices
                // overlap. Zeroing first initialises arena memory no kernel wrote yet.
                let bytes = unsafe {
                    std::ptr::write_bytes(ptr, 0, len);
                    std::slice::from_raw_parts_mut(ptr, len)
                };
                output_views.push(OpOutput { spec, data: bytes });
            }
            entry
                .op
                .invoke(&input_views, &mut output_views, options)
                .map_err(kernel_error)
        }
    }
}

/// Tensor `index` of `context`, after checking that its size is the model's.
///
/// # Safety
///
/// `context` is a live TFLite 2.9 context of `api`'s library.
unsafe fn tensor_size(
    api: &TfLiteApi,
    context: *mut TfLiteContext,
    index: c_int,
    spec: &TensorSpec,
) -> Result<*mut TfLiteTensor> {
    // SAFETY: `context` is live; its `tensors` array holds `tensors_size` tensors of
    // `TFLITE_TENSOR_SIZE` bytes (the 2.9 layout, checked when the operator was registered).
    let tensor = unsafe {
        let context = &*context;
        let index = usize::try_from(index)
            .ok()
            .filter(|&i| i < context.tensors_size)
            .ok_or_else(|| {
                Error::invalid(
                    "custom operator",
                    format!("tensor index {index} out of range"),
                )
            })?;
        context
            .tensors
            .cast::<u8>()
            .add(index * TFLITE_TENSOR_SIZE)
            .cast::<TfLiteTensor>()
    };
    // SAFETY: `tensor` is a live tensor of the context.
    let size = unsafe { (api.tensor_byte_size)(tensor) };
    Error::check_tensor_size(&spec.name, spec.byte_size, size)?;
    Ok(tensor)
}

/// The data pointer and size of tensor `index`, checked against the model's spec (a
/// dangling, aligned pointer for an empty tensor, so slices over it are valid).
///
/// # Safety
///
/// `context` is a live TFLite 2.9 context of `api`'s library, with its tensors allocated.
unsafe fn tensor_data(
    api: &TfLiteApi,
    context: *mut TfLiteContext,
    index: c_int,
    spec: &TensorSpec,
) -> Result<(*mut u8, usize)> {
    // SAFETY: the caller's contract.
    let tensor = unsafe { tensor_size(api, context, index, spec) }?;
    let size = spec.byte_size;
    if size == 0 {
        return Ok((std::ptr::NonNull::<u128>::dangling().as_ptr().cast(), 0));
    }
    // SAFETY: `tensor` is a live tensor of the context.
    let data = unsafe { (api.tensor_data)(tensor) };
    if data.is_null() {
        return Err(Error::invalid(
            "custom operator",
            format!("tensor `{}` has no data buffer", spec.name),
        ));
    }
    Ok((data.cast::<u8>(), size))
}
