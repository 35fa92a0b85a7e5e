//! Run model segments as a pipeline: one thread per stage, bounded queues between them.
//!
//! A [`Pipeline`] is generic over [`Stage`]s, so it works the same with TFLite CPU
//! interpreters, Edge TPU interpreters and simulated devices. Start one from segment models
//! in one call ([`Pipeline::from_models`], [`Pipeline::open`] for a plan manifest,
//! [`Pipeline::from_segment_files`]: Edge TPU segments on a [`Backend`](crate::backend::Backend)'s devices in order,
//! one per replica, CPU segments on the host), or stage by stage with [`PipelineBuilder`];
//! feed it with [`Pipeline::push`] and collect results, in input order, with
//! [`Pipeline::pop`] or by iterating over `&Pipeline` (without waiting, or waiting a bounded
//! time: [`Pipeline::try_pop`], [`Pipeline::pop_timeout`]).
//!
//! # Design
//!
//! - Stage `i` runs on thread `multitpu-stage-{i}` (`multitpu-stage-{i}.{j}` for instance `j`
//!   of a replicated stage). Instances of a replicated stage take items round-robin, so items
//!   still come out in input order.
//! - The queues in front of and between stages are bounded (capacity 1 by default); a full
//!   queue blocks the stage (or `push`) in front of it: backpressure. The output queue is
//!   unbounded unless [`PipelineBuilder::output_capacity`] bounds it.
//! - Tensors are joined by name when the pipeline is built. A stage reads the pipeline inputs
//!   or the outputs of any earlier stage, so tensors can skip stages; on the per-item path
//!   only slot indices are used. The pipeline inputs are those named with
//!   [`PipelineBuilder::inputs`], else the first stage's inputs. A stage that reads a tensor
//!   nothing before it provides (a missing or misordered stage) or with another type or size
//!   is refused when the pipeline is built ([`Error::NoProducer`], [`Error::TensorMismatch`]).
//! - An item travels as one frame holding a buffer for every tensor of the pipeline. Frames
//!   are recycled when an [`Output`] is dropped, and queues never shrink, so steady-state
//!   operation allocates nothing.
//! - Caller mistakes (unknown, missing, duplicate or wrongly sized inputs) are returned as
//!   errors by `push`. A stage error or panic on item `k` stops the pipeline: it takes no
//!   more input and discards the items after `k`, while the items before `k` still run
//!   through every stage and come out of `pop`, in order. Then `pop` reports the failure as
//!   [`Error::StageFailed`] (as `push` and `close` do from the failure on), listing the lost
//!   items: every pushed item comes out or is listed, never both. No call hangs after a
//!   failure (the queues stop pushing back, so the items before `k` need no caller to
//!   finish), and dropping a pipeline never waits for more than the stage runs in progress.
//!
//! # Example
//!
//! ```
//! use multitpu::backend::Stage;
//! use multitpu::pipeline::PipelineBuilder;
//! use multitpu::tensor::TensorSpec;
//!
//! /// Doubles every byte.
//! struct Double([TensorSpec; 1], [TensorSpec; 1]);
//!
//! impl Stage for Double {
//!     fn inputs(&self) -> &[TensorSpec] {
//!         &self.0
//!     }
//!     fn outputs(&self) -> &[TensorSpec] {
//!         &self.1
//!     }
//!     fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> multitpu::Result<()> {
//!         for (out, x) in outputs[0].iter_mut().zip(inputs[0]) {
//!             *out = x.wrapping_mul(2);
//!         }
//!         Ok(())
//!     }
//!     fn describe(&self) -> String {
//!         "double".into()
//!     }
//! }
//!
//! # fn main() -> multitpu::Result<()> {
//! let stage = |from: &str, to: &str| -> Box<dyn Stage> {
//!     Box::new(Double([TensorSpec::bytes(from, 4)], [TensorSpec::bytes(to, 4)]))
//! };
//! let pipeline = PipelineBuilder::new()
//!     .stage(stage("x", "x2"))
//!     .stage(stage("x2", "x4"))
//!     .build()?;
//! for i in 0..3u8 {
//!     pipeline.push(&[("x", &[i; 4])])?;
//! }
//! pipeline.close()?;
//! for output in &pipeline {
//!     let output = output?;
//!     assert_eq!(output.get("x4"), Some(&[4 * output.seq() as u8; 4][..]));
//! }
//! # Ok(())
//! # }
//! ```

mod layout;
mod queue;
mod segments;
mod shared;
mod stats;
mod timing;
mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::backend::Stage;
use crate::tensor::{Element, TensorSpec};
use crate::{Error, Result};
use layout::Layout;
use queue::{Queue, Received, Receiver, SendError, Sender};
use shared::{Failure, Frame, Item, Pool, Shared};
use stats::Counters;
use worker::Worker;

