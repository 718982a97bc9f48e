//! The audit's rates, measured on the real models (kept out of the default test profile):
//!
//! * false positives: honest responses from providers whose settings differ from the auditor's
//!   (1 and 2 threads, 4 requests sharing a batch, prompt-prefix reuse), each audited once;
//! * detection: each cheat of the harness at 16, 32, 64 and 128 generated tokens.
//!
//! `cargo nextest run -p agora-audit --profile slow -E 'binary(slow)' --no-capture`
//! (`AGORA_AUDIT_HONEST` and `AGORA_AUDIT_CASES` change the counts; defaults 1,000 and 12).

// Shared with the `it` tests, which use the rest of it.
#[path = "../it/cheats.rs"]
#[allow(dead_code)]
mod cheats;

use std::time::Instant;

use agora_audit::{AuditReport, Auditor};
use agora_market::protocol::Work;
use cheats::{CHEATS, GEMMA, Harness, REGISTERED, SMOLLM, Served, engine, request_params};

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

#[test]
fn false_positives_and_detection_rates() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let real = engine(SMOLLM, 2, 2);
    let auditor = Auditor::new(real.clone(), REGISTERED);
    let h = Harness {
        real: real.clone(),
        cheap: Some(engine(GEMMA, 1, 2)),
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
    for cheat in CHEATS {
        let mut row = format!("| {cheat:?} |");
        for len in [16u32, 32, 64, 128] {
            let mut caught = 0;
            for c in 0..cases {
                let params = request_params(1_000 + c as u64, len);
                let s = h.serve(cheat, &work(c), &params);
                if audit(&rt, &auditor, &s).failed() {
                    caught += 1;
                }
            }
            let rate = caught as f64 / cases as f64;
            if len >= 64 {
                worst_at_64 = worst_at_64.min(rate);
            }
            row.push_str(&format!(" {caught}/{cases} |"));
        }
        println!("{row}");
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
