//! One Yuma epoch at the size: 64 validators x 256 providers, every validator weighting
//! every provider, bonds carried from a previous epoch, liquid alpha on (a sigmoid per pair, the
//! most expensive setting). Prints min / median / max over the runs.
//!
//!     cargo run --release -p agora-ledger --example bench_yuma -- [validators] [providers] [runs]

use agora_ledger::yuma::{EpochInput, Fixed, ProviderInput, ValidatorInput, YumaParams, run_epoch};
use std::time::Instant;

/// A small deterministic generator (xorshift), so every run times the same input.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let validators = *args.first().unwrap_or(&64) as usize;
    let providers = *args.get(1).unwrap_or(&256) as usize;
    let runs = *args.get(2).unwrap_or(&50) as usize;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let params = YumaParams {
        liquid_alpha: true,
        max_validators: validators as u32,
        ..YumaParams::default()
    };
    let mut input = EpochInput {
        block: 1_000,
        last_epoch_block: 640,
        validators: (0..validators)
            .map(|_| ValidatorInput {
                stake: u128::from(rng.next() % 1_000_000 + 1) * 1_000_000_000,
                permit: true,
                last_update: 900,
                weights: (0..providers as u32)
                    .map(|j| (j, (rng.next() % 65_535 + 1) as u16))
                    .collect(),
                bonds: Vec::new(),
                own_provider: None,
            })
            .collect(),
        providers: vec![ProviderInput { registered_at: 10 }; providers],
    };
    // One warm-up epoch gives every pair a bond, as in a running market.
    let warm = run_epoch(&params, &input).expect("valid input");
    for (v, bonds) in input.validators.iter_mut().zip(warm.bonds_for_next_epoch()) {
        v.bonds = bonds;
    }
    let mut times = Vec::with_capacity(runs);
    let mut check = Fixed::ZERO;
    for _ in 0..runs {
        let start = Instant::now();
        let out = run_epoch(&params, &input).expect("valid input");
        times.push(start.elapsed().as_secs_f64() * 1e3);
        check = Fixed::sum(out.dividends.iter().copied());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "yuma epoch, {validators} validators x {providers} providers, liquid alpha, {runs} runs: \
         min {:.2} ms, median {:.2} ms, max {:.2} ms (target < 50 ms); dividends sum {check}",
        times[0],
        times[runs / 2],
        times[runs - 1]
    );
}
