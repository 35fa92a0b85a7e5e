//! The emulated devices: which exist (from [`DEVICES_ENV`]), how each departs from the
//! cost model or fails ([`Behaviour`]), their names, and the lock that lets one process at a
//! time open each, as with real Edge TPUs.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use multitpu::backend::DeviceKind;
use multitpu::device::{EdgeTpuCostModel, Link};
use multitpu::model::figures::OpKind;

use crate::ffi;

/// Environment variable listing the emulated devices: comma-separated `usb:N` and `pci:N`
/// entries, e.g. `usb:2,pci:1` (two USB devices, then one PCIe device). An entry may go on
/// with options, each after an `@`, that apply to every device of the entry
/// ([`Behaviour`]): `usb:2,usb:1@slow=2,pci:1@fail-after=100@compute=skip`. An empty value
/// means no devices. It is read again at every `edgetpu_list_devices` and
/// `edgetpu_create_delegate`.
pub const DEVICES_ENV: &str = "MULTITPU_EMULATED_EDGETPUS";

/// The devices when [`DEVICES_ENV`] is not set: four USB Edge TPUs, the paper's setup.
pub const DEFAULT_DEVICES: &str = "usb:4";

/// Environment variable naming the directory of the device lock files (default: the
/// system's temporary directory, `multitpu-emulated-edgetpu` in it).
pub const LOCK_DIR_ENV: &str = "MULTITPU_EMULATED_EDGETPU_LOCKS";

/// How long a device must stay locked by someone else to count as in use.
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// The hang of `hang-after` when its entry gives no duration: long enough to look like a
/// hung device to a pipeline, short enough for a test process to end.
pub const DEFAULT_HANG: Duration = Duration::from_secs(30);

/// How a device departs from the cost model and how it fails: the `@` options of its entry
/// in [`DEVICES_ENV`]. `None` (or `false`) is the default: the cost model's timing, no
/// fault.
///
/// Invokes are counted per device per process: every invoke of an `edgetpu-custom-op` on
/// the device in this process, whichever delegate opened it, counts, failed ones included,
/// from 1. A device that vanishes and comes back counts from 0 again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behaviour {
    /// `slow=F`: every invoke's device time × F.
    pub slow: Option<f64>,
    /// `conv=F`: the compute time of `CONV_2D` × F.
    pub conv: Option<f64>,
    /// `depthwise=F`: the compute time of `DEPTHWISE_CONV_2D` × F.
    pub depthwise: Option<f64>,
    /// `fc=F`: the compute time of `FULLY_CONNECTED` × F.
    pub fc: Option<f64>,
    /// `transpose-conv=F`: the compute time of `TRANSPOSE_CONV` × F.
    pub transpose_conv: Option<f64>,
    /// `link=F`: the time of everything crossing the link (inputs, outputs and streamed
    /// parameters) × F.
    pub link: Option<f64>,
    /// `throttle=N:F`: invokes after the N-th take F × as long.
    pub throttle: Option<(u64, f64)>,
    /// `fail-after=N`: invokes after the N-th fail.
    pub fail_after: Option<u64>,
    /// `vanish-after=N` (N ≥ 1): after the N-th invoke the device is gone from this process.
    pub vanish_after: Option<u64>,
    /// `back-after=S`: a vanished device is back S seconds after it went.
    pub back_after: Option<Duration>,
    /// `hang-after=N[:S]`: invokes after the N-th block for S seconds (default
    /// [`DEFAULT_HANG`]), then fail.
    pub hang_after: Option<(u64, Duration)>,
    /// `compute=skip`: invokes do not run the segment on the CPU and write zeroed outputs
    /// (`compute=run`, the default, runs it).
    pub skip_compute: bool,
}

