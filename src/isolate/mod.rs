//! Checking untrusted models in a child process, so that a crash in TFLite's C++ kernels
//! ends in an error instead of the caller's death.
//!
//! [`Model::validate`](crate::model::Model::validate) refuses the defects known to crash
//! TFLite, but what TFLite does with a model that passes is out of this crate's hands: a
//! kernel that aborts, dereferences a bad pointer, allocates without bound or loops forever
//! takes the whole process with it. [`Isolation`] runs the checks of [`crate::verify`] in a
//! child process instead, with bounded memory and time; a child that dies is reported as
//! [`Error::Isolated`], naming the model it was loading or invoking and how the child ended
//! ([`ChildExit`]: a signal, running out of memory, a timeout, a panic).
//!
//! # The child is the caller's own program
//!
//! A library has no executable of its own to start, so the child is the program that uses
//! it: [`Isolation`] starts the current executable again with the environment variable
//! `MULTITPU_ISOLATED_CHILD` set, and [`run_if_child`], called first thing in `main`, sees
//! the variable, runs the check it is sent on stdin and exits. Nothing else needs to be
//! built, installed or found, and the child runs the same version of this crate, with the
//! TFLite library the parent loaded.
//!
//! ```no_run
//! use multitpu::backend::Runtime;
//! use multitpu::isolate::{self, Isolation, NamedModel};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     isolate::run_if_child(); // first: in the child, this runs the check and exits
//!
//!     let runtime = Runtime::load()?;
//!     let model = NamedModel::read("untrusted.tflite")?;
//!     match Isolation::new().check(&runtime, &[model], 1, 0) {
//!         Ok(()) => println!("ran without crashing TFLite"),
//!         Err(multitpu::Error::Isolated { what, reason, .. }) => {
//!             println!("TFLite died {what}: {reason}")
//!         }
//!         Err(other) => println!("refused: {other}"),
//!     }
//!     Ok(())
//! }
//! ```
//!
//! A program that cannot call [`run_if_child`] first (a test harness, a program that parses
//! its arguments before anything else) can name another program with
//! [`Isolation::with_program`]: any executable whose `main` starts with [`run_if_child`]. A
//! child that does not answer as one is reported as [`ChildExit::NoAnswer`], and a process
//! started as a child never starts a child of its own.
//!
//! # Limits
//!
//! The child runs with at most [`Isolation::DEFAULT_MEMORY_LIMIT`] bytes of address space
//! (on Linux, `RLIMIT_AS`, set before the program starts; see
//! [`Isolation::with_memory_limit`]), without core dumps, and is killed after
//! [`Isolation::DEFAULT_TIMEOUT`] ([`Isolation::with_timeout`]).
//!
//! # What it does not cover
//!
//! The child runs the models on seeded random inputs. A crash that depends on the values of
//! other inputs, or on a delegate (XNNPack, an Edge TPU), can still happen when the caller
//! then runs the models in its own process; only running everything in a child rules that
//! out. See `docs/reliability.md` for which guarantees hold in-process and which only with
//! isolation.

mod limits;
mod wire;
#[cfg(target_os = "linux")]
mod worker;

#[cfg(target_os = "linux")]
pub use worker::{IsolatedBackend, IsolatedStage};

/// For the `wire` fuzz target: the protocol's readers and writers on arbitrary bytes.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_wire(data: &[u8]) {
    wire::fuzz(data);
}

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::{CustomOps, InterpreterOptions, Runtime};
use crate::model::Model;
use crate::model::validate::Validation;
use crate::verify::{self, Step, VerifyReport};
use crate::{ChildExit, Error, Result};
use wire::{Job, JobKind, Message};

/// The environment variable that marks a process as an isolated child: [`CHECK_MODE`] for
/// a check, [`WORKER_MODE`] for a pipeline stage's worker.
const CHILD_ENV: &str = "MULTITPU_ISOLATED_CHILD";
const CHECK_MODE: &str = "1";
const WORKER_MODE: &str = "worker";

/// How often a child looks whether its parent is still there.
const ORPHAN_POLL: Duration = Duration::from_millis(100);

/// How much of the child's stderr an [`Error::Isolated`] keeps: its last 4 KiB.
const STDERR_TAIL: usize = 4096;

/// If this process was started by an [`Isolation`] as its child (a check) or by an
/// [`IsolatedBackend`] (a stage's worker), does what it is sent and exits; otherwise returns
/// at once.
///
/// Call it first thing in `main` of every program that uses [`Isolation`] or
/// [`IsolatedBackend`] without [`Isolation::with_program`]: the child is the same program,
/// and whatever `main` does before this call, it also does in every child. A child exits
/// by itself when its parent dies.
pub fn run_if_child() {
    run_if_child_with(&CustomOps::default());
}

