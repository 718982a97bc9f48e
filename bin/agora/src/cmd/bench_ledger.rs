//! `agora bench ledger`: signed transfers applied per second (signature checks included) and
//! payment vouchers verified per second, on one core, next to the raw ed25519 verify rate
//! measured in the same run (the ceiling any ledger on these keys faces).

use agora_ledger::genesis::GenesisAccount;
use agora_ledger::{BlockContext, Genesis, Params};
use agora_types::{
    Amount, BatchVerifier, Encode, Hash, SecretKey, SignDomain, Tx, TxBody, Voucher,
};
use clap::Args;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchLedgerArgs {
    /// Transfers to apply.
    #[arg(long, default_value_t = 40_000)]
    txs: usize,
    /// Transactions per block.
    #[arg(long, default_value_t = 2_000)]
    block: usize,
    /// Distinct accounts.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Vouchers to verify.
    #[arg(long, default_value_t = 40_000)]
    vouchers: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchLedgerArgs) -> eyre::Result<()> {
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
        assert!(built.rejected.is_empty(), "bench txs must all be valid");
        s = built.state;
        blocks.push(built.block);
    }
    let mut state = state0.clone();
    let t = Instant::now();
    for b in &blocks {
        agora_ledger::apply_block_in_place(&mut state, b)?;
    }
    let apply_secs = t.elapsed().as_secs_f64();
    let transfers_per_s = args.txs as f64 / apply_secs;

    // Vouchers: signed cumulative promises, verified in batches as a provider's redeem does.
    let payer = &keys[0];
    let vouchers: Vec<_> = (0..args.vouchers)
        .map(|i| {
            let v = Voucher {
                chain_id: "agora-bench".into(),
                channel: Hash([1; 32]),
                cumulative: Amount(i as u128 + 1),
                per_model: vec![(Hash([2; 32]), Amount(i as u128))],
            };
            let sig = payer.sign(SignDomain::Voucher, &v.encode());
            (v.encode(), sig)
        })
        .collect();
    let t = Instant::now();
    for chunk in vouchers.chunks(256) {
        let mut b = BatchVerifier::new();
        for (msg, sig) in chunk {
            b.queue(&payer.public(), SignDomain::Voucher, msg, sig);
        }
        b.verify()
            .map_err(|bad| eyre::eyre!("bad vouchers {bad:?}"))?;
    }
    let vouchers_per_s = args.vouchers as f64 / t.elapsed().as_secs_f64();

    // The peer figure: plain one-by-one ed25519 verification of the same vouchers.
    let n_single = args.vouchers.min(10_000);
    let t = Instant::now();
    for (msg, sig) in &vouchers[..n_single] {
        payer
            .public()
            .verify(SignDomain::Voucher, msg, sig)
            .map_err(|e| eyre::eyre!("{e}"))?;
    }
    let single_per_s = n_single as f64 / t.elapsed().as_secs_f64();

    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "transfers_per_s": transfers_per_s.round(),
                "vouchers_per_s": vouchers_per_s.round(),
                "ed25519_single_verify_per_s": single_per_s.round(),
                "txs": args.txs, "block": args.block, "accounts": args.accounts,
                "state_root": state.root(),
            })
        );
    } else {
        println!(
            "ledger benchmark, one core ({} transfers in blocks of {}, {} accounts)",
            args.txs, args.block, args.accounts
        );
        println!(
            "  signed transfers applied   {:>10.0} tx/s   (target >= 20000)",
            transfers_per_s
        );
        println!(
            "  vouchers verified (batch)  {:>10.0} /s     (target >= 50000)",
            vouchers_per_s
        );
        println!(
            "  peer: ed25519 one-by-one   {:>10.0} /s     (same run, same keys)",
            single_per_s
        );
        println!(
            "  ratio batch/one-by-one     {:>10.2}x",
            vouchers_per_s / single_per_s
        );
    }
    Ok(())
}