pub use stats::{PipelineStats, StageStats};
pub use timing::{DEFAULT_STAGE_OVERHEAD_S, PipelineTiming};

/// Default capacity of the queues between stages and in front of the first stage.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1;

/// Configures and starts a [`Pipeline`].
///
/// ```
/// # use multitpu::pipeline::PipelineBuilder;
/// # use multitpu::backend::Stage;
/// # fn stages() -> Vec<Box<dyn Stage>> { Vec::new() }
/// let mut builder = PipelineBuilder::new().input_capacity(4).output_capacity(Some(4));
/// for stage in stages() {
///     builder = builder.stage(stage);
/// }
/// ```
pub struct PipelineBuilder {
    stages: Vec<Vec<Box<dyn Stage>>>,
    input_capacity: usize,
    queue_capacity: usize,
    output_capacity: Option<usize>,
    inputs: Option<Vec<String>>,
    outputs: Option<Vec<String>>,
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        PipelineBuilder::new()
    }
}

impl PipelineBuilder {
    /// A builder with no stages, queues of capacity [`DEFAULT_QUEUE_CAPACITY`] and an
    /// unbounded output queue.
    pub fn new() -> Self {
        PipelineBuilder {
            stages: Vec::new(),
            input_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            output_capacity: None,
            inputs: None,
            outputs: None,
        }
    }

    /// Appends a stage run by one instance.
    pub fn stage(mut self, stage: Box<dyn Stage>) -> Self {
        self.stages.push(vec![stage]);
        self
    }

    /// Appends a stage run by several instances (e.g. the same segment on several devices),
    /// which take items in turn. All instances must have the same inputs and outputs.
    pub fn replicated_stage(mut self, instances: Vec<Box<dyn Stage>>) -> Self {
        self.stages.push(instances);
        self
    }

    /// Capacity of the queue in front of the first stage (per instance of that stage).
    pub fn input_capacity(mut self, capacity: usize) -> Self {
        self.input_capacity = capacity;
        self
    }

    /// Capacity of each queue between two stages (per pair of instances).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Capacity of the queue of finished items (per instance of the last stage).
    ///
    /// `None` (the default) makes it unbounded: `push` then never waits for the caller to
    /// `pop`, so one thread may push everything before popping; the queue and the frame pool
    /// grow to the largest backlog. With a bounded output queue the caller's own pace
    /// throttles the pipeline, but a caller that pushes without ever popping then blocks
    /// once the pipeline is full.
    pub fn output_capacity(mut self, capacity: Option<usize>) -> Self {
        self.output_capacity = capacity;
        self
    }

    /// Names the pipeline inputs, in the order [`Pipeline::inputs`] reports them; each must
    /// be read by some stage.
    ///
    /// By default they are the first stage's inputs, so a later stage may read only those
    /// and earlier stages' outputs. Name them when a later stage also reads a tensor that the
    /// caller provides (a skip connection from the model's input); segment models of a plan
    /// name the model's inputs ([`Pipeline::from_models`]).
    pub fn inputs<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inputs = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Names the pipeline outputs, in the order [`Output`] reports them. By default they
    /// are the outputs of the last stage plus every stage output no later stage reads.
    pub fn outputs<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.outputs = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Checks the stages, resolves the tensor routing and starts the stage threads.
    ///
    /// # Errors
    ///
    /// [`Error::NoProducer`] if a stage reads a tensor that neither a pipeline input nor an
    /// earlier stage provides, [`Error::TensorMismatch`] if it reads one with another element
    /// type or byte size; [`Error::UnknownTensor`] or [`Error::DuplicateTensor`] for bad
    /// [`inputs`](Self::inputs) or [`outputs`](Self::outputs); [`Error::Invalid`] for other
    /// inconsistencies (no stage, a tensor written twice, zero capacities).
    pub fn build(self) -> Result<Pipeline> {
        if self.input_capacity == 0 || self.queue_capacity == 0 || self.output_capacity == Some(0) {
            return Err(Error::invalid(
                "pipeline",
                "queue capacities must be at least 1",
            ));
        }
        // Asked once: a stage's description names it in statistics and errors.
        let descriptions: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|instances| instances.iter().map(|s| s.describe()).collect())
            .collect();
        for (index, instances) in self.stages.iter().enumerate() {
            let Some(first) = instances.first() else {
                return Err(Error::invalid(
                    "pipeline",
                    format!("stage {index} has no instances"),
                ));
            };
            if let Some((j, _)) = instances.iter().enumerate().find(|(_, other)| {
                other.inputs() != first.inputs() || other.outputs() != first.outputs()
            }) {
                return Err(Error::invalid(
                    "pipeline",
                    format!(
                        "instance {j} of stage {index} ({}) has other tensors than instance 0 ({})",
                        descriptions[index][j], descriptions[index][0]
                    ),
                ));
            }
        }
        let specs: Vec<_> = self
            .stages
            .iter()
            .zip(&descriptions)
            .map(|(instances, desc)| {
                (
                    instances[0].inputs(),
                    instances[0].outputs(),
                    desc[0].as_str(),
                )
            })
            .collect();
        let layout = Layout::resolve(&specs, self.inputs.as_deref(), self.outputs.as_deref())?;
        drop(specs);
        start(self, Arc::new(layout), descriptions)
    }
}

