//! Plans as text, and strategies by name, for tools and logs.

use std::fmt;

use super::{LibcoralSearch, Plan, Profiled, Segmenter, UniformByOps, UniformByParams};
use crate::device::{CpuCostModel, EdgeTpuCostModel};
use crate::model::Model;
use crate::profile::CompiledSplit;
use crate::{Error, Result};

/// Names accepted by [`strategy`].
pub const STRATEGY_NAMES: &[&str] = &["uniform", "uniform-ops", "profiled", "libcoral"];

/// The strategy called `name`; the profiling ones (`profiled`, `libcoral`) profile with
/// `cost_model`.
///
/// ```
/// use multitpu::device::EdgeTpuCostModel;
/// use multitpu::segment::strategy;
///
/// let uniform = strategy("uniform", &EdgeTpuCostModel::usb_default())?;
/// assert_eq!(uniform.name(), "uniform");
/// # Ok::<(), multitpu::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Invalid`] for a name not in [`STRATEGY_NAMES`].
pub fn strategy(name: &str, cost_model: &EdgeTpuCostModel) -> Result<Box<dyn Segmenter>> {
    Ok(match name {
        "uniform" => Box::new(UniformByParams),
        "uniform-ops" => Box::new(UniformByOps),
        "profiled" => Box::new(Profiled::cost_model(cost_model.clone())),
        // Its profiles price a segment as it runs once compiled, as every plan is priced.
        "libcoral" => Box::new(LibcoralSearch::new(CompiledSplit::new(
            cost_model.clone(),
            CpuCostModel::default(),
        ))),
        other => {
            return Err(Error::invalid(
                "strategy",
                format!(
                    "unknown strategy `{other}` (known: {})",
                    STRATEGY_NAMES.join(", ")
                ),
            ));
        }
    })
}

/// Columns a [`PlanTable`] fits in unless told otherwise: a terminal's.
pub const TABLE_WIDTH: usize = 100;

/// The longest prediction label a [`PlanTable`] prints whole; longer ones are elided.
const LABEL_MAX: usize = 24;

/// A plan as text, one row of figures per segment with the tensors it reads and writes
/// under it: [`Plan::table`], with options. A [`Plan`]'s own
/// [`Display`](fmt::Display) is this table with the defaults.
///
/// Every line fits [`TABLE_WIDTH`] columns (or [`with_width`](PlanTable::with_width)'s)
/// whenever the figures do: a tensor name too long for its line is elided in the middle
/// with `…`, keeping its start and end, and a segment's tensors wrap onto more lines.
///
/// ```
/// use multitpu::model::{Graph, paper};
/// use multitpu::segment::{Plan, UniformByParams};
///
/// let model = paper::fc(1000)?;
/// let plan = Plan::new(&Graph::new(&model)?, 2, &UniformByParams)?;
/// let table = plan.table().with_names(&model).to_string();
/// assert!(table.starts_with("seg  runs on"));
/// assert!(table.lines().all(|line| line.chars().count() <= 100));
/// # Ok::<(), multitpu::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PlanTable<'a> {
    plan: &'a Plan,
    model: Option<&'a Model<'a>>,
    label: &'a str,
    width: usize,
}

impl<'a> PlanTable<'a> {
    /// Names the tensors by `model`'s names (the model the plan was made for); without it
    /// they are tensor indices of that model (`#12`).
    pub fn with_names(mut self, model: &'a Model<'a>) -> Self {
        self.model = Some(model);
        self
    }

    /// Heads the latency column with `label` (default `predicted`), so that a reader can
    /// tell a prediction from a measurement: e.g. `predicted (model)`, `measured (cpu)`.
    pub fn with_prediction_label(mut self, label: &'a str) -> Self {
        self.label = label;
        self
    }

    /// Fits the table in `width` columns instead of [`TABLE_WIDTH`].
    pub fn with_width(mut self, width: usize) -> Self {
        self.width = width;
        self
    }

