//! The protocol between a parent and its isolated child: one job on the child's stdin,
//! progress and one result on its stdout.
//!
//! Parent to child (binary): the line [`HELLO`], then `key\tvalue` lines (`job`, `library`,
//! `trials`, `seed`), then per model a line `model\t<length>` followed by that many bytes,
//! then `end`.
//!
//! Child to parent (text, one message per line, fields separated by tabs, escaped with
//! [`escape`]): [`HELLO`] first, before the child reads its job; then `step` lines as the
//! check goes; then one result: `done`, `report\t<identical>\t<trials>\t[=<difference>]`, or
//! `error\t<kind>\t...`.

use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::verify::{Step, VerifyReport};
use crate::{Error, Result};

/// The first line each side sends; names the protocol and its version.
pub(super) const HELLO: &str = "multitpu-isolated 1";

/// Longest job the child reads: the models plus a little text (16 GiB; far beyond any
/// memory limit a caller would set, so a bound only against a runaway parent).
const MAX_JOB_BYTES: u64 = 16 << 30;

/// What the child is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobKind {
    /// [`crate::verify::check_models`] over every model.
    Check,
    /// [`crate::verify::verify_chain`]: the first model is the whole model, the rest its
    /// segments.
    Verify,
}

/// One job: what to run, on which library, with which models.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Job {
    pub kind: JobKind,
    /// The TFLite library the parent loaded.
    pub library: PathBuf,
    pub trials: usize,
    pub seed: u64,
    /// Validate the models as trusted ([`crate::model::validate::Validation::trusted`]).
    pub trusted: bool,
    pub models: Vec<Arc<[u8]>>,
}

impl Job {
    /// Writes the job to `out` (the child's stdin).
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let kind = match self.kind {
            JobKind::Check => "check",
            JobKind::Verify => "verify",
        };
        writeln!(out, "{HELLO}")?;
        writeln!(out, "job\t{kind}")?;
        writeln!(out, "library\t{}", escape(&self.library.to_string_lossy()))?;
        writeln!(out, "trials\t{}", self.trials)?;
        writeln!(out, "seed\t{}", self.seed)?;
        writeln!(out, "trusted\t{}", u8::from(self.trusted))?;
        for model in &self.models {
            writeln!(out, "model\t{}", model.len())?;
            out.write_all(model)?;
        }
        writeln!(out, "end")?;
        out.flush()
    }

    /// Reads a job written by [`Job::write`].
    pub fn read(input: impl Read) -> Result<Job> {
        let mut input = io::BufReader::new(input.take(MAX_JOB_BYTES));
        let bad = |what: String| Error::invalid("isolated job", what);
        let line = |input: &mut io::BufReader<_>| -> Result<String> {
            let mut line = String::new();
            input
                .read_line(&mut line)
                .map_err(|e| bad(format!("reading: {e}")))?;
            Ok(line.trim_end_matches('\n').to_owned())
        };
        if line(&mut input)? != HELLO {
            return Err(bad(format!("does not start with `{HELLO}`")));
        }
        let mut job = Job {
            kind: JobKind::Check,
            library: PathBuf::new(),
            trials: 0,
            seed: 0,
            trusted: false,
            models: Vec::new(),
        };
        loop {
            let text = line(&mut input)?;
            let (key, value) = text.split_once('\t').unwrap_or((text.as_str(), ""));
            let number = |value: &str| {
                value
                    .parse::<u64>()
                    .map_err(|e| bad(format!("`{key}`: {e}")))
            };
            match key {
                "job" if value == "check" => job.kind = JobKind::Check,
                "job" if value == "verify" => job.kind = JobKind::Verify,
                "library" => job.library = PathBuf::from(unescape(value)),
                "trials" => {
                    job.trials =
                        usize::try_from(number(value)?).map_err(|e| bad(format!("trials: {e}")))?
                }
                "seed" => job.seed = number(value)?,
                "trusted" => job.trusted = flag(key, value)?,
                "model" => {
                    let length = number(value)?;
                    let mut bytes = Vec::new();
                    (&mut input)
                        .take(length)
                        .read_to_end(&mut bytes)
                        .map_err(|e| bad(format!("reading a model: {e}")))?;
                    if bytes.len() as u64 != length {
                        return Err(bad("a model ends early".to_owned()));
                    }
                    job.models.push(Arc::from(bytes));
                }
                "end" => return Ok(job),
                _ => return Err(bad(format!("unexpected line `{}`", escape(&text)))),
            }
        }
    }
}