/// The two ends of a link.
type Link = (Vec<Vec<Sender<Item>>>, Vec<Vec<Receiver<Item>>>);

/// Queues from `up` upstream instances to `down` downstream ones: `senders[k][j]` and
/// `receivers[j][k]` are the ends of the queue from upstream `k` to downstream `j`.
fn link(up: usize, down: usize, capacity: Option<usize>) -> Link {
    let mut senders: Vec<Vec<Sender<Item>>> = (0..up).map(|_| Vec::with_capacity(down)).collect();
    let mut receivers: Vec<Vec<Receiver<Item>>> =
        (0..down).map(|_| Vec::with_capacity(up)).collect();
    for upstream in &mut senders {
        for downstream in &mut receivers {
            let (tx, rx) = queue::queue(capacity);
            upstream.push(tx);
            downstream.push(rx);
        }
    }
    (senders, receivers)
}

/// What the caller side keeps of one stage, for statistics.
struct StageInfo {
    descriptions: Vec<String>,
    counters: Vec<Arc<Counters>>,
    /// The stage's input queues, to observe their depths.
    queues: Vec<Arc<Queue<Item>>>,
}

fn start(
    builder: PipelineBuilder,
    layout: Arc<Layout>,
    descriptions: Vec<Vec<String>>,
) -> Result<Pipeline> {
    let span = tracing::info_span!("pipeline", stages = builder.stages.len());
    let replicas: Vec<usize> = builder.stages.iter().map(Vec::len).collect();
    let last = replicas.len() - 1;
    // Links: 0 is caller → stage 0, i is stage i-1 → stage i, last+1 is last stage → caller.
    let mut shapes = vec![(1, replicas[0], Some(builder.input_capacity))];
    for pair in replicas.windows(2) {
        shapes.push((pair[0], pair[1], Some(builder.queue_capacity)));
    }
    shapes.push((replicas[last], 1, builder.output_capacity));
    // Frames in flight are at most what the queues hold plus one per stage thread (an
    // unbounded output queue counts as 64): the pool keeps that many for reuse.
    let pool_limit = shapes
        .iter()
        .map(|&(up, down, capacity)| up * down * capacity.unwrap_or(64))
        .sum::<usize>()
        + replicas.iter().sum::<usize>()
        + 8;
    let (mut senders, mut receivers): (Vec<_>, Vec<_>) = shapes
        .into_iter()
        .map(|(up, down, capacity)| link(up, down, capacity))
        .unzip();
    let all_queues: Vec<Arc<Queue<Item>>> = senders
        .iter()
        .flatten()
        .flatten()
        .map(Sender::queue)
        .collect();
    // From here on, each link's ends are handed out in order.
    senders.reverse();
    receivers.reverse();
    let input_senders = senders
        .pop()
        .and_then(|caller| caller.into_iter().next())
        .unwrap_or_default();
    let pool = Pool::new(layout.slot_sizes.clone(), pool_limit);
    let shared = Arc::new(Shared::new(input_senders, all_queues, pool));
    let mut threads = Vec::new();
    let mut stages = Vec::with_capacity(replicas.len());
    let mut spawn_error = None;
    for ((index, instances), descriptions) in
        builder.stages.into_iter().enumerate().zip(descriptions)
    {
        let stage_inputs = receivers.pop().unwrap_or_default();
        let stage_outputs = senders.pop().unwrap_or_default();
        let mut info = StageInfo {
            descriptions,
            counters: Vec::new(),
            queues: stage_inputs.iter().flatten().map(Receiver::queue).collect(),
        };
        let count = instances.len();
        for (((instance, stage), inputs), outputs) in instances
            .into_iter()
            .enumerate()
            .zip(stage_inputs)
            .zip(stage_outputs)
        {
            let counters = Arc::new(Counters::new());
            info.counters.push(Arc::clone(&counters));
            let worker = Worker {
                stage_desc: info.descriptions[instance].clone(),
                stage,
                index,
                instance,
                replicas: count,
                inputs,
                outputs,
                route: layout.stages[index].clone(),
                shared: Arc::clone(&shared),
                counters,
                span: span.clone(),
            };
            let name = if count == 1 {
                format!("multitpu-stage-{index}")
            } else {
                format!("multitpu-stage-{index}.{instance}")
            };
            if spawn_error.is_some() {
                continue;
            }
            match std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || worker.run())
            {
                Ok(handle) => threads.push(StageThread {
                    index,
                    instance,
                    handle,
                }),
                Err(source) => {
                    spawn_error = Some(Error::Spawn {
                        thread: name,
                        source,
                    })
                }
            }
        }
        stages.push(info);
    }
    let output_receivers = receivers
        .pop()
        .and_then(|caller| caller.into_iter().next())
        .unwrap_or_default();
    let pipeline = Pipeline {
        shared,
        layout,
        output_queues: output_receivers.iter().map(Receiver::queue).collect(),
        output: Mutex::new(OutputState {
            queues: output_receivers,
            next_seq: 0,
            ready: VecDeque::new(),
        }),
        threads: Mutex::new(threads),
        outcome: Mutex::new(None),
        stages,
        popped: AtomicU64::new(0),
        span,
    };
    match spawn_error {
        // Dropping the pipeline stops and joins the threads already started.
        Some(error) => Err(error),
        None => Ok(pipeline),
    }
}

