//! `agora agent new` and `agora agent run`: an agent is a ledger account with its own key and
//! spending limits; its embedded client (`agora_gateway::agent`) pays providers through channels
//! it opens itself, with its own vouchers, and trusts no gateway.
//!
//! An agent lives in `$AGORA_HOME/agents/<name>/`: `key.json` (encrypted like a wallet key, with
//! AGORA_PASSWORD) and `agent.json` (its address, budget, per-request cap and what it has spent,
//! written after every answer so a later run never spends the same budget twice).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_gateway::RelaySettings;
use agora_gateway::agent::{Agent, AgentLimits};
use agora_market::keys::IssuedKey;
use agora_node::keystore;
use agora_p2p::{Multiaddr, NetConfig};
use agora_rpc::{ChainClient, TxSender};
use agora_types::{Address, Amount, ChatMessage, SamplingParams, SecretKey, TxBody};
use clap::{Args, Subcommand};
use eyre::{WrapErr, bail, eyre};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::wallet::{ClientOpts, agr, block_on, home, load_key, node_error, password, print};

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Create an agent: a new account with its own key, funded from your wallet with its
    /// budget and a reserve for fees, and its spending limits.
    New {
        /// A name for the agent (a-z, 0-9, '-', '_').
        #[arg(long)]
        name: String,
        /// The most its requests may cost in all, AGR.
        #[arg(long)]
        budget: String,
        /// The most one request may cost, AGR.
        #[arg(long)]
        per_request_cap: String,
        /// Sent on top of the budget for transaction fees, AGR.
        #[arg(long, default_value = "0.1")]
        fee_reserve: String,
        /// Also get an API key at this gateway (its OpenAI base URL, e.g.
        /// http://127.0.0.1:8646/v1), asked for with the agent's signature, with the agent's
        /// per-request cap and an expiry; the agent then deposits its budget there.
        #[arg(long)]
        gateway: Option<String>,
        /// Days until the gateway key expires.
        #[arg(long, default_value_t = 30, requires = "gateway")]
        expires_in_days: u64,
    },
    /// Ask the network as the agent: it opens its own channels to providers and pays per
    /// token with its own vouchers, within its limits; prints the answer and what it cost.
    Run {
        #[arg(long)]
        name: String,
        /// The model's name or sha256.
        #[arg(long)]
        model: String,
        /// An overlay address to join by (`agora dev` prints it as `overlay`); repeatable.
        #[arg(long, required = true)]
        bootstrap: Vec<Multiaddr>,
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// What to ask.
        prompt: String,
    },
    /// Show an agent's account, limits and spend.
    Show {
        #[arg(long)]
        name: String,
    },
}

/// `agent.json`.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct AgentFile {
    name: String,
    address: Address,
    budget: Amount,
    per_request_cap: Amount,
    spent: Amount,
    /// The gateway whose API key the agent holds (`api-key.txt` beside this file), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
}

fn agent_dir(name: &str) -> eyre::Result<PathBuf> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        bail!("agent name {name:?}: use 1 to 64 of a-z, 0-9, '-' and '_'");
    }
    Ok(home().join("agents").join(name))
}