/// A `0` or `1` field.
fn flag(key: &str, value: &str) -> Result<bool> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(Error::invalid(
            "isolated job",
            format!("`{key}` is `{}`, not 0 or 1", escape(other)),
        )),
    }
}

/// The first line a worker and its parent send each other.
pub(super) const WORKER_HELLO: &str = "multitpu-worker 1";

/// What a worker runs: one model in one CPU interpreter, its tensors in a shared mapping
/// of `shared_bytes`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WorkerJob {
    /// The TFLite library the parent loaded.
    pub library: PathBuf,
    pub threads: usize,
    pub xnnpack: bool,
    pub trusted: bool,
    /// Custom operators the interpreter runs, by name: the worker program's kernels.
    pub custom_ops: Vec<String>,
    pub shared_bytes: usize,
    pub model: Arc<[u8]>,
}

impl WorkerJob {
    /// Writes the job to `out` (the worker's stdin), before any command.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "{WORKER_HELLO}")?;
        writeln!(out, "library\t{}", escape(&self.library.to_string_lossy()))?;
        writeln!(out, "threads\t{}", self.threads)?;
        writeln!(out, "xnnpack\t{}", u8::from(self.xnnpack))?;
        writeln!(out, "trusted\t{}", u8::from(self.trusted))?;
        for name in &self.custom_ops {
            writeln!(out, "custom\t{}", escape(name))?;
        }
        writeln!(out, "shared\t{}", self.shared_bytes)?;
        writeln!(out, "model\t{}", self.model.len())?;
        out.write_all(&self.model)?;
        writeln!(out, "end")?;
        out.flush()
    }

    /// Reads a job written by [`WorkerJob::write`], leaving `input` at the first command.
    pub fn read(input: &mut impl BufRead) -> Result<WorkerJob> {
        let bad = |what: String| Error::invalid("isolated worker job", what);
        let mut input = input.take(MAX_JOB_BYTES);
        let line = |input: &mut io::Take<&mut _>| -> Result<String> {
            let mut line = Vec::new();
            input
                .read_until(b'\n', &mut line)
                .map_err(|e| bad(format!("reading: {e}")))?;
            let text =
                String::from_utf8(line).map_err(|_| bad("a line is not UTF-8".to_owned()))?;
            Ok(text.trim_end_matches('\n').to_owned())
        };
        if line(&mut input)? != WORKER_HELLO {
            return Err(bad(format!("does not start with `{WORKER_HELLO}`")));
        }
        let mut job = WorkerJob {
            library: PathBuf::new(),
            threads: 1,
            xnnpack: false,
            trusted: false,
            custom_ops: Vec::new(),
            shared_bytes: 0,
            model: Arc::from(&[][..]),
        };
        loop {
            let text = line(&mut input)?;
            let (key, value) = text.split_once('\t').unwrap_or((text.as_str(), ""));
            let number = |value: &str| {
                value
                    .parse::<usize>()
                    .map_err(|e| bad(format!("`{key}`: {e}")))
            };
            match key {
                "library" => job.library = PathBuf::from(unescape(value)),
                "threads" => job.threads = number(value)?,
                "xnnpack" => job.xnnpack = flag(key, value)?,
                "trusted" => job.trusted = flag(key, value)?,
                "custom" => job.custom_ops.push(unescape(value)),
                "shared" => job.shared_bytes = number(value)?,
                "model" => {
                    let length = number(value)?;
                    let mut bytes = Vec::new();
                    (&mut input)
                        .take(length as u64)
                        .read_to_end(&mut bytes)
                        .map_err(|e| bad(format!("reading the model: {e}")))?;
                    if bytes.len() != length {
                        return Err(bad("the model ends early".to_owned()));
                    }
                    job.model = Arc::from(bytes);
                }
                "end" => return Ok(job),
                _ => return Err(bad(format!("unexpected line `{}`", escape(&text)))),
            }
        }
    }
}

/// What a worker answers: once that it is ready (the byte sizes of its interpreter's inputs
/// and outputs), then once per invoke.
#[derive(Debug)]
pub(super) enum WorkerReply {
    Hello,
    Ready {
        inputs: Vec<usize>,
        outputs: Vec<usize>,
    },
    Done,
    Error(Error),
}

