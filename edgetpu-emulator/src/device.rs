//! An opened emulated device (what a delegate stands for) and the segments it runs.
//!
//! Opening takes the device's lock; options are parsed by name as libedgetpu's are. A
//! segment ([`Segment`]) is the uncompiled subgraph of one `edgetpu-custom-op`, loaded in a
//! TFLite CPU interpreter. Running it computes the outputs on the CPU, then holds them until
//! the device's time has passed since the run started: the cost model's prediction, as the
//! device's options ([`Behaviour`]) change it. The options' faults are played here too.

use std::fs::File;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multitpu::backend::{
    DeviceKind, Interpreter, InterpreterOptions, Performance, Runtime, wait_until,
};
use multitpu::device::{EdgeTpuCostModel, SegmentWorkload};

use crate::devices::{self, Behaviour, Device};
use crate::health;
use crate::payload::Program;

/// Environment variable with the number of CPU threads each segment's TFLite interpreter
/// uses (default 1).
pub const THREADS_ENV: &str = "MULTITPU_EMULATED_EDGETPU_THREADS";

/// libedgetpu's verbosity (`edgetpu_verbosity`): at 1 and above the emulator says on stderr
/// which device it opens and closes, with which options, and when one vanishes; at 2 and
/// above, how long it holds every invoke.
pub static VERBOSITY: AtomicI32 = AtomicI32::new(0);

fn log(level: i32, message: impl FnOnce() -> String) {
    if VERBOSITY.load(Ordering::Relaxed) >= level {
        eprintln!("{}", message());
    }
}

/// The options of `edgetpu_create_delegate`, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `Performance`: the device clock. The cost model's rates are taken to be `Max`'s;
    /// each lower level halves the clock, so compute takes 2×, 4× or 8× as long.
    pub performance: Performance,
    /// `Usb.AlwaysDfu`: accepted (`True`/`False`) and ignored: there is no firmware.
    pub always_dfu: bool,
    /// `Usb.MaxBulkInQueueLength`: accepted (a positive integer) and ignored.
    pub max_bulk_in_queue_length: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            performance: Performance::Max,
            always_dfu: false,
            max_bulk_in_queue_length: None,
        }
    }
}

impl Options {
    /// Parses name/value pairs; an unknown name or a bad value is an error, and the delegate
    /// is not created.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut options = Options::default();
        for (name, value) in pairs {
            let bad = || format!("option {name} = `{value}` is not valid");
            match name.as_str() {
                "Performance" => {
                    options.performance = match value.as_str() {
                        "Low" => Performance::Low,
                        "Medium" => Performance::Medium,
                        "High" => Performance::High,
                        "Max" => Performance::Max,
                        _ => return Err(format!("{} (Low, Medium, High or Max)", bad())),
                    }
                }
                "Usb.AlwaysDfu" => {
                    options.always_dfu = match value.as_str() {
                        "True" | "true" => true,
                        "False" | "false" => false,
                        _ => return Err(format!("{} (True or False)", bad())),
                    }
                }
                "Usb.MaxBulkInQueueLength" => {
                    options.max_bulk_in_queue_length = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|&n: &u32| n > 0)
                            .ok_or_else(bad)?,
                    )
                }
                _ => {
                    return Err(format!(
                        "unknown option `{name}` (known: Performance, Usb.AlwaysDfu, \
                         Usb.MaxBulkInQueueLength)"
                    ));
                }
            }
        }
        Ok(options)
    }

    /// How many times longer compute takes than at `Max`.
    pub fn compute_factor(&self) -> f64 {
        match self.performance {
            Performance::Max => 1.0,
            Performance::High => 2.0,
            Performance::Medium => 4.0,
            Performance::Low => 8.0,
        }
    }
}

/// The device lock of an open device, shared with its segments: the one whose invoke makes
/// the device vanish releases it, so that the device can be opened again when it is back.
type SharedLock = Arc<Mutex<Option<File>>>;

