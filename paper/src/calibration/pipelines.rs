//! Multi-device measurements: the paper's models cut into segments, one Edge TPU per segment,
//! run as a pipeline (`pipelines/` in the calibration folder).
//!
//! Each file is named `<family>_<n>tpu_<split>_<range>.csv` (`fc_2tpu_layers_N100-2620.csv`)
//! and has the columns of the single-device files, except that the on-chip and off-chip
//! columns are quoted lists with one entry per segment, and the time is the wall time of a
//! whole batch divided by its size, measured with the author's program (see
//! [`super::scheme`]). The files do not say where the cuts are: [`infer_cuts`]
//! finds them from the per-segment parameter totals.

use std::path::{Path, PathBuf};

use super::Family;
use crate::{Error, Result};
use multitpu::device::{MIB, SegmentWorkload};
use multitpu::model::Model;

/// One row of a multi-device file.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelinePoint {
    /// Which of the paper's models was measured.
    pub family: Family,
    /// Hidden neurons N (fc) or filters F (conv).
    pub size: usize,
    /// How the model was cut, from the file name: `layers` (by whole Dense layers),
    /// `compiler` (`edgetpu_compiler --num_segments`) or `profiled` (libcoral's partitioner).
    pub split: String,
    /// MACs as the experiment counted them.
    pub macs: u64,
    /// MiB of parameters cached on chip, per segment.
    pub on_chip_mib: Vec<f64>,
    /// MiB of parameters streamed from the host, per segment.
    pub off_chip_mib: Vec<f64>,
    /// Milliseconds per inference: the batch's wall time divided by its size.
    pub latency_ms: f64,
}

impl PipelinePoint {
    /// How many devices (segments) the run used.
    pub fn devices(&self) -> usize {
        self.on_chip_mib.len()
    }

    /// The cuts of `model` (this point's model) that the run used, found from its segments'
    /// parameter totals (on-chip + off-chip MiB) by [`infer_cuts`].
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if no cut of the model fits the totals.
    pub fn cuts(&self, model: &Model<'_>) -> Result<Vec<usize>> {
        let totals: Vec<f64> = self
            .on_chip_mib
            .iter()
            .zip(&self.off_chip_mib)
            .map(|(on, off)| on + off)
            .collect();
        infer_cuts(model, &totals).ok_or_else(|| {
            Error::invalid(
                "calibration points",
                format!(
                    "{} {} size {}: no cut of the model fits its {} segments",
                    self.family,
                    self.split,
                    self.size,
                    totals.len()
                ),
            )
        })
    }
}

/// The family, device count and split named by a multi-device file name
/// (`<family>_<n>tpu_<split>_...`).
pub fn parse_pipeline_file_name(name: &str) -> Option<(Family, usize, String)> {
    let family = Family::from_file_name(name)?;
    let mut parts = name.split('_').skip(1);
    let devices = parts.next()?.strip_suffix("tpu")?.parse().ok()?;
    let split = parts.next()?.to_string();
    Some((family, devices, split))
}

