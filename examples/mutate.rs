//! Write mutated copies of models, one field changed in each, for robustness campaigns
//! (`scripts/mutate` runs each through `segment --verify 1` and `pipeline --backend cpu`).
//!
//! ```text
//! cargo run --release --example mutate -- MODEL... --out DIR [--per-model N] [--seed S]
//! ```
//!
//! For each model, the changes aim where hostile files hurt most: the activations that cross
//! the cuts the examples make (`uniform` plans into 2 and 3 segments, `profiled` ones for
//! budgets of 2 and 3 devices), the model's inputs and outputs, the constants and operators
//! next to those cuts. Changes:
//! dimensions (0, -1, `i32::MIN`, `i32::MAX`, 65536, one more), rank, element type (every
//! other type), quantization (infinite, NaN, zero, negative, subnormal, tiny and huge
//! scales; out-of-range zero points; a wrong axis or scale count; removed or added),
//! variable flags, constant data (truncated, emptied, removed, added), operator codes and
//! versions, inputs and outputs rewired (absent, to a constant, to a later tensor, to a
//! model input), option values and whole options tables, and the subgraph (inputs dropped,
//! an output added, two operators swapped).
//!
//! Up to N changes per model (default 200) are drawn, seeded, evenly from each kind. Each
//! mutated model is written as `DIR/<stem>__<n>.tflite`, and `DIR/mutations.tsv` gets a line
//! `file, model, kind, segments, strategy, change` (tab-separated; `segments` is the device
//! budget for `profiled`, the examples' `--devices`): the plan whose cut the change aims at.
//! Changes our writer refuses are counted and skipped.

use std::error::Error;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use multitpu::device::EdgeTpuCostModel;
use multitpu::model::builder::{SplitMix64, per_tensor};
use multitpu::model::options::FieldValue;
use multitpu::model::{ElementType, Graph, Model, ops};
use multitpu::segment;

/// Write mutated copies of models, one field changed in each, for robustness campaigns.
#[derive(Parser)]
#[command(name = "mutate")]
struct Args {
    /// The `.tflite` models to mutate.
    #[arg(value_name = "MODEL", required = true)]
    models: Vec<PathBuf>,
    /// The folder for the mutated models and `mutations.tsv` (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Changes drawn per model, at most.
    #[arg(long, value_name = "N", default_value_t = 200)]
    per_model: usize,
    /// Seed of the draw.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
}

const TYPES: [ElementType; 18] = [
    ElementType::F32,
    ElementType::F16,
    ElementType::I32,
    ElementType::U8,
    ElementType::I64,
    ElementType::String,
    ElementType::Bool,
    ElementType::I16,
    ElementType::Complex64,
    ElementType::I8,
    ElementType::F64,
    ElementType::Complex128,
    ElementType::U64,
    ElementType::Resource,
    ElementType::Variant,
    ElementType::U32,
    ElementType::U16,
    ElementType::I4,
];

const DIMS: [i32; 5] = [0, -1, i32::MIN, i32::MAX, 65536];
const SCALES: [f32; 10] = [
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    0.0,
    -1.0,
    1e-45,
    1e-30,
    3e38,
    1e10,
    1e-10,
];
const ZERO_POINTS: [i64; 5] = [256, -129, 40000, i64::MAX, i64::MIN];
const OPCODES: [i32; 14] = [
    ops::ADD,
    ops::MUL,
    ops::CONV_2D,
    ops::DEPTHWISE_CONV_2D,
    ops::FULLY_CONNECTED,
    ops::RESHAPE,
    ops::SOFTMAX,
    ops::CONCATENATION,
    ops::MAX_POOL_2D,
    ops::PAD,
    ops::MEAN,
    ops::UNIDIRECTIONAL_SEQUENCE_LSTM,
    ops::TRANSPOSE_CONV,
    ops::BATCH_MATMUL,
];