    /// The name of `tensor`, printable (control characters escaped), elided to `room`
    /// characters.
    fn tensor_name(&self, tensor: usize, room: usize) -> String {
        let Some(t) = self.model.and_then(|m| m.tensors.get(tensor)) else {
            return elide(&format!("#{tensor}"), room);
        };
        let mut name = String::new();
        for c in t.name.chars() {
            if c.is_control() {
                name.extend(c.escape_default());
            } else {
                name.push(c);
            }
        }
        elide(&name, room)
    }

    /// `tensors` as lines of at most `room` characters, comma-separated.
    fn tensor_lines(&self, tensors: &[usize], room: usize) -> Vec<String> {
        if tensors.is_empty() {
            return vec!["-".to_string()];
        }
        let mut lines = Vec::new();
        let mut line = String::new();
        for (n, &t) in tensors.iter().enumerate() {
            // All but the last name leave a column for the comma a wrapped line ends with.
            let comma = usize::from(n + 1 < tensors.len());
            let name = self.tensor_name(t, room.saturating_sub(comma));
            if line.is_empty() {
                line = name;
            } else if line.chars().count() + 2 + name.chars().count() + comma <= room {
                line.push_str(", ");
                line.push_str(&name);
            } else {
                line.push(',');
                lines.push(std::mem::replace(&mut line, name));
            }
        }
        lines.push(line);
        lines
    }
}

/// `text` if it has at most `room` characters, else its start and end around `…`.
fn elide(text: &str, room: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= room {
        return text.to_string();
    }
    let kept = room.saturating_sub(1);
    let head = kept - kept / 2;
    let tail = kept / 2;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

impl fmt::Display for PlanTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = elide(self.label, LABEL_MAX);
        let header = [
            "seg",
            "runs on",
            "ops",
            "param bytes",
            "MACs",
            "crossing B",
            label.as_str(),
        ];
        let rows: Vec<[String; 7]> = self
            .plan
            .segments
            .iter()
            .enumerate()
            .map(|(i, segment)| {
                [
                    i.to_string(),
                    segment.runs_on(),
                    format!("{}..{}", segment.ops.start, segment.ops.end),
                    segment.param_bytes.to_string(),
                    segment.macs.to_string(),
                    segment.crossing_bytes.to_string(),
                    segment
                        .predicted_latency_s
                        .map_or_else(|| "-".to_string(), |s| format!("{:.3} ms", s * 1e3)),
                ]
            })
            .collect();
        // Each column as wide as its widest cell.
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 7]| {
            let mut text = String::new();
            for (column, (cell, &width)) in cells.iter().zip(&widths).enumerate() {
                if column > 0 {
                    text.push_str("  ");
                }
                // Where it runs reads as text, left-aligned; the rest are figures.
                let pad = " ".repeat(width - cell.chars().count());
                if column == 1 {
                    text.push_str(cell);
                    text.push_str(&pad);
                } else {
                    text.push_str(&pad);
                    text.push_str(cell);
                }
            }
            text.trim_end().to_string()
        };
        write!(f, "{}", line(header))?;
        // Tensor lines start under `runs on`, after a 3-column tag and 2 spaces.
        let indent = " ".repeat(widths[0] + 2);
        let room = self.width.saturating_sub(widths[0] + 2 + 5).max(1);
        for (row, segment) in rows.iter().zip(&self.plan.segments) {
            write!(f, "\n{}", line(row.each_ref().map(String::as_str)))?;
            for (tag, tensors) in [("in", &segment.inputs), ("out", &segment.outputs)] {
                for (n, text) in self.tensor_lines(tensors, room).iter().enumerate() {
                    let tag = if n == 0 { tag } else { "" };
                    write!(f, "\n{indent}{tag:<3}  {text}")?;
                }
            }
        }
        Ok(())
    }
}

