//! Coral's published single-device figures for real networks, the second source of the fit.
//!
//! Coral's "Edge TPU performance benchmarks" page (coral.ai, docs/edgetpu/benchmarks,
//! table 1) gives, per network, the milliseconds of one inference on a desktop host with the
//! USB Accelerator (USB 3.0), timed by a C++ benchmark that times the model only; Coral's
//! model page gives Inception v3's. The networks Keras applications can rebuild are in the
//! benchmark zoo (`scripts/fetch-zoo --bench`: random weights, full int8, uint8 in and out,
//! as Coral's files are); Inception v1 and EfficientNet-EdgeTpu are rebuilt here from their
//! reference definitions ([`crate::architectures`]). Weights do not change the latency.
//!
//! Five of the thirteen rows are fitted, named in [`CORAL_USB_TABLE`]; the others only check
//! the fit. Inception-ResNet v2 is only reported: its 56 MB of int8 parameters cannot cross
//! USB 3.0 in the published 57 ms (they would need about 870 MB/s; the calibration README
//! says so), so that row cannot be this architecture at full size.
//!
//! Left out: SqueezeNet (the table does not say which version), the SSD detectors (their
//! post-processing runs on the CPU), DeepLab v3, Inception v4 and Unet (no reference
//! definition here), EfficientNet-EdgeTpu-L.

use std::path::Path;

use crate::architectures::{self, EfficientNetEdgeTpu};
use crate::{Error, Result};
use multitpu::device::SegmentWorkload;
use multitpu::model::Model;

/// What the fit does with a published figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Fitted: one of the observations of the time fit.
    Fit,
    /// Only compared with the prediction: the fit never sees it.
    Check,
    /// Shown, not expected to match: a figure no device could reach with this architecture.
    Report,
}

impl Role {
    /// `fit`, `check` or `report`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Fit => "fit",
            Role::Check => "check",
            Role::Report => "report",
        }
    }
}

/// Where a row's network comes from.
#[derive(Debug, Clone, Copy)]
pub enum Network {
    /// A file of the benchmark zoo (`scripts/fetch-zoo --bench`).
    BenchZoo(&'static str),
    /// Rebuilt by this crate.
    Rebuilt(fn() -> multitpu::Result<Model<'static>>),
}

/// One row of the published table.
#[derive(Debug, Clone, Copy)]
pub struct TableRow {
    /// The network as the table names it.
    pub name: &'static str,
    /// Published milliseconds of one inference, USB Accelerator.
    pub published_ms: f64,
    /// Where the figure is published.
    pub source: &'static str,
    /// The network.
    pub network: Network,
    /// What the fit does with it.
    pub role: Role,
}

const TABLE: &str = "Coral, Edge TPU performance benchmarks, table 1";
const MODEL_PAGE: &str = "Coral, models page (Inception V3)";

fn inception_v1() -> multitpu::Result<Model<'static>> {
    architectures::inception_v1()
}

fn efficientnet_s() -> multitpu::Result<Model<'static>> {
    architectures::efficientnet_edgetpu(EfficientNetEdgeTpu::S)
}

fn efficientnet_m() -> multitpu::Result<Model<'static>> {
    architectures::efficientnet_edgetpu(EfficientNetEdgeTpu::M)
}

