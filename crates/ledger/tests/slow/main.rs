//! Yuma market simulations at full length, many seeds (kept out of the default profile):
//!
//!     cargo nextest run --workspace --profile slow -E 'package(agora-ledger) & binary(slow)' --no-capture
//!
//! Prints each scenario's figure per seed and the worst case; the bounds asserted here are the
//! ones docs/design/incentives.md states. `AGORA_YUMA_SEEDS` sets the seed count (default 40).

#[path = "../sim/mod.rs"]
mod sim;

use sim::scenarios;

fn seeds() -> u64 {
    std::env::var("AGORA_YUMA_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

#[test]
fn collusion_copying_newcomers_and_failures_over_many_seeds() {
    let n = seeds();
    let mut worst_collusion: f64 = 0.0;
    let mut worst_ratio_to_fair: f64 = 0.0;
    let mut worst_cabal: f64 = 0.0;
    let mut worst_copy_cr: f64 = 0.0;
    let mut mean_copy_cr = 0.0;
    let mut mean_copy_open = 0.0;
    let mut worst_newcomer = 0;
    let mut worst_failing = 0;
    for seed in 1..=n {
        let (friend, fair, cabal) = scenarios::collusion(seed, 200);
        worst_cabal = worst_cabal.max(cabal);
        worst_collusion = worst_collusion.max(friend);
        worst_ratio_to_fair = worst_ratio_to_fair.max(friend / fair);
        let cr = scenarios::copying(seed, 200, true);
        let open = scenarios::copying(seed, 200, false);
        worst_copy_cr = worst_copy_cr.max(cr);
        mean_copy_cr += cr / n as f64;
        mean_copy_open += open / n as f64;
        let newcomer = scenarios::newcomer(seed)
            .expect("the newcomer reaches 90% of its fair share within 50 epochs");
        let failing = scenarios::failing(seed)
            .expect("the failing provider loses its share within 50 epochs");
        worst_newcomer = worst_newcomer.max(newcomer);
        worst_failing = worst_failing.max(failing);
        println!(
            "seed {seed:3}: colluders' friend {:.4}% (fair {:.4}%), colluders' dividends per stake {cabal:.4} of honest; copier/honest dividends per stake: commit-reveal {cr:.4}, open {open:.4}; newcomer {newcomer} epochs; failing {failing} epochs",
            friend * 100.0,
            fair * 100.0
        );
    }
    println!(
        "{n} seeds: colluders' friend at most {:.4}% of incentive ({:.2}x its fair share) and colluders at most {:.4} of honest dividends per stake; copiers earn {:.4} (worst {:.4}) of honest dividends per stake under commit-reveal, {:.4} without; a newcomer reaches 90% of its fair share within {worst_newcomer} epochs; a failing provider drops below 1% within {worst_failing} epochs",
        worst_collusion * 100.0,
        worst_ratio_to_fair,
        worst_cabal,
        mean_copy_cr,
        worst_copy_cr,
        mean_copy_open
    );
    assert!(
        worst_ratio_to_fair < 2.0,
        "colluders lifted their friend to {worst_ratio_to_fair:.2}x its fair share"
    );
    assert!(
        worst_cabal < 0.1,
        "colluders earned {worst_cabal:.4} of honest dividends per stake"
    );
    assert!(
        worst_copy_cr < 1.0,
        "copiers earned {worst_copy_cr:.4} of honest dividends per stake under commit-reveal"
    );
    assert!(worst_newcomer <= 2 && worst_failing <= 2);
}
