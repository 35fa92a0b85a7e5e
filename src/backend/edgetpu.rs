//! Coral's Edge TPU runtime (libedgetpu): enumerate devices, pick one with Coral's device
//! strings, and create the delegate that runs a compiled model's `edgetpu-custom-op`.

use std::ffi::{CStr, CString};
use std::fmt;
use std::path::Path;
use std::ptr::NonNull;
use std::str::FromStr;
use std::sync::Arc;

use libedgetpu_sys::{EdgeTpuApi, EdgeTpuDeviceType, EdgeTpuOption, TfLiteDelegate};

use crate::{Error, Result};

/// A loaded libedgetpu. Cheap to clone; the library stays loaded while any clone or any
/// [`Delegate`] created from it is alive.
#[derive(Clone)]
pub struct EdgeTpuRuntime {
    api: Arc<EdgeTpuApi>,
}

impl fmt::Debug for EdgeTpuRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeTpuRuntime")
            .field("path", &self.api.path())
            .field("version", &self.api.version())
            .finish()
    }
}

/// The bus an Edge TPU is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// USB (Coral USB Accelerator).
    Usb,
    /// PCIe or M.2 (Coral M.2 / Mini PCIe accelerators, Dev Board).
    Pci,
}

impl DeviceKind {
    /// Coral's name for the kind in device strings: `"usb"` or `"pci"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Usb => "usb",
            DeviceKind::Pci => "pci",
        }
    }

    fn raw(self) -> EdgeTpuDeviceType {
        match self {
            DeviceKind::Usb => EdgeTpuDeviceType::APEX_USB,
            DeviceKind::Pci => EdgeTpuDeviceType::APEX_PCI,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Edge TPU found by [`EdgeTpuRuntime::list_devices`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceInfo {
    /// Bus type.
    pub kind: DeviceKind,
    /// The system path libedgetpu uses to open the device (e.g. `/sys/bus/usb/devices/2-1`
    /// or `/dev/apex_0`).
    pub path: String,
}

impl DeviceInfo {
    /// A device of `kind` at `path`, e.g. to resolve selectors against a known list.
    pub fn new(kind: DeviceKind, path: impl Into<String>) -> Self {
        DeviceInfo {
            kind,
            path: path.into(),
        }
    }
}

/// Which Edge TPU to use, parsed from Coral's device strings:
///
/// | string    | meaning                       |
/// |-----------|-------------------------------|
/// | `""`      | the first device of any kind  |
/// | `":N"`    | the N-th device of any kind   |
/// | `"usb"`   | the first USB device          |
/// | `"usb:N"` | the N-th USB device           |
/// | `"pci"`   | the first PCIe device         |
/// | `"pci:N"` | the N-th PCIe device          |
///
/// N counts from 0 in the order libedgetpu lists devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DeviceSelector {
    /// Restrict to one bus type; `None` means any.
    pub kind: Option<DeviceKind>,
    /// Position among the matching devices; `None` means the first.
    pub index: Option<usize>,
}

impl DeviceSelector {
    /// The device this selector picks from `devices`, or [`Error::NoDevice`].
    ///
    /// # Errors
    ///
    /// [`Error::NoDevice`] if no device of `devices` matches.
    pub fn select<'a>(&self, devices: &'a [DeviceInfo]) -> Result<&'a DeviceInfo> {
        let matching = || {
            devices
                .iter()
                .filter(|d| self.kind.is_none_or(|k| d.kind == k))
        };
        matching()
            .nth(self.index.unwrap_or(0))
            .ok_or_else(|| Error::NoDevice {
                selector: self.to_string(),
                needed: self.index.unwrap_or(0) + 1,
                available: matching().count(),
            })
    }
}

impl FromStr for DeviceSelector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| Error::DeviceSelector {
            input: s.to_owned(),
            reason,
        };
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => (kind, Some(index)),
            None => (s, None),
        };
        let kind = match kind {
            "" => None,
            "usb" => Some(DeviceKind::Usb),
            "pci" => Some(DeviceKind::Pci),
            _ => return Err(bad("the device type must be empty, `usb` or `pci`")),
        };
        let index = match index {
            None => None,
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => Some(
                n.parse::<usize>()
                    .map_err(|_| bad("the device index is too large"))?,
            ),
            Some(_) => return Err(bad("the part after `:` must be a device index (0, 1, ...)")),
        };
        Ok(Self { kind, index })
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(kind) = self.kind {
            f.write_str(kind.as_str())?;
        }
        if let Some(index) = self.index {
            write!(f, ":{index}")?;
        }
        Ok(())
    }
}

