//! `agora ask "QUESTION"`: a small agent loop on the network's own models that answers questions
//! about the chain with read-only tools over the node's RPC (`agora_rpc::tools`), showing the
//! tool calls it made.
//!
//! ```text
//! question ──gateway /v1/embeddings: the tool whose description and example question are
//!          closest (`--route embed`, the default with an embedding model), or the chat model's
//!          own choice under the tools' schema (`--route model`)
//!          ──gateway /v1/chat/completions, that tool──► its arguments, under its schema
//!          ──agora_rpc::tools::call over the node's RPC──► the ledger's data (JSON)
//!          ──gateway, the question and the data, answer as {"answer": "..."}──► printed
//! ```
//!
//! One tool call, then the answer: asked to decide after a tool result whether to call again,
//! SmolLM2-135M calls the same tool again every time (docs/design/gateway.md, "Function
//! calling"), so the loop does not ask it. A step that fails (arguments the node refuses, an
//! answer cut off) is retried once, with the error shown to the model.

use std::time::Duration;

use agora_rpc::ChainClient;
use clap::Args;
use eyre::{bail, eyre};
use serde_json::{Value, json};

use super::wallet::{ClientOpts, node_error, print};

#[derive(Args, Debug)]
pub struct AskArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// The gateway's OpenAI-compatible base URL (`agora dev` prints it as `OpenAI API`).
    #[arg(
        long,
        env = "AGORA_GATEWAY",
        default_value = "http://127.0.0.1:8646/v1"
    )]
    pub gateway: String,
    /// An API key of that gateway (`agora dev` prints one).
    #[arg(long, env = "AGORA_API_KEY")]
    pub api_key: String,
    /// The chat model to think with (default: the first chat model the gateway lists).
    #[arg(long)]
    pub model: Option<String>,
    /// How the tool is chosen: `embed` (the question's embedding closest to a tool's description
    /// and example, on the network's embedding model), `model` (the chat model's constrained
    /// choice), or `auto` (`embed` when the gateway lists an embedding model).
    #[arg(long, value_enum, default_value_t = Route::Auto)]
    pub route: Route,
    /// What to ask about the chain.
    pub question: String,
}

/// One example question per tool: shown to the chat model, and embedded with the tool's
/// description when the tool is chosen by embeddings.
const EXAMPLES: &[(&str, &str)] = &[
    ("chain_status", "What is the block height of the chain?"),
    (
        "top_accounts",
        "Which account is the richest, holding the most AGR?",
    ),
    ("get_account", "What is the balance of agora1...?"),
    (
        "list_providers",
        "How many providers are registered on the network?",
    ),
    ("list_markets", "Which markets exist?"),
    (
        "get_block",
        "When was block 5 made, and how many transactions does it have?",
    ),
    ("account_spend", "What did agora1... pay providers?"),
];

fn system_prompt() -> String {
    let mut s = String::from(
        "You answer questions about the Agora blockchain. Call the one tool that reads the data \
         the question needs from the ledger. Examples:",
    );
    for (tool, q) in EXAMPLES {
        s.push_str(&format!(" \"{q}\" -> {tool}."));
    }
    s
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Auto,
    Embed,
    Model,
}

const ANSWER_SYSTEM: &str = "You answer questions about the Agora blockchain from facts just \
read from its ledger.";

struct Gateway {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Gateway {
    async fn post(&self, body: &Value) -> eyre::Result<Value> {
        let url = format!("{}/chat/completions", self.base.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .map_err(|e| eyre!("cannot reach the gateway at {}: {e}", self.base))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "the gateway refused ({status}): {}",
                v["error"]["message"].as_str().unwrap_or("no message")
            );
        }
        Ok(v)
    }

