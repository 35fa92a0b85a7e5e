//! Driving Coral's Edge TPU compiler (`edgetpu_compiler`) on candidate segments.
//!
//! [`EdgeTpuCompiler`] writes a segment to a private temporary directory, runs
//! `edgetpu_compiler -s -o DIR MODEL`, and returns the compiled model with the parameter
//! placement the compiler reports ([`parse_report`]). The compiler exists for x86-64 Linux
//! only; on other hosts [`EdgeTpuCompiler::find`] returns [`Error::ToolNotFound`].

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// The compiler's program name, looked up on `PATH`.
pub const COMPILER_PROGRAM: &str = "edgetpu_compiler";

/// Env var with the path of the compiler, which takes precedence over `PATH`.
pub const COMPILER_ENV: &str = "MULTITPU_EDGETPU_COMPILER";

/// How to get the compiler, for [`Error::ToolNotFound`].
const COMPILER_HINT: &str = "install Coral's `edgetpu-compiler` package (x86-64 Debian or \
     Ubuntu, from Coral's apt repository, see Coral's \"Edge TPU Compiler\" documentation), \
     then put `edgetpu_compiler` on PATH or set MULTITPU_EDGETPU_COMPILER to its path";

const ON_CHIP_USED: &str = "On-chip memory used for caching model parameters:";
const ON_CHIP_REMAINING: &str = "On-chip memory remaining for caching model parameters:";
const OFF_CHIP_USED: &str = "Off-chip memory used for streaming uncached model parameters:";

/// The parameter placement `edgetpu_compiler` reports for one compiled model.
///
/// The compiler prints sizes with two decimals (`7.04MiB`), so figures in KiB or MiB are
/// exact only to half a unit of the last digit (about 5 KiB for MiB figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompilerReport {
    /// Parameter bytes cached in the device's SRAM.
    pub on_chip_bytes: u64,
    /// Parameter bytes left in host memory and streamed on every inference.
    pub off_chip_bytes: u64,
    /// SRAM left for parameters, if the compiler says (versions before 2.1 do not).
    pub on_chip_remaining_bytes: Option<u64>,
}

/// A segment compiled for the Edge TPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSegment {
    /// The compiled `.tflite` bytes (holding an `edgetpu-custom-op`).
    pub model: Vec<u8>,
    /// What the compiler reported about parameter placement.
    pub report: CompilerReport,
}

/// Reads the parameter placement from the compiler's report (its standard output).
///
/// Needs the lines `On-chip memory used for caching model parameters: X` and
/// `Off-chip memory used for streaming uncached model parameters: Y`; reads
/// `On-chip memory remaining for caching model parameters: Z` when present. Sizes are a
/// decimal number and a unit among `B`, `KiB`, `MiB`, `GiB`, with or without a space
/// between them. With several reports in `text` (co-compiled models), the first counts.
///
/// # Errors
///
/// [`Error::ToolOutput`] if the report lacks the on-chip or off-chip figures, or a size
/// cannot be read.
pub fn parse_report(text: &str) -> Result<CompilerReport> {
    let mut on_chip = None;
    let mut off_chip = None;
    let mut remaining = None;
    for line in text.lines().map(str::trim) {
        for (prefix, slot) in [
            (ON_CHIP_USED, &mut on_chip),
            (OFF_CHIP_USED, &mut off_chip),
            (ON_CHIP_REMAINING, &mut remaining),
        ] {
            if let Some(size) = line.strip_prefix(prefix)
                && slot.is_none()
            {
                *slot = Some(
                    parse_size(size.trim())
                        .map_err(|reason| report_error(format!("line `{line}`: {reason}")))?,
                );
            }
        }
    }
    let missing = |prefix: &str| report_error(format!("no line `{prefix} ...` in its report"));
    Ok(CompilerReport {
        on_chip_bytes: on_chip.ok_or_else(|| missing(ON_CHIP_USED))?,
        off_chip_bytes: off_chip.ok_or_else(|| missing(OFF_CHIP_USED))?,
        on_chip_remaining_bytes: remaining,
    })
}

fn report_error(reason: String) -> Error {
    Error::ToolOutput {
        program: COMPILER_PROGRAM.to_owned(),
        reason,
    }
}