/// An emulated device opened by one delegate: held (locked) until dropped, or until the
/// device vanishes.
#[derive(Debug)]
pub struct OpenDevice {
    device: Device,
    options: Options,
    /// The device's life this delegate opened ([`health`]).
    life: u64,
    /// Segments (kernels) loaded from this device and not yet dropped.
    live_segments: Arc<AtomicUsize>,
    lock: SharedLock,
}

impl OpenDevice {
    /// Opens the device of `kind` at `path` (the first of `kind` when `path` is `None`).
    pub fn open(
        kind: DeviceKind,
        path: Option<&str>,
        options: &[(String, String)],
    ) -> Result<Self, String> {
        let options = Options::parse(options)?;
        let devices = devices::configured()?;
        // Without a path, the first device of `kind` that is there; by its path, a device
        // that has vanished is refused saying so.
        let device = devices
            .into_iter()
            .find(|d| {
                d.kind == kind
                    && match path {
                        Some(p) => d.path() == p,
                        None => health::present(d),
                    }
            })
            .ok_or_else(|| match path {
                Some(path) => format!("no emulated {kind} device at `{path}`"),
                None => format!(
                    "no emulated {kind} device ({} lists the devices)",
                    devices::DEVICES_ENV
                ),
            })?;
        let life = health::life(&device)?;
        let lock = device
            .lock()?
            .ok_or_else(|| format!("{device} is in use by another delegate or process"))?;
        log(1, || {
            format!(
                "{device}: opened with Performance={} (compute takes {}x as long as at Max), \
                 Usb.AlwaysDfu={}, Usb.MaxBulkInQueueLength={:?}",
                options.performance,
                options.compute_factor(),
                options.always_dfu,
                options.max_bulk_in_queue_length
            )
        });
        Ok(OpenDevice {
            device,
            options,
            life,
            live_segments: Arc::new(AtomicUsize::new(0)),
            lock: Arc::new(Mutex::new(Some(lock))),
        })
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// How many segments loaded on this device are still alive (kernels of live
    /// interpreters).
    pub fn live_segments(&self) -> usize {
        self.live_segments.load(Ordering::SeqCst)
    }

    /// Loads the program in an `edgetpu-custom-op`'s custom options.
    pub fn load(&self, custom_options: &[u8]) -> Result<Segment, String> {
        let program = Program::from_custom_options(custom_options)?;
        let device_s = device_time_s(
            &self.device.cost_model(),
            &program.workload()?,
            &self.device.behaviour,
            self.options.compute_factor(),
        );
        let runtime = Runtime::load()
            .map_err(|e| format!("cannot load TFLite to run the segment on the CPU: {e}"))?;
        let threads = match std::env::var(THREADS_ENV) {
            Ok(n) => n
                .parse()
                .ok()
                .filter(|&n: &usize| n >= 1)
                .ok_or_else(|| format!("{THREADS_ENV}: `{n}` is not a thread count"))?,
            Err(_) => 1,
        };
        let interpreter = Interpreter::new(
            &runtime,
            program.segment.to_vec(),
            &InterpreterOptions::default().with_threads(threads),
        )
        .map_err(|e| format!("its segment does not load on the TFLite CPU runtime: {e}"))?;
        Ok(Segment {
            interpreter,
            device_s,
            device: self.device.clone(),
            life: self.life,
            lock: Arc::clone(&self.lock),
            runs: 0,
            cpu_was_slower: false,
            _live: LiveSegment::new(&self.live_segments),
        })
    }
}

impl Drop for OpenDevice {
    fn drop(&mut self) {
        log(1, || format!("{}: closed", self.device));
    }
}

/// Seconds of one invoke of `workload` on a device of `cost_model` with `behaviour`, whose
/// compute takes `compute_factor` × as long as at `Max` (before `slow` and `throttle`, which
/// [`Behaviour::invoke_factor`] adds per invoke):
///
/// ```text
/// invoke_overhead + Σ_kind compute[kind] · factor[kind] · compute_factor + layers + host
///     + link · (stream + transfer)
/// ```
///
/// With the default behaviour at `Max` this is the prediction's `latency_s`, bit for bit:
/// the same terms, summed in the same order.
pub fn device_time_s(
    cost_model: &EdgeTpuCostModel,
    workload: &SegmentWorkload,
    behaviour: &Behaviour,
    compute_factor: f64,
) -> f64 {
    let prediction = cost_model.predict(workload);
    // The prediction's compute_s sums every op's compute without telling kinds apart; each
    // op's part is recomputed here as the cost model computes it (device MACs over its
    // kind's rate, for ops the device runs), in the same order, so that a factor can apply
    // per kind.
    let compute_s: f64 = workload
        .ops
        .iter()
        .filter(|op| op.host_conversion.is_none() && op.device_macs > 0)
        .map(|op| {
            op.device_macs as f64 / cost_model.macs_per_s.get(op.kind)
                * behaviour.kind_factor(op.kind)
        })
        .sum();
    let link = behaviour.link.unwrap_or(1.0);
    cost_model.invoke_overhead_s
        + compute_s * compute_factor
        + prediction.layers_s
        + prediction.host_s
        + link * prediction.stream_s
        + link * prediction.transfer_s
}

/// Counts itself among a device's live segments while it exists.
struct LiveSegment(Arc<AtomicUsize>);

impl LiveSegment {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        LiveSegment(Arc::clone(count))
    }
}

