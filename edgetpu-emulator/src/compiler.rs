//! The emulated `edgetpu_compiler`: maps a model's operators to one `edgetpu-custom-op` and
//! reports parameter placement as multitpu's cost model predicts it.
//!
//! Mapping follows the real compiler's shape, not its operator support: the first run of
//! operators (in execution order) that are builtin and touch no float tensor becomes one
//! custom op; everything before and after it stays on the CPU as it is (float `QUANTIZE`
//! and `DEQUANTIZE` at the model's edges, custom ops, float operators). The custom op's
//! program holds the run as an uncompiled `.tflite` ([`crate::payload`]).
//!
//! Placement and on-chip budget are [`EdgeTpuCostModel::predict`] and
//! [`EdgeTpuCostModel::segment_budget_bytes`] of the mapped operators with the whole
//! model's host transfers, that is, what the cost model predicts for the whole model.

use std::fmt::Write as _;
use std::ops::Range;

use multitpu::device::{EdgeTpuCostModel, SegmentWorkload};
use multitpu::model::edgetpu::{EDGETPU_CUSTOM_OP, is_compiled};
use multitpu::model::ops::builtin_op_name;
use multitpu::model::validate::Validation;
use multitpu::model::{BUILTIN_CUSTOM, ElementType, Graph, Model, OpCode, Operator, extract};
use multitpu::segment::Plan;

use crate::payload::{Program, custom_options};

/// The first line of every report.
pub const BANNER: &str = concat!(
    "emulated Edge TPU Compiler (multitpu edgetpu-emulator ",
    env!("CARGO_PKG_VERSION"),
    "): placement and timing from multitpu's cost model"
);

/// A compiled model and what the compiler says about it.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The compiled `.tflite` bytes.
    pub model: Vec<u8>,
    /// Parameter bytes placed on chip.
    pub on_chip_bytes: u64,
    /// Parameter bytes streamed from host memory on every inference.
    pub off_chip_bytes: u64,
    /// On-chip bytes left for parameters.
    pub on_chip_remaining_bytes: u64,
    /// Number of custom ops (0 or 1).
    pub subgraphs: usize,
    /// Operators of the input model: name and whether it was mapped.
    pub operators: Vec<(String, bool)>,
}

/// Whether the emulated device takes operator `op`: a builtin operator none of whose
/// tensors is a float.
fn mappable(model: &Model<'_>, op: &Operator<'_>) -> bool {
    let float = |t: usize| {
        matches!(
            model.tensors[t].element_type,
            ElementType::F32 | ElementType::F16 | ElementType::F64
        )
    };
    op.opcode.builtin != BUILTIN_CUSTOM
        && !op
            .present_inputs()
            .chain(op.outputs.iter().copied())
            .any(float)
}

/// The operators mapped to the device: the first run of mappable operators.
fn mapped_run(model: &Model<'_>) -> Range<usize> {
    let ops = &model.operators;
    let start = ops
        .iter()
        .position(|op| mappable(model, op))
        .unwrap_or(ops.len());
    let len = ops[start..]
        .iter()
        .take_while(|op| mappable(model, op))
        .count();
    start..start + len
}

fn op_name(op: &Operator<'_>) -> String {
    match (&op.opcode.custom, builtin_op_name(op.opcode.builtin)) {
        (Some(custom), _) if op.opcode.builtin == BUILTIN_CUSTOM => custom.to_string(),
        (_, Some(name)) => name.to_string(),
        _ => format!("BUILTIN_{}", op.opcode.builtin),
    }
}