/// One change to a model.
#[derive(Debug, Clone)]
enum Change {
    Dim {
        tensor: usize,
        dim: usize,
        value: i32,
    },
    Rank {
        tensor: usize,
        add: bool,
    },
    Type {
        tensor: usize,
        to: ElementType,
    },
    Scale {
        tensor: usize,
        value: f32,
    },
    ZeroPoint {
        tensor: usize,
        value: i64,
    },
    QuantizedDimension {
        tensor: usize,
        value: i32,
    },
    ExtraScale {
        tensor: usize,
    },
    ScalesCleared {
        tensor: usize,
    },
    Unquantized {
        tensor: usize,
    },
    Quantized {
        tensor: usize,
    },
    Variable {
        tensor: usize,
    },
    DataTruncated {
        tensor: usize,
    },
    DataEmptied {
        tensor: usize,
    },
    DataRemoved {
        tensor: usize,
    },
    DataAdded {
        tensor: usize,
    },
    Opcode {
        op: usize,
        to: i32,
    },
    Version {
        op: usize,
        to: i32,
    },
    Input {
        op: usize,
        slot: usize,
        to: Option<usize>,
    },
    Output {
        op: usize,
        slot: usize,
        to: usize,
    },
    OptionsRemoved {
        op: usize,
    },
    OptionField {
        op: usize,
        field: usize,
        value: i64,
    },
    InputsDropped,
    OutputAdded {
        tensor: usize,
    },
    Swapped {
        op: usize,
    },
}

/// A change, what kind it is, and the plan it aims at.
struct Recipe {
    kind: &'static str,
    segments: usize,
    strategy: &'static str,
    change: Change,
}

fn apply(model: &mut Model<'static>, change: &Change) {
    let scales = |model: &mut Model<'static>, t: usize| {
        model.tensors[t]
            .quantization
            .get_or_insert_with(|| per_tensor(0.5, 0))
            .clone()
    };
    match *change {
        Change::Dim { tensor, dim, value } => model.tensors[tensor].shape[dim] = value,
        Change::Rank { tensor, add: true } => model.tensors[tensor].shape.push(2),
        Change::Rank { tensor, add: false } => {
            model.tensors[tensor].shape.pop();
        }
        Change::Type { tensor, to } => model.tensors[tensor].element_type = to,
        Change::Scale { tensor, value } => {
            let mut q = scales(model, tensor);
            if q.scale.is_empty() {
                // Converters record an empty quantization on unquantized tensors.
                q.scale.push(value);
                q.zero_point.push(0);
            }
            q.scale.iter_mut().for_each(|s| *s = value);
            model.tensors[tensor].quantization = Some(q);
        }
        Change::ZeroPoint { tensor, value } => {
            let mut q = scales(model, tensor);
            if q.zero_point.is_empty() {
                q.scale.push(0.5);
                q.zero_point.push(value);
            }
            q.zero_point.iter_mut().for_each(|z| *z = value);
            model.tensors[tensor].quantization = Some(q);
        }
        Change::QuantizedDimension { tensor, value } => {
            let mut q = scales(model, tensor);
            q.quantized_dimension = value;
            model.tensors[tensor].quantization = Some(q);
        }
        Change::ExtraScale { tensor } => {
            let mut q = scales(model, tensor);
            q.scale.push(0.5);
            q.zero_point.push(0);
            model.tensors[tensor].quantization = Some(q);
        }
        Change::ScalesCleared { tensor } => {
            let mut q = scales(model, tensor);
            q.scale.clear();
            model.tensors[tensor].quantization = Some(q);
        }
        Change::Unquantized { tensor } => model.tensors[tensor].quantization = None,
        Change::Quantized { tensor } => {
            model.tensors[tensor].quantization = Some(per_tensor(0.25, 3))
        }
        Change::Variable { tensor } => {
            model.tensors[tensor].is_variable = !model.tensors[tensor].is_variable
        }
        Change::DataTruncated { tensor } => {
            if let Some(data) = &mut model.tensors[tensor].data {
                let half = data.len() / 2;
                data.to_mut().truncate(half);
            }
        }
        Change::DataEmptied { tensor } => model.tensors[tensor].data = Some(Vec::new().into()),
        Change::DataRemoved { tensor } => model.tensors[tensor].data = None,
        Change::DataAdded { tensor } => {
            let size = model.tensors[tensor].byte_size().unwrap_or(0).min(1 << 20);
            model.tensors[tensor].data = Some(vec![0u8; size].into());
        }
        Change::Opcode { op, to } => model.operators[op].opcode.builtin = to,
        Change::Version { op, to } => model.operators[op].opcode.version = to,
        Change::Input { op, slot, to } => model.operators[op].inputs[slot] = to,
        Change::Output { op, slot, to } => model.operators[op].outputs[slot] = to,
        Change::OptionsRemoved { op } => model.operators[op].builtin_options = None,
        Change::OptionField { op, field, value } => {
            if let Some(options) = &mut model.operators[op].builtin_options {
                let slot = &mut options.fields[field].1;
                let new = match &*slot {
                    FieldValue::Bool(_) => FieldValue::Bool(value != 0),
                    FieldValue::I8(_) => FieldValue::I8(value as i8),
                    FieldValue::U8(_) => FieldValue::U8(value as u8),
                    FieldValue::I16(_) => FieldValue::I16(value as i16),
                    FieldValue::U16(_) => FieldValue::U16(value as u16),
                    FieldValue::I32(_) => FieldValue::I32(value as i32),
                    FieldValue::U32(_) => FieldValue::U32(value as u32),
                    FieldValue::I64(_) => FieldValue::I64(value),
                    FieldValue::U64(_) => FieldValue::U64(value as u64),
                    FieldValue::F32(_) => FieldValue::F32(value as f32),
                    FieldValue::F64(_) => FieldValue::F64(value as f64),
                    FieldValue::VecI32(v) => FieldValue::VecI32(vec![value as i32; v.len()]),
                    FieldValue::VecI64(v) => FieldValue::VecI64(vec![value; v.len()]),
                    FieldValue::VecU32(v) => FieldValue::VecU32(vec![value as u32; v.len()]),
                    other => other.clone(),
                };
                *slot = new;
            }
        }
        Change::InputsDropped => model.inputs.clear(),
        Change::OutputAdded { tensor } => model.outputs.push(tensor),
        Change::Swapped { op } => model.operators.swap(op, op + 1),
    }
}

