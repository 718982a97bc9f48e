//! The checker: judges a finished run from its history and the facts read from the network
//! afterwards, and names every broken invariant with the operations that show it. It trusts
//! nothing it reads: sums saturate instead of overflowing, and an odd history is a finding,
//! not a panic.

use std::collections::{BTreeMap, BTreeSet};

use agora_types::{Address, Amount, Hash};
use serde::Serialize;

use crate::facts::Facts;
use crate::history::{Body, Call, ClientError, Event, Outcome, Phase};

/// The bounds the checker cannot know by itself; the runner passes the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most one request may cost. A stream cut before its `charged` arrived may have been
    /// billed up to this much without the client seeing it.
    pub max_charge_per_request: Amount,
    /// How long past its timeout an operation may end before it counts as hung.
    pub grace_ms: u64,
}

impl Default for Limits {
    /// No unseen charge is allowed, and two seconds of grace.
    fn default() -> Limits {
        Limits {
            max_charge_per_request: Amount::ZERO,
            grace_ms: 2_000,
        }
    }
}

/// One broken invariant. Its `Display` is one English line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// Two validators finalized different blocks at `height` (the lowest such height of the
    /// pair: after a fork every later height differs too).
    #[error(
        "validators {a} and {b} finalized different blocks at height {height}: id {} vs {}, \
         state root {} vs {}",
        short(.a_id), short(.b_id), short(.a_root), short(.b_root)
    )]
    BlocksDisagree {
        height: u64,
        a: String,
        b: String,
        a_id: Hash,
        b_id: Hash,
        a_root: Hash,
        b_root: Hash,
    },
    /// Two validators' RPCs reported different state roots at one height (lowest per pair).
    #[error(
        "{a} and {b} reported different state roots at height {height}: {} (op {a_op}) vs {} \
         (op {b_op})",
        short(.a_root), short(.b_root)
    )]
    SampleRootsDisagree {
        height: u64,
        a: String,
        b: String,
        a_op: u64,
        b_op: u64,
        a_root: Hash,
        b_root: Hash,
    },
    /// A validator's chain does not run 1, 2, 3, ... (the first break only).
    #[error(
        "validator {node}'s chain jumps to height {found_height} where {expected_height} was due"
    )]
    ChainGap {
        node: String,
        expected_height: u64,
        found_height: u64,
    },
    /// Tokens appeared or vanished: the sum of every holding differs from genesis + minted -
    /// burned. Reported once per node for each new discrepancy.
    #[error(
        "supply not conserved on {node} at height {height} (op {op}): {circulating} circulating, \
         {expected} expected"
    )]
    SupplyBroken {
        op: u64,
        node: String,
        height: u64,
        expected: Amount,
        circulating: Amount,
    },
    #[error("op {op} was invoked and never ended")]
    Unanswered { op: u64 },
    #[error("op {op} ended {ends} times")]
    AnsweredTwice { op: u64, ends: u64 },
    /// A completion whose invoke is not earlier in the history.
    #[error("op {op} ended without an earlier invoke")]
    EndWithoutInvoke { op: u64 },
    #[error("op {op} took {took_ms} ms against a timeout of {timeout_ms} ms")]
    Hung {
        op: u64,
        took_ms: u64,
        timeout_ms: u64,
    },
    #[error(
        "op {op} failed with an unclear error: status {}, code {:?}, message {:?}",
        status_text(.error.status), .error.code, .error.message
    )]
    UnclearError { op: u64, error: ClientError },
    /// A stream was billed for fewer tokens than content chunks arrived.
    #[error(
        "op {op} streamed {tokens_received} content chunks but usage says only \
         {completion_tokens} completion tokens"
    )]
    UsageBelowReceived {
        op: u64,
        completion_tokens: u32,
        tokens_received: u32,
    },
    #[error(
        "op {op} was billed {completion_tokens} completion tokens with max_tokens {max_tokens}"
    )]
    UsageOverMax {
        op: u64,
        completion_tokens: u32,
        max_tokens: u32,
    },
    /// The gateway's bill is above what the responses said they cost (plus what cut streams
    /// may have cost unseen, `unseen_allowance`).
    #[error(
        "customer {customer} was billed {billed} but its {} requests' responses add up to \
         {sum_of_responses}{}",
        .ops.len(), unseen_note(*.unseen_allowance)
    )]
    Overcharged {
        customer: String,
        billed: Amount,
        sum_of_responses: Amount,
        unseen_allowance: Amount,
        ops: Vec<u64>,
    },
    #[error(
        "customer {customer} was billed only {billed} but its {} requests' responses add up to \
         {sum_of_responses}",
        .ops.len()
    )]
    Undercharged {
        customer: String,
        billed: Amount,
        sum_of_responses: Amount,
        ops: Vec<u64>,
    },
    #[error(
        "channel {} redeemed cumulative {cumulative} at height {height} after {previous}",
        short(.channel)
    )]
    RedeemNotIncreasing {
        channel: Hash,
        height: u64,
        previous: Amount,
        cumulative: Amount,
    },
    #[error(
        "channel {} redeemed voucher {} twice, at heights {first_height} and {second_height}",
        short(.channel), short(.voucher)
    )]
    RedeemedTwice {
        channel: Hash,
        voucher: Hash,
        first_height: u64,
        second_height: u64,
    },
    #[error(
        "channel {} says {redeemed} redeemed but its last applied voucher was {last_cumulative}",
        short(.channel)
    )]
    RedeemedMismatch {
        channel: Hash,
        last_cumulative: Amount,
        redeemed: Amount,
    },
    #[error("channel {} paid out {redeemed}, more than its deposit {deposit}", short(.channel))]
    OverDeposit {
        channel: Hash,
        redeemed: Amount,
        deposit: Amount,
    },
    #[error("channel {} of the gateway was not settled at the end", short(.channel))]
    Unsettled { channel: Hash },
    #[error(
        "the gateway's balance is {got}, not the {expected} its transfers, fees and deposits \
         leave with every settled channel's deposit less its redeems given back"
    )]
    RefundMismatch { expected: Amount, got: Amount },
    #[error("the gateway sent transactions the checker's book does not model: {txs}")]
    Unmodelled { txs: String },
    #[error("honest provider {provider} ({address}) was punished: {why}")]
    HonestSlashed {
        provider: String,
        address: Address,
        why: String,
    },
    #[error("cheating provider {provider} ({address}) was neither slashed nor jailed")]
    CheaterNotSlashed { provider: String, address: Address },
}

