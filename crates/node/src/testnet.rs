//! Files for a local validator network on loopback: one genesis, and per validator a key file,
//! a node config and a validator config (`agora testnet --validators N --dir D`).
//!
//! ```text
//!   D/genesis.json            validators bonded at genesis, a funded faucet account
//!   D/faucet-key.json         the faucet's key (same password)
//!   D/node-<i>/agora.toml     node config: [chain] data dir, rpc 127.0.0.1:<rpc_base + i>;
//!                             [validator] listen 127.0.0.1:<p2p_base + i>, all peers
//!   D/node-<i>/validator.toml the [validator] section on its own
//!   D/node-<i>/node-key.json  the validator's key
//! ```

use crate::config::{ChainConfig, NodeConfig};
use crate::keystore;
use crate::validator::{PeerConfig, ValidatorConfig};
use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::{Genesis, Params};
use agora_types::{Amount, SecretKey};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where a testnet listens.
#[derive(Debug, Clone, Copy)]
pub struct TestnetPorts {
    pub rpc_base: u16,
    pub p2p_base: u16,
}

impl Default for TestnetPorts {
    fn default() -> Self {
        TestnetPorts {
            rpc_base: 18_645,
            p2p_base: 19_645,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    #[error("at least one validator is needed")]
    NoValidators,
    #[error("port range overflows")]
    Ports,
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// What [`write`] produced.
#[derive(Debug, Clone)]
pub struct Testnet {
    pub genesis: PathBuf,
    pub faucet_key: PathBuf,
    /// `node-<i>` directories, each with `agora.toml` and `validator.toml`.
    pub nodes: Vec<PathBuf>,
    pub rpc: Vec<SocketAddr>,
}

fn write_file(path: &Path, text: &str) -> Result<(), TestnetError> {
    std::fs::write(path, text).map_err(|e| TestnetError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Writes a testnet of `validators` fresh keys under `dir`, key files sealed with `password`
/// (Argon2 cost `kdf_cost_kib`).
pub fn write(
    dir: &Path,
    validators: usize,
    ports: TestnetPorts,
    password: &str,
    kdf_cost_kib: u32,
) -> Result<Testnet, TestnetError> {
    let hosts = vec![Ipv4Addr::LOCALHOST; validators];
    write_on(dir, &hosts, ports, password, kdf_cost_kib)
}

/// [`write`] with validator `i` on address `hosts[i]` (its RPC and validator ports there): a
/// network whose nodes live in separate network namespaces, as the chaos runner builds.
pub fn write_on(
    dir: &Path,
    hosts: &[Ipv4Addr],
    ports: TestnetPorts,
    password: &str,
    kdf_cost_kib: u32,
) -> Result<Testnet, TestnetError> {
    let validators = hosts.len();
    if validators == 0 {
        return Err(TestnetError::NoValidators);
    }
    let io = |path: &Path, e: &dyn std::fmt::Display| TestnetError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
    let keys: Vec<SecretKey> = (0..validators).map(|_| SecretKey::generate()).collect();
    let faucet = SecretKey::generate();
    let loopback = |base: u16, i: usize| -> Result<SocketAddr, TestnetError> {
        let port = u16::try_from(i)
            .ok()
            .and_then(|i| base.checked_add(i))
            .ok_or(TestnetError::Ports)?;
        Ok(SocketAddr::from((hosts[i], port)))
    };
    let genesis = Genesis {
        chain_id: "agora-testnet".to_string(),
        timestamp_ms: 0,
        params: Params::default(),
        accounts: std::iter::once(&faucet)
            .chain(keys.iter())
            .map(|k| GenesisAccount {
                address: k.public(),
                balance: Amount::from_agr(1_000_000),
            })
            .collect(),
        validators: keys
            .iter()
            .map(|k| GenesisValidator {
                address: k.public(),
                stake: Amount::from_agr(10_000),
            })
            .collect(),
    };
    let genesis_path = dir.join("genesis.json");
    let text = serde_json::to_string_pretty(&genesis).map_err(|e| io(&genesis_path, &e))?;
    write_file(&genesis_path, &text)?;
    let faucet_key = dir.join("faucet-key.json");
    keystore::save_with_cost(&faucet_key, &faucet, password, kdf_cost_kib, 1)
        .map_err(|e| io(&faucet_key, &e))?;
    let mut peers = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        peers.push(PeerConfig {
            address: k.public(),
            endpoint: loopback(ports.p2p_base, i)?,
        });
    }
    let mut nodes = Vec::new();
    let mut rpc = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir).map_err(|e| io(&node_dir, &e))?;
        let key_file = node_dir.join("node-key.json");
        keystore::save_with_cost(&key_file, k, password, kdf_cost_kib, 1)
            .map_err(|e| io(&key_file, &e))?;
        let rpc_addr = loopback(ports.rpc_base, i)?;
        let validator = ValidatorConfig {
            listen: peers[i].endpoint,
            peers: peers.clone(),
            idle_block_ms: 1_000,
            leader_timeout_ms: 2_000,
        };
        let node = NodeConfig {
            chain: ChainConfig {
                data_dir: PathBuf::from("data"),
                genesis: PathBuf::from("../genesis.json"),
                key_file: PathBuf::from("node-key.json"),
                rpc_addr,
                ..ChainConfig::default()
            },
            validator: validator.clone(),
            ..NodeConfig::default()
        };
        let path = node_dir.join("agora.toml");
        write_file(&path, &toml::to_string(&node).map_err(|e| io(&path, &e))?)?;
        // Also on its own, for tools and configs that read it beside the node config.
        let path = node_dir.join("validator.toml");
        write_file(
            &path,
            &toml::to_string(&validator).map_err(|e| io(&path, &e))?,
        )?;
        nodes.push(node_dir);
        rpc.push(rpc_addr);
    }
    Ok(Testnet {
        genesis: genesis_path,
        faucet_key,
        nodes,
        rpc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_testnet_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let net = write(dir.path(), 4, TestnetPorts::default(), "pw", 8).unwrap();
        assert_eq!(net.nodes.len(), 4);
        for node in &net.nodes {
            let cfg = NodeConfig::load(Some(&node.join("agora.toml"))).unwrap();
            let genesis = cfg.load_genesis().unwrap();
            let state = genesis.into_state().unwrap();
            let committee = agora_consensus::validators::committee_keys(&state).unwrap();
            assert_eq!(committee.len(), 4);
            let v = ValidatorConfig::load(&node.join("validator.toml")).unwrap();
            assert_eq!(v.peers.len(), 4);
            let key = keystore::load(&cfg.chain.key_file, "pw").unwrap();
            assert!(v.peers.iter().any(|p| p.address == key.public()));
            assert_eq!(
                v.listen,
                v.peers
                    .iter()
                    .find(|p| p.address == key.public())
                    .unwrap()
                    .endpoint
            );
        }
    }
}