impl Behaviour {
    /// The factor of the compute time of operators of `kind` (1 for kinds without one).
    pub fn kind_factor(&self, kind: OpKind) -> f64 {
        match kind {
            OpKind::Conv2d => self.conv,
            OpKind::DepthwiseConv2d => self.depthwise,
            OpKind::FullyConnected => self.fc,
            OpKind::TransposeConv => self.transpose_conv,
            OpKind::Elementwise | OpKind::Other => None,
        }
        .unwrap_or(1.0)
    }

    /// The factor of invoke `n` (counted from 1): `slow`, times `throttle`'s once past it.
    pub fn invoke_factor(&self, n: u64) -> f64 {
        let throttle = match self.throttle {
            Some((after, factor)) if n > after => factor,
            _ => 1.0,
        };
        self.slow.unwrap_or(1.0) * throttle
    }

    /// Whether this is the default: the cost model's timing, no fault, compute run.
    pub fn is_default(&self) -> bool {
        *self == Behaviour::default()
    }

    /// Sets option `name` to `value`; an error says what is wrong, without the entry.
    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let factor = |v: &str| -> Result<f64, String> {
            v.parse()
                .ok()
                .filter(|f: &f64| f.is_finite() && *f > 0.0)
                .ok_or_else(|| format!("`{v}` is not a positive factor"))
        };
        let count = |v: &str| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("`{v}` is not a count of invokes"))
        };
        let seconds = |v: &str| -> Result<Duration, String> {
            v.parse()
                .ok()
                .and_then(|s: f64| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("`{v}` is not a number of seconds"))
        };
        match name {
            "slow" => self.slow = Some(factor(value)?),
            "conv" => self.conv = Some(factor(value)?),
            "depthwise" => self.depthwise = Some(factor(value)?),
            "fc" => self.fc = Some(factor(value)?),
            "transpose-conv" => self.transpose_conv = Some(factor(value)?),
            "link" => self.link = Some(factor(value)?),
            "throttle" => {
                let (after, by) = value
                    .split_once(':')
                    .ok_or_else(|| format!("`{value}` is not N:F"))?;
                self.throttle = Some((count(after)?, factor(by)?));
            }
            "fail-after" => self.fail_after = Some(count(value)?),
            "vanish-after" => match count(value)? {
                0 => return Err("vanish-after must be at least 1".to_owned()),
                n => self.vanish_after = Some(n),
            },
            "back-after" => self.back_after = Some(seconds(value)?),
            "hang-after" => {
                self.hang_after = Some(match value.split_once(':') {
                    Some((after, hang)) => (count(after)?, seconds(hang)?),
                    None => (count(value)?, DEFAULT_HANG),
                });
            }
            "compute" => {
                self.skip_compute = match value {
                    "skip" => true,
                    "run" => false,
                    _ => return Err(format!("`{value}` is not `skip` or `run`")),
                }
            }
            _ => {
                return Err(format!(
                    "`{name}` is not an option (slow, conv, depthwise, fc, transpose-conv, \
                     link, throttle, fail-after, vanish-after, back-after, hang-after, compute)"
                ));
            }
        }
        Ok(())
    }
}

/// The options in [`DEVICES_ENV`]'s syntax, comma-separated, in a fixed order: e.g.
/// `slow=2, hang-after=3:30` (empty for the default).
impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let factors = [
            ("slow", self.slow),
            ("conv", self.conv),
            ("depthwise", self.depthwise),
            ("fc", self.fc),
            ("transpose-conv", self.transpose_conv),
            ("link", self.link),
        ];
        for (name, factor) in factors {
            if let Some(factor) = factor {
                parts.push(format!("{name}={factor}"));
            }
        }
        if let Some((after, factor)) = self.throttle {
            parts.push(format!("throttle={after}:{factor}"));
        }
        if let Some(after) = self.fail_after {
            parts.push(format!("fail-after={after}"));
        }
        if let Some(after) = self.vanish_after {
            parts.push(format!("vanish-after={after}"));
        }
        if let Some(back) = self.back_after {
            parts.push(format!("back-after={}", back.as_secs_f64()));
        }
        if let Some((after, hang)) = self.hang_after {
            parts.push(format!("hang-after={after}:{}", hang.as_secs_f64()));
        }
        if self.skip_compute {
            parts.push("compute=skip".to_owned());
        }
        f.write_str(&parts.join(", "))
    }
}

