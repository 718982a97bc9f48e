//! Consensus benchmark: N validators in one process on the tokio runtime (real time, real CPU,
//! real storage in a temporary directory), connected by `commonware-p2p::authenticated::lookup`
//! over loopback TCP (encrypted, as between processes), a steady stream of signed transfers
//! submitted round robin to one validator each and spread by transaction gossip; finalized
//! transfers per second and finality latency (submission to finalization at validator 0)
//! p50/p99.

use crate::app::{AppConfig, LedgerApp};
use crate::engine::{self, Channels, EngineConfig, channel};
use crate::host::MemHost;
use crate::mempool::MempoolLimits;
use crate::sim::signer_of;
use agora_ledger::State;
use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::{Genesis, Params};
use agora_types::{Amount, Hash, SecretKey, SignedTx, Tx, TxBody};
use commonware_cryptography::Signer as _;
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address as PeerAddress, AddressableManager as _};
use commonware_runtime::{Clock, Runner, tokio as cw_tokio};
use commonware_runtime::{Quota, Supervisor as _};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub validators: usize,
    /// Transfers submitted per second (open loop).
    pub rate: u64,
    /// How long transfers are submitted.
    pub duration: Duration,
    /// Sending accounts (transfers round-robin over them).
    pub accounts: usize,
    /// First loopback port (validator i listens on base + i).
    pub port_base: u16,
    pub max_block_txs: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            validators: 4,
            rate: 5_000,
            duration: Duration::from_secs(10),
            accounts: 2_000,
            port_base: 29_645,
            max_block_txs: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub submitted: usize,
    pub finalized: usize,
    pub blocks: u64,
    pub elapsed: Duration,
    pub tx_per_s: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// CPU time (user + system, all threads) the process used from the first submission until
    /// the stream drained, when the platform reports it (Linux `/proc/self/stat`): the figure
    /// that does not depend on what else the machine runs.
    pub cpu: Option<Duration>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "submitted {} finalized {} in {} blocks over {:.2} s: {:.0} tx/s finalized, \
             finality latency p50 {} ms p99 {} ms",
            self.submitted,
            self.finalized,
            self.blocks,
            self.elapsed.as_secs_f64(),
            self.tx_per_s,
            self.p50.as_millis(),
            self.p99.as_millis()
        )?;
        if let Some(cpu) = self.cpu {
            let per_tx = cpu.as_secs_f64() * 1e6 / self.finalized.max(1) as f64;
            write!(
                f,
                "; process CPU {:.2} s = {:.0} us per finalized tx (all validators)",
                cpu.as_secs_f64(),
                per_tx
            )?;
        }
        Ok(())
    }
}

