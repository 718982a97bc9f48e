//! Hostile input: each a clear error or a clean stop, never a panic, other requests unaffected.

use std::io::Write;

use agora_inference::backends::llama_cpp;
use agora_inference::gguf::GgufError;
use agora_inference::sampler::InvalidParams;
use agora_inference::store::ModelStore;
use agora_inference::{
    Event, FinishReason, GenerateError, LoadError, Request, SamplingParams, SchedulerConfig,
};

use crate::common::*;

#[test]
fn unknown_model_is_a_clear_error() {
    let store = ModelStore::new(models_dir());
    assert!(store.resolve("no-such-model").is_none());
    let err = llama_cpp::serve(
        &models_dir().join("no-such-model.gguf"),
        "x",
        config(1, 1),
        SchedulerConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Missing(_)), "{err}");
}

#[test]
fn corrupt_and_truncated_gguf_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Random bytes.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"this is not a model at all, just text").unwrap();
    let err =
        llama_cpp::serve(&junk, "junk", config(1, 1), SchedulerConfig::default()).unwrap_err();
    assert!(
        matches!(err, LoadError::Gguf(GgufError::BadMagic { .. })),
        "{err}"
    );
    // The real file cut in half: the header is fine, the tensors are not all there.
    let real = std::fs::read(model(SMOLLM)).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::File::create(&cut)
        .unwrap()
        .write_all(&real[..real.len() / 2])
        .unwrap();
    let err = llama_cpp::serve(&cut, "cut", config(1, 1), SchedulerConfig::default()).unwrap_err();
    assert!(
        matches!(err, LoadError::Gguf(GgufError::Truncated { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    // A header cut inside the metadata.
    let head = dir.path().join("head.gguf");
    std::fs::write(&head, &real[..4096]).unwrap();
    let err =
        llama_cpp::serve(&head, "head", config(1, 1), SchedulerConfig::default()).unwrap_err();
    assert!(
        matches!(err, LoadError::Gguf(GgufError::Truncated { .. })),
        "{err}"
    );
}

#[test]
fn bad_requests_get_clear_errors_and_the_engine_keeps_working() {
    let mut cfg = config(2, 1);
    cfg.n_ctx_seq = Some(64);
    let s = serve(SMOLLM, cfg);
    let long = "word ".repeat(100);
    let err = s
        .generate_blocking(Request::generate(text(&long), SamplingParams::greedy(4)))
        .unwrap_err();
    assert!(
        matches!(err, GenerateError::ContextLength { n_ctx: 64, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("one sequence holds 64 tokens"),
        "{err}"
    );
    let err = s
        .generate_blocking(Request::generate(text("hi"), SamplingParams::greedy(0)))
        .unwrap_err();
    assert_eq!(
        err,
        GenerateError::InvalidParams(InvalidParams::ZeroMaxTokens)
    );
    let err = s
        .generate_blocking(Request::generate(
            text("hi"),
            SamplingParams::greedy(u32::MAX),
        ))
        .unwrap_err();
    assert!(matches!(err, GenerateError::ContextLength { .. }), "{err}");
    let bad_stop = SamplingParams {
        stop: vec![String::new()],
        ..SamplingParams::greedy(4)
    };
    let err = s
        .generate_blocking(Request::generate(text("hi"), bad_stop))
        .unwrap_err();
    assert!(matches!(
        err,
        GenerateError::InvalidParams(InvalidParams::EmptyStop { index: 0 })
    ));
    let bad_temp = SamplingParams {
        temperature: f32::INFINITY,
        ..SamplingParams::greedy(4)
    };
    assert!(
        s.generate_blocking(Request::generate(text("hi"), bad_temp))
            .is_err()
    );
    let ok = s
        .generate_blocking(Request::generate(
            text("The capital of France is"),
            SamplingParams::greedy(3),
        ))
        .unwrap();
    assert_eq!(ok.completion.tokens[0], 7042);
}

#[test]
fn a_client_that_disconnects_does_not_disturb_the_others() {
    let s = serve(SMOLLM, config(2, 1));
    let alone = run(
        &s,
        text("The capital of France is"),
        SamplingParams::greedy(10),
    );
    let mut quitter = s
        .submit(Request::generate(
            text("Tell me a long story"),
            SamplingParams::greedy(200),
        ))
        .unwrap();
    let mut stayer_req =
        Request::generate(text("The capital of France is"), SamplingParams::greedy(10));
    stayer_req.reuse_prefix = false;
    let stayer = s.submit(stayer_req).unwrap();
    let mut seen = 0;
    while seen < 2 {
        match quitter.blocking_next() {
            Some(Event::Token(_)) => seen += 1,
            Some(Event::Started { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(quitter);
    let out = stayer.collect_blocking().unwrap();
    assert_eq!(out.completion.tokens, alone.completion.tokens);
    // The slot was freed: a new request is admitted and finishes.
    let again = run(&s, text("Hello"), SamplingParams::greedy(2));
    assert_eq!(again.completion.finish_reason, FinishReason::Length);
}