    /// The first model of `kind` the gateway lists.
    async fn first_model(&self, kind: &str) -> eyre::Result<Option<String>> {
        let url = format!("{}/models", self.base.trim_end_matches('/'));
        let v: Value = self
            .http
            .get(&url)
            .bearer_auth(&self.key)
            .send()
            .await?
            .json()
            .await?;
        Ok(v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["agora"]["kind"] == kind)
            .and_then(|m| m["id"].as_str())
            .map(str::to_owned))
    }

    /// The tool whose description and example are closest to `question`, by cosine similarity
    /// of `model`'s embeddings.
    async fn closest_tool(&self, model: &str, question: &str) -> eyre::Result<String> {
        let specs = agora_rpc::tools::specs();
        let texts: Vec<String> = specs
            .iter()
            .map(|t| {
                let example = EXAMPLES
                    .iter()
                    .find(|(n, _)| *n == t.name)
                    .map_or("", |(_, q)| q);
                format!("{example} {}", t.description)
            })
            .collect();
        let order = self.rank(model, question, &texts).await?;
        order
            .first()
            .and_then(|&i| specs.get(i))
            .map(|t| t.name.clone())
            .ok_or_else(|| eyre!("no tool embeddings came back"))
    }

    /// The indices of `texts`, closest to `question` first, by cosine similarity of `model`'s
    /// embeddings.
    async fn rank(
        &self,
        model: &str,
        question: &str,
        texts: &[String],
    ) -> eyre::Result<Vec<usize>> {
        let mut input = vec![question.to_owned()];
        input.extend(texts.iter().cloned());
        let url = format!("{}/embeddings", self.base.trim_end_matches('/'));
        let v: Value = self
            .http
            .post(&url)
            .bearer_auth(&self.key)
            .json(&json!({"model": model, "input": input}))
            .send()
            .await?
            .json()
            .await?;
        let vectors: Vec<Vec<f64>> = v["data"]
            .as_array()
            .ok_or_else(|| eyre!("the gateway's embeddings answer has no data: {v}"))?
            .iter()
            .map(|d| {
                d["embedding"]
                    .as_array()
                    .map(|e| e.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default()
            })
            .collect();
        let cos = |a: &[f64], b: &[f64]| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            dot / (n(a) * n(b)).max(f64::MIN_POSITIVE)
        };
        let (q, rest) = vectors
            .split_first()
            .ok_or_else(|| eyre!("no embeddings came back"))?;
        if rest.len() != texts.len() {
            bail!(
                "{} embeddings came back for {} texts",
                rest.len(),
                texts.len()
            );
        }
        let mut order: Vec<usize> = (0..rest.len()).collect();
        order.sort_by(|&a, &b| cos(q, &rest[b]).total_cmp(&cos(q, &rest[a])));
        Ok(order)
    }
}

/// One tool call and what the node answered.
struct Step {
    name: String,
    arguments: String,
    result: Result<Value, String>,
}

pub fn run(args: AskArgs) -> eyre::Result<()> {
    super::wallet::block_on(ask(args))
}