fn read_file(dir: &Path) -> eyre::Result<AgentFile> {
    let path = dir.join("agent.json");
    let text = std::fs::read_to_string(&path).wrap_err_with(|| {
        format!(
            "no agent at {} (create it with `agora agent new`)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).wrap_err_with(|| format!("{} is not an agent file", path.display()))
}

/// Written to a temporary file and renamed, so a crash leaves the old file or the new one.
fn write_file(dir: &Path, f: &AgentFile) -> eyre::Result<()> {
    let tmp = dir.join("agent.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(f)?)?;
    std::fs::rename(&tmp, dir.join("agent.json"))?;
    Ok(())
}

pub fn run(args: AgentArgs) -> eyre::Result<()> {
    match args.command {
        AgentCommand::New {
            name,
            budget,
            per_request_cap,
            fee_reserve,
            gateway,
            expires_in_days,
        } => block_on(new(
            &args.opts,
            &name,
            &budget,
            &per_request_cap,
            &fee_reserve,
            gateway.map(|url| (url, expires_in_days)),
        )),
        AgentCommand::Run {
            name,
            model,
            bootstrap,
            max_tokens,
            temperature,
            prompt,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(ask(
                &args.opts,
                &name,
                &model,
                bootstrap,
                max_tokens,
                temperature,
                &prompt,
            ))
        }
        AgentCommand::Show { name } => {
            let f = read_file(&agent_dir(&name)?)?;
            let chain = ChainClient::new(&args.opts.rpc);
            let on_chain = block_on(async { chain.spend(&f.address).await.map_err(node_error) })?;
            let mut v = serde_json::to_value(&f)?;
            v["redeemed"] = json!(on_chain.redeemed);
            v["channels"] = json!(on_chain.channel_count);
            print(
                &args.opts,
                &v,
                format!(
                    "agent {}\n  account          {}\n  budget           {}\n  per-request cap  {}\n  spent            {}\n  left             {}\n  on the ledger    {} redeemed by providers from its {} channel(s)",
                    f.name,
                    f.address,
                    f.budget,
                    f.per_request_cap,
                    f.spent,
                    f.budget.saturating_sub(f.spent),
                    on_chain.redeemed,
                    on_chain.channel_count
                ),
            );
            Ok(())
        }
    }
}

async fn new(
    opts: &ClientOpts,
    name: &str,
    budget: &str,
    cap: &str,
    reserve: &str,
    gateway: Option<(String, u64)>,
) -> eyre::Result<()> {
    let dir = agent_dir(name)?;
    if dir.join("agent.json").exists() {
        bail!("an agent named {name} exists already ({})", dir.display());
    }
    let (budget, cap, reserve) = (agr(budget)?, agr(cap)?, agr(reserve)?);
    if budget.is_zero() || cap.is_zero() || cap > budget {
        bail!(
            "the budget and the per-request cap must be above zero, and the cap at most the budget"
        );
    }
    let funder = load_key(opts)?;
    let key = SecretKey::generate();
    std::fs::create_dir_all(&dir)?;
    keystore::save(&dir.join("key.json"), &key, &password(false)?)?;
    let file = AgentFile {
        name: name.into(),
        address: key.public(),
        budget,
        per_request_cap: cap,
        spent: Amount::ZERO,
        gateway: gateway.as_ref().map(|(url, _)| api_base(url)),
    };
    write_file(&dir, &file)?;
    // Funded last: an agent whose funding failed exists and can be funded by hand.
    let chain = ChainClient::new(&opts.rpc);
    let sender = TxSender::new(funder, chain).await.map_err(node_error)?;
    let amount = budget
        .checked_add(reserve)
        .ok_or_else(|| eyre!("budget plus reserve overflows"))?;
    // `send` waits until the transfer is final.
    let (tx, _nonce) = sender
        .send(TxBody::Transfer {
            to: key.public(),
            amount,
        })
        .await
        .map_err(node_error)?;
    let mut summary = json!({"name": name, "address": key.public().to_string(), "budget": budget,
        "per_request_cap": cap, "funded": amount, "tx": tx.to_string()});
    let mut text = format!(
        "agent {name} created: account {}\n  funded with {amount} (tx {tx}, final)\n  budget {budget}, per-request cap {cap}\n  key and limits in {}",
        key.public(),
        dir.display()
    );
    match gateway {
        None => text.push_str(&format!(
            "\n  try:  agora agent run --name {name} --model <model> --bootstrap <overlay address> \"Hello!\""
        )),
        Some((url, days)) => {
            let base = api_base(&url);
            // Chosen here; the gateway only ever sees its digest.
            let api_key = agora_market::keys::new_api_key();
            write_secret(&dir.join("api-key.txt"), &api_key)?;
            let issued = gateway_key(&base, &key, &api_key, name, cap, days).await?;
            // The agent pays its own deposit, so the gateway credits the agent's key.
            let agent_sender = TxSender::new(key.clone(), ChainClient::new(&opts.rpc))
                .await
                .map_err(node_error)?;
            let (deposit_tx, _nonce) = agent_sender
                .send(TxBody::Transfer {
                    to: issued.deposit_to,
                    amount: budget,
                })
                .await
                .map_err(node_error)?;
            summary["gateway"] = json!(base);
            summary["api_key"] = json!(api_key);
            summary["expires_at"] = json!(issued.expires_at);
            summary["deposit_tx"] = json!(deposit_tx.to_string());
            text.push_str(&format!(
                "\n  API key at {base}: {} (in {}; per-request cap {cap}, expires at unix time {})\n  deposited {budget} to the gateway's account {} (tx {deposit_tx}, final); credited to the key within a few seconds",
                api_key,
                dir.join("api-key.txt").display(),
                issued.expires_at.unwrap_or_default(),
                issued.deposit_to,
            ));
        }
    }
    print(opts, &summary, text);
    Ok(())
}

/// The OpenAI base URL of a gateway, ending in `/v1`, from what a user may type.
fn api_base(url: &str) -> String {
    let root = url.trim_end_matches('/');
    let root = root.strip_suffix("/v1").unwrap_or(root);
    format!("{root}/v1")
}

/// Asks the gateway at `base` to accept `api_key` for the agent, with the agent's signature
/// over its digest (`agora_market::keys`).
async fn gateway_key(
    base: &str,
    key: &SecretKey,
    api_key: &str,
    name: &str,
    cap: Amount,
    days: u64,
) -> eyre::Result<IssuedKey> {
    use agora_market::keys::{KeyRequest, KeyTerms};
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let terms_url = format!("{base}/keys");
    let refused = |what: &str, status: reqwest::StatusCode, v: &serde_json::Value| {
        eyre!(
            "{what} {terms_url}: {status}: {}",
            v["error"]["message"].as_str().unwrap_or("no message")
        )
    };
    let resp = client
        .get(&terms_url)
        .send()
        .await
        .wrap_err_with(|| format!("cannot reach the gateway at {base}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let v = resp.json().await.unwrap_or_default();
        return Err(refused("GET", status, &v));
    }
    let terms: KeyTerms = resp
        .json()
        .await
        .wrap_err("the gateway's key terms are not what this client understands")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let at_ms = u64::try_from(now.as_millis())?;
    let signed = KeyRequest {
        account: key.public(),
        gateway: terms.gateway,
        name: name.into(),
        key_sha256: agora_market::keys::key_digest(api_key),
        per_request_cap: Some(cap),
        expires_at: Some(now.as_secs().saturating_add(days.saturating_mul(86_400))),
        at_ms,
    }
    .sign(key);
    let resp = client.post(&terms_url).json(&signed).send().await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let v = resp.json().await.unwrap_or_default();
        return Err(refused("POST", status, &v));
    }
    let issued: IssuedKey = resp
        .json()
        .await
        .wrap_err("the gateway's answer is not a key")?;
    if issued.account != key.public() {
        bail!(
            "the gateway issued a key for another account ({})",
            issued.account
        );
    }
    Ok(issued)
}

/// Written readable by the owner only.
fn write_secret(path: &Path, text: &str) -> eyre::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

async fn ask(
    opts: &ClientOpts,
    name: &str,
    model: &str,
    bootstrap: Vec<Multiaddr>,
    max_tokens: u32,
    temperature: f32,
    prompt: &str,
) -> eyre::Result<()> {
    let dir = agent_dir(name)?;
    let mut file = read_file(&dir)?;
    let key = keystore::load(&dir.join("key.json"), &password(false)?)?;
    if key.public() != file.address {
        bail!(
            "{}'s key is not the account its agent.json names",
            dir.display()
        );
    }
    let left = file.budget.saturating_sub(file.spent);
    if left.is_zero() {
        bail!("agent {name} has spent its budget of {}", file.budget);
    }
    let chain = ChainClient::new(&opts.rpc);
    let sender = Arc::new(
        TxSender::new(key.clone(), chain)
            .await
            .map_err(node_error)?,
    );
    let config = agora_gateway::agent::overlay_config(NetConfig {
        listen: vec!["/ip4/0.0.0.0/tcp/0".parse()?],
        bootstrap,
        ..NetConfig::default()
    });
    let (net, _inbound) = agora_p2p::spawn(key.to_bytes(), config, None)
        .await
        .map_err(|e| eyre!("cannot start the overlay node: {e}"))?;
    let limits = AgentLimits {
        budget: left,
        per_request_cap: file.per_request_cap.min(left),
    };
    let agent = Agent::start(limits, net, sender, RelaySettings::default())
        .await
        .map_err(|e| eyre!("{e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while agent.model(model).is_none() {
        if tokio::time::Instant::now() > deadline {
            bail!("no provider of {model:?} found on the overlay within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sampling = SamplingParams {
        temperature,
        max_tokens,
        seed: rand::random(),
        ..SamplingParams::default()
    };
    let answer = agent
        .ask(model, vec![ChatMessage::new("user", prompt)], sampling)
        .await;
    file.spent = file
        .spent
        .checked_add(agent.spent())
        .ok_or_else(|| eyre!("spend overflows"))?;
    write_file(&dir, &file)?;
    let closed = agent.shutdown().await;
    let answer = answer.map_err(|e| eyre!("{e}"))?;
    let providers: Vec<String> = answer
        .summary
        .segments
        .iter()
        .map(|s| s.provider.to_string())
        .collect();
    print(
        opts,
        &json!({"answer": answer.text, "charged": answer.summary.charged,
            "prompt_tokens": answer.summary.prompt_tokens,
            "completion_tokens": answer.summary.completion_tokens, "providers": providers,
            "spent": file.spent, "left": file.budget.saturating_sub(file.spent),
            "channels_closed": closed}),
        format!(
            "{}\n\n[{} prompt + {} completion tokens, paid {} to {} from {}; spent {} of {}]",
            answer.text,
            answer.summary.prompt_tokens,
            answer.summary.completion_tokens,
            answer.summary.charged,
            providers.join(", "),
            file.address,
            file.spent,
            file.budget
        ),
    );
    Ok(())
}
