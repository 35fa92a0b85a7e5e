//! The best plan of each model for budgets of 1 to N Edge TPUs, by the profiled planner over
//! the Edge TPU cost model (CPU segments by the CPU cost estimate).
//!
//! ```text
//! cargo run --release --example plans -- MODEL... [--max-devices N] [--link usb|pcie]
//! ```
//!
//! MODEL is a `.tflite` file, `fc:N` or `conv:F` (the paper's models, built in memory). For
//! each model and budget, prints one line:
//! `<model> budget=<b> devices=<used> bottleneck_ms=<predicted> items_per_s=<predicted>
//! speedup=<over one device> plan=<segments>`, each segment written as where it runs
//! (`edgetpu`, `edgetpu x2` for two replicas, `cpu`) and its operators. Every figure is a prediction of the
//! cost models, not a measurement.

use std::error::Error;
use std::process::ExitCode;

use multitpu::device::{CpuCostModel, EdgeTpuCostModel};
use multitpu::model::{Graph, Model, paper};
use multitpu::segment::{Plan, Profiled, Segmenter};

const USAGE: &str = "usage: plans MODEL... [--max-devices N] [--link usb|pcie]";

fn load(spec: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    match paper::from_spec(spec)? {
        Some(model) => Ok(model.to_bytes()?),
        None => Ok(std::fs::read(spec).map_err(|e| format!("{spec}: {e}"))?),
    }
}

/// `edgetpu[0..5] edgetpu x2[5..6] cpu[6..7]`.
fn describe(plan: &Plan) -> String {
    plan.segments
        .iter()
        .map(|s| format!("{}[{}..{}]", s.runs_on(), s.ops.start, s.ops.end))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut models = Vec::new();
    let mut max_devices = 4;
    let mut cost_model = EdgeTpuCostModel::usb_default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--max-devices" => {
                max_devices = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n: &usize| n >= 1)
                    .ok_or("--max-devices needs a number of at least 1")?
            }
            "--link" => {
                cost_model = match args.next().as_deref() {
                    Some("usb") => EdgeTpuCostModel::usb_default(),
                    Some("pcie") => EdgeTpuCostModel::pcie_default(),
                    _ => return Err("--link needs usb or pcie".into()),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}").into()),
            model => models.push(model.to_string()),
        }
    }
    if models.is_empty() {
        return Err(USAGE.into());
    }
    let planner = Profiled::cost_model(cost_model).with_cpu_segments(CpuCostModel::default());
    for spec in &models {
        let bytes = load(spec)?;
        let model = Model::from_bytes(&bytes)?;
        let graph = Graph::new(&model)?;
        let mut one_device = None;
        for budget in 1..=max_devices {
            let plan = planner.plan(&graph, budget)?;
            let bottleneck = plan.bottleneck_s().ok_or("the plan has no predictions")?;
            let single = *one_device.get_or_insert(bottleneck);
            println!(
                "{spec} budget={budget} devices={} bottleneck_ms={:.3} items_per_s={:.1} \
                 speedup={:.2} plan={} (predicted)",
                plan.devices(),
                bottleneck * 1e3,
                1.0 / bottleneck,
                single / bottleneck,
                describe(&plan)
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
