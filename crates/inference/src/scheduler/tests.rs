use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;
use crate::engine::{
    BatchToken, ChatMessage, Engine, EngineError, ModelInfo, TemplateError, TokenId,
};
use crate::sampler::{InvalidParams, SamplingParams};

/// A deterministic fake model: the logits favour `(last token * 7 + pos) % vocab`; token 0 is
/// end-of-generation. Pieces are "t<id> ". It checks that the scheduler respects KV positions.
pub(crate) struct Fake {
    info: ModelInfo,
    kv: Vec<Vec<TokenId>>,
    out: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    pieces: Vec<Vec<u8>>,
    pub(crate) decodes: Arc<std::sync::atomic::AtomicUsize>,
    delay: std::time::Duration,
}

impl Fake {
    pub(crate) fn new(n_seq: u32, n_ctx_seq: u32, delay_ms: u64) -> Self {
        let n_vocab = 50;
        Self {
            info: ModelInfo {
                name: "fake".into(),
                architecture: "fake".into(),
                n_ctx_train: n_ctx_seq,
                n_ctx_seq,
                n_seq,
                n_batch: 16,
                n_vocab,
                n_embd: 4,
                add_bos: false,
                bos: None,
                has_chat_template: true,
                hidden_states: true,
                eog_tokens: vec![0],
            },
            kv: vec![Vec::new(); n_seq as usize],
            out: Vec::new(),
            pieces: (0..n_vocab)
                .map(|i| format!("t{i} ").into_bytes())
                .collect(),
            decodes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            delay: std::time::Duration::from_millis(delay_ms),
        }
    }
}

impl Engine for Fake {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn tokenize(&self, text: &str) -> Result<Vec<TokenId>, EngineError> {
        Ok(text.bytes().map(|b| 1 + u32::from(b) % 49).collect())
    }
    fn piece(&self, token: TokenId) -> &[u8] {
        &self.pieces[token as usize]
    }
    fn is_eog(&self, token: TokenId) -> bool {
        token == 0
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        Ok(messages
            .iter()
            .map(|m| format!("<{}>{}", m.role, m.content))
            .collect())
    }
    fn decode(&mut self, batch: &[BatchToken]) -> Result<(), EngineError> {
        if batch.len() > self.info.n_batch as usize {
            return Err(EngineError::BatchTooLarge {
                len: batch.len(),
                max: self.info.n_batch as usize,
            });
        }
        std::thread::sleep(self.delay);
        self.decodes.fetch_add(1, Ordering::Relaxed);
        self.out.clear();
        for bt in batch {
            let kv = &mut self.kv[bt.seq as usize];
            if kv.len() != bt.pos as usize {
                return Err(EngineError::Decode(format!(
                    "seq {} position {} but cache holds {}",
                    bt.seq,
                    bt.pos,
                    kv.len()
                )));
            }
            kv.push(bt.token);
            if bt.output {
                let n = self.info.n_vocab as usize;
                let fav = ((bt.token as usize) * 7 + bt.pos as usize) % (n - 1) + 1;
                let logits = (0..n).map(|i| if i == fav { 10.0 } else { 0.0 }).collect();
                let hidden = vec![bt.pos as f32, bt.token as f32, 0.0, 1.0];
                self.out.push(Some((logits, hidden)));
            } else {
                self.out.push(None);
            }
        }
        Ok(())
    }
    fn logits(&self, i: usize) -> Result<&[f32], EngineError> {
        self.out
            .get(i)
            .and_then(|o| o.as_ref())
            .map(|o| o.0.as_slice())
            .ok_or(EngineError::NoOutput(i))
    }
    fn hidden(&self, i: usize) -> Result<&[f32], EngineError> {
        self.out
            .get(i)
            .and_then(|o| o.as_ref())
            .map(|o| o.1.as_slice())
            .ok_or(EngineError::NoOutput(i))
    }
    fn truncate_seq(&mut self, seq: u32, from: u32) {
        self.kv[seq as usize].truncate(from as usize);
    }
}

fn spawn(n_seq: u32, queue: usize, delay_ms: u64) -> Scheduler {
    Scheduler::spawn(
        SchedulerConfig {
            queue_capacity: queue,
        },
        move |serve| {
            serve.run(Fake::new(n_seq, 64, delay_ms));
            Ok(())
        },
    )
    .unwrap()
}

fn req(prompt: &str, max: u32) -> Request {
    Request::generate(Prompt::Text(prompt.into()), SamplingParams::greedy(max))
}

