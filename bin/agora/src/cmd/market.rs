//! `agora market ...` and `agora epoch show`: markets and their epochs, explained line by line
//! (what each account was paid and why); and the weights a validator commits and later
//! reveals, whose salt waits on disk in between.

use super::wallet::{ClientOpts, block_on, node_error, print};
use agora_rpc::ChainClient;
use agora_types::{Address, Hash, ProviderWeight, WeightsReveal, market_id};
use clap::{Args, Subcommand};
use eyre::{WrapErr, bail, eyre};
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MarketArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: MarketCommand,
}

#[derive(Subcommand, Debug)]
pub enum MarketCommand {
    /// Every market: members, usage since the last epoch, epochs run.
    List,
    /// One market: owner, models, members with their last incentive, permits, next epoch.
    Show {
        /// The market's name (e.g. chat/smollm2) or id (64 hex).
        market: String,
    },
}

#[derive(Args, Debug)]
pub struct EpochArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: EpochCommand,
}

#[derive(Subcommand, Debug)]
pub enum EpochCommand {
    /// One market's epoch, line by line: consensus, clipping, bonds, what each account was
    /// paid, and why a line was paid nothing.
    Show {
        /// The incentive epoch.
        epoch: u64,
        /// The market's name or id.
        #[arg(long)]
        market: String,
        /// Only this account's lines.
        #[arg(long)]
        account: Option<Address>,
    },
}

/// A market named by its name or its id.
pub fn market_ref(s: &str) -> Hash {
    if s.len() == 64
        && let Ok(h) = s.parse::<Hash>()
    {
        return h;
    }
    market_id(s)
}

/// A share in parts per million, as a decimal.
fn share(ppm: u64) -> String {
    format!("{}.{:06}", ppm / 1_000_000, ppm % 1_000_000)
}

pub fn run_market(args: MarketArgs) -> eyre::Result<()> {
    let opts = &args.opts;
    let rpc = ChainClient::new(&opts.rpc);
    match args.command {
        MarketCommand::List => {
            let view = block_on(async { rpc.markets().await.map_err(node_error) })?;
            let mut text = format!(
                "{} market(s) at height {} (epochs of {} blocks)\n",
                view.markets.len(),
                view.height,
                view.epoch_blocks
            );
            for m in &view.markets {
                let _ = writeln!(
                    text,
                    "{:<28} {} members  usage {}  epochs {}  id {}",
                    m.name, m.members, m.usage, m.epochs_run, m.id
                );
            }
            print(
                opts,
                &serde_json::to_value(&view)?,
                text.trim_end().to_string(),
            );
        }
        MarketCommand::Show { market } => {
            let id = market_ref(&market);
            let view = block_on(async { rpc.market(&id).await.map_err(node_error) })?
                .ok_or_else(|| eyre!("no market {market:?} (id {id})"))?;
            let r = &view.record;
            let mut text = format!(
                "market   {} (id {})\nowner    {}\nmodels   {}\ndeposit  {}\nusage    {} since the last epoch\nepochs   {} run; the next ends at height {}\nmembers  {}\n",
                r.name,
                view.id,
                r.owner,
                r.models
                    .iter()
                    .map(|m| m.to_hex())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.deposit,
                r.usage,
                r.epochs_run,
                view.next_epoch_height,
                r.members.len()
            );
            for (slot, m) in r.members.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "  {slot:>3}  {}  joined at {}  incentive {}",
                    m.provider,
                    m.joined_at,
                    share(u64::from(m.incentive_ppm))
                );
            }
            let _ = write!(text, "permits  {}", r.permits.len());
            print(opts, &serde_json::to_value(&view)?, text);
        }
    }
    Ok(())
}