impl Drop for LiveSegment {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The subgraph of one `edgetpu-custom-op`, loaded on an emulated device.
pub struct Segment {
    interpreter: Interpreter,
    /// [`device_time_s`] of the segment.
    device_s: f64,
    device: Device,
    /// The device's life its delegate opened.
    life: u64,
    lock: SharedLock,
    /// Runs so far: the first, which also sets TFLite's kernels up, is not compared.
    runs: u64,
    /// Whether a run took the CPU longer than the prediction (said once on stderr).
    cpu_was_slower: bool,
    _live: LiveSegment,
}

impl Segment {
    /// How long invoke `n` of the device (counted from 1) holds its outputs, from its start:
    /// the cost model's prediction, as the device's options change it.
    pub fn hold(&self, n: u64) -> Result<Duration, String> {
        let hold_s = self.device_s * self.device.behaviour.invoke_factor(n);
        Duration::try_from_secs_f64(hold_s)
            .map_err(|_| format!("{}: a hold of {hold_s} s is not a duration", self.device))
    }

    /// Byte sizes of the inputs, in the custom op's order.
    pub fn input_sizes(&self) -> Vec<usize> {
        self.interpreter
            .inputs()
            .iter()
            .map(|t| t.byte_size)
            .collect()
    }

    /// Byte sizes of the outputs, in the custom op's order.
    pub fn output_sizes(&self) -> Vec<usize> {
        self.interpreter
            .outputs()
            .iter()
            .map(|t| t.byte_size)
            .collect()
    }

    /// Runs the segment on `inputs`, writes `outputs`, and returns once its
    /// [`hold`](Self::hold) has passed since `start`; or fails as the device's options say.
    pub fn run(
        &mut self,
        start: Instant,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
    ) -> Result<(), String> {
        let n = health::count_invoke(&self.device, self.life)?;
        let behaviour = &self.device.behaviour;
        if let Some((after, hang)) = behaviour.hang_after
            && n > after
        {
            std::thread::sleep(hang);
            return Err(format!(
                "{} hung: invoke {n} blocked for {} s, then failed",
                self.device,
                hang.as_secs_f64()
            ));
        }
        if let Some(after) = behaviour.fail_after
            && n > after
        {
            return Err(format!(
                "{} failed: invoke {n} (it fails every invoke after the first {after})",
                self.device
            ));
        }
        let hold = self.hold(n)?;
        log(2, || {
            format!(
                "{}: invoke {n} holds {:.9} s",
                self.device,
                hold.as_secs_f64()
            )
        });
        if behaviour.skip_compute {
            for out in outputs.iter_mut() {
                out.fill(0);
            }
        } else {
            self.compute(inputs, outputs)?;
            let took = start.elapsed();
            self.runs += 1;
            if took > hold && self.runs > 1 && !self.cpu_was_slower {
                self.cpu_was_slower = true;
                eprintln!(
                    "{}: the CPU took {:.3} ms for a segment predicted to take {:.3} ms on \
                     the device; such runs last the CPU's time, not the device's",
                    self.device,
                    took.as_secs_f64() * 1e3,
                    hold.as_secs_f64() * 1e3
                );
            }
        }
        wait_until(start + hold);
        if self.device.behaviour.vanish_after == Some(n) {
            health::vanish(&self.device);
            // Gone with the device: it can be opened again when it is back.
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
            log(1, || format!("{}: vanished after invoke {n}", self.device));
        }
        Ok(())
    }

