//! Where each operator runs: which operators the Edge TPU compiler maps to the device, and
//! which stay on the host CPU.
//!
//! The rules are Coral's published ones ("TensorFlow models on the Edge TPU", supported
//! operations):
//! - only the listed builtin operators are mapped ([`EDGE_TPU_OPERATORS`]); custom operators
//!   and every other builtin run on the CPU;
//! - every tensor an operator reads or writes at run time is 8-bit quantized (int8 or
//!   uint8; the LSTM's cell state may be int16), and has at most three dimensions larger
//!   than 1, the innermost ones;
//! - a float `QUANTIZE` at a segment's inputs and a `DEQUANTIZE` to float at its outputs run
//!   on the host CPU, inside the same interpreter as the device program: the compiler keeps
//!   them out of the device program, but they do not interrupt it;
//! - the compiler maps one run of operators: from the first mappable operator up to the
//!   first one it cannot map; that operator and everything after it run on the CPU, even
//!   where mappable operators follow ([`compiled_split`]).
//!
//! The compiler has further limits it does not publish in full (e.g. it may leave a
//! `RESIZE_BILINEAR` on the CPU to avoid a loss of precision); this model does not guess them.

use std::ops::Range;

use crate::model::ops::{self, builtin_op_name};
use crate::model::{BUILTIN_CUSTOM, ElementType, Model};

/// Builtin operators the Edge TPU compiler maps, by schema name (Coral's table of supported
/// operations).
pub const EDGE_TPU_OPERATORS: &[&str] = &[
    "ADD",
    "AVERAGE_POOL_2D",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "EXPAND_DIMS",
    "FULLY_CONNECTED",
    "HARD_SWISH",
    "L2_NORMALIZATION",
    "LOGISTIC",
    "MAXIMUM",
    "MAX_POOL_2D",
    "MEAN",
    "MINIMUM",
    "MUL",
    "PACK",
    "PAD",
    "PRELU",
    "QUANTIZE",
    "REDUCE_MAX",
    "REDUCE_MIN",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "RESHAPE",
    "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR",
    "RSQRT",
    "SLICE",
    "SOFTMAX",
    "SPACE_TO_DEPTH",
    "SPLIT",
    "SQUARED_DIFFERENCE",
    "SQUEEZE",
    "STRIDED_SLICE",
    "SUB",
    "SUM",
    "TANH",
    "TRANSPOSE",
    "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
];

/// Where one operator runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpSupport {
    /// The compiler maps it to the Edge TPU.
    EdgeTpu,
    /// A float-to-integer `QUANTIZE`: on the host, inside a device segment that it starts
    /// (its input comes from outside the segment); anywhere else it is a CPU operator.
    HostQuantize,
    /// An integer-to-float `DEQUANTIZE`: on the host, inside a device segment that it ends
    /// (no later operator of the segment reads its output); anywhere else it is a CPU
    /// operator.
    HostDequantize,
    /// Runs on the CPU, for the reason given.
    Cpu(String),
}

impl OpSupport {
    /// Whether the operator is mapped to the device.
    pub fn is_edgetpu(&self) -> bool {
        matches!(self, OpSupport::EdgeTpu)
    }
}

/// Where each operator of `model` runs, in execution order.
pub fn op_support(model: &Model<'_>) -> Vec<OpSupport> {
    (0..model.operators.len())
        .map(|op| support_of(model, op))
        .collect()
}

fn support_of(model: &Model<'_>, op: usize) -> OpSupport {
    let operator = &model.operators[op];
    let code = operator.opcode.builtin;
    if code == BUILTIN_CUSTOM {
        let name = operator.opcode.custom.as_deref().unwrap_or("");
        return OpSupport::Cpu(format!("custom operator `{name}`"));
    }
    let name = builtin_op_name(code).unwrap_or("an unknown builtin");
    let element = |t: usize| model.tensors.get(t).map(|t| t.element_type);
    let first_input = operator.present_inputs().next().and_then(element);
    let first_output = operator.outputs.first().copied().and_then(element);
    let is_int8 = |e: Option<ElementType>| matches!(e, Some(ElementType::I8 | ElementType::U8));
    if code == ops::QUANTIZE && first_input == Some(ElementType::F32) && is_int8(first_output) {
        return OpSupport::HostQuantize;
    }
    if code == ops::DEQUANTIZE && is_int8(first_input) && first_output == Some(ElementType::F32) {
        return OpSupport::HostDequantize;
    }
    if !EDGE_TPU_OPERATORS.contains(&name) {
        return OpSupport::Cpu(format!("`{name}` is not an Edge TPU operator"));
    }
    let runtime_tensors = operator
        .present_inputs()
        .chain(operator.outputs.iter().copied())
        .filter(|&t| model.tensors.get(t).is_some_and(|t| !t.is_constant()));
    for t in runtime_tensors {
        let tensor = &model.tensors[t];
        let allowed = match tensor.element_type {
            ElementType::I8 | ElementType::U8 => true,
            ElementType::I16 => code == ops::UNIDIRECTIONAL_SEQUENCE_LSTM && tensor.is_variable,
            _ => false,
        };
        if !allowed {
            return OpSupport::Cpu(format!(
                "`{name}` on {:?} tensor `{}`: the Edge TPU runs 8-bit quantized tensors only",
                tensor.element_type, tensor.name
            ));
        }
        let outer = tensor.shape.len().saturating_sub(3);
        if tensor.shape[..outer].iter().any(|&d| d > 1) {
            return OpSupport::Cpu(format!(
                "`{name}` on tensor `{}` of shape {:?}: only the 3 innermost dimensions may \
                 exceed 1 on the Edge TPU",
                tensor.name, tensor.shape
            ));
        }
    }
    OpSupport::EdgeTpu
}

