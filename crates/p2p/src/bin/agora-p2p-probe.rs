//! A small overlay node for multi-process tests (network namespaces): `relay`, `provider` or
//! `gateway`. Prints one JSON object per line on stdout; logs go to stderr. Every role exits on
//! its own after `--run-secs` (default 120) so a failed test never leaves it running.
//!
//! ```text
//! agora-p2p-probe relay    --listen /ip4/10.0.0.1/tcp/4100
//! agora-p2p-probe provider --listen /ip4/192.168.1.2/tcp/4100 --bootstrap <relay addr/p2p/id>
//! agora-p2p-probe gateway  --listen /ip4/10.0.0.3/tcp/4100 --target <circuit addr> \
//!                          --expect relayed|direct [--no-hole-punch] [--tokens 64]
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agora_p2p::bench::{serve_synthetic, synthetic_request, wait_until};
use agora_p2p::node::{NetEvent, Path};
use agora_p2p::peer_source::split_peer_addr;
use agora_p2p::{Multiaddr, NetConfig, RelayServerConfig, generate_seed, spawn};
use serde_json::json;

fn say(v: serde_json::Value) {
    println!("{v}");
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    say(json!({"event": "error", "message": msg.to_string()}));
    ExitCode::FAILURE
}

fn parse_args() -> Result<(String, HashMap<String, String>), String> {
    let mut it = std::env::args().skip(1);
    let role = it
        .next()
        .ok_or("missing role: relay | provider | gateway")?;
    let mut opts = HashMap::new();
    while let Some(k) = it.next() {
        let key = k
            .strip_prefix("--")
            .ok_or(format!("unexpected argument {k}"))?
            .to_owned();
        if key == "no-hole-punch" {
            opts.insert(key, "true".into());
            continue;
        }
        let v = it.next().ok_or(format!("--{key} needs a value"))?;
        opts.insert(key, v);
    }
    Ok((role, opts))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("agora_p2p=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (role, opts) = match parse_args() {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let run_secs: u64 = opts
        .get("run-secs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let listen: Vec<Multiaddr> = match opts.get("listen").map(|s| s.parse()) {
        Some(Ok(a)) => vec![a],
        Some(Err(e)) => return fail(format!("bad --listen: {e}")),
        None => vec!["/ip4/127.0.0.1/tcp/0".parse().expect("static")],
    };
    let deadline = Instant::now() + Duration::from_secs(run_secs);
    match tokio::time::timeout(
        Duration::from_secs(run_secs),
        run(&role, &opts, listen, deadline),
    )
    .await
    {
        Ok(code) => code,
        Err(_) => {
            say(json!({"event": "exit", "reason": "run-secs elapsed"}));
            ExitCode::SUCCESS
        }
    }
}

async fn run(
    role: &str,
    opts: &HashMap<String, String>,
    listen: Vec<Multiaddr>,
    deadline: Instant,
) -> ExitCode {
    let base = NetConfig {
        listen,
        upnp: false,
        relayed_close_grace_ms: 0,
        gossip_heartbeat_ms: 200,
        ..NetConfig::default()
    };
    match role {
        "relay" => {
            let cfg = NetConfig {
                public: true,
                relay_server: Some(RelayServerConfig::default()),
                autonat_server: true,
                ..base
            };
            let (h, _inbound) = match spawn(generate_seed(), cfg, None).await {
                Ok(x) => x,
                Err(e) => return fail(e),
            };
            if !wait_until(&h, Duration::from_secs(5), |s| !s.listen_addrs.is_empty()).await {
                return fail("relay did not start listening");
            }
            let st = h.status().await.expect("running");
            say(
                json!({"event": "ready", "peer_id": h.peer_id().to_string(), "addrs": st.listen_addrs}),
            );
            tokio::time::sleep_until(deadline.into()).await;
            ExitCode::SUCCESS
        }
        "provider" => {
            let Some(boot) = opts
                .get("bootstrap")
                .and_then(|s| s.parse::<Multiaddr>().ok())
            else {
                return fail("provider needs --bootstrap <relay addr>/p2p/<id>");
            };
            let cfg = NetConfig {
                bootstrap: vec![boot],
                ..base
            };
            let (h, inbound) = match spawn(generate_seed(), cfg, None).await {
                Ok(x) => x,
                Err(e) => return fail(e),
            };
            let mut events = h.events();
            serve_synthetic(inbound);
            if !wait_until(&h, Duration::from_secs(20), |s| {
                s.listen_addrs.iter().any(|a| {
                    a.iter()
                        .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit)
                })
            })
            .await
            {
                return fail("no relay reservation");
            }
            let st = h.status().await.expect("running");
            say(
                json!({"event": "reserved", "peer_id": h.peer_id().to_string(), "addrs": st.listen_addrs, "nat": st.nat}),
            );
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(NetEvent::Nat(n)) => say(json!({"event": "nat", "nat": n})),
                        Ok(NetEvent::HolePunch { peer, ok }) => say(json!({"event": "hole_punch", "peer": peer.to_string(), "ok": ok})),
                        Ok(NetEvent::Connected { peer, relayed, addr }) => say(json!({"event": "connected", "peer": peer.to_string(), "relayed": relayed, "addr": addr})),
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                    _ = tokio::time::sleep_until(deadline.into()) => break,
                }
            }
            ExitCode::SUCCESS
        }
        "gateway" => gateway(opts, base).await,
        other => fail(format!("unknown role {other}")),
    }
}