    /// Runs the segment on the CPU.
    fn compute(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<(), String> {
        for (index, data) in inputs.iter().enumerate() {
            self.interpreter
                .set_input(index, data)
                .map_err(|e| e.to_string())?;
        }
        self.interpreter.invoke().map_err(|e| e.to_string())?;
        for (index, out) in outputs.iter_mut().enumerate() {
            self.interpreter
                .copy_output(index, out)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn time(model: &multitpu::model::Model<'_>, entry: &str, compute_factor: f64) -> f64 {
        let device = &devices::parse(entry).unwrap()[0];
        let workload = SegmentWorkload::from_model(model, 0..model.operators.len());
        device_time_s(
            &device.cost_model(),
            &workload,
            &device.behaviour,
            compute_factor,
        )
    }

    #[test]
    fn device_time_is_the_prediction_as_the_options_change_it() {
        let cm = EdgeTpuCostModel::usb_default();
        // Convolutions and a dense layer; fc N = 2000 streams parameters.
        for model in [
            multitpu::model::paper::conv(32).unwrap(),
            multitpu::model::paper::fc(2000).unwrap(),
        ] {
            let workload = SegmentWorkload::from_model(&model, 0..model.operators.len());
            let p = cm.predict(&workload);
            let by_kind = |kind| -> f64 {
                workload
                    .ops
                    .iter()
                    .filter(|op| op.kind == kind && op.host_conversion.is_none())
                    .map(|op| op.device_macs as f64 / cm.macs_per_s.get(kind))
                    .sum()
            };
            let (conv, fc) = (
                by_kind(multitpu::model::figures::OpKind::Conv2d),
                by_kind(multitpu::model::figures::OpKind::FullyConnected),
            );
            assert!(conv + fc > 0.0);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.max(1e-3);
            assert_eq!(time(&model, "usb", 1.0), p.latency_s);
            assert_eq!(
                time(&model, "usb@slow=2@throttle=1:3@fail-after=1", 1.0),
                p.latency_s
            );
            assert!(close(
                time(&model, "usb@conv=1.5", 1.0),
                p.latency_s + 0.5 * conv
            ));
            assert!(close(time(&model, "usb@fc=3", 1.0), p.latency_s + 2.0 * fc));
            assert!(close(
                time(&model, "usb@link=2", 1.0),
                p.latency_s + p.stream_s + p.transfer_s
            ));
            assert!(close(
                time(&model, "usb", 4.0),
                p.latency_s + 3.0 * p.compute_s
            ));
            assert!(close(conv + fc, p.compute_s));
        }
    }

    #[test]
    fn options_by_name() {
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
        let o = Options::parse(&pairs(&[
            ("Performance", "Low"),
            ("Usb.AlwaysDfu", "True"),
            ("Usb.MaxBulkInQueueLength", "32"),
        ]))
        .unwrap();
        assert_eq!(o.performance, Performance::Low);
        assert!(o.always_dfu);
        assert_eq!(o.max_bulk_in_queue_length, Some(32));
        assert_eq!(o.compute_factor(), 8.0);
        for bad in [
            ("Performance", "Turbo"),
            ("Usb.AlwaysDfu", "1"),
            ("Usb.MaxBulkInQueueLength", "0"),
            ("Clock", "Max"),
        ] {
            let err = Options::parse(&pairs(&[bad])).unwrap_err();
            assert!(err.contains(bad.0), "{err}");
        }
    }
}
