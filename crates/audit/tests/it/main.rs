//! The audit against the cheater harness on the real models (SmolLM2 is the registered model,
//! Gemma 3 the cheap one): honest responses pass, every cheat is caught, and the auditor cannot
//! be made to frame a provider with a job the receipt does not bind.

// Shared with the `slow` binary, which uses the rest of it.
#[allow(dead_code)]
mod cheats;

use agora_audit::{Auditor, Finding};
use agora_market::protocol::Work;
use cheats::{
    CHEATS, Cheat, GEMMA, Harness, REGISTERED, SMOLLM, derived_engines, engine, request_params,
};

/// Runs an audit to its end (the harness itself blocks, so the tests are not async).
fn audit(auditor: &Auditor, served: &cheats::Served) -> agora_audit::AuditReport {
    audit_replay(auditor, served, &served.replay)
}

fn audit_replay(
    auditor: &Auditor,
    served: &cheats::Served,
    replay: &agora_market::protocol::Replay,
) -> agora_audit::AuditReport {
    audit_receipt(auditor, &served.receipt, served, replay)
}

fn audit_receipt(
    auditor: &Auditor,
    receipt: &agora_market::protocol::SignedReceipt,
    served: &cheats::Served,
    replay: &agora_market::protocol::Replay,
) -> agora_audit::AuditReport {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(auditor.audit(receipt, served.proof.as_ref(), replay))
        .unwrap()
}

/// The auditor and a harness; `with_cheats` loads the models the cheats serve.
fn harness(with_cheats: bool) -> (Harness, Auditor) {
    let real = engine(SMOLLM, 2, 2);
    let auditor = Auditor::new(real.clone(), REGISTERED);
    let harness = Harness {
        real,
        cheap: with_cheats.then(|| engine(GEMMA, 1, 2)),
        derived: if with_cheats {
            derived_engines(&CHEATS)
        } else {
            Vec::new()
        },
        key: agora_types::SecretKey::from_test_seed("provider"),
    };
    (harness, auditor)
}

fn work(i: u64) -> Work {
    let topics = [
        "the sea",
        "a lighthouse",
        "bread",
        "the first printing press",
    ];
    Work::Text {
        prompt: format!(
            "Here is a short story about {}.",
            topics[i as usize % topics.len()]
        ),
    }
}

#[test]
fn honest_responses_pass_and_every_cheat_is_caught_at_40_tokens() {
    let (h, auditor) = harness(true);
    for seed in 0..3 {
        let params = request_params(seed, 40);
        let served = h.serve(Cheat::Honest, &work(seed), &params);
        let report = audit(&auditor, &served);
        assert!(
            !report.failed(),
            "honest seed {seed}: {:?}",
            report.findings
        );
        let t = report.toploc.as_ref().unwrap();
        assert!(t.pass && t.chunks.len() == 3, "{t:?}");
        assert_eq!(report.tokens.as_ref().unwrap().flagged, 0);
    }
    for cheat in CHEATS {
        let params = request_params(11, 40);
        let served = h.serve(cheat, &work(1), &params);
        let report = audit(&auditor, &served);
        assert!(report.failed(), "{cheat:?} was not caught: {report:?}");
        let proof_caught = report.findings.iter().any(|f| {
            matches!(
                f,
                Finding::ProofFailed | Finding::ProofUndecodable | Finding::ProofNotBound
            )
        });
        let tokens_caught = report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::TokensFlagged { .. }));
        match cheat {
            // TOPLOC's known gap: the proof is the real model's; only the token replay sees it.
            Cheat::PrefillAttack => {
                assert!(tokens_caught && !proof_caught, "{cheat:?}: {report:?}")
            }
            Cheat::TamperedSampler => assert!(tokens_caught, "{cheat:?}: {report:?}"),
            Cheat::RandomProof | Cheat::ReplayedProof => {
                assert!(proof_caught, "{cheat:?}: {report:?}")
            }
            Cheat::OtherModel | Cheat::EditedOutput => {
                assert!(proof_caught && tokens_caught, "{cheat:?}: {report:?}")
            }
            // Another tokenizer's ids: those past the real vocabulary end the audit at once.
            Cheat::ForeignTokens => {
                let foreign = served.replay.output.iter().any(|&t| t >= 49_152);
                let outside = report
                    .findings
                    .iter()
                    .any(|f| matches!(f, Finding::OutsideVocabulary { .. }));
                assert_eq!(foreign, outside, "{cheat:?}: {report:?}");
                assert!(outside || proof_caught, "{cheat:?}: {report:?}")
            }
            Cheat::Requantized | Cheat::SkippedLayers => {
                assert!(proof_caught || tokens_caught, "{cheat:?}: {report:?}")
            }
            Cheat::Honest | Cheat::RequantizedQ8 => unreachable!(),
        }
    }
}

#[test]
fn a_gateway_cannot_frame_an_honest_provider_with_a_job_its_receipt_does_not_bind() {
    let (h, auditor) = harness(false);
    let params = request_params(5, 16);
    let served = h.serve(Cheat::Honest, &work(2), &params);
    let mut framed = served.replay.clone();
    framed.output[3] += 1;
    let report = audit_replay(&auditor, &served, &framed);
    assert_eq!(
        report.findings,
        vec![Finding::ReplayMismatch("output_hash")]
    );
    let mut framed = served.replay.clone();
    framed.sampling.temperature = 1.5;
    let report = audit_replay(&auditor, &served, &framed);
    assert_eq!(
        report.findings,
        vec![Finding::ReplayMismatch("params_hash")]
    );
    // A receipt whose signature does not verify is not the provider's at all.
    let mut forged = served.receipt.clone();
    forged.receipt.completion_tokens += 1;
    let report = audit_receipt(&auditor, &forged, &served, &served.replay);
    assert_eq!(report.findings, vec![Finding::BadSignature]);
    // And the honest one still passes.
    let report = audit(&auditor, &served);
    assert!(!report.failed(), "{:?}", report.findings);
}