/// [`run_if_child`], with the kernels of the custom operators that the models of
/// [`IsolatedBackend::with_custom_op`] use: a worker runs a model's custom operators with
/// the kernels its own program registers here, by name.
pub fn run_if_child_with(custom_ops: &CustomOps) {
    let Some(mode) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    watch_parent();
    #[cfg(target_os = "linux")]
    let served = if mode == WORKER_MODE {
        worker::serve(custom_ops)
    } else {
        serve()
    };
    #[cfg(not(target_os = "linux"))]
    let served = {
        let _ = (mode, custom_ops);
        serve()
    };
    let code = match served {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("multitpu isolated child: {error}");
            3
        }
    };
    std::process::exit(code)
}

/// Exits this child once its parent is gone (it is then adopted by another process), so
/// that no child outlives a parent that was killed.
fn watch_parent() {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        let watching = thread::Builder::new()
            .name("multitpu-orphan-watch".to_owned())
            .spawn(move || {
                loop {
                    thread::sleep(ORPHAN_POLL);
                    if std::os::unix::process::parent_id() != parent {
                        std::process::exit(4);
                    }
                }
            });
        if watching.is_err() {
            eprintln!("multitpu isolated child: cannot watch the parent");
            std::process::exit(3);
        }
    }
}

/// The child's side: greets, reads the job, runs it reporting each step, sends the result.
fn serve() -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut send = |message: Message| -> io::Result<()> {
        writeln!(out, "{}", message.line())?;
        out.flush()
    };
    send(Message::Hello)?;
    let job = Job::read(io::stdin().lock()).map_err(io::Error::other)?;
    let mut sent = Ok(());
    let result = run_job(job, &mut |step| {
        if sent.is_ok() {
            sent = send(Message::Step(step));
        }
    });
    sent?;
    send(result)
}

fn run_job(job: Job, progress: &mut dyn FnMut(Step)) -> Message {
    let runtime = if job.library.as_os_str().is_empty() {
        Runtime::load()
    } else {
        Runtime::from_path(&job.library)
    };
    let options = InterpreterOptions::default().with_trusted(job.trusted);
    let result = runtime.and_then(|runtime| match job.kind {
        JobKind::Check => verify::check_models(
            &runtime, job.models, job.trials, job.seed, &options, progress,
        )
        .map(|()| Message::Done),
        JobKind::Verify => {
            let mut models = job.models.into_iter();
            let whole = models
                .next()
                .ok_or_else(|| Error::invalid("isolated job", "no whole model to verify"))?;
            verify::verify_chain_reporting(
                &runtime,
                whole,
                models.collect(),
                job.trials,
                job.seed,
                &options,
                progress,
            )
            .map(Message::Report)
        }
    });
    result.unwrap_or_else(Message::Error)
}

/// A model to check in a child: its bytes, and what errors call it.
#[derive(Debug, Clone)]
pub struct NamedModel {
    name: String,
    path: Option<PathBuf>,
    bytes: Arc<[u8]>,
}

impl NamedModel {
    /// The model in file `path`, named by its path.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(NamedModel {
            name: path.display().to_string(),
            path: Some(path.to_path_buf()),
            bytes: Arc::from(bytes),
        })
    }

    /// A model in memory, called `name` (e.g. `segment 2 of 4`) in errors.
    pub fn new(name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        NamedModel {
            name: name.into(),
            path: None,
            bytes: bytes.into(),
        }
    }

    /// What errors call the model.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the model was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The model's bytes.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }
}

/// Where and how checks run in a child process: which program, how much memory, how long.
///
/// Cheap to build; each check starts one child and waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    program: Option<PathBuf>,
    memory_limit: Option<u64>,
    timeout: Duration,
    trusted: bool,
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation {
            program: None,
            memory_limit: Some(Self::DEFAULT_MEMORY_LIMIT),
            timeout: Self::DEFAULT_TIMEOUT,
            trusted: false,
        }
    }
}

impl Isolation {
    /// Address space a child may use by default: 4 GiB. TFLite maps its library, an arena
    /// for the tensors and a stack per thread; the largest real model checked here needs
    /// under 300 MiB, and a validated model has no tensor over
    /// [`MAX_TENSOR_BYTES`](crate::model::validate::MAX_TENSOR_BYTES) (1 GiB).
    pub const DEFAULT_MEMORY_LIMIT: u64 = 4 << 30;

