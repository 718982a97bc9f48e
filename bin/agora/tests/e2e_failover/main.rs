//! Three providers as separate processes behind the `agora dev` gateway; the one serving a stream
//! is SIGKILLed mid-stream. The client's stream completes, its text equals an uninterrupted run
//! with the same seed (no token lost or repeated), and the ledger pays each provider only for
//! what it delivered.
//!
//! The providers serve the deterministic test engine (`--test-engine`), which makes "the same
//! text" exact by construction; the real-model resume is covered by agora-inference's tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_agora");
const MODEL: &str = "agora-test-engine-instruct";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a process and collects `key value` lines it prints, until `until` appears.
fn spawn_and_read(cmd: &mut Command, until: &str, keys: &[&str]) -> (Proc, Vec<(String, String)>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("process starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = until.to_string();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let t = line.trim();
            for k in &keys {
                if let Some(rest) = t.strip_prefix(k.as_str()) {
                    let _ = tx.send(Some((k.clone(), rest.trim().to_string())));
                }
            }
            if t.contains(&marker) {
                let _ = tx.send(None);
            }
        }
    });
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(kv)) => found.push(kv),
            Ok(None) => break,
            Err(_) => panic!("process did not print {until:?}; got {found:?}"),
        }
    }
    (Proc(child), found)
}

fn get(found: &[(String, String)], key: &str) -> String {
    found
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{key} not printed: {found:?}"))
}

