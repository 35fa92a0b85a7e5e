//! Calibration points measured by a profiler, as a user re-fitting the cost model to their own
//! host makes them (`calibration_point`), on the real TFLite runtime.

// The library's test helpers: the same environment variables and skip rules.
#[path = "../../tests/common/mod.rs"]
mod common;

use multitpu::device::{EdgeTpuCostModel, MIB};
use multitpu::model::figures::param_bytes;
use multitpu::model::paper;
use multitpu::profile::CpuProfiler;
use multitpu_paper::Error;
use multitpu_paper::calibration::{Family, calibration_point, fit};

#[test]
fn calibration_points_from_a_measured_profiler() {
    let Some(runtime) = common::tflite_runtime() else {
        return;
    };
    let profiler = CpuProfiler {
        warmup: 1,
        runs: 3,
        ..CpuProfiler::new(runtime)
    };
    let mut points = Vec::new();
    for (family, size) in [(Family::Fc, 100), (Family::Fc, 300), (Family::Conv, 8)] {
        let point = calibration_point(&profiler, family, size).expect("the paper model runs");
        let model = match family {
            Family::Fc => paper::fc(size),
            Family::Conv => paper::conv(size),
        }
        .expect("builds");
        let n = model.operators.len();
        assert_eq!((point.family, point.size), (family, size));
        assert_eq!(
            point.on_chip_mib,
            param_bytes(&model, &(0..n)) as f64 / MIB,
            "{family} {size}"
        );
        assert_eq!(point.off_chip_mib, 0.0);
        assert!(point.latency_ms.is_finite() && point.latency_ms > 0.0);
        assert!(point.macs > 0);
        points.push(point);
    }
    let report = fit(&points, &[], &[], &EdgeTpuCostModel::usb_default()).expect("fits");
    assert_eq!(report.rows.len(), points.len());
    assert!(report.model.check().is_ok());
    assert!(matches!(
        calibration_point(&profiler, Family::Fc, 0),
        Err(Error::Library(multitpu::Error::Invalid { .. }))
    ));
}
