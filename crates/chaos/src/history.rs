//! The history of a run: every operation's invocation and outcome, every fault and every chain
//! sample, one JSON object per line, appended (and flushed) as the run goes so a crash of the
//! runner loses at most the line being written. Jepsen's idea: record first, judge afterwards.
//!
//! An operation is a pair of events sharing `op`: an [`Body::Invoke`], then one [`Body::Ok`] or
//! [`Body::Fail`]. An invoke with neither is a request that never ended (the checker's
//! `Unanswered`). Faults and samples are single `Info`-like events.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use agora_types::{Amount, Hash};
use serde::{Deserialize, Serialize};

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started.
    pub t_ms: u64,
    /// The operation's id; an invoke and its completion share it. Faults and samples get their
    /// own ids too, so every line can be named.
    pub op: u64,
    /// Who acted: `client-3`, `nemesis`, `sampler`.
    pub process: String,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// A client starts an operation; it must end within `timeout_ms`.
    Invoke { call: Call, timeout_ms: u64 },
    /// The operation succeeded.
    Ok { outcome: Outcome },
    /// The operation failed with this error (a clear one, or the checker says so).
    Fail {
        error: ClientError,
        /// What had arrived before it failed (a stream cut short).
        #[serde(default)]
        partial: Outcome,
    },
    /// The nemesis began or ended a fault.
    Fault {
        fault: String,
        target: String,
        phase: Phase,
    },
    /// A validator's state as its RPC reported it.
    Sample { node: String, sample: ChainSample },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Start,
    End,
}

/// What a client asked for. `customer` names the API key (and its ledger account) that pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Call {
    Chat {
        customer: String,
        stream: bool,
        max_tokens: u32,
    },
    Completion {
        customer: String,
        stream: bool,
        max_tokens: u32,
    },
    Embedding {
        customer: String,
        inputs: u32,
    },
    /// A ledger transfer submitted through validator `node`'s RPC and waited on until final.
    Transfer {
        from: String,
        to: String,
        amount: Amount,
        node: String,
    },
}

impl Call {
    /// The paying customer of a gateway call (`None` for a transfer).
    pub fn customer(&self) -> Option<&str> {
        match self {
            Call::Chat { customer, .. }
            | Call::Completion { customer, .. }
            | Call::Embedding { customer, .. } => Some(customer),
            Call::Transfer { .. } => None,
        }
    }

    /// A short name for reports: `chat_stream`, `chat`, `completion`, `embedding`, `transfer`.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Chat { stream: true, .. } => "chat_stream",
            Call::Chat { .. } => "chat",
            Call::Completion { stream: true, .. } => "completion_stream",
            Call::Completion { .. } => "completion",
            Call::Embedding { .. } => "embedding",
            Call::Transfer { .. } => "transfer",
        }
    }
}

/// What came back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Completion tokens the client counted itself: content pieces of a stream (one per chunk
    /// with text), or `usage.completion_tokens` of a whole response.
    #[serde(default)]
    pub tokens_received: u32,
    /// The usage the gateway reported, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// `agora.charged`: what the gateway says this response cost the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<Amount>,
    /// `agora.request_id`, the key of the response's receipts at the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// How many providers served parts of it (`agora.segments`).
    #[serde(default)]
    pub segments: u32,
    /// A transfer's transaction id (known once submitted, also when it then fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<Hash>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A failure as the client saw it. A clear error has an HTTP status and an OpenAI error `code`
/// (or `type`), or is a named transport failure (`status` absent, `code` one of `connect`,
/// `timeout`, `stream_cut`, `body`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// OpenAI's `error.code` (else `error.type`), a transport class, or a ledger failure code.
    pub code: String,
    pub message: String,
}

/// One validator's view at one moment (`GET /v1/supply`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSample {
    pub height: u64,
    pub state_root: Hash,
    /// genesis + minted - burned (`Supply::expected_total`).
    pub expected_total: Amount,
    /// Every balance, stake, escrow and deposit added up (`State::circulating_total`).
    pub circulating: Amount,
}

/// Appends events to a file as they happen; one writer per run, shared by every task.
pub struct HistoryWriter {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    start: Instant,
    next_op: std::sync::atomic::AtomicU64,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> std::io::Result<HistoryWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(HistoryWriter {
            file: Mutex::new(std::io::BufWriter::new(file)),
            start: Instant::now(),
            next_op: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// A fresh operation id.
    pub fn op(&self) -> u64 {
        self.next_op
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Writes one event stamped now, and flushes it.
    pub fn record(&self, op: u64, process: &str, body: Body) {
        let event = Event {
            t_ms: self.elapsed_ms(),
            op,
            process: process.to_string(),
            body,
        };
        let line = serde_json::to_string(&event).expect("events serialize");
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // A history that cannot be written makes the run worthless: say so loudly, keep going.
        if let Err(e) = writeln!(f, "{line}").and_then(|()| f.flush()) {
            tracing::error!("history write failed: {e}");
        }
    }
}

/// Reads a history back. A torn last line (the runner died mid-write) is dropped; any other bad
/// line is an error naming its line number.
pub fn read(path: &Path) -> eyre::Result<Vec<Event>> {
    let file = std::fs::File::open(path)?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()?;
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(e) => events.push(e),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => eyre::bail!("{}:{}: {e}", path.display(), i + 1),
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_written_and_a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let w = HistoryWriter::create(&path).unwrap();
        let op = w.op();
        let call = Call::Chat {
            customer: "c0".into(),
            stream: true,
            max_tokens: 16,
        };
        w.record(
            op,
            "client-0",
            Body::Invoke {
                call: call.clone(),
                timeout_ms: 1000,
            },
        );
        w.record(
            op,
            "client-0",
            Body::Fail {
                error: ClientError {
                    status: Some(502),
                    code: "provider_failed".into(),
                    message: "x".into(),
                },
                partial: Outcome {
                    tokens_received: 3,
                    ..Outcome::default()
                },
            },
        );
        drop(w);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"t_ms\": 5, \"op\"");
        std::fs::write(&path, text).unwrap();
        let events = read(&path).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].body,
            Body::Invoke {
                call,
                timeout_ms: 1000
            }
        );
        assert!(
            matches!(&events[1].body, Body::Fail { partial, .. } if partial.tokens_received == 3)
        );
    }
}
