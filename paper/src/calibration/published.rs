//! Coral's published single-device figures for real models, the second source of the fit.
//!
//! Coral's "Edge TPU performance benchmarks" page (coral.ai, docs/edgetpu/benchmarks)
//! gives, per model, the milliseconds of one inference on a desktop host with the USB
//! Accelerator (USB 3.0), measured with a C++ benchmark that times the model only. The
//! models used here are the ones whose architecture is known:
//!
//! | model | USB ms | rebuilt as | used |
//! | --- | --- | --- | --- |
//! | MobileNet v1 (224×224) | 2.4 | [`architectures::mobilenet_v1`]`(1.0, 224)` | fit |
//! | MobileNet v2 (224×224) | 2.6 | Coral's own `mobilenet_v2_1.0_224_quant.tflite` | fit |
//! | Inception v1 (224×224) | 3.4 | [`architectures::inception_v1`] | fit |
//! | EfficientNet-EdgeTpu-S | 5.1 | [`architectures::efficientnet_edgetpu`] | check |
//! | EfficientNet-EdgeTpu-M | 8.7 | [`architectures::efficientnet_edgetpu`] | check |
//!
//! The EfficientNet-EdgeTpu models are checks, not fitted: the cost model predicts them
//! 25–40 % too fast whatever it is fitted to (fitting them as well only spreads that error
//! over the MobileNets), so something that makes them slow on the device is not in the model
//! (`docs/cost-model.md`). The TF2 conversion of MobileNet v2 in the models folder
//! (`tf2_mobilenet_v2_1.0_224_ptq.tflite`, when present) is a check against the same 2.6 ms.
//!
//! Left out: SqueezeNet (2.1 ms; the table does not say which version), the SSD detectors
//! (their post-processing runs on the CPU), DeepLab v3, DenseNet, ResNet, Inception v4,
//! Inception-ResNet and VGG (not rebuilt here; most of them stream parameters, which the
//! calibration files already cover), Unet and EfficientNet-EdgeTpu-L.

use std::path::Path;

use crate::architectures::{self, EfficientNetEdgeTpu};
use crate::{Error, Result};
use multitpu::device::cost_model::SegmentWorkload;
use multitpu::model::Model;

/// The file of Coral's MobileNet v2, in the folder of real models.
pub const MOBILENET_V2_FILE: &str = "mobilenet_v2_1.0_224_quant.tflite";

/// One published figure: a whole model on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedPoint {
    /// The model's name in the published table.
    pub name: String,
    /// The whole model's workload.
    pub workload: SegmentWorkload,
    /// Published milliseconds of one inference.
    pub latency_ms: f64,
}

impl PublishedPoint {
    /// The point of the whole of `model`, published at `latency_ms`.
    pub fn whole(name: &str, model: &Model<'_>, latency_ms: f64) -> Self {
        PublishedPoint {
            name: name.to_owned(),
            workload: SegmentWorkload::from_model(model, 0..model.operators.len()),
            latency_ms,
        }
    }
}

/// The file of the TF2 conversion of MobileNet v2, a check in the folder of real models.
pub const TF2_MOBILENET_V2_FILE: &str = "tf2_mobilenet_v2_1.0_224_ptq.tflite";

/// Coral's published figure for MobileNet v2 (224×224) on the USB Accelerator, ms.
const MOBILENET_V2_MS: f64 = 2.6;

fn read_model(path: &Path) -> Result<Model<'static>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Model::from_bytes(&bytes)?.into_owned())
}

/// The figures the fit uses (the module's table, "fit"): MobileNet v2 read from
/// `models_dir` (the folder holding [`MOBILENET_V2_FILE`]), the others rebuilt.
///
/// # Errors
///
/// If the MobileNet v2 file cannot be read or parsed, or a model cannot be built.
pub fn coral_usb_benchmarks(models_dir: &Path) -> Result<Vec<PublishedPoint>> {
    let mobilenet_v2 = read_model(&models_dir.join(MOBILENET_V2_FILE))?;
    Ok(vec![
        PublishedPoint::whole(
            "MobileNet v1 (224x224)",
            &architectures::mobilenet_v1(1.0, 224)?,
            2.4,
        ),
        PublishedPoint::whole("MobileNet v2 (224x224)", &mobilenet_v2, MOBILENET_V2_MS),
        PublishedPoint::whole(
            "Inception v1 (224x224)",
            &architectures::inception_v1()?,
            3.4,
        ),
    ])
}

/// The published figures kept out of the fit (the module's table, "check"), and the TF2
/// MobileNet v2 of `models_dir` against Coral's MobileNet v2 figure when the file is there.
///
/// # Errors
///
/// If the TF2 MobileNet v2 file exists but cannot be read or parsed, or a model cannot be
/// built.
pub fn coral_usb_checks(models_dir: &Path) -> Result<Vec<PublishedPoint>> {
    let mut checks = vec![
        PublishedPoint::whole(
            "EfficientNet-EdgeTpu-S",
            &architectures::efficientnet_edgetpu(EfficientNetEdgeTpu::S)?,
            5.1,
        ),
        PublishedPoint::whole(
            "EfficientNet-EdgeTpu-M",
            &architectures::efficientnet_edgetpu(EfficientNetEdgeTpu::M)?,
            8.7,
        ),
    ];
    let tf2 = models_dir.join(TF2_MOBILENET_V2_FILE);
    if tf2.is_file() {
        checks.push(PublishedPoint::whole(
            "MobileNet v2, TF2 conversion",
            &read_model(&tf2)?,
            MOBILENET_V2_MS,
        ));
    }
    Ok(checks)
}
