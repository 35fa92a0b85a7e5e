//! Writing and reading the plan manifest (its format: [`crate::deploy`]).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use super::names::{check_stem, write_new_file};
use super::{SegmentKind, SegmentModel, SegmentModels, WrittenPlan, check_role, segment_file_name};
use crate::model::{Model, edgetpu};
use crate::{Error, Result};

/// The extension of a plan manifest: `<stem>.plan`.
pub const MANIFEST_EXTENSION: &str = "plan";

/// The first line of a manifest of this format's version.
const HEADER: &str = "multitpu-plan 1";

/// A manifest larger than this is not one this library wrote (a line per segment and
/// tensor): refused before it is read.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

pub(super) fn write(models: &SegmentModels, dir: &Path, stem: &str) -> Result<WrittenPlan> {
    let _span = tracing::info_span!("write_segments", dir = %dir.display(), stem).entered();
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    check_stem(stem)?;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let count = models.segments.len();
    let mut text = format!("{HEADER}\n# segments of a plan, in pipeline order\n");
    for name in &models.inputs {
        writeln!(text, "input {}", encode(name)).expect("writing to a String");
    }
    for name in &models.outputs {
        writeln!(text, "output {}", encode(name)).expect("writing to a String");
    }
    let mut segments = Vec::with_capacity(count);
    for (index, segment) in models.segments.iter().enumerate() {
        let mut name = segment_file_name(stem, index, count, segment.kind, segment.replicas);
        if segment.compiled {
            // As edgetpu_compiler names its output, so Coral's tools recognise the file.
            name = name.replace(".tflite", "_edgetpu.tflite");
        }
        let path = dir.join(&name);
        write_new_file(&path, &segment.bytes).map_err(io_error(&path))?;
        writeln!(
            text,
            "segment {} {} {} {} {:016x} {}",
            segment.kind.as_str(),
            segment.replicas,
            if segment.compiled {
                "compiled"
            } else {
                "source"
            },
            segment.bytes.len(),
            fnv1a(&segment.bytes),
            encode(&name)
        )
        .expect("writing to a String");
        segments.push(path);
    }
    let manifest = dir.join(format!("{stem}.{MANIFEST_EXTENSION}"));
    write_new_file(&manifest, text.as_bytes()).map_err(io_error(&manifest))?;
    Ok(WrittenPlan { manifest, segments })
}

pub(super) fn read(manifest: &Path) -> Result<SegmentModels> {
    let text = read_text(manifest)?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let refuse = |line: Option<usize>, reason: String| Error::Manifest {
        path: manifest.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'));
    match lines.next() {
        Some((_, HEADER)) => {}
        Some((n, line)) => {
            return Err(refuse(
                Some(n),
                format!(
                    "`{line}` is not a manifest header of a version this library reads (`{HEADER}`)"
                ),
            ));
        }
        None => return Err(refuse(None, "the manifest is empty".to_owned())),
    }
    let (mut inputs, mut outputs, mut segments) = (Vec::new(), Vec::new(), Vec::new());
    for (n, line) in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let decode_field = |field: &str| decode(field).map_err(|reason| refuse(Some(n), reason));
        match fields.as_slice() {
            ["input", name] => push_once(&mut inputs, decode_field(name)?, "input")
                .map_err(|reason| refuse(Some(n), reason))?,
            ["output", name] => push_once(&mut outputs, decode_field(name)?, "output")
                .map_err(|reason| refuse(Some(n), reason))?,
            ["segment", kind, replicas, compiled, size, checksum, file] => {
                let line = SegmentLine::parse(kind, replicas, compiled, size, checksum)
                    .map_err(|reason| refuse(Some(n), reason))?;
                let file = decode_field(file)?;
                check_stem(&file).map_err(|_| {
                    refuse(
                        Some(n),
                        format!(
                            "segment file `{file}` is not a plain name in the manifest's folder"
                        ),
                    )
                })?;
                let path = dir.join(&file);
                let segment = line
                    .read(&path)
                    .map_err(super::in_segment(segments.len(), &path))?;
                segments.push(segment);
            }
            [keyword @ ("input" | "output" | "segment"), ..] => {
                let expected = if *keyword == "segment" { 6 } else { 1 };
                return Err(refuse(
                    Some(n),
                    format!(
                        "a `{keyword}` line has {expected} field(s) after its keyword, one space \
                         apart; this one has {}",
                        fields.len() - 1
                    ),
                ));
            }
            other => {
                return Err(refuse(
                    Some(n),
                    format!(
                        "`{}` is not a manifest line (input, output or segment)",
                        other.first().copied().unwrap_or_default()
                    ),
                ));
            }
        }
    }
    if segments.is_empty() {
        return Err(refuse(None, "the manifest names no segment".to_owned()));
    }
    SegmentModels::new(segments, inputs, outputs)
}