/// How the compiler splits `ops` of `model` when it compiles them as one segment: the
/// operators of the device program, and those left on the CPU after it.
///
/// Host `QUANTIZE`s at the start and host `DEQUANTIZE`s at the outputs run on the host
/// around the device program and are in neither range. The device program runs from the
/// first mapped operator to the last before the first operator that is neither mapped nor
/// host quantisation at the segment's edges; that operator and all after it are on the CPU.
/// A segment that starts with a CPU operator has an empty device program.
pub fn compiled_split(
    model: &Model<'_>,
    support: &[OpSupport],
    ops: Range<usize>,
) -> (Range<usize>, Range<usize>) {
    let mut device: Option<Range<usize>> = None;
    for op in ops.clone() {
        let at_edge = match &support[op] {
            OpSupport::EdgeTpu => {
                let run = device.get_or_insert(op..op);
                run.end = op + 1;
                continue;
            }
            OpSupport::HostQuantize => device.is_none(),
            OpSupport::HostDequantize => !read_inside(model, op, op + 1..ops.end),
            OpSupport::Cpu(_) => false,
        };
        if !at_edge {
            let device = device.unwrap_or(op..op);
            return (device, op..ops.end);
        }
    }
    (device.unwrap_or(ops.end..ops.end), ops.end..ops.end)
}

/// How operators `ops` of `model` run once compiled as one segment: `Some(tail)` when the
/// compiler maps a device program (operators `ops.start..tail.start` then run on the device,
/// with the host quantisation at its edges, and `tail` on the CPU after it in the same
/// interpreter; `tail` is empty when everything maps), `None` when it maps nothing and the
/// whole segment runs on the CPU ([`compiled_split`]).
pub fn compiled_tail(
    model: &Model<'_>,
    support: &[OpSupport],
    ops: Range<usize>,
) -> Option<Range<usize>> {
    let (device, tail) = compiled_split(model, support, ops);
    device
        .clone()
        .any(|op| matches!(support[op], OpSupport::EdgeTpu))
        .then_some(tail)
}

/// Whether an operator in `later` reads an output of `op`.
fn read_inside(model: &Model<'_>, op: usize, later: Range<usize>) -> bool {
    let outputs = &model.operators[op].outputs;
    later.into_iter().any(|reader| {
        model.operators[reader]
            .present_inputs()
            .any(|t| outputs.contains(&t))
    })
}

/// Which operator ranges of a model can be one Edge TPU segment: those the compiler maps
/// whole (host quantisation at the edges aside) and that hold at least one mapped operator.
///
/// A segment that holds no mapped operator, or that the compiler would split between the
/// device and the CPU, is a CPU segment. Answers in constant time after a set-up of
/// `O(n²)` for `n` operators.
#[derive(Debug, Clone)]
pub struct DeviceSegments {
    /// Per first operator `a`: the first mapped operator at or after it (`n` if none).
    first_mapped: Vec<usize>,
    /// Per first operator `a`: the largest end such that `a..end` holds nothing that stops
    /// the device program.
    open_until: Vec<usize>,
    /// `cpu_before[op]`: operators before `op` that only the CPU runs ([`OpSupport::Cpu`]).
    cpu_before: Vec<usize>,
}

impl DeviceSegments {
    /// The device segments of `model`, from the support of each of its operators
    /// ([`op_support`]).
    pub fn new(model: &Model<'_>, support: &[OpSupport]) -> DeviceSegments {
        let n = support.len();
        let first_reader = |op: usize| {
            let outputs = &model.operators[op].outputs;
            (op + 1..n).find(|&reader| {
                model.operators[reader]
                    .present_inputs()
                    .any(|t| outputs.contains(&t))
            })
        };
        let readers: Vec<Option<usize>> = (0..n)
            .map(|op| {
                (support[op] == OpSupport::HostDequantize)
                    .then(|| first_reader(op))
                    .flatten()
            })
            .collect();
        let mut first_mapped = vec![n; n + 1];
        for a in (0..n).rev() {
            first_mapped[a] = if support[a].is_edgetpu() {
                a
            } else {
                first_mapped[a + 1]
            };
        }
        let open_until = (0..n)
            .map(|a| {
                let mut limit = n;
                for op in a..n {
                    if op >= limit {
                        break;
                    }
                    let stops_at = match &support[op] {
                        OpSupport::EdgeTpu => None,
                        OpSupport::HostQuantize => (first_mapped[a] < op).then_some(op),
                        OpSupport::HostDequantize => readers[op],
                        OpSupport::Cpu(_) => Some(op),
                    };
                    if let Some(stop) = stops_at {
                        limit = limit.min(stop);
                    }
                }
                limit
            })
            .collect();
        let mut cpu_before = vec![0; n + 1];
        for op in 0..n {
            cpu_before[op + 1] =
                cpu_before[op] + usize::from(matches!(support[op], OpSupport::Cpu(_)));
        }
        DeviceSegments {
            first_mapped,
            open_until,
            cpu_before,
        }
    }