async fn gateway(opts: &HashMap<String, String>, base: NetConfig) -> ExitCode {
    let Some(target) = opts.get("target").and_then(|s| s.parse::<Multiaddr>().ok()) else {
        return fail("gateway needs --target <relay>/p2p-circuit/p2p/<provider>");
    };
    let Some((provider, _)) = split_peer_addr(&target) else {
        return fail("--target must end in /p2p/<provider id>");
    };
    let expect = opts.get("expect").map(String::as_str).unwrap_or("relayed");
    let tokens: u32 = opts
        .get("tokens")
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let hole_punching = !opts.contains_key("no-hole-punch");
    let cfg = NetConfig {
        public: true,
        hole_punching,
        ..base
    };
    let (h, _inbound) = match spawn(generate_seed(), cfg, None).await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let mut events = h.events();
    if let Err(e) = h.dial(target.clone()).await {
        return fail(format!("relayed dial failed: {e}"));
    }
    let mut hole_punched = false;
    if expect == "direct" {
        let until = Instant::now() + Duration::from_secs(20);
        while !hole_punched && Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
                Ok(Ok(NetEvent::HolePunch { peer, ok })) if peer == provider => {
                    say(json!({"event": "hole_punch", "ok": ok}));
                    if !ok {
                        return fail("hole punch failed");
                    }
                    hole_punched = true;
                }
                _ => {}
            }
        }
        if !hole_punched {
            return fail("no hole punch within 20 s");
        }
        if !wait_until(&h, Duration::from_secs(10), |s| {
            s.path_to(&provider) == Path::Direct
        })
        .await
        {
            return fail("relayed connection still open after the hole punch");
        }
    }
    let before = h.status().await.expect("running");
    let t0 = Instant::now();
    let got = match h.infer(provider, synthetic_request(tokens, 16)).await {
        Ok(s) => s.collect().await,
        Err(e) => return fail(format!("infer: {e}")),
    };
    let elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    let after = h.status().await.expect("running");
    let toks = match got {
        Ok(t) => t,
        Err(e) => return fail(format!("stream: {e}")),
    };
    // Tokens arrive in order, numbered by the provider.
    let in_order = toks
        .iter()
        .enumerate()
        .all(|(i, t)| t.len() == 16 && t[..4] == (i as u32).to_be_bytes());
    let conns: Vec<_> = after
        .connections
        .iter()
        .filter(|c| c.peer == provider)
        .map(|c| json!({"addr": c.remote_addr, "relayed": c.relayed}))
        .collect();
    say(json!({
        "event": "streamed",
        "tokens": toks.len(),
        "in_order": in_order,
        "path_before": before.path_to(&provider),
        "path_after": after.path_to(&provider),
        "hole_punched": hole_punched,
        "elapsed_ms": elapsed_ms,
        "connections": conns,
    }));
    h.shutdown().await;
    ExitCode::SUCCESS
}
