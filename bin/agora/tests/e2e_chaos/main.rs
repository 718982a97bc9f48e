//! The chaos suite's CI scenario (`scenarios/short.toml`, about 2.5 minutes of load): 4
//! validators, a gateway and 2 providers as separate `agora` processes in network namespaces,
//! gateway and wallet clients, and one fault of each kind (validator killed, provider stalled
//! mid-stream, provider killed, validator partitioned, packet loss, a validator's disk full, a
//! validator's clock 30 s ahead, gateway killed). `agora testnet chaos`
//! exits 0 only when the checker finds no violation in the recorded history; this test also
//! reads the run's files to see that the run did what it says.
//!
//! Needs root, iproute2, iptables (as the NAT lab) and libfaketime. Skips, loudly, only when network
//! namespaces cannot be created at all.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agora");

fn namespaces_work() -> bool {
    let name = format!("agch-probe-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = Command::new("ip").args(["netns", "del", &name]).output();
    ok
}

fn repo_root() -> std::path::PathBuf {
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&manifest).join("../..")
}

#[test]
fn short_scenario_keeps_every_invariant_under_each_kind_of_fault() {
    if !namespaces_work() {
        eprintln!("SKIPPED: network namespaces cannot be created here (needs root and iproute2)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = Command::new(BIN)
        .args(["testnet", "chaos", "--scenario"])
        .arg(repo_root().join("scenarios/short.toml"))
        .args(["--seed", "1", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "agora testnet chaos failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("chaos: no violations"), "{stdout}");

    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let events: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |ty: &str| events.iter().filter(|e| e["type"] == ty).count();
    let faults: Vec<&Value> = events.iter().filter(|e| e["type"] == "fault").collect();
    // Eight faults, each begun and ended.
    assert_eq!(faults.len(), 16, "{faults:?}");
    for kind in [
        "kill",
        "stall",
        "partition",
        "loss",
        "full_disk",
        "clock_skew",
    ] {
        assert!(
            faults.iter().any(|f| f["fault"] == kind),
            "no {kind} fault in the history"
        );
    }
    assert!(
        count("ok") >= 300,
        "only {} operations succeeded",
        count("ok")
    );
    // Recovered by the end: every operation invoked 12 s or more after the last fault ended
    // succeeded.
    let last_end = faults
        .iter()
        .map(|f| f["t_ms"].as_u64().unwrap())
        .max()
        .unwrap();
    let late: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "invoke" && e["t_ms"].as_u64().unwrap() >= last_end + 12_000)
        .map(|e| e["op"].as_u64().unwrap())
        .collect();
    assert!(
        late.len() >= 20,
        "only {} operations after recovery",
        late.len()
    );
    let failed_late: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "fail" && late.contains(&e["op"].as_u64().unwrap()))
        .collect();
    assert!(
        failed_late.is_empty(),
        "failures after recovery: {failed_late:?}"
    );
    assert!(count("sample") >= 100, "{} chain samples", count("sample"));
    let facts: Value =
        serde_json::from_slice(&std::fs::read(dir.join("facts.json")).unwrap()).unwrap();
    assert_eq!(facts["validators"].as_array().unwrap().len(), 4);
    assert_eq!(facts["customers"].as_array().unwrap().len(), 4);
    // Providers were paid through channels, and the bills are not empty.
    assert!(
        facts["channels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["redeemed"].as_str() != Some("0")),
        "no channel was redeemed: {}",
        facts["channels"]
    );
}

/// Found by `short.toml` seed 1: on a full disk commonware's simplex voter panicked ("unable to
/// append to journal"), the validator's thread ended with its RPC, and the process served on
/// without consensus, so it never came back when the space did. Now the node exits with an
/// error (fail-stop), and started again on the freed disk it carries on from where it was.
#[test]
fn short_seed_1_a_validator_on_a_full_disk_exits_and_restarts_clean() {
    if !namespaces_work() {
        eprintln!("SKIPPED: needs root (a tmpfs is mounted)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = 20_000 + (std::process::id() % 4_000) as u16 * 2;
    let out = Command::new(BIN)
        .args(["testnet", "--validators", "1", "--dir"])
        .arg(&dir)
        .args(["--rpc-base", &base.to_string()])
        .args(["--p2p-base", &(base + 1).to_string()])
        .env("AGORA_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let disk = agora_chaos::disk::Disk::mount(&dir.join("node-0/data"), 64).unwrap();
    let log = tmp.path().join("node.log");
    let start = || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        Command::new(BIN)
            .args(["--log", "info", "node", "--config"])
            .arg(dir.join("node-0/agora.toml"))
            .env("AGORA_PASSWORD", "pw")
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap()
    };
    let rpc: std::net::SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
    let height = || -> Option<u64> {
        use std::io::{Read, Write};
        let timeout = std::time::Duration::from_secs(2);
        let mut s = std::net::TcpStream::connect_timeout(&rpc, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        write!(
            s,
            "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let v: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()?;
        v["height"].as_u64()
    };
    let wait_height = |min: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(h) = height().filter(|h| *h >= min) {
                return h;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "height {min} never reached: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let mut node = start();
    let before = wait_height(3);
    disk.fill().unwrap();
    // The node must exit by itself, with an error, not hang on without consensus.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = node.kill();
            panic!(
                "the node kept running on a full disk: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(!status.success(), "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("the validator stopped on its own"), "{text}");
    disk.drain().unwrap();
    let mut node = start();
    wait_height(before + 3);
    let _ = node.kill();
    let _ = node.wait();
}