/// Splits a CSV line on commas outside double quotes.
fn fields(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(line[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(line[start..].trim());
    out
}

/// Parses the text of one multi-device file (`path` only names it in errors).
///
/// # Errors
///
/// [`Error::Calibration`] naming the file and line of a missing column or an unreadable
/// value.
pub fn parse_pipeline_csv(
    text: &str,
    family: Family,
    devices: usize,
    split: &str,
    path: &Path,
) -> Result<Vec<PipelinePoint>> {
    let error = |line: usize, reason: String| Error::Calibration {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut points = Vec::new();
    let mut header_seen = false;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let columns = fields(line);
        if !header_seen {
            super::check_header(&columns, family, path, line_no)?;
            header_seen = true;
            continue;
        }
        if columns.len() != 5 {
            return Err(error(
                line_no,
                format!("expected 5 columns, found {}", columns.len()),
            ));
        }
        let number = |column: usize, text: &str| {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| error(line_no, format!("column {}: `{text}`", column + 1)))
        };
        let list = |column: usize| -> Result<Vec<f64>> {
            let inner = columns[column]
                .trim_matches('"')
                .trim()
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .ok_or_else(|| error(line_no, format!("column {}: not a list", column + 1)))?;
            let values = inner
                .split(',')
                .map(|v| number(column, v))
                .collect::<Result<Vec<f64>>>()?;
            if values.len() != devices {
                return Err(error(
                    line_no,
                    format!(
                        "column {}: {} entries for {devices} devices",
                        column + 1,
                        values.len()
                    ),
                ));
            }
            Ok(values)
        };
        let size = columns[0]
            .parse::<usize>()
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| error(line_no, format!("column 1: `{}`", columns[0])))?;
        let macs = columns[1]
            .parse::<u64>()
            .map_err(|e| error(line_no, format!("column 2: {e}")))?;
        let latency_ms = number(4, columns[4])?;
        if latency_ms <= 0.0 {
            return Err(error(line_no, "column 5: time 0".to_string()));
        }
        points.push(PipelinePoint {
            family,
            size,
            split: split.to_string(),
            macs,
            on_chip_mib: list(2)?,
            off_chip_mib: list(3)?,
            latency_ms,
        });
    }
    if points.is_empty() {
        return Err(error(0, "no measurements".to_string()));
    }
    Ok(points)
}

/// Reads every `*.csv` of `dir` (in file-name order) as a multi-device file. Errors if there
/// is none or a name does not follow `<family>_<n>tpu_<split>_...`.
///
/// # Errors
///
/// [`Error::Io`] if the folder or a file cannot be read; [`Error::Calibration`] for a
/// misnamed or malformed file, or a folder without one.
pub fn load_pipeline_dir(dir: &Path) -> Result<Vec<PipelinePoint>> {
    let mut points = Vec::new();
    for path in csv_files(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (family, devices, split) =
            parse_pipeline_file_name(&name).ok_or_else(|| Error::Calibration {
                path: path.clone(),
                line: 0,
                reason: "file name must look like `fc_2tpu_layers_*.csv`".to_string(),
            })?;
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        points.extend(parse_pipeline_csv(&text, family, devices, &split, &path)?);
    }
    Ok(points)
}

/// The `*.csv` files of `dir`, sorted; an error if there is none.
pub(super) fn csv_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "csv") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::Calibration {
            path: dir.to_path_buf(),
            line: 0,
            reason: "no .csv files".to_owned(),
        });
    }
    Ok(files)
}