/// Hashes are long; 16 hex digits name one unambiguously enough in a sentence.
fn short(hash: &Hash) -> String {
    hash.to_hex().chars().take(16).collect()
}

fn status_text(status: Option<u16>) -> String {
    status.map_or_else(|| "none".to_string(), |s| s.to_string())
}

fn unseen_note(unseen_allowance: Amount) -> String {
    if unseen_allowance.is_zero() {
        String::new()
    } else {
        format!(" (plus at most {unseen_allowance} unseen)")
    }
}

impl Violation {
    /// The history operations that show the violation (empty for facts-only findings).
    pub fn ops(&self) -> Vec<u64> {
        use Violation::*;
        match self {
            SampleRootsDisagree { a_op, b_op, .. } => vec![*a_op, *b_op],
            SupplyBroken { op, .. }
            | Unanswered { op }
            | AnsweredTwice { op, .. }
            | EndWithoutInvoke { op }
            | Hung { op, .. }
            | UnclearError { op, .. }
            | UsageBelowReceived { op, .. }
            | UsageOverMax { op, .. } => vec![*op],
            Overcharged { ops, .. } | Undercharged { ops, .. } => ops.clone(),
            _ => Vec::new(),
        }
    }

    /// The block heights a facts-only finding is about, to find its moment in the history.
    fn heights(&self) -> Option<(u64, u64)> {
        use Violation::*;
        match self {
            BlocksDisagree { height, .. } | RedeemNotIncreasing { height, .. } => {
                Some((*height, *height))
            }
            ChainGap {
                expected_height: a,
                found_height: b,
                ..
            }
            | RedeemedTwice {
                first_height: a,
                second_height: b,
                ..
            } => Some((*a.min(b), *a.max(b))),
            _ => None,
        }
    }
}

/// One operation: its invoke and every completion after it sharing its id.
pub(crate) struct Operation<'a> {
    pub invoke: &'a Event,
    pub call: &'a Call,
    pub timeout_ms: u64,
    /// In history order; the first is the one that counts.
    pub ends: Vec<&'a Event>,
}

impl<'a> Operation<'a> {
    pub fn end(&self) -> Option<&'a Event> {
        self.ends.first().copied()
    }
}

