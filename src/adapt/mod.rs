//! Pipelines that survive losing a device.
//!
//! An [`AdaptivePipeline`] owns the model, a planner and the devices of a backend, and runs a
//! [`Pipeline`] of the plan for the devices it still has. When a stage fails on a device
//! (its delegate returns an error, the device disappears, it fails after hanging), the device
//! is taken out, the model is planned again for the devices left (on the host CPU when none
//! is), the new segments are compiled when the devices need it, and every item that was in
//! flight runs again on the new pipeline: no item is lost, duplicated or reordered, and
//! [`pop`](AdaptivePipeline::pop) keeps returning items in push order. A device that comes
//! back is taken in again with [`take_device`](AdaptivePipeline::take_device). Every change
//! is a [`Replan`] in [`replans`](AdaptivePipeline::replans) and a `tracing` event.
//!
//! To run items again it keeps a copy of each item's inputs until the item is popped: one
//! allocation per push, which a plain [`Pipeline`] does not make. Push and pop take
//! `&mut self`, from one thread.
//!
//! Recovery is bounded: each failure takes a device out, so a model that fails on every
//! device ends on the CPU, and a failure there (or a failure to plan, compile or prepare) is
//! the pipeline's error, with the usual accounting (items popped + lost = pushed).
//!
//! Not yet: replanning from measured stage latencies, and deadlines for devices that stop
//! answering without failing.
//!
//! ```
//! use std::sync::Arc;
//!
//! use multitpu::adapt::{AdaptivePipeline, Devices};
//! use multitpu::backend::{SimCompute, SimulatedEdgeTpuBackend};
//! use multitpu::device::EdgeTpuCostModel;
//! use multitpu::model::paper;
//! use multitpu::segment::Profiled;
//!
//! # fn main() -> multitpu::Result<()> {
//! let model = paper::fc(1000)?.to_bytes()?;
//! let cost_model = EdgeTpuCostModel::usb_default();
//! let devices = Devices {
//!     backend: Arc::new(SimulatedEdgeTpuBackend::new(cost_model.clone(), SimCompute::Skip)),
//!     indices: vec![0, 1, 2],
//!     compiler: None, // real Edge TPUs: Some(EdgeTpuCompiler::find()?)
//! };
//! let planner = Profiled::cost_model(cost_model).with_exact_devices();
//! let mut pipeline = AdaptivePipeline::new(model, Box::new(planner), devices)?;
//! let input = pipeline.pipeline()?.inputs()[0].clone();
//! pipeline.push(&[(&input.name, &vec![0; input.byte_size])])?;
//! let first = pipeline.pop()?.expect("the item pushed");
//! assert_eq!(first.seq, 0);
//! assert!(pipeline.replans().is_empty(), "no device failed");
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use crate::backend::{Backend, Stage};
use crate::deploy::{EdgeTpuCompiler, SegmentKind, SegmentModels};
use crate::model::{Graph, Model};
use crate::pipeline::{Output, Pipeline};
use crate::segment::{Plan, Segmenter};
use crate::{Error, Result};

/// Where plans run: a backend, the indices of its devices, and the compiler its devices need
/// (`None` for backends that take uncompiled segments: the CPU and simulated ones).
pub struct Devices {
    /// The backend whose devices the pipelines use.
    pub backend: Arc<dyn Backend>,
    /// The device indices of `backend` to use, in order.
    pub indices: Vec<usize>,
    /// Compiles Edge TPU segments before they are prepared, when set.
    pub compiler: Option<EdgeTpuCompiler>,
}

/// Why a pipeline was replanned.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplanReason {
    /// A stage failed on `device` (a backend device index) with `message`.
    DeviceLost {
        /// The device taken out.
        device: usize,
        /// What the stage reported.
        message: String,
    },
    /// `device` was taken in again.
    DeviceAdded {
        /// The device taken in.
        device: usize,
    },
}

