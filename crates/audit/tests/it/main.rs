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

fn chat(text: &str) -> Work {
    Work::Chat {
        messages: vec![agora_market::protocol::ChatMessage::new("user", text)],
        tools: None,
    }
}

/// Parameters an ordinary chat request has: the model may end on its own.
fn chat_params(seed: u64, max_tokens: u32) -> agora_market::protocol::SamplingParams {
    agora_market::protocol::SamplingParams {
        ignore_eos: false,
        ..request_params(seed, max_tokens)
    }
}

#[test]
fn honest_answers_in_json_mode_or_ended_by_the_model_or_a_stop_sequence_pass() {
    let (h, auditor) = harness(false);
    // JSON mode: the provider sampled among the tokens JSON allows, so the auditor must too
    // (against the unmasked candidates an honest answer's tokens looked like a cheat's).
    for seed in 0..3 {
        let params = agora_market::protocol::SamplingParams {
            json: true,
            ..chat_params(seed, 48)
        };
        let served = h.serve(Cheat::Honest, &chat("Describe a cat as JSON."), &params);
        let report = audit(&auditor, &served);
        assert!(!report.failed(), "json seed {seed}: {:?}", report.findings);
    }
    // Ended by the model's own end-of-generation token, the end checked too.
    let params = chat_params(3, 64);
    let served = h.serve(Cheat::Honest, &chat("Say hello."), &params);
    assert!(
        served.replay.output.len() < 64,
        "the model did not end on its own"
    );
    let report = audit(&auditor, &served);
    assert!(!report.failed(), "{:?}", report.findings);
    // Ended by a stop sequence.
    let params = chat_params(4, 48);
    let (_, text) = h.signed_for(&work(0), &params, &params);
    let stop = stop_in_the_middle(&text);
    let with_stop = agora_market::protocol::SamplingParams {
        stop: vec![stop.clone()],
        ..params
    };
    let served = h.serve(Cheat::Honest, &work(0), &with_stop);
    assert!(
        served.replay.output.len() < 48,
        "{stop:?} did not stop {text:?}"
    );
    let report = audit(&auditor, &served);
    assert!(!report.failed(), "{:?}", report.findings);
}

/// A few characters from the middle of `text` that occur there first (a stop sequence an
/// honest run ends at, halfway).
fn stop_in_the_middle(text: &str) -> String {
    let mut at = text.len() / 2;
    while !text.is_char_boundary(at) {
        at += 1;
    }
    let mut end = (at + 4).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let stop = &text[at..end];
    assert_eq!(
        text.find(stop),
        Some(at),
        "{stop:?} occurs earlier in {text:?}"
    );
    stop.to_string()
}

#[test]
fn a_provider_billing_past_a_stop_sequence_or_selling_a_cut_answer_as_whole_is_caught() {
    let (h, auditor) = harness(false);
    // Generates on past the stop sequence the request set (more tokens to bill), signs the
    // request's parameters: every token is the real model's, only the rules catch it.
    let params = chat_params(4, 48);
    let (_, text) = h.signed_for(&work(0), &params, &params);
    let with_stop = agora_market::protocol::SamplingParams {
        stop: vec![stop_in_the_middle(&text)],
        ..params.clone()
    };
    let (served, _) = h.signed_for(&work(0), &params, &with_stop);
    let report = audit(&auditor, &served);
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::AgainstTheRules { .. })),
        "{report:?}"
    );
    assert!(report.tokens.as_ref().is_some_and(|t| t.pass), "{report:?}");
    // Cut short where neither a rule nor the model ended it, yet signed complete.
    let served = h.truncated(&work(1), &params, 20);
    let report = audit(&auditor, &served);
    assert_eq!(report.findings, vec![Finding::EndedEarly], "{report:?}");
    // The same cut signed as incomplete (a job that failed midway) is what it says it is.
    let mut cut = served.clone();
    cut.receipt.receipt.complete = false;
    cut.receipt = cut.receipt.receipt.clone().sign(&h.key);
    let report = audit(&auditor, &cut);
    assert!(!report.failed(), "{:?}", report.findings);
    assert!(report.toploc.as_ref().is_some_and(|t| t.pass), "{report:?}");
    // Cut off or not, delivered tokens must come proved: without a proof a provider could
    // fail every job after its last token to escape TOPLOC.
    let mut unproved = cut.clone();
    unproved.proof = None;
    unproved.receipt.receipt.proof_hash = agora_types::Hash::ZERO;
    unproved.receipt = unproved.receipt.receipt.clone().sign(&h.key);
    let report = audit(&auditor, &unproved);
    assert_eq!(report.findings, vec![Finding::NoProof], "{report:?}");
    assert!(
        report
            .tokens
            .as_ref()
            .is_some_and(|t| t.pass && t.tokens.len() == 20)
    );
}