/// Appends `name` to `names` unless it is there already: a pipeline input or output is
/// named once.
fn push_once(names: &mut Vec<String>, name: String, kind: &str) -> std::result::Result<(), String> {
    if names.contains(&name) {
        return Err(format!("{kind} `{name}` is named twice"));
    }
    names.push(name);
    Ok(())
}

/// The manifest's text, refused before reading when it is too large to be a manifest.
fn read_text(manifest: &Path) -> Result<String> {
    let io_error = |source| Error::Io {
        path: manifest.to_path_buf(),
        source,
    };
    let refuse = |reason: String| Error::Manifest {
        path: manifest.to_path_buf(),
        line: None,
        reason,
    };
    // The mistake a user makes most: a model where its manifest belongs.
    if looks_like_a_model(manifest) {
        return Err(refuse(
            "this is a .tflite model, not a plan manifest (`<stem>.plan`, written by \
             SegmentModels::write)"
                .to_owned(),
        ));
    }
    let size = std::fs::metadata(manifest).map_err(io_error)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(refuse(format!(
            "{size} bytes; a manifest has at most {MAX_MANIFEST_BYTES}"
        )));
    }
    let bytes = std::fs::read(manifest).map_err(io_error)?;
    String::from_utf8(bytes).map_err(|e| {
        refuse(format!(
            "not UTF-8 text (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Whether the file starts as a TFLite flatbuffer does (identifier `TFL3` at byte 4).
fn looks_like_a_model(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut head))
        .is_ok()
        && &head[4..] == b"TFL3"
}

/// One segment line, checked.
struct SegmentLine {
    kind: SegmentKind,
    replicas: usize,
    compiled: bool,
    size: u64,
    checksum: u64,
}

impl SegmentLine {
    fn parse(
        kind: &str,
        replicas: &str,
        compiled: &str,
        size: &str,
        checksum: &str,
    ) -> std::result::Result<Self, String> {
        let kind = match kind {
            "edgetpu" => SegmentKind::EdgeTpu,
            "cpu" => SegmentKind::Cpu,
            other => {
                return Err(format!(
                    "segment kind `{other}` is neither `edgetpu` nor `cpu`"
                ));
            }
        };
        let replicas: usize = replicas
            .parse()
            .map_err(|_| format!("replica count `{replicas}` is not a number"))?;
        check_role(kind, replicas)?;
        let compiled = match compiled {
            "compiled" => true,
            "source" => false,
            other => return Err(format!("`{other}` is neither `compiled` nor `source`")),
        };
        if compiled && kind == SegmentKind::Cpu {
            return Err("a CPU segment is not compiled for the Edge TPU".to_owned());
        }
        let size = size
            .parse()
            .map_err(|_| format!("file size `{size}` is not a number"))?;
        if checksum.len() != 16 {
            return Err(format!("checksum `{checksum}` is not 16 hex digits"));
        }
        let checksum = u64::from_str_radix(checksum, 16)
            .map_err(|_| format!("checksum `{checksum}` is not 16 hex digits"))?;
        Ok(SegmentLine {
            kind,
            replicas,
            compiled,
            size,
            checksum,
        })
    }

    /// The segment at `path`, if it is the file this line describes.
    fn read(&self, path: &Path) -> Result<SegmentModel> {
        let io_error = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mismatch = |what: String| {
            Error::invalid(
                "segment file",
                format!(
                    "{}: {what} than the manifest says; it is not the file the plan was written with",
                    path.display()
                ),
            )
        };
        // Compared before reading, so a large file in its place is never read.
        let size = std::fs::metadata(path).map_err(io_error)?.len();
        if size != self.size {
            return Err(mismatch(format!("{size} bytes, not {}, other", self.size)));
        }
        let bytes = std::fs::read(path).map_err(io_error)?;
        if bytes.len() as u64 != self.size || fnv1a(&bytes) != self.checksum {
            return Err(mismatch("other bytes".to_owned()));
        }
        // The checksum says the file is the one written; this, that the line says what it is.
        let compiled = edgetpu::is_compiled(&Model::from_bytes(&bytes)?);
        if compiled != self.compiled {
            let (said, is) = if self.compiled {
                ("compiled", "is not")
            } else {
                ("source", "is")
            };
            return Err(Error::invalid(
                "segment file",
                format!(
                    "{}: the manifest says `{said}`, but the file {is} compiled for the Edge TPU",
                    path.display()
                ),
            ));
        }
        Ok(SegmentModel {
            kind: self.kind,
            replicas: self.replicas,
            compiled: self.compiled,
            bytes: Arc::from(bytes),
            file: Some(path.to_path_buf()),
        })
    }
}

/// The 64-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `text` with every byte that is not printable ASCII, a space or `%` as `%XX`.
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            encoded.push(char::from(b));
        } else {
            write!(encoded, "%{b:02X}").expect("writing to a String");
        }
    }
    encoded
}

