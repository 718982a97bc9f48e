//! The audit's rates, measured on the real models (kept out of the default test profile):
//!
//! * false positives: honest responses from providers whose settings differ from the auditor's
//!   (1 and 2 threads, 4 requests sharing a batch, prompt-prefix reuse), each audited once;
//! * detection: each cheat of the harness at 16, 32, 64 and 128 generated tokens, with which
//!   check fired and the TOPLOC statistics; the Q8_0 re-quantization (not cheaper) is measured
//!   for the record and left out of the 99% assertion.
//!
//! `cargo nextest run -p agora-audit --profile slow -E 'binary(slow)' --no-capture`
//! (`AGORA_AUDIT_HONEST` and `AGORA_AUDIT_CASES` change the counts; defaults 1,000 and 12;
//! `AGORA_AUDIT_CHEATS=Requantized,SkippedLayers` measures only the cheats named, and
//! `AGORA_AUDIT_LENGTHS=64` only those lengths, `AGORA_AUDIT_HONEST_LENGTHS=64,128` the honest
//! responses' lengths (the honest margins' distribution is printed); `AGORA_AUDIT_SHOW_FLAGGED=1` prints every flagged
//! token with its case). Each cell is printed as soon as it is measured,
//! with the one-sided 95% lower bound on its detection rate (Clopper-Pearson): with every case
//! caught it is 0.05^(1/n), so 299 cases caught of 299 show 99% with 95% confidence.

// Shared with the `it` tests, which use the rest of it.
#[path = "../it/cheats.rs"]
#[allow(dead_code)]
mod cheats;

use std::time::Instant;

use agora_audit::{AuditReport, Auditor, Finding};
use agora_market::protocol::Work;
use cheats::{
    CHEATS, Cheat, GEMMA, Harness, REGISTERED, SMOLLM, Served, derived_engines, engine,
    request_params,
};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn audit(rt: &tokio::runtime::Runtime, auditor: &Auditor, s: &Served) -> AuditReport {
    rt.block_on(auditor.audit(&s.receipt, s.proof.as_ref(), &s.replay))
        .unwrap()
}

const TOPICS: [&str; 8] = [
    "the sea",
    "a lighthouse keeper",
    "bread and the people who bake it",
    "the first printing press",
    "a cat that learned to swim",
    "winter in the mountains",
    "an old clockmaker",
    "the night train",
];

fn work(i: usize) -> Work {
    // Prompts share a long prefix, so providers reuse cached prompt prefixes between requests.
    Work::Text {
        prompt: format!(
            "Here is a short story about {}, number {i}.",
            TOPICS[i % TOPICS.len()]
        ),
    }
}

/// The cheats to measure: `CHEATS` and the Q8_0 re-quantization, or those `AGORA_AUDIT_CHEATS`
/// names (comma-separated, as `Debug` prints them).
fn cheats_to_measure() -> Vec<Cheat> {
    let all: Vec<Cheat> = CHEATS.into_iter().chain([Cheat::RequantizedQ8]).collect();
    match std::env::var("AGORA_AUDIT_CHEATS") {
        Ok(names) if !names.trim().is_empty() => names
            .split(',')
            .map(|n| {
                *all.iter()
                    .find(|c| format!("{c:?}") == n.trim())
                    .unwrap_or_else(|| panic!("no cheat {n} in {all:?}"))
            })
            .collect(),
        _ => all,
    }
}

/// The generated lengths to measure: 16, 32, 64 and 128, or those `AGORA_AUDIT_LENGTHS` names.
fn lengths_to_measure() -> Vec<u32> {
    match std::env::var("AGORA_AUDIT_LENGTHS") {
        Ok(v) if !v.trim().is_empty() => parse_lengths(&v),
        _ => vec![16, 32, 64, 128],
    }
}

/// The honest responses' lengths, taken in turn: 16, 24, 32 and 48, or those
/// `AGORA_AUDIT_HONEST_LENGTHS` names.
fn honest_lengths() -> Vec<u32> {
    match std::env::var("AGORA_AUDIT_HONEST_LENGTHS") {
        Ok(v) if !v.trim().is_empty() => parse_lengths(&v),
        _ => vec![16, 24, 32, 48],
    }
}

fn parse_lengths(v: &str) -> Vec<u32> {
    v.split(',')
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("not a length: {n}"))
        })
        .collect()
}

/// Every replayed token's margin over the honest audits, to set the tolerance from: how many
/// are not the auditor's own choice, the upper quantiles, and how many exceed each bar.
#[derive(Default)]
struct Margins {
    all: Vec<f64>,
    /// Per response: the largest margin.
    per_response_max: Vec<f64>,
    /// Near misses accepted (`Tolerance::near_margin`), and responses with one.
    near: usize,
    near_responses: usize,
}

impl Margins {
    fn add(&mut self, r: &AuditReport) {
        if let Some(t) = &r.tokens {
            let finite = t.tokens.iter().map(|f| f.margin).filter(|m| m.is_finite());
            self.all.extend(finite);
            self.per_response_max.push(t.max_margin);
            self.near += t.near;
            self.near_responses += usize::from(t.near > 0);
        }
    }

