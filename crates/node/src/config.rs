//! Node configuration: defaults < `agora.toml` < `AGORA__SECTION__KEY` environment variables <
//! command-line flags (applied by the binary). The commented default file is
//! `config/agora.toml`; a test parses it.

use agora_ledger::Genesis;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where blocks and state are stored.
    pub data_dir: PathBuf,
    /// The genesis JSON file.
    pub genesis: PathBuf,
    /// Encrypted key file of this node's account (its validator identity).
    pub key_file: PathBuf,
    /// Address of the JSON RPC server.
    pub rpc_addr: SocketAddr,
    /// A one-validator node (no validator.toml): with no transaction waiting, an empty block
    /// every this many ms keeps finality moving. Waiting transactions go into a block at once.
    pub idle_block_ms: u64,
    pub max_block_txs: usize,
    pub mempool_max_txs: usize,
    pub mempool_max_per_account: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("agora-data"),
            genesis: PathBuf::from("genesis.json"),
            key_file: PathBuf::from("node-key.json"),
            rpc_addr: "127.0.0.1:8645".parse().expect("static address"),
            idle_block_ms: 1_000,
            max_block_txs: 10_000,
            mempool_max_txs: 50_000,
            mempool_max_per_account: 256,
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

impl NodeConfig {
    /// Reads a TOML file (if given) over the defaults, then applies `AGORA__*` variables.
    /// Relative paths in the file are taken relative to the file's directory.
    pub fn load(path: Option<&Path>) -> Result<NodeConfig, ConfigError> {
        let mut value = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: p.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for (var, raw) in std::env::vars() {
            let Some(rest) = var.strip_prefix("AGORA__") else {
                continue;
            };
            let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            // Single-section config today: AGORA__NODE__RPC_ADDR or AGORA__RPC_ADDR.
            let key = match parts.as_slice() {
                [k] => k.clone(),
                [section, k] if section == "node" => k.clone(),
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: "unknown section".into(),
                    });
                }
            };
            let v = raw
                .parse::<i64>()
                .map(toml::Value::Integer)
                .or_else(|_| raw.parse::<bool>().map(toml::Value::Boolean))
                .unwrap_or(toml::Value::String(raw));
            value.insert(key, v);
        }
        let mut cfg: NodeConfig =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "environment".into()),
                    message: e.to_string(),
                })?;
        if let Some(dir) = path.and_then(Path::parent) {
            for p in [&mut cfg.data_dir, &mut cfg.genesis, &mut cfg.key_file] {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        Ok(cfg)
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_config_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/agora.toml");
        let cfg = NodeConfig::load(Some(&path)).expect("config/agora.toml parses");
        let d = NodeConfig::default();
        assert_eq!(cfg.rpc_addr, d.rpc_addr);
        assert_eq!(cfg.idle_block_ms, d.idle_block_ms);
        assert_eq!(cfg.mempool_max_txs, d.mempool_max_txs);
        assert!(cfg.data_dir.ends_with("agora-data"));
    }
}