/// A started stage thread.
struct StageThread {
    index: usize,
    instance: usize,
    handle: JoinHandle<()>,
}

/// The caller's end of the last queue(s).
struct OutputState {
    /// One receiver per instance of the last stage.
    queues: Vec<Receiver<Item>>,
    /// Sequence number of the next item to pop.
    next_seq: u64,
    /// Once the pipeline has ended, the items still to come out, in order (`next_seq` first).
    ready: VecDeque<Item>,
}

/// How the pipeline ended, once every stage thread is joined.
#[derive(Clone)]
enum Outcome {
    Finished,
    Failed { failure: Failure, lost: Vec<u64> },
}

/// What [`Pipeline::try_pop`] and [`Pipeline::pop_timeout`] found.
#[derive(Debug)]
pub enum Popped {
    /// The next finished item, in input order.
    Item(Output),
    /// The next item has not finished (in time); it may still come.
    Pending,
    /// The pipeline is closed and every item came out: [`Pipeline::pop`]'s `Ok(None)`.
    Finished,
}

/// Segments running as a pipeline of threads. See the [module documentation](self).
///
/// All methods take `&self`, so one thread can push while another pops (share the pipeline
/// with `std::thread::scope` or an `Arc`).
///
/// ```
/// use multitpu::backend::{SimCompute, SimulatedEdgeTpuBackend};
/// use multitpu::model::{Graph, paper};
/// use multitpu::pipeline::Pipeline;
/// use multitpu::device::EdgeTpuCostModel;
/// use multitpu::segment::{Plan, UniformByOps};
///
/// # fn main() -> multitpu::Result<()> {
/// let model = paper::fc(1000)?;
/// let graph = Graph::new(&model)?;
/// let plan = Plan::new(&graph, 3, &UniformByOps)?;
/// let backend = SimulatedEdgeTpuBackend::new(EdgeTpuCostModel::usb_default(), SimCompute::Skip);
/// let pipeline = Pipeline::from_models(&plan.segment_models(&graph)?, &backend)?;
/// let input = &pipeline.inputs()[0]; // F32 [1, 64]
/// for _ in 0..4 {
///     pipeline.push_as(&[(&input.name, &[0.25f32; 64])])?;
/// }
/// pipeline.close()?;
/// for output in &pipeline {
///     let output = output?;
///     let scores: &[f32] = output.get_as(&pipeline.outputs()[0].name)?;
///     assert_eq!(scores.len(), 10);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Pipeline {
    shared: Arc<Shared>,
    layout: Arc<Layout>,
    output: Mutex<OutputState>,
    /// The output queues, to observe their depth.
    output_queues: Vec<Arc<Queue<Item>>>,
    threads: Mutex<Vec<StageThread>>,
    outcome: Mutex<Option<Outcome>>,
    stages: Vec<StageInfo>,
    popped: AtomicU64,
    span: tracing::Span,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stages", &self.stages.len())
            .field("inputs", &self.layout.inputs)
            .field("outputs", &self.layout.outputs)
            .finish_non_exhaustive()
    }
}

/// Where a caller's input buffer goes.
fn input_slot(layout: &Layout, name: &str) -> Option<usize> {
    layout.inputs.iter().position(|spec| spec.name == name)
}