/// One change of plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Replan {
    /// Why.
    pub reason: ReplanReason,
    /// Items pushed when it happened.
    pub pushed: u64,
    /// Devices the old and the new plan use.
    pub devices: (usize, usize),
    /// Predicted bottlenecks of the old and the new plan, when the planner predicts.
    pub bottleneck_s: (Option<f64>, Option<f64>),
    /// Items that were in flight and run again on the new plan.
    pub rerun: usize,
}

/// An item pushed and not yet popped: its inputs, to run it again after a failure.
struct Pending {
    seq: u64,
    inputs: Vec<(String, Vec<u8>)>,
}

/// A finished item: its tensors, in the pipeline's output order, and its sequence number.
#[derive(Debug)]
pub struct AdaptiveOutput {
    /// The item's sequence number (0 for the first item pushed), across every plan.
    pub seq: u64,
    /// The output of the pipeline that ran it last.
    pub output: Output,
}

/// The backend device under each instance of each stage (`None` for a CPU stage).
type StageDevices = Vec<Vec<Option<usize>>>;

/// A pipeline that replans for the devices it has left when one fails (module docs).
pub struct AdaptivePipeline {
    model: Arc<[u8]>,
    planner: Box<dyn Segmenter + Send + Sync>,
    devices: Devices,
    /// Positions in `devices.indices` of the devices still in use.
    live: Vec<usize>,
    /// `None` once a failure could not be recovered from.
    current: Option<Pipeline>,
    /// The sequence number of the first item the current pipeline was given.
    offset: u64,
    plan: Plan,
    /// The backend device under each instance of each stage of `current` (`None` on the CPU).
    device_of: StageDevices,
    /// Pushed and not popped, in push order; `ready` holds the first of them finished.
    in_flight: VecDeque<Pending>,
    ready: VecDeque<Output>,
    next_seq: u64,
    closed: bool,
    replans: Vec<Replan>,
    /// The failure that stopped the pipeline, repeated by every call after it.
    stopped: Option<Stopped>,
}

/// What [`Error::StageFailed`] says, kept to be said again.
#[derive(Clone)]
struct Stopped {
    stage: usize,
    instance: usize,
    stage_desc: String,
    item: Option<u64>,
    message: String,
    panicked: bool,
    cause: Option<Arc<Error>>,
    lost: Vec<u64>,
}

impl Stopped {
    fn error(self) -> Error {
        Error::StageFailed {
            stage: self.stage,
            instance: self.instance,
            stage_desc: self.stage_desc,
            item: self.item,
            message: self.message,
            panicked: self.panicked,
            cause: self.cause,
            lost: self.lost,
        }
    }
}

impl AdaptivePipeline {
    /// Plans `model` with `planner` for every device of `devices` and starts its pipeline.
    ///
    /// # Errors
    ///
    /// The model's, the planner's, the compiler's and the backend's errors.
    pub fn new(
        model: impl Into<Arc<[u8]>>,
        planner: Box<dyn Segmenter + Send + Sync>,
        devices: Devices,
    ) -> Result<Self> {
        let model = model.into();
        let live: Vec<usize> = (0..devices.indices.len()).collect();
        let (plan, current, device_of) = start(&model, &*planner, &devices, &live)?;
        Ok(AdaptivePipeline {
            model,
            planner,
            devices,
            live,
            current: Some(current),
            offset: 0,
            plan,
            device_of,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            next_seq: 0,
            closed: false,
            replans: Vec::new(),
            stopped: None,
        })
    }

    /// The pipeline now running (its inputs, outputs and stage statistics).
    ///
    /// # Errors
    ///
    /// The [`Error::StageFailed`] that stopped it, after a failure it could not recover
    /// from (or [`Error::Invalid`] when what stopped it was starting a new plan).
    pub fn pipeline(&self) -> Result<&Pipeline> {
        match (&self.current, &self.stopped) {
            (Some(pipeline), _) => Ok(pipeline),
            (None, Some(stopped)) => Err(stopped.clone().error()),
            (None, None) => Err(Error::invalid(
                "adaptive pipeline",
                "it stopped when no plan could be started",
            )),
        }
    }

