//! The models a provider serves, from its `[provider]` section: the local store's files opened
//! on their backend (llama.cpp for GGUF chat and completion models, behind the `llama-cpp`
//! feature; candle for embedding models; the test engine for tests), each with its ledger listing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_inference::SchedulerConfig;
use agora_inference::backends::test_engine::{TestEngine, TestEngineConfig};
use agora_inference::store::{self, ModelKind, ModelStore};
use agora_provider::register::ModelListing;
use agora_provider::{ModelEngine, Price, ServedModel};
use agora_types::Hash;

use crate::config::{AuditConfig, ProviderConfig};

/// The test engine's name: chat-capable, and plainly not a language model.
pub const TEST_ENGINE_MODEL: &str = "agora-test-engine-instruct";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "{} not in {dir}; run `agora models pull {}` (or `scripts/fetch-models.sh {dir}`)",
        names_phrase(.names), .names.join("` and `agora models pull ")
    )]
    Missing { names: Vec<String>, dir: String },
    #[error("no model to serve")]
    NoModel,
    #[error("{name}: {message}")]
    Open { name: String, message: String },
}

fn names_phrase(names: &[String]) -> String {
    match names {
        [one] => format!("model {one:?} is"),
        many => format!(
            "models {} are",
            many.iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// One served model as the operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedInfo {
    pub name: String,
    pub sha256: Hash,
    pub kind: ModelKind,
}

impl ServedInfo {
    /// What a model handed to the builder ready-made can do, read from its engine.
    pub fn of(m: &ServedModel) -> ServedInfo {
        let known = store::known(&m.name).map(|k| k.kind);
        let kind = match &m.engine {
            ModelEngine::Embed { .. } => ModelKind::Embedding,
            ModelEngine::Generate(_) => known.unwrap_or(ModelKind::Chat),
        };
        ServedInfo {
            name: m.name.clone(),
            sha256: m.sha256,
            kind,
        }
    }
}

/// The first model that answers `/v1/chat/completions`.
pub fn first_chat_model(models: &[ServedInfo]) -> Option<&ServedInfo> {
    models.iter().find(|m| m.kind == ModelKind::Chat)
}

/// Checks that every model the section names is in the store, before anything starts.
pub fn check_present(p: &ProviderConfig) -> Result<(), ModelError> {
    if p.test_engine.is_some() {
        return Ok(());
    }
    if p.models.is_empty() {
        return Err(ModelError::NoModel);
    }
    let store = ModelStore::new(&p.models_dir);
    let names: Vec<String> = p
        .models
        .iter()
        .filter(|name| !store.resolve(name).is_some_and(|path| path.exists()))
        .cloned()
        .collect();
    if names.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Missing {
            names,
            dir: store.dir().display().to_string(),
        })
    }
}

/// Opens the served models with their ledger listings at `price`.
pub fn load(
    p: &ProviderConfig,
    price: Price,
) -> Result<Vec<(ServedModel, ModelListing)>, ModelError> {
    check_present(p)?;
    if let Some(step_ms) = p.test_engine {
        return Ok(vec![test_engine(step_ms, p.slots, price)?]);
    }
    let store = ModelStore::new(&p.models_dir);
    p.models
        .iter()
        .map(|name| {
            let path = store.resolve(name).ok_or_else(|| ModelError::Missing {
                names: vec![name.clone()],
                dir: store.dir().display().to_string(),
            })?;
            open(name, &path, p, price)
        })
        .collect()
}

/// The models an auditor replays, opened like a provider's (hidden states on, one sequence):
/// (the file's sha256, the scheduler). Embedding models are refused: they are not audited.
pub fn load_auditors(
    a: &AuditConfig,
) -> Result<Vec<(Hash, Arc<agora_inference::Scheduler>)>, ModelError> {
    let p = ProviderConfig {
        models: a.models.clone(),
        models_dir: a.models_dir.clone(),
        threads: a.threads,
        slots: 1,
        ..ProviderConfig::default()
    };
    let free = Price {
        input_per_million: agora_types::Amount(0),
        output_per_million: agora_types::Amount(0),
    };
    load(&p, free)?
        .into_iter()
        .map(|(m, _)| match m.engine {
            ModelEngine::Generate(s) => Ok((m.sha256, s)),
            ModelEngine::Embed { .. } => Err(ModelError::Open {
                name: m.name,
                message: "embedding models are not audited".into(),
            }),
        })
        .collect()
}

fn open_error(name: &str) -> impl Fn(&dyn std::fmt::Display) -> ModelError + '_ {
    move |e| ModelError::Open {
        name: name.to_string(),
        message: e.to_string(),
    }
}

fn test_engine(
    step_ms: u64,
    slots: u32,
    price: Price,
) -> Result<(ServedModel, ModelListing), ModelError> {
    let scheduler = TestEngine::spawn(
        TestEngineConfig {
            step_delay: Duration::from_millis(step_ms),
            n_seq: slots,
            ..TestEngineConfig::default()
        },
        SchedulerConfig::default(),
    )
    .map_err(|e| open_error(TEST_ENGINE_MODEL)(&e))?;
    let sha = Hash::of(agora_types::HashDomain::Request, b"agora test engine v1");
    Ok((
        ServedModel {
            sha256: sha,
            name: TEST_ENGINE_MODEL.into(),
            price,
            engine: ModelEngine::Generate(Arc::new(scheduler)),
        },
        listing(
            sha,
            TEST_ENGINE_MODEL,
            "test-engine",
            ModelKind::Chat,
            "Apache-2.0",
            price,
        ),
    ))
}