#[test]
fn generates_deterministically_and_streams_tokens() {
    let s = spawn(2, 4, 0);
    let a = s.generate_blocking(req("hello", 5)).unwrap();
    let b = s.generate_blocking(req("hello", 5)).unwrap();
    assert_eq!(a.completion.tokens.len(), 5);
    assert_eq!(a.completion.tokens, b.completion.tokens);
    assert_eq!(a.completion.finish_reason, FinishReason::Length);
    let text: String = a
        .completion
        .tokens
        .iter()
        .map(|t| format!("t{t} "))
        .collect();
    assert_eq!(a.text, text);
}

#[test]
fn batching_does_not_change_results() {
    let s = spawn(4, 8, 0);
    let solo: Vec<_> = ["a", "bb", "ccc", "dddd"]
        .iter()
        .map(|p| s.generate_blocking(req(p, 6)).unwrap().completion.tokens)
        .collect();
    let streams: Vec<_> = ["a", "bb", "ccc", "dddd"]
        .iter()
        .map(|p| {
            let mut r = req(p, 6);
            r.reuse_prefix = false;
            s.submit(r).unwrap()
        })
        .collect();
    let together: Vec<_> = streams
        .into_iter()
        .map(|st| st.collect_blocking().unwrap().completion.tokens)
        .collect();
    assert_eq!(solo, together);
}

#[test]
fn every_step_is_one_decode_over_all_active_sequences() {
    // 2 ms a step: the eight submissions land while the first request's first step runs.
    let fake = Fake::new(8, 64, 2);
    let decodes = fake.decodes.clone();
    let s = Scheduler::spawn(SchedulerConfig::default(), move |serve| {
        serve.run(fake);
        Ok(())
    })
    .unwrap();
    let streams: Vec<_> = (0..8)
        .map(|i| s.submit(req(&"p".repeat(1 + i), 20)).unwrap())
        .collect();
    for st in streams {
        assert_eq!(st.collect_blocking().unwrap().completion.tokens.len(), 20);
    }
    // 8 x 20 tokens; one batch per step (prompts fit in the first batches), not one per token.
    let n = decodes.load(Ordering::Relaxed);
    assert!(n <= 20 + 8, "{n} decode calls for 8 streams of 20 tokens");
}

#[test]
fn full_queue_is_overloaded_and_others_finish() {
    let s = spawn(1, 1, 20);
    let first = s.submit(req("x", 20)).unwrap();
    // Give the engine time to admit the first request so that the queue is empty.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let second = s.submit(req("y", 2)).unwrap();
    let third = s.submit(req("z", 2));
    assert!(
        matches!(third, Err(SubmitError::Overloaded { queued: 1 })),
        "{third:?}"
    );
    assert_eq!(
        first.collect_blocking().unwrap().completion.tokens.len(),
        20
    );
    assert_eq!(
        second.collect_blocking().unwrap().completion.tokens.len(),
        2
    );
}

