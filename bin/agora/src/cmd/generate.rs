//! `agora generate`: one completion or chat turn from a local model, for scripts.

use std::io::Write;
use std::path::PathBuf;

use agora_inference::backends::llama_cpp::{self, LlamaConfig};
use agora_inference::{
    ChatMessage, Event, Prompt, Request, SamplingParams, Scheduler, SchedulerConfig,
};
use clap::Args;

use super::models::StoreArgs;

/// Which model and how to run it.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// A known model name, a file in the store, or a path to a GGUF file.
    #[arg(long, short, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Context per sequence (default: min(4096, the model's)).
    #[arg(long)]
    pub ctx: Option<u32>,
}

impl ModelArgs {
    pub fn path(&self) -> eyre::Result<PathBuf> {
        let store = self.store.store();
        let path = store.resolve(&self.model).ok_or_else(|| {
            eyre::eyre!(
                "unknown model {:?}: not a known name, not in {}, not a file",
                self.model,
                store.dir().display()
            )
        })?;
        if !path.exists() {
            eyre::bail!(
                "model {} is not in {}; run `agora models pull {}`",
                self.model,
                store.dir().display(),
                self.model
            );
        }
        Ok(path)
    }

    /// Load the model and start a scheduler with `n_seq` slots.
    pub fn open(&self, n_seq: u32) -> eyre::Result<Scheduler> {
        let path = self.path()?;
        let config = LlamaConfig {
            n_seq,
            n_ctx_seq: self.ctx,
            threads: self.threads,
            ..LlamaConfig::default()
        };
        // A load bar on a terminal (indicatif draws nothing when stderr is not one).
        let bar = indicatif::ProgressBar::new(100).with_style(
            indicatif::ProgressStyle::with_template("loading {msg} [{bar:30}] {percent}%")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(self.model.clone());
        let shown = bar.clone();
        let sched = llama_cpp::serve_with_progress(
            &path,
            &self.model,
            config,
            SchedulerConfig::default(),
            Some(Box::new(move |f: f32| {
                shown.set_position((f.clamp(0.0, 1.0) * 100.0) as u64)
            })),
        );
        bar.finish_and_clear();
        Ok(sched?)
    }
}

/// Sampling flags shared by `generate` and `chat`. A flag left out takes the value of
/// `SamplingParams::default()`, the same defaults as the gateway's API.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// 0 = greedy [default: 1].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// 0 disables [default: 0].
    #[arg(long)]
    pub top_k: Option<u32>,
    /// 1 disables [default: 1].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// 0 disables [default: 0].
    #[arg(long)]
    pub min_p: Option<f32>,
    /// 1 disables [default: 1].
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// [default: 256]
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop sequence (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplingParams {
        let d = SamplingParams::default();
        SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repetition_penalty: self.repetition_penalty.unwrap_or(d.repetition_penalty),
            max_tokens: self.max_tokens.unwrap_or(d.max_tokens),
            seed: self.seed.unwrap_or(d.seed),
            stop: self.stop.clone(),
            ..d
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt.
    #[arg(long, short)]
    prompt: String,
    /// Send the prompt as a user chat message through the model's chat template (default for
    /// models that have one).
    #[arg(long, conflicts_with = "raw")]
    chat: bool,
    /// Send the prompt as plain text, even to a chat model.
    #[arg(long)]
    raw: bool,
    /// Constrain the output to one JSON object.
    #[arg(long)]
    json: bool,
    /// Print a JSON record (text, token ids, usage, finish reason) instead of streaming text.
    #[arg(long)]
    record: bool,
}

pub fn run(args: GenerateArgs) -> eyre::Result<()> {
    let sched = args.model.open(1)?;
    let chat = args.chat || (!args.raw && sched.info().has_chat_template);
    let prompt = if chat {
        Prompt::Chat(vec![ChatMessage::new("user", args.prompt.clone())])
    } else {
        Prompt::Text(args.prompt.clone())
    };
    let mut params = args.sampling.params();
    params.json = args.json;
    let mut stream = sched.submit(Request::generate(prompt, params))?;
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    while let Some(ev) = stream.blocking_next() {
        match ev {
            Event::Started { .. } => {}
            Event::Token(t) => {
                if !args.record {
                    write!(out, "{}", t.text)?;
                    out.flush()?;
                }
                text.push_str(&t.text);
            }
            Event::Text(t) => {
                if !args.record {
                    write!(out, "{t}")?;
                }
                text.push_str(&t);
            }
            Event::Done(c) => {
                if args.record {
                    let rec = serde_json::json!({
                        "model": sched.info().name,
                        "text": text,
                        "prompt_tokens": c.prompt,
                        "tokens": c.tokens,
                        "finish_reason": c.finish_reason,
                        "usage": c.usage,
                    });
                    writeln!(out, "{rec}")?;
                } else {
                    writeln!(out)?;
                }
                tracing::info!(
                    prompt_tokens = c.usage.prompt_tokens,
                    completion_tokens = c.usage.completion_tokens,
                    finish = ?c.finish_reason,
                    decode_tok_s = c.usage.completion_tokens as f64 / c.decode_secs.max(1e-9),
                    "done"
                );
                return Ok(());
            }
            Event::Error(e) => return Err(e.into()),
        }
    }
    eyre::bail!("the engine stopped before the request finished")
}
