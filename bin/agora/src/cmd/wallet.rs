//! `agora wallet ...` and `agora tx ...`: keys in an encrypted keystore, transactions over RPC.

use agora_node::keystore;
use agora_types::{
    Address, Amount, Encode, HardwareSummary, Hash, ModelPrice, ModelRegistration, ProviderInfo,
    SecretKey, Tx, TxBody,
};
use clap::{Args, Subcommand};
use eyre::{WrapErr, bail, eyre};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

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
}

fn home() -> PathBuf {
    std::env::var_os("AGORA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".agora")))
        .unwrap_or_else(|| PathBuf::from(".agora"))
}

fn keystore_path(opts: &ClientOpts) -> PathBuf {
    opts.keystore
        .clone()
        .unwrap_or_else(|| home().join("keys").join("default.json"))
}

fn password(confirm: bool) -> eyre::Result<String> {
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

fn load_key(opts: &ClientOpts) -> eyre::Result<SecretKey> {
    let path = keystore_path(opts);
    if !path.exists() {
        bail!(
            "no key file at {} (create one with `agora wallet new`)",
            path.display()
        );
    }
    Ok(keystore::load(&path, &password(false)?)?)
}

fn print(opts: &ClientOpts, value: &Value, text: String) {
    if opts.json {
        println!("{value}");
    } else {
        println!("{text}");
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
            let v = Rpc::new(&opts.rpc)?.get(&format!("/v1/accounts/{a}"))?;
            let amount = |k: &str| {
                v[k].as_str()
                    .and_then(|s| s.parse::<u128>().ok())
                    .map(Amount)
                    .unwrap_or_default()
            };
            print(
                opts,
                &v,
                format!(
                    "address  {a}\nbalance  {}\nnonce    {}\nstaked   {}\nheight   {}",
                    amount("balance"),
                    v["nonce"],
                    amount("self_stake"),
                    v["height"]
                ),
            );
        }
    }
    Ok(())
}

fn agr(s: &str) -> eyre::Result<Amount> {
    Amount::parse_agr(s).map_err(|e| eyre!("{s:?}: {e}"))
}

pub fn run_tx(args: TxArgs) -> eyre::Result<()> {
    let opts = &args.opts;
    let key = load_key(opts)?;
    let me = key.public();
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
            let height = Rpc::new(&opts.rpc)?.get("/v1/status")?["height"]
                .as_u64()
                .unwrap_or(0);
            TxBody::OpenChannel {
                provider,
                deposit: agr(&deposit)?,
                expiry_height: height + expiry_blocks,
            }
        }
        TxCommand::CloseChannel { channel } => TxBody::CloseChannel { channel },
        TxCommand::SettleChannel { channel } => TxBody::SettleChannel { channel },
    };
    let rpc = Rpc::new(&opts.rpc)?;
    let status = rpc.get("/v1/status")?;
    let chain_id = status["chain_id"]
        .as_str()
        .ok_or_else(|| eyre!("node did not report a chain id"))?
        .to_string();
    let min_fee: u128 = status["params"]["min_fee"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let fee = match &args.fee {
        Some(f) => agr(f)?,
        None => Amount(min_fee),
    };
    let nonce = rpc.get(&format!("/v1/accounts/{me}"))?["nonce"]
        .as_u64()
        .unwrap_or(0);
    let stx = Tx {
        chain_id,
        signer: me,
        nonce,
        fee,
        body,
    }
    .sign(&key);
    let resp = rpc.post("/v1/txs", &json!({"tx": hex::encode(stx.encode())}))?;
    let id = resp["id"].as_str().unwrap_or_default().to_string();
    if args.no_wait {
        print(opts, &resp, format!("submitted {id}"));
        return Ok(());
    }
    for _ in 0..300 {
        let v = rpc.get(&format!("/v1/txs/{id}"))?;
        if v["status"] == "final" {
            let outcome = &v["receipt"]["outcome"];
            let text = if outcome["status"] == "success" {
                format!("final   {id}\nheight  {}", v["height"])
            } else {
                format!(
                    "FAILED  {id}\nheight  {}\nreason  {}",
                    v["height"],
                    outcome["message"].as_str().unwrap_or("?")
                )
            };
            print(opts, &v, text);
            if outcome["status"] != "success" {
                std::process::exit(2);
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("transaction {id} was not final after 30 s")
}

/// A small blocking JSON client for the node's RPC.
pub struct Rpc {
    base: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Rpc {
    pub fn new(base: &str) -> eyre::Result<Rpc> {
        Ok(Rpc {
            base: base.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    fn handle(&self, resp: reqwest::Response) -> eyre::Result<Value> {
        let status = resp.status();
        let v: Value = self.rt.block_on(resp.json()).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or("no error message");
            let code = v["error"]["code"].as_str().unwrap_or("error");
            bail!("node refused ({status}, {code}): {msg}");
        }
        Ok(v)
    }

    pub fn get(&self, path: &str) -> eyre::Result<Value> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .rt
            .block_on(async { self.client.get(&url).send().await })
            .wrap_err_with(|| format!("cannot reach the node at {}", self.base))?;
        self.handle(resp)
    }

    pub fn post(&self, path: &str, body: &Value) -> eyre::Result<Value> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .rt
            .block_on(async { self.client.post(&url).json(body).send().await })
            .wrap_err_with(|| format!("cannot reach the node at {}", self.base))?;
        self.handle(resp)
    }
}