#[test]
fn dropping_a_stream_frees_its_slot() {
    let s = spawn(1, 2, 5);
    let mut st = s.submit(req("x", 60)).unwrap();
    // Read two tokens, then hang up.
    let mut seen = 0;
    while seen < 2 {
        if let Some(Event::Token(_)) = st.blocking_next() {
            seen += 1;
        }
    }
    drop(st);
    let t0 = Instant::now();
    let out = s.generate_blocking(req("y", 3)).unwrap();
    assert_eq!(out.completion.tokens.len(), 3);
    // The 60-token request (5 ms a step) must not have run to the end first.
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn explicit_cancel_reports_cancelled() {
    let s = spawn(1, 2, 5);
    let mut st = s.submit(req("x", 60)).unwrap();
    st.cancel();
    let mut reason = None;
    while let Some(ev) = st.blocking_next() {
        if let Event::Done(c) = ev {
            reason = Some(c.finish_reason);
        }
    }
    assert_eq!(reason, Some(FinishReason::Cancelled));
}

#[test]
fn context_and_parameter_errors_are_clear() {
    let s = spawn(1, 2, 0);
    let err = s.generate_blocking(req(&"a".repeat(60), 10)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "context length exceeded: the prompt has 60 tokens and max_tokens is 10, but one sequence holds 64 tokens"
    );
    let err = s.generate_blocking(req("a", 0)).unwrap_err();
    assert!(matches!(
        err,
        GenerateError::InvalidParams(InvalidParams::ZeroMaxTokens)
    ));
    let err = s.generate_blocking(req("a", u32::MAX)).unwrap_err();
    assert!(matches!(err, GenerateError::ContextLength { .. }));
    let err = s.generate_blocking(req("", 3)).unwrap_err();
    assert_eq!(err, GenerateError::EmptyPrompt);
    let bad = Request::generate(Prompt::Tokens(vec![1, 999]), SamplingParams::greedy(2));
    assert!(matches!(
        s.generate_blocking(bad),
        Err(GenerateError::BadToken { token: 999, .. })
    ));
    // The engine still works afterwards.
    assert_eq!(
        s.generate_blocking(req("a", 2))
            .unwrap()
            .completion
            .tokens
            .len(),
        2
    );
}

#[test]
fn prefix_reuse_skips_the_shared_prompt() {
    let s = spawn(2, 2, 0);
    let a = s
        .generate_blocking(req("conversation turn one", 4))
        .unwrap();
    assert_eq!(a.completion.usage.cached_tokens, 0);
    let b = s
        .generate_blocking(req("conversation turn one and two", 4))
        .unwrap();
    assert_eq!(
        b.completion.usage.cached_tokens,
        "conversation turn one".len() as u32
    );
    // Same answer as without reuse.
    let mut fresh = req("conversation turn one and two", 4);
    fresh.reuse_prefix = false;
    let c = s.generate_blocking(fresh).unwrap();
    assert_eq!(c.completion.usage.cached_tokens, 0);
    assert_eq!(b.completion.tokens, c.completion.tokens);
}

#[test]
fn long_prompts_are_prefilled_in_chunks_and_hidden_rows_align() {
    let s = spawn(1, 2, 0);
    let mut r = req(&"p".repeat(40), 3);
    r.capture_hidden = true;
    let out = s.generate_blocking(r).unwrap();
    let h = out.completion.hidden.unwrap();
    // 40 prompt positions + 2 fed generated tokens (the last one is never fed).
    assert_eq!(h.len(), 42);
    for (p, row) in h.iter().enumerate() {
        assert_eq!(row[0], p as f32);
    }
    let all: Vec<TokenId> = out
        .completion
        .prompt
        .iter()
        .chain(&out.completion.tokens)
        .copied()
        .collect();
    let scored = s
        .generate_blocking(Request::score(all.clone(), true))
        .unwrap();
    let hs = scored.completion.hidden.unwrap();
    assert_eq!(&hs[..42], &h[..]);
    assert_eq!(scored.completion.score_logprobs.len(), all.len() - 1);
    assert!(scored.completion.score_logits.is_empty(), "not asked for");
    // The logits an auditor replays the sampler over: from the last prompt position on, one row
    // per position, and the greedy run's tokens are their argmax.
    let mut r = Request::score(all.clone(), false);
    r.score_last_logits = all.len() - 39;
    let rows = s.generate_blocking(r).unwrap().completion.score_logits;
    assert_eq!(rows.len(), all.len() - 39);
    for (row, &t) in rows.iter().zip(&out.completion.tokens) {
        let best = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)));
        assert_eq!(best, Some(t as usize));
    }
}

#[test]
fn sampled_rows_are_one_per_sampling_step_and_match_the_full_capture() {
    let s = spawn(1, 2, 0);
    // A prompt longer than one batch, so it is prefilled in chunks; and a second request with a
    // shared prefix, so prefix reuse (which stays on) serves part of the prompt from the cache.
    for prompt in ["q".repeat(40), format!("{}r", "q".repeat(40))] {
        let mut sampled = req(&prompt, 5);
        sampled.capture_sampled = true;
        let out = s.generate_blocking(sampled).unwrap();
        let rows = out.completion.hidden.unwrap();
        let n_prompt = out.completion.prompt.len();
        let n_steps = out.completion.tokens.len();
        assert_eq!(rows.len(), n_steps, "one row per sampled token");
        let mut full = req(&prompt, 5);
        full.capture_hidden = true;
        let all = s
            .generate_blocking(full)
            .unwrap()
            .completion
            .hidden
            .unwrap();
        // The full capture's rows from the last prompt position on are the sampled positions.
        assert_eq!(&all[n_prompt - 1..], &rows[..]);
    }
    // An engine without hidden states refuses the capture instead of returning nothing.
    let plain = Scheduler::spawn(SchedulerConfig { queue_capacity: 2 }, move |serve| {
        let mut engine = Fake::new(1, 64, 0);
        engine.info.hidden_states = false;
        serve.run(engine);
        Ok(())
    })
    .unwrap();
    let mut r = req("q", 2);
    r.capture_sampled = true;
    assert!(plain.generate_blocking(r).is_err());
}