/// Pairs each invoke with its completions, by op id. Completions with no earlier invoke come
/// back apart. A repeated invoke of one id is ignored: the first one owns the id.
pub(crate) fn operations(events: &[Event]) -> (BTreeMap<u64, Operation<'_>>, Vec<&Event>) {
    let mut ops: BTreeMap<u64, Operation<'_>> = BTreeMap::new();
    let mut orphans = Vec::new();
    for event in events {
        match &event.body {
            Body::Invoke { call, timeout_ms } => {
                ops.entry(event.op).or_insert(Operation {
                    invoke: event,
                    call,
                    timeout_ms: *timeout_ms,
                    ends: Vec::new(),
                });
            }
            Body::Ok { .. } | Body::Fail { .. } => match ops.get_mut(&event.op) {
                Some(op) => op.ends.push(event),
                None => orphans.push(event),
            },
            Body::Fault { .. } | Body::Sample { .. } => {}
        }
    }
    (ops, orphans)
}

/// A fault from its Start to its End. A Start never ended lasts to the end of the history; an
/// End never started is taken to have begun with the run.
pub(crate) struct FaultWindow<'a> {
    pub fault: &'a str,
    pub start_ms: u64,
    /// `None`: still on when the history ends.
    pub end_ms: Option<u64>,
    pub start_index: Option<usize>,
    pub end_index: Option<usize>,
}

impl FaultWindow<'_> {
    /// Whether `t` falls in `start..end`.
    pub fn contains(&self, t: u64) -> bool {
        t >= self.start_ms && self.end_ms.is_none_or(|end| t < end)
    }

    pub fn overlaps(&self, from_ms: u64, to_ms: u64) -> bool {
        self.start_ms <= to_ms && self.end_ms.is_none_or(|end| from_ms <= end)
    }
}

/// Pairs each fault Start with the next End of the same fault on the same target.
pub(crate) fn fault_windows(events: &[Event]) -> Vec<FaultWindow<'_>> {
    let mut windows: Vec<FaultWindow<'_>> = Vec::new();
    let mut open: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        let Body::Fault {
            fault,
            target,
            phase,
        } = &event.body
        else {
            continue;
        };
        let key = (fault.as_str(), target.as_str());
        match phase {
            Phase::Start => {
                open.insert(key, windows.len());
                windows.push(FaultWindow {
                    fault,
                    start_ms: event.t_ms,
                    end_ms: None,
                    start_index: Some(index),
                    end_index: None,
                });
            }
            Phase::End => match open.remove(&key).and_then(|i| windows.get_mut(i)) {
                Some(window) => {
                    window.end_ms = Some(event.t_ms);
                    window.end_index = Some(index);
                }
                None => windows.push(FaultWindow {
                    fault,
                    start_ms: 0,
                    end_ms: Some(event.t_ms),
                    start_index: None,
                    end_index: Some(index),
                }),
            },
        }
    }
    windows
}

/// Whether a failure says what went wrong: an HTTP status with an error code, or a named
/// transport or ledger failure.
pub fn is_clear_error(error: &ClientError) -> bool {
    match error.status {
        Some(_) => !error.code.is_empty(),
        None => {
            matches!(
                error.code.as_str(),
                "connect" | "timeout" | "stream_cut" | "body"
            ) || error
                .code
                .strip_prefix("ledger_")
                .is_some_and(|rest| !rest.is_empty())
        }
    }
}

/// A saturating sum: an overflow can only come from lying inputs, and a saturated sum still
/// disagrees with any honest bill.
fn add(a: Amount, b: Amount) -> Amount {
    Amount(a.0.saturating_add(b.0))
}

/// Judges a run with [`Limits::default`].
pub fn check(events: &[Event], facts: &Facts) -> Vec<Violation> {
    check_with(events, facts, &Limits::default())
}

/// Judges a run: every violation found, grouped by invariant, in a stable order.
pub fn check_with(events: &[Event], facts: &Facts, limits: &Limits) -> Vec<Violation> {
    let mut found = Vec::new();
    check_chains(facts, &mut found);
    check_samples(events, &mut found);
    let (ops, orphans) = operations(events);
    check_operations(&ops, &orphans, limits, &mut found);
    check_bills(&ops, facts, limits, &mut found);
    check_channels(facts, &mut found);
    check_payer_book(facts, &mut found);
    check_providers(facts, &mut found);
    found
}

/// A pair of node names in a fixed order, so (a, b) and (b, a) are reported once.
fn pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b { (a, b) } else { (b, a) }
}