pub fn run_epoch(args: EpochArgs) -> eyre::Result<()> {
    let opts = &args.opts;
    let rpc = ChainClient::new(&opts.rpc);
    let EpochCommand::Show {
        epoch,
        market,
        account,
    } = args.command;
    let id = market_ref(&market);
    let view = block_on(async {
        rpc.epoch_report(&id, epoch, account.as_ref())
            .await
            .map_err(node_error)
    })?
    .ok_or_else(|| eyre!("the node has no report of epoch {epoch} of market {market:?}"))?;
    let r = &view.report;
    let mut text = format!(
        "market    {} (id {})\nepoch     {} (ran at the end of height {})\nusage     {}\nemission  {}  (kappa {})\nowner     {} paid {}\n",
        r.name,
        r.market,
        r.epoch,
        r.height,
        r.usage,
        r.emission,
        share(u64::from(r.kappa_ppm)),
        r.owner,
        r.owner_paid
    );
    if r.treasury_paid.0 > 0 {
        let _ = writeln!(text, "treasury  paid {}", r.treasury_paid);
    }
    for redirect in &r.redirects {
        let _ = writeln!(
            text,
            "redirect  {}",
            serde_json::to_value(redirect)?.as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(text, "providers");
    for p in &r.providers {
        let _ = writeln!(
            text,
            "  {:>3}  {}  consensus {}  rank {}  incentive {}  paid {}{}",
            p.slot,
            p.provider,
            share(p.consensus_ppm),
            share(p.rank_ppm),
            share(p.incentive_ppm),
            p.paid,
            p.reason
                .as_ref()
                .map(|r| format!("\n       why 0: {r}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(text, "validators");
    for v in &r.validators {
        let _ = writeln!(
            text,
            "  {}  stake {}  counted {}  permit {}  active {}  trust {}  dividends {}  paid {}{}",
            v.validator,
            share(v.stake_ppm),
            share(v.active_stake_ppm),
            v.permit,
            v.active,
            share(v.validator_trust_ppm),
            share(v.dividends_ppm),
            v.paid,
            v.reason
                .as_ref()
                .map(|r| format!("\n       why 0: {r}"))
                .unwrap_or_default()
        );
        if account.is_some() {
            for w in &v.weights {
                let _ = writeln!(
                    text,
                    "       weight on {}: {} -> clipped {} (bond {})",
                    w.provider,
                    share(w.weight_ppm),
                    share(w.clipped_ppm),
                    share(w.bond_ppm)
                );
            }
        }
    }
    print(
        opts,
        &serde_json::to_value(&view)?,
        text.trim_end().to_string(),
    );
    Ok(())
}

/// Where the weights a validator committed wait for their reveal (with the salt that hides
/// them): `$AGORA_HOME/weights/<market>-<validator>.json`.
fn pending_path(home: &std::path::Path, market: &Hash, validator: &Address) -> PathBuf {
    home.join("weights")
        .join(format!("{}-{}.json", market.to_hex(), validator))
}

/// Builds a reveal from `ADDRESS=WEIGHT` pairs with a fresh random salt, and writes it to disk
/// (fsynced) before anything is sent, so a crash after the commit never loses what it hides.
pub fn prepare_commit(
    home: &std::path::Path,
    market: &str,
    weights: &[String],
    me: &Address,
) -> eyre::Result<(Hash, WeightsReveal, PathBuf)> {
    let market = market_ref(market);
    if weights.is_empty() {
        bail!("give at least one --weight ADDRESS=WEIGHT");
    }
    let weights = weights
        .iter()
        .map(|w| {
            let (address, value) = w
                .split_once('=')
                .ok_or_else(|| eyre!("{w:?}: expected ADDRESS=WEIGHT"))?;
            Ok(ProviderWeight {
                provider: address
                    .trim()
                    .parse()
                    .map_err(|e| eyre!("{address:?}: {e}"))?,
                weight: value
                    .trim()
                    .parse()
                    .map_err(|_| eyre!("{value:?}: a weight is 0..=65535"))?,
            })
        })
        .collect::<eyre::Result<Vec<_>>>()?;
    let salt = agora_types::market::fresh_salt();
    let reveal = WeightsReveal {
        market,
        weights,
        salt,
    };
    let path = pending_path(home, &market, me);
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    let file = std::fs::File::create(&path)
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    serde_json::to_writer_pretty(&file, &reveal)?;
    file.sync_all()?;
    Ok((agora_types::weights_commitment(me, &reveal), reveal, path))
}

/// The reveal `prepare_commit` wrote for `market`.
pub fn load_reveal(
    home: &std::path::Path,
    market: &str,
    me: &Address,
) -> eyre::Result<WeightsReveal> {
    let market = market_ref(market);
    let path = pending_path(home, &market, me);
    let text = std::fs::read_to_string(&path).wrap_err_with(|| {
        format!(
            "no committed weights waiting at {} (run `agora tx commit-weights` first)",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .wrap_err_with(|| format!("{} is not a saved reveal", path.display()))
}

/// A one-line summary of a commit, for the command's output.
pub fn commit_summary(reveal: &WeightsReveal, path: &std::path::Path) -> serde_json::Value {
    json!({"market": reveal.market, "weights": reveal.weights.len(), "saved": path})
}
