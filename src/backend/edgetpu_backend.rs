//! The Edge TPU backend: every pipeline stage is a TFLite interpreter whose compiled segment
//! runs on its own Coral Edge TPU.
//!
//! [`EdgeTpuBackend`] lists the attached devices once, when it is built, and pins stage `i`
//! to device `i` of that list (or of the list of [`DeviceSelector`]s it was given). Each
//! stage gets its own libedgetpu delegate, created for its device with the backend's options
//! (such as [`Performance`]); the delegate moves into the stage's interpreter, which frees it
//! after itself, so a delegate always outlives its interpreter.
//!
//! A device serves one stage at a time: preparing a stage on a device that a live stage
//! holds (of any backend or pipeline of this process) fails with [`Error::DeviceTaken`], so
//! a pipeline that would put two stages on one Edge TPU fails when it is built, not while
//! it runs. The claim is released when the stage is dropped. Another process holding the
//! device is only seen by libedgetpu, whose error comes back as [`Error::Runtime`].

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::cpu::{InterpreterStage, host_description};
use crate::backend::edgetpu::{DeviceInfo, DeviceSelector, EdgeTpuRuntime};
use crate::backend::tflite::{Interpreter, InterpreterOptions, Runtime};
use crate::backend::{Backend, Stage};
use crate::model::Model;
use crate::model::edgetpu::is_compiled;
use crate::tensor::TensorSpec;
use crate::{Error, Result};

/// libedgetpu's `Performance` option: the clock the Edge TPU runs at. `Max` needs the
/// `libedgetpu1-max` build; with `libedgetpu1-std` the device runs at most at `High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Performance {
    /// Lowest clock.
    Low,
    /// Medium clock.
    Medium,
    /// High clock (the default of `libedgetpu1-std`).
    High,
    /// Maximum clock (500 MHz with `libedgetpu1-max`).
    Max,
}

impl Performance {
    /// The option value libedgetpu expects: `"Low"`, `"Medium"`, `"High"` or `"Max"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Performance::Low => "Low",
            Performance::Medium => "Medium",
            Performance::High => "High",
            Performance::Max => "Max",
        }
    }
}

impl fmt::Display for Performance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks that `segment_model` is compiled for the Edge TPU (holds an `edgetpu-custom-op`);
/// `index` is the device index the segment was meant for, named in the error.
///
/// An uncompiled segment would run entirely on the host CPU behind the delegate's back, so
/// the backend refuses it with [`Error::NotCompiled`]. Malformed bytes give the reader's
/// error.
///
/// # Errors
///
/// [`Error::NotCompiled`] for a segment without an `edgetpu-custom-op`;
/// [`Error::Malformed`] or [`Error::Unsupported`] for bytes that are not a model.
pub fn check_compiled(segment_model: &[u8], index: usize) -> Result<()> {
    let model = Model::from_bytes(segment_model)?;
    if is_compiled(&model) {
        Ok(())
    } else {
        Err(Error::NotCompiled { index })
    }
}

/// Resolves the devices stages are pinned to: every listed device in order when `selectors`
/// is `None`, else the device each selector picks.
///
/// Errors with [`Error::NoDevice`] when nothing is attached or a selector matches nothing,
/// and with [`Error::DeviceTaken`] when two selectors pick the same device.
///
/// # Errors
///
/// [`Error::NoDevice`] when nothing is attached or a selector matches nothing;
/// [`Error::DeviceTaken`] when two selectors pick the same device.
pub fn resolve_devices(
    listed: &[DeviceInfo],
    selectors: Option<&[DeviceSelector]>,
) -> Result<Vec<DeviceInfo>> {
    let Some(selectors) = selectors else {
        if listed.is_empty() {
            return Err(Error::NoDevice {
                selector: String::new(),
                needed: 1,
                available: 0,
            });
        }
        return Ok(listed.to_vec());
    };
    let mut chosen: Vec<DeviceInfo> = Vec::with_capacity(selectors.len());
    for (index, selector) in selectors.iter().enumerate() {
        let device = selector.select(listed)?;
        if chosen.contains(device) {
            return Err(Error::DeviceTaken {
                device: describe_device(device),
                index,
            });
        }
        chosen.push(device.clone());
    }
    Ok(chosen)
}

fn describe_device(device: &DeviceInfo) -> String {
    format!("{} at `{}`", device.kind, device.path)
}

/// The devices live stages of this process hold, by kind and path.
static CLAIMED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Claims `device` (device index `index` of its backend) until the returned guard is dropped.
fn claim(device: &DeviceInfo, index: usize) -> Result<Claim> {
    let key = describe_device(device);
    if !CLAIMED.lock().insert(key.clone()) {
        return Err(Error::DeviceTaken { device: key, index });
    }
    Ok(Claim { key })
}

/// A device held by one stage; released on drop.
#[derive(Debug)]
struct Claim {
    key: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED.lock().remove(&self.key);
    }
}