fn check_chains(facts: &Facts, found: &mut Vec<Violation>) {
    for chain in &facts.validators {
        let mut expected: u64 = 1;
        for block in &chain.blocks {
            if block.height != expected {
                found.push(Violation::ChainGap {
                    node: chain.node.clone(),
                    expected_height: expected,
                    found_height: block.height,
                });
                break;
            }
            expected = expected.saturating_add(1);
        }
    }
    let mut by_height: BTreeMap<u64, Vec<(&str, &crate::facts::BlockFact)>> = BTreeMap::new();
    for chain in &facts.validators {
        for block in &chain.blocks {
            by_height
                .entry(block.height)
                .or_default()
                .push((&chain.node, block));
        }
    }
    let mut reported = BTreeSet::new();
    for (height, blocks) in &by_height {
        let Some(((first_node, first), rest)) = blocks.split_first() else {
            continue;
        };
        for (node, block) in rest {
            let differs = block.id != first.id || block.state_root != first.state_root;
            if differs && node != first_node && reported.insert(pair(first_node, node)) {
                found.push(Violation::BlocksDisagree {
                    height: *height,
                    a: first_node.to_string(),
                    b: node.to_string(),
                    a_id: first.id,
                    b_id: block.id,
                    a_root: first.state_root,
                    b_root: block.state_root,
                });
            }
        }
    }
}

fn check_samples(events: &[Event], found: &mut Vec<Violation>) {
    // The last discrepancy reported per node: a broken supply stays broken, so only a new gap
    // is news.
    let mut last_gap: BTreeMap<&str, (Amount, Amount)> = BTreeMap::new();
    let mut by_height: BTreeMap<u64, Vec<(&str, u64, Hash)>> = BTreeMap::new();
    for event in events {
        let Body::Sample { node, sample } = &event.body else {
            continue;
        };
        by_height
            .entry(sample.height)
            .or_default()
            .push((node, event.op, sample.state_root));
        if sample.circulating == sample.expected_total {
            last_gap.remove(node.as_str());
            continue;
        }
        let gap = (sample.expected_total, sample.circulating);
        if last_gap.insert(node, gap) != Some(gap) {
            found.push(Violation::SupplyBroken {
                op: event.op,
                node: node.clone(),
                height: sample.height,
                expected: sample.expected_total,
                circulating: sample.circulating,
            });
        }
    }
    let mut reported = BTreeSet::new();
    for (height, samples) in &by_height {
        let Some(((first_node, first_op, first_root), rest)) = samples.split_first() else {
            continue;
        };
        for (node, op, root) in rest {
            if root != first_root && node != first_node && reported.insert(pair(first_node, node)) {
                found.push(Violation::SampleRootsDisagree {
                    height: *height,
                    a: first_node.to_string(),
                    b: node.to_string(),
                    a_op: *first_op,
                    b_op: *op,
                    a_root: *first_root,
                    b_root: *root,
                });
            }
        }
    }
}

fn check_operations(
    ops: &BTreeMap<u64, Operation<'_>>,
    orphans: &[&Event],
    limits: &Limits,
    found: &mut Vec<Violation>,
) {
    for orphan in orphans {
        found.push(Violation::EndWithoutInvoke { op: orphan.op });
    }
    for (&op, operation) in ops {
        match operation.ends.len() {
            0 => found.push(Violation::Unanswered { op }),
            1 => {}
            n => found.push(Violation::AnsweredTwice {
                op,
                ends: u64::try_from(n).unwrap_or(u64::MAX),
            }),
        }
        let Some(end) = operation.end() else {
            continue;
        };
        let took_ms = end.t_ms.saturating_sub(operation.invoke.t_ms);
        if took_ms > operation.timeout_ms.saturating_add(limits.grace_ms) {
            found.push(Violation::Hung {
                op,
                took_ms,
                timeout_ms: operation.timeout_ms,
            });
        }
        match &end.body {
            Body::Fail { error, .. } if !is_clear_error(error) => {
                found.push(Violation::UnclearError {
                    op,
                    error: error.clone(),
                });
            }
            Body::Ok { outcome } => check_usage(op, operation.call, outcome, found),
            _ => {}
        }
    }
}