#[test]
fn stop_sequences_and_eog_end_generation() {
    let s = spawn(1, 2, 0);
    let first = s.generate_blocking(req("q", 8)).unwrap();
    let second_tok = first.completion.tokens[1];
    let stop = format!("t{second_tok} ");
    let p = SamplingParams {
        stop: vec![stop],
        ..SamplingParams::greedy(8)
    };
    let out = s
        .generate_blocking(Request::generate(Prompt::Text("q".into()), p))
        .unwrap();
    assert_eq!(out.completion.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, format!("t{} ", first.completion.tokens[0]));
    // Bias the end-of-generation token up: generation stops at once with no tokens.
    let p = SamplingParams {
        logit_bias: vec![(0, 50.0)],
        ..SamplingParams::greedy(8)
    };
    let out = s
        .generate_blocking(Request::generate(Prompt::Text("q".into()), p))
        .unwrap();
    assert_eq!(out.completion.finish_reason, FinishReason::Stop);
    assert!(out.completion.tokens.is_empty());
}

#[test]
fn chat_content_is_tokenized_without_special_parsing() {
    let s = spawn(1, 2, 0);
    let r = Request::generate(
        Prompt::Chat(vec![ChatMessage::new("user", "hi")]),
        SamplingParams::greedy(1),
    );
    let out = s.generate_blocking(r).unwrap();
    assert_eq!(out.completion.usage.prompt_tokens, "<user>hi".len() as u32);
    let r = Request::generate(
        Prompt::Chat(vec![ChatMessage::new("wizard", "hi")]),
        SamplingParams::greedy(1),
    );
    assert!(matches!(
        s.generate_blocking(r),
        Err(GenerateError::Prompt(_))
    ));
}

/// Everything a client sees of one run.
struct Seen {
    tokens: Vec<TokenEvent>,
    text: String,
    completion: Completion,
}

