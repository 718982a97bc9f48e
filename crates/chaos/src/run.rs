//! One run: start the network, start the clients, the sampler and the nemesis, stop the load at
//! the scenario's end, bring every process back, read the facts, stop everything in order, and
//! judge. Everything lands in the run's directory: `history.jsonl`, `facts.json`,
//! `report.json`, `logs/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_rpc::api::BlockTxs;
use agora_rpc::{ChainClient, TxSender};
use agora_types::{Amount, Encode, Hash, HashDomain, TxBody};
use eyre::{WrapErr, bail, eyre};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::check::{self, Limits, Violation};
use crate::facts::{
    BlockFact, ChannelFact, CustomerBill, Facts, NodeChain, PayerBook, ProviderFact, RedeemFact,
    SlashFact,
};
use crate::history::{self, Body, ChainSample, HistoryWriter, Phase};
use crate::load::{GatewayClient, TransferClient};
use crate::net::Network;
use crate::report::{self, Report};
use crate::scenario::{FaultKind, FaultSpec, Scenario};

/// What to run and where.
pub struct RunConfig {
    pub scenario: Scenario,
    /// Where the scenario came from (printed in the replay line).
    pub scenario_path: PathBuf,
    pub seed: u64,
    pub dir: PathBuf,
    /// The `agora` binary every process runs.
    pub bin: PathBuf,
}

/// The verdict of a run.
pub struct Outcome {
    pub report: Report,
    pub violations: Vec<Violation>,
}

/// Each client's credit: far more than a run can spend, so no request is refused for quota.
const CLIENT_DEPOSIT_AGR: u64 = 50;

pub async fn run(cfg: &RunConfig) -> eyre::Result<Outcome> {
    let s = &cfg.scenario;
    std::fs::create_dir_all(&cfg.dir)?;
    // Subnet per run: two runs on one machine (CI beside a developer) do not collide.
    let run_id = u8::try_from(std::process::id() % 200 + 20).unwrap_or(20);
    println!(
        "chaos: starting {} (seed {}) in {}",
        s.name,
        cfg.seed,
        cfg.dir.display()
    );
    let net = Network::start(&cfg.dir, s, run_id, &cfg.bin).await?;
    println!(
        "chaos: network up: {} validators, {} providers, gateway {}",
        net.validators.len(),
        net.providers.len(),
        net.gateway_url
    );
    let history = Arc::new(HistoryWriter::create(&cfg.dir.join("history.jsonl"))?);

    // Clients, with their keys and credit.
    let mut clients = Vec::new();
    for i in 0..s.load.clients {
        let customer = format!("customer-{i}");
        let (_, api_key) = net
            .customer(&customer, Amount::from_agr(CLIENT_DEPOSIT_AGR))
            .await
            .wrap_err_with(|| format!("cannot set up {customer}"))?;
        clients.push(GatewayClient {
            name: format!("client-{i}"),
            customer,
            api_key,
            base: net.gateway_url.clone(),
            seed: cfg.seed.wrapping_mul(1_000).wrapping_add(i as u64),
        });
    }
    let customers: Vec<(String, String)> = clients
        .iter()
        .map(|c| (c.customer.clone(), c.api_key.clone()))
        .collect();
    let mut transfer_clients = Vec::new();
    for i in 0..s.load.transfer_clients {
        let (node, url) = net.validators[i % net.validators.len()].clone();
        let keys = [
            agora_types::SecretKey::generate(),
            agora_types::SecretKey::generate(),
        ];
        crate::net::fund(
            &net.faucet,
            &[
                (keys[0].public(), Amount::from_agr(100)),
                (keys[1].public(), Amount::from_agr(100)),
            ],
        )
        .await?;
        let chain = ChainClient::new(&url);
        let [a, b] = keys;
        transfer_clients.push(TransferClient {
            name: format!("wallet-{i}"),
            senders: [
                Arc::new(TxSender::new(a, chain.clone()).await?),
                Arc::new(TxSender::new(b, chain).await?),
            ],
            node,
            seed: cfg.seed.wrapping_mul(1_000).wrapping_add(500 + i as u64),
        });
    }
    if let Some((_, key)) = customers.first() {
        net.wait_listed(s.topology.providers, key, Duration::from_secs(120))
            .await?;
    }
    let stakes_before = provider_stakes(&net).await;

    let start = Instant::now();
    let until = start + Duration::from_secs(s.duration_s);
    println!(
        "chaos: load for {} s, {} faults",
        s.duration_s,
        s.faults.len()
    );
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(c.run(s.load.clone(), until, history.clone())));
    }
    for c in transfer_clients {
        tasks.push(tokio::spawn(c.run(s.load.clone(), until, history.clone())));
    }
    let sampler = tokio::spawn(sample(net.validators.clone(), history.clone(), until));
    let nemesis_result = nemesis(&net, s, cfg.seed, start, &history).await;
    for t in tasks {
        let _ = t.await;
    }
    let _ = sampler.await;
    // Whatever the nemesis did, every process is up again before the facts are read.
    let restarted = restart_dead(&net);
    nemesis_result?;
    restarted?;
    println!("chaos: load done; settling and reading the facts");
    // The bills while the gateway is up; then the services stop (their shutdown closes the
    // gateway's channels and redeems the last vouchers), so the chain is read when nothing
    // moves money any more: the channels' state and the blocks read are of one height.
    catch_up(&net, Duration::from_secs(60)).await?;
    let mut facts = Facts {
        customers: bills(&net, &customers).await?,
        ..Facts::default()
    };
    stop(&net, |name| !name.starts_with("validator-"));
    catch_up(&net, Duration::from_secs(60)).await?;
    // Every deposit back: the gateway's channels settled, the challenge period waited out.
    let settled = crate::settle::settle_gateway(&net, Duration::from_secs(180))
        .await
        .wrap_err("cannot settle the gateway's channels")?;
    println!("chaos: settled {settled} channels of the gateway left open");
    let tip = catch_up(&net, Duration::from_secs(60)).await?;
    chain_facts(&net, &stakes_before, tip, &mut facts).await?;
    std::fs::write(
        cfg.dir.join("facts.json"),
        serde_json::to_vec_pretty(&facts)?,
    )?;
    stop(&net, |name| name.starts_with("validator-"));
    drop(history);
    judge(cfg, &facts)
}