async fn ask(args: AskArgs) -> eyre::Result<()> {
    let gw = Gateway {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?,
        base: args.gateway.clone(),
        key: args.api_key.clone(),
    };
    let chain = ChainClient::new(&args.opts.rpc);
    chain.status().await.map_err(node_error)?;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => gw
            .first_model("chat")
            .await?
            .ok_or_else(|| eyre!("the gateway lists no chat model; name one with --model"))?,
    };
    let embedder = match args.route {
        Route::Model => None,
        Route::Embed => Some(
            gw.first_model("embedding")
                .await?
                .ok_or_else(|| eyre!("the gateway lists no embedding model for --route embed"))?,
        ),
        Route::Auto => gw.first_model("embedding").await?,
    };
    // The tool: chosen by embeddings, or left to the chat model's constrained choice.
    let tool_choice = match &embedder {
        Some(e) => {
            json!({"type": "function", "function": {"name": gw.closest_tool(e, &args.question).await?}})
        }
        None => json!("required"),
    };
    let tools: Vec<Value> = agora_rpc::tools::specs()
        .into_iter()
        .map(|t| {
            let parameters: Value = serde_json::from_str(&t.parameters).unwrap_or(Value::Null);
            json!({"type": "function", "function": {"name": t.name, "description": t.description,
                "parameters": parameters}})
        })
        .collect();
    let mut messages = vec![
        json!({"role": "system", "content": system_prompt()}),
        json!({"role": "user", "content": args.question}),
    ];
    let mut steps: Vec<Step> = Vec::new();
    // The tool step, retried once with the node's refusal shown to the model.
    for _attempt in 0..2 {
        let v = gw
            .post(
                &json!({"model": model, "messages": messages, "tools": tools,
                "tool_choice": tool_choice, "parallel_tool_calls": false, "temperature": 0,
                "max_tokens": 96}),
            )
            .await?;
        let msg = &v["choices"][0]["message"];
        let Some(call) = msg["tool_calls"].get(0) else {
            bail!("the model called no tool: {msg}");
        };
        let name = call["function"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let arguments = call["function"]["arguments"]
            .as_str()
            .unwrap_or("{}")
            .to_owned();
        let result = agora_rpc::tools::call(&chain, &name, &arguments)
            .await
            .map_err(|e| e.to_string());
        let failed = result.is_err();
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
        messages.push(json!({"role": "tool", "tool_call_id": call["id"],
            "content": match &result { Ok(r) => r.to_string(), Err(e) => format!("error: {e}") }}));
        steps.push(Step {
            name,
            arguments,
            result,
        });
        if !failed {
            break;
        }
    }
    let Some(Step {
        name,
        result: Ok(data),
        ..
    }) = steps.last()
    else {
        return report(&args, &steps, None);
    };
    // The answer is one fact of the data, chosen under an enum of them: the model cannot state
    // a value the ledger did not give.
    let mut facts = facts(data);
    // With an embedding model, the facts closest to the question come first, the rest are cut.
    // Ranked by where each fact sits, not its value: a height of 1234 or of 1235 must not change
    // which fact comes first (the 135M chat model mostly takes the first).
    if let Some(e) = &embedder {
        let keys: Vec<String> = facts.iter().map(|f| f.key.clone()).collect();
        let order = gw.rank(e, &args.question, &keys).await?;
        facts = order
            .into_iter()
            .take(8)
            .map(|i| facts[i].clone())
            .collect();
    }
    if facts.is_empty() {
        return report(&args, &steps, None);
    }
    let lines: Vec<&str> = facts.iter().map(|f| f.line.as_str()).collect();
    let schema = json!({"type": "object", "properties": {"answer": {"enum": lines}},
        "required": ["answer"], "additionalProperties": false});
    let listed: String = lines.iter().map(|f| format!("- {f}\n")).collect();
    let prompt = format!(
        "Question: {}\nFacts read from the ledger by {name}:\n{listed}Answer with the fact that \
         answers the question.",
        args.question
    );
    let mut answer = None;
    for max_tokens in [128, 256] {
        let v = gw
            .post(
                &json!({"model": model, "temperature": 0, "max_tokens": max_tokens,
                "messages": [{"role": "system", "content": ANSWER_SYSTEM},
                             {"role": "user", "content": prompt}],
                "response_format": {"type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema}}}),
            )
            .await?;
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        if let Some(a) = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|j| j["answer"].as_str().map(str::to_owned))
        {
            answer = Some(format!("{a} (read by {name})"));
            break;
        }
    }
    report(&args, &steps, answer)
}

/// Most facts one answer chooses among (the constraint's `enum` holds at most 256).
const MAX_FACTS: usize = 64;

/// One fact of a tool's data: where it sits (`richest accounts 1`) and the line offered as an
/// answer (`richest accounts 1: address: agora1..., balance: 5 AGR`).
#[derive(Debug, Clone, PartialEq)]
struct Fact {
    key: String,
    line: String,
}

/// The data's facts in the data's order, at most [`MAX_FACTS`]: a scalar is one fact, and so is
/// each item of a list (an account, a provider), its fields inlined, so the answer names the
/// whole item rather than one of its fields.
fn facts(data: &Value) -> Vec<Fact> {
    fn join(path: &str, k: &str) -> String {
        let k = k.replace('_', " ");
        if path.is_empty() {
            k
        } else {
            format!("{path} {k}")
        }
    }
    // A line over 512 bytes is left out: it would crowd the prompt.
    fn push(key: String, v: &Value, out: &mut Vec<Fact>) {
        let line = format!("{key}: {}", inline(v));
        if out.len() < MAX_FACTS && line.len() <= 512 {
            out.push(Fact { key, line });
        }
    }
    fn walk(v: &Value, path: &str, out: &mut Vec<Fact>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, x)| walk(x, &join(path, k), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| push(join(path, &(i + 1).to_string()), x, out)),
            other => push(path.to_owned(), other, out),
        }
    }
    fn inline(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().map(inline).collect::<Vec<_>>().join(", "),
            Value::Object(m) => m
                .iter()
                .map(|(k, x)| format!("{}: {}", k.replace('_', " "), inline(x)))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        }
    }
    let mut out = Vec::new();
    walk(data, "", &mut out);
    out
}