fn watch(s: &Scheduler, r: Request) -> Seen {
    let mut st = s.submit(r).unwrap();
    let mut tokens = Vec::new();
    let mut text = String::new();
    while let Some(ev) = st.blocking_next() {
        match ev {
            Event::Started { .. } => {}
            Event::Token(t) => {
                text.push_str(&t.text);
                tokens.push(t);
            }
            Event::Text(t) => text.push_str(&t),
            Event::Done(completion) => {
                return Seen {
                    tokens,
                    text,
                    completion,
                };
            }
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
    panic!("stream ended without Done");
}

/// Run `params` in full, then resume it from every prefix of its tokens: the resumed run must
/// produce exactly the rest, with the same events, and the delivered text of the prefix plus
/// the resumed text must be the full text. `last_token_ends`: the full run ended because of its
/// last token (max_tokens, a stop sequence, JSON complete), not by sampling end-of-generation.
fn check_resume_from_every_prefix(
    s: &Scheduler,
    prompt: &Prompt,
    params: &SamplingParams,
    last_token_ends: bool,
) -> Seen {
    let full = watch(s, Request::generate(prompt.clone(), params.clone()));
    let ids: Vec<TokenId> = full.tokens.iter().map(|t| t.id).collect();
    assert_eq!(ids, full.completion.tokens);
    let n = ids.len();
    let n_prompt = full.completion.prompt.len();
    for k in 0..=n {
        for reuse in [true, false] {
            let mut r = Request::generate(prompt.clone(), params.clone());
            r.reuse_prefix = reuse;
            r.continuation = ids[..k].to_vec();
            let resumed = watch(s, r);
            let delivered: String = full.tokens[..k].iter().map(|t| t.text.as_str()).collect();
            assert_eq!(resumed.tokens, full.tokens[k..], "k = {k}");
            assert_eq!(resumed.completion.tokens, ids[k..], "k = {k}");
            assert_eq!(format!("{delivered}{}", resumed.text), full.text, "k = {k}");
            assert_eq!(
                resumed.completion.finish_reason, full.completion.finish_reason,
                "k = {k}"
            );
            assert_eq!(resumed.completion.prompt, full.completion.prompt);
            let u = resumed.completion.usage;
            assert_eq!(u.completion_tokens as usize, n - k, "k = {k}");
            // Only a continuation whose last token ended the full run computes nothing; one
            // that ended with end-of-generation samples it again.
            if k == n && last_token_ends {
                assert_eq!(u, Usage::default(), "k = {k}");
            } else {
                assert_eq!(u.prompt_tokens as usize, n_prompt + k, "k = {k}");
            }
        }
    }
    full
}

fn test_engine() -> Scheduler {
    crate::backends::test_engine::TestEngine::spawn(
        crate::backends::test_engine::TestEngineConfig {
            n_seq: 3,
            n_batch: 32,
            ..Default::default()
        },
        SchedulerConfig::default(),
    )
    .unwrap()
}

#[test]
fn resuming_from_any_prefix_continues_exactly_with_penalties_partial_utf8_and_held_stops() {
    use crate::backends::test_engine::BYTE0;
    let s = test_engine();
    let prompt = Prompt::Text("the story of one river".into());
    // Penalties depend on the history; the bias makes the three bytes of "€" likely, so
    // characters are split over tokens (and often broken); "e zq" keeps " the"/" t" held
    // back until the next token shows it is not a stop.
    let params = SamplingParams {
        temperature: 1.0,
        seed: 11,
        repetition_penalty: 1.3,
        frequency_penalty: 0.4,
        presence_penalty: 0.2,
        logit_bias: vec![
            (BYTE0 + 0xE2, 12.5),
            (BYTE0 + 0x82, 12.5),
            (BYTE0 + 0xAC, 12.5),
        ],
        stop: vec!["e zq".into()],
        logprobs: Some(2),
        max_tokens: 40,
        ..SamplingParams::greedy(256)
    };
    let full = check_resume_from_every_prefix(&s, &prompt, &params, true);
    assert_eq!(full.completion.finish_reason, FinishReason::Length);
    assert_eq!(full.tokens.len(), 40);
    // The scenario really exercises held-back text: some tokens released nothing.
    assert!(
        full.tokens.iter().any(|t| t.text.is_empty()),
        "{:?}",
        full.text
    );
    assert!(full.text.contains('€') || full.text.contains('\u{fffd}'));

    // A stop sequence that is hit: the text across two tokens in the middle of the run.
    let cut: Vec<usize> = full.text.char_indices().map(|(i, _)| i).collect();
    let at = cut[cut.len() / 2];
    let stop: String = full.text[at..].chars().take(5).collect();
    let stopping = SamplingParams {
        stop: vec!["e zq".into(), stop],
        ..params.clone()
    };
    let stopped = check_resume_from_every_prefix(&s, &prompt, &stopping, true);
    assert_eq!(stopped.completion.finish_reason, FinishReason::Stop);
    assert!(stopped.tokens.len() < 40);
    assert!(full.text.starts_with(&stopped.text));
}

#[test]
fn json_schema_generation_resumes_exactly_and_validates() {
    let s = test_engine();
    let prompt = Prompt::Chat(vec![ChatMessage::new("user", "give me json")]);
    let text = r#"{"type":"object","properties":{"k":{"enum":["a","bc"]},
        "n":{"type":"integer"},"t":{"type":"array","items":{"type":"boolean"},"maxItems":2}},
        "required":["k","n"],"additionalProperties":false}"#;
    let schema = crate::json::Schema::parse(text).unwrap();
    for seed in 0..4 {
        let params = SamplingParams {
            temperature: 1.0,
            seed,
            json_schema: Some(text.into()),
            max_tokens: 200,
            ..SamplingParams::greedy(256)
        };
        let full = check_resume_from_every_prefix(&s, &prompt, &params, true);
        assert_eq!(
            full.completion.finish_reason,
            FinishReason::Stop,
            "{}",
            full.text
        );
        let v: serde_json::Value = serde_json::from_str(&full.text).unwrap();
        assert!(schema.validate(&v), "{}", full.text);
    }
    // A schema the engine refuses before any work.
    let bad = SamplingParams {
        json_schema: Some(r#"{"type":"string","format":"email"}"#.into()),
        ..SamplingParams::greedy(256)
    };
    let err = s
        .generate_blocking(Request::generate(prompt, bad))
        .unwrap_err();
    assert!(
        matches!(err, GenerateError::InvalidParams(InvalidParams::Schema(_))),
        "{err}"
    );
}

#[test]
fn resuming_in_json_mode_and_after_eos() {
    use crate::backends::test_engine::{BYTE0, EOS};
    let s = test_engine();
    let prompt = Prompt::Chat(vec![ChatMessage::new("user", "give me json")]);
    let json = SamplingParams {
        temperature: 1.0,
        seed: 5,
        json: true,
        logit_bias: vec![
            (BYTE0 + u32::from(b'"'), 14.0),
            (BYTE0 + u32::from(b'}'), 10.5),
        ],
        max_tokens: 60,
        ..SamplingParams::greedy(256)
    };
    let full = check_resume_from_every_prefix(&s, &prompt, &json, true);
    assert_eq!(
        full.completion.finish_reason,
        FinishReason::Stop,
        "{}",
        full.text
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&full.text).is_ok(),
        "{}",
        full.text
    );

    // A generation that ends with end-of-generation.
    let eos = SamplingParams {
        temperature: 1.0,
        seed: 9,
        logit_bias: vec![(EOS, 2.0)],
        max_tokens: 60,
        ..SamplingParams::greedy(256)
    };
    let full = check_resume_from_every_prefix(&s, &prompt, &eos, false);
    assert_eq!(full.completion.finish_reason, FinishReason::Stop);
    assert!(full.tokens.len() < 60);
    // The end-of-generation token itself as the last continuation token: done at once.
    let mut ids = full.completion.tokens.clone();
    ids.push(EOS);
    let mut r = Request::generate(prompt.clone(), eos.clone());
    r.continuation = ids.clone();
    let done = watch(&s, r);
    assert_eq!(done.completion.finish_reason, FinishReason::Stop);
    assert!(done.completion.tokens.is_empty() && done.text.is_empty());
    assert_eq!(done.completion.usage, Usage::default());
    // Anything after it could not have come from this request.
    ids.push(BYTE0 + u32::from(b'a'));
    let mut r = Request::generate(prompt.clone(), eos.clone());
    r.continuation = ids.clone();
    let err = s.generate_blocking(r).unwrap_err();
    assert_eq!(
        err,
        GenerateError::BadContinuation {
            index: ids.len() - 1,
            why: "the generation had already ended at the token before it".into()
        }
    );
}

