//! Audits on a local multi-process network: three `agora node` validator processes (simplex BFT,
//! each with an auditor over SmolLM2), and in this process a gateway, an honest provider serving
//! SmolLM2 and a cheater serving Gemma 3 under SmolLM2's registered hash at the same price. Every
//! receipt is audited (`audit_bps` = 10,000 in this genesis). The cheater is audited, slashed on
//! the ledger with two validators' failing verdicts and jailed; the gateway then routes around
//! it; the honest provider, audited on the same load, is never slashed. Both providers are
//! members of a market over SmolLM2: the validators' scorers probe them through the gateway,
//! commit and reveal weights from what they audited, timed and saw served, and Yuma pays the
//! honest provider and not the cheater.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_ledger::genesis::GenesisAccount;
use agora_node::builder::Role;
use agora_node::{NodeBuilder, NodeConfig, models};
use agora_types::receipt::SignedReceipt;
use agora_types::{Amount, SecretKey, receipt_id};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_agora");
const PASSWORD: &str = "e2e-audit";
const VALIDATORS: usize = 3;
const MODEL: &str = "smollm2-135m-instruct";
const API_KEY: &str = "sk-agora-e2e-audit";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn models_dir() -> PathBuf {
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let dir = std::env::var_os("AGORA_MODELS_DIR")
        .map_or_else(|| Path::new(&manifest).join("../../models"), PathBuf::from);
    for f in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ] {
        assert!(
            dir.join(f).exists(),
            "{} is missing: run `bash scripts/fetch-models.sh {}`",
            dir.join(f).display(),
            dir.display()
        );
    }
    dir.canonicalize().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `agora testnet` with every receipt audited and the test's accounts funded; each node gets an
