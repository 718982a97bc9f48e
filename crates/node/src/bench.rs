//! The ledger benchmark: signed transfers applied per second (signature checks included) and
//! payment vouchers verified per second on one core, next to the raw one-by-one ed25519 verify
//! rate measured in the same run (the ceiling any ledger on these keys faces). Used by
//! `agora bench ledger` and `cargo bench -p agora-node --bench ledger`.

use agora_ledger::genesis::GenesisAccount;
use agora_ledger::{BlockContext, Genesis, Params};
use agora_types::{
    Amount, BatchVerifier, Encode, Hash, SecretKey, SignDomain, Tx, TxBody, Voucher,
};
use serde::Serialize;
use std::time::Instant;

/// Wall time and this thread's CPU time together: on a shared machine the CPU time is the
/// figure that does not depend on what else is running.
struct Stopwatch {
    wall: Instant,
    cpu: cpu_time::ThreadTime,
}

impl Stopwatch {
    fn start() -> Self {
        Stopwatch {
            wall: Instant::now(),
            cpu: cpu_time::ThreadTime::now(),
        }
    }

    /// (wall seconds, CPU seconds)
    fn secs(&self) -> (f64, f64) {
        (
            self.wall.elapsed().as_secs_f64(),
            self.cpu.elapsed().as_secs_f64(),
        )
    }
}

#[derive(Debug, Clone)]
pub struct LedgerBenchConfig {
    pub txs: usize,
    pub block: usize,
    pub accounts: usize,
    pub vouchers: usize,
}

impl Default for LedgerBenchConfig {
    fn default() -> Self {
        LedgerBenchConfig {
            txs: 40_000,
            block: 2_000,
            accounts: 10_000,
            vouchers: 40_000,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerBenchReport {
    pub transfers_per_s: f64,
    pub vouchers_per_s: f64,
    pub ed25519_single_verify_per_s: f64,
    /// The same two figures over wall-clock time (lower when other work shares the core).
    pub transfers_per_wall_s: f64,
    pub vouchers_per_wall_s: f64,
    pub txs: usize,
    pub block: usize,
    pub accounts: usize,
    pub state_root: Hash,
}

impl LedgerBenchReport {
    pub fn print(&self) {
        println!(
            "ledger benchmark, one core ({} transfers in blocks of {}, {} accounts)",
            self.txs, self.block, self.accounts
        );
        println!("  per CPU-second of one core, [per wall-clock second]:");
        println!(
            "  signed transfers applied   {:>10.0} tx/s [{:.0}]  (target >= 20000)",
            self.transfers_per_s, self.transfers_per_wall_s
        );
        println!(
            "  vouchers verified (batch)  {:>10.0} /s   [{:.0}]  (target >= 50000)",
            self.vouchers_per_s, self.vouchers_per_wall_s
        );
        println!(
            "  peer: ed25519 one-by-one   {:>10.0} /s   (same run, same keys)",
            self.ed25519_single_verify_per_s
        );
        println!(
            "  ratio batch/one-by-one     {:>10.2}x",
            self.vouchers_per_s / self.ed25519_single_verify_per_s
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("genesis: {0}")]
    Genesis(#[from] agora_ledger::genesis::GenesisError),
    #[error("block: {0}")]
    Block(#[from] agora_ledger::BlockError),
    #[error("{0}")]
    Setup(String),
}

pub fn run_ledger_bench(args: &LedgerBenchConfig) -> Result<LedgerBenchReport, BenchError> {
    let keys: Vec<SecretKey> = (0..args.accounts)
        .map(|i| SecretKey::from_test_seed(&format!("bench-{i}")))
        .collect();
    let genesis = Genesis {
        chain_id: "agora-bench".into(),
        timestamp_ms: 0,
        params: Params::default(),
        accounts: keys
            .iter()
            .map(|k| GenesisAccount {
                address: k.public(),
                balance: Amount::from_agr(1_000_000),
            })
            .collect(),
        validators: vec![],
    };
    let state0 = genesis.into_state()?;
    let proposer = keys[0].public();
    // Sign everything up front: the benchmark measures the ledger, not the wallet.
    let mut nonces = vec![0u64; keys.len()];
    let mut blocks_txs = Vec::new();
    let mut batch = Vec::new();
    for i in 0..args.txs {
        let from = i % keys.len();
        let to = keys[(i * 7 + 1) % keys.len()].public();
        let tx = Tx {
            chain_id: "agora-bench".into(),
            signer: keys[from].public(),
            nonce: nonces[from],
            fee: Amount(1_000),
            body: TxBody::Transfer {
                to,
                amount: Amount(1),
            },
        };
        nonces[from] += 1;
        batch.push(tx.sign(&keys[from]));
        if batch.len() == args.block {
            blocks_txs.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        blocks_txs.push(batch);
    }
    // Build the blocks (proposer side), then time what every replica does: apply them.
    let mut s = state0.clone();
    let mut blocks = Vec::new();
    for (i, txs) in blocks_txs.into_iter().enumerate() {
        let built = agora_ledger::build_block(
            &s,
            &BlockContext {
                timestamp_ms: i as u64,
                proposer,
            },
            txs,
        );
        if !built.rejected.is_empty() {
            return Err(BenchError::Setup("bench txs must all be valid".into()));
        }
        s = built.state;
        blocks.push(built.block);
    }
    let mut state = state0.clone();
    let t = Stopwatch::start();
    for b in &blocks {
        agora_ledger::apply_block_in_place(&mut state, b)?;
    }
    let (apply_wall, apply_cpu) = t.secs();
    let transfers_per_s = args.txs as f64 / apply_cpu;
    let transfers_per_wall_s = args.txs as f64 / apply_wall;

    // Vouchers: signed cumulative promises, verified in batches as a provider's redeem does.
    let payer = &keys[0];
    let vouchers: Vec<_> = (0..args.vouchers)
        .map(|i| {
            let v = Voucher {
                chain_id: "agora-bench".into(),
                channel: Hash([1; 32]),
                cumulative: Amount(i as u128 + 1),
                per_model: vec![(Hash([2; 32]), Amount(i as u128 + 1))],
            };
            let sig = payer.sign(SignDomain::Voucher, &v.encode());
            (v.encode(), sig)
        })
        .collect();
    let t = Stopwatch::start();
    for chunk in vouchers.chunks(256) {
        let mut b = BatchVerifier::new();
        for (msg, sig) in chunk {
            b.queue(&payer.public(), SignDomain::Voucher, msg, sig);
        }
        b.verify()
            .map_err(|bad| BenchError::Setup(format!("bad vouchers {bad:?}")))?;
    }
    let (v_wall, v_cpu) = t.secs();
    let vouchers_per_s = args.vouchers as f64 / v_cpu;
    let vouchers_per_wall_s = args.vouchers as f64 / v_wall;

    // The peer figure: plain one-by-one ed25519 verification of the same vouchers.
    let n_single = args.vouchers.min(10_000);
    let t = Stopwatch::start();
    for (msg, sig) in &vouchers[..n_single] {
        payer
            .public()
            .verify(SignDomain::Voucher, msg, sig)
            .map_err(|e| BenchError::Setup(e.to_string()))?;
    }
    let single_per_s = n_single as f64 / t.secs().1;

    Ok(LedgerBenchReport {
        transfers_per_s,
        vouchers_per_s,
        ed25519_single_verify_per_s: single_per_s,
        transfers_per_wall_s,
        vouchers_per_wall_s,
        txs: args.txs,
        block: args.block,
        accounts: args.accounts,
        state_root: state.root(),
    })
}
