//! Gateway benchmarks, each with its peer measured in the same run:
//! 1. added latency: a one-token request through the gateway's HTTP API vs the same job sent to
//!    the provider directly over the overlay (test engine, no step delay: inference excluded);
//! 2. gateway requests/s with 32 concurrent clients on the fast deterministic test engine;
//! 3. end-to-end tokens/s streaming SmolLM2 through the network vs the engine alone
//!    (needs the model in AGORA_MODELS_DIR; skipped with a message when absent).
//!
//! `cargo bench -p agora-gateway --bench gateway`

#[path = "../tests/it/net.rs"]
#[allow(dead_code)]
mod net;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_gateway::RelaySettings;
use agora_market::protocol::{ChatMessage, Frame, Job, SamplingParams, Work};
use agora_p2p::InferenceRequest;
use agora_types::{Amount, Hash};
use net::{API_KEY, MODEL, TestNet, model_sha, price};
use serde_json::{Value, json};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn direct_once(net: &TestNet, channel: Hash, peer: agora_p2p::PeerId) -> Duration {
    let job = Job {
        request_id: Hash(rand::random()),
        work: Work::Chat {
            messages: vec![ChatMessage::new("user", "hello")],
            tools: None,
        },
        sampling: SamplingParams {
            max_tokens: 1,
            ..SamplingParams::default()
        },
        continuation: vec![],
        payer: net.gateway.payer.address(),
        channel,
        price: price(1, 1),
    };
    let t = Instant::now();
    let mut s = net
        .gateway
        .relay
        .net
        .infer(
            peer,
            InferenceRequest {
                model: model_sha().0,
                payload: job.encode(),
            },
        )
        .await
        .unwrap();
    while let Some(item) = s.next().await {
        if let Frame::Done { .. } = Frame::decode(&item.unwrap()).unwrap() {
            break;
        }
    }
    t.elapsed()
}

async fn via_gateway(client: &reqwest::Client, url: &str, max_tokens: u32) -> (Duration, Value) {
    let t = Instant::now();
    let v: Value = client
        .post(url)
        .bearer_auth(API_KEY)
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": max_tokens, "temperature": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (t.elapsed(), v)
}

fn main() {
    // RUST_LOG=agora_p2p=warn shows overlay offences and disconnects while the bench runs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let net = TestNet::start(&[price(1, 1)], Duration::ZERO, RelaySettings::default()).await;
        let client = reqwest::Client::new();
        let url = net.url("/v1/chat/completions");
        // Warm up: opens the channel, fills connection pools.
        for _ in 0..20 {
            via_gateway(&client, &url, 1).await;
        }
        let chan = net.gateway.payer.channels().await[0].clone();
        let peer = net.gateway.market.providers()[0].peer;
        for _ in 0..20 {
            direct_once(&net, chan.id, peer).await;
        }
        let n = 500;
        let (mut direct, mut gw) = (Vec::new(), Vec::new());
        for _ in 0..n {
            direct.push(direct_once(&net, chan.id, peer).await.as_secs_f64() * 1e3);
            gw.push(via_gateway(&client, &url, 1).await.0.as_secs_f64() * 1e3);
        }
        let (d50, d99) = (pct(&mut direct, 0.5), pct(&mut direct, 0.99));
        let (g50, g99) = (pct(&mut gw, 0.5), pct(&mut gw, 0.99));
        println!("latency, one-token chat request, test engine, {n} samples each (ms):");
        println!("  provider directly over the overlay   p50 {d50:.3}  p99 {d99:.3}");
        println!("  through the gateway (HTTP + relay)    p50 {g50:.3}  p99 {g99:.3}");
        println!("  added by the gateway                  p50 {:.3}  p99 {:.3}", g50 - d50, g99 - d99);

        // Throughput: 32 clients, 8 tokens each, for 10 s.
        let clients = 32;
        let secs = 10.0;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let client = client.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                while start.elapsed().as_secs_f64() < secs {
                    let (_, v) = via_gateway(&client, &url, 8).await;
                    assert!(v["choices"].is_array(), "{v}");
                    done += 1;
                }
                done
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let el = start.elapsed().as_secs_f64();
        println!(
            "gateway throughput, {clients} clients, 8-token chat requests, test engine (not a model): {:.0} requests/s ({total} in {el:.1} s)",
            total as f64 / el
        );
        let charged = net.gateway.customers.total_spent();
        assert!(charged > Amount::ZERO);
        e2e_tokens_per_sec(&net, &client).await;
    });
}

/// Pairs of end-to-end runs.
const REPS: usize = 5;

