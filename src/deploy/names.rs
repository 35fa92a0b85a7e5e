//! Segment file names: Coral's `<stem>_segment_<i>_of_<n>.tflite`, with a segment's role
//! in the name for files run without a manifest; and writing files safely.

use std::path::Path;

use super::{MAX_DEVICES, SegmentKind};
use crate::{Error, Result};

/// Coral's name for segment `index` of `count`, `<stem>_segment_<index>_of_<count>.tflite`,
/// with what a pipeline needs to run it as planned before the extension: `_cpu` for a CPU
/// segment, `_x<R>` for a segment of R replicas ([`segment_file_role`] reads them back).
///
/// ```
/// use multitpu::deploy::{SegmentKind, segment_file_name};
///
/// assert_eq!(segment_file_name("m", 0, 3, SegmentKind::EdgeTpu, 1), "m_segment_0_of_3.tflite");
/// assert_eq!(segment_file_name("m", 1, 3, SegmentKind::EdgeTpu, 2), "m_segment_1_of_3_x2.tflite");
/// assert_eq!(segment_file_name("m", 2, 3, SegmentKind::Cpu, 1), "m_segment_2_of_3_cpu.tflite");
/// ```
pub fn segment_file_name(
    stem: &str,
    index: usize,
    count: usize,
    kind: SegmentKind,
    replicas: usize,
) -> String {
    let cpu = match kind {
        SegmentKind::EdgeTpu => "",
        SegmentKind::Cpu => "_cpu",
    };
    let replicas = if replicas > 1 {
        format!("_x{replicas}")
    } else {
        String::new()
    };
    format!("{stem}_segment_{index}_of_{count}{cpu}{replicas}.tflite")
}

/// Where a segment file runs and with how many replicas, from its name
/// ([`segment_file_name`]; `edgetpu_compiler`'s `_edgetpu` suffix is allowed after them): a
/// file named otherwise is an Edge TPU segment of one replica.
///
/// ```
/// use std::path::Path;
///
/// use multitpu::deploy::{SegmentKind, segment_file_role};
///
/// let role = segment_file_role(Path::new("out/m_segment_1_of_3_x2_edgetpu.tflite"))?;
/// assert_eq!(role, (SegmentKind::EdgeTpu, 2));
/// assert_eq!(segment_file_role(Path::new("m_segment_2_of_3_cpu.tflite"))?, (SegmentKind::Cpu, 1));
/// # Ok::<(), multitpu::Error>(())
/// ```
///
/// # Errors
///
/// A name is input like any other: [`Error::Invalid`] naming the file when its replica
/// count is 0 or more than [`MAX_DEVICES`], the most any plan uses, or on a CPU segment,
/// which runs once on the host.
pub fn segment_file_role(path: &Path) -> Result<(SegmentKind, usize)> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = name.strip_suffix(".tflite").unwrap_or(name);
    let stem = stem.strip_suffix("_edgetpu").unwrap_or(stem);
    let refuse = |reason: String| {
        Err(Error::invalid(
            "segment file name",
            format!("{}: {reason}", path.display()),
        ))
    };
    let (stem, replicas) = match stem.rsplit_once("_x") {
        Some((rest, digits))
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            match digits.parse::<usize>() {
                Ok(r) if (1..=MAX_DEVICES).contains(&r) => (rest, Some(r)),
                _ => {
                    return refuse(format!(
                        "`_x{digits}` asks for {digits} replicas; a plan has 1 to {MAX_DEVICES}"
                    ));
                }
            }
        }
        _ => (stem, None),
    };
    if stem.ends_with("_cpu") {
        if replicas.is_some() {
            return refuse("a CPU segment runs once on the host, not in replicas".to_owned());
        }
        return Ok((SegmentKind::Cpu, 1));
    }
    Ok((SegmentKind::EdgeTpu, replicas.unwrap_or(1)))
}

/// Checks that `stem` names files inside the folder it is joined to: not empty, no path
/// separator, no `..`, no NUL.
pub(super) fn check_stem(stem: &str) -> Result<()> {
    let bad = stem.is_empty()
        || stem == "."
        || stem == ".."
        || stem.contains(['/', '\\', '\0'])
        || Path::new(stem).components().count() != 1;
    if bad {
        return Err(Error::invalid(
            "segment file stem",
            format!("`{stem}` must be a plain file name: no path separators, `..` or NUL"),
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` without following a link already there: the bytes go to a new
/// file beside it (created exclusively, so never through a link), which then replaces
/// `path` itself (a rename replaces a link, it does not write through it).
pub(super) fn write_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".partial-{}", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_input_too() {
        let role = |name: &str| segment_file_role(Path::new(name));
        assert_eq!(
            role("m_segment_0_of_2_x32.tflite").unwrap(),
            (SegmentKind::EdgeTpu, 32)
        );
        assert_eq!(role("m.tflite").unwrap(), (SegmentKind::EdgeTpu, 1));
        for bad in [
            "_x18446744073709551615",
            "m_segment_0_of_2_x33.tflite",
            "m_x0.tflite",
            "m_segment_1_of_2_cpu_x20000.tflite",
            "m_segment_1_of_2_cpu_x2_edgetpu.tflite",
        ] {
            assert!(matches!(role(bad), Err(Error::Invalid { .. })), "{bad}");
        }
    }
}
