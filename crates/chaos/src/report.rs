//! The numbers of a run, for people: requests and errors, latency overall and under each kind
//! of fault, how long service took to come back after a fault ended, the money, and the chain.
//! The checker says whether the run was correct; the report says how it went. `Display` prints
//! compact markdown tables, ready to paste into docs/benchmarks.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use agora_types::Amount;
use serde::Serialize;

use crate::check::{fault_windows, operations};
use crate::facts::Facts;
use crate::history::{Body, ClientError, Event};

/// How requests ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    pub invoked: u64,
    pub ok: u64,
    pub failed: u64,
    /// Invoked and never ended (the checker's `Unanswered`).
    pub unanswered: u64,
}

/// Latency of successful operations, invoke to end, nearest-rank percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub ops: u64,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

/// The smallest, median and largest of some durations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub count: u64,
    pub min_ms: Option<u64>,
    pub median_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

/// Time from each end of one kind of fault to the first later success. A `count` below `ends`
/// means some ends were never followed by a success of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub ends: u64,
    /// The first later `Ok` of any gateway call.
    pub gateway: Spread,
    /// The first later `Ok` transfer.
    pub transfer: Spread,
}

/// Payment channels at the end of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Channels {
    /// Neither settled nor closing. The runner settles the gateway's channels before the
    /// facts are read, so one left unsettled is a violation (`Violation::Unsettled`).
    pub open: u64,
    pub closing: u64,
    pub settled: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub requests: Requests,
    /// Keyed by `Call::name()`.
    pub by_call: BTreeMap<String, Requests>,
    /// Failures by cause: `502 provider_failed`, or a bare transport code like `timeout`.
    pub errors: BTreeMap<String, u64>,
    /// Clients that gave up at their deadline: allowed, but worth seeing.
    pub timeouts: u64,
    pub latency: Latency,
    /// Keyed by the fault kind an op's invoke fell under (`none` outside every fault); an op
    /// invoked under two kinds of fault counts for both.
    pub latency_by_fault: BTreeMap<String, Latency>,
    pub recovery: BTreeMap<String, Recovery>,
    /// Completion tokens the clients received, from successes and cut streams alike.
    pub tokens_received: u64,
    /// What the responses said they cost (`charged` of successes and of cut streams).
    pub charged: Amount,
    /// What the gateway billed the customers.
    pub billed: Amount,
    /// What providers redeemed from channels.
    pub redeemed: Amount,
    pub channels: Channels,
    /// Each validator's tip height.
    pub heights: BTreeMap<String, u64>,
    pub samples: u64,
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p`% of the
/// values at or below it. `None` for no values.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    let n = u128::try_from(sorted.len()).ok()?;
    let rank = (u128::from(p.min(100)) * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

fn latency(mut durations: Vec<u64>) -> Latency {
    durations.sort_unstable();
    Latency {
        ops: count(durations.len()),
        p50_ms: percentile(&durations, 50),
        p99_ms: percentile(&durations, 99),
    }
}

fn spread(mut durations: Vec<u64>) -> Spread {
    durations.sort_unstable();
    Spread {
        count: count(durations.len()),
        min_ms: durations.first().copied(),
        median_ms: percentile(&durations, 50),
        max_ms: durations.last().copied(),
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn add(a: Amount, b: Amount) -> Amount {
    Amount(a.0.saturating_add(b.0))
}

/// `502 provider_failed`, or the bare code of a failure with no HTTP status.
fn cause(error: &ClientError) -> String {
    match error.status {
        Some(status) => format!("{status} {}", error.code),
        None => error.code.clone(),
    }
}

/// Adds one operation's ending to a tally.
fn tally(requests: &mut Requests, end: Option<&Body>) {
    requests.invoked += 1;
    match end {
        Some(Body::Ok { .. }) => requests.ok += 1,
        Some(_) => requests.failed += 1,
        None => requests.unanswered += 1,
    }
}

/// Sums up a run. Each operation counts by its first completion, as the checker judges it.
pub fn report(events: &[Event], facts: &Facts) -> Report {
    let (ops, _) = operations(events);
    let windows = fault_windows(events);
    let mut report = Report::default();
    let mut all_ms = Vec::new();
    let mut by_fault_ms: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for operation in ops.values() {
        let end = operation.end();
        let by_call = report
            .by_call
            .entry(operation.call.name().to_string())
            .or_default();
        tally(by_call, end.map(|e| &e.body));
        tally(&mut report.requests, end.map(|e| &e.body));
        let Some(end) = end else {
            continue;
        };
        match &end.body {
            Body::Ok { outcome } => {
                report.tokens_received = report
                    .tokens_received
                    .saturating_add(u64::from(outcome.tokens_received));
                report.charged = add(report.charged, outcome.charged.unwrap_or_default());
                let invoked_ms = operation.invoke.t_ms;
                let took_ms = end.t_ms.saturating_sub(invoked_ms);
                all_ms.push(took_ms);
                let faults: BTreeSet<&str> = windows
                    .iter()
                    .filter(|w| w.contains(invoked_ms))
                    .map(|w| w.fault)
                    .collect();
                if faults.is_empty() {
                    by_fault_ms.entry("none".into()).or_default().push(took_ms);
                }
                for fault in faults {
                    by_fault_ms.entry(fault.into()).or_default().push(took_ms);
                }
            }
            Body::Fail { error, partial } => {
                report.tokens_received = report
                    .tokens_received
                    .saturating_add(u64::from(partial.tokens_received));
                report.charged = add(report.charged, partial.charged.unwrap_or_default());
                *report.errors.entry(cause(error)).or_default() += 1;
                if error.status.is_none() && error.code == "timeout" {
                    report.timeouts += 1;
                }
            }
            _ => {}
        }
    }
    report.latency = latency(all_ms);
    report.latency_by_fault = by_fault_ms
        .into_iter()
        .map(|(fault, durations)| (fault, latency(durations)))
        .collect();

    // Successes in history order, split by what served them, to find the first after a fault.
    let (mut gateway_oks, mut transfer_oks) = (Vec::new(), Vec::new());
    for (index, event) in events.iter().enumerate() {
        let Some(operation) = ops.get(&event.op) else {
            continue;
        };
        if matches!(event.body, Body::Ok { .. }) {
            match operation.call.customer() {
                Some(_) => gateway_oks.push((index, event.t_ms)),
                None => transfer_oks.push((index, event.t_ms)),
            }
        }
    }
    let first_after = |oks: &[(usize, u64)], index: usize, t_ms: u64| {
        let next = oks.partition_point(|(i, _)| *i <= index);
        oks.get(next).map(|(_, ok_ms)| ok_ms.saturating_sub(t_ms))
    };
    let mut recoveries: BTreeMap<&str, (u64, Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for window in &windows {
        let (Some(end_index), Some(end_ms)) = (window.end_index, window.end_ms) else {
            continue;
        };
        let (ends, gateway, transfer) = recoveries.entry(window.fault).or_default();
        *ends += 1;
        gateway.extend(first_after(&gateway_oks, end_index, end_ms));
        transfer.extend(first_after(&transfer_oks, end_index, end_ms));
    }
    report.recovery = recoveries
        .into_iter()
        .map(|(fault, (ends, gateway, transfer))| {
            let recovery = Recovery {
                ends,
                gateway: spread(gateway),
                transfer: spread(transfer),
            };
            (fault.to_string(), recovery)
        })
        .collect();

    report.billed = facts
        .customers
        .iter()
        .fold(Amount::ZERO, |sum, bill| add(sum, bill.spent));
    report.redeemed = facts
        .channels
        .iter()
        .fold(Amount::ZERO, |sum, channel| add(sum, channel.redeemed));
    for channel in &facts.channels {
        match (channel.settled, channel.closing) {
            (true, _) => report.channels.settled += 1,
            (false, true) => report.channels.closing += 1,
            (false, false) => report.channels.open += 1,
        }
    }
    for chain in &facts.validators {
        let tip = chain.blocks.iter().map(|b| b.height).max().unwrap_or(0);
        let height = report.heights.entry(chain.node.clone()).or_default();
        *height = (*height).max(tip);
    }
    report.samples = count(
        events
            .iter()
            .filter(|e| matches!(e.body, Body::Sample { .. }))
            .count(),
    );
    report
}

/// A number, or `-` where there was nothing to measure.
fn or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn spread_cell(spread: &Spread) -> String {
    format!(
        "{}/{}/{} ({})",
        or_dash(spread.min_ms),
        or_dash(spread.median_ms),
        or_dash(spread.max_ms),
        spread.count
    )
}

fn requests_row(f: &mut fmt::Formatter<'_>, name: &str, r: &Requests) -> fmt::Result {
    let Requests {
        invoked,
        ok,
        failed,
        unanswered,
    } = r;
    writeln!(f, "| {name} | {invoked} | {ok} | {failed} | {unanswered} |")
}

fn latency_row(f: &mut fmt::Formatter<'_>, name: &str, l: &Latency) -> fmt::Result {
    let (p50, p99) = (or_dash(l.p50_ms), or_dash(l.p99_ms));
    writeln!(f, "| {name} | {} | {p50} | {p99} |", l.ops)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "### requests\n")?;
        writeln!(f, "| call | invoked | ok | failed | unanswered |")?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        requests_row(f, "all", &self.requests)?;
        for (name, requests) in &self.by_call {
            requests_row(f, name, requests)?;
        }

        writeln!(f, "\n### errors ({} client timeouts)\n", self.timeouts)?;
        writeln!(f, "| cause | count |\n|---|---:|")?;
        for (cause, n) in &self.errors {
            writeln!(f, "| {cause} | {n} |")?;
        }

        writeln!(
            f,
            "\n### latency of successes, ms, by the fault at invoke\n"
        )?;
        writeln!(f, "| window | ops | p50 | p99 |\n|---|---:|---:|---:|")?;
        latency_row(f, "all", &self.latency)?;
        for (fault, latency) in &self.latency_by_fault {
            latency_row(f, fault, latency)?;
        }

        writeln!(
            f,
            "\n### recovery, ms from a fault's end to the next success\n"
        )?;
        writeln!(
            f,
            "| fault | ends | gateway min/median/max (n) | transfer min/median/max (n) |"
        )?;
        writeln!(f, "|---|---:|---:|---:|")?;
        for (fault, r) in &self.recovery {
            let (gateway, transfer) = (spread_cell(&r.gateway), spread_cell(&r.transfer));
            writeln!(f, "| {fault} | {} | {gateway} | {transfer} |", r.ends)?;
        }

        writeln!(f, "\n### money\n")?;
        writeln!(
            f,
            "| tokens received | charged | billed | redeemed |\n|---:|---:|---:|---:|"
        )?;
        writeln!(
            f,
            "| {} | {} | {} | {} |",
            self.tokens_received, self.charged, self.billed, self.redeemed
        )?;
        let Channels {
            open,
            closing,
            settled,
        } = self.channels;
        writeln!(
            f,
            "\nchannels at the end: {open} open, {closing} closing, {settled} settled \
             (the runner settles the gateway's; one left unsettled is a violation)"
        )?;

        writeln!(f, "\n### chain ({} samples)\n", self.samples)?;
        writeln!(f, "| validator | height |\n|---|---:|")?;
        for (node, height) in &self.heights {
            writeln!(f, "| {node} | {height} |")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{BlockFact, ChannelFact, CustomerBill, NodeChain};
    use crate::history::{Call, Outcome, Phase};
    use agora_types::{Hash, PublicKey};

    fn at(t_ms: u64, op: u64, body: Body) -> Event {
        Event {
            t_ms,
            op,
            process: "client-0".into(),
            body,
        }
    }
    fn chat(stream: bool) -> Body {
        let call = Call::Chat {
            customer: "c0".into(),
            stream,
            max_tokens: 16,
        };
        Body::Invoke {
            call,
            timeout_ms: 1_000,
        }
    }
    fn transfer() -> Body {
        let (from, to, node) = ("a".into(), "b".into(), "v1".into());
        let call = Call::Transfer {
            from,
            to,
            amount: Amount(1),
            node,
        };
        Body::Invoke {
            call,
            timeout_ms: 1_000,
        }
    }
    fn ok(tokens_received: u32, charged: u128) -> Body {
        let charged = Some(Amount(charged));
        Body::Ok {
            outcome: Outcome {
                tokens_received,
                charged,
                ..Outcome::default()
            },
        }
    }
    fn fail(status: Option<u16>, code: &str) -> Body {
        let error = ClientError {
            status,
            code: code.into(),
            message: "m".into(),
        };
        Body::Fail {
            error,
            partial: Outcome {
                tokens_received: 2,
                ..Outcome::default()
            },
        }
    }
    fn fault(fault: &str, phase: Phase) -> Body {
        Body::Fault {
            fault: fault.into(),
            target: "v1".into(),
            phase,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values = [15, 20, 35, 40, 50];
        let pct = |p| percentile(&values, p);
        assert_eq!(
            (pct(5), pct(30), pct(40), pct(50), pct(99), pct(100)),
            (Some(15), Some(20), Some(20), Some(35), Some(50), Some(50))
        );
        let one_to_hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&one_to_hundred, 99), Some(99));
        assert_eq!(percentile(&one_to_hundred, 0), Some(1));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn requests_and_errors_are_counted_by_call_and_cause() {
        let events = vec![
            at(0, 1, chat(true)),
            at(5, 1, ok(3, 4)),
            at(0, 2, chat(true)),
            at(5, 2, fail(Some(502), "provider_failed")),
            at(0, 3, chat(false)),
            at(5, 3, fail(None, "timeout")),
            at(0, 4, transfer()),
        ];
        let r = report(&events, &Facts::default());
        let all = Requests {
            invoked: 4,
            ok: 1,
            failed: 2,
            unanswered: 1,
        };
        assert_eq!(r.requests, all);
        let stream = Requests {
            invoked: 2,
            ok: 1,
            failed: 1,
            unanswered: 0,
        };
        assert_eq!(r.by_call.get("chat_stream"), Some(&stream));
        assert_eq!(r.by_call.get("transfer").map(|t| t.unanswered), Some(1));
        let errors: Vec<(&str, u64)> = r.errors.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(errors, vec![("502 provider_failed", 1), ("timeout", 1)]);
        assert_eq!(
            (r.timeouts, r.tokens_received, r.charged),
            (1, 7, Amount(4))
        );
    }

    #[test]
    fn latency_is_grouped_by_the_fault_the_invoke_fell_under() {
        let events = vec![
            at(0, 1, chat(false)),
            at(10, 1, ok(1, 1)),
            at(20, 9, fault("kill", Phase::Start)),
            at(30, 2, chat(false)),
            at(130, 2, ok(1, 1)),
            at(40, 3, chat(false)),
            at(340, 3, ok(1, 1)),
            at(400, 9, fault("kill", Phase::End)),
            at(400, 4, chat(false)),
            at(420, 4, ok(1, 1)),
        ];
        let r = report(&events, &Facts::default());
        let kill = Latency {
            ops: 2,
            p50_ms: Some(100),
            p99_ms: Some(300),
        };
        assert_eq!(r.latency_by_fault.get("kill"), Some(&kill));
        // The invoke at the End's very moment is outside the window (start..end).
        let none = Latency {
            ops: 2,
            p50_ms: Some(10),
            p99_ms: Some(20),
        };
        assert_eq!(r.latency_by_fault.get("none"), Some(&none));
        assert_eq!(
            r.latency,
            Latency {
                ops: 4,
                p50_ms: Some(20),
                p99_ms: Some(300)
            }
        );
    }

    #[test]
    fn recovery_is_timed_from_each_fault_end_to_the_next_success() {
        let events = vec![
            at(0, 1, chat(false)),
            at(0, 2, transfer()),
            at(10, 9, fault("partition", Phase::Start)),
            at(100, 9, fault("partition", Phase::End)),
            at(150, 1, ok(1, 1)),
            at(170, 10, fault("partition", Phase::Start)),
            at(200, 10, fault("partition", Phase::End)),
            at(
                260,
                2,
                Body::Ok {
                    outcome: Outcome::default(),
                },
            ),
            at(300, 11, fault("stall", Phase::Start)),
            at(301, 11, fault("stall", Phase::End)),
        ];
        let r = report(&events, &Facts::default());
        let partition = r.recovery.get("partition").copied().unwrap_or_default();
        assert_eq!(partition.ends, 2);
        // The gateway came back 50 ms after the first end and never after the second.
        assert_eq!(
            partition.gateway,
            Spread {
                count: 1,
                min_ms: Some(50),
                median_ms: Some(50),
                max_ms: Some(50)
            }
        );
        assert_eq!(
            partition.transfer,
            Spread {
                count: 2,
                min_ms: Some(60),
                median_ms: Some(60),
                max_ms: Some(160)
            }
        );
        let stall = r.recovery.get("stall").copied().unwrap_or_default();
        assert_eq!(
            (stall.ends, stall.gateway.count, stall.transfer.count),
            (1, 0, 0)
        );
    }

    #[test]
    fn money_channels_and_chain_come_from_the_facts() {
        let channel = |redeemed, settled, closing| ChannelFact {
            id: Hash([1; 32]),
            payer: PublicKey([1; 32]),
            provider: PublicKey([2; 32]),
            deposit: Amount(100),
            redeemed: Amount(redeemed),
            settled,
            closing,
            redeems: vec![],
        };
        let bill = |spent| CustomerBill {
            name: "c0".into(),
            account: PublicKey([3; 32]),
            spent: Amount(spent),
            credit: Amount(0),
        };
        let block = |height| BlockFact {
            height,
            id: Hash([0; 32]),
            state_root: Hash([0; 32]),
        };
        let facts = Facts {
            validators: vec![
                NodeChain {
                    node: "v1".into(),
                    blocks: (1..=7).map(block).collect(),
                },
                NodeChain {
                    node: "v2".into(),
                    blocks: vec![],
                },
            ],
            customers: vec![bill(5), bill(u128::MAX)],
            channels: vec![
                channel(3, true, true),
                channel(4, false, true),
                channel(5, false, false),
            ],
            ..Facts::default()
        };
        let r = report(&[], &facts);
        assert_eq!((r.billed, r.redeemed), (Amount(u128::MAX), Amount(12)));
        assert_eq!(
            r.channels,
            Channels {
                open: 1,
                closing: 1,
                settled: 1
            }
        );
        let heights: Vec<(&str, u64)> = r.heights.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(heights, vec![("v1", 7), ("v2", 0)]);
    }

    #[test]
    fn the_table_shows_each_call_fault_and_validator() {
        let events = vec![
            at(0, 9, fault("kill", Phase::Start)),
            at(1, 1, chat(true)),
            at(11, 1, ok(3, 4)),
            at(20, 9, fault("kill", Phase::End)),
        ];
        let facts = Facts {
            validators: vec![NodeChain {
                node: "v1".into(),
                blocks: vec![],
            }],
            ..Facts::default()
        };
        let text = report(&events, &facts).to_string();
        assert!(text.contains("| chat_stream | 1 | 1 | 0 | 0 |"), "{text}");
        assert!(text.contains("| kill | 1 | 10 | 10 |"), "{text}");
        assert!(
            text.contains("| kill | 1 | -/-/- (0) | -/-/- (0) |"),
            "{text}"
        );
        assert!(text.contains("| v1 | 0 |"), "{text}");
    }
}
