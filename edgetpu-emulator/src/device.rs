//! An opened emulated device (what a delegate stands for) and the segments it runs.
//!
//! Opening takes the device's lock; options are parsed by name as libedgetpu's are. A
//! segment ([`Segment`]) is the uncompiled subgraph of one `edgetpu-custom-op`, loaded in a
//! TFLite CPU interpreter. Running it computes the outputs on the CPU, then holds them until
//! the cost model's prediction for the device has passed since the run started.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use multitpu::backend::{
    DeviceKind, Interpreter, InterpreterOptions, Performance, Runtime, wait_until,
};

use crate::devices::{self, Device};
use crate::payload::Program;

/// Environment variable with the number of CPU threads each segment's TFLite interpreter
/// uses (default 1).
pub const THREADS_ENV: &str = "MULTITPU_EMULATED_EDGETPU_THREADS";

/// libedgetpu's verbosity (`edgetpu_verbosity`): at 1 and above the emulator says on stderr
/// which device it opens and closes, with which options.
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

/// An emulated device opened by one delegate: held (locked) until dropped.
#[derive(Debug)]
pub struct OpenDevice {
    device: Device,
    options: Options,
    /// Segments (kernels) loaded from this device and not yet dropped.
    live_segments: Arc<AtomicUsize>,
    _lock: File,
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
        let device = devices
            .into_iter()
            .find(|d| d.kind == kind && path.is_none_or(|p| d.path() == p))
            .ok_or_else(|| match path {
                Some(path) => format!("no emulated {kind} device at `{path}`"),
                None => format!(
                    "no emulated {kind} device ({} lists the devices)",
                    devices::DEVICES_ENV
                ),
            })?;
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
            live_segments: Arc::new(AtomicUsize::new(0)),
            _lock: lock,
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
        let prediction = self.device.cost_model().predict(&program.workload()?);
        let hold_s =
            prediction.latency_s + prediction.compute_s * (self.options.compute_factor() - 1.0);
        let hold = Duration::try_from_secs_f64(hold_s)
            .map_err(|_| format!("the predicted latency {hold_s} s is not a duration"))?;
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
            hold,
            device: self.device.clone(),
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
    hold: Duration,
    device: Device,
    /// Runs so far: the first, which also sets TFLite's kernels up, is not compared.
    runs: u64,
    /// Whether a run took the CPU longer than the prediction (said once on stderr).
    cpu_was_slower: bool,
    _live: LiveSegment,
}

impl Segment {
    /// How long a run holds its outputs, from its start: the cost model's prediction.
    pub fn hold(&self) -> Duration {
        self.hold
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

    /// Runs the segment on `inputs`, writes `outputs`, and returns once [`hold`](Self::hold)
    /// has passed since `start`.
    pub fn run(
        &mut self,
        start: Instant,
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
    ) -> Result<(), String> {
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
        let took = start.elapsed();
        self.runs += 1;
        if took > self.hold && self.runs > 1 && !self.cpu_was_slower {
            self.cpu_was_slower = true;
            eprintln!(
                "{}: the CPU took {:.3} ms for a segment predicted to take {:.3} ms on the \
                 device; such runs last the CPU's time, not the device's",
                self.device,
                took.as_secs_f64() * 1e3,
                self.hold.as_secs_f64() * 1e3
            );
        }
        wait_until(start + self.hold);
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
