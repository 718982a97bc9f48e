//! Node configuration, one section per role: `[chain]`, `[validator]`, `[p2p]`, `[provider]`,
//! `[gateway]`, `[audit]`. Precedence: defaults < `agora.toml` < `AGORA__SECTION__KEY` environment
//! variables < command-line flags (applied by the binary). The commented default file is
//! `config/agora.toml`; a test parses it and compares it to [`NodeConfig::default`].
//!
//! Older layouts still load: a flat file (the chain keys at the top level) and a
//! `validator.toml` beside the config (as `agora testnet` writes it) when the file has no
//! `[validator]` section.

use crate::validator::ValidatorConfig;
use agora_ledger::Genesis;
use agora_p2p::Multiaddr;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub chain: ChainConfig,
    pub validator: ValidatorConfig,
    pub p2p: P2pConfig,
    pub provider: ProviderConfig,
    pub gateway: GatewayConfig,
    // Before `audit`, which tools that edit a written config expect last.
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
}

/// `[metrics]`: the process's Prometheus endpoint (every role's metrics, `GET /metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address; `None` (the default): no endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// The ledger: storage, genesis, the node's account, its RPC and mempool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// Where blocks and state are stored.
    pub data_dir: PathBuf,
    /// The genesis JSON file.
    pub genesis: PathBuf,
    /// Encrypted key file of this node's account (its validator identity).
    pub key_file: PathBuf,
    /// Address of the JSON RPC server.
    pub rpc_addr: SocketAddr,
    /// The ledger RPC a provider or gateway uses when this process runs no validator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_url: Option<String>,
    pub max_block_txs: usize,
    pub mempool_max_txs: usize,
    pub mempool_max_per_account: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            data_dir: PathBuf::from("agora-data"),
            genesis: PathBuf::from("genesis.json"),
            key_file: PathBuf::from("node-key.json"),
            rpc_addr: "127.0.0.1:8645".parse().expect("static address"),
            rpc_url: None,
            max_block_txs: 10_000,
            mempool_max_txs: 50_000,
            mempool_max_per_account: 256,
        }
    }
}

/// The libp2p overlay that providers and gateways meet on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pConfig {
    /// Listen address of this process's first overlay node (a second one, a provider beside a
    /// gateway, listens on port 0 and bootstraps from the first).
    pub listen: Multiaddr,
    /// Overlay peers to bootstrap from (`/ip4/.../tcp/.../p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Inbound requests per second accepted from one peer (gateways send one stream per
    /// request and vouchers beside them), and the burst above it.
    pub requests_per_sec: f64,
    pub request_burst: f64,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: "/ip4/0.0.0.0/tcp/4100".parse().expect("static address"),
            bootstrap: Vec::new(),
            requests_per_sec: 5_000.0,
            request_burst: 10_000.0,
        }
    }
}

/// Serving models to the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Key file of the provider's account (default: `chain.key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Models to serve: known names (`agora models list`) or GGUF paths.
    pub models: Vec<String>,
    /// The local model store.
    pub models_dir: PathBuf,
    /// Serve the deterministic test engine instead of the models (tests and benchmarks only;
    /// it is not a language model): its per-step delay in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_engine: Option<u64>,
    /// Prices per million prompt / generated tokens, in AGR.
    pub input_price: String,
    pub output_price: String,
    /// Self-bonded stake to hold, in AGR.
    pub stake: String,
    /// CPU threads per model.
    pub threads: u32,
    /// Concurrent sequences per model.
    pub slots: u32,
    /// Where held vouchers are kept (default: `<chain.data_dir>/services`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            key: None,
            models: vec!["smollm2-135m-instruct".into(), "all-minilm-l6-v2".into()],
            models_dir: PathBuf::from("models"),
            test_engine: None,
            input_price: "0.05".into(),
            output_price: "0.1".into(),
            stake: "100".into(),
            threads: 2,
            slots: 4,
            state_dir: None,
        }
    }
}

/// The OpenAI-compatible gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Key file of the gateway's paying account (default: `chain.key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The API-key book (JSON; created if missing; default: `<state_dir>/api-keys.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<PathBuf>,
    /// How long to wait for a provider's next frame before failing over, in ms.
    pub stall_ms: u64,
    /// How often the receipts kept since the last commitment are committed on the ledger for
    /// audit, in ms.
    pub commit_ms: u64,
    /// Where the channel journal, receipts and audit batches are kept (default:
    /// `<chain.data_dir>/services`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

/// A validator's auditor: the models it replays and the gateways whose commitments it follows.
/// Off while `models` is empty (or without a validator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Models to audit: known names (`agora models list`) or GGUF paths; each must be the very
    /// file providers registered (its sha256).
    pub models: Vec<String>,
    /// The local model store.
    pub models_dir: PathBuf,
    /// CPU threads per model.
    pub threads: u32,
    /// Base URLs of the gateways to follow (`http://host:port`).
    pub gateways: Vec<String>,
    /// Also score the providers of every market from what the auditor sees, and commit and
    /// reveal weights each incentive epoch (`agora_audit::scorer`).
    pub score: bool,
    /// A gateway's OpenAI base URL (`http://host:port/v1`) for the scorer's own timed requests
    /// (latency and throughput); empty: no probes.
    pub probe_gateway: String,
    /// The API key those requests use (the validator pays for them like any customer).
    pub probe_api_key: String,
    /// Probes per market per incentive epoch.
    pub probes_per_epoch: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            models: Vec::new(),
            models_dir: PathBuf::from("models"),
            threads: 2,
            gateways: Vec::new(),
            score: true,
            probe_gateway: String::new(),
            probe_api_key: String::new(),
            probes_per_epoch: 4,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            key: None,
            listen: "127.0.0.1:8646".parse().expect("static address"),
            api_keys: None,
            stall_ms: 10_000,
            commit_ms: 10_000,
            state_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// Path keys, per section, that a file may give relative to its own directory.