/// One emulated Edge TPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Bus type.
    pub kind: DeviceKind,
    /// Position among the devices of its kind, from 0.
    pub index: usize,
    /// How it departs from the cost model and fails.
    pub behaviour: Behaviour,
}

impl Device {
    /// The device path `edgetpu_list_devices` reports, e.g. `emulated Edge TPU usb:0`, or
    /// `emulated Edge TPU usb:1 (slow=2)` for a device with options: every description built
    /// from it says that the device is emulated, and how it differs.
    pub fn path(&self) -> String {
        self.to_string()
    }

    /// The device's name among the configured ones, e.g. `usb:0`: what this process keeps
    /// its invoke count and presence under.
    pub fn name(&self) -> String {
        format!("{}:{}", self.kind, self.index)
    }

    /// The cost model of the device's link.
    pub fn cost_model(&self) -> EdgeTpuCostModel {
        match self.kind {
            DeviceKind::Usb => EdgeTpuCostModel::usb_default(),
            DeviceKind::Pci => EdgeTpuCostModel::pcie_default(),
        }
    }

    /// The link the cost model of the device assumes.
    pub fn link(&self) -> Link {
        self.cost_model().link
    }

    /// Takes the device's lock: `Ok(None)` when another open delegate (of this or another
    /// process) holds it. The lock is released when the file is closed.
    pub fn lock(&self) -> Result<Option<File>, String> {
        let dir = match std::env::var_os(LOCK_DIR_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => std::env::temp_dir().join("multitpu-emulated-edgetpu"),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the lock directory {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}-{}.lock", self.kind, self.index));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        // A process forked by another thread of the holder shares the lock until it execs
        // (the file is close-on-exec), so a lock just released can look held for a moment:
        // the device counts as busy only if it stays locked for LOCK_PATIENCE.
        let deadline = Instant::now() + LOCK_PATIENCE;
        loop {
            match ffi::try_lock(&file) {
                Ok(true) => return Ok(Some(file)),
                Ok(false) if Instant::now() >= deadline => return Ok(None),
                Ok(false) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "emulated Edge TPU {}:{}", self.kind, self.index)?;
        if !self.behaviour.is_default() {
            write!(f, " ({})", self.behaviour)?;
        }
        Ok(())
    }
}

/// The devices of a [`DEVICES_ENV`] value, in the order given; each kind is numbered from 0.
pub fn parse(spec: &str) -> Result<Vec<Device>, String> {
    let mut devices = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut options = entry.split('@');
        let head = options.next().unwrap_or_default().trim();
        let mut behaviour = Behaviour::default();
        let mut given = Vec::new();
        for option in options.map(str::trim) {
            let bad = |why: String| format!("{DEVICES_ENV}: `{option}` in `{entry}`: {why}");
            let (name, value) = option
                .split_once('=')
                .ok_or_else(|| bad("not NAME=VALUE".to_owned()))?;
            let name = name.trim();
            if given.contains(&name) {
                return Err(bad(format!("`{name}` is given twice")));
            }
            given.push(name);
            behaviour.set(name, value.trim()).map_err(bad)?;
        }
        if behaviour.back_after.is_some() && behaviour.vanish_after.is_none() {
            return Err(format!(
                "{DEVICES_ENV}: `back-after` in `{entry}` needs `vanish-after`"
            ));
        }
        let (kind, count) = head.split_once(':').unwrap_or((head, "1"));
        let kind = match kind {
            "usb" => DeviceKind::Usb,
            "pci" => DeviceKind::Pci,
            other => {
                return Err(format!(
                    "{DEVICES_ENV}: `{other}` in `{entry}` is not `usb` or `pci`"
                ));
            }
        };
        let count: usize = count
            .parse()
            .map_err(|_| format!("{DEVICES_ENV}: `{count}` in `{entry}` is not a count"))?;
        let first = devices.iter().filter(|d: &&Device| d.kind == kind).count();
        devices.extend((first..first + count).map(|index| Device {
            kind,
            index,
            behaviour: behaviour.clone(),
        }));
    }
    Ok(devices)
}

/// The devices configured in this process's environment.
pub fn configured() -> Result<Vec<Device>, String> {
    match std::env::var(DEVICES_ENV) {
        Ok(spec) => parse(&spec),
        Err(std::env::VarError::NotPresent) => parse(DEFAULT_DEVICES),
        Err(e) => Err(format!("{DEVICES_ENV}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: &str) -> Vec<String> {
        parse(spec).unwrap().iter().map(Device::path).collect()
    }

    #[test]
    fn parses_counts_per_kind_in_order() {
        assert_eq!(
            names("usb:2,pci:1"),
            [
                "emulated Edge TPU usb:0",
                "emulated Edge TPU usb:1",
                "emulated Edge TPU pci:0"
            ]
        );
        assert_eq!(
            names("pci, usb:1, pci:1"),
            [
                "emulated Edge TPU pci:0",
                "emulated Edge TPU usb:0",
                "emulated Edge TPU pci:1"
            ]
        );
        assert!(names("").is_empty());
        assert!(names("usb:0").is_empty());
        assert_eq!(names(DEFAULT_DEVICES).len(), 4);
        for bad in ["tpu:1", "usb:x", "usb:-1", "usb:1:2"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    fn behaviour(entry: &str) -> Behaviour {
        let devices = parse(entry).unwrap();
        assert_eq!(devices.len(), 1, "{entry}");
        devices[0].behaviour.clone()
    }

    #[test]
    fn parses_every_option() {
        let cases = [
            (
                "usb@slow=2",
                Behaviour {
                    slow: Some(2.0),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@conv=1.5",
                Behaviour {
                    conv: Some(1.5),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@depthwise=3",
                Behaviour {
                    depthwise: Some(3.0),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@fc=0.5",
                Behaviour {
                    fc: Some(0.5),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@transpose-conv=2",
                Behaviour {
                    transpose_conv: Some(2.0),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@link=4",
                Behaviour {
                    link: Some(4.0),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@throttle=100:2.5",
                Behaviour {
                    throttle: Some((100, 2.5)),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@fail-after=0",
                Behaviour {
                    fail_after: Some(0),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@vanish-after=5@back-after=1.5",
                Behaviour {
                    vanish_after: Some(5),
                    back_after: Some(Duration::from_millis(1500)),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@hang-after=3",
                Behaviour {
                    hang_after: Some((3, DEFAULT_HANG)),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@hang-after=3:1",
                Behaviour {
                    hang_after: Some((3, Duration::from_secs(1))),
                    ..Behaviour::default()
                },
            ),
            (
                "usb@compute=skip",
                Behaviour {
                    skip_compute: true,
                    ..Behaviour::default()
                },
            ),
            ("usb@compute=run", Behaviour::default()),
        ];
        for (entry, expected) in cases {
            assert_eq!(behaviour(entry), expected, "{entry}");
        }
    }

    #[test]
    fn options_apply_to_every_device_of_their_entry_and_show_in_the_path() {
        assert_eq!(
            names("usb:2, usb:2 @ slow=2 @ hang-after=3, pci@fail-after=100@compute=skip"),
            [
                "emulated Edge TPU usb:0",
                "emulated Edge TPU usb:1",
                "emulated Edge TPU usb:2 (slow=2, hang-after=3:30)",
                "emulated Edge TPU usb:3 (slow=2, hang-after=3:30)",
                "emulated Edge TPU pci:0 (fail-after=100, compute=skip)",
            ]
        );
        // Every option, in the path's fixed order, whatever the order given.
        let all = "usb@compute=skip@hang-after=1:0.5@back-after=2@vanish-after=9@fail-after=8\
                   @throttle=7:1.25@link=6@transpose-conv=5@fc=4@depthwise=3@conv=2@slow=1.5";
        assert_eq!(
            names(all),
            [
                "emulated Edge TPU usb:0 (slow=1.5, conv=2, depthwise=3, fc=4, \
                 transpose-conv=5, link=6, throttle=7:1.25, fail-after=8, vanish-after=9, \
                 back-after=2, hang-after=1:0.5, compute=skip)"
            ]
        );
        // The path parses back to the same device.
        let device = &parse(all).unwrap()[0];
        let again = format!("usb@{}", device.behaviour.to_string().replace(", ", "@"));
        assert_eq!(parse(&again).unwrap()[0], *device);
    }

    #[test]
    fn a_bad_entry_is_an_error_naming_it() {
        for (bad, says) in [
            ("usb:1@slow", "not NAME=VALUE"),
            ("usb:1@slow=0", "`0` is not a positive factor"),
            ("usb:1@slow=-2", "`-2` is not a positive factor"),
            ("usb:1@slow=inf", "`inf` is not a positive factor"),
            ("usb:1@conv=x", "`x` is not a positive factor"),
            ("usb:1@link=", "`` is not a positive factor"),
            ("usb:1@throttle=3", "`3` is not N:F"),
            ("usb:1@throttle=x:2", "`x` is not a count of invokes"),
            ("usb:1@throttle=3:0", "`0` is not a positive factor"),
            ("usb:1@fail-after=-1", "`-1` is not a count of invokes"),
            ("usb:1@vanish-after=0", "vanish-after must be at least 1"),
            ("usb:1@back-after=1", "needs `vanish-after`"),
            (
                "usb:1@vanish-after=1@back-after=-1",
                "`-1` is not a number of seconds",
            ),
            ("usb:1@hang-after=2:x", "`x` is not a number of seconds"),
            ("usb:1@compute=gpu", "`gpu` is not `skip` or `run`"),
            ("usb:1@slow=2@slow=3", "`slow` is given twice"),
            ("usb:1@turbo=2", "`turbo` is not an option"),
            (
                "tpu:1@slow=2",
                "`tpu` in `tpu:1@slow=2` is not `usb` or `pci`",
            ),
        ] {
            let err = parse(&format!("usb:2,{bad}")).unwrap_err();
            assert!(err.starts_with(DEVICES_ENV), "{err}");
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn invoke_factors_are_slow_times_throttle_once_past_it() {
        let b = behaviour("usb@slow=2@throttle=3:1.5");
        assert_eq!(
            (1..=5).map(|n| b.invoke_factor(n)).collect::<Vec<_>>(),
            [2.0, 2.0, 2.0, 3.0, 3.0]
        );
        assert_eq!(Behaviour::default().invoke_factor(1), 1.0);
        let k = behaviour("usb@conv=2@fc=3@depthwise=4");
        assert_eq!(k.kind_factor(OpKind::Conv2d), 2.0);
        assert_eq!(k.kind_factor(OpKind::FullyConnected), 3.0);
        assert_eq!(k.kind_factor(OpKind::DepthwiseConv2d), 4.0);
        assert_eq!(k.kind_factor(OpKind::TransposeConv), 1.0);
        assert_eq!(k.kind_factor(OpKind::Other), 1.0);
    }

    #[test]
    fn links_follow_the_kind() {
        let devices = parse("usb:1,pci:1").unwrap();
        assert_eq!(devices[0].link(), Link::Usb3);
        assert_eq!(devices[1].link(), Link::Pcie);
    }
}