    /// Whether `ops` holds an operator that only the CPU runs (not host quantisation, which
    /// can ride at the edge of a device segment).
    pub fn needs_cpu(&self, ops: &Range<usize>) -> bool {
        let end = ops.end.min(self.cpu_before.len() - 1);
        let start = ops.start.min(end);
        self.cpu_before[end] > self.cpu_before[start]
    }

    /// Operators described.
    pub fn op_count(&self) -> usize {
        self.cpu_before.len() - 1
    }

    /// Whether operators `ops` can be one Edge TPU segment.
    pub fn allows(&self, ops: &Range<usize>) -> bool {
        ops.start < ops.end
            && ops.start < self.open_until.len()
            && self.first_mapped[ops.start] < ops.end
            && ops.end <= self.open_until[ops.start]
    }

    /// The largest end of a device segment starting at operator `start` (`start` itself if
    /// none can start there).
    pub fn open_until(&self, start: usize) -> usize {
        self.open_until.get(start).copied().unwrap_or(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::options::{BuiltinOptions, FieldValue};
    use crate::model::{OpCode, paper};

    /// The paper's fc model with operator `op` made a `LEAKY_RELU`, which only the CPU runs.
    fn fc_with_cpu_op_at(op: usize) -> Model<'static> {
        let mut model = paper::fc(100).expect("fc").into_owned();
        let (union, kind) = ops::default_options_for(ops::LEAKY_RELU).expect("options");
        let operator = &mut model.operators[op];
        operator.opcode = OpCode {
            builtin: ops::LEAKY_RELU,
            custom: None,
            version: 2,
        };
        operator.builtin_options = Some(
            BuiltinOptions::new(union, kind)
                .with("alpha", FieldValue::F32(0.5))
                .expect("alpha"),
        );
        model
    }

    /// `DeviceSegments::allows` says exactly what `compiled_split` does: the compiler maps
    /// the whole range (host quantisation aside) and the device program is not empty.
    fn check_agreement(model: &Model<'_>) {
        let support = op_support(model);
        let device = DeviceSegments::new(model, &support);
        let n = support.len();
        for start in 0..n {
            for end in start + 1..=n {
                let (program, cpu) = compiled_split(model, &support, start..end);
                let whole = !program.is_empty() && cpu.is_empty();
                assert_eq!(device.allows(&(start..end)), whole, "{start}..{end}");
                let cpu_only = (start..end).any(|op| matches!(support[op], OpSupport::Cpu(_)));
                assert_eq!(device.needs_cpu(&(start..end)), cpu_only, "{start}..{end}");
            }
        }
    }

    #[test]
    fn host_quantisation_sits_around_the_device_program() {
        let model = paper::fc(100).expect("fc");
        let support = op_support(&model);
        let n = support.len();
        assert_eq!(support[0], OpSupport::HostQuantize);
        assert_eq!(support[n - 1], OpSupport::HostDequantize);
        assert!(support[1..n - 1].iter().all(OpSupport::is_edgetpu));
        assert_eq!(compiled_split(&model, &support, 0..n), (1..n - 1, n..n));
        // Host quantisation alone is no device segment; it rides on one.
        let device = DeviceSegments::new(&model, &support);
        assert!(!device.allows(&(0..1)) && !device.allows(&(n - 1..n)));
        assert!(device.allows(&(0..n)));
        check_agreement(&model);
    }

    #[test]
    fn the_first_cpu_operator_ends_the_device_program() {
        let model = fc_with_cpu_op_at(4);
        let support = op_support(&model);
        let n = support.len();
        assert!(matches!(&support[4], OpSupport::Cpu(reason) if reason.contains("LEAKY_RELU")));
        // Mapped operators after it run on the CPU too, as the compiler leaves them.
        assert_eq!(compiled_split(&model, &support, 0..n), (1..4, 4..n));
        // A segment starting with it has no device program at all.
        assert_eq!(compiled_split(&model, &support, 4..n), (4..4, 4..n));
        assert_eq!(compiled_split(&model, &support, 5..n), (5..n - 1, n..n));
        check_agreement(&model);
    }
}