/// Runs compiled segments on Coral Edge TPUs, one device per stage.
///
/// ```no_run
/// # // no_run: needs attached Edge TPUs (or `scripts/emulate`'s emulated ones).
/// use multitpu::backend::EdgeTpuBackend;
/// use multitpu::pipeline::Pipeline;
///
/// # fn main() -> multitpu::Result<()> {
/// // Segments compiled by `edgetpu_compiler`, stage i on Edge TPU i.
/// let files = ["model_segment_0_of_2_edgetpu.tflite", "model_segment_1_of_2_edgetpu.tflite"];
/// let pipeline = Pipeline::from_segment_files(&files, &EdgeTpuBackend::load()?)?;
/// # let _ = pipeline;
/// # Ok(())
/// # }
/// ```
pub struct EdgeTpuBackend {
    tflite: Runtime,
    edgetpu: EdgeTpuRuntime,
    devices: Vec<DeviceInfo>,
    options: Vec<(String, String)>,
    interpreter_options: InterpreterOptions,
}

impl fmt::Debug for EdgeTpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeTpuBackend")
            .field("devices", &self.devices)
            .field("options", &self.options)
            .field("interpreter_options", &self.interpreter_options)
            .finish_non_exhaustive()
    }
}

impl EdgeTpuBackend {
    /// A backend over every attached Edge TPU, in libedgetpu's order: stage `i` runs on
    /// device `i`. Errors with [`Error::NoDevice`] when none is attached.
    ///
    /// # Errors
    ///
    /// [`Error::NoDevice`] when no Edge TPU is attached; [`Error::Runtime`] if libedgetpu
    /// cannot list its devices.
    pub fn new(tflite: Runtime, edgetpu: EdgeTpuRuntime) -> Result<Self> {
        let devices = resolve_devices(&edgetpu.list_devices()?, None)?;
        Ok(Self::with_resolved(tflite, edgetpu, devices))
    }

    /// A backend whose stage `i` runs on the device `selectors[i]` picks (Coral's device
    /// strings: `""`, `":N"`, `"usb"`, `"usb:N"`, `"pci"`, `"pci:N"`). Errors with
    /// [`Error::NoDevice`] when a selector matches nothing, and with [`Error::DeviceTaken`]
    /// when two selectors pick the same device.
    ///
    /// # Errors
    ///
    /// [`Error::NoDevice`] when a selector matches nothing; [`Error::DeviceTaken`] when two
    /// selectors pick the same device.
    pub fn with_devices(
        tflite: Runtime,
        edgetpu: EdgeTpuRuntime,
        selectors: &[DeviceSelector],
    ) -> Result<Self> {
        let devices = resolve_devices(&edgetpu.list_devices()?, Some(selectors))?;
        Ok(Self::with_resolved(tflite, edgetpu, devices))
    }

    /// Loads both libraries the usual way ([`Runtime::load`], [`EdgeTpuRuntime::load`]) and
    /// uses every attached device. A missing library gives [`Error::Library`].
    ///
    /// # Errors
    ///
    /// [`Error::Library`] when either library is missing; as [`EdgeTpuBackend::new`] for
    /// the devices.
    pub fn load() -> Result<Self> {
        Self::new(Runtime::load()?, EdgeTpuRuntime::load()?)
    }

    fn with_resolved(tflite: Runtime, edgetpu: EdgeTpuRuntime, devices: Vec<DeviceInfo>) -> Self {
        EdgeTpuBackend {
            tflite,
            edgetpu,
            devices,
            options: Vec::new(),
            interpreter_options: InterpreterOptions::default(),
        }
    }

    /// Adds a libedgetpu option given to every delegate, e.g. `("Usb.AlwaysDfu", "True")`.
    /// A later value for the same name replaces the earlier one.
    pub fn option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.options.retain(|(n, _)| *n != name);
        self.options.push((name, value.into()));
        self
    }

    /// Sets the `Performance` option (the device clock).
    pub fn performance(self, performance: Performance) -> Self {
        self.option("Performance", performance.as_str())
    }

    /// Options of the interpreters (threads for the operators left on the CPU).
    pub fn interpreter_options(mut self, options: InterpreterOptions) -> Self {
        self.interpreter_options = options;
        self
    }

    /// The devices stages are pinned to: stage (device index) `i` runs on `devices()[i]`.
    pub fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }
}

impl Backend for EdgeTpuBackend {
    /// Loads a compiled segment onto device `device_index` of [`devices`](Self::devices).
    ///
    /// Errors: [`Error::NotCompiled`] for a segment without an `edgetpu-custom-op`,
    /// [`Error::NoDevice`] for an index past the device list, [`Error::DeviceTaken`] when a
    /// live stage of this process holds the device, [`Error::Runtime`] when libedgetpu
    /// cannot open it (e.g. another process uses it) or TFLite cannot build the interpreter,
    /// and [`Error::EdgeTpuDelegate`] when the delegate refuses the compiled segment.
    fn prepare(&self, segment_model: Arc<[u8]>, device_index: usize) -> Result<Box<dyn Stage>> {
        check_compiled(&segment_model, device_index)?;
        let device = self.devices.get(device_index).ok_or(Error::NoDevice {
            selector: format!(":{device_index}"),
            needed: device_index + 1,
            available: self.devices.len(),
        })?;
        let claim = claim(device, device_index)?;
        let options: Vec<(&str, &str)> = self
            .options
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let delegate = self.edgetpu.create_delegate(device, &options)?;
        let interpreter = Interpreter::with_edgetpu(
            &self.tflite,
            segment_model,
            &self.interpreter_options,
            delegate,
        )?;
        let description = format!(
            "{} #{device_index} ({})",
            self.name(),
            describe_device(device)
        );
        Ok(Box::new(EdgeTpuStage {
            inner: InterpreterStage::new(interpreter, description),
            _claim: claim,
        }))
    }

