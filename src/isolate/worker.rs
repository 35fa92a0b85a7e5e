//! Pipeline stages whose TFLite interpreter runs in a worker process of its own.
//!
//! [`IsolatedBackend`] is a [`Backend`] like the CPU one, but each stage it prepares starts
//! a worker (the caller's program again, as for [`Isolation`]'s checks), which loads the
//! segment into a CPU interpreter and then runs one item per command. Tensors travel
//! through memory shared with the worker; only a byte and a short line cross its pipes per
//! item. A worker that crashes, aborts, runs out of memory or hangs past the time limit
//! takes only itself down: the stage fails with [`Error::Isolated`] naming what the worker
//! was doing and how it ended, and the pipeline stops with the usual accounting (every item
//! pushed is popped or listed as lost).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::wire::{WorkerJob, WorkerReply};
use super::{
    CHILD_ENV, Isolation, Reaped, Tail, WORKER_MODE, classify, forward_lines, keep_tail, limits,
    tail_text,
};
use crate::backend::shared_memory::SharedMemory;
use crate::backend::{
    Backend, CustomOps, Interpreter, InterpreterOptions, Runtime, Stage, check_run_arity,
};
use crate::model::Model;
use crate::tensor::TensorSpec;
use crate::{ChildExit, Error, Result};

/// The descriptor a worker finds its shared memory at.
pub(super) const SHARED_FD: i32 = 3;

/// Tensors start at multiples of this in the shared memory.
const ALIGN: usize = 64;

/// Offsets of each tensor in the shared memory (inputs first) and its total size.
fn layout(inputs: &[usize], outputs: &[usize]) -> (Vec<usize>, Vec<usize>, usize) {
    let mut at = 0;
    let mut place = |sizes: &[usize]| -> Vec<usize> {
        sizes
            .iter()
            .map(|&size| {
                let offset = at;
                at = (at + size).div_ceil(ALIGN) * ALIGN;
                offset
            })
            .collect()
    };
    let ins = place(inputs);
    let outs = place(outputs);
    (ins, outs, at.max(1))
}

/// A backend whose stages each run a CPU interpreter in a worker process.
///
/// The worker is the caller's program started again, so its `main` must begin with
/// [`run_if_child`](super::run_if_child) (or [`run_if_child_with`](super::run_if_child_with),
/// which also gives the worker the custom operators' kernels), or the program named by
/// [`Isolation::with_program`]. The isolation's memory limit bounds each worker, and its
/// time limit each step: loading the model, and each item.
///
/// ```no_run
/// use multitpu::backend::Runtime;
/// use multitpu::isolate::{self, IsolatedBackend, Isolation};
/// use multitpu::pipeline::Pipeline;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     isolate::run_if_child(); // in a worker: serves its stage, then exits
///     let backend = IsolatedBackend::new(&Runtime::load()?, Isolation::new());
///     let pipeline = Pipeline::from_segment_files(&["untrusted_segment_0_of_2.tflite",
///                                                    "untrusted_segment_1_of_2.tflite"], &backend)?;
///     # drop(pipeline);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct IsolatedBackend {
    library: PathBuf,
    isolation: Isolation,
    threads: usize,
    trusted: bool,
    custom_ops: Vec<String>,
}

impl IsolatedBackend {
    /// Workers on `runtime`'s TFLite library, one kernel thread each, under `isolation`'s
    /// program and limits.
    pub fn new(runtime: &Runtime, isolation: Isolation) -> Self {
        IsolatedBackend {
            library: runtime.library_path().to_path_buf(),
            isolation,
            threads: 1,
            trusted: false,
            custom_ops: Vec::new(),
        }
    }

    /// Kernel threads per worker's interpreter.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Runs the models' custom operator `name` in the workers, with the kernel the worker
    /// program registered under that name ([`run_if_child_with`](super::run_if_child_with)).
    pub fn with_custom_op(mut self, name: impl Into<String>) -> Self {
        self.custom_ops.push(name.into());
        self
    }

    /// Trusts the models: operators strict validation does not model are let through
    /// ([`InterpreterOptions::trusted`]). A worker that crashes on them still only fails
    /// its stage.
    pub fn trusting_models(mut self) -> Self {
        self.trusted = true;
        self
    }

