//! Re-quantize a GGUF's Q4_1/Q5_0/Q5_1 weights to Q8_0 or Q4_0, or make some of its layers
//! identities, keeping every other tensor and all metadata (`agora_inference::requant`):
//!
//! `cargo run -p agora-inference --example requant -- IN.gguf OUT.gguf q8_0|q4_0|skip=N,M,...`

use std::path::Path;
use std::process::ExitCode;

use agora_inference::requant::{self, GgmlDType};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, target] = args.as_slice() else {
        eprintln!("usage: requant IN.gguf OUT.gguf q8_0|q4_0|skip=N,M,...");
        return ExitCode::from(2);
    };
    let (input, output) = (Path::new(input), Path::new(output));
    let done = match target.as_str() {
        "q8_0" => requant::requantize(input, output, GgmlDType::Q8_0),
        "q4_0" => requant::requantize(input, output, GgmlDType::Q4_0),
        t => match t.strip_prefix("skip=").map(|l| {
            l.split(',')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
        }) {
            Some(Ok(layers)) => requant::zero_layers(input, output, &layers),
            _ => {
                eprintln!("the target must be q8_0, q4_0 or skip=N,M,...");
                return ExitCode::from(2);
            }
        },
    };
    match done {
        Ok(n) => {
            println!("{}: {n} tensors rewritten ({target})", output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("requant: {e}");
            ExitCode::FAILURE
        }
    }
}