/// The text `field` encodes ([`encode`]).
fn decode(field: &str) -> std::result::Result<String, String> {
    let bad = || format!("`{field}` is not a percent-encoded name");
    let mut bytes = Vec::with_capacity(field.len());
    let mut rest = field.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("`{field}` does not encode UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_encoding() {
        for name in [
            "plain",
            "with space",
            "100%",
            "tab\there",
            "ünï",
            "",
            "a%2Fb",
        ] {
            assert_eq!(decode(&encode(name)).as_deref(), Ok(name), "{name:?}");
            assert!(!encode(name).contains(' '));
        }
        assert!(decode("%4").is_err());
        assert!(decode("%zz").is_err());
        assert!(decode("%FF").is_err());
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of the FNV reference.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn segment_lines_are_checked() {
        let ok = SegmentLine::parse("edgetpu", "2", "compiled", "10", "00000000000000ff").unwrap();
        assert_eq!(
            (ok.kind, ok.replicas, ok.compiled, ok.size, ok.checksum),
            (SegmentKind::EdgeTpu, 2, true, 10, 255)
        );
        for (fields, says) in [
            (
                ["gpu", "1", "source", "1", "0000000000000000"],
                "neither `edgetpu` nor `cpu`",
            ),
            (
                ["cpu", "2", "source", "1", "0000000000000000"],
                "runs once on the host",
            ),
            (
                ["cpu", "1", "compiled", "1", "0000000000000000"],
                "not compiled",
            ),
            (
                ["edgetpu", "0", "source", "1", "0000000000000000"],
                "0 replicas",
            ),
            (
                ["edgetpu", "99", "source", "1", "0000000000000000"],
                "99 replicas",
            ),
            (
                ["edgetpu", "1", "maybe", "1", "0000000000000000"],
                "neither `compiled`",
            ),
            (
                ["edgetpu", "1", "source", "-1", "0000000000000000"],
                "file size",
            ),
            (["edgetpu", "1", "source", "1", "ff"], "16 hex digits"),
        ] {
            let [kind, replicas, compiled, size, checksum] = fields;
            let err = SegmentLine::parse(kind, replicas, compiled, size, checksum)
                .err()
                .unwrap_or_else(|| panic!("{fields:?} accepted"));
            assert!(err.contains(says), "{fields:?}: {err}");
        }
    }
}