    fn start(&self, model: Arc<[u8]>) -> Result<IsolatedStage> {
        // Validated here too, so that a refused model is the same typed error as in-process
        // and no worker starts for it.
        let parsed = Model::from_bytes(&model)?;
        let mut validation = if self.trusted {
            crate::model::validate::Validation::trusted()
        } else {
            crate::model::validate::Validation::strict()
        };
        for name in &self.custom_ops {
            validation = validation.with_custom_op(name.clone());
        }
        parsed.validate_with(&validation)?;
        let specs = |tensors: &[usize]| -> Result<Vec<TensorSpec>> {
            tensors
                .iter()
                .map(|&t| TensorSpec::from_model_tensor(&parsed.tensors[t]))
                .collect()
        };
        let (inputs, outputs) = (specs(&parsed.inputs)?, specs(&parsed.outputs)?);
        let sizes = |specs: &[TensorSpec]| specs.iter().map(|s| s.byte_size).collect::<Vec<_>>();
        let (input_offsets, output_offsets, shared_bytes) =
            layout(&sizes(&inputs), &sizes(&outputs));
        let shared = SharedMemory::create(shared_bytes).map_err(|source| Error::Io {
            path: PathBuf::from("<shared memory of an isolated stage>"),
            source,
        })?;
        let job = WorkerJob {
            library: self.library.clone(),
            threads: self.threads,
            xnnpack: false,
            trusted: self.trusted,
            custom_ops: self.custom_ops.clone(),
            shared_bytes,
            model,
        };
        let mut stage = IsolatedStage::spawn(&self.isolation, &shared, job)?;
        stage.shared = Some(shared);
        stage.inputs = inputs;
        stage.outputs = outputs;
        stage.input_offsets = input_offsets;
        stage.output_offsets = output_offsets;
        stage.wait_ready()?;
        Ok(stage)
    }
}

impl Backend for IsolatedBackend {
    fn prepare(&self, segment_model: Arc<[u8]>, _device_index: usize) -> Result<Box<dyn Stage>> {
        Ok(Box::new(self.start(segment_model)?))
    }

    fn prepare_cpu(&self, segment_model: Arc<[u8]>) -> Result<Box<dyn Stage>> {
        Ok(Box::new(self.start(segment_model)?))
    }

    fn name(&self) -> String {
        "isolated tflite-cpu".to_owned()
    }
}

/// One stage's worker, seen from the pipeline.
pub struct IsolatedStage {
    child: Reaped,
    /// The worker's stdin, for commands once it is ready (before, the job's writer has it).
    commands: Option<ChildStdin>,
    /// Writes the job, then hands the stdin back: a program that never reads it (not a
    /// worker) cannot block the parent past the time limit.
    job_writer: Option<std::thread::JoinHandle<io::Result<ChildStdin>>>,
    replies: mpsc::Receiver<String>,
    stderr: Tail,
    /// Drains the worker's stderr into `stderr`; ends when the worker is gone.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    shared: Option<SharedMemory>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    input_offsets: Vec<usize>,
    output_offsets: Vec<usize>,
    timeout: Duration,
    memory_limit: Option<u64>,
    pid: u32,
    threads: usize,
    /// Whether the worker greeted: a program that never does is not a worker.
    greeted: bool,
    /// Set once the worker is gone: every later item fails with it.
    dead: Option<Error>,
}