/// SmolLM2 through provider + gateway vs the same scheduler called directly.
async fn e2e_tokens_per_sec(net: &TestNet, client: &reqwest::Client) {
    let dir = std::env::var("AGORA_MODELS_DIR").unwrap_or_else(|_| "models".into());
    let path = std::path::Path::new(&dir).join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        println!(
            "end-to-end tokens/s: skipped, {} not found (scripts/fetch-models.sh)",
            path.display()
        );
        return;
    }
    use agora_inference::backends::llama_cpp::{self, LlamaConfig};
    use agora_inference::{Event, Prompt, Request, SamplingParams, SchedulerConfig};
    let scheduler = Arc::new(
        llama_cpp::serve(
            &path,
            "smollm2",
            LlamaConfig {
                n_seq: 2,
                threads: 1,
                ..LlamaConfig::default()
            },
            SchedulerConfig::default(),
        )
        .unwrap(),
    );
    let prompt = vec![agora_inference::ChatMessage::new(
        "user",
        "Write a long story about a lighthouse keeper.",
    )];
    let params = SamplingParams {
        max_tokens: 128,
        ignore_eos: true,
        ..SamplingParams::greedy(128)
    };
    // The same scheduler served by a provider on the network.
    let sha: Hash = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        .parse()
        .unwrap();
    let p = price(1, 1);
    let _provider = net
        .start_provider_with(
            net::spare_keys()[0].clone(),
            agora_provider::ServedModel {
                sha256: sha,
                name: "smollm2-135m-instruct".into(),
                price: p,
                engine: agora_provider::ModelEngine::Generate(scheduler.clone()),
            },
            agora_provider::register::ModelListing {
                sha256: sha,
                name: "smollm2-135m-instruct".into(),
                family: "chat".into(),
                kind: agora_types::ModelKind::Chat,
                license: "Apache-2.0".into(),
                royalty_bps: 0,
                price: p,
            },
        )
        .await;
    net.wait_for_providers(2).await;
    let url = net.url("/v1/chat/completions");
    // Alternating pairs, so a change in the machine's load hits both sides alike.
    let (mut engine_tps, mut net_tps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        let t = Instant::now();
        let mut s = scheduler
            .submit(Request::generate(
                Prompt::Chat(prompt.clone()),
                params.clone(),
            ))
            .unwrap();
        let mut first = None;
        let mut n = 0;
        while let Some(ev) = s.next().await {
            match ev {
                Event::Token(_) => {
                    n += 1;
                    first.get_or_insert(t.elapsed());
                }
                Event::Done(_) | Event::Error(_) => break,
                _ => {}
            }
        }
        let first = first.unwrap_or_default();
        let e = (n - 1) as f64 / (t.elapsed() - first).as_secs_f64();
        let t = Instant::now();
        let mut resp = client
            .post(&url)
            .bearer_auth(API_KEY)
            .json(&json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
                "max_tokens": 128, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}))
            .send()
            .await
            .unwrap();
        // Timed from the first chunk that carries generated text (the role chunk comes before
        // the prefill), as the engine-alone figure is timed from its first token.
        let mut first = None;
        let mut raw = String::new();
        while let Some(c) = resp.chunk().await.unwrap() {
            let text = std::str::from_utf8(&c).unwrap();
            if first.is_none() && has_text(text) {
                first = Some(t.elapsed());
            }
            raw.push_str(text);
        }
        let last = t.elapsed();
        let usage: Value = raw
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .rfind(|v| v["usage"].is_object())
            .map(|v| v["usage"].clone())
            .unwrap_or(Value::Null);
        let n = usage["completion_tokens"].as_u64().unwrap_or(0) as f64;
        let w = (n - 1.0) / (last - first.unwrap_or_default()).as_secs_f64();
        engine_tps.push(e);
        net_tps.push(w);
        ratios.push(w / e);
    }
    let (e, w) = (pct(&mut engine_tps, 0.5), pct(&mut net_tps, 0.5));
    let r = pct(&mut ratios, 0.5);
    println!(
        "end-to-end, SmolLM2 Q4_1, 128 generated tokens, greedy, 1 thread, {REPS} alternating pairs (medians):"
    );
    println!("  engine alone (scheduler + sampler)       {e:.1} tokens/s");
    println!("  through provider + overlay + gateway SSE {w:.1} tokens/s");
    println!("  ratio network / engine, median of pairs  {r:.3}x");
}

/// Whether an SSE event in this piece of the response carries non-empty generated text.
fn has_text(raw: &str) -> bool {
    raw.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .any(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
}