fn agora(args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agora {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A funded provider key.
fn provider_key(dir: &Path, name: &str, rpc: &str, dev_key: &Path) -> String {
    let key = dir.join(format!("{name}.json"));
    let env = [
        ("AGORA_KEYSTORE", key.to_str().unwrap()),
        ("AGORA_PASSWORD", "pw"),
        ("AGORA_RPC", rpc),
    ];
    let created = agora(&["wallet", "new", "--json"], &env);
    let addr = created["address"].as_str().unwrap().to_string();
    let dev_env = [
        ("AGORA_KEYSTORE", dev_key.to_str().unwrap()),
        ("AGORA_PASSWORD", "dev"),
        ("AGORA_RPC", rpc),
    ];
    agora(
        &["tx", "transfer", "--to", &addr, "--amount", "500", "--json"],
        &dev_env,
    );
    addr
}

fn start_provider(dir: &Path, name: &str, rpc: &str, boot: &str, price: &str) -> Proc {
    let key = dir.join(format!("{name}.json"));
    let data = dir.join(name);
    let (p, _) = spawn_and_read(
        Command::new(BIN)
            .args(["node", "--provider", "--chain-rpc", rpc, "--provider-key"])
            .arg(&key)
            .args([
                "--bootstrap",
                boot,
                "--p2p-listen",
                "/ip4/127.0.0.1/tcp/0",
                "--test-engine",
                "15",
                "--input-price",
                price,
                "--output-price",
                price,
                "--data-dir",
            ])
            .arg(&data)
            .args(["--log", "warn"])
            .env("AGORA_PASSWORD", "pw"),
        "serving on the overlay",
        &[],
    );
    p
}

async fn channel_redeemed(rpc: &str, gateway: &str, provider: &str) -> u128 {
    // The gateway's first channel to a provider: id = H(gateway, provider, nonce); find it by
    // scanning the gateway's nonces (it opens few channels).
    let client = reqwest::Client::new();
    let acct: Value = client
        .get(format!("{rpc}/v1/accounts/{gateway}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nonce = acct["nonce"].as_u64().unwrap();
    let g: agora_types::Address = gateway.parse().unwrap();
    let p: agora_types::Address = provider.parse().unwrap();
    let mut total = 0u128;
    for n in 0..nonce {
        let id = agora_ledger::channels::channel_id(&g, &p, n);
        let resp = client
            .get(format!("{rpc}/v1/channels/{id}"))
            .send()
            .await
            .unwrap();
        if resp.status().is_success() {
            let v: Value = resp.json().await.unwrap();
            total += v["channel"]["redeemed"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap();
        }
    }
    total
}

#[test]
fn provider_sigkilled_mid_stream_is_replaced_and_paid_only_for_what_it_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (gw_port, p2p_port) = (free_port(), free_port());
    // The dev network's own provider is the most expensive: chosen last.
    let (_dev, found) = spawn_and_read(
        Command::new(BIN)
            .args(["dev", "--dir"])
            .arg(dir.join("dev"))
            .args([
                "--rpc",
                "127.0.0.1:0",
                "--gateway-listen",
                &format!("127.0.0.1:{gw_port}"),
                "--p2p-listen",
                &format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
                "--test-engine",
                "15",
                "--input-price",
                "9",
                "--output-price",
                "9",
                "--stall-ms",
                "3000",
                "--log",
                "warn",
            ]),
        "Press Ctrl-C",
        &["RPC", "OpenAI API", "API key", "overlay"],
    );
    let rpc = get(&found, "RPC");
    let base = get(&found, "OpenAI API");
    let key = get(&found, "API key");
    let boot = get(&found, "overlay");
    let dev_key = dir.join("dev/keys/dev.json");
    let gateway_addr = agora(
        &["wallet", "address", "--json"],
        &[(
            "AGORA_KEYSTORE",
            dir.join("dev/keys/gateway.json").to_str().unwrap(),
        )],
    )["address"]
        .as_str()
        .unwrap()
        .to_string();

    let cheap = provider_key(dir, "cheap", &rpc, &dev_key);
    let second = provider_key(dir, "second", &rpc, &dev_key);
    let victim = start_provider(dir, "cheap", &rpc, &boot, "1");
    let _second_proc = start_provider(dir, "second", &rpc, &boot, "2");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        // Wait until the gateway lists three providers for the model.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: Value = client.get(format!("{base}/models")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
            if v["data"].as_array().into_iter().flatten().any(|m| m["id"] == MODEL && m["agora"]["providers"] == 3) {
                break;
            }
            assert!(Instant::now() < deadline, "gateway never listed 3 providers: {v}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let request = json!({"model": MODEL, "messages": [{"role": "user", "content": "tell me a long story"}],
            "max_tokens": 150, "seed": 7, "temperature": 0.8});
        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        let mut resp = client.post(format!("{base}/chat/completions")).bearer_auth(&key).json(&streamed).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let mut raw = String::new();
        for _ in 0..25 {
            let c = resp.chunk().await.unwrap().expect("stream ended before the kill");
            raw.push_str(std::str::from_utf8(&c).unwrap());
        }
        // SIGKILL the provider that is streaming.
        let mut victim = victim;
        victim.0.kill().unwrap();
        victim.0.wait().unwrap();
        while let Some(c) = resp.chunk().await.unwrap() {
            raw.push_str(std::str::from_utf8(&c).unwrap());
        }
        let mut text = String::new();
        let mut segments = Vec::new();
        let mut done = false;
        for line in raw.lines() {
            let Some(data) = line.strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            assert!(v.get("error").is_none(), "stream error: {v}");
            if let Some(c) = v["choices"].get(0) {
                text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
                if let Some(s) = c["agora"]["segments"].as_array() {
                    segments = s.clone();
                }
            }
        }
        assert!(done, "the stream ended with [DONE]");
        assert_eq!(segments.len(), 2, "two providers served the completion: {segments:?}");
        assert_eq!(segments[0]["provider"], cheap.as_str());
        assert_eq!(segments[1]["provider"], second.as_str());
        let victim_tokens = segments[0]["completion_tokens"].as_u64().unwrap();
        assert!(victim_tokens > 0 && segments[1]["completion_tokens"].as_u64().unwrap() > 0);

        // The same request without a failure (now on the second provider).
        let v: Value = client.post(format!("{base}/chat/completions")).bearer_auth(&key).json(&request).send().await.unwrap().json().await.unwrap();
        let reference = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(text, reference, "the failover stream is the uninterrupted text, no gap, no repeat");

        // Restart the killed provider: it redeems the vouchers it had persisted.
        let _restarted = start_provider(dir, "cheap", &rpc, &boot, "1");
        let victim_charged: u128 = segments[0]["charged"].as_str().unwrap().parse().unwrap();
        let second_charged: u128 = segments[1]["charged"].as_str().unwrap().parse::<u128>().unwrap()
            + v["choices"][0]["agora"]["charged"].as_str().unwrap().parse::<u128>().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut paid_victim, mut paid_second);
        loop {
            paid_victim = channel_redeemed(&rpc, &gateway_addr, &cheap).await;
            paid_second = channel_redeemed(&rpc, &gateway_addr, &second).await;
            if (paid_second == second_charged && paid_victim > 0) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(paid_second, second_charged, "the second provider is paid exactly what it delivered");
        // The killed one holds vouchers only for frames the gateway received; the last ones may
        // have been in flight at the kill (at most the provider's credit window).
        assert!(paid_victim <= victim_charged, "never paid more than delivered: {paid_victim} > {victim_charged}");
        assert!(paid_victim + 200_000 >= victim_charged, "paid {paid_victim} of {victim_charged}");
    });
}