impl std::fmt::Debug for IsolatedStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsolatedStage")
            .field("pid", &self.pid)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl IsolatedStage {
    fn spawn(isolation: &Isolation, shared: &SharedMemory, job: WorkerJob) -> Result<Self> {
        let program = isolation.program()?;
        let mut command = Command::new(&program);
        command
            .env(CHILD_ENV, WORKER_MODE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        limits::apply(&mut command, isolation.memory_limit, Some(shared.fd()));
        let child = command.spawn().map_err(|source| Error::Io {
            path: program.clone(),
            source,
        })?;
        let pid = child.id();
        let mut child = Reaped(child);
        let (mut stdin, stdout, stderr) = child.pipes();
        let threads = job.threads;
        // The worker reads all of its job before it answers that it is ready, so no
        // command is sent before the writer is done.
        let job_writer = super::spawn("multitpu-worker-job", move || {
            job.write(&mut io::BufWriter::new(&mut stdin))?;
            Ok(stdin)
        })?;
        let (replies, _) = forward_lines("multitpu-worker-out", stdout)?;
        let (tail, stderr_reader) = keep_tail("multitpu-worker-err", stderr)?;
        let stage = IsolatedStage {
            child,
            commands: None,
            job_writer: Some(job_writer),
            replies,
            stderr: tail,
            stderr_reader: Some(stderr_reader),
            shared: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            input_offsets: Vec::new(),
            output_offsets: Vec::new(),
            timeout: isolation.timeout,
            memory_limit: isolation.memory_limit,
            pid,
            threads,
            greeted: false,
            dead: None,
        };
        Ok(stage)
    }

    /// Waits for the worker's greeting and its ready line, and checks that its interpreter's
    /// tensors are the ones laid out in the shared memory.
    fn wait_ready(&mut self) -> Result<()> {
        match self.reply("loading its model")? {
            WorkerReply::Hello => self.greeted = true,
            _ => return Err(self.died("loading its model")),
        }
        match self.reply("loading its model")? {
            WorkerReply::Ready { inputs, outputs } => {
                let expected =
                    |specs: &[TensorSpec]| specs.iter().map(|s| s.byte_size).collect::<Vec<_>>();
                if inputs != expected(&self.inputs) || outputs != expected(&self.outputs) {
                    return Err(Error::invalid(
                        "isolated stage",
                        format!(
                            "the worker's interpreter has tensors of {inputs:?} and {outputs:?} bytes, \
                             the model {:?} and {:?}",
                            expected(&self.inputs),
                            expected(&self.outputs)
                        ),
                    ));
                }
                // It has read its whole job: its stdin takes commands now.
                let stdin = self.job_writer.take().map(std::thread::JoinHandle::join);
                match stdin {
                    Some(Ok(Ok(stdin))) => {
                        self.commands = Some(stdin);
                        Ok(())
                    }
                    _ => Err(self.died("reading its job")),
                }
            }
            WorkerReply::Error(error) => Err(error),
            _ => Err(self.died("loading its model")),
        }
    }

    /// The worker's next reply, or the error of a worker that hangs, dies or speaks
    /// something else.
    fn reply(&mut self, doing: &str) -> Result<WorkerReply> {
        let deadline = Instant::now() + self.timeout;
        let left = deadline.saturating_duration_since(Instant::now());
        match self.replies.recv_timeout(left) {
            Ok(line) => match WorkerReply::parse(&line) {
                Some(reply) => Ok(reply),
                None => {
                    // Not the protocol: not a worker, or a broken one.
                    self.greeted = false;
                    Err(self.died(doing))
                }
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.child.kill();
                let error = self.failure(doing, ChildExit::Timeout(self.timeout));
                self.dead = Some(copy_of(&error));
                Err(error)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.died(doing)),
        }
    }

    /// The worker is gone (or must go): kill it, reap it, and describe how it ended.
    fn died(&mut self, doing: &str) -> Error {
        let status = self.child.kill();
        // The worker is reaped, so its stderr is closed: the reader has its last words.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let stderr = self.stderr_tail();
        let reason = match classify(status, &stderr, self.memory_limit) {
            // A program that never greeted and just exited is not a worker.
            ChildExit::Exited(_) if !self.greeted => ChildExit::NoAnswer,
            reason => reason,
        };
        let error = self.failure(doing, reason);
        self.dead = Some(copy_of(&error));
        error
    }

    fn failure(&self, doing: &str, reason: ChildExit) -> Error {
        Error::Isolated {
            what: format!("{doing} in worker process {}", self.pid),
            path: None,
            reason,
            stderr: self.stderr_tail(),
        }
    }

    fn stderr_tail(&self) -> String {
        tail_text(&self.stderr)
    }
}

/// A copy of an [`Error::Isolated`], which a dead stage returns for every later item
/// (other errors are not kept).
fn copy_of(error: &Error) -> Error {
    match error {
        Error::Isolated {
            what,
            path,
            reason,
            stderr,
        } => Error::Isolated {
            what: what.clone(),
            path: path.clone(),
            reason: reason.clone(),
            stderr: stderr.clone(),
        },
        other => Error::invalid("isolated stage", other.to_string()),
    }
}

impl Stage for IsolatedStage {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
        if let Some(dead) = &self.dead {
            return Err(copy_of(dead));
        }
        check_run_arity(
            &self.describe(),
            (&self.inputs, &self.outputs),
            inputs.len(),
            outputs.len(),
        )?;
        for (spec, buffer) in self
            .inputs
            .iter()
            .zip(inputs.iter().map(|b| b.len()))
            .chain(self.outputs.iter().zip(outputs.iter().map(|b| b.len())))
        {
            if buffer != spec.byte_size {
                return Err(Error::TensorSize {
                    tensor: spec.name.clone(),
                    expected: spec.byte_size,
                    actual: buffer,
                });
            }
        }
        let Some(shared) = &self.shared else {
            return Err(Error::invalid("isolated stage", "no shared memory"));
        };
        for (data, &offset) in inputs.iter().zip(&self.input_offsets) {
            shared.write_at(offset, data);
        }
        let sent = self
            .commands
            .as_mut()
            .map(|stdin| stdin.write_all(b"i").and_then(|()| stdin.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.died("receiving an item"));
        }
        match self.reply("invoking its model")? {
            WorkerReply::Done => {
                let Some(shared) = &self.shared else {
                    return Err(Error::invalid("isolated stage", "no shared memory"));
                };
                for (out, &offset) in outputs.iter_mut().zip(&self.output_offsets) {
                    shared.read_at(offset, out);
                }
                Ok(())
            }
            // TFLite reported an error and the worker lives on: the item failed.
            WorkerReply::Error(error) => Err(error),
            _ => {
                self.greeted = false;
                Err(self.died("invoking its model"))
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "isolated tflite-cpu (worker process {}, {} thread{})",
            self.pid,
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        )
    }
}

impl Drop for IsolatedStage {
    fn drop(&mut self) {
        // Closing its stdin ends the worker's loop; `Reaped` then waits for or kills it.
        drop(self.commands.take());
    }
}

/// The worker's side: reads its job, loads the model, maps the shared memory, and runs one
/// item per command byte until its stdin closes.
pub(super) fn serve(custom_ops: &CustomOps) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut send = |reply: WorkerReply| -> io::Result<()> {
        writeln!(out, "{}", reply.line())?;
        out.flush()
    };
    send(WorkerReply::Hello)?;
    let mut input = io::BufReader::new(io::stdin().lock());
    let job = WorkerJob::read(&mut input).map_err(io::Error::other)?;
    let loaded = load(&job, custom_ops);
    let (mut interpreter, shared) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return send(WorkerReply::Error(error)),
    };
    let sizes = |specs: &[TensorSpec]| specs.iter().map(|s| s.byte_size).collect::<Vec<_>>();
    let (input_sizes, output_sizes) = (sizes(interpreter.inputs()), sizes(interpreter.outputs()));
    let (input_offsets, output_offsets, _) = layout(&input_sizes, &output_sizes);
    send(WorkerReply::Ready {
        inputs: input_sizes.clone(),
        outputs: output_sizes.clone(),
    })?;
    let mut buffers: Vec<Vec<u8>> = input_sizes.iter().map(|&n| vec![0; n]).collect();
    let mut outputs: Vec<Vec<u8>> = output_sizes.iter().map(|&n| vec![0; n]).collect();
    let mut command = [0u8; 1];
    loop {
        match input.read(&mut command)? {
            0 => return Ok(()), // the parent closed the pipe: the stage is done
            _ if command[0] == b'i' => {}
            _ => return Err(io::Error::other("unknown command from the parent")),
        }
        let result = (|| -> Result<()> {
            for (slot, (buffer, &offset)) in buffers.iter_mut().zip(&input_offsets).enumerate() {
                shared.read_at(offset, buffer);
                interpreter.set_input(slot, buffer)?;
            }
            interpreter.invoke()?;
            for (slot, (buffer, &offset)) in outputs.iter_mut().zip(&output_offsets).enumerate() {
                interpreter.copy_output(slot, buffer)?;
                shared.write_at(offset, buffer);
            }
            Ok(())
        })();
        send(match result {
            Ok(()) => WorkerReply::Done,
            Err(error) => WorkerReply::Error(error),
        })?;
    }
}