impl WorkerReply {
    pub fn line(&self) -> String {
        let sizes = |s: &[usize]| s.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        match self {
            WorkerReply::Hello => WORKER_HELLO.to_owned(),
            WorkerReply::Ready { inputs, outputs } => {
                format!("ready\t{}\t{}", sizes(inputs), sizes(outputs))
            }
            WorkerReply::Done => "done".to_owned(),
            WorkerReply::Error(error) => error_line(error),
        }
    }

    /// Parses a line written by [`WorkerReply::line`]; `None` for anything else.
    pub fn parse(line: &str) -> Option<WorkerReply> {
        if line == WORKER_HELLO {
            return Some(WorkerReply::Hello);
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let sizes = |field: &str| -> Option<Vec<usize>> {
            if field.is_empty() {
                return Some(Vec::new());
            }
            field.split(',').map(|n| n.parse().ok()).collect()
        };
        Some(match fields[0] {
            "ready" => WorkerReply::Ready {
                inputs: sizes(fields.get(1)?)?,
                outputs: sizes(fields.get(2)?)?,
            },
            "done" => WorkerReply::Done,
            "error" => WorkerReply::Error(parse_error(&fields[1..])?),
            _ => return None,
        })
    }
}

/// One line from the child.
#[derive(Debug)]
pub(super) enum Message {
    Hello,
    Step(Step),
    Done,
    Report(VerifyReport),
    /// An error the child returned, rebuilt as the crate's error.
    Error(Error),
}

impl Message {
    /// The line for this message, without its newline.
    pub fn line(&self) -> String {
        match self {
            Message::Hello => HELLO.to_owned(),
            Message::Step(Step::Load { model }) => format!("step\t{model}\tload"),
            Message::Step(Step::Invoke { model, trial }) => {
                format!("step\t{model}\tinvoke\t{trial}")
            }
            Message::Done => "done".to_owned(),
            Message::Report(report) => format!(
                "report\t{}\t{}\t{}",
                report.identical,
                report.trials,
                report
                    .first_difference
                    .as_deref()
                    .map_or(String::new(), |d| format!("={}", escape(d)))
            ),
            Message::Error(error) => error_line(error),
        }
    }

