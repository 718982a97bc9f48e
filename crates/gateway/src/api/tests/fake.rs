//! An in-memory upstream: models and scripted completions, no network.

use std::sync::Mutex;
use std::time::Duration;

use agora_market::Price;
use agora_market::protocol::{Tok, Work};
use agora_types::{Amount, Hash, PublicKey};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::api::Upstream;
use crate::market::{Constraints, ModelKind, ModelView};
use crate::relay::{CompletionJob, RelayError, RelayEvent, Segment, Summary};

/// What the fake does with every job it is given.
#[derive(Clone)]
pub(crate) enum Script {
    /// Sends these tokens (logprob -0.1, one alternative) and finishes with "stop".
    Tokens(Vec<&'static str>),
    /// Like `Tokens`, one every `Duration`.
    Slow(Vec<&'static str>, Duration),
    /// Sends these tokens, then fails.
    FailAfter(Vec<&'static str>, RelayError),
    /// Ends the event channel without a result.
    Vanish,
    /// Never answers (and keeps the channel open).
    Hang,
    /// Embeddings: vector `[i, 0.5, -1]` for input `i`, except the one skipped.
    Embed { skip: Option<u32> },
    /// Job `k` (in start order) sends list `k` (the last list for later jobs), each token's id
    /// derived from its text, so two runs with other texts have other ids.
    PerJob(Vec<Vec<&'static str>>),
}

pub(crate) struct Fake {
    models: Vec<(ModelView, Vec<Price>)>,
    script: Script,
    /// Every job started, in order.
    pub(crate) jobs: Mutex<Vec<CompletionJob>>,
    /// Calls of `refresh`.
    pub(crate) refreshes: Mutex<u32>,
}

pub(crate) fn model(name: &str, kind: ModelKind, byte: u8) -> ModelView {
    ModelView {
        sha256: Hash([byte; 32]),
        name: name.into(),
        family: "test".into(),
        license: "apache-2.0".into(),
        owner: PublicKey([7; 32]),
        royalty_bps: 250,
        kind,
    }
}

pub(crate) const CHAT: &str = "chat-model";
pub(crate) const BASE: &str = "base-model";
pub(crate) const EMBED: &str = "embed-model";

fn price(input: u128, output: u128) -> Price {
    Price {
        input_per_million: Amount(input),
        output_per_million: Amount(output),
    }
}

impl Fake {
    pub(crate) fn new(script: Script) -> Self {
        Self {
            models: vec![
                (
                    model(CHAT, ModelKind::Chat, 1),
                    vec![price(10, 20), price(30, 40)],
                ),
                (
                    model(BASE, ModelKind::Completion, 2),
                    vec![price(1, 2), price(3, 4)],
                ),
                (model(EMBED, ModelKind::Embedding, 3), vec![price(5, 0)]),
            ],
            script,
            jobs: Mutex::new(Vec::new()),
            refreshes: Mutex::new(0),
        }
    }

    pub(crate) fn jobs(&self) -> Vec<CompletionJob> {
        self.jobs.lock().unwrap().clone()
    }
}

fn tok(i: usize, text: &str) -> RelayEvent {
    RelayEvent::Token(Tok {
        id: i as u32,
        text: text.into(),
        logprob: Some(-0.1),
        top: vec![(i as u32, -0.1), (999, -2.5)],
        top_text: vec![text.into()],
    })
}

fn done(prompt_tokens: u32, completion_tokens: u32) -> RelayEvent {
    RelayEvent::Done(Summary {
        request_id: agora_types::Hash([7; 32]),
        finish_reason: "stop".into(),
        prompt_tokens,
        completion_tokens,
        charged: Amount(42),
        segments: vec![Segment {
            provider: PublicKey([9; 32]),
            prompt_tokens,
            completion_tokens,
            charged: Amount(42),
            receipt_ok: true,
            receipt: None,
        }],
    })
}

impl Upstream for Fake {
    fn start(&self, job: CompletionJob) -> mpsc::Receiver<RelayEvent> {
        let (tx, rx) = mpsc::channel(64);
        let k = {
            let mut jobs = self.jobs.lock().unwrap();
            jobs.push(job.clone());
            jobs.len() - 1
        };
        let script = self.script.clone();
        tokio::spawn(async move {
            let tokens = |ts: &[&str]| {
                ts.iter()
                    .enumerate()
                    .map(|(i, t)| tok(i, t))
                    .collect::<Vec<_>>()
            };
            match script {
                Script::Tokens(ts) => {
                    for ev in tokens(&ts) {
                        let _ = tx.send(ev).await;
                    }
                    let _ = tx.send(done(3, ts.len() as u32)).await;
                }
                Script::Slow(ts, every) => {
                    for ev in tokens(&ts) {
                        tokio::time::sleep(every).await;
                        let _ = tx.send(ev).await;
                    }
                    let _ = tx.send(done(3, ts.len() as u32)).await;
                }
                Script::FailAfter(ts, e) => {
                    for ev in tokens(&ts) {
                        let _ = tx.send(ev).await;
                    }
                    let _ = tx.send(RelayEvent::Error(e)).await;
                }
                Script::PerJob(lists) => {
                    let ts = &lists[k.min(lists.len() - 1)];
                    for t in ts {
                        let id = t.bytes().fold(0u32, |a, b| a * 31 + u32::from(b)) % 50_000;
                        let ev = RelayEvent::Token(Tok {
                            id,
                            text: (*t).into(),
                            logprob: Some(-0.1),
                            top: vec![(id, -0.1)],
                            top_text: vec![(*t).into()],
                        });
                        let _ = tx.send(ev).await;
                    }
                    let _ = tx.send(done(3, ts.len() as u32)).await;
                }
                Script::Vanish => drop(tx),
                Script::Hang => {
                    tx.closed().await;
                }
                Script::Embed { skip } => {
                    let Work::Embed { inputs } = &job.work else {
                        return;
                    };
                    for i in 0..inputs.len() as u32 {
                        if Some(i) == skip {
                            continue;
                        }
                        let v = vec![i as f32, 0.5, -1.0];
                        let _ = tx
                            .send(RelayEvent::Embeddings {
                                first_index: i,
                                vectors: vec![v],
                            })
                            .await;
                    }
                    let _ = tx.send(done(inputs.len() as u32 * 2, 0)).await;
                }
            }
        });
        rx
    }

    fn model(&self, name: &str) -> Option<ModelView> {
        self.models
            .iter()
            .map(|(m, _)| m)
            .find(|m| m.name == name)
            .cloned()
    }

    fn models(&self) -> Vec<(ModelView, Vec<Price>)> {
        // Empty until the first refresh, like the market.
        if *self.refreshes.lock().unwrap() == 0 {
            return Vec::new();
        }
        self.models.clone()
    }

    /// The model's listed prices within the price cap (trust is not modelled).
    fn admitted(&self, model: &Hash, c: &Constraints) -> usize {
        let within = |p: &&Price| {
            c.max_price_per_mtok
                .is_none_or(|max| p.input_per_million.0 <= max && p.output_per_million.0 <= max)
        };
        self.models
            .iter()
            .filter(|(m, _)| m.sha256 == *model)
            .map(|(_, prices)| prices.iter().filter(within).count())
            .sum()
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            *self.refreshes.lock().unwrap() += 1;
        })
    }
    fn receipts(&self, _request_id: &Hash) -> Vec<crate::receipts::KeptReceipt> {
        Vec::new()
    }
}
