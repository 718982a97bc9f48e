//! `agora wallet ...` and `agora tx ...`: keys in an encrypted keystore, transactions over RPC.

use agora_node::keystore;
use agora_rpc::{ChainClient, ChainError, TxView};
use agora_types::{
    Address, Amount, HardwareSummary, Hash, ModelPrice, ModelRegistration, Outcome, ProviderInfo,
    SecretKey, Tx, TxBody,
};
use clap::{Args, Subcommand};
use eyre::{WrapErr, bail, eyre};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// How long `agora tx` waits for finality.
const FINAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Options shared by every wallet and tx command.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Encrypted key file (default: $AGORA_HOME/keys/default.json, AGORA_HOME defaults to ~/.agora).
    #[arg(long, global = true, env = "AGORA_KEYSTORE")]
    pub keystore: Option<PathBuf>,
    /// Node RPC base URL.
    #[arg(
        long,
        global = true,
        env = "AGORA_RPC",
        default_value = "http://127.0.0.1:8645"
    )]
    pub rpc: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WalletArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: WalletCommand,
}

#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Create a new key and save it encrypted (password from AGORA_PASSWORD or a prompt).
    New {
        /// Overwrite an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Import a 32-byte ed25519 seed given as hex (read from stdin if not given).
    Import {
        #[arg(long)]
        seed_hex: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Print the address of the key file (no password needed).
    Address,
    /// Show the balance, nonce and stake of an address (default: the key file's).
    Balance {
        #[arg(long)]
        address: Option<Address>,
    },
}

#[derive(Args, Debug)]
pub struct TxArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Fee in AGR (default: the chain's minimum).
    #[arg(long, global = true)]
    pub fee: Option<String>,
    /// Return once the node accepted the transaction instead of waiting for finality.
    #[arg(long, global = true)]
    pub no_wait: bool,
    #[command(subcommand)]
    pub command: TxCommand,
}

#[derive(Subcommand, Debug)]
pub enum TxCommand {
    /// Send AGR to an address.
    Transfer {
        #[arg(long)]
        to: Address,
        /// Amount in AGR, e.g. 1.5
        #[arg(long)]
        amount: String,
    },
    /// Bond stake behind yourself, a validator or a provider.
    Bond {
        /// Default: yourself.
        #[arg(long)]
        target: Option<Address>,
        #[arg(long)]
        amount: String,
    },
    /// Start unbonding stake (withdrawable after the unbonding period).
    Unbond {
        #[arg(long)]
        target: Option<Address>,
        #[arg(long)]
        amount: String,
    },
    /// Withdraw every matured unbonding entry.
    Withdraw,
    /// Register (or update) yourself as a provider of one model.
    RegisterProvider {
        /// The model's sha256 (must be registered).
        #[arg(long)]
        model: Hash,
        /// Price per 1M prompt tokens, AGR.
        #[arg(long)]
        input_price: String,
        /// Price per 1M completion tokens, AGR.
        #[arg(long)]
        output_price: String,
        /// Endpoint hints (multiaddrs or URLs); repeatable.
        #[arg(long)]
        endpoint: Vec<String>,
        #[arg(long, default_value = "cpu")]
        accelerator: String,
        #[arg(long, default_value_t = 0)]
        memory_mib: u32,
        #[arg(long, default_value_t = 1)]
        cpu_cores: u16,
    },
    /// Register a model you own by its weights' sha256.
    RegisterModel {
        #[arg(long)]
        sha256: Hash,
        #[arg(long)]
        name: String,
        #[arg(long)]
        family: String,
        /// What the model is for: chat, completion or embedding.
        #[arg(long, default_value = "chat")]
        kind: agora_types::ModelKind,
        #[arg(long)]
        license: String,
        #[arg(long, default_value_t = 0)]
        royalty_bps: u16,
    },
    /// Open a payment channel to a provider.
    OpenChannel {
        #[arg(long)]
        provider: Address,
        #[arg(long)]
        deposit: String,
        /// Blocks from now until the channel expires.
        #[arg(long, default_value_t = 10_000)]
        expiry_blocks: u64,
    },
    /// Ask to close a payment channel (settle it after the challenge period).
    CloseChannel {
        #[arg(long)]
        channel: Hash,
    },
    /// Refund what a closed channel did not pay out.
    SettleChannel {
        #[arg(long)]
        channel: Hash,
    },
    /// Open a market over registered models (locks the chain's market deposit).
    CreateMarket {
        /// e.g. chat/smollm2 (a-z, 0-9, '/', '-', '_', '.'; at most 64 bytes).
        #[arg(long)]
        name: String,
        /// A registered model's sha256; repeatable.
        #[arg(long = "model", required = true)]
        models: Vec<Hash>,
    },
    /// Join a market as a provider serving one of its models.
    JoinMarket {
        /// The market's name or id.
        #[arg(long)]
        market: String,
    },
    /// Commit to weights over a market's members (validators); reveal them next epoch with
    /// `reveal-weights`. The weights and their salt are saved under $AGORA_HOME/weights/.
    CommitWeights {
        #[arg(long)]
        market: String,
        /// PROVIDER_ADDRESS=WEIGHT (0..=65535); repeatable.
        #[arg(long = "weight", required = true)]
        weights: Vec<String>,
    },
    /// Reveal the weights committed with `commit-weights` (from the next incentive epoch on).
    RevealWeights {
        #[arg(long)]
        market: String,
    },
}

pub(crate) fn home() -> PathBuf {
    std::env::var_os("AGORA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".agora")))
        .unwrap_or_else(|| PathBuf::from(".agora"))
}

pub(crate) fn keystore_path(opts: &ClientOpts) -> PathBuf {
    opts.keystore
        .clone()
        .unwrap_or_else(|| home().join("keys").join("default.json"))
}

pub(crate) fn password(confirm: bool) -> eyre::Result<String> {
    if let Ok(p) = std::env::var("AGORA_PASSWORD") {
        return Ok(p);
    }
    let p = rpassword::prompt_password("Keystore password: ")
        .wrap_err("cannot read the password (set AGORA_PASSWORD)")?;
    if confirm {
        let again = rpassword::prompt_password("Repeat password: ")?;
        if again != p {
            bail!("the passwords differ");
        }
    }
    Ok(p)
}

pub(crate) fn load_key(opts: &ClientOpts) -> eyre::Result<SecretKey> {
    let path = keystore_path(opts);
    if !path.exists() {
        bail!(
            "no key file at {} (create one with `agora wallet new`)",
            path.display()
        );
    }
    Ok(keystore::load(&path, &password(false)?)?)
}

/// Node answers go through `Value` first, so `--json` prints their keys sorted, as it always has.
pub(crate) fn print(opts: &ClientOpts, value: &Value, text: String) {
    if opts.json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// A small runtime for one command's calls to the node.
pub(crate) fn block_on<T>(
    calls: impl std::future::Future<Output = eyre::Result<T>>,
) -> eyre::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(calls)
}

/// The node's refusal in the words the CLI has always used (`400 Bad Request`, not `400`).
pub(crate) fn node_error(e: ChainError) -> eyre::Report {
    match e {
        ChainError::Refused {
            status,
            code,
            message,
        } => {
            let status = reqwest::StatusCode::from_u16(status)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| status.to_string());
            eyre!("node refused ({status}, {code}): {message}")
        }
        other => other.into(),
    }
}

pub fn run_wallet(args: WalletArgs) -> eyre::Result<()> {
    let opts = &args.opts;
    let path = keystore_path(opts);
    match args.command {
        WalletCommand::New { force } | WalletCommand::Import { force, .. }
            if path.exists() && !force =>
        {
            bail!(
                "{} already exists (use --force to overwrite)",
                path.display()
            )
        }
        WalletCommand::New { .. } => {
            let key = SecretKey::generate();
            keystore::save(&path, &key, &password(true)?)?;
            print(
                opts,
                &json!({"address": key.public(), "keystore": path}),
                format!("address  {}\nkeystore {}", key.public(), path.display()),
            );
        }
        WalletCommand::Import { seed_hex, .. } => {
            let hex_seed = match seed_hex {
                Some(s) => s,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_line(&mut s)?;
                    s
                }
            };
            let bytes: [u8; 32] = hex::decode(hex_seed.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| eyre!("the seed must be 64 hex characters"))?;
            let key = SecretKey::from_bytes(bytes);
            keystore::save(&path, &key, &password(true)?)?;
            print(
                opts,
                &json!({"address": key.public(), "keystore": path}),
                format!("imported {}", key.public()),
            );
        }
        WalletCommand::Address => {
            let a = keystore::address(&path)?;
            print(opts, &json!({"address": a}), a.to_string());
        }
        WalletCommand::Balance { address } => {
            let a = match address {
                Some(a) => a,
                None => keystore::address(&path)?,
            };
            let rpc = ChainClient::new(&opts.rpc);
            let account = block_on(async { rpc.account(&a).await.map_err(node_error) })?;
            let locked = account
                .locked
                .iter()
                .fold(Amount::ZERO, |t, l| Amount(t.0.saturating_add(l.amount.0)));
            let unlocks = account
                .locked
                .first()
                .map(|l| format!(" (next unlock at height {})", l.unlock_height))
                .unwrap_or_default();
            print(
                opts,
                &serde_json::to_value(&account)?,
                format!(
                    "address  {a}\nbalance  {}\nlocked   {locked}{unlocks}\nnonce    {}\nstaked   {}\nheight   {}",
                    account.balance, account.nonce, account.self_stake, account.height
                ),
            );
        }
    }
    Ok(())
}

