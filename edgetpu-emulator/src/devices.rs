//! The emulated devices: which exist (from [`DEVICES_ENV`]), their names, and the lock
//! that lets one process at a time open each, as with real Edge TPUs.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use multitpu::backend::DeviceKind;
use multitpu::device::{EdgeTpuCostModel, Link};

use crate::ffi;

/// Environment variable listing the emulated devices: comma-separated `usb:N` and `pci:N`
/// entries, e.g. `usb:2,pci:1` (two USB devices, then one PCIe device). An empty value
/// means no devices.
pub const DEVICES_ENV: &str = "MULTITPU_EMULATED_EDGETPUS";

/// The devices when [`DEVICES_ENV`] is not set: four USB Edge TPUs, the paper's setup.
pub const DEFAULT_DEVICES: &str = "usb:4";

/// Environment variable naming the directory of the device lock files (default: the
/// system's temporary directory, `multitpu-emulated-edgetpu` in it).
pub const LOCK_DIR_ENV: &str = "MULTITPU_EMULATED_EDGETPU_LOCKS";

/// How long a device must stay locked by someone else to count as in use.
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// One emulated Edge TPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Bus type.
    pub kind: DeviceKind,
    /// Position among the devices of its kind, from 0.
    pub index: usize,
}

impl Device {
    /// The device path `edgetpu_list_devices` reports, e.g. `emulated Edge TPU usb:0`: every
    /// description built from it says that the device is emulated.
    pub fn path(&self) -> String {
        self.to_string()
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
        write!(f, "emulated Edge TPU {}:{}", self.kind, self.index)
    }
}

/// The devices of a [`DEVICES_ENV`] value, in the order given; each kind is numbered from 0.
pub fn parse(spec: &str) -> Result<Vec<Device>, String> {
    let mut devices = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (kind, count) = entry.split_once(':').unwrap_or((entry, "1"));
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
        devices.extend((first..first + count).map(|index| Device { kind, index }));
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

    #[test]
    fn links_follow_the_kind() {
        let devices = parse("usb:1,pci:1").unwrap();
        assert_eq!(devices[0].link(), Link::Usb3);
        assert_eq!(devices[1].link(), Link::Pcie);
    }
}