    /// The fewest invokes per model of [`check`](Self::check): state a model keeps between
    /// invokes (LSTM variables) changes what the next invoke reads, so one is not enough.
    pub const MIN_CHECK_TRIALS: usize = 4;

    /// How long a child may run by default: 120 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// Children that run the current executable, with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `program` as the child instead of the current executable; its `main` must start
    /// with [`run_if_child`].
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    /// Bounds the child's address space to `bytes` (`None`: no bound). Only on Linux: with
    /// a bound, checks elsewhere fail with [`Error::Unsupported`].
    pub fn with_memory_limit(mut self, bytes: Option<u64>) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Kills the child after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks models as trusted ([`Validation::trusted`]): operators validation does not
    /// model are let through, here and in the child. This is where a model from an
    /// untrusted source may crash TFLite, and the child takes the crash.
    pub fn trusting_models(mut self) -> Self {
        self.trusted = true;
        self
    }

    /// The child's memory limit in bytes, if any.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// The child's time limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// In a child process: loads each model into a TFLite CPU interpreter (of `runtime`'s
    /// library) and invokes it on `trials` seeded random inputs, at least
    /// [`Isolation::MIN_CHECK_TRIALS`], one model after the other.
    ///
    /// What it can promise: each model loaded, and survived that many invokes on random
    /// inputs, in a process like the caller's (same program, same TFLite library). What it
    /// cannot: that the same model survives other inputs, more invokes (a crash that state
    /// builds up to, such as an index read from an LSTM's state, can come later), another
    /// heap layout (an out-of-bounds read that lands on mapped memory in the child may not
    /// in the caller), or a delegate. Only running the model in a worker for good
    /// ([`IsolatedBackend`]) keeps every crash out of the caller.
    ///
    /// Every model is read and validated here first, so a malformed or invalid model gives
    /// the same typed error as in-process ([`Error::Malformed`], [`Error::InvalidModel`],
    /// ...) without starting a child. Errors TFLite reports in the child come back typed
    /// ([`Error::Runtime`]); a child that dies or hangs gives [`Error::Isolated`] naming the
    /// model and the step.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`], [`Error::InvalidModel`] and the like for a model refused
    /// before any child starts; [`Error::Runtime`] for what TFLite reports in the child;
    /// [`Error::Isolated`] when the child dies or hangs.
    pub fn check(
        &self,
        runtime: &Runtime,
        models: &[NamedModel],
        trials: usize,
        seed: u64,
    ) -> Result<()> {
        let models: Vec<&NamedModel> = models.iter().collect();
        let library = runtime.library_path();
        let trials = trials.max(Self::MIN_CHECK_TRIALS);
        match self.run(JobKind::Check, library, &models, trials, seed)? {
            Message::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// In a child process: [`verify_chain`](crate::verify::verify_chain) of `whole` and its
    /// `segments` (in order) over `trials` seeded random inputs.
    ///
    /// Errors as for [`check`](Self::check); as in-process, an error while running a trial
    /// is that trial's difference in the report.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    pub fn verify_chain(
        &self,
        runtime: &Runtime,
        whole: &NamedModel,
        segments: &[NamedModel],
        trials: usize,
        seed: u64,
    ) -> Result<VerifyReport> {
        let models: Vec<&NamedModel> = std::iter::once(whole).chain(segments).collect();
        let library = runtime.library_path();
        match self.run(JobKind::Verify, library, &models, trials, seed)? {
            Message::Report(report) => Ok(report),
            other => Err(unexpected(&other)),
        }
    }

    /// Validates the models here, runs the job in a child on the TFLite library at `library`
    /// and returns its result message (never [`Message::Error`]: that is returned as the
    /// error).
    fn run(
        &self,
        kind: JobKind,
        library: &Path,
        models: &[&NamedModel],
        trials: usize,
        seed: u64,
    ) -> Result<Message> {
        if std::env::var_os(CHILD_ENV).is_some() {
            return Err(Error::invalid(
                "isolated check",
                "this process is itself an isolated child that did not run its check: its \
                 program must call multitpu::isolate::run_if_child() first thing in main",
            ));
        }
        if self.memory_limit.is_some() && !limits::MEMORY_LIMITS {
            return Err(Error::unsupported(
                "memory limits for isolated checks outside Linux (use with_memory_limit(None))",
            ));
        }
        let validation = if self.trusted {
            Validation::trusted()
        } else {
            Validation::strict()
        };
        for model in models {
            Model::from_bytes(&model.bytes)?.validate_with(&validation)?;
        }
        let program = self.program()?;
        let job = Job {
            kind,
            library: library.to_path_buf(),
            trials,
            seed,
            trusted: self.trusted,
            models: models.iter().map(|m| Arc::clone(&m.bytes)).collect(),
        };
        let ended = self.watch(&program, job)?;
        let (last_step, finished) = (ended.last_step, ended.result.is_some());
        let failed = |reason: ChildExit, stderr: String| {
            let (what, path) = describe(last_step, finished, models);
            Error::Isolated {
                what,
                path,
                reason,
                stderr,
            }
        };
        if !ended.answered {
            let reason = if ended.timed_out {
                ChildExit::Timeout(self.timeout)
            } else {
                ChildExit::NoAnswer
            };
            return Err(failed(reason, ended.stderr));
        }
        if ended.timed_out {
            return Err(failed(ChildExit::Timeout(self.timeout), ended.stderr));
        }
        match (ended.result, ended.status) {
            (Some(Message::Error(error)), Some(status)) if status.success() => Err(error),
            (Some(result), Some(status)) if status.success() => Ok(result),
            (_, status) => {
                let reason = classify(status, &ended.stderr, self.memory_limit);
                Err(failed(reason, ended.stderr))
            }
        }
    }

    /// The program children run: the one named, or the current executable.
    fn program(&self) -> Result<PathBuf> {
        match &self.program {
            Some(program) => Ok(program.clone()),
            None => std::env::current_exe().map_err(|source| Error::Io {
                path: PathBuf::from("<current executable>"),
                source,
            }),
        }
    }

    /// Starts `program` as a child, sends it `job` and follows it until it exits or the
    /// time limit passes (then kills it).
    fn watch(&self, program: &Path, job: Job) -> Result<Ended> {
        let mut command = Command::new(program);
        command
            .env(CHILD_ENV, CHECK_MODE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        limits::apply(&mut command, self.memory_limit, None);
        let deadline = Instant::now() + self.timeout;
        let child = command.spawn().map_err(|source| Error::Io {
            path: program.to_path_buf(),
            source,
        })?;
        let mut child = Reaped(child);
        let (stdin, stdout, stderr) = child.pipes();

        // Threads feed the child its job and drain its output, so that neither side blocks
        // on a full pipe while the parent waits with a deadline. Each ends when its pipe
        // closes, at the latest when the child is gone.
        let writer = spawn("multitpu-isolated-job", move || {
            let mut stdin = io::BufWriter::new(stdin);
            // A child that dies or does not read its job closes the pipe: that is reported
            // from its exit status, not from here.
            let _ = job.write(&mut stdin);
        })?;
        let (lines, reader) = forward_lines("multitpu-isolated-out", stdout)?;
        let (tail, tail_reader) = keep_tail("multitpu-isolated-err", stderr)?;

        let mut ended = Ended::default();
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                ended.timed_out = true;
                break;
            };
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    ended.timed_out = true;
                    break;
                }
                // stdout closed: the child is exiting.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            match (ended.answered, Message::parse(&line)) {
                (false, Some(Message::Hello)) => ended.answered = true,
                (true, Some(Message::Step(step))) if ended.result.is_none() => {
                    ended.last_step = Some(step)
                }
                (true, Some(result @ (Message::Done | Message::Report(_) | Message::Error(_))))
                    if ended.result.is_none() =>
                {
                    ended.result = Some(result)
                }
                // Not the protocol: not an isolated child (or a broken one).
                _ => {
                    ended.answered = false;
                    break;
                }
            }
        }
        ended.status = if ended.timed_out || !ended.answered {
            child.kill()
        } else {
            match child.wait_until(deadline) {
                Some(status) => Some(status),
                None => {
                    ended.timed_out = true;
                    child.kill()
                }
            }
        };
        drop(lines);
        let _ = writer.join();
        let _ = reader.join();
        let _ = tail_reader.join();
        ended.stderr = tail_text(&tail);
        Ok(ended)
    }
}