    fn summary(&mut self) -> String {
        let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        sort(&mut self.all);
        sort(&mut self.per_response_max);
        let q = |v: &[f64], p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            v[((v.len() - 1) as f64 * p).round() as usize]
        };
        let over = |v: &[f64], bar: f64| v.iter().filter(|&&m| m > bar).count();
        let nonzero = self.all.iter().filter(|&&m| m > 0.0).count();
        let bars = [0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0];
        let counts: Vec<String> = bars
            .iter()
            .map(|&b| {
                format!(
                    "> {b}: {} tokens in {} responses",
                    over(&self.all, b),
                    over(&self.per_response_max, b)
                )
            })
            .collect();
        format!(
            "honest margins: {} tokens in {} responses, {nonzero} not the auditor's choice, {} near misses accepted in {} responses; quantiles 99% {:.4}, 99.9% {:.4}, 99.99% {:.4}, max {:.4}; {}",
            self.all.len(),
            self.per_response_max.len(),
            self.near,
            self.near_responses,
            q(&self.all, 0.99),
            q(&self.all, 0.999),
            q(&self.all, 0.9999),
            self.all.last().copied().unwrap_or(0.0),
            counts.join(", ")
        )
    }
}

/// The one-sided 95% lower confidence bound on a rate of `caught` in `n` (Clopper-Pearson),
/// found by bisection on the binomial tail: the smallest p with P(X >= caught | n, p) >= 0.05.
fn lower_bound_95(caught: usize, n: usize) -> f64 {
    if caught == 0 || n == 0 {
        return 0.0;
    }
    // P(X >= k) for X ~ Binomial(n, p), summed in log space so large n stays finite.
    let tail = |p: f64| -> f64 {
        let ln_choose = |n: usize, k: usize| -> f64 {
            (1..=k)
                .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
                .sum()
        };
        (caught..=n)
            .map(|k| (ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln()).exp())
            .sum()
    };
    if caught == n {
        return 0.05f64.powf(1.0 / n as f64);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if tail(mid) >= 0.05 {
            hi = mid
        } else {
            lo = mid
        }
    }
    hi
}

/// Which checks fired over one cell's audits, and the TOPLOC figures of its decode chunks.
#[derive(Default)]
struct Cell {
    caught: usize,
    proof: usize,
    tokens: usize,
    other: usize,
    /// Per decode chunk: sign/exponent mismatches and the mean mantissa difference (milli-ULP).
    exp: Vec<u32>,
    mant: Vec<u64>,
    chunks_failed: usize,
    /// Tokens flagged / replayed.
    flagged: usize,
    replayed: usize,
}

impl Cell {
    fn add(&mut self, r: &AuditReport) {
        self.caught += usize::from(r.failed());
        let f = &r.findings;
        self.proof += usize::from(f.iter().any(|f| {
            matches!(
                f,
                Finding::ProofFailed | Finding::ProofUndecodable | Finding::ProofNotBound
            )
        }));
        self.tokens += usize::from(f.iter().any(|f| matches!(f, Finding::TokensFlagged { .. })));
        self.other += usize::from(f.iter().any(|f| {
            !matches!(
                f,
                Finding::ProofFailed
                    | Finding::ProofUndecodable
                    | Finding::ProofNotBound
                    | Finding::TokensFlagged { .. }
            )
        }));
        if let Some(t) = &r.toploc {
            for c in t.chunks.iter().skip(1) {
                self.exp.push(c.exp_mismatches);
                self.mant.extend(c.mant_mean_milli());
                self.chunks_failed += usize::from(!c.pass);
            }
        }
        if let Some(t) = &r.tokens {
            self.flagged += t.flagged + t.invalid;
            self.replayed += t.tokens.len();
        }
    }

    fn detail(&self, cases: usize) -> String {
        let range = |v: &[u64]| match (v.iter().min(), v.iter().max()) {
            (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
            _ => "-".into(),
        };
        let exp: Vec<u64> = self.exp.iter().map(|&e| u64::from(e)).collect();
        format!(
            "proof failed {}/{cases}, tokens flagged {}/{cases}, other {}/{cases}; decode chunks failed {}/{} (exp mismatches {}, mantissa mean {} milli-ULP); tokens flagged {} of {}",
            self.proof,
            self.tokens,
            self.other,
            self.chunks_failed,
            self.exp.len(),
            range(&exp),
            range(&self.mant),
            self.flagged,
            self.replayed,
        )
    }
}

#[test]
fn false_positives_and_detection_rates() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let real = engine(SMOLLM, 2, 2);
    let auditor = Auditor::new(real.clone(), REGISTERED);
    let measured = cheats_to_measure();
    let h = Harness {
        real: real.clone(),
        cheap: measured
            .iter()
            .any(|c| {
                matches!(
                    c,
                    Cheat::OtherModel | Cheat::ForeignTokens | Cheat::PrefillAttack
                )
            })
            .then(|| engine(GEMMA, 1, 2)),
        derived: derived_engines(&measured),
        key: agora_types::SecretKey::from_test_seed("provider"),
    };

