//! Resuming an interrupted generation (gateway failover) on the real SmolLM2.

use agora_inference::{ChatMessage, Event, Prompt, Request, Scheduler, TokenEvent};

use crate::common::*;

fn events(s: &Scheduler, r: Request) -> (Vec<TokenEvent>, String, agora_inference::Completion) {
    let mut st = s.submit(r).unwrap();
    let (mut tokens, mut text) = (Vec::new(), String::new());
    while let Some(ev) = st.blocking_next() {
        match ev {
            Event::Token(t) => {
                text.push_str(&t.text);
                tokens.push(t);
            }
            Event::Text(t) => text.push_str(&t),
            Event::Done(c) => return (tokens, text, c),
            Event::Error(e) => panic!("{e}"),
            Event::Started { .. } => {}
        }
    }
    panic!("no Done event");
}

/// Run a sampled request (temperature 0.8, seed) in full, then resume it from 0, 1, 7 and 20
/// delivered tokens: each resumed run must produce exactly the remaining tokens, and the delivered
/// text plus the resumed text must be the full text. The resumed runs prefill prompt +
/// continuation in one pass, a different path from decoding token by token, so this also shows
/// that the logits agree closely enough on this model not to flip a sampled token.
#[test]
fn resumed_generation_continues_exactly_where_the_first_run_stopped() {
    let s = serve(SMOLLM, config(1, 1));
    let prompt = Prompt::Chat(vec![ChatMessage::new(
        "user",
        "Write two sentences about the sea.",
    )]);
    let params = sampled(2024, 32);
    let mut full_req = Request::generate(prompt.clone(), params.clone());
    full_req.reuse_prefix = false;
    let (full, full_text, done) = events(&s, full_req);
    assert!(full.len() > 20, "{full_text:?}");
    let ids: Vec<u32> = full.iter().map(|t| t.id).collect();
    for k in [0, 1, 7, 20] {
        let mut r = Request::generate(prompt.clone(), params.clone());
        r.reuse_prefix = false;
        r.continuation = ids[..k].to_vec();
        let (rest, rest_text, c) = events(&s, r);
        let resumed: Vec<u32> = rest.iter().map(|t| t.id).collect();
        assert_eq!(resumed, ids[k..], "k = {k}");
        let delivered: String = full[..k].iter().map(|t| t.text.as_str()).collect();
        assert_eq!(format!("{delivered}{rest_text}"), full_text, "k = {k}");
        assert_eq!(c.finish_reason, done.finish_reason);
        assert_eq!(c.usage.prompt_tokens as usize, done.prompt.len() + k);
        assert_eq!(c.usage.completion_tokens as usize, ids.len() - k);
    }
}
