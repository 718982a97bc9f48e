//! `docs/rpc-openapi.yaml` is the document generated from the API types: it cannot drift.

use std::path::PathBuf;

/// The package's directory as the test runner gives it when the test runs (cargo and nextest set
/// it), not as it was when the binary was built: a warm build cache may hold a binary built in
/// another checkout.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

fn committed() -> PathBuf {
    PathBuf::from(manifest_dir()).join("../../docs/rpc-openapi.yaml")
}

#[test]
fn openapi_document_is_the_one_generated_from_the_types() {
    let generated = agora_rpc::openapi::document()
        .to_yaml()
        .expect("the document renders as YAML");
    let path = committed();
    if std::env::var_os("AGORA_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/rpc-openapi.yaml");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/rpc-openapi.yaml differs from the document the agora-rpc types generate; \
         rewrite it with `AGORA_BLESS=1 cargo test -p agora-rpc --test openapi`"
    );
}

#[test]
fn every_route_is_documented_once() {
    use agora_rpc::paths::*;
    let doc = agora_rpc::openapi::document();
    let mut documented: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    let mut routes = vec![
        STATUS,
        SUBMIT_TX,
        SUBMIT_BATCH,
        TX,
        ACCOUNTS,
        ACCOUNT,
        ACCOUNT_SPEND,
        PROVIDERS,
        PROVIDER,
        MODEL,
        CHANNEL,
        BLOCK,
        STATE_ROOT,
        SUPPLY,
        VALIDATORS,
        MARKETS,
        MARKET,
        MARKET_EPOCH,
    ];
    routes.sort_unstable();
    assert_eq!(documented, routes);
}
