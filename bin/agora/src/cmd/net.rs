//! `agora net`: a view of the overlay (peers, addresses, NAT status, relayed vs direct
//! connections) and its loopback benchmark.

use std::time::Duration;

use agora_p2p::bench::{BenchConfig, run as run_bench};
use agora_p2p::{Multiaddr, NetConfig, NetStatus, RelayServerConfig};
use clap::{Args, Subcommand};
use eyre::{Context, eyre};

/// `agora net …`
#[derive(Subcommand, Debug)]
pub enum NetCommand {
    /// Run an overlay node for a while, then print peers, addresses, NAT status and paths.
    Status(StatusArgs),
    /// Loopback benchmark: RPC round trip p50/p99, streamed tokens/s direct vs relayed.
    Bench(BenchArgs),
}

/// Options of `agora net status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Listen address (repeatable).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    listen: Vec<Multiaddr>,
    /// Bootstrap peer `/…/p2p/<id>` (repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Seconds to run before printing.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Treat listen addresses as public (gateways, validators).
    #[arg(long)]
    public: bool,
    /// Serve relay v2 circuits for NATed peers.
    #[arg(long)]
    relay_server: bool,
    /// Ask the router for a UPnP port mapping.
    #[arg(long)]
    upnp: bool,
    /// Account secret seed (64 hex characters); a random identity if absent.
    #[arg(long, env = "AGORA_P2P_SEED")]
    seed_hex: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `agora net bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// RPC round trips.
    #[arg(long, default_value_t = 2000)]
    rounds: usize,
    /// Tokens per streamed response.
    #[arg(long, default_value_t = 20_000)]
    tokens: u32,
    /// Bytes per token chunk.
    #[arg(long, default_value_t = 16)]
    token_bytes: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs an `agora net` command.
pub fn run(cmd: NetCommand) -> eyre::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .wrap_err("tokio runtime")?;
    rt.block_on(async move {
        match cmd {
            NetCommand::Status(a) => status(a).await,
            NetCommand::Bench(a) => bench(a).await,
        }
    })
}

fn parse_seed(hex_seed: &str) -> eyre::Result<[u8; 32]> {
    let bytes = hex::decode(hex_seed.trim()).wrap_err("seed is not hex")?;
    bytes
        .try_into()
        .map_err(|_| eyre!("seed must be 32 bytes (64 hex characters)"))
}

async fn status(a: StatusArgs) -> eyre::Result<()> {
    let seed = match &a.seed_hex {
        Some(s) => parse_seed(s)?,
        None => agora_p2p::generate_seed(),
    };
    let cfg = NetConfig {
        listen: a.listen,
        bootstrap: a.bootstrap,
        public: a.public,
        relay_server: a.relay_server.then(RelayServerConfig::default),
        autonat_server: a.public,
        upnp: a.upnp,
        offer_validator: Some(agora_gateway::market::offer_validator()),
        ..NetConfig::default()
    };
    let (h, _inbound) = agora_p2p::spawn(seed, cfg, None).await?;
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let st = h.status().await?;
    h.shutdown().await;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print_status(&st);
    }
    Ok(())
}

fn print_status(st: &NetStatus) {
    println!("peer id   {}", st.peer_id);
    println!("nat       {:?}", st.nat);
    for a in &st.listen_addrs {
        println!("listen    {a}");
    }
    for a in &st.external_addrs {
        println!("external  {a}");
    }
    for r in &st.relays {
        println!("relay     {r}");
    }
    println!("offers    {}", st.offers);
    println!();
    println!("{:<54} {:<8} {:<4} ADDRESS", "PEER", "PATH", "DIR");
    for c in &st.connections {
        println!(
            "{:<54} {:<8} {:<4} {}",
            c.peer.to_string(),
            if c.relayed { "relayed" } else { "direct" },
            if c.outbound { "out" } else { "in" },
            c.remote_addr
        );
    }
}

async fn bench(a: BenchArgs) -> eyre::Result<()> {
    let r = run_bench(BenchConfig {
        rpc_rounds: a.rounds,
        rpc_bytes: 64,
        tokens: a.tokens,
        token_bytes: a.token_bytes,
    })
    .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("overlay loopback benchmark (TCP + noise + yamux, 127.0.0.1)");
    println!(
        "rpc round trip ({} B, {} rounds):       p50 {:>8.1} us   p99 {:>8.1} us",
        r.rpc_bytes, r.rpc_rounds, r.rpc_p50_us, r.rpc_p99_us
    );
    println!(
        "one-token stream round trip:            p50 {:>8.1} us   p99 {:>8.1} us",
        r.stream_rtt_p50_us, r.stream_rtt_p99_us
    );
    for (name, f) in [("direct", &r.direct), ("relayed", &r.relayed)] {
        println!(
            "stream {name:<8} ({:?}): {} tokens x {} B: {:>10.0} tokens/s  {:>6.2} us/token  first token {:.2} ms",
            f.path, f.tokens, a.token_bytes, f.tokens_per_sec, f.us_per_token, f.first_token_ms
        );
    }
    println!(
        "relay cost: {:.2}x the direct per-token time; per-token overhead vs a 20 ms/token model: {:.3} %",
        r.relayed.us_per_token / r.direct.us_per_token,
        r.relayed.us_per_token.max(r.direct.us_per_token) / 20_000.0 * 100.0
    );
    Ok(())
}