/// Compiles the `.tflite` model in `bytes`.
pub fn compile(bytes: &[u8]) -> Result<Compiled, String> {
    let model = Model::from_bytes(bytes).map_err(|e| format!("invalid model: {e}"))?;
    if is_compiled(&model) {
        return Err("the model is already compiled (it holds an edgetpu-custom-op)".into());
    }
    // As trusted: a compiler runs nothing, and takes operators validation does not model.
    let graph = Graph::with_validation(&model, &Validation::trusted())
        .map_err(|e| format!("invalid model: {e}"))?;
    let n = model.operators.len();
    let run = mapped_run(&model);
    let operators = model
        .operators
        .iter()
        .enumerate()
        .map(|(i, op)| (op_name(op), run.contains(&i)))
        .collect();
    let cost_model = EdgeTpuCostModel::usb_default();
    if run.is_empty() {
        let whole = SegmentWorkload::from_model(&model, 0..n);
        return Ok(Compiled {
            model: bytes.to_vec(),
            on_chip_bytes: 0,
            off_chip_bytes: 0,
            on_chip_remaining_bytes: cost_model.segment_budget_bytes(&whole),
            subgraphs: 0,
            operators,
        });
    }

    // The mapped run as a segment of its own: its interface and its file.
    let cuts: Vec<usize> = [run.start, run.end]
        .into_iter()
        .filter(|&c| c > 0 && c < n)
        .collect();
    let plan = Plan::from_cuts("edgetpu", &graph, &cuts).map_err(|e| e.to_string())?;
    let segment = plan
        .segments
        .iter()
        .find(|s| s.ops == run)
        .ok_or("the mapped operators do not form a segment")?;
    let segment_bytes = extract(&graph, run.clone())
        .and_then(|m| m.to_bytes())
        .map_err(|e| e.to_string())?;
    let whole = SegmentWorkload::from_model(&model, 0..n);
    let program = Program {
        input_bytes: whole.input_bytes,
        output_bytes: whole.output_bytes,
        segment: &segment_bytes,
    };
    let workload = program.workload()?;
    let prediction = cost_model.predict(&workload);

    let custom = Operator {
        opcode: OpCode {
            builtin: BUILTIN_CUSTOM,
            custom: Some(EDGETPU_CUSTOM_OP.into()),
            version: 1,
        },
        inputs: segment.inputs.iter().map(|&t| Some(t)).collect(),
        outputs: segment.outputs.clone(),
        intermediates: Vec::new(),
        builtin_options: None,
        custom_options: Some(custom_options(&program.encode())?.into()),
        custom_options_format: 0,
        mutating_variable_inputs: Vec::new(),
    };
    let mut operators_out = model.operators[..run.start].to_vec();
    operators_out.push(custom);
    operators_out.extend_from_slice(&model.operators[run.end..]);
    let compiled = without_unused_tensors(Model {
        operators: operators_out,
        ..model.clone()
    });
    Ok(Compiled {
        model: compiled.to_bytes().map_err(|e| e.to_string())?,
        on_chip_bytes: prediction.on_chip_bytes,
        off_chip_bytes: prediction.off_chip_bytes,
        on_chip_remaining_bytes: cost_model
            .segment_budget_bytes(&workload)
            .saturating_sub(prediction.on_chip_bytes),
        subgraphs: 1,
        operators,
    })
}

