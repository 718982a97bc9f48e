//! `agora chat --gateway URL`: the terminal chat, answered by the network through a gateway's
//! OpenAI-compatible API (streamed), instead of a local model.

use std::io::Write;

use super::chat::next_turn;

use serde_json::{Value, json};

/// What a remote chat needs.
pub struct RemoteChat {
    /// Base URL ending in `/v1`.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub system: Option<String>,
    pub temperature: f32,
    pub max_tokens: u32,
}

pub fn run(c: RemoteChat) -> eyre::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", c.base_url.trim_end_matches('/'));
    let mut history: Vec<Value> = Vec::new();
    if let Some(s) = &c.system {
        history.push(json!({"role": "system", "content": s}));
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!(
        "chatting with {} through {} (Ctrl-D to quit)",
        c.model, c.base_url
    );
    while let Some(line) = next_turn(&stdin, &mut out)? {
        history.push(json!({"role": "user", "content": line}));
        let body = json!({"model": c.model, "messages": history, "stream": true,
            "temperature": c.temperature, "max_tokens": c.max_tokens});
        let reply = rt.block_on(async {
            let mut resp = client
                .post(&url)
                .bearer_auth(&c.api_key)
                .json(&body)
                .send()
                .await?;
            if !resp.status().is_success() {
                let status = resp.status();
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                eyre::bail!(
                    "gateway refused ({status}): {}",
                    v["error"]["message"].as_str().unwrap_or("no message")
                );
            }
            let mut reply = String::new();
            let mut pending = String::new();
            while let Some(chunk) = resp.chunk().await? {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    let Some(data) = line.trim().strip_prefix("data: ") else {
                        continue;
                    };
                    if data == "[DONE]" {
                        continue;
                    }
                    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                    if let Some(m) = v["error"]["message"].as_str() {
                        eyre::bail!("the network failed mid-answer: {m}");
                    }
                    if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                        print!("{t}");
                        let _ = std::io::stdout().flush();
                        reply.push_str(t);
                    }
                }
            }
            Ok(reply)
        });
        writeln!(out)?;
        match reply {
            Ok(r) => history.push(json!({"role": "assistant", "content": r})),
            Err(e) => {
                eprintln!("error: {e}");
                history.pop();
            }
        }
    }
    Ok(())
}