impl Pipeline {
    /// The tensors `push` expects; input `i` of `push` may come in any order.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.layout.inputs
    }

    /// The tensors every [`Output`] holds, in this order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.layout.outputs
    }

    /// Number of stages.
    pub fn stage_count(&self) -> usize {
        self.stages.len()
    }

    /// Checks named input buffers against the pipeline inputs; with `typed`, also that `T`
    /// is each input's element type.
    fn check_inputs<T: Element>(&self, inputs: &[(&str, &[T])], typed: bool) -> Result<()> {
        let specs = &self.layout.inputs;
        for (i, &(name, data)) in inputs.iter().enumerate() {
            let Some(slot) = input_slot(&self.layout, name) else {
                return Err(Error::UnknownTensor {
                    kind: "pipeline input",
                    name: name.to_string(),
                });
            };
            if inputs[..i].iter().any(|&(other, _)| other == name) {
                return Err(Error::DuplicateTensor {
                    kind: "pipeline input",
                    name: name.to_string(),
                });
            }
            if typed {
                specs[slot].check_type::<T>()?;
                // A typed push counts elements, so its error does too.
                if data.len() != specs[slot].num_elements() {
                    return Err(Error::ElementCount {
                        tensor: name.to_string(),
                        expected: specs[slot].num_elements(),
                        actual: data.len(),
                    });
                }
            }
            Error::check_tensor_size(name, specs[slot].byte_size, std::mem::size_of_val(data))?;
        }
        // Every name is known and unique, so equal counts mean nothing is missing.
        if let Some(missing) = specs
            .iter()
            .find(|spec| !inputs.iter().any(|&(name, _)| name == spec.name))
        {
            return Err(Error::MissingTensor {
                kind: "pipeline input",
                name: missing.name.clone(),
            });
        }
        Ok(())
    }

    /// Pushes one item, waiting while the first queue is full. Returns its sequence number
    /// (0 for the first item pushed, then 1, 2, ...).
    ///
    /// `inputs` names a buffer for every pipeline input, in any order.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTensor`], [`Error::MissingTensor`], [`Error::DuplicateTensor`] or
    /// [`Error::TensorSize`] for bad inputs (the pipeline is unaffected);
    /// [`Error::PipelineClosed`] after [`close`](Self::close); [`Error::StageFailed`] once a
    /// stage has failed (reported once the items before the failed one have run through;
    /// they can still be popped).
    pub fn push(&self, inputs: &[(&str, &[u8])]) -> Result<u64> {
        match self.push_item(inputs, false, true)? {
            Some(seq) => Ok(seq),
            None => Err(self.stopped_error()),
        }
    }

    /// Pushes one item of typed inputs, as [`push`](Self::push): every input named must hold
    /// elements of type `T`, one per element of the tensor.
    ///
    /// ```
    /// # use multitpu::pipeline::Pipeline;
    /// # fn run(pipeline: &Pipeline) -> multitpu::Result<()> {
    /// let input = &pipeline.inputs()[0]; // an F32 tensor
    /// pipeline.push_as(&[(&input.name, &vec![0.5f32; input.num_elements()])])?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push), [`Error::TensorType`] if `T` is not the element type of an
    /// input (see [`TensorSpec::quantize`] to turn real values into a quantized input), and
    /// [`Error::ElementCount`] (not [`Error::TensorSize`]) for another number of elements.
    pub fn push_as<T: Element>(&self, inputs: &[(&str, &[T])]) -> Result<u64> {
        match self.push_item(inputs, true, true)? {
            Some(seq) => Ok(seq),
            None => Err(self.stopped_error()),
        }
    }

    /// Pushes one item if the first queue has room; `Ok(None)` if it is full (the inputs are
    /// not copied then).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn try_push(&self, inputs: &[(&str, &[u8])]) -> Result<Option<u64>> {
        self.push_item(inputs, false, false)
    }

    fn push_item<T: Element>(
        &self,
        inputs: &[(&str, &[T])],
        typed: bool,
        block: bool,
    ) -> Result<Option<u64>> {
        self.check_inputs(inputs, typed)?;
        let mut state = self.shared.input.lock();
        if self.shared.has_failed() {
            drop(state);
            return Err(self.stopped_error());
        }
        if state.closed {
            return Err(Error::PipelineClosed);
        }
        let seq = state.next_seq;
        let Some(queue) = state
            .senders
            .get((seq % state.senders.len().max(1) as u64) as usize)
        else {
            drop(state);
            return Err(self.stopped_error());
        };
        if !block && queue.is_full() {
            return Ok(None);
        }
        let mut frame: Frame = self.shared.pool.get();
        for &(name, data) in inputs {
            if let Some(slot) = input_slot(&self.layout, name) {
                frame[slot].copy_from_slice(bytemuck::cast_slice(data));
            }
        }
        let item = Item { seq, frame };
        let sent = if block {
            queue.send(item)
        } else {
            queue.try_send(item)
        };
        let rejected = match sent {
            Ok(()) => None,
            Err(SendError::Full(item)) => {
                // Only stages take from this queue, so it was full a moment ago too.
                self.shared.pool.put(item.frame);
                return Ok(None);
            }
            Err(SendError::Closed(item)) => Some(item),
        };
        match rejected {
            None => {
                state.next_seq += 1;
                self.shared.pushed.store(state.next_seq, Ordering::Release);
                Ok(Some(seq))
            }
            Some(item) => {
                // Never accepted, so not lost: the caller gets an error for it.
                self.shared.pool.put(item.frame);
                drop(state);
                Err(self.stopped_error())
            }
        }
    }

    /// The next finished item, in input order; waits for it. `Ok(None)` once the pipeline
    /// is closed and every item came out.
    ///
    /// # Errors
    ///
    /// [`Error::StageFailed`] once a stage has failed and every item before the failed one
    /// came out; the failed item and every later one are listed in it as lost.
    pub fn pop(&self) -> Result<Option<Output>> {
        match self.pop_until(None)? {
            Popped::Item(output) => Ok(Some(output)),
            // Without a deadline only the end stops the wait.
            Popped::Finished | Popped::Pending => Ok(None),
        }
    }

    /// The next finished item if it is there now, as [`pop`](Self::pop) but without
    /// waiting for one: [`Popped::Pending`] while the next item is still in flight (or not
    /// pushed yet), [`Popped::Finished`] where `pop` returns `Ok(None)`. An item it does not
    /// return stays for the next call: every pushed item still comes out or is listed as
    /// lost. Once the pipeline has ended, it settles how, as `pop` does (after a failure,
    /// that waits for the stage runs in progress).
    ///
    /// ```
    /// # use multitpu::pipeline::{Pipeline, Popped};
    /// # fn poll(pipeline: &Pipeline) -> multitpu::Result<()> {
    /// match pipeline.try_pop()? {
    ///     Popped::Item(output) => println!("item {} is done", output.seq()),
    ///     Popped::Pending => println!("nothing finished yet"),
    ///     Popped::Finished => println!("closed, and every item came out"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    pub fn try_pop(&self) -> Result<Popped> {
        self.pop_until(Some(Instant::now()))
    }

    /// The next finished item, in input order, waiting for it at most `timeout`:
    /// [`Popped::Pending`] if it did not finish in time, otherwise what [`pop`](Self::pop)
    /// returns ([`Popped::Finished`] for its `Ok(None)`), with the same accounting as
    /// [`try_pop`](Self::try_pop). A timeout too large to add to the current time waits as
    /// `pop` does.
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    pub fn pop_timeout(&self, timeout: Duration) -> Result<Popped> {
        self.pop_until(Instant::now().checked_add(timeout))
    }

    /// [`pop`](Self::pop) with a deadline (`None`: none).
    fn pop_until(&self, deadline: Option<Instant>) -> Result<Popped> {
        {
            let mut state = self.output.lock();
            if let Some(item) = state.ready.pop_front() {
                return Ok(Popped::Item(self.deliver(&mut state, item)));
            }
            let next = state.queues.len().max(1) as u64;
            let received = state
                .queues
                .get((state.next_seq % next) as usize)
                .map(|queue| queue.recv_until(deadline));
            match received {
                Some(Received::Item(item)) => {
                    if !self.shared.discards(item.seq) {
                        return Ok(Popped::Item(self.deliver(&mut state, item)));
                    }
                    self.shared.discard(item);
                }
                // Nothing taken: the next call looks at the same queue again.
                Some(Received::TimedOut) => return Ok(Popped::Pending),
                Some(Received::Ended) | None => {}
            }
        }
        // The pipeline has ended: deliver what is left, then report how it ended.
        let outcome = self.finish();
        let mut state = self.output.lock();
        if let Some(item) = state.ready.pop_front() {
            return Ok(Popped::Item(self.deliver(&mut state, item)));
        }
        match outcome {
            Outcome::Finished => Ok(Popped::Finished),
            Outcome::Failed { failure, lost } => Err(failure.to_error(&lost)),
        }
    }

    /// Hands `item`, the next one in order, to the caller.
    fn deliver(&self, state: &mut OutputState, item: Item) -> Output {
        debug_assert_eq!(item.seq, state.next_seq, "output out of order");
        state.next_seq += 1;
        self.popped.fetch_add(1, Ordering::Relaxed);
        Output {
            seq: item.seq,
            frame: item.frame,
            layout: Arc::clone(&self.layout),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Ends the input: items already pushed still run and can be popped, then `pop`
    /// returns `Ok(None)`. Closing twice is fine. Does not wait for the items in flight,
    /// only for a `push` blocked on another thread to get its item in.
    ///
    /// # Errors
    ///
    /// [`Error::StageFailed`] if a stage has failed (after the items before the failed one
    /// have finished; they can still be popped).
    pub fn close(&self) -> Result<()> {
        {
            let mut state = self.shared.input.lock();
            if !self.shared.has_failed() {
                state.closed = true;
                state.senders.clear();
                return Ok(());
            }
        }
        match self.finish() {
            Outcome::Finished => Ok(()),
            Outcome::Failed { failure, lost } => Err(failure.to_error(&lost)),
        }
    }

    /// The error for a pipeline that no longer takes input.
    fn stopped_error(&self) -> Error {
        match self.finish() {
            Outcome::Finished => Error::PipelineClosed,
            Outcome::Failed { failure, lost } => failure.to_error(&lost),
        }
    }

    /// Closes the input, joins every stage thread and settles the outcome: the items that
    /// can still come out, in order, move to the `ready` list, and every other pushed item is
    /// lost. Idempotent; must be called without holding the input or output lock.
    fn finish(&self) -> Outcome {
        let mut outcome = self.outcome.lock();
        if let Some(outcome) = outcome.as_ref() {
            return outcome.clone();
        }
        // Normally every thread has ended already. Otherwise they end once the items they can
        // still deliver have run through, as no queue pushes back any more.
        self.shared.wind_down();
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            if let Err(payload) = thread.handle.join() {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                worker::drop_payload(payload);
                self.shared.fail(Failure {
                    stage: thread.index,
                    instance: thread.instance,
                    stage_desc: self.stages[thread.index].descriptions[thread.instance].clone(),
                    item: None,
                    message: format!("stage thread panicked outside the stage: {message}"),
                    panicked: true,
                    cause: None,
                });
            }
        }
        // What can still come out: the items in order from the next one to pop, up to the
        // first that did not come through. Everything else that was pushed is lost.
        let mut state = self.output.lock();
        let mut next = state.next_seq + state.ready.len() as u64;
        let count = state.queues.len().max(1) as u64;
        while !self.shared.discards(next) {
            let Some(queue) = state.queues.get((next % count) as usize) else {
                break;
            };
            match queue.try_recv() {
                Some(item) if item.seq == next => {
                    state.ready.push_back(item);
                    next += 1;
                }
                Some(item) => {
                    self.shared.discard(item);
                    break;
                }
                None => break,
            }
        }
        for queue in &state.queues {
            while let Some(item) = queue.try_recv() {
                self.shared.discard(item);
            }
        }
        drop(state);
        let pushed = self.shared.input.lock().next_seq;
        let settled = match self.shared.failure() {
            Some(failure) => Outcome::Failed {
                failure,
                lost: (next..pushed).collect(),
            },
            None => {
                debug_assert_eq!(next, pushed, "items vanished without a failure");
                Outcome::Finished
            }
        };
        *outcome = Some(settled.clone());
        tracing::debug!(parent: &self.span, failed = matches!(settled, Outcome::Failed { .. }), "pipeline finished");
        settled
    }

    /// A snapshot of the per-stage counters and queue depths.
    pub fn stats(&self) -> PipelineStats {
        let stages = self
            .stages
            .iter()
            .enumerate()
            .map(|(index, info)| {
                let counters: Vec<&Counters> = info.counters.iter().map(Arc::as_ref).collect();
                let depth = info.queues.iter().map(|q| q.len()).sum();
                StageStats::collect(index, info.descriptions.clone(), &counters, depth)
            })
            .collect();
        PipelineStats {
            stages,
            pushed: self.shared.pushed.load(Ordering::Acquire),
            popped: self.popped.load(Ordering::Relaxed),
            output_queue_depth: self.output_queues.iter().map(|q| q.len()).sum(),
        }
    }
}