/// The rows: five fitted (MobileNet v2, Inception v1, DenseNet-121, ResNet-50 v1, VGG16:
/// depthwise and plain convolutions, concatenations, streamed convolution and dense
/// weights), seven checks, one reported.
pub const CORAL_USB_TABLE: [TableRow; 13] = [
    TableRow {
        name: "MobileNet v1 (224x224)",
        published_ms: 2.4,
        source: TABLE,
        network: Network::BenchZoo("mobilenet_v1_1.0_224.tflite"),
        role: Role::Check,
    },
    TableRow {
        name: "MobileNet v2 (224x224)",
        published_ms: 2.6,
        source: TABLE,
        network: Network::BenchZoo("mobilenet_v2_1.0_224.tflite"),
        role: Role::Fit,
    },
    TableRow {
        name: "Inception v1 (224x224)",
        published_ms: 3.4,
        source: TABLE,
        network: Network::Rebuilt(inception_v1),
        role: Role::Fit,
    },
    TableRow {
        name: "DenseNet-121 (224x224)",
        published_ms: 20.0,
        source: TABLE,
        network: Network::BenchZoo("densenet121_224.tflite"),
        role: Role::Fit,
    },
    TableRow {
        name: "ResNet-50 V1 (299x299)",
        published_ms: 49.0,
        source: TABLE,
        network: Network::BenchZoo("resnet50_v1_299.tflite"),
        role: Role::Fit,
    },
    TableRow {
        name: "ResNet-50 V2 (299x299)",
        published_ms: 50.0,
        source: TABLE,
        network: Network::BenchZoo("resnet50_v2_299.tflite"),
        role: Role::Check,
    },
    TableRow {
        name: "ResNet-152 V2 (299x299)",
        published_ms: 128.0,
        source: TABLE,
        network: Network::BenchZoo("resnet152_v2_299.tflite"),
        role: Role::Check,
    },
    TableRow {
        name: "Inception-ResNet V2 (299x299)",
        published_ms: 57.0,
        source: TABLE,
        network: Network::BenchZoo("inception_resnet_v2_299.tflite"),
        role: Role::Report,
    },
    TableRow {
        name: "Inception v3 (299x299)",
        published_ms: 42.8,
        source: MODEL_PAGE,
        network: Network::BenchZoo("inception_v3_299.tflite"),
        role: Role::Check,
    },
    TableRow {
        name: "VGG16 (224x224)",
        published_ms: 296.0,
        source: TABLE,
        network: Network::BenchZoo("vgg16_224.tflite"),
        role: Role::Fit,
    },
    TableRow {
        name: "VGG19 (224x224)",
        published_ms: 308.0,
        source: TABLE,
        network: Network::BenchZoo("vgg19_224.tflite"),
        role: Role::Check,
    },
    TableRow {
        name: "EfficientNet-EdgeTpu-S",
        published_ms: 5.1,
        source: TABLE,
        network: Network::Rebuilt(efficientnet_s),
        role: Role::Check,
    },
    TableRow {
        name: "EfficientNet-EdgeTpu-M",
        published_ms: 8.7,
        source: TABLE,
        network: Network::Rebuilt(efficientnet_m),
        role: Role::Check,
    },
];

/// Coral's own MobileNet v2, in the folder of shared real models: a check against the same
/// 2.6 ms, the file Coral timed.
pub const MOBILENET_V2_FILE: &str = "mobilenet_v2_1.0_224_quant.tflite";

/// The TF2 conversion of MobileNet v2, in the folder of shared real models: a check against
/// the same 2.6 ms.
pub const TF2_MOBILENET_V2_FILE: &str = "tf2_mobilenet_v2_1.0_224_ptq.tflite";

/// One published figure: a whole network on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedPoint {
    /// The network's name in the published table.
    pub name: String,
    /// What the fit does with it.
    pub role: Role,
    /// The whole network's workload.
    pub workload: SegmentWorkload,
    /// Published milliseconds of one inference.
    pub latency_ms: f64,
}

impl PublishedPoint {
    /// The point of the whole of `model`, published at `latency_ms`, with `role`.
    pub fn whole(name: &str, role: Role, model: &Model<'_>, latency_ms: f64) -> Self {
        PublishedPoint {
            name: name.to_owned(),
            role,
            workload: SegmentWorkload::from_model(model, 0..model.operators.len()),
            latency_ms,
        }
    }
}

fn read_model(path: &Path) -> Result<Model<'static>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Model::from_bytes(&bytes)?.into_owned())
}

/// Every row of [`CORAL_USB_TABLE`], the zoo's networks read from `bench_zoo`.
///
/// # Errors
///
/// If a file of the benchmark zoo cannot be read or parsed, or a network cannot be built.
pub fn coral_usb_table(bench_zoo: &Path) -> Result<Vec<PublishedPoint>> {
    CORAL_USB_TABLE
        .iter()
        .map(|row| {
            let model = match row.network {
                Network::BenchZoo(file) => read_model(&bench_zoo.join(file))?,
                Network::Rebuilt(build) => build()?,
            };
            Ok(PublishedPoint::whole(
                row.name,
                row.role,
                &model,
                row.published_ms,
            ))
        })
        .collect()
}

/// Coral's MobileNet v2 file and its TF2 conversion from `models_dir`, each where present,
/// as checks against the published 2.6 ms.
///
/// # Errors
///
/// If a present file cannot be read or parsed.
pub fn shared_model_checks(models_dir: &Path) -> Result<Vec<PublishedPoint>> {
    let mut checks = Vec::new();
    for (file, name) in [
        (MOBILENET_V2_FILE, "MobileNet v2, Coral's file"),
        (TF2_MOBILENET_V2_FILE, "MobileNet v2, TF2 conversion"),
    ] {
        let path = models_dir.join(file);
        if path.is_file() {
            checks.push(PublishedPoint::whole(
                name,
                Role::Check,
                &read_model(&path)?,
                2.6,
            ));
        }
    }
    Ok(checks)
}