/// `model` without the tensors no operator, input or output refers to any more (the
/// weights now inside the device program), renumbered in their original order.
fn without_unused_tensors(mut model: Model<'_>) -> Model<'_> {
    let mut used = vec![false; model.tensors.len()];
    for op in &model.operators {
        for t in op
            .present_inputs()
            .chain(op.outputs.iter().copied())
            .chain(op.intermediates.iter().copied())
        {
            used[t] = true;
        }
    }
    for &t in model.inputs.iter().chain(&model.outputs) {
        used[t] = true;
    }
    let mut new_index = vec![usize::MAX; used.len()];
    let kept = used.iter().enumerate().filter(|(_, u)| **u);
    for (new, (old, _)) in kept.enumerate() {
        new_index[old] = new;
    }
    let mut keep = used.iter();
    model
        .tensors
        .retain(|_| keep.next().copied().unwrap_or(false));
    let remap = |t: &mut usize| *t = new_index[*t];
    for op in &mut model.operators {
        op.inputs.iter_mut().flatten().for_each(remap);
        op.outputs.iter_mut().for_each(remap);
        op.intermediates.iter_mut().for_each(remap);
    }
    model.inputs.iter_mut().for_each(remap);
    model.outputs.iter_mut().for_each(remap);
    model
}

/// A size as the real compiler prints it: two decimals, in B, KiB, MiB or GiB.
pub fn format_size(bytes: u64) -> String {
    let b = bytes as f64;
    let (value, unit) = if b < 1024.0 {
        (b, "B")
    } else if b < 1024.0 * 1024.0 {
        (b / 1024.0, "KiB")
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        (b / (1024.0 * 1024.0), "MiB")
    } else {
        (b / (1024.0 * 1024.0 * 1024.0), "GiB")
    };
    format!("{value:.2}{unit}")
}

impl Compiled {
    /// The report lines of the real compiler, with this compiler's figures (without the
    /// operator table).
    pub fn summary(&self, input: &str, input_size: u64, output: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Input model: {input}");
        let _ = writeln!(s, "Input size: {}", format_size(input_size));
        let _ = writeln!(s, "Output model: {output}");
        let _ = writeln!(s, "Output size: {}", format_size(self.model.len() as u64));
        let _ = writeln!(
            s,
            "On-chip memory used for caching model parameters: {}",
            format_size(self.on_chip_bytes)
        );
        let _ = writeln!(
            s,
            "On-chip memory remaining for caching model parameters: {}",
            format_size(self.on_chip_remaining_bytes)
        );
        let _ = writeln!(
            s,
            "Off-chip memory used for streaming uncached model parameters: {}",
            format_size(self.off_chip_bytes)
        );
        let _ = writeln!(
            s,
            "Number of emulated Edge TPU subgraphs: {}",
            self.subgraphs
        );
        let _ = writeln!(s, "Total number of operations: {}", self.operators.len());
        s
    }

    /// The operator table: one line per operator name and status, with counts.
    pub fn operator_table(&self) -> String {
        let mut rows: Vec<(&str, bool, usize)> = Vec::new();
        for (name, mapped) in &self.operators {
            match rows.iter_mut().find(|(n, m, _)| n == name && m == mapped) {
                Some(row) => row.2 += 1,
                None => rows.push((name, *mapped, 1)),
            }
        }
        let mut s = format!("{:<30} {:<10} Status\n\n", "Operator", "Count");
        for (name, mapped, count) in rows {
            let status = if mapped {
                "Mapped to emulated Edge TPU"
            } else if self.subgraphs == 0 {
                "Not mapped: no operator without float tensors"
            } else {
                "Not mapped: a float tensor, a custom op, or after the mapped operators"
            };
            let _ = writeln!(s, "{name:<30} {count:<10} {status}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multitpu::model::edgetpu::programs;
    use multitpu::model::ops;
    use multitpu::model::paper;

    #[test]
    fn maps_the_quantized_operators_of_a_paper_model() {
        let model = paper::fc(300).unwrap();
        let bytes = model.to_bytes().unwrap();
        let compiled = compile(&bytes).unwrap();
        let out = Model::from_bytes(&compiled.model).unwrap();
        // fc: float input → QUANTIZE → dense layers → DEQUANTIZE → float output.
        let names: Vec<&str> = out
            .operators
            .iter()
            .map(|op| {
                op.opcode
                    .custom
                    .as_deref()
                    .unwrap_or_else(|| builtin_op_name(op.opcode.builtin).unwrap())
            })
            .collect();
        assert_eq!(names.first(), Some(&"QUANTIZE"), "{names:?}");
        assert!(names.contains(&EDGETPU_CUSTOM_OP), "{names:?}");
        assert_eq!(programs(&out).len(), 1);
        assert!(compiled.operators.iter().any(|(_, mapped)| *mapped));
        assert_eq!(out.tensors[out.inputs[0]], model.tensors[model.inputs[0]]);
        assert_eq!(out.tensors[out.outputs[0]], model.tensors[model.outputs[0]]);
        // The weights moved into the program: no constant tensor is left outside it.
        assert!(out.tensors.iter().all(|t| !t.is_constant()));
        // Placement is the cost model's for the whole model.
        let n = model.operators.len();
        let predicted =
            EdgeTpuCostModel::usb_default().predict(&SegmentWorkload::from_model(&model, 0..n));
        assert_eq!(compiled.on_chip_bytes, predicted.on_chip_bytes);
        assert_eq!(compiled.off_chip_bytes, predicted.off_chip_bytes);
        assert!(
            compile(&compiled.model)
                .unwrap_err()
                .contains("already compiled")
        );
    }

    #[test]
    fn a_float_model_maps_nothing() {
        let mut model = paper::fc(64).unwrap();
        model
            .operators
            .retain(|op| op.opcode.builtin == ops::QUANTIZE);
        model.outputs = model.operators[0].outputs.clone();
        let bytes = model.to_bytes().unwrap();
        let compiled = compile(&bytes).unwrap();
        assert_eq!(compiled.subgraphs, 0);
        assert_eq!(compiled.model, bytes);
        assert!(compiled.operator_table().contains("Not mapped"));
    }

    #[test]
    fn sizes_print_like_the_real_compiler() {
        assert_eq!(format_size(0), "0.00B");
        assert_eq!(format_size(3 * 1024), "3.00KiB");
        assert_eq!(format_size(7_382_000), "7.04MiB");
        assert_eq!(format_size(3 << 30), "3.00GiB");
    }
}