const PATHS: &[(&str, &str)] = &[
    ("chain", "data_dir"),
    ("chain", "genesis"),
    ("chain", "key_file"),
    ("provider", "key"),
    ("provider", "models_dir"),
    ("provider", "state_dir"),
    ("gateway", "key"),
    ("gateway", "api_keys"),
    ("gateway", "state_dir"),
];

/// The section a key of the old one-section layout belongs to.
fn legacy_section(key: &str) -> &'static str {
    if key == "idle_block_ms" {
        "validator"
    } else {
        "chain"
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn section<'t>(table: &'t mut toml::Table, name: &str) -> &'t mut toml::Table {
    let entry = table
        .entry(name.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    match entry {
        toml::Value::Table(t) => t,
        _ => unreachable!("replaced by a table above"),
    }
}

/// An environment value read as the type the key has in the defaults, so `"100"` stays a
/// string where an AGR amount is expected and `["a", "b"]` is a list.
fn env_value(default: Option<&toml::Value>, raw: &str) -> Result<toml::Value, String> {
    let as_toml = || {
        format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    Ok(match default {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.parse().map_err(|_| "expected an integer".to_string())?)
        }
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(raw.parse().map_err(|_| "expected a number".to_string())?)
        }
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            raw.parse()
                .map_err(|_| "expected true or false".to_string())?,
        ),
        Some(toml::Value::Array(_) | toml::Value::Table(_)) => {
            as_toml().ok_or_else(|| "expected a TOML list or table".to_string())?
        }
        // Optional keys (absent from the defaults): integers and booleans as such, else text.
        _ => raw
            .parse::<i64>()
            .map(toml::Value::Integer)
            .or_else(|_| raw.parse::<bool>().map(toml::Value::Boolean))
            .unwrap_or_else(|_| toml::Value::String(raw.to_string())),
    })
}

impl NodeConfig {
    /// Reads a TOML file (if given) over the defaults, then applies `AGORA__SECTION__KEY`
    /// variables. Relative paths in the file are taken relative to the file's directory.
    pub fn load(path: Option<&Path>) -> Result<NodeConfig, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`NodeConfig::load`] with the environment given.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<NodeConfig, ConfigError> {
        let where_ = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "environment".into());
        let mut table = match path {
            Some(p) => read_table(p)?,
            None => toml::Table::new(),
        };
        // The old one-section layout: chain keys at the top level.
        let flat: Vec<String> = table
            .iter()
            .filter(|(_, v)| !v.is_table())
            .map(|(k, _)| k.clone())
            .collect();
        let beside = path.and_then(Path::parent);
        let validator_toml = beside.map(|d| d.join("validator.toml"));
        if !table.contains_key("validator")
            && let Some(v) = validator_toml.filter(|p| p.exists())
        {
            table.insert("validator".into(), toml::Value::Table(read_table(&v)?));
        }
        for key in flat {
            if let Some(v) = table.remove(&key) {
                section(&mut table, legacy_section(&key))
                    .entry(key)
                    .or_insert(v);
            }
        }
        let defaults =
            toml::Table::try_from(NodeConfig::default()).map_err(|e| ConfigError::Parse {
                path: "defaults".into(),
                message: e.to_string(),
            })?;
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix("AGORA__") else {
                continue;
            };
            let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            let (sect, key) = match parts.as_slice() {
                // The old one-section names: AGORA__RPC_ADDR, AGORA__NODE__RPC_ADDR.
                [k] => (legacy_section(k).to_string(), k.clone()),
                [s, k] if s == "node" => (legacy_section(k).to_string(), k.clone()),
                [s, k] if defaults.contains_key(s) => (s.clone(), k.clone()),
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: "unknown section".into(),
                    });
                }
            };
            let default = defaults
                .get(&sect)
                .and_then(|s| s.as_table())
                .and_then(|s| s.get(&key));
            let v = env_value(default, &raw).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
            section(&mut table, &sect).insert(key, v);
        }
        if let Some(dir) = beside {
            // The chain's default paths, too, live beside the file.
            let chain_defaults = defaults.get("chain").and_then(toml::Value::as_table);
            for key in ["data_dir", "genesis", "key_file"] {
                if let Some(d) = chain_defaults.and_then(|c| c.get(key)) {
                    section(&mut table, "chain")
                        .entry(key)
                        .or_insert_with(|| d.clone());
                }
            }
            for (sect, key) in PATHS {
                let s = section(&mut table, sect);
                if let Some(toml::Value::String(p)) = s.get(*key)
                    && Path::new(p).is_relative()
                {
                    let joined = dir.join(p).display().to_string();
                    s.insert(key.to_string(), toml::Value::String(joined));
                }
            }
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: where_,
                message: e.to_string(),
            })
    }

    pub fn load_genesis(&self) -> Result<Genesis, ConfigError> {
        self.chain.load_genesis()
    }
}

impl ChainConfig {
    pub fn load_genesis(&self) -> Result<Genesis, ConfigError> {
        let path = self.genesis.display().to_string();
        let meta = std::fs::metadata(&self.genesis).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.len() > 64 * 1024 * 1024 {
            return Err(ConfigError::Parse {
                path,
                message: "genesis file larger than 64 MiB".into(),
            });
        }
        let text = std::fs::read_to_string(&self.genesis).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path,
            message: e.to_string(),
        })
    }

    /// Where a provider or gateway keeps its files unless its section says otherwise.
    pub fn services_dir(&self) -> PathBuf {
        self.data_dir.join("services")
    }
}

#[cfg(test)]
mod tests;