impl EdgeTpuRuntime {
    /// The process-wide libedgetpu, loaded once from the path in `MULTITPU_EDGETPU_LIB`,
    /// or else by the platform's usual name (`libedgetpu.so.1`) on the loader's path.
    ///
    /// # Errors
    ///
    /// [`Error::Library`] when libedgetpu cannot be loaded, saying how to install it.
    pub fn load() -> Result<Self> {
        Ok(Self {
            api: EdgeTpuApi::shared()?,
        })
    }

    /// Loads libedgetpu from `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Library`] when the file cannot be loaded or is not libedgetpu.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self {
            api: Arc::new(EdgeTpuApi::load(Some(path.as_ref()))?),
        })
    }

    /// The version string libedgetpu reports.
    pub fn version(&self) -> String {
        self.api.version().to_owned()
    }

    /// Sets libedgetpu's log verbosity (0 is quiet, 10 the most verbose).
    pub fn set_verbosity(&self, level: i32) {
        // SAFETY: takes a plain integer; any value is accepted.
        unsafe { (self.api.verbosity)(level) }
    }

    /// The Edge TPUs currently attached, in libedgetpu's order.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] if libedgetpu fails to list its devices.
    pub fn list_devices(&self) -> Result<Vec<DeviceInfo>> {
        let mut count = 0usize;
        // SAFETY: `count` is a valid out-pointer; the returned list (possibly NULL when
        // empty) is freed below with its matching function.
        let list = unsafe { (self.api.list_devices)(&mut count) };
        let Some(list) = NonNull::new(list) else {
            return Ok(Vec::new());
        };
        // SAFETY: libedgetpu returned `count` contiguous entries at `list`.
        let raw = unsafe { std::slice::from_raw_parts(list.as_ptr(), count) };
        let devices = raw
            .iter()
            .map(|d| {
                let kind = match d.type_ {
                    EdgeTpuDeviceType::APEX_USB => DeviceKind::Usb,
                    EdgeTpuDeviceType::APEX_PCI => DeviceKind::Pci,
                    other => {
                        return Err(Error::Runtime {
                            call: "edgetpu_list_devices",
                            message: format!("unknown device type {}", other.0),
                        });
                    }
                };
                let path = if d.path.is_null() {
                    String::new()
                } else {
                    // SAFETY: a NUL-terminated string owned by the list, read before the
                    // list is freed.
                    unsafe { CStr::from_ptr(d.path) }
                        .to_string_lossy()
                        .into_owned()
                };
                Ok(DeviceInfo { kind, path })
            })
            .collect();
        // SAFETY: frees the list exactly once; `raw` is not used afterwards.
        unsafe { (self.api.free_devices)(list.as_ptr()) };
        devices
    }

    /// Creates a delegate bound to `device`, with libedgetpu options such as
    /// `("Performance", "Max")`, `("Usb.AlwaysDfu", "True")` or
    /// `("Usb.MaxBulkInQueueLength", "32")`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for an option or device path holding a NUL byte,
    /// [`Error::Runtime`] if libedgetpu returns no delegate (e.g. the device is gone or
    /// busy).
    pub fn create_delegate(
        &self,
        device: &DeviceInfo,
        options: &[(&str, &str)],
    ) -> Result<Delegate> {
        let c = |what: &str, s: &str| {
            CString::new(s).map_err(|_| {
                Error::invalid(
                    "Edge TPU delegate",
                    format!("{what} `{s}` contains a NUL byte"),
                )
            })
        };
        // Always a non-NULL path: with options, libedgetpu aborts on a NULL path.
        let path = c("device path", &device.path)?;
        let strings = options
            .iter()
            .map(|(name, value)| Ok((c("option name", name)?, c("option value", value)?)))
            .collect::<Result<Vec<_>>>()?;
        let raw_options: Vec<EdgeTpuOption> = strings
            .iter()
            .map(|(name, value)| EdgeTpuOption {
                name: name.as_ptr(),
                value: value.as_ptr(),
            })
            .collect();
        let options_ptr = if raw_options.is_empty() {
            std::ptr::null()
        } else {
            raw_options.as_ptr()
        };
        // SAFETY: `path` and every option string are NUL-terminated and outlive the call
        // (libedgetpu copies them); `options_ptr` points at `raw_options.len()` entries or
        // is NULL with a count of 0.
        let ptr = unsafe {
            (self.api.create_delegate)(
                device.kind.raw(),
                path.as_ptr(),
                options_ptr,
                raw_options.len(),
            )
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| Error::Runtime {
            call: "edgetpu_create_delegate",
            message: format!(
                "could not open the {} Edge TPU at `{}` (in use by another process, \
                 unplugged, or an unknown option among {options:?})",
                device.kind, device.path
            ),
        })?;
        Ok(Delegate {
            ptr,
            device: device.clone(),
            api: Arc::clone(&self.api),
        })
    }

    /// Lists the devices and creates a delegate for the one `selector` picks.
    ///
    /// # Errors
    ///
    /// As [`list_devices`](Self::list_devices), [`DeviceSelector::select`] and
    /// [`create_delegate`](Self::create_delegate).
    pub fn open(&self, selector: &DeviceSelector, options: &[(&str, &str)]) -> Result<Delegate> {
        let devices = self.list_devices()?;
        let device = selector.select(&devices)?;
        self.create_delegate(device, options)
    }
}