    // False positives: honest providers with other settings than the auditor's.
    let one_thread = engine(SMOLLM, 1, 1);
    let batched = engine(SMOLLM, 4, 2);
    let honest = env_count("AGORA_AUDIT_HONEST", 1_000);
    let t0 = Instant::now();
    let mut flagged = Vec::new();
    let mut audited = 0usize;
    let mut per_setting = [0usize; 3];
    let mut margins = Margins::default();
    let lens = honest_lengths();
    let mut i = 0usize;
    while audited < honest {
        let len = lens[i % lens.len()];
        let setting = i % 3;
        let served: Vec<Served> = match setting {
            0 => vec![h.honest_on(&one_thread, &work(i), &request_params(i as u64, len))],
            1 => vec![h.honest_on(&real, &work(i), &request_params(i as u64, len))],
            _ => {
                let works: Vec<Work> = (0..4).map(|k| work(i + k)).collect();
                let params: Vec<_> = (0..4)
                    .map(|k| request_params((i + k) as u64, len))
                    .collect();
                h.honest_batch(&batched, &works, &params)
            }
        };
        for s in &served {
            let r = audit(&rt, &auditor, s);
            audited += 1;
            per_setting[setting] += 1;
            margins.add(&r);
            if r.failed() {
                flagged.push((i, setting, r.findings.clone(), r.toploc.clone()));
            }
        }
        i += 1;
    }
    println!(
        "honest audits: {audited} ({} on 1 thread, {} on 2 threads, {} in shared batches of 4; {lens:?} tokens, prompt prefixes reused), flagged {} ({:.0} s)",
        per_setting[0],
        per_setting[1],
        per_setting[2],
        flagged.len(),
        t0.elapsed().as_secs_f64()
    );
    println!("{}", margins.summary());
    for f in &flagged {
        println!(
            "  false positive: case {} setting {}: {:?} {:?}",
            f.0, f.1, f.2, f.3
        );
    }

    // Detection by cheat and length.
    let cases = env_count("AGORA_AUDIT_CASES", 12);
    println!("detection ({cases} cases each):");
    println!("| cheat | 16 tokens | 32 tokens | 64 tokens | 128 tokens |");
    println!("|---|---|---|---|---|");
    let mut worst_at_64 = 1.0f64;
    let mut details = Vec::new();
    let lengths = lengths_to_measure();
    for &cheat in &measured {
        let mut row = format!("| {cheat:?} |");
        for &len in &lengths {
            let t0 = Instant::now();
            let mut cell = Cell::default();
            let show = std::env::var_os("AGORA_AUDIT_SHOW_FLAGGED").is_some();
            for c in 0..cases {
                let params = request_params(1_000 + c as u64, len);
                let s = h.serve(cheat, &work(c), &params);
                let report = audit(&rt, &auditor, &s);
                // The flagged tokens of each case, to tell a cheat's from an honest near tie.
                if let (true, Some(t)) = (show, &report.tokens) {
                    for f in t.tokens.iter().filter(|f| f.flag.is_some()) {
                        println!("  {cheat:?} case {c} (seed {}): {f:?}", params.seed);
                    }
                }
                cell.add(&report);
            }
            let rate = cell.caught as f64 / cases as f64;
            // Q8_0 is not cheaper than the registered Q4_1: recorded, not required.
            if len >= 64 && cheat != Cheat::RequantizedQ8 {
                worst_at_64 = worst_at_64.min(rate);
            }
            row.push_str(&format!(" {}/{cases} |", cell.caught));
            let detail = format!(
                "  {cheat:?} at {len}: caught {}/{cases}, 95% lower bound {:.2}%; {} ({:.0} s)",
                cell.caught,
                100.0 * lower_bound_95(cell.caught, cases),
                cell.detail(cases),
                t0.elapsed().as_secs_f64()
            );
            // As it goes, so a run stopped early still leaves its measured cells.
            println!("{detail}");
            details.push(detail);
        }
        println!("{row}");
    }
    println!("all cells:");
    for d in &details {
        println!("{d}");
    }
    assert!(
        flagged.is_empty(),
        "{} honest responses were flagged",
        flagged.len()
    );
    assert!(
        worst_at_64 >= 0.99,
        "a cheat was caught in only {:.0}% of cases at 64+ tokens",
        worst_at_64 * 100.0
    );
}

#[test]
fn the_lower_bound_matches_known_values() {
    // All caught: 0.05^(1/n). 299 of 299 is just over 99%.
    assert!((lower_bound_95(299, 299) - 0.990_03).abs() < 1e-4);
    assert!(lower_bound_95(298, 298) < 0.99);
    // 10 of 12: the 5% quantile of Beta(10, 3), 0.5619; 0 of n is 0.
    assert!(
        (lower_bound_95(10, 12) - 0.5619).abs() < 1e-3,
        "{}",
        lower_bound_95(10, 12)
    );
    assert_eq!(lower_bound_95(0, 5), 0.0);
}
