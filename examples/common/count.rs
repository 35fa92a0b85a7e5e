//! `--segments N` and `--devices N`, as the examples that plan read them.

use clap::error::ErrorKind;
use multitpu::profile::Profiler;
use multitpu::segment::{LatencyFloor, Profiled, Segmenter};

/// What `--segments` or `--devices` asks of the planner.
#[derive(Clone, Copy)]
pub enum Count {
    /// Exactly this many segments (`profiled`: Edge TPU segments, one per device).
    Segments(usize),
    /// At most this many Edge TPUs (`profiled` only).
    Devices(usize),
}

impl Count {
    /// The count `--segments` and `--devices` give for `strategy`, or the usage error (its
    /// kind and message) unless exactly one is given and the strategy takes it.
    pub fn from_options(
        segments: Option<usize>,
        devices: Option<usize>,
        strategy: &str,
    ) -> Result<Count, (ErrorKind, String)> {
        match (segments, devices) {
            (Some(_), Some(_)) => Err((
                ErrorKind::ArgumentConflict,
                "--segments N asks for exactly N segments, --devices N for at most N devices: \
                 give one"
                    .to_string(),
            )),
            (None, None) => Err((
                ErrorKind::MissingRequiredArgument,
                "give --segments N (exactly N segments) or --devices N (profiled: a budget of \
                 at most N Edge TPUs)"
                    .to_string(),
            )),
            (Some(n), None) => Ok(Count::Segments(n)),
            (None, Some(_)) if strategy != "profiled" => Err((
                ErrorKind::ArgumentConflict,
                format!(
                    "--devices N is a budget of at most N devices, which only the profiled \
                     strategy plans for; {strategy} cuts exactly --segments N segments"
                ),
            )),
            (None, Some(n)) => Ok(Count::Devices(n)),
        }
    }

    /// N, what the planner is given.
    pub fn n(self) -> usize {
        match self {
            Count::Segments(n) | Count::Devices(n) => n,
        }
    }
}

/// `profiled` as `count` asks: exactly one segment per device, or a budget of devices.
pub fn profiled<P, F>(profiled: Profiled<P, F>, count: Count) -> Box<dyn Segmenter>
where
    P: Profiler + 'static,
    F: LatencyFloor + 'static,
{
    match count {
        Count::Segments(_) => Box::new(profiled.with_exact_devices()),
        Count::Devices(_) => Box::new(profiled),
    }
}