    fn name(&self) -> String {
        "edgetpu".to_string()
    }

    /// A CPU segment runs on TFLite's CPU kernels with this backend's interpreter options.
    fn prepare_cpu(&self, segment_model: Arc<[u8]>) -> Result<Box<dyn Stage>> {
        let interpreter = Interpreter::new(&self.tflite, segment_model, &self.interpreter_options)?;
        Ok(Box::new(InterpreterStage::new(
            interpreter,
            host_description(&self.interpreter_options),
        )))
    }
}

/// One segment on one Edge TPU.
struct EdgeTpuStage {
    // Field order is the release order: the interpreter (and with it the delegate) goes
    // first, then the device is released for another stage.
    inner: InterpreterStage,
    _claim: Claim,
}

impl Stage for EdgeTpuStage {
    fn inputs(&self) -> &[TensorSpec] {
        self.inner.inputs()
    }

    fn outputs(&self) -> &[TensorSpec] {
        self.inner.outputs()
    }

    fn run(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
        self.inner.run(inputs, outputs)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::edgetpu::DeviceKind;

    fn selectors(list: &[&str]) -> Vec<DeviceSelector> {
        list.iter().map(|s| s.parse().expect(s)).collect()
    }

    #[test]
    fn all_devices_in_order_without_selectors() {
        let listed = [
            DeviceInfo::new(DeviceKind::Usb, "u0"),
            DeviceInfo::new(DeviceKind::Pci, "p0"),
        ];
        assert_eq!(resolve_devices(&listed, None).ok(), Some(listed.to_vec()));
        let err = resolve_devices(&[], None).expect_err("nothing attached");
        assert!(
            matches!(err, Error::NoDevice { available: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn selectors_pick_devices_and_refuse_doubles() {
        let listed = [
            DeviceInfo::new(DeviceKind::Usb, "u0"),
            DeviceInfo::new(DeviceKind::Pci, "p0"),
            DeviceInfo::new(DeviceKind::Usb, "u1"),
        ];
        let picked = resolve_devices(&listed, Some(&selectors(&["usb:1", "pci", ":0"])))
            .expect("three distinct devices");
        assert_eq!(
            picked,
            [listed[2].clone(), listed[1].clone(), listed[0].clone()]
        );

        // ":0" and "usb" are the same device.
        let err = resolve_devices(&listed, Some(&selectors(&[":0", "usb"])))
            .expect_err("one device twice");
        match &err {
            Error::DeviceTaken { device, index: 1 } => assert!(device.contains("u0"), "{err}"),
            other => panic!("expected DeviceTaken, got {other:?}"),
        }
        let err = resolve_devices(&listed, Some(&selectors(&["pci:1"]))).expect_err("one PCIe");
        assert!(
            matches!(&err, Error::NoDevice { selector, needed: 2, available: 1 } if selector == "pci:1"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "no Edge TPU matches device `pci:1`: 2 device(s) needed, 1 found"
        );
    }

    #[test]
    fn a_claimed_device_is_refused_until_released() {
        // Paths of their own: claims are process-wide and tests run in parallel.
        let device = DeviceInfo::new(DeviceKind::Usb, "/claims-test/u0");
        let first = claim(&device, 0).expect("free");
        // Asked for again, e.g. as device 3 of another backend.
        let err = claim(&device, 3).expect_err("taken");
        match &err {
            Error::DeviceTaken { device, index: 3 } => {
                assert!(device.contains("/claims-test/u0"), "{err}")
            }
            other => panic!("expected DeviceTaken, got {other:?}"),
        }
        let other = claim(&DeviceInfo::new(DeviceKind::Usb, "/claims-test/u1"), 1);
        assert!(other.is_ok(), "another device is free");
        let same_path_other_kind = claim(&DeviceInfo::new(DeviceKind::Pci, "/claims-test/u0"), 2);
        assert!(same_path_other_kind.is_ok(), "kind and path name a device");
        drop(first);
        assert!(claim(&device, 0).is_ok(), "released on drop");
    }

    #[test]
    fn performance_option_values() {
        let values: Vec<&str> = [
            Performance::Low,
            Performance::Medium,
            Performance::High,
            Performance::Max,
        ]
        .iter()
        .map(|p| p.as_str())
        .collect();
        assert_eq!(values, ["Low", "Medium", "High", "Max"]);
    }

    #[test]
    fn garbage_is_not_a_compiled_model() {
        let err = check_compiled(b"not a model", 3).expect_err("garbage");
        assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    }
}