fn open(
    name: &str,
    path: &Path,
    p: &ProviderConfig,
    price: Price,
) -> Result<(ServedModel, ModelListing), ModelError> {
    let err = open_error(name);
    let known = store::known(name);
    let pinned = known
        .and_then(|k| k.files.first())
        .map(|f| f.sha256.to_string());
    let kind = known.map_or(ModelKind::Chat, |k| k.kind);
    let licence = known.map_or("unknown", |k| k.licence);
    match kind {
        ModelKind::Embedding => {
            let dir: PathBuf = if path.is_dir() {
                path.to_path_buf()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let embedder =
                agora_inference::backends::candle::BertEmbedder::load(&dir).map_err(|e| err(&e))?;
            let tokenizer_path = dir.join("tokenizer.json");
            let mut tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
                .map_err(|e| err(&format!("{}: {e}", tokenizer_path.display())))?;
            // Billed tokens are the ones the model reads: the tokenizer file pads every input
            // to 128, and padding is not work (a gateway refuses a count above the input's bytes).
            tokenizer.with_padding(None);
            let sha = sha_of(name, &dir.join("model.safetensors"), None)?;
            let count: Arc<dyn Fn(&str) -> usize + Send + Sync> = Arc::new(move |s: &str| {
                tokenizer
                    .encode(s, true)
                    .map_or(s.len() / 4 + 1, |e| e.len())
            });
            Ok((
                ServedModel {
                    sha256: sha,
                    name: name.to_string(),
                    price,
                    engine: ModelEngine::Embed {
                        embedder: Arc::new(embedder),
                        count_tokens: count,
                    },
                },
                listing(sha, name, "bert-embedding", kind, licence, price),
            ))
        }
        ModelKind::Chat | ModelKind::Completion => {
            let sha = sha_of(name, path, pinned)?;
            let scheduler = open_gguf(path, name, p)?;
            let family = if kind == ModelKind::Chat {
                "chat"
            } else {
                "base"
            };
            Ok((
                ServedModel {
                    sha256: sha,
                    name: name.to_string(),
                    price,
                    engine: ModelEngine::Generate(Arc::new(scheduler)),
                },
                listing(sha, name, family, kind, licence, price),
            ))
        }
    }
}

#[cfg(feature = "llama-cpp")]
fn open_gguf(
    path: &Path,
    name: &str,
    p: &ProviderConfig,
) -> Result<agora_inference::Scheduler, ModelError> {
    use agora_inference::backends::llama_cpp::{self, LlamaConfig};
    llama_cpp::serve(
        path,
        name,
        LlamaConfig {
            n_seq: p.slots,
            threads: p.threads,
            // Every generated response carries a proof over the sampled positions' hidden states.
            hidden_states: true,
            ..LlamaConfig::default()
        },
        SchedulerConfig::default(),
    )
    .map_err(|e| open_error(name)(&e))
}

#[cfg(not(feature = "llama-cpp"))]
fn open_gguf(
    _: &Path,
    name: &str,
    _: &ProviderConfig,
) -> Result<agora_inference::Scheduler, ModelError> {
    Err(open_error(name)(
        &"this binary was built without the llama-cpp feature",
    ))
}

fn listing(
    sha: Hash,
    name: &str,
    family: &str,
    kind: ModelKind,
    licence: &str,
    price: Price,
) -> ModelListing {
    ModelListing {
        sha256: sha,
        name: name.to_string(),
        family: family.into(),
        kind,
        license: licence.into(),
        royalty_bps: 0,
        price,
    }
}

/// The pinned sha256 (checked by `agora models verify`), or the file's own.
fn sha_of(name: &str, path: &Path, pinned: Option<String>) -> Result<Hash, ModelError> {
    let err = open_error(name);
    let hex = match pinned {
        Some(h) => h,
        None => store::sha256_file(path, &mut store::NoProgress)
            .map_err(|e| err(&format!("cannot hash {}: {e}", path.display())))?,
    };
    hex.parse()
        .map_err(|e| err(&format!("bad sha256 {hex}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_models_are_named_with_the_command_that_fetches_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProviderConfig {
            models_dir: dir.path().to_path_buf(),
            ..ProviderConfig::default()
        };
        let e = check_present(&p).unwrap_err().to_string();
        assert!(e.contains("agora models pull smollm2-135m-instruct"), "{e}");
        assert!(e.contains("all-minilm-l6-v2"), "{e}");
        assert!(e.contains("scripts/fetch-models.sh"), "{e}");
        let engine = ProviderConfig {
            test_engine: Some(0),
            ..p
        };
        assert!(check_present(&engine).is_ok());
    }

    #[test]
    fn the_chat_example_uses_a_chat_model() {
        let sha = Hash::of(agora_types::HashDomain::Request, b"x");
        let models = [
            ServedInfo {
                name: "all-minilm-l6-v2".into(),
                sha256: sha,
                kind: ModelKind::Embedding,
            },
            ServedInfo {
                name: "smollm2-135m-instruct".into(),
                sha256: sha,
                kind: ModelKind::Chat,
            },
        ];
        assert_eq!(
            first_chat_model(&models).map(|m| m.name.as_str()),
            Some("smollm2-135m-instruct")
        );
    }
}