pub(crate) fn agr(s: &str) -> eyre::Result<Amount> {
    Amount::parse_agr(s).map_err(|e| eyre!("{s:?}: {e}"))
}

pub fn run_tx(args: TxArgs) -> eyre::Result<()> {
    block_on(tx(args))
}

async fn tx(args: TxArgs) -> eyre::Result<()> {
    let opts = &args.opts;
    let key = load_key(opts)?;
    let me = key.public();
    let rpc = ChainClient::new(&opts.rpc);
    let body = match args.command {
        TxCommand::Transfer { to, amount } => TxBody::Transfer {
            to,
            amount: agr(&amount)?,
        },
        TxCommand::Bond { target, amount } => TxBody::Bond {
            target: target.unwrap_or(me),
            amount: agr(&amount)?,
        },
        TxCommand::Unbond { target, amount } => TxBody::Unbond {
            target: target.unwrap_or(me),
            amount: agr(&amount)?,
        },
        TxCommand::Withdraw => TxBody::Withdraw,
        TxCommand::RegisterProvider {
            model,
            input_price,
            output_price,
            endpoint,
            accelerator,
            memory_mib,
            cpu_cores,
        } => TxBody::RegisterProvider(ProviderInfo {
            peer_id: Vec::new(),
            endpoints: endpoint,
            hardware: HardwareSummary {
                accelerator,
                memory_mib,
                cpu_cores,
            },
            models: vec![ModelPrice {
                model,
                input_per_million: agr(&input_price)?,
                output_per_million: agr(&output_price)?,
            }],
        }),
        TxCommand::RegisterModel {
            sha256,
            name,
            family,
            kind,
            license,
            royalty_bps,
        } => TxBody::RegisterModel(ModelRegistration {
            sha256,
            name,
            family,
            kind,
            license,
            royalty_bps,
        }),
        TxCommand::OpenChannel {
            provider,
            deposit,
            expiry_blocks,
        } => {
            let height = rpc.status().await.map_err(node_error)?.height;
            TxBody::OpenChannel {
                provider,
                deposit: agr(&deposit)?,
                expiry_height: height + expiry_blocks,
            }
        }
        TxCommand::CloseChannel { channel } => TxBody::CloseChannel { channel },
        TxCommand::SettleChannel { channel } => TxBody::SettleChannel { channel },
        TxCommand::CreateMarket { name, models } => {
            TxBody::CreateMarket(agora_types::MarketSpec { name, models })
        }
        TxCommand::JoinMarket { market } => TxBody::JoinMarket {
            market: super::market::market_ref(&market),
        },
        TxCommand::CommitWeights { market, weights } => {
            let (commitment, reveal, path) =
                super::market::prepare_commit(&home(), &market, &weights, &me)?;
            eprintln!("{}", super::market::commit_summary(&reveal, &path));
            TxBody::CommitWeights {
                market: reveal.market,
                commitment,
            }
        }
        TxCommand::RevealWeights { market } => {
            TxBody::RevealWeights(super::market::load_reveal(&home(), &market, &me)?)
        }
    };
    let status = rpc.status().await.map_err(node_error)?;
    let fee = match &args.fee {
        Some(f) => agr(f)?,
        None => status.params.min_fee,
    };
    let nonce = rpc.account(&me).await.map_err(node_error)?.nonce;
    let stx = Tx {
        chain_id: status.chain_id,
        signer: me,
        nonce,
        fee,
        body,
    }
    .sign(&key);
    let accepted = rpc.post_tx(&stx).await.map_err(node_error)?;
    let id = accepted.id;
    if args.no_wait {
        print(
            opts,
            &serde_json::to_value(&accepted)?,
            format!("submitted {id}"),
        );
        return Ok(());
    }
    let view = match rpc.wait_final_view(&id, FINAL_TIMEOUT).await {
        Ok(v) => v,
        Err(ChainError::NotFinal(..)) => bail!("transaction {id} was not final after 30 s"),
        Err(e) => return Err(node_error(e)),
    };
    let TxView::Final {
        height, receipt, ..
    } = &view
    else {
        bail!("transaction {id} was not final after 30 s");
    };
    let failure = match receipt.as_ref().map(|r| &r.outcome) {
        Some(Outcome::Success) => None,
        Some(Outcome::Failed { message, .. }) => Some(message.as_str()),
        None => Some("?"),
    };
    let text = match failure {
        None => format!("final   {id}\nheight  {height}"),
        Some(reason) => format!("FAILED  {id}\nheight  {height}\nreason  {reason}"),
    };
    print(opts, &serde_json::to_value(&view)?, text);
    if failure.is_some() {
        std::process::exit(2);
    }
    Ok(())
}
