use super::*;

/// The package's directory as the test runner gives it when the test runs (cargo and nextest set
/// it), not as it was when the binary was built: a warm build cache may hold a binary built in
/// another checkout.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn shipped_default_config_parses_and_matches_defaults() {
    let path = Path::new(&manifest_dir()).join("../../config/agora.toml");
    let cfg = NodeConfig::load_with_env(Some(&path), no_env()).expect("config/agora.toml parses");
    let dir = path.parent().unwrap();
    let mut want = NodeConfig::default();
    for p in [
        &mut want.chain.data_dir,
        &mut want.chain.genesis,
        &mut want.chain.key_file,
        &mut want.provider.models_dir,
    ] {
        *p = dir.join(&*p);
    }
    assert_eq!(cfg, want);
    assert!(cfg.chain.data_dir.ends_with("agora-data"));
}

#[test]
fn environment_overrides_the_file_by_section_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.toml");
    std::fs::write(
        &path,
        "[chain]\nrpc_addr = \"127.0.0.1:1\"\n[provider]\nstake = \"5\"\nthreads = 8\n",
    )
    .unwrap();
    let env = [
        ("AGORA__PROVIDER__STAKE", "200"),
        ("AGORA__GATEWAY__STALL_MS", "5"),
        ("AGORA__P2P__BOOTSTRAP", "[\"/ip4/127.0.0.1/tcp/9\"]"),
        ("AGORA__VALIDATOR__IDLE_BLOCK_MS", "7"),
        ("AGORA__NODE__MEMPOOL_MAX_TXS", "3"),
        ("AGORA_PASSWORD", "not a config key"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let cfg = NodeConfig::load_with_env(Some(&path), env).unwrap();
    assert_eq!(cfg.chain.rpc_addr, "127.0.0.1:1".parse().unwrap());
    assert_eq!(cfg.provider.stake, "200");
    assert_eq!(cfg.provider.threads, 8);
    assert_eq!(cfg.gateway.stall_ms, 5);
    assert_eq!(cfg.p2p.bootstrap.len(), 1);
    assert_eq!(cfg.validator.idle_block_ms, 7);
    assert_eq!(cfg.chain.mempool_max_txs, 3);
    assert_eq!(cfg.chain.data_dir, dir.path().join("agora-data"));

    let bad = [("AGORA__NOPE__KEY".to_string(), "1".to_string())];
    assert!(matches!(
        NodeConfig::load_with_env(Some(&path), bad),
        Err(ConfigError::Env { .. })
    ));
    let bad = [("AGORA__GATEWAY__STALL_MS".to_string(), "soon".to_string())];
    assert!(NodeConfig::load_with_env(Some(&path), bad).is_err());
}

#[test]
fn flat_file_and_validator_toml_beside_it_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.toml");
    std::fs::write(
        &path,
        "data_dir = \"data\"\nrpc_addr = \"127.0.0.1:2\"\nidle_block_ms = 300\n",
    )
    .unwrap();
    let cfg = NodeConfig::load_with_env(Some(&path), no_env()).unwrap();
    assert_eq!(cfg.chain.data_dir, dir.path().join("data"));
    assert_eq!(cfg.chain.rpc_addr, "127.0.0.1:2".parse().unwrap());
    assert_eq!(cfg.validator.idle_block_ms, 300);
    assert!(cfg.validator.peers.is_empty());

    let me = agora_types::SecretKey::from_test_seed("v");
    let endpoint: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let beside = ValidatorConfig {
        listen: endpoint,
        peers: vec![crate::validator::PeerConfig {
            address: me.public(),
            endpoint,
        }],
        idle_block_ms: 100,
        ..ValidatorConfig::default()
    };
    std::fs::write(
        dir.path().join("validator.toml"),
        toml::to_string(&beside).unwrap(),
    )
    .unwrap();
    let cfg = NodeConfig::load_with_env(Some(&path), no_env()).unwrap();
    assert_eq!(cfg.validator.listen, "127.0.0.1:9".parse().unwrap());
    assert_eq!(cfg.validator.peers.len(), 1);
    // validator.toml's own value wins over the flat file's.
    assert_eq!(cfg.validator.idle_block_ms, 100);
}

#[test]
fn unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.toml");
    std::fs::write(&path, "[gateway]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    assert!(matches!(
        NodeConfig::load_with_env(Some(&path), no_env()),
        Err(ConfigError::Parse { .. })
    ));
}
