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

use clap::builder::RangedU64ValueParser;
use clap::{Parser, ValueEnum};
use multitpu::device::{CpuCostModel, EdgeTpuCostModel};
use multitpu::model::{Graph, Model, paper};
use multitpu::segment::{Plan, Profiled, Segmenter};

/// The link of the Edge TPUs the cost model prices.
#[derive(Clone, Copy, ValueEnum)]
enum Link {
    /// USB 3 devices.
    Usb,
    /// PCIe devices.
    Pcie,
}

/// The best plan of each model for budgets of 1 to N Edge TPUs (predictions of the cost
/// models).
#[derive(Parser)]
#[command(name = "plans")]
struct Args {
    /// A `.tflite` file, `fc:N` or `conv:F` (the paper's models, built in memory).
    #[arg(value_name = "MODEL", required = true)]
    models: Vec<String>,
    /// The largest budget of Edge TPUs to plan for.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    max_devices: usize,
    /// The link of the Edge TPUs the cost model prices.
    #[arg(long, value_enum, default_value_t = Link::Usb)]
    link: Link,
}

/// `edgetpu[0..5] edgetpu x2[5..6] cpu[6..7]`.
fn describe(plan: &Plan) -> String {
    plan.segments
        .iter()
        .map(|s| format!("{}[{}..{}]", s.runs_on(), s.ops.start, s.ops.end))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let cost_model = match args.link {
        Link::Usb => EdgeTpuCostModel::usb_default(),
        Link::Pcie => EdgeTpuCostModel::pcie_default(),
    };
    let planner = Profiled::cost_model(cost_model).with_cpu_segments(CpuCostModel::default());
    for spec in &args.models {
        let bytes = paper::load(spec)?;
        let model = Model::from_bytes(&bytes)?;
        let graph = Graph::new(&model)?;
        let mut one_device = None;
        for budget in 1..=args.max_devices {
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
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