fn check_usage(op: u64, call: &Call, outcome: &Outcome, found: &mut Vec<Violation>) {
    let (stream, max_tokens) = match call {
        Call::Chat {
            stream, max_tokens, ..
        }
        | Call::Completion {
            stream, max_tokens, ..
        } => (*stream, *max_tokens),
        Call::Embedding { .. } | Call::Transfer { .. } => return,
    };
    let Some(usage) = outcome.usage else {
        return;
    };
    // Every content chunk carries at least one token, so a stream billed for fewer tokens than
    // chunks received under-reports (a whole response counts its tokens from usage itself).
    if stream && usage.completion_tokens < outcome.tokens_received {
        found.push(Violation::UsageBelowReceived {
            op,
            completion_tokens: usage.completion_tokens,
            tokens_received: outcome.tokens_received,
        });
    }
    if usage.completion_tokens > max_tokens {
        found.push(Violation::UsageOverMax {
            op,
            completion_tokens: usage.completion_tokens,
            max_tokens,
        });
    }
}

/// What one customer's responses said they cost.
#[derive(Default)]
struct Tally {
    sum: Amount,
    /// Failed streams that received tokens but never learned their charge.
    unseen: u128,
    ops: Vec<u64>,
}

fn check_bills(
    ops: &BTreeMap<u64, Operation<'_>>,
    facts: &Facts,
    limits: &Limits,
    found: &mut Vec<Violation>,
) {
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for (&op, operation) in ops {
        let (Some(customer), Some(end)) = (operation.call.customer(), operation.end()) else {
            continue;
        };
        let tally = tallies.entry(customer).or_default();
        tally.ops.push(op);
        match &end.body {
            Body::Ok { outcome } => tally.sum = add(tally.sum, outcome.charged.unwrap_or_default()),
            Body::Fail { partial, .. } => match partial.charged {
                Some(charged) => tally.sum = add(tally.sum, charged),
                None if partial.tokens_received > 0 => {
                    tally.unseen = tally.unseen.saturating_add(1)
                }
                None => {}
            },
            _ => {}
        }
    }
    let none = Tally::default();
    for bill in &facts.customers {
        let tally = tallies.get(bill.name.as_str()).unwrap_or(&none);
        let unseen_allowance = Amount(limits.max_charge_per_request.0.saturating_mul(tally.unseen));
        if bill.spent > add(tally.sum, unseen_allowance) {
            found.push(Violation::Overcharged {
                customer: bill.name.clone(),
                billed: bill.spent,
                sum_of_responses: tally.sum,
                unseen_allowance,
                ops: tally.ops.clone(),
            });
        } else if bill.spent < tally.sum {
            found.push(Violation::Undercharged {
                customer: bill.name.clone(),
                billed: bill.spent,
                sum_of_responses: tally.sum,
                ops: tally.ops.clone(),
            });
        }
    }
}

fn check_channels(facts: &Facts, found: &mut Vec<Violation>) {
    for channel in &facts.channels {
        let mut previous: Option<Amount> = None;
        let mut vouchers: BTreeMap<Hash, u64> = BTreeMap::new();
        for redeem in channel.redeems.iter().filter(|r| r.applied) {
            if let Some(previous) = previous.filter(|p| *p >= redeem.cumulative) {
                found.push(Violation::RedeemNotIncreasing {
                    channel: channel.id,
                    height: redeem.height,
                    previous,
                    cumulative: redeem.cumulative,
                });
            }
            if let Some(&first_height) = vouchers.get(&redeem.voucher) {
                found.push(Violation::RedeemedTwice {
                    channel: channel.id,
                    voucher: redeem.voucher,
                    first_height,
                    second_height: redeem.height,
                });
            } else {
                vouchers.insert(redeem.voucher, redeem.height);
            }
            previous = Some(redeem.cumulative);
        }
        let last_cumulative = previous.unwrap_or_default();
        if last_cumulative != channel.redeemed {
            found.push(Violation::RedeemedMismatch {
                channel: channel.id,
                last_cumulative,
                redeemed: channel.redeemed,
            });
        }
        if channel.redeemed > channel.deposit {
            found.push(Violation::OverDeposit {
                channel: channel.id,
                redeemed: channel.redeemed,
                deposit: channel.deposit,
            });
        }
    }
}