/// What [`Isolation::watch`] saw of a child.
#[derive(Default)]
struct Ended {
    /// It greeted with [`wire::HELLO`] and spoke only the protocol.
    answered: bool,
    /// The last step it started.
    last_step: Option<Step>,
    /// Its result, if it sent one.
    result: Option<Message>,
    /// It was killed at the time limit.
    timed_out: bool,
    /// How it ended (`None` if waiting for it failed).
    status: Option<ExitStatus>,
    /// The end of its stderr.
    stderr: String,
}

/// A child that is killed and reaped when dropped, so that no early return (or panic)
/// leaves it running.
struct Reaped(Child);

impl Reaped {
    fn pipes(
        &mut self,
    ) -> (
        std::process::ChildStdin,
        std::process::ChildStdout,
        std::process::ChildStderr,
    ) {
        let child = &mut self.0;
        // All three were set to `Stdio::piped()` before the spawn.
        match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(stdin), Some(stdout), Some(stderr)) => (stdin, stdout, stderr),
            _ => unreachable!("the child's stdin, stdout and stderr are piped"),
        }
    }

    /// Kills the child (if still running) and reaps it.
    fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.0.kill();
        self.0.wait().ok()
    }

    /// Waits for the child to exit until `deadline`; `None` if it is still running then.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        let mut pause = Duration::from_millis(1);
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.kill();
        }
    }
}