/// Judges a run directory's history and facts (also `agora testnet chaos --check DIR`).
pub fn judge(cfg: &RunConfig, facts: &Facts) -> eyre::Result<Outcome> {
    let events = history::read(&cfg.dir.join("history.jsonl"))?;
    let limits = Limits {
        max_charge_per_request: max_charge(&cfg.scenario),
        ..Limits::default()
    };
    let violations = check::check_with(&events, facts, &limits);
    let report = report::report(&events, facts);
    std::fs::write(
        cfg.dir.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{report}");
    if violations.is_empty() {
        println!("chaos: no violations");
    } else {
        println!("chaos: {} violations", violations.len());
        for v in &violations {
            println!("\n{v}\n  smallest failing slice:");
            for e in check::failing_slice(&events, v) {
                println!("    {}", serde_json::to_string(&e).unwrap_or_default());
            }
        }
        println!(
            "\nreplay: agora testnet chaos --scenario {} --seed {}",
            cfg.scenario_path.display(),
            cfg.seed
        );
    }
    Ok(Outcome { report, violations })
}

/// The most one request can cost: every token of its prompt bound and `max_tokens` at the
/// providers' price, with room for a failover's second prompt.
fn max_charge(s: &Scenario) -> Amount {
    let price: u64 = crate::net::PRICE.parse().unwrap_or(1);
    // Price is per million tokens in AGR; a prompt here is under 256 tokens.
    let tokens = u128::from(s.load.max_tokens) + 2 * 256;
    Amount(Amount::from_agr(price).0.saturating_mul(tokens) / 1_000_000 + 1)
}

async fn provider_stakes(net: &Network) -> Vec<Amount> {
    let chain = ChainClient::new(net.rpc0());
    let mut out = Vec::new();
    for (_, a) in &net.providers {
        let stake = chain
            .provider(a)
            .await
            .ok()
            .flatten()
            .map_or(Amount::ZERO, |p| p.stake);
        out.push(stake);
    }
    out
}

/// Every validator's `/v1/supply`, twice a second, as `Sample` events.
async fn sample(validators: Vec<(String, String)>, history: Arc<HistoryWriter>, until: Instant) {
    let clients: Vec<(String, ChainClient)> = validators
        .into_iter()
        .map(|(n, u)| (n, ChainClient::new(&u)))
        .collect();
    while Instant::now() < until {
        for (node, chain) in &clients {
            // A stalled or killed node does not answer: no sample, nothing to judge.
            let answer = tokio::time::timeout(Duration::from_secs(2), chain.supply()).await;
            if let Ok(Ok(v)) = answer {
                history.record(
                    history.op(),
                    "sampler",
                    Body::Sample {
                        node: node.clone(),
                        sample: ChainSample {
                            height: v.height,
                            state_root: v.state_root,
                            expected_total: v.expected_total,
                            circulating: v.circulating,
                        },
                    },
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Applies the fault schedule, each fault's target picked by the seed.
async fn nemesis(
    net: &Network,
    s: &Scenario,
    seed: u64,
    start: Instant,
    history: &HistoryWriter,
) -> eyre::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut faults = s.faults.clone();
    faults.sort_by_key(|f| f.at_s);
    // Ends are applied in time order too; a fault's end may come after the next one's start.
    let mut pending: Vec<(Instant, FaultKind, String, u64)> = Vec::new();
    for f in faults {
        let at = start + Duration::from_secs(f.at_s);
        end_due(net, &mut pending, at, history).await?;
        tokio::time::sleep_until(at.into()).await;
        let choices = s
            .resolve_role(&f.target)
            .ok_or_else(|| eyre!("unknown target {}", f.target))?;
        let target = choices[rng.gen_range(0..choices.len())].clone();
        let op = history.op();
        history.record(
            op,
            "nemesis",
            Body::Fault {
                fault: f.kind.name().into(),
                target: target.clone(),
                phase: Phase::Start,
            },
        );
        println!("chaos: {} s: {} {target}", f.at_s, f.kind.name());
        begin(net, &f, &target)?;
        pending.push((at + Duration::from_secs(f.for_s), f.kind, target, op));
    }
    end_due(
        net,
        &mut pending,
        Instant::now() + Duration::from_secs(86_400),
        history,
    )
    .await
}

/// Ends every pending fault due before `by`, in time order.
async fn end_due(
    net: &Network,
    pending: &mut Vec<(Instant, FaultKind, String, u64)>,
    by: Instant,
    history: &HistoryWriter,
) -> eyre::Result<()> {
    pending.sort_by_key(|p| p.0);
    while let Some(first) = pending.first() {
        if first.0 > by {
            break;
        }
        let (when, kind, target, op) = pending.remove(0);
        tokio::time::sleep_until(when.into()).await;
        end(net, kind, &target)?;
        println!("chaos: {} {target} ends", kind.name());
        history.record(
            op,
            "nemesis",
            Body::Fault {
                fault: kind.name().into(),
                target,
                phase: Phase::End,
            },
        );
    }
    Ok(())
}

/// Runs `act` on `target`'s process with the process table locked.
fn with_proc(
    net: &Network,
    target: &str,
    act: impl FnOnce(&mut crate::procs::Proc) -> eyre::Result<()>,
) -> eyre::Result<()> {
    let mut procs = net
        .procs
        .lock()
        .map_err(|_| eyre!("process table poisoned"))?;
    let p = procs
        .get_mut(target)
        .ok_or_else(|| eyre!("no process {target}"))?;
    act(p)
}

fn begin(net: &Network, f: &FaultSpec, target: &str) -> eyre::Result<()> {
    with_proc(net, target, |p| {
        match f.kind {
            FaultKind::Kill => p.kill(),
            FaultKind::Stall => p.stall()?,
            FaultKind::Partition => net.lab.isolate(target)?,
            FaultKind::Loss => net.lab.lose(target, f.percent.unwrap_or(0))?,
            FaultKind::FullDisk => {
                let taken = disk(net, target)?.fill()?;
                println!("chaos: {target}'s disk full ({} MiB taken)", taken >> 20);
            }
            FaultKind::ClockSkew => clocks(net)?.set(target, f.skew_s.unwrap_or(0))?,
        }
        Ok(())
    })
}

fn end(net: &Network, kind: FaultKind, target: &str) -> eyre::Result<()> {
    with_proc(net, target, |p| {
        match kind {
            FaultKind::Kill => p.start()?,
            FaultKind::Stall => p.resume()?,
            FaultKind::Partition | FaultKind::Loss => net.lab.heal(target)?,
            FaultKind::FullDisk => {
                disk(net, target)?.drain()?;
                // Stopping on a full disk is allowed (CometBFT does too); coming back is not
                // optional: it is started again on the freed disk, and must catch up.
                if let Some(status) = p.exited() {
                    println!("chaos: {target} stopped on its full disk ({status}); starting it");
                    p.kill();
                    p.start()?;
                }
            }
            FaultKind::ClockSkew => clocks(net)?.set(target, 0)?,
        }
        Ok(())
    })
}

fn disk<'a>(net: &'a Network, target: &str) -> eyre::Result<&'a crate::disk::Disk> {
    net.disks
        .get(target)
        .ok_or_else(|| eyre!("{target} has no disk of its own (full_disk is for validators)"))
}

fn clocks(net: &Network) -> eyre::Result<&crate::clock::Clocks> {
    net.clocks
        .as_ref()
        .ok_or_else(|| eyre!("the processes were not started on their own clocks"))
}

/// Starts again any process that died by itself (a crash the checker should hear about: its
/// log is kept, and the run fails).
fn restart_dead(net: &Network) -> eyre::Result<()> {
    let mut procs = net
        .procs
        .lock()
        .map_err(|_| eyre!("process table poisoned"))?;
    let mut dead = Vec::new();
    for (name, p) in procs.iter_mut() {
        if let Some(status) = p.exited() {
            dead.push(format!("{name} ({status})"));
        }
    }
    if !dead.is_empty() {
        bail!(
            "processes exited on their own during the run: {} (see {}/logs)",
            dead.join(", "),
            net.dir.display()
        );
    }
    Ok(())
}

/// Waits until every validator is at or past validator-0's height; returns the lowest tip.
async fn catch_up(net: &Network, timeout: Duration) -> eyre::Result<u64> {
    let deadline = Instant::now() + timeout;
    // Two more blocks, so vouchers redeemed at the end are in.
    let target = ChainClient::new(net.rpc0()).status().await?.height + 2;
    loop {
        let mut low = u64::MAX;
        for (_, url) in &net.validators {
            let h = ChainClient::new(url)
                .status()
                .await
                .map(|s| s.height)
                .unwrap_or(0);
            low = low.min(h);
        }
        if low >= target {
            return Ok(low);
        }
        if Instant::now() > deadline {
            bail!("validators did not all reach height {target} within {timeout:?} (lowest {low})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every validator's blocks up to `tip`, and the channels, redeems, slashes and providers as
/// the ledger holds them.
async fn chain_facts(
    net: &Network,
    stakes_before: &[Amount],
    tip: u64,
    facts: &mut Facts,
) -> eyre::Result<()> {
    for (name, url) in &net.validators {
        let chain = ChainClient::new(url);
        let mut blocks = Vec::new();
        for h in 1..=tip {
            if let Some(b) = chain.block(h, BlockTxs::Ids).await? {
                if b.id != b.header.id() {
                    bail!("{name} served block {h} under an id that is not its header's");
                }
                blocks.push(BlockFact {
                    height: h,
                    id: b.id,
                    state_root: b.header.state_root,
                });
            }
        }
        facts.validators.push(NodeChain {
            node: name.clone(),
            blocks,
        });
    }
    // Channels, redeems and slashes from validator-0's blocks (the others hold the same blocks,
    // which the checker verifies).
    let chain = ChainClient::new(net.rpc0());
    let mut channels: std::collections::BTreeMap<Hash, Vec<RedeemFact>> = Default::default();
    let mut book = PayerBook {
        payer: net.gateway,
        ..PayerBook::default()
    };
    for h in 1..=tip {
        let Some(b) = chain.block(h, BlockTxs::Full).await? else {
            continue;
        };
        let txs = b.transactions.unwrap_or_default();
        for (stx, receipt) in txs.iter().zip(&b.receipts) {
            let applied = matches!(receipt.outcome, agora_types::Outcome::Success);
            book.follow(h, &stx.tx, receipt, applied)?;
            match &stx.tx.body {
                TxBody::OpenChannel { provider, .. } if applied => {
                    let id =
                        agora_ledger::channels::channel_id(&stx.tx.signer, provider, stx.tx.nonce);
                    channels.entry(id).or_default();
                }
                TxBody::RedeemVoucher(sv) => {
                    channels
                        .entry(sv.voucher.channel)
                        .or_default()
                        .push(RedeemFact {
                            height: h,
                            tx: stx.id(),
                            cumulative: sv.voucher.cumulative,
                            voucher: Hash::of(HashDomain::Request, &sv.voucher.encode()),
                            applied,
                        });
                }
                TxBody::Slash(e) if applied => facts.slashes.push(SlashFact {
                    height: h,
                    tx: stx.id(),
                    offender: offender(e),
                    evidence: evidence_kind(e).into(),
                }),
                _ => {}
            }
        }
    }
    for (id, redeems) in channels {
        let Some(v) = chain.channel_view(&id).await? else {
            continue;
        };
        facts.channels.push(ChannelFact {
            id,
            payer: v.channel.payer,
            provider: v.channel.provider,
            deposit: v.channel.deposit,
            redeemed: v.channel.redeemed,
            settled: v.channel.settled,
            closing: v.channel.close_deadline.is_some(),
            redeems,
        });
    }
    book.actual = chain.account(&net.gateway).await?.balance;
    facts.payer_book = Some(book);
    for ((name, a), before) in net.providers.iter().zip(stakes_before) {
        let view = chain.provider(a).await?;
        let (stake_after, jailed) = view.map_or((Amount::ZERO, false), |p| {
            (p.stake, p.record.jailed_until > p.height)
        });
        facts.providers.push(ProviderFact {
            name: name.clone(),
            address: *a,
            honest: true,
            stake_before: *before,
            stake_after,
            jailed,
        });
    }
    Ok(())
}

fn offender(e: &agora_types::tx::Evidence) -> agora_types::Address {
    use agora_types::tx::Evidence;
    match e {
        Evidence::ConflictingClaims { offender, .. }
        | Evidence::ConflictingVotes { offender, .. } => *offender,
        Evidence::FailedAudit { receipt, .. } => receipt.receipt.provider,
    }
}

fn evidence_kind(e: &agora_types::tx::Evidence) -> &'static str {
    use agora_types::tx::Evidence;
    match e {
        Evidence::ConflictingClaims { .. } => "conflicting_claims",
        Evidence::ConflictingVotes { .. } => "conflicting_votes",
        Evidence::FailedAudit { .. } => "failed_audit",
    }
}

/// SIGTERM to the processes `which` picks, each waited on (their own shutdown order runs:
/// a gateway closes its channels, a provider redeems its last vouchers).
fn stop(net: &Network, which: impl Fn(&str) -> bool) {
    let Ok(mut procs) = net.procs.lock() else {
        return;
    };
    for (name, p) in procs.iter_mut().filter(|(n, _)| which(n)) {
        if !p.stop(Duration::from_secs(20)) {
            println!("chaos: {name} did not stop within 20 s of SIGTERM (killed)");
        }
    }
}

/// Each customer's bill as the gateway keeps it.
async fn bills(net: &Network, customers: &[(String, String)]) -> eyre::Result<Vec<CustomerBill>> {
    let mut facts = Facts::default();
    let http = reqwest::Client::new();
    let me_url = format!(
        "{}/dashboard/api/me",
        net.gateway_url.trim_end_matches("/v1")
    );
    for (name, key) in customers {
        let v: serde_json::Value = http
            .get(&me_url)
            .bearer_auth(key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let amount = |k: &str| -> eyre::Result<Amount> {
            v[k].as_str()
                .and_then(|s| s.parse().ok())
                .map(Amount)
                .ok_or_else(|| eyre!("no {k} in the gateway's bill for {name}: {v}"))
        };
        facts.customers.push(CustomerBill {
            name: name.clone(),
            account: v["account"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| eyre!("no account in {v}"))?,
            spent: amount("spent")?,
            credit: amount("credit")?,
        });
    }
    Ok(facts.customers)
}

/// For `--check`: the scenario and directory of an earlier run.
pub fn load_facts(dir: &Path) -> eyre::Result<Facts> {
    let bytes = std::fs::read(dir.join("facts.json"))
        .wrap_err_with(|| format!("no facts.json in {}", dir.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}
