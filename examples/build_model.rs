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

use multitpu::model::paper;

const USAGE: &str = "usage: build_model fc|conv SIZE --out PATH";

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [family, size, flag, out] = args.as_slice() else {
        return Err(USAGE.into());
    };
    if flag != "--out" {
        return Err(USAGE.into());
    }
    let size: usize = size.parse().map_err(|e| format!("SIZE `{size}`: {e}"))?;
    let model = match family.as_str() {
        "fc" => paper::fc(size)?,
        "conv" => paper::conv(size)?,
        other => return Err(format!("unknown family `{other}`\n{USAGE}").into()),
    };
    let out = PathBuf::from(out);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = model.to_bytes()?;
    std::fs::write(&out, &bytes)?;
    println!(
        "built {family} {size}: {} operators, {} parameter bytes, {} bytes -> {}",
        model.operators.len(),
        paper::parameter_bytes(&model),
        bytes.len(),
        out.display()
    );
    Ok(())
}