/// An Edge TPU delegate bound to one device. Give it to
/// [`Interpreter::with_edgetpu`](super::Interpreter::with_edgetpu), which keeps it alive
/// until after the interpreter is gone; it is freed on drop.
pub struct Delegate {
    ptr: NonNull<TfLiteDelegate>,
    device: DeviceInfo,
    // Keeps libedgetpu loaded while the delegate exists.
    api: Arc<EdgeTpuApi>,
}

// SAFETY: the delegate is owned by this value alone and libedgetpu delegates have no
// thread affinity; the interpreter using it serialises all calls.
unsafe impl Send for Delegate {}

impl Delegate {
    /// The device this delegate runs on.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    pub(crate) fn as_ptr(&self) -> *mut TfLiteDelegate {
        self.ptr.as_ptr()
    }
}

impl fmt::Debug for Delegate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delegate")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Drop for Delegate {
    fn drop(&mut self) {
        // SAFETY: created by `edgetpu_create_delegate` of the still-loaded `api`, freed
        // exactly once; any interpreter using it has been dropped first (it owns us).
        unsafe { (self.api.free_delegate)(self.ptr.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_coral_device_strings() {
        let cases = [
            ("", None, None),
            (":0", None, Some(0)),
            (":3", None, Some(3)),
            ("usb", Some(DeviceKind::Usb), None),
            ("usb:1", Some(DeviceKind::Usb), Some(1)),
            ("pci", Some(DeviceKind::Pci), None),
            ("pci:12", Some(DeviceKind::Pci), Some(12)),
        ];
        for (s, kind, index) in cases {
            let sel: DeviceSelector = s.parse().expect(s);
            assert_eq!(sel, DeviceSelector { kind, index }, "{s}");
            assert_eq!(sel.to_string(), s, "round trip");
        }
    }

    #[test]
    fn rejects_bad_device_strings() {
        for s in [
            "tpu", "usb:", ":", "usb:-1", "usb:x", "pci:1:2", "USB", " usb", "usb:+1",
        ] {
            let err = s.parse::<DeviceSelector>().expect_err(s);
            assert!(
                matches!(&err, Error::DeviceSelector { input, .. } if input == s),
                "{s}: {err:?}"
            );
        }
        let err = "usb:99999999999999999999999"
            .parse::<DeviceSelector>()
            .expect_err("overflow");
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn selects_by_kind_and_position() {
        let devices = [
            DeviceInfo::new(DeviceKind::Pci, "/dev/apex_0"),
            DeviceInfo::new(DeviceKind::Usb, "/sys/bus/usb/devices/2-1"),
            DeviceInfo::new(DeviceKind::Usb, "/sys/bus/usb/devices/2-2"),
        ];
        let pick = |s: &str| {
            s.parse::<DeviceSelector>()
                .and_then(|sel| sel.select(&devices).cloned())
        };
        assert_eq!(pick("").ok(), Some(devices[0].clone()));
        assert_eq!(pick(":2").ok(), Some(devices[2].clone()));
        assert_eq!(pick("usb").ok(), Some(devices[1].clone()));
        assert_eq!(pick("usb:1").ok(), Some(devices[2].clone()));
        assert_eq!(pick("pci:0").ok(), Some(devices[0].clone()));
        let err = pick("pci:1").expect_err("only one PCIe device");
        assert!(
            matches!(&err, Error::NoDevice { selector, needed: 2, available: 1 } if selector == "pci:1"),
            "{err:?}"
        );
        let err = DeviceSelector::default()
            .select(&[])
            .expect_err("no devices");
        assert!(matches!(err, Error::NoDevice { available: 0, .. }));
    }

    #[test]
    fn missing_library_is_a_typed_error() {
        let err = EdgeTpuRuntime::from_path("/nonexistent/libedgetpu.so.1")
            .expect_err("no library there");
        match &err {
            Error::Library(libedgetpu_sys::LoadError::Open { path, .. }) => {
                assert_eq!(path, Path::new("/nonexistent/libedgetpu.so.1"));
            }
            other => panic!("expected Error::Library(Open), got {other:?}"),
        }
        assert!(err.to_string().contains("MULTITPU_EDGETPU_LIB"), "{err}");
    }
}