/// Every change this campaign makes to `model`, by kind.
fn recipes(model: &Model<'_>) -> Vec<Recipe> {
    let Ok(graph) = Graph::new(model) else {
        return Vec::new();
    };
    let cost_model = EdgeTpuCostModel::usb_default();
    let ops = graph.op_count();
    // Crossing tensors and operators next to the cuts of the examples' plans.
    let mut crossing: Vec<(usize, usize, &'static str)> = Vec::new();
    let mut near: Vec<(usize, usize, &'static str)> = Vec::new();
    for segments in [2, 3] {
        for strategy in ["uniform", "profiled"] {
            let Ok(plan) =
                segment::strategy(strategy, &cost_model).and_then(|s| s.plan(&graph, segments))
            else {
                continue;
            };
            for cut in plan.cuts() {
                for t in graph.crossing(cut) {
                    crossing.push((t, segments, strategy));
                }
                near.push((cut - 1, segments, strategy));
                near.push((cut, segments, strategy));
            }
        }
    }
    crossing.sort_unstable();
    crossing.dedup_by_key(|c| c.0);
    near.sort_unstable();
    near.dedup_by_key(|n| n.0);
    if near.is_empty() && ops > 0 {
        near.push((0, 2, "uniform"));
        near.push((ops - 1, 2, "uniform"));
    }
    let interface: Vec<(usize, usize, &'static str)> = model
        .inputs
        .iter()
        .chain(&model.outputs)
        .map(|&t| (t, 2, "uniform"))
        .collect();
    let constants: Vec<(usize, usize, &'static str)> = near
        .iter()
        .flat_map(|&(op, n, s)| {
            model.operators[op]
                .present_inputs()
                .filter(|&t| model.tensors[t].is_constant())
                .map(move |t| (t, n, s))
        })
        .collect();

    let mut out = Vec::new();
    let mut push = |kind, (segments, strategy): (usize, &'static str), change| {
        out.push(Recipe {
            kind,
            segments,
            strategy,
            change,
        })
    };
    for (group, tensors) in [("crossing", &crossing), ("interface", &interface)] {
        for &(tensor, n, s) in tensors {
            let plan = (n, s);
            let t = &model.tensors[tensor];
            for dim in 0..t.shape.len() {
                for value in DIMS.into_iter().chain([t.shape[dim].saturating_add(1)]) {
                    push(
                        kind(group, "shape"),
                        plan,
                        Change::Dim { tensor, dim, value },
                    );
                }
            }
            for add in [true, false] {
                push(kind(group, "shape"), plan, Change::Rank { tensor, add });
            }
            for to in TYPES.into_iter().filter(|&to| to != t.element_type) {
                push(kind(group, "type"), plan, Change::Type { tensor, to });
            }
            let q = kind(group, "quantization");
            for value in SCALES {
                push(q, plan, Change::Scale { tensor, value });
            }
            for value in ZERO_POINTS {
                push(q, plan, Change::ZeroPoint { tensor, value });
            }
            for value in [1, 3, 7, -1] {
                push(q, plan, Change::QuantizedDimension { tensor, value });
            }
            push(q, plan, Change::ExtraScale { tensor });
            push(q, plan, Change::ScalesCleared { tensor });
            push(q, plan, Change::Unquantized { tensor });
            push(q, plan, Change::Quantized { tensor });
            push(kind(group, "variable"), plan, Change::Variable { tensor });
            push(kind(group, "data"), plan, Change::DataAdded { tensor });
        }
    }
    for &(tensor, n, s) in &constants {
        let plan = (n, s);
        push("constant data", plan, Change::DataTruncated { tensor });
        push("constant data", plan, Change::DataEmptied { tensor });
        push("constant data", plan, Change::DataRemoved { tensor });
        for value in [0, -1, 65536] {
            push(
                "constant shape",
                plan,
                Change::Dim {
                    tensor,
                    dim: 0,
                    value,
                },
            );
        }
        for to in [
            ElementType::F32,
            ElementType::I8,
            ElementType::I64,
            ElementType::I4,
        ] {
            push("constant type", plan, Change::Type { tensor, to });
        }
        push(
            "constant quantization",
            plan,
            Change::Scale {
                tensor,
                value: f32::NAN,
            },
        );
        push("constant quantization", plan, Change::ExtraScale { tensor });
    }
    let tensors = model.tensors.len();
    for &(op, n, s) in &near {
        let plan = (n, s);
        let operator = &model.operators[op];
        for to in OPCODES
            .into_iter()
            .filter(|&to| to != operator.opcode.builtin)
        {
            push("operator code", plan, Change::Opcode { op, to });
        }
        for to in [0, 99] {
            push("operator code", plan, Change::Version { op, to });
        }
        for slot in 0..operator.inputs.len() {
            let later = operator.outputs.first().map_or(0, |&o| (o + 1) % tensors);
            let constant = model.tensors.iter().position(|t| t.is_constant());
            for to in [None, Some(later), constant, model.inputs.first().copied()] {
                push("operator wiring", plan, Change::Input { op, slot, to });
            }
        }
        for slot in 0..operator.outputs.len() {
            let others = [
                model.inputs.first().copied(),
                model.tensors.iter().position(|t| t.is_constant()),
                operator.present_inputs().next(),
            ];
            for to in others.into_iter().flatten() {
                push("operator wiring", plan, Change::Output { op, slot, to });
            }
        }
        if let Some(options) = &operator.builtin_options {
            push("operator options", plan, Change::OptionsRemoved { op });
            for field in 0..options.fields.len() {
                for value in [0, -1, 99, i64::from(i32::MAX)] {
                    push(
                        "operator options",
                        plan,
                        Change::OptionField { op, field, value },
                    );
                }
            }
        }
        if op + 1 < ops {
            push("graph structure", plan, Change::Swapped { op });
        }
    }
    push("graph structure", (2, "uniform"), Change::InputsDropped);
    if let Some(&(tensor, n, s)) = crossing.first() {
        push("graph structure", (n, s), Change::OutputAdded { tensor });
    }
    out
}

/// `crossing shape`, `interface type`, ...
fn kind(group: &'static str, what: &'static str) -> &'static str {
    match (group, what) {
        ("crossing", "shape") => "crossing shape",
        ("crossing", "type") => "crossing type",
        ("crossing", "quantization") => "crossing quantization",
        ("crossing", "variable") => "crossing variable",
        ("crossing", _) => "crossing data",
        (_, "shape") => "interface shape",
        (_, "type") => "interface type",
        (_, "quantization") => "interface quantization",
        (_, "variable") => "interface variable",
        _ => "interface data",
    }
}

/// Up to `count` recipes, evenly from each kind, shuffled within a kind by `rng`.
fn sample(recipes: Vec<Recipe>, count: usize, rng: &mut SplitMix64) -> Vec<Recipe> {
    let mut kinds: Vec<(&'static str, Vec<Recipe>)> = Vec::new();
    for recipe in recipes {
        match kinds.iter_mut().find(|(k, _)| *k == recipe.kind) {
            Some((_, list)) => list.push(recipe),
            None => kinds.push((recipe.kind, vec![recipe])),
        }
    }
    for (_, list) in &mut kinds {
        for i in (1..list.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            list.swap(i, j);
        }
        list.reverse(); // taken from the end below
    }
    let mut chosen = Vec::new();
    while chosen.len() < count && kinds.iter().any(|(_, list)| !list.is_empty()) {
        for (_, list) in &mut kinds {
            if chosen.len() < count
                && let Some(recipe) = list.pop()
            {
                chosen.push(recipe);
            }
        }
    }
    chosen
}

fn main() -> Result<(), Box<dyn Error>> {
    let Args {
        models,
        out,
        per_model,
        seed,
    } = Args::parse();
    std::fs::create_dir_all(&out)?;
    let mut manifest = std::fs::File::create(out.join("mutations.tsv"))?;
    let mut rng = SplitMix64::new(seed);
    let (mut written, mut refused) = (0, 0);
    for path in &models {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let original = Model::from_bytes(&bytes)?.into_owned();
        let stem = stem(path);
        let chosen = sample(recipes(&original), per_model, &mut rng);
        let mut lines = String::new();
        for (n, recipe) in chosen.iter().enumerate() {
            let mut model = original.clone();
            apply(&mut model, &recipe.change);
            let Ok(mutated) = model.to_bytes() else {
                refused += 1;
                continue;
            };
            let file = out.join(format!("{stem}__{n}.tflite"));
            std::fs::write(&file, mutated)?;
            written += 1;
            let _ = writeln!(
                lines,
                "{}\t{stem}\t{}\t{}\t{}\t{}",
                file.display(),
                recipe.kind,
                recipe.segments,
                recipe.strategy,
                describe(&original, &recipe.change)
            );
        }
        manifest.write_all(lines.as_bytes())?;
    }
    println!(
        "mutate: {written} mutated models written to {}, {refused} changes refused by the writer",
        out.display()
    );
    Ok(())
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned())
}

/// The change, with the tensor's name where there is one.
fn describe(model: &Model<'_>, change: &Change) -> String {
    let tensor = match *change {
        Change::Dim { tensor, .. }
        | Change::Rank { tensor, .. }
        | Change::Type { tensor, .. }
        | Change::Scale { tensor, .. }
        | Change::ZeroPoint { tensor, .. }
        | Change::QuantizedDimension { tensor, .. }
        | Change::ExtraScale { tensor }
        | Change::ScalesCleared { tensor }
        | Change::Unquantized { tensor }
        | Change::Quantized { tensor }
        | Change::Variable { tensor }
        | Change::DataTruncated { tensor }
        | Change::DataEmptied { tensor }
        | Change::DataRemoved { tensor }
        | Change::DataAdded { tensor }
        | Change::OutputAdded { tensor } => Some(tensor),
        _ => None,
    };
    let mut text = format!("{change:?}");
    if let Some(t) = tensor {
        let _ = write!(text, " `{}`", model.tensors[t].name);
    }
    text
}
