//! Build one of the paper's synthetic models as a real `.tflite` file.
//!
//! ```text
//! cargo run --release --example build_model -- fc|conv SIZE --out PATH
//! ```
//!
//! `fc N`: float32 input of 64 → 4 × (Dense(N) + tanh) → Dense(10), int8-quantized.
//! `conv F`: 64×64×3 input → 5 × Conv2D(F, 3×3, same, ReLU), int8-quantized.
//! Both take float32 in and out, with QUANTIZE/DEQUANTIZE at the ends, as the paper's
//! post-training quantized models do.

use std::error::Error;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use multitpu::model::paper;

/// The paper's model families.
#[derive(Clone, Copy, ValueEnum)]
enum Family {
    /// 4 × (Dense(N) + tanh) → Dense(10) over a float32 input of 64.
    Fc,
    /// 5 × Conv2D(F, 3×3, same, ReLU) over a 64×64×3 input.
    Conv,
}

/// Build one of the paper's synthetic models as a real `.tflite` file.
#[derive(Parser)]
#[command(name = "build_model")]
struct Args {
    /// The model family.
    #[arg(value_enum)]
    family: Family,
    /// N (units per dense layer) for `fc`, F (filters per convolution) for `conv`.
    size: usize,
    /// Where to write the model (folders are created).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let (name, model) = match args.family {
        Family::Fc => ("fc", paper::fc(args.size)?),
        Family::Conv => ("conv", paper::conv(args.size)?),
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = model.to_bytes()?;
    std::fs::write(&args.out, &bytes)?;
    println!(
        "built {name} {}: {} operators, {} parameter bytes, {} bytes -> {}",
        args.size,
        model.operators.len(),
        paper::parameter_bytes(&model),
        bytes.len(),
        args.out.display()
    );
    Ok(())
}
