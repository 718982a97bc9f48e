//! Re-quantize a GGUF's Q4_1/Q5_0/Q5_1 weights to Q8_0 or Q4_0 (the types llama.cpp's batched
//! llamafile sgemm kernels cover on x86), keeping every other tensor and all metadata:
//! `cargo run -p agora-inference --example requant -- IN.gguf OUT.gguf q8_0|q4_0`.
//! Metadata keys and tensors are written in sorted order, so the output is reproducible.

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, target] = args.as_slice() else {
        eprintln!("usage: requant IN.gguf OUT.gguf q8_0|q4_0");
        std::process::exit(2);
    };
    let (dtype, file_type) = match target.as_str() {
        "q8_0" => (GgmlDType::Q8_0, 7u32),
        "q4_0" => (GgmlDType::Q4_0, 2u32),
        _ => {
            eprintln!("target must be q8_0 or q4_0");
            std::process::exit(2);
        }
    };
    let dev = Device::Cpu;
    let mut f = std::fs::File::open(input)?;
    let ct = gguf_file::Content::read(&mut f)?;
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    let mut converted = 0;
    for name in &names {
        let t = ct.tensor(&mut f, name, &dev)?;
        let t = match t.dtype() {
            GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
                converted += 1;
                QTensor::quantize(&t.dequantize(&dev)?, dtype)?
            }
            _ => t,
        };
        tensors.push((name.as_str(), t));
    }
    let mut md: Vec<(&str, gguf_file::Value)> = ct
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    md.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in &mut md {
        if *k == "general.file_type" {
            *v = gguf_file::Value::U32(file_type);
        }
    }
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = std::fs::File::create(output)?;
    gguf_file::write(&mut out, &md_refs, &t_refs)?;
    println!(
        "{output}: {converted} of {} tensors re-quantized to {target}",
        names.len()
    );
    Ok(())
}
