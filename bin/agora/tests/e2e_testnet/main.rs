//! Multi-process network test of the `agora` binary: `agora testnet` writes a 4-validator
//! network, four `agora node` processes run it on loopback (simplex BFT over authenticated TCP),
//! wallets (`agora tx transfer`) stream transfers through the nodes' RPC, one node is killed with
//! SIGKILL mid-stream and restarted, and at the end every node holds the same chain, the same
//! balances, and every transfer any wallet saw reported final.

use agora_types::SecretKey;
use serde_json::Value;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agora");
const PASSWORD: &str = "e2e-testnet";
const VALIDATORS: usize = 4;
/// The node that is killed and restarted.
const VICTIM: usize = 2;

struct Node {
    config: PathBuf,
    log: PathBuf,
    rpc: SocketAddr,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["--log", "info", "node", "--config"])
            .arg(&self.config)
            .env("AGORA_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("agora node starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.rpc)
    }
}

struct Net {
    nodes: Vec<Node>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

impl Net {
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: String = text
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            out.push_str(&format!("---- node {i} log tail ----\n{tail}\n"));
        }
        out
    }
}

/// GET over plain HTTP/1.1; `None` when the node is down or answers with garbage.
fn get(rpc: SocketAddr, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect_timeout(&rpc, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
}

fn height(rpc: SocketAddr) -> Option<u64> {
    get(rpc, "/v1/status")?["height"].as_u64()
}

/// One transfer a wallet saw reported final.
#[derive(Debug, Clone)]
struct Final {
    id: String,
    height: u64,
    to: String,
    before_kill: bool,
}

/// A wallet: sequential `agora tx transfer` runs (each waits for finality), each to a fresh
/// recipient; on any failure it moves on to the next node.
fn wallet(
    index: usize,
    keystore: PathBuf,
    urls: Vec<String>,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    finals: Arc<Mutex<Vec<Final>>>,
) {
    let mut target = index % urls.len();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let to = SecretKey::from_test_seed(&format!("e2e-recipient-{index}-{n}"))
            .public()
            .to_string();
        n += 1;
        let out = Command::new(BIN)
            .args(["tx", "transfer", "--to", &to, "--amount", "1", "--json"])
            .env("AGORA_RPC", &urls[target])
            .env("AGORA_KEYSTORE", &keystore)
            .env("AGORA_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .expect("agora tx runs");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        // Read the kill flag after the wallet returned: a `true` here may still be a transfer
        // reported just before the kill, which only weakens the claim, never strengthens it.
        let before_kill = !killed.load(Ordering::SeqCst);
        if out.status.success() && v["status"] == "final" {
            finals.lock().unwrap().push(Final {
                id: v["id"].as_str().unwrap().to_string(),
                height: v["height"].as_u64().unwrap(),
                to,
                before_kill,
            });
        } else {
            target = (target + 1) % urls.len();
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("timed out after {timeout:?} waiting for {what}"))
}

#[test]
fn four_node_processes_survive_a_sigkill_and_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    // Ports unlikely to collide with parallel test processes.
    let base = 42_000 + (std::process::id() % 500) as u16 * 10;
    let out = Command::new(BIN)
        .args(["testnet", "--validators", "4", "--dir"])
        .arg(&dir)
        .args(["--rpc-base", &base.to_string()])
        .args(["--p2p-base", &(base + 5).to_string()])
        .env("AGORA_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agora testnet failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut net = Net {
        nodes: (0..VALIDATORS)
            .map(|i| Node {
                config: dir.join(format!("node-{i}/agora.toml")),
                log: dir.join(format!("node-{i}.log")),
                rpc: SocketAddr::from(([127, 0, 0, 1], base + i as u16)),
                child: None,
            })
            .collect(),
    };
    for n in &mut net.nodes {
        n.start();
    }
    if let Err(e) = run(&mut net, &dir) {
        panic!("{e}\n{}", net.logs());
    }
}

fn run(net: &mut Net, dir: &Path) -> Result<(), String> {
    let rpcs: Vec<SocketAddr> = net.nodes.iter().map(|n| n.rpc).collect();
    wait_for(
        "every node to finalize block 1",
        Duration::from_secs(60),
        || rpcs.iter().all(|r| height(*r).unwrap_or(0) >= 1),
    )?;

    // Four wallets: the faucet and three validators' own accounts, each starting at a
    // different node.
    let keystores = [
        dir.join("faucet-key.json"),
        dir.join("node-0/node-key.json"),
        dir.join("node-1/node-key.json"),
        dir.join("node-3/node-key.json"),
    ];
    let urls: Vec<String> = net.nodes.iter().map(Node::url).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let finals: Arc<Mutex<Vec<Final>>> = Arc::default();
    let wallets: Vec<_> = keystores
        .iter()
        .enumerate()
        .map(|(i, ks)| {
            let (ks, urls, stop, killed, finals) = (
                ks.clone(),
                urls.clone(),
                stop.clone(),
                killed.clone(),
                finals.clone(),
            );
            std::thread::spawn(move || wallet(i, ks, urls, stop, killed, finals))
        })
        .collect();
    let count = |f: &Arc<Mutex<Vec<Final>>>| f.lock().unwrap().len();

    let result = (|| {
        wait_for("8 final transfers", Duration::from_secs(60), || {
            count(&finals) >= 8
        })?;
        // SIGKILL one validator mid-stream.
        killed.store(true, Ordering::SeqCst);
        net.nodes[VICTIM].kill();
        let kill_height = height(rpcs[0]).unwrap_or(0);
        let before = count(&finals);
        wait_for(
            "8 more final transfers with one node down",
            Duration::from_secs(60),
            || count(&finals) >= before + 8,
        )?;
        let down_height = height(rpcs[0]).unwrap_or(0);
        net.nodes[VICTIM].start();
        // The restarted node catches up from its peers (block sync) while the stream goes on.
        wait_for(
            "the restarted node to catch up",
            Duration::from_secs(60),
            || height(rpcs[VICTIM]).unwrap_or(0) > down_height,
        )?;
        let caught_up = count(&finals);
        wait_for(
            "4 more final transfers after the restart",
            Duration::from_secs(60),
            || count(&finals) >= caught_up + 4,
        )?;
        Ok::<_, String>((kill_height, down_height))
    })();
    stop.store(true, Ordering::SeqCst);
    for w in wallets {
        let _ = w.join();
    }
    let (kill_height, down_height) = result?;
    let finals = finals.lock().unwrap().clone();

    // Let every node reach the same height after the last transfer.
    let last = finals.iter().map(|f| f.height).max().unwrap_or(0);
    let target = rpcs
        .iter()
        .filter_map(|r| height(*r))
        .max()
        .unwrap_or(0)
        .max(last);
    wait_for(
        "every node to reach the common height",
        Duration::from_secs(60),
        || rpcs.iter().all(|r| height(*r).unwrap_or(0) >= target),
    )?;

    // The same blocks (ids, state roots) at every height on every node.
    for h in 1..=target {
        let blocks: Vec<Value> = rpcs
            .iter()
            .map(|r| get(*r, &format!("/v1/blocks/{h}")).unwrap_or(Value::Null))
            .collect();
        if blocks[0].is_null() || blocks.iter().any(|b| b["id"] != blocks[0]["id"]) {
            return Err(format!("nodes disagree on block {h}: {blocks:?}"));
        }
        if blocks
            .iter()
            .any(|b| b["header"]["state_root"] != blocks[0]["header"]["state_root"])
        {
            return Err(format!("nodes disagree on the state root at {h}"));
        }
    }

    // Every transfer reported final is final at the same height on every node (the restarted
    // one included), and its fresh recipient holds exactly the amount on every node.
    let one_agr = agora_types::Amount::from_agr(1).0.to_string();
    let mut during_downtime = 0;
    for f in &finals {
        if f.height > kill_height && f.height <= down_height {
            during_downtime += 1;
        }
        for (i, r) in rpcs.iter().enumerate() {
            let tx = get(*r, &format!("/v1/txs/{}", f.id)).unwrap_or(Value::Null);
            if tx["status"] != "final" || tx["height"].as_u64() != Some(f.height) {
                return Err(format!(
                    "node {i} lost transfer {f:?} (reported final {}): {tx}",
                    if f.before_kill {
                        "before the kill"
                    } else {
                        "after the kill"
                    }
                ));
            }
            let acct = get(*r, &format!("/v1/accounts/{}", f.to)).unwrap_or(Value::Null);
            if acct["balance"].as_str() != Some(one_agr.as_str()) {
                return Err(format!("node {i}: recipient of {f:?} holds {acct}"));
            }
        }
    }
    // The senders' balances and nonces agree everywhere.
    for ks in &keystores {
        let address = agora_node::keystore::address(ks).unwrap().to_string();
        let accts: Vec<Value> = rpcs
            .iter()
            .map(|r| get(*r, &format!("/v1/accounts/{address}")).unwrap_or(Value::Null))
            .collect();
        for a in &accts {
            if a["balance"] != accts[0]["balance"] || a["nonce"] != accts[0]["nonce"] {
                return Err(format!("sender {address} differs across nodes: {accts:?}"));
            }
        }
    }
    let before_kill = finals.iter().filter(|f| f.before_kill).count();
    if before_kill < 8 || during_downtime == 0 {
        return Err(format!(
            "stream too thin: {before_kill} final before the kill, {during_downtime} finalized \
             while node {VICTIM} was down"
        ));
    }
    eprintln!(
        "{} transfers final ({before_kill} before the kill, {during_downtime} while node {VICTIM} \
         was down); {target} blocks identical on 4 nodes",
        finals.len()
    );
    Ok(())
}