/// User + system CPU time of this process so far (Linux only; `None` elsewhere).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks; USER_HZ is 100 on every Linux configuration we run on.
    Some(Duration::from_millis((utime + stime) * 10))
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Runs the benchmark with storage under `dir`.
pub fn run(cfg: &BenchConfig, dir: &Path) -> BenchReport {
    let cfg = cfg.clone();
    let runner = cw_tokio::Runner::new(cw_tokio::Config::new().with_storage_directory(dir));
    runner.start(|context| async move {
        let validators: Vec<SecretKey> = (0..cfg.validators)
            .map(|i| SecretKey::from_test_seed(&format!("bench-validator-{i}")))
            .collect();
        let users: Vec<SecretKey> = (0..cfg.accounts)
            .map(|i| SecretKey::from_test_seed(&format!("bench-user-{i}")))
            .collect();
        let genesis = Genesis {
            chain_id: "agora-bench".into(),
            timestamp_ms: 0,
            params: Params::default(),
            accounts: users
                .iter()
                .map(|k| GenesisAccount {
                    address: k.public(),
                    balance: Amount::from_agr(1_000_000),
                })
                .collect(),
            validators: validators
                .iter()
                .map(|k| GenesisValidator {
                    address: k.public(),
                    stake: Amount::from_agr(10_000),
                })
                .collect(),
        }
        .into_state()
        .expect("bench genesis");
        let fee = genesis.params().min_fee;
        // Sign everything up front so signing is not measured.
        let total = (cfg.rate * cfg.duration.as_secs()) as usize;
        let txs: Vec<SignedTx> = (0..total)
            .map(|i| {
                let from = &users[i % users.len()];
                let to = users[(i + 1) % users.len()].public();
                Tx {
                    chain_id: "agora-bench".into(),
                    signer: from.public(),
                    nonce: (i / users.len()) as u64,
                    fee,
                    body: TxBody::Transfer {
                        to,
                        amount: Amount::from_agr(1),
                    },
                }
                .sign(from)
            })
            .collect();
        let hosts: Vec<MemHost> = (0..cfg.validators)
            .map(|_| MemHost::new(genesis.clone(), MempoolLimits::default()))
            .collect();
        let finalized_at: Arc<Mutex<BTreeMap<Hash, Instant>>> = Arc::default();
        let blocks = Arc::new(Mutex::new(0u64));
        {
            let finalized_at = finalized_at.clone();
            let blocks = blocks.clone();
            hosts[0].set_commit_hook(Arc::new(move |block: &agora_types::Block| {
                let now = Instant::now();
                if let Ok(mut m) = finalized_at.lock() {
                    for stx in &block.txs {
                        m.insert(stx.id(), now);
                    }
                }
                if let Ok(mut b) = blocks.lock() {
                    *b += 1;
                }
            }));
        }
        start_loopback(&context, &cfg, &genesis, &validators, &hosts).await;
        // Let the validators connect and finalize a first block.
        for _ in 0..600 {
            if hosts[0].height() >= 1 {
                break;
            }
            context.sleep(Duration::from_millis(50)).await;
        }
        let start = Instant::now();
        let cpu_start = process_cpu();
        let mut submitted_at: Vec<(Hash, Instant)> = Vec::with_capacity(total);
        let tick = Duration::from_millis(10);
        let per_tick = (cfg.rate as usize / 100).max(1);
        for chunk in txs.chunks(per_tick) {
            let now = Instant::now();
            // Clients submit each transfer to one validator (round robin), which admits what
            // arrives in one tick as a batch; gossip carries it to the rest.
            let mut per_host: Vec<Vec<SignedTx>> = vec![Vec::new(); hosts.len()];
            for stx in chunk {
                per_host[submitted_at.len() % hosts.len()].push(stx.clone());
                submitted_at.push((stx.id(), now));
            }
            for (host, batch) in hosts.iter().zip(per_host) {
                let _ = host.submit_batch(batch);
            }
            let next = start + tick * (submitted_at.len() / per_tick) as u32;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                context.sleep(wait).await;
            }
        }
        // Wait (bounded) for the stream to drain.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let done = finalized_at.lock().map(|m| m.len()).unwrap_or(0);
            if done >= submitted_at.len() {
                break;
            }
            context.sleep(Duration::from_millis(20)).await;
        }
        let cpu = process_cpu()
            .zip(cpu_start)
            .map(|(end, start)| end.saturating_sub(start));
        let finalized_at = finalized_at.lock().map(|m| m.clone()).unwrap_or_default();
        let mut latencies: Vec<Duration> = submitted_at
            .iter()
            .filter_map(|(id, t)| {
                finalized_at
                    .get(id)
                    .map(|f| f.saturating_duration_since(*t))
            })
            .collect();
        latencies.sort();
        let last = finalized_at.values().max().copied().unwrap_or(start);
        let elapsed = last.saturating_duration_since(start);
        let finalized = latencies.len();
        let blocks = blocks.lock().map(|b| *b).unwrap_or(0);
        BenchReport {
            submitted: submitted_at.len(),
            finalized,
            blocks,
            elapsed,
            tx_per_s: finalized as f64 / elapsed.as_secs_f64().max(1e-9),
            p50: percentile(&latencies, 50),
            p99: percentile(&latencies, 99),
            cpu,
        }
    })
}

async fn start_loopback(
    context: &cw_tokio::Context,
    cfg: &BenchConfig,
    genesis: &State,
    validators: &[SecretKey],
    hosts: &[MemHost],
) {
    let namespace = agora_ledger::slashing::consensus_namespace(genesis.chain_id());
    let endpoint = |i: usize| SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.port_base + i as u16));
    let mut participants: Vec<_> = validators
        .iter()
        .map(|k| signer_of(k).public_key())
        .collect();
    participants.sort();
    let peers: Vec<_> = validators
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                signer_of(k).public_key(),
                PeerAddress::Symmetric(endpoint(i)),
            )
        })
        .collect();
    let quota = Quota::per_second(NZU32!(10_000));
    for (i, key) in validators.iter().enumerate() {
        let signer = signer_of(key);
        let p2p = crate::network::validator_p2p_config(
            signer.clone(),
            &namespace,
            endpoint(i),
            NZUsize!(validators.len()),
            engine::MAX_MESSAGE_BYTES,
        );
        let ctx = context.child("validator").with_attribute("index", i);
        let (mut network, mut oracle) = lookup::Network::new(ctx.child("p2p"), p2p);
        let _ = oracle.track(0, Map::from_iter_dedup(peers.clone()));
        let mut reg = |ch| network.register(ch, quota);
        let channels = Channels {
            votes: reg(channel::VOTES),
            certificates: reg(channel::CERTIFICATES),
            resolver: reg(channel::RESOLVER),
            blocks: reg(channel::BLOCKS),
            backfill: reg(channel::BACKFILL),
        };
        let gossip_channel = reg(channel::TXS);
        network.start();
        let queued = crate::sim::gossip_outbox(&hosts[i]);
        crate::sim::spawn_gossip(
            &ctx,
            hosts[i].clone(),
            queued,
            gossip_channel,
            oracle.clone(),
        );
        let app = LedgerApp::new(
            hosts[i].clone(),
            genesis.clone(),
            AppConfig {
                max_block_txs: cfg.max_block_txs,
                idle_block_interval: Duration::from_millis(200),
                poll_interval: Duration::from_millis(2),
                ..AppConfig::default()
            },
        );
        let mut ecfg = EngineConfig::new(&namespace, "bench");
        ecfg.partition_prefix = format!("bench{i}");
        let _running = engine::start(
            ctx.child("engine"),
            ecfg,
            signer,
            participants.clone(),
            app,
            channels,
            oracle.clone(),
            oracle,
        )
        .await
        .expect("bench validator starts");
    }
}
