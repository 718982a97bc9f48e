//! Killing a writer with SIGKILL at any moment and restarting it yields the same state root as an
//! uninterrupted run. The writer is this test binary re-executed as a child process, driving the
//! real store with a deterministic block sequence.

use agora_ledger::{BlockContext, Genesis};
use agora_node::store::Store;
use agora_testkit::{TEST_CHAIN, TxFactory, test_genesis, test_keys};
use agora_types::{Amount, SecretKey, TxBody};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BLOCKS: u64 = 200;
const CHILD_ENV: &str = "AGORA_CRASH_TEST_CHILD_DIR";

fn genesis() -> (Genesis, Vec<SecretKey>) {
    let keys = test_keys(6);
    (
        test_genesis(
            &keys,
            Amount::from_agr(1_000),
            agora_ledger::Params::default(),
        ),
        keys,
    )
}

/// Block `h`'s transactions depend only on `h` and the state, so a restarted writer continues the
/// very same sequence.
fn block_txs(
    h: u64,
    state: &agora_ledger::State,
    keys: &[SecretKey],
) -> Vec<agora_types::SignedTx> {
    let mut f = TxFactory::new(TEST_CHAIN, Amount(1_000));
    f.sync(state, keys);
    (0..40u64)
        .map(|i| {
            let x = h.wrapping_mul(1_000_003).wrapping_add(i * 7919);
            let from = &keys[(x % 6) as usize];
            let to = keys[((x / 6) % 6) as usize].public();
            let body = if x.is_multiple_of(9) {
                TxBody::Bond {
                    target: from.public(),
                    amount: Amount(u128::from(x % 5_000 + 1)),
                }
            } else {
                TxBody::Transfer {
                    to,
                    amount: Amount(u128::from(x % 100_000 + 1)),
                }
            };
            f.sign(from, body)
        })
        .collect()
}

fn write_chain(dir: &Path) {
    let (genesis, keys) = genesis();
    let store = Store::open(&dir.join("chain.redb")).unwrap();
    let mut state = store.load_or_init(&genesis).unwrap();
    let proposer = SecretKey::from_test_seed("validator-0").public();
    while state.height() < BLOCKS {
        let h = state.height() + 1;
        let built = agora_ledger::build_block(
            &state,
            &BlockContext {
                timestamp_ms: genesis.timestamp_ms + h * 250,
                proposer,
            },
            block_txs(h, &state, &keys),
        );
        store.commit_block(&built.block, &built.applied).unwrap();
        state = built.state;
    }
}

fn uninterrupted_root() -> agora_types::Hash {
    let dir = tempfile::tempdir().unwrap();
    write_chain(dir.path());
    reopen_root(dir.path())
}

fn reopen_root(dir: &Path) -> agora_types::Hash {
    let (genesis, _) = genesis();
    let store = Store::open(&dir.join("chain.redb")).unwrap();
    let state = store.load_or_init(&genesis).unwrap();
    assert_eq!(state.height(), BLOCKS);
    assert_eq!(store.tip().unwrap().0, BLOCKS);
    state.root()
}

#[test]
fn sigkill_at_random_moments_then_restart_gives_the_uninterrupted_state_root() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        // We are the child writer.
        write_chain(Path::new(&dir));
        return;
    }
    let started = std::time::Instant::now();
    let expected = uninterrupted_root();
    // Spread the kills over the time a whole run takes, so they land all along the chain.
    let slice_ms = (started.elapsed().as_millis() as u64 / 16).max(5);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut kills = 0;
    let mut heights = vec![];
    for round in 0..12u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::sigkill_at_random_moments_then_restart_gives_the_uninterrupted_state_root",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .spawn()
            .unwrap();
        // Vary the moment of the kill pseudo-randomly per round (child start-up included).
        std::thread::sleep(Duration::from_millis(
            20 + slice_ms / 2 + (round * 7_919) % slice_ms,
        ));
        if child.try_wait().unwrap().is_none() {
            // SIGKILL: no destructors, no flush, exactly like a crash or power cut.
            unsafe_free_kill(child.id());
            kills += 1;
        }
        child.wait().unwrap();
        let store = Store::open(&dir.path().join("chain.redb"));
        if let Ok(store) = store {
            heights.push(store.tip().map(|t| t.0).unwrap_or(0));
        }
    }
    // Finish the run and compare.
    let status = Command::new(&exe)
        .args([
            "--exact",
            "crash::sigkill_at_random_moments_then_restart_gives_the_uninterrupted_state_root",
        ])
        .env(CHILD_ENV, dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let mid_chain = heights.iter().filter(|h| **h > 0 && **h < BLOCKS).count();
    assert!(
        kills >= 3 && mid_chain >= 3,
        "only {kills} kills, {mid_chain} mid-chain (heights {heights:?})"
    );
    eprintln!("killed {kills} writers; tips after each kill: {heights:?}");
    assert_eq!(
        reopen_root(dir.path()),
        expected,
        "kill points at heights {heights:?}"
    );
}

fn unsafe_free_kill(pid: u32) {
    // `kill -9` through the shell keeps this crate free of `unsafe`.
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -9 {pid} failed");
}