/// Bytes of a size such as `7.04MiB`, `1.25 KiB` or `0.00B`, rounded to the nearest byte.
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a decimal number"))?;
    let scale: f64 = match unit.trim() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` (expected B, KiB, MiB or GiB)"
            ));
        }
    };
    let bytes = (value * scale).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    // In range and non-negative (the number has no sign), so the cast is exact.
    Ok(bytes as u64)
}

/// The Edge TPU compiler, found on `PATH`, through [`COMPILER_ENV`], or at a given path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTpuCompiler {
    program: PathBuf,
}

impl EdgeTpuCompiler {
    /// The compiler at the path in [`COMPILER_ENV`] if that is set, else `edgetpu_compiler`
    /// on `PATH`; [`Error::ToolNotFound`] (saying how to install it) if neither exists.
    ///
    /// # Errors
    ///
    /// [`Error::ToolNotFound`] (saying how to install it) if neither exists.
    pub fn find() -> Result<Self> {
        match std::env::var_os(COMPILER_ENV) {
            Some(path) if !path.is_empty() => Self::at(path),
            _ => Self::find_in(&std::env::var_os("PATH").unwrap_or_default()),
        }
    }

    /// The compiler at `path`; [`Error::ToolNotFound`] unless it is an executable file.
    ///
    /// # Errors
    ///
    /// [`Error::ToolNotFound`] unless `path` is an executable file.
    pub fn at(path: impl Into<PathBuf>) -> Result<Self> {
        let program = path.into();
        if is_executable(&program) {
            Ok(Self { program })
        } else {
            Err(Error::ToolNotFound {
                program: program.display().to_string(),
                hint: COMPILER_HINT,
            })
        }
    }

    /// `edgetpu_compiler` in one of the directories of `path` (a `PATH`-style list).
    fn find_in(path: &OsStr) -> Result<Self> {
        std::env::split_paths(path)
            .map(|dir| dir.join(COMPILER_PROGRAM))
            .find(|candidate| is_executable(candidate))
            .map(|program| Self { program })
            .ok_or_else(|| Error::ToolNotFound {
                program: COMPILER_PROGRAM.to_owned(),
                hint: COMPILER_HINT,
            })
    }

    /// The compiler's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Compiles the `.tflite` model in `model` for the Edge TPU.
    ///
    /// Errors: [`Error::Io`] if the temporary files cannot be written or read,
    /// [`Error::ToolNotFound`] if the compiler has gone, [`Error::ToolFailed`] (with what
    /// the compiler printed on stderr) if it exits with a failure, and
    /// [`Error::ToolOutput`] if its report lacks the memory figures.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the temporary files cannot be written or read,
    /// [`Error::ToolNotFound`] if the compiler has gone, [`Error::ToolFailed`] (with its
    /// stderr) if it fails, [`Error::ToolOutput`] if its report lacks the memory figures.
    pub fn compile(&self, model: &[u8]) -> Result<CompiledSegment> {
        let dir = TempDir::new()?;
        let input = dir.path().join("segment.tflite");
        let output = dir.path().join("segment_edgetpu.tflite");
        std::fs::write(&input, model).map_err(|source| Error::Io {
            path: input.clone(),
            source,
        })?;
        let run = Command::new(&self.program)
            .arg("-s")
            .arg("-o")
            .arg(dir.path())
            .arg(&input)
            .output()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => Error::ToolNotFound {
                    program: self.program.display().to_string(),
                    hint: COMPILER_HINT,
                },
                _ => Error::Io {
                    path: self.program.clone(),
                    source,
                },
            })?;
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        if !run.status.success() {
            return Err(Error::ToolFailed {
                program: self.program.clone(),
                status: run.status.to_string(),
                stderr: match (stderr.trim(), stdout.trim()) {
                    ("", "") => "it printed nothing".to_owned(),
                    ("", stdout) => stdout.to_owned(),
                    (stderr, _) => stderr.to_owned(),
                },
            });
        }
        // The report names the program as it was found, not only its usual name.
        let report = parse_report(&format!("{stdout}\n{stderr}")).map_err(|error| match error {
            Error::ToolOutput { reason, .. } => Error::ToolOutput {
                program: self.program.display().to_string(),
                reason,
            },
            other => other,
        })?;
        let model = std::fs::read(&output).map_err(|source| Error::Io {
            path: output.clone(),
            source,
        })?;
        Ok(CompiledSegment { model, report })
    }
}

/// Whether `path` is a file the current user may execute (any execute bit on Unix).
fn is_executable(path: &Path) -> bool {
    match std::fs::metadata(path) {
        #[cfg(unix)]
        Ok(meta) => {
            use std::os::unix::fs::PermissionsExt;
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        }
        #[cfg(not(unix))]
        Ok(meta) => meta.is_file(),
        Err(_) => false,
    }
}

/// A fresh directory under the system's temporary directory, removed with its contents on
/// drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let base = std::env::temp_dir();
        let mut attempt = 0;
        loop {
            let mut name = OsString::from("multitpu-compile-");
            name.push(format!(
                "{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let path = base.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                // A leftover of an earlier process with the same id: try the next name.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                    attempt += 1;
                }
                Err(source) => return Err(Error::Io { path, source }),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temporary directory is not worth failing over.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report of compiler 16.0 for a model that fits on chip, as printed with `-s`.
    const FITS: &str = "\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 577 ms.

Input model: /tmp/x/segment.tflite
Input size: 8.58MiB
Output model: /tmp/x/segment_edgetpu.tflite
Output size: 8.70MiB
On-chip memory used for caching model parameters: 3.00KiB
On-chip memory remaining for caching model parameters: 7.67MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 36
Operation log: /tmp/x/segment_edgetpu.log

Operator                       Count      Status

CONV_2D                        13         Mapped to Edge TPU
";

    /// A model that streams part of its parameters (compiler 15.0).
    const STREAMS: &str = "\
Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 8222 ms.

Input model: facenet_keras.tflite
Input size: 22.71MiB
Output model: facenet_keras_edgetpu.tflite
Output size: 22.43MiB
On-chip memory used for caching model parameters: 7.04MiB
On-chip memory remaining for caching model parameters: 1.25KiB
Off-chip memory used for streaming uncached model parameters: 15.06MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 214
";

    /// Compiler 2.0 says "available" instead of "remaining".
    const OLD: &str = "\
Edge TPU Compiler version 2.0.267685300
Model compiled successfully in 231 ms.
On-chip memory available for caching model parameters: 1.73MiB
On-chip memory used for caching model parameters: 10.00KiB
Off-chip memory used for streaming uncached model parameters: 0.00B
";

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn reads_every_unit() {
        let fits = parse_report(FITS).expect("valid report");
        assert_eq!(fits.on_chip_bytes, 3 * 1024);
        assert_eq!(fits.off_chip_bytes, 0);
        assert_eq!(
            fits.on_chip_remaining_bytes,
            Some((7.67 * MIB).round() as u64)
        );

        let streams = parse_report(STREAMS).expect("valid report");
        assert_eq!(streams.on_chip_bytes, (7.04 * MIB).round() as u64);
        assert_eq!(streams.off_chip_bytes, (15.06 * MIB).round() as u64);
        assert_eq!(streams.on_chip_remaining_bytes, Some(1280));

        let old = parse_report(OLD).expect("valid report");
        assert_eq!(old.on_chip_bytes, 10 * 1024);
        assert_eq!(old.on_chip_remaining_bytes, None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0.00B"), Ok(0));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("2.00MiB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("7.04MB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.2.3MiB").is_err());
        assert!(parse_size("-1MiB").is_err());
        assert!(parse_size("1e400B").is_err());
        assert!(parse_size(&format!("{}GiB", "9".repeat(400))).is_err());
    }

    #[test]
    fn incomplete_reports_are_typed_errors() {
        let no_off_chip: String = STREAMS
            .lines()
            .filter(|l| !l.starts_with("Off-chip"))
            .collect::<Vec<_>>()
            .join("\n");
        for text in [
            "",
            "Internal compiler error. Aborting!",
            no_off_chip.as_str(),
            "On-chip memory used for caching model parameters: lots\n\
             Off-chip memory used for streaming uncached model parameters: 0.00B",
        ] {
            assert!(
                matches!(parse_report(text), Err(Error::ToolOutput { program, .. }) if program == COMPILER_PROGRAM),
                "{text:?}"
            );
        }
    }

    #[test]
    fn first_report_wins() {
        let both = format!("{STREAMS}\n{FITS}");
        assert_eq!(
            parse_report(&both).expect("valid"),
            parse_report(STREAMS).expect("valid")
        );
    }

    #[test]
    fn missing_compiler_is_a_typed_error() {
        let dir = TempDir::new().expect("temp dir");
        let err = EdgeTpuCompiler::at(dir.path().join(COMPILER_PROGRAM)).unwrap_err();
        assert!(
            matches!(&err, Error::ToolNotFound { hint, .. } if hint.contains("MULTITPU_EDGETPU_COMPILER")),
            "{err}"
        );
        // A directory is not a program.
        assert!(matches!(
            EdgeTpuCompiler::at(dir.path()),
            Err(Error::ToolNotFound { .. })
        ));
        let path = std::env::join_paths([dir.path(), Path::new("/nonexistent-multitpu")])
            .expect("joinable");
        let err = EdgeTpuCompiler::find_in(&path).unwrap_err();
        assert!(
            matches!(&err, Error::ToolNotFound { program, .. } if program == COMPILER_PROGRAM),
            "{err}"
        );
        assert!(err.to_string().contains("edgetpu-compiler"), "{err}");
    }

    #[test]
    fn temp_dirs_are_fresh_and_removed() {
        let a = TempDir::new().expect("temp dir");
        let b = TempDir::new().expect("temp dir");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("f"), b"x").expect("writable");
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists());
    }

    /// Stand-ins for the compiler: shell scripts that check the command line the real one
    /// is given, then behave as the real one does on success or failure.
    #[cfg(unix)]
    mod fake_compiler {
        use std::os::unix::fs::PermissionsExt;

        use super::*;

        /// Held by each test from writing its script until it has run it: a script still
        /// open for writing in a child forked by another test cannot be executed (ETXTBSY).
        static SPAWN: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

        /// Writes an executable script with `body` and returns its directory (which holds
        /// it as `edgetpu_compiler`).
        fn script(body: &str) -> TempDir {
            let dir = TempDir::new().expect("temp dir");
            let path = dir.path().join(COMPILER_PROGRAM);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("writable");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            dir
        }

        /// Checks `-s -o DIR MODEL`, then copies the model (upper-cased, so the test can tell
        /// it was read) as `DIR/<stem>_edgetpu.tflite` and prints `report`.
        fn working(report: &str) -> TempDir {
            script(&format!(
                r#"[ "$#" -eq 4 ] && [ "$1" = "-s" ] && [ "$2" = "-o" ] && [ -d "$3" ] && [ -f "$4" ] \
  || {{ echo "unexpected arguments: $*" >&2; exit 2; }}
stem=$(basename "$4" .tflite)
tr a-z A-Z < "$4" > "$3/${{stem}}_edgetpu.tflite" || exit 3
cat <<'EOF'
{report}
EOF
"#
            ))
        }

        #[test]
        fn compiles_through_the_program() {
            let _spawn = SPAWN.lock();
            let dir = working(STREAMS);
            let compiler =
                EdgeTpuCompiler::find_in(dir.path().as_os_str()).expect("found on the path");
            assert_eq!(compiler.program(), dir.path().join(COMPILER_PROGRAM));
            let compiled = compiler.compile(b"abc\n").expect("compiles");
            assert_eq!(compiled.model, b"ABC\n");
            assert_eq!(compiled.report, parse_report(STREAMS).expect("valid"));
        }

        #[test]
        fn failure_returns_stderr() {
            let _spawn = SPAWN.lock();
            let dir = script("echo 'Internal compiler error. Aborting!' >&2\nexit 1\n");
            let compiler =
                EdgeTpuCompiler::at(dir.path().join(COMPILER_PROGRAM)).expect("executable");
            let err = compiler.compile(b"model").unwrap_err();
            assert!(
                matches!(&err, Error::ToolFailed { stderr, status, .. }
                    if stderr == "Internal compiler error. Aborting!" && status.contains('1')),
                "{err}"
            );
        }

        #[test]
        fn success_without_figures_is_a_typed_error() {
            let _spawn = SPAWN.lock();
            let dir = working("Edge TPU Compiler version 16.0.384591198");
            let compiler =
                EdgeTpuCompiler::at(dir.path().join(COMPILER_PROGRAM)).expect("executable");
            let program = dir.path().join(COMPILER_PROGRAM).display().to_string();
            assert!(matches!(
                compiler.compile(b"model"),
                Err(Error::ToolOutput { program: named, .. }) if named == program
            ));
        }

        #[test]
        fn a_silent_failure_says_so() {
            let _spawn = SPAWN.lock();
            let dir = script("exit 3\n");
            let compiler =
                EdgeTpuCompiler::at(dir.path().join(COMPILER_PROGRAM)).expect("executable");
            let err = compiler.compile(b"model").unwrap_err();
            assert!(err.to_string().ends_with("): it printed nothing"), "{err}");
        }

        #[test]
        fn missing_output_file_is_an_io_error() {
            let _spawn = SPAWN.lock();
            let dir = script(&format!("cat <<'EOF'\n{FITS}\nEOF\n"));
            let compiler =
                EdgeTpuCompiler::at(dir.path().join(COMPILER_PROGRAM)).expect("executable");
            assert!(matches!(
                compiler.compile(b"model"),
                Err(Error::Io { path, .. }) if path.ends_with("segment_edgetpu.tflite")
            ));
        }
    }
}