/// Every deposit comes back: each channel of the payer is settled, and its balance is exactly
/// what came in, less what went out, the fees and the deposits, plus each settled channel's
/// deposit less what providers redeemed from it.
fn check_payer_book(facts: &Facts, found: &mut Vec<Violation>) {
    let Some(book) = &facts.payer_book else {
        return;
    };
    let mut refunds = Some(Amount::ZERO);
    for channel in facts.channels.iter().filter(|c| c.payer == book.payer) {
        if channel.settled {
            let refund = channel.deposit.saturating_sub(channel.redeemed);
            refunds = refunds.and_then(|r| r.checked_add(refund));
        } else {
            found.push(Violation::Unsettled {
                channel: channel.id,
            });
        }
    }
    if !book.unmodelled.is_empty() {
        found.push(Violation::Unmodelled {
            txs: book.unmodelled.join(", "),
        });
        return;
    }
    // in + refunds - out - fees - deposits, every step checked.
    let expected = refunds
        .and_then(|r| r.checked_add(book.transfers_in))
        .and_then(|a| a.checked_sub(book.transfers_out))
        .and_then(|a| a.checked_sub(book.fees))
        .and_then(|a| a.checked_sub(book.deposits));
    if expected != Some(book.actual) {
        found.push(Violation::RefundMismatch {
            expected: expected.unwrap_or(Amount::ZERO),
            got: book.actual,
        });
    }
}

fn check_providers(facts: &Facts, found: &mut Vec<Violation>) {
    let mut offences: BTreeMap<Address, Vec<&str>> = BTreeMap::new();
    for slash in &facts.slashes {
        offences
            .entry(slash.offender)
            .or_default()
            .push(&slash.evidence);
    }
    for provider in &facts.providers {
        let slashed_for = offences.get(&provider.address);
        if provider.honest {
            let mut why = Vec::new();
            if let Some(evidence) = slashed_for {
                why.push(format!("slashed for {}", evidence.join(", ")));
            }
            if provider.stake_after < provider.stake_before {
                why.push(format!(
                    "stake fell from {} to {}",
                    provider.stake_before, provider.stake_after
                ));
            }
            if provider.jailed {
                why.push("jailed".to_string());
            }
            if !why.is_empty() {
                found.push(Violation::HonestSlashed {
                    provider: provider.name.clone(),
                    address: provider.address,
                    why: why.join("; "),
                });
            }
        } else if slashed_for.is_none() && !provider.jailed {
            found.push(Violation::CheaterNotSlashed {
                provider: provider.name.clone(),
                address: provider.address,
            });
        }
    }
}

/// The smallest history slice that shows `violation`, in history order: the events of its
/// ops and every fault whose window overlaps their time span (an op that never ended spans to
/// the end of the history). A finding with no ops is placed in time by the samples at its
/// heights (which are kept); with none of those, every fault is kept.
pub fn failing_slice(events: &[Event], violation: &Violation) -> Vec<Event> {
    let run_end_ms = events.iter().map(|e| e.t_ms).max().unwrap_or(0);
    let ops: BTreeSet<u64> = violation.ops().into_iter().collect();
    let mut keep: BTreeSet<usize> = BTreeSet::new();
    let mut span: Option<(u64, u64)> = None;
    let widen = |span: &mut Option<(u64, u64)>, t: u64| {
        *span = Some(span.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
    };
    let mut ended: BTreeSet<u64> = BTreeSet::new();
    for (index, event) in events.iter().enumerate() {
        let is_op = ops.contains(&event.op) && !matches!(event.body, Body::Fault { .. });
        if is_op {
            keep.insert(index);
            widen(&mut span, event.t_ms);
            if matches!(event.body, Body::Ok { .. } | Body::Fail { .. }) {
                ended.insert(event.op);
            }
        }
    }
    let never_ended = events.iter().any(|e| {
        ops.contains(&e.op) && matches!(e.body, Body::Invoke { .. }) && !ended.contains(&e.op)
    });
    if never_ended {
        widen(&mut span, run_end_ms);
    }
    if span.is_none()
        && let Some((low, high)) = violation.heights()
    {
        for (index, event) in events.iter().enumerate() {
            if let Body::Sample { sample, .. } = &event.body
                && (low..=high).contains(&sample.height)
            {
                keep.insert(index);
                widen(&mut span, event.t_ms);
            }
        }
    }
    for window in fault_windows(events) {
        if span.is_none_or(|(lo, hi)| window.overlaps(lo, hi)) {
            keep.extend(window.start_index);
            keep.extend(window.end_index);
        }
    }
    keep.into_iter()
        .filter_map(|index| events.get(index).cloned())
        .collect()
}

#[cfg(test)]
mod tests;