impl Plan {
    /// The plan as a table ([`PlanTable`]), to be given options before it is printed:
    /// tensor names from the model, the label of the latency column, the width.
    ///
    /// ```
    /// # use multitpu::model::{Graph, paper};
    /// # use multitpu::segment::{Plan, UniformByParams};
    /// # let model = paper::fc(1000)?;
    /// # let plan = Plan::new(&Graph::new(&model)?, 2, &UniformByParams)?;
    /// println!("{}", plan.table().with_names(&model).with_prediction_label("predicted (model)"));
    /// # Ok::<(), multitpu::Error>(())
    /// ```
    pub fn table(&self) -> PlanTable<'_> {
        PlanTable {
            plan: self,
            model: None,
            label: "predicted",
            width: TABLE_WIDTH,
        }
    }

    /// `plan: strategy=<name> segments=<n> bottleneck_ms=<float> candidates=<count>
    /// devices=<used> replicas=<r0,r1,..> profiler=<name>`, the one-line summary tools read
    /// (`NaN` when the plan has no predictions). `bottleneck_ms` is the period, latency over
    /// replicas; `replicas` lists the instances of each segment ([`Segment::replicas`](super::Segment::replicas)), and
    /// `devices` counts those of the Edge TPU segments.
    ///
    /// `profiler` names where the segment latencies come from, so that a predicted
    /// bottleneck is not taken for a measured one: e.g. `model-usb` or `model-pcie` for the
    /// Edge TPU cost model of that link, `cpu` for timed runs on TFLite's CPU kernels,
    /// `model-usb+cpu-model` when CPU segments were priced by the CPU estimate.
    pub fn summary_line(&self, profiler: &str) -> String {
        format!(
            "plan: strategy={} segments={} bottleneck_ms={:.6} candidates={} cpu_timed={} \
             devices={} replicas={} profiler={profiler}",
            self.strategy,
            self.segments.len(),
            self.bottleneck_s().map_or(f64::NAN, |s| s * 1e3),
            self.candidates_profiled,
            self.cpu_candidates_timed,
            self.devices(),
            self.segments
                .iter()
                .map(|s| s.replicas.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

/// The plan's [`table`](Plan::table) with the defaults: tensors by index, the latency
/// column headed `predicted`, [`TABLE_WIDTH`] columns.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.table().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{Segment, SegmentKind};

    #[test]
    fn every_strategy_name_resolves_and_others_are_refused() {
        let cost_model = EdgeTpuCostModel::usb_default();
        for name in STRATEGY_NAMES {
            assert_eq!(strategy(name, &cost_model).unwrap().name(), *name);
        }
        assert!(matches!(
            strategy("fastest", &cost_model),
            Err(Error::Invalid { .. })
        ));
    }

    /// The paper's fc model with the tensor the cut at operator 4 carries renamed to `name`,
    /// and that plan.
    fn fc_renamed(name: &str) -> (Model<'static>, Plan) {
        use crate::model::{Graph, paper};
        let mut model = paper::fc(500).unwrap();
        let plan = Plan::from_cuts("by hand", &Graph::new(&model).unwrap(), &[4]).unwrap();
        model.tensors[plan.segments[1].inputs[0]].name = name.to_string().into();
        (model, plan)
    }

    fn widest(text: &str) -> usize {
        text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
    }

    #[test]
    fn a_long_tensor_name_is_elided_in_the_middle_to_fit_the_width() {
        let name = format!("model/start{}block\nend", "/very_long_scope".repeat(20));
        let (model, plan) = fc_renamed(&name);
        let table = plan.table().with_names(&model).to_string();
        assert!(widest(&table) <= TABLE_WIDTH, "{table}");
        // Header, then per segment a row and its `in` and `out` lines; the newline in the
        // name is escaped, not a line of its own.
        assert_eq!(
            table.lines().count(),
            1 + 3 * plan.segments.len(),
            "{table}"
        );
        let elided: Vec<&str> = table.lines().filter(|l| l.contains('…')).collect();
        assert_eq!(
            elided.len(),
            2,
            "out of segment 0, in of segment 1:\n{table}"
        );
        for line in elided {
            let shown = line.split_whitespace().last().unwrap();
            assert!(shown.starts_with("model/start/very_long_scope"), "{line}");
            assert!(shown.ends_with("block\\nend"), "{line}");
            assert_eq!(line.chars().count(), TABLE_WIDTH, "{line}");
        }
        let narrow = plan.table().with_names(&model).with_width(70).to_string();
        assert_eq!(widest(&narrow), 70, "{narrow}");
    }

    #[test]
    fn many_tensors_wrap_onto_lines_of_the_width_and_all_are_listed() {
        let (mut model, mut plan) = fc_renamed("x");
        let tensors: Vec<usize> = (0..6).collect();
        for &t in &tensors {
            model.tensors[t].name = format!("tensor_{t}_{}", "abcdefghij".repeat(3)).into();
        }
        plan.segments[1].inputs = tensors.clone();
        let table = plan.table().with_names(&model).to_string();
        assert!(widest(&table) <= TABLE_WIDTH, "{table}");
        for t in tensors {
            assert!(
                table.contains(&format!("tensor_{t}_abc")),
                "tensor {t}:\n{table}"
            );
        }
        assert!(
            !table.contains('…'),
            "names that fit a line are whole:\n{table}"
        );
        // Segment 1's six inputs of 37 characters, two to a line of 90 columns.
        let in_lines = table
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("1 "))
            .skip(1)
            .take_while(|l| !l.trim_start().starts_with("out"))
            .count();
        assert_eq!(in_lines, 3, "{table}");
        // Whatever the width, the commas of wrapped lines stay inside it (the figures take 63).
        for width in 64..=TABLE_WIDTH {
            let table = plan
                .table()
                .with_names(&model)
                .with_width(width)
                .to_string();
            assert!(widest(&table) <= width, "{width}:\n{table}");
        }
    }

    #[test]
    fn display_is_the_table_with_tensor_indices_and_the_default_label() {
        let (_, plan) = fc_renamed("x");
        let shown = plan.to_string();
        assert_eq!(shown, plan.table().to_string());
        assert!(
            shown
                .lines()
                .next()
                .unwrap()
                .ends_with("crossing B  predicted"),
            "{shown}"
        );
        let crossing = plan.segments[1].inputs[0];
        assert!(shown.contains(&format!("in   #{crossing}")), "{shown}");
    }

    #[test]
    fn summary_line_names_the_profiler_last() {
        let segment = |latency_s| Segment {
            ops: 0..1,
            kind: SegmentKind::EdgeTpu,
            cpu_ops: 1..1,
            replicas: 1,
            inputs: Vec::new(),
            outputs: Vec::new(),
            crossing: Vec::new(),
            crossing_bytes: 0,
            param_bytes: 0,
            macs: 0,
            predicted_latency_s: latency_s,
        };
        let mut plan = Plan {
            strategy: "profiled".to_string(),
            segments: vec![
                segment(Some(0.001)),
                segment(Some(0.005)),
                segment(Some(0.0002)),
            ],
            candidates_profiled: 7,
            cpu_candidates_timed: 2,
        };
        plan.segments[1].replicas = 2;
        plan.segments[2].kind = SegmentKind::Cpu;
        assert_eq!(
            plan.summary_line("model-usb"),
            "plan: strategy=profiled segments=3 bottleneck_ms=2.500000 candidates=7 cpu_timed=2 \
             devices=3 replicas=1,2,1 profiler=model-usb"
        );
        plan.segments[1].predicted_latency_s = None;
        assert_eq!(
            plan.summary_line("cpu"),
            "plan: strategy=profiled segments=3 bottleneck_ms=NaN candidates=7 cpu_timed=2 \
             devices=3 replicas=1,2,1 profiler=cpu"
        );
    }
}
