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
//! `AGORA_AUDIT_CHEATS=Requantized,SkippedLayers` measures only the cheats named).

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
    let mut i = 0usize;
    while audited < honest {
        let len = [16u32, 24, 32, 48][i % 4];
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
            if r.failed() {
                flagged.push((i, setting, r.findings.clone(), r.toploc.clone()));
            }
        }
        i += 1;
    }
    println!(
        "honest audits: {audited} ({} on 1 thread, {} on 2 threads, {} in shared batches of 4; 16-48 tokens, prompt prefixes reused), flagged {} ({:.0} s)",
        per_setting[0],
        per_setting[1],
        per_setting[2],
        flagged.len(),
        t0.elapsed().as_secs_f64()
    );
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
    for &cheat in &measured {
        let mut row = format!("| {cheat:?} |");
        for len in [16u32, 32, 64, 128] {
            let t0 = Instant::now();
            let mut cell = Cell::default();
            for c in 0..cases {
                let params = request_params(1_000 + c as u64, len);
                let s = h.serve(cheat, &work(c), &params);
                cell.add(&audit(&rt, &auditor, &s));
            }
            let rate = cell.caught as f64 / cases as f64;
            // Q8_0 is not cheaper than the registered Q4_1: recorded, not required.
            if len >= 64 && cheat != Cheat::RequantizedQ8 {
                worst_at_64 = worst_at_64.min(rate);
            }
            row.push_str(&format!(" {}/{cases} |", cell.caught));
            details.push(format!(
                "  {cheat:?} at {len}: {} ({:.0} s)",
                cell.detail(cases),
                t0.elapsed().as_secs_f64()
            ));
        }
        println!("{row}");
    }
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
