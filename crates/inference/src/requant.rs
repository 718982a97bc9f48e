//! Derived GGUF files: a model re-quantized to another type, or with transformer layers made
//! identities. These are what a cheating provider would serve in place of the registered file
//! (the audit's cheater harness builds them); `examples/requant.rs` is the command-line wrapper.
//!
//! Every other tensor and all metadata are kept. Metadata keys and tensors are written in sorted
//! order and the conversion has no randomness, so one input gives the same bytes on every run.
//! The output is written to a temporary name beside it and renamed into place, so a concurrent
//! reader sees the whole file or none.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::quantized::{QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};

/// The quantization types (candle's), for [`requantize`]'s target.
pub use candle_core::quantized::GgmlDType;

/// Why a derived file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Gguf {
        path: PathBuf,
        source: candle_core::Error,
    },
    #[error("re-quantizing to {0:?} is not supported (Q8_0 or Q4_0)")]
    Target(GgmlDType),
    #[error("{path} has no tensor {tensor} (layer {layer} does not exist)")]
    NoLayer {
        path: PathBuf,
        layer: u32,
        tensor: String,
    },
}

/// Re-quantizes the Q4_1, Q5_0 and Q5_1 tensors of `input` to `target` (Q8_0 or Q4_0: the
/// types llama.cpp's batched llamafile sgemm kernels cover on x86) and sets `general.file_type`
/// to match. Returns how many tensors were converted.
pub fn requantize(input: &Path, output: &Path, target: GgmlDType) -> Result<usize, DeriveError> {
    let file_type = match target {
        GgmlDType::Q8_0 => 7u32,
        GgmlDType::Q4_0 => 2,
        other => return Err(DeriveError::Target(other)),
    };
    let mut converted = 0;
    rewrite(input, output, Some(file_type), |_, t| {
        Ok(match t.dtype() {
            GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
                converted += 1;
                QTensor::quantize(&t.dequantize(&Device::Cpu)?, target)?
            }
            _ => t,
        })
    })?;
    Ok(converted)
}

/// Makes each of `layers` an identity: zeroes its attention output and feed-forward down
/// projections (`blk.N.attn_output.*`, `blk.N.ffn_down.*`, weights and any biases), so the
/// residual stream passes through it unchanged. Serving the result computes what a provider that
/// skips those layers computes. Returns how many tensors were zeroed.
pub fn zero_layers(input: &Path, output: &Path, layers: &[u32]) -> Result<usize, DeriveError> {
    let ct = read_header(input)?;
    for &layer in layers {
        let tensor = format!("blk.{layer}.attn_output.weight");
        if !ct.tensor_infos.contains_key(&tensor) {
            let path = input.to_path_buf();
            return Err(DeriveError::NoLayer {
                path,
                layer,
                tensor,
            });
        }
    }
    let prefixes: Vec<String> = layers
        .iter()
        .flat_map(|l| {
            [
                format!("blk.{l}.attn_output."),
                format!("blk.{l}.ffn_down."),
            ]
        })
        .collect();
    let mut zeroed = 0;
    rewrite(input, output, None, |name, t| {
        if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            return Ok(t);
        }
        zeroed += 1;
        let zeros = Tensor::zeros(t.shape(), DType::F32, &Device::Cpu)?;
        QTensor::quantize(&zeros, t.dtype())
    })?;
    Ok(zeroed)
}

fn read_header(input: &Path) -> Result<gguf_file::Content, DeriveError> {
    let mut f = File::open(input).map_err(|source| DeriveError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    gguf_file::Content::read(&mut f).map_err(|source| DeriveError::Gguf {
        path: input.to_path_buf(),
        source,
    })
}

/// Copies `input` to `output` with each tensor passed through `map` (in name order), and
/// `general.file_type` replaced when `file_type` is given.
fn rewrite(
    input: &Path,
    output: &Path,
    file_type: Option<u32>,
    mut map: impl FnMut(&str, QTensor) -> candle_core::Result<QTensor>,
) -> Result<(), DeriveError> {
    let gguf = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DeriveError::Gguf { path, source }
    };
    let mut f = File::open(input).map_err(|source| DeriveError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let ct = gguf_file::Content::read(&mut f).map_err(gguf(input))?;
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let t = ct.tensor(&mut f, name, &Device::Cpu).map_err(gguf(input))?;
        tensors.push((name.as_str(), map(name, t).map_err(gguf(input))?));
    }
    let mut md: Vec<(&str, gguf_file::Value)> = ct
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    md.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in &mut md {
        match (*k, file_type) {
            ("general.file_type", Some(ft)) => *v = gguf_file::Value::U32(ft),
            // candle writes tensor data aligned to 32 bytes.
            ("general.alignment", _) => *v = gguf_file::Value::U32(32),
            _ => {}
        }
    }
    let md: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();

    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut part = output.as_os_str().to_owned();
    part.push(format!(
        ".{}.{}.part",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let part = PathBuf::from(part);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DeriveError::Io { path, source }
    };
    let written = File::create(&part).map_err(io(&part)).and_then(|file| {
        let mut w = BufWriter::new(file);
        gguf_file::write(&mut w, &md, &tensors).map_err(gguf(&part))?;
        let file = w.into_inner().map_err(|e| io(&part)(e.into_error()))?;
        file.sync_all().map_err(io(&part))
    });
    match written.and_then(|()| std::fs::rename(&part, output).map_err(io(output))) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}