/// A thread that sends each line `from` writes (any length, without its newline) until it
/// closes; the receiver and the thread.
fn forward_lines(
    name: &str,
    from: impl Read + Send + 'static,
) -> Result<(mpsc::Receiver<String>, thread::JoinHandle<()>)> {
    let (lines_tx, lines) = mpsc::channel();
    let reader = spawn(name, move || {
        let mut from = io::BufReader::new(from);
        loop {
            let mut line = Vec::new();
            match from.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
                    if lines_tx.send(text).is_err() {
                        break;
                    }
                }
            }
        }
    })?;
    Ok((lines, reader))
}

/// The last [`STDERR_TAIL`] bytes a child writes on stderr, kept as they come by a thread that
/// ends when the pipe closes.
type Tail = Arc<std::sync::Mutex<Vec<u8>>>;

fn keep_tail(
    name: &str,
    mut from: impl Read + Send + 'static,
) -> Result<(Tail, thread::JoinHandle<()>)> {
    let tail: Tail = Arc::default();
    let sink = Arc::clone(&tail);
    let reader = spawn(name, move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut tail = sink.lock().unwrap_or_else(|e| e.into_inner());
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                let excess = tail.len() - STDERR_TAIL;
                tail.drain(..excess);
            }
        }
    })?;
    Ok((tail, reader))
}

/// What a [`Tail`] holds, as text.
fn tail_text(tail: &Tail) -> String {
    let tail = tail.lock().unwrap_or_else(|e| e.into_inner());
    let start = tail.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&tail[start..]).into_owned()
}

fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<thread::JoinHandle<T>> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|source| Error::Spawn {
            thread: name.to_owned(),
            source,
        })
}

/// What the child was doing (`loading segment 2 of 4`) and the file of that model.
fn describe(
    step: Option<Step>,
    finished: bool,
    models: &[&NamedModel],
) -> (String, Option<PathBuf>) {
    let model = |index: usize| models.get(index).copied();
    match step {
        _ if finished => ("exiting after its check".to_owned(), None),
        None => ("starting".to_owned(), None),
        Some(Step::Load { model: index }) => match model(index) {
            Some(m) => (format!("loading {}", m.name), m.path.clone()),
            None => (format!("loading model {index}"), None),
        },
        Some(Step::Invoke {
            model: index,
            trial,
        }) => match model(index) {
            Some(m) => (
                format!("invoking {} (trial {trial})", m.name),
                m.path.clone(),
            ),
            None => (format!("invoking model {index} (trial {trial})"), None),
        },
    }
}

/// How a child that gave no result ended, from its exit status and last words.
fn classify(status: Option<ExitStatus>, stderr: &str, limit: Option<u64>) -> ChildExit {
    let Some(status) = status else {
        return ChildExit::Exited(-1);
    };
    // Rust's `handle_alloc_error`, C++'s uncaught `std::bad_alloc`, and C libraries that
    // report a failed allocation say so on stderr before they abort.
    let out_of_memory = [
        "memory allocation of",
        "std::bad_alloc",
        "Cannot allocate memory",
        "out of memory",
    ]
    .iter()
    .any(|marker| stderr.contains(marker));
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return if out_of_memory {
                ChildExit::OutOfMemory { limit }
            } else {
                ChildExit::Signal(signal)
            };
        }
    }
    match status.code() {
        Some(101) if stderr.contains("panicked") => ChildExit::Panicked,
        _ if out_of_memory => ChildExit::OutOfMemory { limit },
        Some(code) => ChildExit::Exited(code),
        None => ChildExit::Exited(-1),
    }
}

fn unexpected(message: &Message) -> Error {
    Error::invalid(
        "isolated check",
        format!("unexpected result `{}`", message.line()),
    )
}

#[cfg(test)]
mod tests;
