//! `agora dev` + `agora wallet` + `agora tx`, end to end, as a person or a script would use them.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_agora");

pub(crate) struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_dev(dir: &Path) -> (Dev, String) {
    let mut child = Command::new(BIN)
        .args(["dev", "--dir"])
        .arg(dir)
        .args(["--rpc", "127.0.0.1:0", "--log", "warn", "--chain-only"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("agora dev starts");
    let stdout = child.stdout.take().unwrap();
    // Keep draining stdout after the URL line so the child never writes to a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("RPC") {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    let url = rx.recv_timeout(std::time::Duration::from_secs(60)).ok();
    (Dev(child), url.expect("agora dev printed its RPC URL"))
}

pub(crate) fn agora(args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{stderr}"),
    )
}

#[test]
fn dev_network_wallet_and_transactions_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dev, url) = start_dev(&tmp.path().join("dev"));
    let dev_key = tmp.path().join("dev/keys/dev.json");
    let bob_key = tmp.path().join("bob.json");
    let dev_env = [
        ("AGORA_RPC", url.as_str()),
        ("AGORA_KEYSTORE", dev_key.to_str().unwrap()),
        ("AGORA_PASSWORD", "dev"),
    ];

    let (code, v, out) = agora(&["wallet", "balance", "--json"], &dev_env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["balance"], "1000000000000000", "{out}");

    let bob_env = [
        ("AGORA_RPC", url.as_str()),
        ("AGORA_KEYSTORE", bob_key.to_str().unwrap()),
        ("AGORA_PASSWORD", "correct horse"),
    ];
    let (code, created, out) = agora(&["wallet", "new", "--json"], &bob_env);
    assert_eq!(code, 0, "{out}");
    let (code, _, out) = agora(&["wallet", "new"], &bob_env);
    assert_ne!(
        code, 0,
        "a second `wallet new` must not overwrite the key: {out}"
    );
    let (_, addr, _) = agora(&["wallet", "address", "--json"], &bob_env);
    assert_eq!(addr["address"], created["address"]);
    let bob = addr["address"].as_str().unwrap().to_string();

    let (code, v, out) = agora(
        &["tx", "transfer", "--to", &bob, "--amount", "12.5", "--json"],
        &dev_env,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["status"], "final", "{out}");
    let (_, v, _) = agora(&["wallet", "balance", "--json"], &bob_env);
    assert_eq!(v["balance"], "12500000000");

    // An action that fails on chain: included, fee charged, exit code 2 and a reason.
    let (code, _, out) = agora(
        &["tx", "transfer", "--to", &bob, "--amount", "999999999"],
        &dev_env,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAILED") && out.contains("balance"), "{out}");

    // Stake and register a model.
    let (code, _, out) = agora(&["tx", "bond", "--amount", "100"], &dev_env);
    assert_eq!(code, 0, "{out}");
    let sha = "ab".repeat(32);
    let (code, _, out) = agora(
        &[
            "tx",
            "register-model",
            "--sha256",
            &sha,
            "--name",
            "smollm2",
            "--family",
            "llama",
            "--license",
            "apache-2.0",
            "--royalty-bps",
            "200",
        ],
        &dev_env,
    );
    assert_eq!(code, 0, "{out}");

    // Wrong password and a bad address are clear errors, not panics.
    let (code, _, out) = agora(
        &["tx", "withdraw"],
        &[
            ("AGORA_RPC", url.as_str()),
            ("AGORA_KEYSTORE", dev_key.to_str().unwrap()),
            ("AGORA_PASSWORD", "nope"),
        ],
    );
    assert_ne!(code, 0);
    assert!(out.contains("wrong password"), "{out}");
    let (code, _, out) = agora(
        &["tx", "transfer", "--to", "agora1xyz", "--amount", "1"],
        &dev_env,
    );
    assert_ne!(code, 0);
    assert!(
        out.to_lowercase().contains("address") || out.contains("bech32"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}
