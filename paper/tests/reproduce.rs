//! The paper's reproduction: the measuring-scheme fit against the 2-device files, and the
//! `reproduce` binary's quick run and its output files. (The event-level pipeline model is
//! set beside real pipelines by the `event_model` binary, which prints figures: a timing
//! asserted in a test would fail on a loaded machine.)

// The library's test helpers: the same environment variables and skip rules.
#[path = "../../tests/common/mod.rs"]
mod common;

use multitpu_paper::calibration::{Family, load_dir, load_pipeline_dir};
use multitpu_paper::reproduce::scheme::{PaperScheme, SchemePoint, fit_scheme};
use multitpu_paper::reproduce::{
    Setup, compare_with_calibration, errors_per_series, measured_stage_latencies,
};
use std::path::PathBuf;
use std::process::Command;

fn calibration_dir() -> Option<PathBuf> {
    common::require_env("MULTITPU_CALIBRATION", "the calibration folder").map(PathBuf::from)
}

/// Fitted on the 2-device files, the measuring programs come out as built in, and every file
/// is predicted with a median relative error of at most 10 % (docs/reproduction.md).
#[test]
fn scheme_fit_and_fidelity() {
    let Some(dir) = calibration_dir() else { return };
    let single = load_dir(&dir).expect("single-device data");
    let pipelines = load_pipeline_dir(&dir.join("pipelines")).expect("2-device data");
    let setup = Setup::default();
    for (family, built_in) in [
        (Family::Fc, PaperScheme::python_threads()),
        (Family::Conv, PaperScheme::pycoral_runner()),
    ] {
        let points: Vec<SchemePoint> = pipelines
            .iter()
            .filter(|p| p.family == family && p.devices() == 2)
            .map(|p| SchemePoint {
                device_latency_s: measured_stage_latencies(p, &setup.cost_model).expect("cuts"),
                measured_s: p.latency_ms * 1e-3,
            })
            .collect();
        let fitted = fit_scheme(&built_in, &points).expect("fits");
        assert!(
            (fitted.per_stage_item_s - built_in.per_stage_item_s).abs() < 1e-6,
            "{fitted:?}"
        );
        assert!(
            (fitted.per_batch_s - built_in.per_batch_s).abs() < 1e-5,
            "{fitted:?}"
        );
    }

    let rows = compare_with_calibration(&single, &pipelines, &setup).expect("compares");
    let series = errors_per_series(&rows);
    for (family, split) in [
        (Family::Fc, "single"),
        (Family::Conv, "single"),
        (Family::Fc, "layers"),
        (Family::Conv, "compiler"),
        (Family::Conv, "profiled"),
    ] {
        let errors = series
            .iter()
            .find(|s| s.family == family && s.split == split)
            .unwrap_or_else(|| panic!("no {family} {split} series"));
        eprintln!("{errors:?}");
        assert!(errors.points > 0, "{errors:?}");
        assert!(errors.median_error <= 0.10, "{errors:?}");
        if let Some(strategy) = errors.strategy_median_error {
            assert!(strategy <= 0.10, "{errors:?}");
        }
    }
}

/// `reproduce --quick` writes every CSV with the documented columns, every plot, and a
/// headline of one speedup per family and device count, under a title that says the devices
/// are simulated.
#[test]
fn quick_run_writes_every_file() {
    let out = std::env::temp_dir().join(format!("multitpu-reproduce-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut command = Command::new(env!("CARGO_BIN_EXE_reproduce"));
    command.arg("--quick").arg("--out").arg(&out);
    let calibration = std::env::var_os("MULTITPU_CALIBRATION");
    if let Some(dir) = &calibration {
        command.arg("--calibration").arg(dir);
    }
    let output = command.output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // One line per family and device count: `  fc   2 devices:   41.2x  (...)`.
    let headline: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" device:") || l.contains(" devices:"))
        .collect();
    assert_eq!(headline.len(), 2 * 4, "{stdout}");
    for line in headline {
        let speedup = line
            .split(':')
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|s| s.strip_suffix('x'))
            .and_then(|s| s.parse::<f64>().ok());
        assert!(speedup.is_some_and(|s| s > 0.0), "{line}");
    }
    assert!(stdout.contains("best speedup over one device"), "{stdout}");
    assert!(stdout.contains("(simulated USB Edge TPUs)"), "{stdout}");

    let header = |name: &str| {
        let text = std::fs::read_to_string(out.join(name)).expect(name);
        let rows = text.lines().count() - 1;
        (text.lines().next().unwrap_or_default().to_string(), rows)
    };
    for family in ["fc", "conv"] {
        let (single, rows) = header(&format!("{family}_single.csv"));
        assert_eq!(single, "size,on_chip_mib,off_chip_mib,ms");
        assert!(rows >= 4, "{family}: {rows} rows");
        let (pipeline, rows) = header(&format!("{family}_pipeline.csv"));
        assert_eq!(
            pipeline,
            "size,tpus,strategy,cuts,on_chip_mib,off_chip_mib,ms_per_inference,paper_scheme_ms,speedup"
        );
        assert!(rows >= 4 * 4 * 4, "{family}: {rows} rows");
        for svg in [
            format!("{family}_single.svg"),
            format!("{family}_speedup.svg"),
        ] {
            let text = std::fs::read_to_string(out.join(&svg)).expect(&svg);
            assert!(
                text.starts_with("<svg") || text.starts_with("<?xml"),
                "{svg}"
            );
            assert!(text.contains("simulated"), "{svg} must say simulated");
        }
    }
    let manifest = std::fs::read_to_string(out.join("manifest.txt")).expect("manifest");
    assert!(
        manifest.contains("fc_pipeline.csv: simulated USB Edge TPUs"),
        "{manifest}"
    );
    if calibration.is_some() {
        for name in [
            "calibration_fc_single_1tpu.svg",
            "calibration_conv_single_1tpu.svg",
            "calibration_fc_layers_2tpu.svg",
            "calibration_conv_compiler_2tpu.svg",
            "calibration_conv_profiled_2tpu.svg",
        ] {
            assert!(out.join(name).exists(), "{name}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