impl Drop for Pipeline {
    /// Stops the stages and joins their threads. Items in flight are discarded; a stage run
    /// in progress is waited for, nothing else.
    fn drop(&mut self) {
        self.shared.halt();
        self.output.get_mut().queues.clear();
        for thread in self.threads.get_mut().drain(..) {
            if let Err(payload) = thread.handle.join() {
                tracing::warn!(stage = thread.index, "stage thread panicked");
                worker::drop_payload(payload);
            }
        }
    }
}

/// Iterates over finished items until the pipeline is closed and drained; a failure is
/// yielded once, as the last element.
pub struct Outputs<'a> {
    pipeline: &'a Pipeline,
    done: bool,
}

impl Iterator for Outputs<'_> {
    type Item = Result<Output>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.pipeline.pop() {
            Ok(Some(output)) => Some(Ok(output)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

impl<'a> IntoIterator for &'a Pipeline {
    type Item = Result<Output>;
    type IntoIter = Outputs<'a>;

    fn into_iter(self) -> Outputs<'a> {
        Outputs {
            pipeline: self,
            done: false,
        }
    }
}

/// The output tensors of one item. Dropping it returns its buffers to the pipeline.
///
/// Read a tensor as bytes ([`get`](Self::get)), as its element type
/// ([`get_as`](Self::get_as)), or as real numbers, dequantized if it is quantized
/// ([`get_f32`](Self::get_f32)):
///
/// ```
/// # use multitpu::pipeline::Pipeline;
/// # fn read(pipeline: &Pipeline) -> multitpu::Result<()> {
/// if let Some(output) = pipeline.pop()? {
///     let spec = &output.specs()[0];
///     let real: Vec<f32> = output.get_f32(&spec.name)?; // int8, uint8, int16, int32 or float
///     assert_eq!(real.len(), spec.num_elements());
/// }
/// # Ok(())
/// # }
/// ```
pub struct Output {
    seq: u64,
    frame: Frame,
    layout: Arc<Layout>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("seq", &self.seq)
            .field("tensors", &self.layout.outputs.len())
            .finish_non_exhaustive()
    }
}

