//! `agora chat`: a terminal chat with a local model.
//!
//! Each turn resubmits the whole conversation; the scheduler's prefix reuse keeps the earlier
//! turns in the KV cache, so only the new message is prefilled.

use std::io::{BufRead, Write};

use agora_inference::{ChatMessage, Event, Prompt, Request};
use clap::Args;

use super::generate::{ModelArgs, SamplingArgs};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    /// Talk to the network through this gateway (its base URL, e.g. http://127.0.0.1:8646/v1)
    /// instead of loading the model locally; `--model` names the network's model.
    #[arg(long)]
    gateway: Option<String>,
    /// The gateway API key.
    #[arg(long, env = "AGORA_API_KEY")]
    api_key: Option<String>,
}

pub fn run(args: ChatArgs) -> eyre::Result<()> {
    if let Some(base_url) = args.gateway.clone() {
        let params = args.sampling.params();
        return super::chat_remote::run(super::chat_remote::RemoteChat {
            base_url,
            api_key: args
                .api_key
                .clone()
                .ok_or_else(|| eyre::eyre!("--gateway needs --api-key (or AGORA_API_KEY)"))?,
            model: args.model.model.clone(),
            system: args.system.clone(),
            temperature: params.temperature,
            max_tokens: params.max_tokens,
        });
    }
    let sched = args.model.open(1)?;
    if !sched.info().has_chat_template {
        eyre::bail!(
            "{} has no chat template (it is a base model); use `agora generate --raw`",
            sched.info().name
        );
    }
    let mut history = Vec::new();
    if let Some(s) = &args.system {
        history.push(ChatMessage::new("system", s.clone()));
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!("chatting with {} (Ctrl-D to quit)", sched.info().name);
    while let Some(line) = next_turn(&stdin, &mut out)? {
        let line = line.as_str();
        history.push(ChatMessage::new("user", line));
        let mut stream = sched.submit(Request::generate(
            Prompt::Chat(history.clone()),
            args.sampling.params(),
        ))?;
        let mut reply = String::new();
        loop {
            match stream.blocking_next() {
                Some(Event::Token(t)) => {
                    write!(out, "{}", t.text)?;
                    out.flush()?;
                    reply.push_str(&t.text);
                }
                Some(Event::Text(t)) => {
                    write!(out, "{t}")?;
                    reply.push_str(&t);
                }
                Some(Event::Started { .. }) => {}
                Some(Event::Done(c)) => {
                    tracing::debug!(
                        cached = c.usage.cached_tokens,
                        prompt = c.usage.prompt_tokens,
                        "turn done"
                    );
                    break;
                }
                Some(Event::Error(e)) => {
                    eprintln!("error: {e}");
                    history.pop();
                    break;
                }
                None => eyre::bail!("the engine stopped"),
            }
        }
        writeln!(out)?;
        if !reply.is_empty() {
            history.push(ChatMessage::new("assistant", reply));
        }
    }
    Ok(())
}

/// Prompts for the next user message; `None` at end of input. Blank lines are skipped.
pub fn next_turn(
    stdin: &std::io::Stdin,
    out: &mut std::io::Stdout,
) -> std::io::Result<Option<String>> {
    loop {
        write!(out, "> ")?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            writeln!(out)?;
            return Ok(None);
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if !line.trim().is_empty() {
            return Ok(Some(line.to_string()));
        }
    }
}