/// The cuts (first operator of every segment but the first) of `model` whose segments'
/// parameter totals (device bytes, [`SegmentWorkload::param_bytes`]) are nearest to
/// `segment_mib` (on-chip + off-chip MiB per segment), by the summed absolute difference.
///
/// Operators without parameters (activations, `QUANTIZE`) leave several cuts with the same
/// totals; the latest is taken, so a segment ends after the activation of its last layer, as
/// a cut between Keras layers does. `None` if there are more segments than operators.
pub fn infer_cuts(model: &Model<'_>, segment_mib: &[f64]) -> Option<Vec<usize>> {
    let ops = model.operators.len();
    let segments = segment_mib.len();
    if segments == 0 || segments > ops {
        return None;
    }
    let mib = |start: usize, end: usize| {
        SegmentWorkload::from_model(model, start..end).param_bytes() as f64 / MIB
    };
    // Exhaustive over cut positions: the paper's models have at most a dozen operators.
    fn search(
        start: usize,
        left: &[f64],
        ops: usize,
        mib: &dyn Fn(usize, usize) -> f64,
        cuts: &mut Vec<usize>,
        best: &mut Option<(f64, Vec<usize>)>,
        error: f64,
    ) {
        if left.len() == 1 {
            let total = error + (mib(start, ops) - left[0]).abs();
            // `<=` keeps the latest of equally good cut sets (they are visited in order).
            if best.as_ref().is_none_or(|(e, _)| total <= *e + 1e-9) {
                *best = Some((total, cuts.clone()));
            }
            return;
        }
        for end in start + 1..=ops - (left.len() - 1) {
            cuts.push(end);
            let e = error + (mib(start, end) - left[0]).abs();
            search(end, &left[1..], ops, mib, cuts, best, e);
            cuts.pop();
        }
    }
    let mut best = None;
    search(0, segment_mib, ops, &mib, &mut Vec::new(), &mut best, 0.0);
    best.map(|(_, cuts)| cuts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use multitpu::model::paper;

    const CONV_CSV: &str = "Num filters,# MACs,On chip mem used,Off chip mem used,Inference time
32,160432128,\"[0.020751953125, 0.05419921875]\",\"[0.0, 0.0]\",2.742308706510812
502,37307547648,\"[2.24, 4.44]\",\"[0.0, 2.22]\",83.48387753358111
";

    #[test]
    fn parses_lists_per_segment() {
        let path = Path::new("conv_2tpu_compiler_F32-692.csv");
        let (family, devices, split) =
            parse_pipeline_file_name("conv_2tpu_compiler_F32-692.csv").expect("name");
        assert_eq!(
            (family, devices, split.as_str()),
            (Family::Conv, 2, "compiler")
        );
        let points = parse_pipeline_csv(CONV_CSV, family, devices, &split, path).expect("valid");
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].size, 502);
        assert_eq!(points[1].on_chip_mib, vec![2.24, 4.44]);
        assert_eq!(points[1].off_chip_mib, vec![0.0, 2.22]);
        assert_eq!(points[1].devices(), 2);
    }

    #[test]
    fn malformed_rows_name_the_line() {
        let path = Path::new("conv_2tpu_x.csv");
        let header = CONV_CSV.lines().next().unwrap_or_default();
        for (rows, line) in [
            ("32,1,\"[0.1]\",\"[0.0, 0.0]\",1.0\n", 2),
            ("32,1,\"[0.1, x]\",\"[0.0, 0.0]\",1.0\n", 2),
            ("32,1,0.1,\"[0.0, 0.0]\",1.0\n", 2),
            ("32,1,\"[0.1, 0.1]\",\"[0.0, 0.0]\",0\n", 2),
            ("32,1,\"[0.1, 0.1]\",\"[0.0, 0.0]\",NaN\n", 2),
            ("32,1,\"[0.1, 0.1]\",\"[0.0, 0.0]\",-2.5\n", 2),
            ("32,1,\"[0.1, 0.1]\",\"[0.0, -0.5]\",1.0\n", 2),
            ("32,1,\"[0.1, 0.1]\",\"[0.0, 0.0]\"\n", 2),
            ("", 0),
        ] {
            let text = format!("{header}\n{rows}");
            match parse_pipeline_csv(&text, Family::Conv, 2, "x", path) {
                Err(Error::Calibration {
                    path: p, line: l, ..
                }) => {
                    assert_eq!((p.as_path(), l), (path, line), "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        // Without its header, a file's first row is refused rather than skipped.
        let headless = CONV_CSV.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert!(matches!(
            parse_pipeline_csv(&headless, Family::Conv, 2, "x", path),
            Err(Error::Calibration { line: 1, .. })
        ));
        assert_eq!(parse_pipeline_file_name("fc_single_tpu.csv"), None);
    }

    #[test]
    fn cuts_are_found_from_segment_totals() {
        // conv F=32 under the compiler's split: 2 convolutions, then 3.
        let conv = paper::conv(32).expect("builds");
        assert_eq!(
            infer_cuts(&conv, &[0.020751953125, 0.05419921875]),
            Some(vec![3])
        );
        // fc by whole Dense layers, 2 + 3: the cut goes after the second TANH.
        let fc = paper::fc(1980).expect("builds");
        assert_eq!(infer_cuts(&fc, &[3.87, 7.61]), Some(vec![5]));
        assert_eq!(infer_cuts(&fc, &[]), None);
    }
}