#[test]
fn impossible_continuations_are_clear_errors() {
    let s = test_engine();
    let prompt = Prompt::Text("x".into());
    let with = |cont: Vec<TokenId>, params: SamplingParams| {
        let mut r = Request::generate(prompt.clone(), params);
        r.continuation = cont;
        s.generate_blocking(r).unwrap_err()
    };
    let n_vocab = s.info().n_vocab;
    assert!(matches!(
        with(vec![5, n_vocab], SamplingParams::greedy(4)),
        GenerateError::BadContinuation { index: 1, .. }
    ));
    // Longer than max_tokens.
    assert!(matches!(
        with(vec![5; 5], SamplingParams::greedy(4)),
        GenerateError::BadContinuation { index: 4, .. }
    ));
    // JSON mode could never have started with a letter.
    let json = SamplingParams {
        json: true,
        ..SamplingParams::greedy(4)
    };
    let a = crate::backends::test_engine::BYTE0 + u32::from(b'a');
    assert!(matches!(
        with(vec![a], json),
        GenerateError::BadContinuation { index: 0, .. }
    ));
    // Scoring scores the continuation after the prompt (an auditor's prompt ++ response), and
    // refuses ids outside the vocabulary as generation does.
    let mut r = Request::score(vec![5, 6], false);
    r.continuation = vec![7];
    let scored = s.generate_blocking(r).unwrap().completion;
    assert_eq!(scored.prompt, vec![5, 6]);
    assert_eq!(scored.score_logprobs.len(), 2, "6 after 5, 7 after 5 6");
    let mut r = Request::score(vec![5, 6], false);
    r.continuation = vec![u32::MAX];
    assert!(matches!(
        s.generate_blocking(r),
        Err(GenerateError::BadContinuation { .. })
    ));
    // The engine is fine afterwards.
    assert_eq!(
        s.generate_blocking(Request::generate(prompt.clone(), SamplingParams::greedy(3)))
            .unwrap()
            .completion
            .tokens
            .len(),
        3
    );
}

#[test]
fn resuming_on_the_fake_engine_from_every_prefix() {
    let s = spawn(2, 64, 0);
    let params = SamplingParams {
        temperature: 0.7,
        seed: 1,
        stop: vec!["t4".into()],
        max_tokens: 12,
        ..SamplingParams::greedy(256)
    };
    check_resume_from_every_prefix(&s, &Prompt::Text("abc".into()), &params, true);
}