/// `[audit]` section following `gateway`.
fn write_network(dir: &Path, base: u16, gateway: &str, funded: &[&SecretKey]) {
    let out = Command::new(BIN)
        .args(["testnet", "--validators", &VALIDATORS.to_string(), "--dir"])
        .arg(dir)
        .args(["--rpc-base", &base.to_string()])
        .args(["--p2p-base", &(base + 5).to_string()])
        .env("AGORA_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agora testnet: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("genesis.json");
    let mut genesis: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    genesis["params"]["audit_bps"] = json!(10_000);
    // Incentive epochs of 20 blocks, so the scorers' commit, reveal and the epoch that counts
    // them come round within the test; a small market deposit.
    genesis["params"]["incentives"]["epoch_blocks"] = json!(20);
    genesis["params"]["incentives"]["market_deposit"] = json!(Amount::from_agr(1).0.to_string());
    for k in funded {
        let a = GenesisAccount {
            address: k.public(),
            balance: Amount::from_agr(2_000),
        };
        genesis["accounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::to_value(a).unwrap());
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&genesis).unwrap()).unwrap();
    let models = models_dir();
    for i in 0..VALIDATORS {
        let cfg = dir.join(format!("node-{i}/agora.toml"));
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        // Replace the default (empty) `[audit]` section `agora testnet` wrote, the file's last.
        if let Some(at) = text.find("\n[audit]\n") {
            assert!(
                !text[at + 1..].contains("\n["),
                "[audit] is no longer the last section of {}",
                cfg.display()
            );
            text.truncate(at);
        }
        text.push_str(&format!(
            "\n[audit]\nmodels = [\"{MODEL}\"]\nmodels_dir = {:?}\nthreads = 1\ngateways = [\"{gateway}\"]\nprobe_gateway = \"{gateway}/v1\"\nprobe_api_key = \"{API_KEY}\"\nprobes_per_epoch = 2\n",
            models.display().to_string()
        ));
        std::fs::write(&cfg, text).unwrap();
    }
}

fn start_validator(dir: &Path, i: usize) -> Proc {
    let log = std::fs::File::create(dir.join(format!("node-{i}.log"))).unwrap();
    Proc(
        Command::new(BIN)
            .args(["--log", "info", "node", "--config"])
            .arg(dir.join(format!("node-{i}/agora.toml")))
            .env("AGORA_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn logs(dir: &Path) -> String {
    (0..VALIDATORS)
        .map(|i| {
            let t = std::fs::read_to_string(dir.join(format!("node-{i}.log"))).unwrap_or_default();
            let lines: Vec<&str> = t
                .lines()
                .filter(|l| {
                    l.contains("audit")
                        || l.contains("WARN")
                        || l.contains("ERROR")
                        || l.starts_with("Error")
                })
                .collect();
            format!(
                "--- node-{i} (audit, warning and error lines, last 30) ---\n{}\n",
                lines[lines.len().saturating_sub(30)..].join("\n")
            )
        })
        .collect()
}

/// A node config for a service of this process using the ledger at `rpc`.
fn service_config(dir: &Path, name: &str, rpc: &str) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.chain.rpc_url = Some(rpc.to_string());
    cfg.chain.data_dir = dir.join(name);
    cfg.p2p.listen = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    cfg.provider.models = vec![MODEL.into()];
    cfg.provider.models_dir = models_dir();
    cfg.provider.threads = 1;
    cfg.provider.slots = 2;
    cfg.provider.stake = "200".into();
    cfg
}

async fn provider_view(rpc: &str, who: &SecretKey) -> Value {
    reqwest::get(format!("{rpc}/v1/providers/{}", who.public()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Who served one completion, with the provider-signed receipt of each part. A plain prompt, not
/// chat: the cheater's Gemma 3 is a base model with no chat template, so it could not take a chat
/// request at all.
async fn complete(base: &str, i: usize) -> Vec<(String, SignedReceipt)> {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/completions"))
        .bearer_auth(API_KEY)
        .json(
            &json!({"model": MODEL, "max_tokens": 12, "seed": i, "temperature": 0.7,
            "prompt": format!("Here is a line about the number {i}:")}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let segments = v["choices"][0]["agora"]["segments"]
        .as_array()
        .unwrap_or_else(|| panic!("no segments in {v}"));
    segments
        .iter()
        .map(|s| {
            let receipt = serde_json::from_value(s["receipt"].clone())
                .unwrap_or_else(|e| panic!("a segment without its receipt ({e}): {s}"));
            (s["provider"].as_str().unwrap().to_string(), receipt)
        })
        .collect()
}

/// The verdicts the gateway's board holds on `receipt`: (auditor, failed).
async fn verdicts(gateway: &str, receipt: &SignedReceipt) -> Vec<(String, bool)> {
    let v: Value = reqwest::get(format!(
        "{gateway}/v1/audit/verdicts/{}",
        receipt_id(receipt)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap_or(Value::Null);
    v["verdicts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    (
                        v["auditor"].to_string(),
                        v["verdict"]["failed"].as_bool().unwrap_or(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How many providers the gateway's market lists for the model.
/// One more completion, so the scorers keep seeing paid work.
async fn later_traffic(base: &str, i: &mut usize) {
    let _ = complete(base, *i).await;
    *i += 1;
}

fn listed(g: &agora_gateway::Gateway) -> usize {
    g.market
        .models()
        .iter()
        .find(|(m, _)| m.name == MODEL)
        .map_or(0, |(_, providers)| providers.len())
}

#[test]
fn a_cheating_provider_is_audited_slashed_and_routed_around_while_the_honest_one_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // Below Linux's ephemeral range (32768-60999), where another test's outgoing connection could
    // hold a port; clear of the fixed ports of other tests (27,645-27,948 and 29,645+).
    let base = 30_000 + (std::process::id() % 270) as u16 * 10;
    let gw_port = free_port();
    let gateway_url = format!("http://127.0.0.1:{gw_port}");
    let gateway = SecretKey::from_test_seed("e2e-audit-gateway");
    let gateway_for_market = gateway.clone();
    let honest = SecretKey::from_test_seed("e2e-audit-honest");
    let cheater = SecretKey::from_test_seed("e2e-audit-cheater");
    write_network(&dir, base, &gateway_url, &[&gateway, &honest, &cheater]);
    let _validators: Vec<Proc> = (0..VALIDATORS).map(|i| start_validator(&dir, i)).collect();
    let rpc = format!("http://127.0.0.1:{base}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        // The validators answer.
        let deadline = Instant::now() + Duration::from_secs(120);
        while reqwest::get(format!("{rpc}/v1/status")).await.is_err() {
            if Instant::now() > deadline {
                return Err("the validators never answered".to_string());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut gcfg = service_config(&dir, "gateway", &rpc);
        gcfg.gateway.listen = format!("127.0.0.1:{gw_port}").parse().unwrap();
        gcfg.gateway.commit_ms = 1_000;
        let gw = NodeBuilder::new(gcfg)
            .key(Role::Gateway, gateway)
            .with_gateway()
            .launch()
            .await
            .expect("gateway starts");
        let boot = gw.p2p_addr.clone().expect("the gateway's overlay address");
        let g = gw.gateway.as_ref().unwrap();
        g.customers.insert(
            API_KEY,
            agora_gateway::Customer {
                name: "e2e".into(),
                account: SecretKey::from_test_seed("e2e-audit-customer").public(),
                credit: Amount::from_agr(100),
                spent: Amount::ZERO,
                limits: Default::default(),
            },
        );

        let mut hcfg = service_config(&dir, "honest", &rpc);
        hcfg.p2p.bootstrap = vec![boot.clone()];
        let honest_node = NodeBuilder::new(hcfg.clone())
            .key(Role::Provider, SecretKey::from_bytes(honest.to_bytes()))
            .with_provider()
            .launch()
            .await
            .expect("honest provider starts");

        // The cheater: Gemma 3 behind SmolLM2's name, hash and listing, at the honest price (it
        // pockets what the cheaper model saves; both then share the load).
        let mut ccfg = service_config(&dir, "cheater", &rpc);
        ccfg.p2p.bootstrap = vec![boot];
        let price = agora_provider::Price {
            input_per_million: Amount::parse_agr(&ccfg.provider.input_price).unwrap(),
            output_per_million: Amount::parse_agr(&ccfg.provider.output_price).unwrap(),
        };
        let (real, listing) = models::load(&ccfg.provider, price).unwrap().remove(0);
        let mut gemma_cfg = ccfg.provider.clone();
        gemma_cfg.models = vec!["gemma3-270m".into()];
        let (mut fake, _) = models::load(&gemma_cfg, price).unwrap().remove(0);
        let smollm2 = real.sha256;
        fake.sha256 = real.sha256;
        fake.name = real.name.clone();
        drop(real);
        let cheater_node = NodeBuilder::new(ccfg)
            .key(Role::Provider, SecretKey::from_bytes(cheater.to_bytes()))
            .with_provider()
            .provider_models(vec![(fake, listing)])
            .launch()
            .await
            .expect("cheating provider starts");

        // Both are routable.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            g.market.refresh().await;
            if listed(g) == 2 {
                break;
            }
            if Instant::now() > deadline {
                return Err("the gateway never listed both providers".to_string());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // A market over SmolLM2 (the gateway opens it), which both providers join.
        let chain = agora_rpc::ChainClient::new(&rpc);
        let market = agora_types::market_id("chat/smollm2");
        for (who, body) in [
            (
                &gateway_for_market,
                agora_types::TxBody::CreateMarket(agora_types::MarketSpec {
                    name: "chat/smollm2".into(),
                    models: vec![smollm2],
                }),
            ),
            (&honest, agora_types::TxBody::JoinMarket { market }),
            (&cheater, agora_types::TxBody::JoinMarket { market }),
        ] {
            let sender = agora_rpc::TxSender::new(who.clone(), chain.clone())
                .await
                .map_err(|e| e.to_string())?;
            sender
                .send(body)
                .await
                .map_err(|e| format!("market setup: {e}"))?;
        }

        // Load on both: pairs of requests at once (the router spreads a pair over two providers).
        let (h, c) = (honest.public().to_string(), cheater.public().to_string());
        let base_url = g.base_url();
        // Load: pairs of requests at once (the router spreads a pair over two providers). The
        // validators' own probes go through the same gateway and are audited like any request,
        // so a probe may reach the cheater first and get it jailed before these pairs do; the
        // pairs go on until both have served or the cheater is out of the gateway's market.
        let mut receipts = Vec::new();
        for i in 0..10 {
            let (a, b) = tokio::join!(complete(&base_url, 2 * i), complete(&base_url, 2 * i + 1));
            receipts.extend(a);
            receipts.extend(b);
            let served: Vec<&String> = receipts.iter().map(|(p, _)| p).collect();
            if i >= 2 && served.contains(&&h) && (served.contains(&&c) || listed(g) == 1) {
                break;
            }
        }
        let served: Vec<&String> = receipts.iter().map(|(p, _)| p).collect();
        if !served.contains(&&h) {
            return Err(format!(
                "the honest provider should have served: {served:?}"
            ));
        }

        // The auditors catch the cheater: slashed and jailed.
        let deadline = Instant::now() + Duration::from_secs(240);
        let jailed = loop {
            let v = provider_view(&rpc, &cheater).await;
            let height = v["height"].as_u64().unwrap_or(0);
            if v["record"]["jailed_until"].as_u64().unwrap_or(0) > height {
                break v;
            }
            if Instant::now() > deadline {
                return Err(format!("the cheater was never slashed: {v}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let stake: u128 = jailed["stake"].as_str().unwrap().parse().unwrap();
        if stake >= Amount::from_agr(200).0 {
            return Err(format!("the cheater's stake was not cut: {jailed}"));
        }
        if jailed["probation_until"].as_u64().unwrap_or(0) == 0 {
            return Err(format!("the cheater is not on probation: {jailed}"));
        }

        // The gateway's own market refresh (every second) drops the jailed provider.
        let deadline = Instant::now() + Duration::from_secs(30);
        while listed(g) != 1 {
            if Instant::now() > deadline {
                return Err(format!("the gateway still lists {} providers", listed(g)));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The gateway routes around it: every later request is the honest provider's.
        let mut later = Vec::new();
        for i in 10..14 {
            later.extend(complete(&base_url, i).await);
        }
        if later.iter().any(|(p, _)| *p != h) {
            let later: Vec<&String> = later.iter().map(|(p, _)| p).collect();
            return Err(format!("served after the slash: {later:?}"));
        }
        receipts.extend(later);
        // Every receipt of the honest provider is audited (audit_bps is 100%) and passes: a
        // passing verdict on the gateway's board for each, and no failing one.
        let honest_receipts: Vec<&SignedReceipt> = receipts
            .iter()
            .filter(|(p, _)| *p == h)
            .map(|(_, r)| r)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        for r in &honest_receipts {
            loop {
                let board = verdicts(&gateway_url, r).await;
                if board.iter().any(|(_, failed)| *failed) {
                    return Err(format!("an honest receipt failed an audit: {board:?}"));
                }
                if !board.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("an honest receipt was never audited: {r:?}"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let v = provider_view(&rpc, &honest).await;
        let stake: u128 = v["stake"].as_str().unwrap().parse().unwrap();
        if v["record"]["jailed_until"].as_u64() != Some(0)
            || v["probation_until"].as_u64() != Some(0)
            || stake != Amount::from_agr(200).0
        {
            return Err(format!("the honest provider was touched: {v}"));
        }

        // The scorers weight what they saw served and audited: an epoch pays the honest member
        // incentive and emission, and the jailed cheater nothing, with the reason. Keep serving
        // meanwhile, so each window has paid work to score.
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut i = 40;
        let report = loop {
            later_traffic(&base_url, &mut i).await;
            let status: Value = reqwest::get(format!("{rpc}/v1/status"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let epoch = status["height"].as_u64().unwrap_or(0) / 20;
            let mut found = None;
            for e in epoch.saturating_sub(3)..epoch {
                let r: Value = reqwest::get(format!("{rpc}/v1/markets/{market}/epochs/{e}"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap_or(Value::Null);
                let line = |who: &str| {
                    r["report"]["providers"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["provider"] == who).cloned())
                        .unwrap_or(Value::Null)
                };
                let (hl, cl) = (line(&h), line(&c));
                let paid = |l: &Value| {
                    l["paid"]
                        .as_str()
                        .and_then(|p| p.parse::<u128>().ok())
                        .unwrap_or(0)
                };
                if paid(&hl) > 0 && hl["incentive_ppm"].as_u64().unwrap_or(0) > 0 {
                    found = Some((r.clone(), paid(&cl), cl["reason"].clone()));
                }
            }
            if let Some(found) = found {
                break found;
            }
            if Instant::now() > deadline {
                let m: Value = reqwest::get(format!("{rpc}/v1/markets/{market}"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                return Err(format!("no epoch paid the honest provider: {m}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let (report, cheater_paid, reason) = report;
        if cheater_paid != 0 || !reason.as_str().is_some_and(|r| r.starts_with("jailed")) {
            return Err(format!(
                "the cheater was paid {cheater_paid} ({reason}): {report}"
            ));
        }
        // The scorers timed requests of their own through the gateway (latency, throughput).
        let probed = (0..VALIDATORS).any(|i| {
            std::fs::read_to_string(dir.join(format!("node-{i}.log")))
                .unwrap_or_default()
                .contains("probe answered")
        });
        if !probed {
            return Err("no validator's probe was answered".to_string());
        }
        cheater_node.shutdown().await;
        honest_node.shutdown().await;
        gw.shutdown().await;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n{}", logs(&dir));
    }
}