impl Output {
    /// Sequence number of the item, as returned by `push`.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Number of output tensors.
    pub fn len(&self) -> usize {
        self.layout.output_slots.len()
    }

    /// Whether there are no output tensors (never the case for a built pipeline).
    pub fn is_empty(&self) -> bool {
        self.layout.output_slots.is_empty()
    }

    /// The specs of the output tensors, in order.
    pub fn specs(&self) -> &[TensorSpec] {
        &self.layout.outputs
    }

    /// Data of output tensor `index` (in the order of [`Pipeline::outputs`]).
    pub fn tensor(&self, index: usize) -> Option<&[u8]> {
        let slot = *self.layout.output_slots.get(index)?;
        self.frame.get(slot).map(|b| &**b)
    }

    /// Data of the output tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let index = self.layout.outputs.iter().position(|s| s.name == name)?;
        self.tensor(index)
    }

    /// Output tensor `index` as elements of `T` (its element type), without copying.
    ///
    /// # Errors
    ///
    /// [`Error::TensorIndex`] if there is no output `index`, [`Error::TensorType`] if `T` is
    /// not its element type.
    pub fn tensor_as<T: Element>(&self, index: usize) -> Result<&[T]> {
        let spec = self.spec(index)?;
        spec.view(&self.frame[self.layout.output_slots[index]])
    }

    /// The output tensor called `name` as elements of `T` (its element type), without
    /// copying; e.g. `output.get_as::<f32>("scores")?`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTensor`] if no output is called `name`, [`Error::TensorType`] if `T`
    /// is not its element type.
    pub fn get_as<T: Element>(&self, name: &str) -> Result<&[T]> {
        self.tensor_as(self.index_of(name)?)
    }

    /// Output tensor `index` as real values: dequantized with its scale and zero point (per
    /// channel where it has several) if it is a quantized integer tensor, copied if it is
    /// `F32`. See [`TensorSpec::to_f32`].
    ///
    /// # Errors
    ///
    /// [`Error::TensorIndex`] if there is no output `index`; [`Error::TensorType`] if it is
    /// neither `F32` nor quantized.
    pub fn tensor_f32(&self, index: usize) -> Result<Vec<f32>> {
        let spec = self.spec(index)?;
        spec.to_f32(&self.frame[self.layout.output_slots[index]])
    }

    /// The output tensor called `name` as real values, as [`tensor_f32`](Self::tensor_f32);
    /// e.g. `output.get_f32("scores")?` for int8 scores.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTensor`] if no output is called `name`; [`Error::TensorType`] if it is
    /// neither `F32` nor quantized.
    pub fn get_f32(&self, name: &str) -> Result<Vec<f32>> {
        self.tensor_f32(self.index_of(name)?)
    }

    fn spec(&self, index: usize) -> Result<&TensorSpec> {
        self.layout.outputs.get(index).ok_or(Error::TensorIndex {
            kind: "pipeline output",
            index,
            count: self.layout.outputs.len(),
        })
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.layout
            .outputs
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| Error::UnknownTensor {
                kind: "pipeline output",
                name: name.to_string(),
            })
    }

    /// Every output tensor with its spec, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&TensorSpec, &[u8])> {
        self.layout
            .outputs
            .iter()
            .zip(self.layout.output_slots.iter())
            .map(|(spec, &slot)| (spec, &*self.frame[slot]))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.shared.pool.put(std::mem::take(&mut self.frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_and_output_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Pipeline>();
        send_sync::<Output>();
        fn send<T: Send>() {}
        send::<PipelineBuilder>();
    }
}