    /// Parses a line written by [`Message::line`]; `None` for anything else.
    pub fn parse(line: &str) -> Option<Message> {
        if line == HELLO {
            return Some(Message::Hello);
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let number = |i: usize| fields.get(i)?.parse::<usize>().ok();
        Some(match fields[0] {
            "step" => Message::Step(match *fields.get(2)? {
                "load" => Step::Load { model: number(1)? },
                "invoke" => Step::Invoke {
                    model: number(1)?,
                    trial: number(3)?,
                },
                _ => return None,
            }),
            "done" => Message::Done,
            "report" => Message::Report(VerifyReport {
                identical: number(1)?,
                trials: number(2)?,
                first_difference: match fields.get(3).copied().unwrap_or("") {
                    "" => None,
                    difference => Some(unescape(difference.strip_prefix('=')?)),
                },
            }),
            "error" => Message::Error(parse_error(&fields[1..])?),
            _ => return None,
        })
    }
}

/// TFLite C API calls an [`Error::Runtime`] from the child can name. A call not listed comes
/// back as `"isolated check"`, with the child's message.
const RUNTIME_CALLS: &[&str] = &[
    "TfLiteModelCreate",
    "TfLiteInterpreterOptionsCreate",
    "TfLiteInterpreterCreate",
    "TfLiteInterpreterAllocateTensors",
    "TfLiteInterpreterInvoke",
    "TfLiteInterpreterGetInputTensorCount",
    "TfLiteInterpreterGetOutputTensorCount",
    "TfLiteInterpreterGetInputTensor",
    "TfLiteInterpreterGetOutputTensor",
    "TfLiteTensorCopyFromBuffer",
    "TfLiteTensorCopyToBuffer",
    "TfLiteTensorData",
    "TfLiteTensorDim",
    "TfLiteXNNPackDelegateCreate",
];

/// The crate's errors the child sends with their variant (what TFLite reports, and what a
/// model the parent already validated can still give); any other as its message.
pub(super) fn error_line(error: &Error) -> String {
    match error {
        Error::Runtime { call, message } => {
            format!("error\truntime\t{}\t{}", escape(call), escape(message))
        }
        Error::Unsupported { feature } => format!("error\tunsupported\t{}", escape(feature)),
        Error::TensorSize {
            tensor,
            expected,
            actual,
        } => format!(
            "error\ttensor-size\t{}\t{expected}\t{actual}",
            escape(tensor)
        ),
        other => format!("error\tother\t{}", escape(&other.to_string())),
    }
}

pub(super) fn parse_error(fields: &[&str]) -> Option<Error> {
    Some(match *fields.first()? {
        "runtime" => {
            let call = unescape(fields.get(1)?);
            Error::Runtime {
                call: RUNTIME_CALLS
                    .iter()
                    .find(|known| **known == call)
                    .copied()
                    .unwrap_or("isolated check"),
                message: unescape(fields.get(2)?),
            }
        }
        "unsupported" => Error::Unsupported {
            feature: unescape(fields.get(1)?),
        },
        "tensor-size" => Error::TensorSize {
            tensor: unescape(fields.get(1)?),
            expected: fields.get(2)?.parse().ok()?,
            actual: fields.get(3)?.parse().ok()?,
        },
        "other" => Error::invalid("isolated check", unescape(fields.get(1)?)),
        _ => return None,
    })
}

/// `text` with backslashes, tabs and line breaks escaped, so it fits in one field.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`].
pub(super) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// For the `wire` fuzz target: every reader of the protocol on `data`, which must end in a
/// value or a typed error, and every job and message read (errors apart) must be written
/// back as what was read.
#[cfg(fuzzing)]
pub(super) fn fuzz(data: &[u8]) {
    if let Ok(job) = Job::read(data) {
        let mut again = Vec::new();
        job.write(&mut again).expect("a job writes to memory");
        assert_eq!(Job::read(&again[..]).expect("a written job reads"), job);
    }
    if let Ok(job) = WorkerJob::read(&mut io::BufReader::new(data)) {
        let mut again = Vec::new();
        job.write(&mut again).expect("a job writes to memory");
        let read = WorkerJob::read(&mut io::BufReader::new(&again[..])).expect("reads back");
        assert_eq!(read, job);
    }
    for line in String::from_utf8_lossy(data).lines() {
        // An error that is not one of the kinds sent typed comes back wrapped (as what the
        // isolated check reported), so only the other messages must round-trip exactly.
        if line.starts_with("error\t") {
            let _ = (Message::parse(line), WorkerReply::parse(line));
            continue;
        }
        if let Some(message) = Message::parse(line) {
            let written = message.line();
            let again = Message::parse(&written).expect("a written message parses");
            assert_eq!(again.line(), written);
        }
        if let Some(reply) = WorkerReply::parse(line) {
            let written = reply.line();
            let again = WorkerReply::parse(&written).expect("a written reply parses");
            assert_eq!(again.line(), written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        for text in ["", "plain", "a\tb\nc\\d\r", "\\", "ends with \\", "é\t"] {
            let escaped = escape(text);
            assert!(!escaped.contains(['\t', '\n', '\r']), "{escaped:?}");
            assert_eq!(unescape(&escaped), text);
        }
    }

    #[test]
    fn jobs_round_trip() {
        let job = Job {
            kind: JobKind::Verify,
            library: PathBuf::from("/lib/with\ttab/libtensorflowlite_c.so"),
            trials: 3,
            seed: u64::MAX,
            trusted: true,
            models: vec![Arc::from(&b"model\nbytes\t"[..]), Arc::from(&b""[..])],
        };
        let mut bytes = Vec::new();
        job.write(&mut bytes).unwrap();
        assert_eq!(Job::read(&bytes[..]).unwrap(), job);
        assert!(Job::read(&bytes[..bytes.len() - 4]).is_err(), "truncated");
    }

    #[test]
    fn messages_round_trip() {
        for message in [
            Message::Hello,
            Message::Step(Step::Load { model: 2 }),
            Message::Step(Step::Invoke { model: 0, trial: 7 }),
            Message::Done,
            Message::Report(VerifyReport {
                identical: 2,
                trials: 3,
                first_difference: Some("trial 1: `out\tput` differs".to_owned()),
            }),
            Message::Report(VerifyReport {
                identical: 3,
                trials: 3,
                first_difference: None,
            }),
        ] {
            let line = message.line();
            assert_eq!(Message::parse(&line).map(|m| m.line()), Some(line));
        }
        let error = Message::Error(Error::Runtime {
            call: "TfLiteInterpreterAllocateTensors",
            message: "line 1\nline 2".to_owned(),
        });
        assert_eq!(
            Message::parse(&error.line()).map(|m| m.line()),
            Some(error.line())
        );
        assert!(Message::parse("not a message").is_none());
        assert!(Message::parse("step\tx\tload").is_none());
    }
}