fn report(args: &AskArgs, steps: &[Step], answer: Option<String>) -> eyre::Result<()> {
    let calls: Vec<Value> = steps
        .iter()
        .map(|s| {
            json!({"tool": s.name, "arguments": s.arguments,
            "result": match &s.result { Ok(v) => v.clone(), Err(e) => json!({"error": e}) }})
        })
        .collect();
    let mut text = String::new();
    for s in steps {
        let shown = match &s.result {
            Ok(v) => v.to_string(),
            Err(e) => format!("error: {e}"),
        };
        // Arguments as compact JSON (the model writes them with its own spacing).
        let arguments = serde_json::from_str::<Value>(&s.arguments)
            .map_or_else(|_| s.arguments.clone(), |v| v.to_string());
        text.push_str(&format!("  tool  {}({arguments}) -> {shown}\n", s.name));
    }
    match &answer {
        Some(a) => text.push_str(a),
        None => text.push_str(
            "(no answer: the model did not complete the steps; the tool calls are above)",
        ),
    }
    print(
        &args.opts,
        &json!({"question": args.question, "tool_calls": calls, "answer": answer}),
        text,
    );
    if answer.is_none() {
        bail!("no answer");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_item_is_one_fact_and_keys_carry_no_values() {
        let data = json!({"richest_accounts": [{"address": "agora1x", "balance": "5 AGR"},
            {"address": "agora1y", "balance": "2 AGR"}], "accounts_in_all": 7, "height": 12,
            "providers": [{"models": ["a", "b"], "stake": "1 AGR"}]});
        let got: Vec<(String, String)> =
            facts(&data).into_iter().map(|f| (f.key, f.line)).collect();
        let want = [
            ("accounts in all", "accounts in all: 7"),
            ("height", "height: 12"),
            ("providers 1", "providers 1: models: a, b, stake: 1 AGR"),
            (
                "richest accounts 1",
                "richest accounts 1: address: agora1x, balance: 5 AGR",
            ),
            (
                "richest accounts 2",
                "richest accounts 2: address: agora1y, balance: 2 AGR",
            ),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, l)| (k.to_string(), l.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn facts_are_bounded_in_number_and_length() {
        let many = json!({"xs": (0..1000).collect::<Vec<_>>(), "long": "z".repeat(600)});
        let got = facts(&many);
        assert_eq!(got.len(), MAX_FACTS);
        assert!(got.iter().all(|f| f.line.len() <= 512));
    }
}
