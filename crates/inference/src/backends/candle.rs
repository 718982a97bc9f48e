//! The candle backend: sentence embeddings (all-MiniLM-L6-v2) and the quantized-llama
//! comparison figures of `agora bench inference`.
//!
//! Embeddings follow sentence-transformers' recipe for this model: BERT encoder, mean pooling over
//! the attention mask, L2 normalisation. Texts are embedded in padded batches.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Longest input in tokens; longer texts are truncated (sentence-transformers uses 256 here).
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
pub const BATCH: usize = 32;

/// Loading an embedding model failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedLoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid config.json: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: cannot load the tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("{path}: cannot load the weights: {reason}")]
    Weights { path: PathBuf, reason: String },
}

/// Embedding some texts failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    #[error("the model failed: {0}")]
    Model(#[from] candle_core::Error),
    #[error("{count} texts in one request; the limit is {max}")]
    TooMany { count: usize, max: usize },
}

/// A sentence-embedding model.
pub trait Embedder {
    /// Width of the vectors.
    fn dim(&self) -> usize;
    /// One unit-length vector per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// A BERT-family sentence embedder on candle (CPU).
pub struct BertEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    device: Device,
}

impl BertEmbedder {
    /// Load `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EmbedLoadError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| EmbedLoadError::Io { path, source })
        };
        let cfg_path = dir.join("config.json");
        let config: Config =
            serde_json::from_slice(&read("config.json")?).map_err(|e| EmbedLoadError::Config {
                path: cfg_path.clone(),
                reason: e.to_string(),
            })?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?).map_err(|e| {
            EmbedLoadError::Tokenizer {
                path: tok_path.clone(),
                reason: e.to_string(),
            }
        })?;
        let weights_path = dir.join("model.safetensors");
        let device = Device::Cpu;
        let vb =
            VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DType::F32, &device)
                .map_err(|e| EmbedLoadError::Weights {
                    path: weights_path.clone(),
                    reason: e.to_string(),
                })?;
        let model = BertModel::load(vb, &config).map_err(|e| EmbedLoadError::Weights {
            path: weights_path,
            reason: e.to_string(),
        })?;
        Self::from_parts(model, tokenizer, config.hidden_size, device).map_err(|reason| {
            EmbedLoadError::Tokenizer {
                path: tok_path,
                reason,
            }
        })
    }

    /// Assemble an embedder from a model and tokenizer (unit tests use random weights).
    pub fn from_parts(
        model: BertModel,
        mut tokenizer: Tokenizer,
        dim: usize,
        device: Device,
    ) -> Result<Self, String> {
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            model,
            tokenizer,
            dim,
            device,
        })
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let n = enc.len();
        let len = enc.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &enc {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let types = Tensor::from_vec(types, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (n, dim)
        let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        let unit = mean.broadcast_div(&norm)?;
        Ok(unit.to_vec2::<f32>()?)
    }
}

impl Embedder for BertEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        const MAX_TEXTS: usize = 2048;
        if texts.len() > MAX_TEXTS {
            return Err(EmbedError::TooMany {
                count: texts.len(),
                max: MAX_TEXTS,
            });
        }
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}

/// Figures of candle's quantized llama on one GGUF file (for the benchmark's record).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandleLlamaBench {
    pub prompt_tokens: usize,
    pub prompt_tok_s: f64,
    pub gen_tokens: usize,
    pub gen_tok_s: f64,
    pub load_secs: f64,
}

/// Run candle's `quantized_llama` on `path`: one prefill of `prompt` and `n_gen` greedy steps.
/// Candle caps the context at 4096 positions; the caller keeps `prompt.len() + n_gen` below it.
pub fn bench_quantized_llama(
    path: &Path,
    prompt: &[u32],
    n_gen: usize,
) -> Result<CandleLlamaBench, candle_core::Error> {
    use candle_transformers::models::quantized_llama::ModelWeights;
    let t0 = Instant::now();
    let mut f = std::fs::File::open(path)?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut f)?;
    let device = Device::Cpu;
    let mut model = ModelWeights::from_gguf(content, &mut f, &device)?;
    let load_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let input = Tensor::new(prompt, &device)?.unsqueeze(0)?;
    let logits = model.forward(&input, 0)?;
    let mut next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
    let prompt_secs = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for i in 0..n_gen {
        let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
        let logits = model.forward(&input, prompt.len() + i)?;
        next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
    }
    let gen_secs = t2.elapsed().as_secs_f64();
    Ok(CandleLlamaBench {
        prompt_tokens: prompt.len(),
        prompt_tok_s: prompt.len() as f64 / prompt_secs,
        gen_tokens: n_gen,
        gen_tok_s: n_gen as f64 / gen_secs,
        load_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;

    /// A 2-layer BERT with random weights and a 7-word vocabulary.
    fn tiny() -> BertEmbedder {
        let vocab = ["[PAD]", "[UNK]", "the", "cat", "sat", "dog", "ran"]
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let mut tok = Tokenizer::new(model);
        tok.with_pre_tokenizer(Some(Whitespace {}));
        let config = Config {
            vocab_size: 7,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 32,
            type_vocab_size: 2,
            ..Config::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = BertModel::load(vb, &config).unwrap();
        // Give every weight a random value (some are created as constants).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut vars = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, var) in vars {
            let n = var.elem_count();
            let vals: Vec<f32> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1.5
                })
                .collect();
            var.set(&Tensor::from_vec(vals, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        BertEmbedder::from_parts(model, tok, 16, Device::Cpu).unwrap()
    }

    #[test]
    fn vectors_are_unit_length_and_padding_does_not_change_them() {
        let e = tiny();
        let alone = e.embed(&["the cat"]).unwrap();
        let batched = e.embed(&["the cat", "the dog sat and ran"]).unwrap();
        assert_eq!(alone[0].len(), 16);
        for v in &batched {
            let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-5, "{n}");
        }
        // "the cat" padded to the longer text's length must give the same vector.
        for (a, b) in alone[0].iter().zip(&batched[0]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let c = cosine(&batched[0], &batched[1]);
        assert!(
            c < 0.9999,
            "cosine {c} {:?} {:?}",
            &batched[0][..4],
            &batched[1][..4]
        );
    }

    #[test]
    fn too_many_texts_is_an_error() {
        let e = tiny();
        let texts = vec!["the"; 5000];
        assert!(matches!(e.embed(&texts), Err(EmbedError::TooMany { .. })));
        assert!(e.embed(&[]).unwrap().is_empty());
    }
}