fn load(job: &WorkerJob, registry: &CustomOps) -> Result<(Interpreter, SharedMemory)> {
    let runtime = if job.library.as_os_str().is_empty() {
        Runtime::load()
    } else {
        Runtime::from_path(&job.library)
    }?;
    let mut options = InterpreterOptions::default()
        .with_threads(job.threads)
        .with_xnnpack(job.xnnpack)
        .with_trusted(job.trusted);
    for name in &job.custom_ops {
        let op = registry.get(name).ok_or_else(|| {
            Error::unsupported(format!(
                "custom operator `{name}` in an isolated worker: its program registers no kernel \
                 by that name (pass it to multitpu::isolate::run_if_child_with)"
            ))
        })?;
        options.custom_ops.insert(name.clone(), Arc::clone(op));
    }
    let interpreter = Interpreter::new(&runtime, Arc::clone(&job.model), &options)?;
    let shared =
        SharedMemory::inherited(SHARED_FD, job.shared_bytes).map_err(|source| Error::Io {
            path: PathBuf::from(format!("<shared memory, descriptor {SHARED_FD}>")),
            source,
        })?;
    Ok((interpreter, shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_laid_out_aligned_inputs_first() {
        let (ins, outs, total) = layout(&[10, 64, 1], &[3]);
        assert_eq!(ins, vec![0, 64, 128]);
        assert_eq!(outs, vec![192]);
        assert_eq!(total, 256);
        assert_eq!(layout(&[], &[]).2, 1);
    }
}