    /// The plan now running.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The backend device indices now in use.
    pub fn devices(&self) -> Vec<usize> {
        self.live.iter().map(|&i| self.devices.indices[i]).collect()
    }

    /// Every change of plan so far, oldest first.
    pub fn replans(&self) -> &[Replan] {
        &self.replans
    }

    /// Pushes one item (as [`Pipeline::push`]) and returns its sequence number. A device
    /// failure met on the way is recovered from first.
    ///
    /// # Errors
    ///
    /// Those of [`Pipeline::push`] for the caller's mistakes; an unrecoverable failure.
    pub fn push(&mut self, inputs: &[(&str, &[u8])]) -> Result<u64> {
        loop {
            match self.pipeline()?.push(inputs) {
                Ok(_) => break,
                Err(error @ Error::StageFailed { .. }) => self.recover(error)?,
                Err(error) => return Err(error),
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push_back(Pending {
            seq,
            inputs: inputs
                .iter()
                .map(|(name, data)| ((*name).to_owned(), data.to_vec()))
                .collect(),
        });
        Ok(seq)
    }

    /// The next item in push order, `None` once [`close`](Self::close)d and drained. A
    /// device failure is recovered from, and the items it cost run again.
    ///
    /// # Errors
    ///
    /// An unrecoverable failure ([`Error::StageFailed`] listing the lost items by their
    /// sequence numbers here), or an error planning or starting the replacement.
    pub fn pop(&mut self) -> Result<Option<AdaptiveOutput>> {
        loop {
            if let Some(output) = self.ready.pop_front() {
                return Ok(Some(self.delivered(output)));
            }
            match self.pipeline()?.pop() {
                Ok(Some(output)) => return Ok(Some(self.delivered(output))),
                Ok(None) => return Ok(None),
                Err(error @ Error::StageFailed { .. }) => self.recover(error)?,
                Err(error) => return Err(error),
            }
        }
    }

    /// Closes the pipeline to new items; those pushed still come out of
    /// [`pop`](Self::pop).
    ///
    /// # Errors
    ///
    /// As [`Pipeline::close`], after recovering from a failure met on the way.
    pub fn close(&mut self) -> Result<()> {
        self.closed = true;
        loop {
            match self.pipeline()?.close() {
                Ok(()) => return Ok(()),
                Err(error @ Error::StageFailed { .. }) => self.recover(error)?,
                Err(error) => return Err(error),
            }
        }
    }

    /// Takes `device` (an index of the backend among [`Devices::indices`]) in again, and
    /// moves to a plan for the devices then in use: the items in flight finish on the old
    /// plan first.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a device not among [`Devices::indices`] or in use; the
    /// errors of planning and starting the new pipeline.
    pub fn take_device(&mut self, device: usize) -> Result<()> {
        let position = self
            .devices
            .indices
            .iter()
            .position(|&d| d == device)
            .filter(|p| !self.live.contains(p))
            .ok_or_else(|| {
                Error::invalid(
                    "adaptive pipeline",
                    format!("device {device} is not one of its devices out of use"),
                )
            })?;
        // The old pipeline finishes what it has, so that its devices are free again.
        let pipeline = self.pipeline()?;
        pipeline.close()?;
        let mut finished = Vec::new();
        while let Some(output) = pipeline.pop()? {
            finished.push(output);
        }
        self.ready.extend(finished);
        let mut live = self.live.clone();
        live.push(position);
        live.sort_unstable();
        self.replace(live, ReplanReason::DeviceAdded { device })
    }

    /// Output `output` of the item at the front, which leaves the in-flight list.
    fn delivered(&mut self, output: Output) -> AdaptiveOutput {
        let pending = self
            .in_flight
            .pop_front()
            .expect("every output is of an item pushed and not popped");
        AdaptiveOutput {
            seq: pending.seq,
            output,
        }
    }

    /// Takes out the device `failure` happened on, and runs what was lost on a new plan.
    fn recover(&mut self, failure: Error) -> Result<()> {
        let Error::StageFailed {
            stage,
            instance,
            ref message,
            ..
        } = failure
        else {
            return Err(failure);
        };
        // The items before the failed one still come out of the old pipeline.
        let pipeline = self.pipeline()?;
        let mut finished = Vec::new();
        loop {
            match pipeline.pop() {
                Ok(Some(output)) => finished.push(output),
                Ok(None) | Err(Error::StageFailed { .. }) => break,
                Err(other) => return Err(other),
            }
        }
        self.ready.extend(finished);
        let device = self
            .device_of
            .get(stage)
            .and_then(|instances| instances.get(instance))
            .copied()
            .flatten();
        let Some(device) = device else {
            // A CPU stage failed: no device to do without.
            return Err(self.lost(failure));
        };
        let position = self
            .devices
            .indices
            .iter()
            .position(|&d| d == device)
            .expect("a device of the pipeline is one of its devices");
        let live: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&p| p != position)
            .collect();
        tracing::warn!(device, message = %message, devices_left = live.len(), "device lost: replanning");
        let reason = ReplanReason::DeviceLost {
            device,
            message: message.clone(),
        };
        match self.replace(live, reason) {
            Ok(()) => Ok(()),
            // A later failure, recovered from or accounted for already.
            Err(error @ Error::StageFailed { .. }) => Err(error),
            Err(error) => {
                tracing::error!(%error, "no plan could replace the failed one");
                Err(self.lost(failure))
            }
        }
    }

    /// Moves to a plan for the devices at positions `live`, and pushes into it every item
    /// in flight that has not finished.
    fn replace(&mut self, live: Vec<usize>, reason: ReplanReason) -> Result<()> {
        // The old stages hold their devices until dropped.
        drop(self.current.take());
        let (plan, pipeline, device_of) = start(&self.model, &*self.planner, &self.devices, &live)?;
        let unfinished = self.in_flight.iter().skip(self.ready.len());
        let rerun = unfinished.len();
        let rerun_from = unfinished.map(|p| p.seq).next().unwrap_or(self.next_seq);
        let replan = Replan {
            reason,
            pushed: self.next_seq,
            devices: (self.plan.devices(), plan.devices()),
            bottleneck_s: (self.plan.bottleneck_s(), plan.bottleneck_s()),
            rerun,
        };
        tracing::info!(?replan, "replanned");
        self.replans.push(replan);
        self.live = live;
        self.offset = rerun_from;
        self.plan = plan;
        self.current = Some(pipeline);
        self.device_of = device_of;
        self.resubmit()
    }

    /// Pushes every unfinished item in flight into the new pipeline (and closes it if the
    /// caller had closed the old one); a failure on the way is recovered from in turn.
    fn resubmit(&mut self) -> Result<()> {
        let pipeline = self.pipeline()?;
        let mut failed = None;
        for pending in self.in_flight.iter().skip(self.ready.len()) {
            let inputs: Vec<(&str, &[u8])> = pending
                .inputs
                .iter()
                .map(|(name, data)| (name.as_str(), data.as_slice()))
                .collect();
            if let Err(error) = pipeline.push(&inputs) {
                failed = Some(error);
                break;
            }
        }
        if failed.is_none() && self.closed {
            failed = pipeline.close().err();
        }
        match failed {
            None => Ok(()),
            Some(error @ Error::StageFailed { .. }) => self.recover(error),
            Some(other) => Err(other),
        }
    }

    /// Stops at `failure`, naming the lost items by their sequence numbers here (every item
    /// in flight that has not finished), and returns it.
    fn lost(&mut self, failure: Error) -> Error {
        let Error::StageFailed {
            stage,
            instance,
            stage_desc,
            item,
            message,
            panicked,
            cause,
            ..
        } = failure
        else {
            return failure;
        };
        let stopped = Stopped {
            stage,
            instance,
            stage_desc,
            item: item.map(|i| self.offset + i),
            message,
            panicked,
            cause,
            lost: self
                .in_flight
                .iter()
                .skip(self.ready.len())
                .map(|p| p.seq)
                .collect(),
        };
        self.current = None;
        self.stopped = Some(stopped.clone());
        stopped.error()
    }
}

/// The plan of `model` for the devices at positions `live` of `devices`, its pipeline, and
/// the backend device under each stage instance.
fn start(
    model: &[u8],
    planner: &dyn Segmenter,
    devices: &Devices,
    live: &[usize],
) -> Result<(Plan, Pipeline, StageDevices)> {
    let parsed = Model::from_bytes(model)?;
    let graph = Graph::new(&parsed)?;
    let plan = if live.is_empty() {
        on_the_cpu(&graph)?
    } else {
        planner.plan(&graph, live.len())?
    };
    let mut segments = plan.segment_models(&graph)?;
    if let Some(compiler) = &devices.compiler {
        segments = segments.compile(compiler)?;
    }
    let indices: Vec<usize> = live.iter().map(|&p| devices.indices[p]).collect();
    let device_of = stage_devices(&segments, &indices);
    let backend = Remapped {
        inner: Arc::clone(&devices.backend),
        indices,
    };
    let pipeline = Pipeline::from_models(&segments, &backend)?;
    Ok((plan, pipeline, device_of))
}

/// The whole model as one CPU segment: where a pipeline goes when no device is left.
fn on_the_cpu(graph: &Graph<'_, '_>) -> Result<Plan> {
    let mut plan = Plan::from_cuts("cpu-fallback", graph, &[])?;
    for segment in &mut plan.segments {
        segment.kind = SegmentKind::Cpu;
        segment.cpu_ops = segment.ops.clone();
        segment.replicas = 1;
    }
    Ok(plan)
}

/// The backend device each stage instance of a pipeline of `segments` takes: Edge TPU
/// segments take `indices` in order, one per replica, as [`Pipeline::from_models`] gives them.
fn stage_devices(segments: &SegmentModels, indices: &[usize]) -> StageDevices {
    let mut next = indices.iter().copied();
    segments
        .segments()
        .iter()
        .map(|segment| match segment.kind() {
            SegmentKind::Cpu => vec![None],
            SegmentKind::EdgeTpu => (0..segment.replicas()).map(|_| next.next()).collect(),
        })
        .collect()
}

/// A backend whose device `i` is device `indices[i]` of `inner`.
struct Remapped {
    inner: Arc<dyn Backend>,
    indices: Vec<usize>,
}

impl Remapped {
    fn device(&self, index: usize) -> Result<usize> {
        self.indices
            .get(index)
            .copied()
            .ok_or_else(|| Error::NoDevice {
                selector: format!(":{index}"),
                needed: index + 1,
                available: self.indices.len(),
            })
    }
}

impl Backend for Remapped {
    fn prepare(&self, segment_model: Arc<[u8]>, device_index: usize) -> Result<Box<dyn Stage>> {
        self.inner
            .prepare(segment_model, self.device(device_index)?)
    }

    fn name(&self) -> String {
        self.inner.name()
    }

    fn prepare_cpu(&self, segment_model: Arc<[u8]>) -> Result<Box<dyn Stage>> {
        self.inner.prepare_cpu(segment_model)
    }

    fn prepare_replicas(
        &self,
        segment_model: Arc<[u8]>,
        devices: &[usize],
    ) -> Result<Vec<Box<dyn Stage>>> {
        let devices = devices
            .iter()
            .map(|&d| self.device(d))
            .collect::<Result<Vec<_>>>()?;
        self.inner.prepare_replicas(segment_model, &devices)
    }
}
