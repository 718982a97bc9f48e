//! The checker played against liars: each invariant broken on purpose.

use super::*;
use crate::facts::{
    BlockFact, ChannelFact, CustomerBill, NodeChain, PayerBook, ProviderFact, RedeemFact, SlashFact,
};
use crate::history::{ChainSample, Usage};
use agora_types::PublicKey;

fn at(t_ms: u64, op: u64, body: Body) -> Event {
    Event {
        t_ms,
        op,
        process: "client-0".into(),
        body,
    }
}
fn chat(customer: &str, stream: bool) -> Body {
    let call = Call::Chat {
        customer: customer.into(),
        stream,
        max_tokens: 16,
    };
    Body::Invoke {
        call,
        timeout_ms: 1_000,
    }
}
fn ok(tokens_received: u32, charged: Option<u128>) -> Body {
    let outcome = Outcome {
        tokens_received,
        charged: charged.map(Amount),
        ..Outcome::default()
    };
    Body::Ok { outcome }
}
fn fail(status: Option<u16>, code: &str, tokens_received: u32) -> Body {
    let error = ClientError {
        status,
        code: code.into(),
        message: "m".into(),
    };
    let partial = Outcome {
        tokens_received,
        ..Outcome::default()
    };
    Body::Fail { error, partial }
}
fn fault(fault: &str, phase: Phase) -> Body {
    Body::Fault {
        fault: fault.into(),
        target: "v1".into(),
        phase,
    }
}
fn sample(node: &str, height: u64, root: u8, expected: u128, circulating: u128) -> Body {
    let sample = ChainSample {
        height,
        state_root: hash(root),
        expected_total: Amount(expected),
        circulating: Amount(circulating),
    };
    Body::Sample {
        node: node.into(),
        sample,
    }
}
fn hash(byte: u8) -> Hash {
    Hash([byte; 32])
}
fn bill(name: &str, spent: u128) -> CustomerBill {
    let account = PublicKey([7; 32]);
    CustomerBill {
        name: name.into(),
        account,
        spent: Amount(spent),
        credit: Amount(0),
    }
}
fn chain(node: &str, roots: &[u8]) -> NodeChain {
    let blocks = (1..)
        .zip(roots)
        .map(|(height, &root)| BlockFact {
            height,
            id: hash(root + 100),
            state_root: hash(root),
        })
        .collect();
    NodeChain {
        node: node.into(),
        blocks,
    }
}
fn redeem(height: u64, cumulative: u128, voucher: u8) -> RedeemFact {
    let cumulative = Amount(cumulative);
    RedeemFact {
        height,
        tx: hash(height as u8),
        cumulative,
        voucher: hash(voucher),
        applied: true,
    }
}
fn channel(deposit: u128, redeemed: u128, redeems: Vec<RedeemFact>) -> ChannelFact {
    ChannelFact {
        id: hash(1),
        payer: PublicKey([1; 32]),
        provider: PublicKey([2; 32]),
        deposit: Amount(deposit),
        redeemed: Amount(redeemed),
        settled: false,
        closing: false,
        redeems,
    }
}
fn provider(name: &str, byte: u8, honest: bool) -> ProviderFact {
    ProviderFact {
        name: name.into(),
        address: PublicKey([byte; 32]),
        honest,
        stake_before: Amount(100),
        stake_after: Amount(100),
        jailed: false,
    }
}
fn slash(offender: u8) -> SlashFact {
    let offender = PublicKey([offender; 32]);
    SlashFact {
        height: 9,
        tx: hash(9),
        offender,
        evidence: "failed_audit".into(),
    }
}
fn bills(customers: Vec<CustomerBill>) -> Facts {
    Facts {
        customers,
        ..Facts::default()
    }
}

#[test]
fn a_clean_run_has_no_violation() {
    let events = vec![
        at(0, 1, chat("c0", true)),
        at(10, 2, sample("v1", 1, 1, 500, 500)),
        at(11, 3, sample("v2", 1, 1, 500, 500)),
        at(300, 1, ok(4, Some(5))),
        at(400, 4, chat("c0", false)),
        at(500, 4, fail(Some(429), "rate_limited", 0)),
        at(600, 5, chat("c0", false)),
        at(900, 5, fail(None, "timeout", 0)),
    ];
    let mut cheater = provider("p1", 4, false);
    cheater.jailed = true;
    let facts = Facts {
        validators: vec![chain("v1", &[1, 2, 3]), chain("v2", &[1, 2])],
        customers: vec![bill("c0", 5)],
        channels: vec![ChannelFact {
            settled: true,
            ..channel(100, 30, vec![redeem(2, 10, 1), redeem(3, 30, 2)])
        }],
        providers: vec![provider("p0", 3, true), cheater, provider("p2", 5, false)],
        slashes: vec![slash(5)],
        payer_book: Some(book(1_000, 2, 100, 968)),
    };
    assert_eq!(check(&events, &facts), vec![]);
}

#[test]
fn a_bill_above_the_responses_is_overcharged_and_below_undercharged() {
    let events = vec![
        at(0, 1, chat("c0", false)),
        at(5, 1, ok(3, Some(5))),
        at(6, 2, chat("c1", false)),
        at(9, 2, ok(3, Some(8))),
    ];
    let found = check(&events, &bills(vec![bill("c0", 6), bill("c1", 7)]));
    assert_eq!(found.len(), 2);
    assert!(
        matches!(&found[0], Violation::Overcharged { customer, billed: Amount(6),
        sum_of_responses: Amount(5), ops, .. } if customer == "c0" && ops == &[1])
    );
    assert!(matches!(&found[1], Violation::Undercharged { customer, .. } if customer == "c1"));
    assert_eq!(found[0].ops(), vec![1]);
}

#[test]
fn a_cut_stream_may_cost_at_most_the_per_request_limit_unseen() {
    let events = vec![
        at(0, 1, chat("c0", true)),
        at(5, 1, ok(3, Some(5))),
        at(6, 2, chat("c0", true)),
        at(9, 2, fail(None, "stream_cut", 2)),
    ];
    let limits = Limits {
        max_charge_per_request: Amount(10),
        ..Limits::default()
    };
    assert_eq!(
        check_with(&events, &bills(vec![bill("c0", 15)]), &limits),
        vec![]
    );
    let over = check_with(&events, &bills(vec![bill("c0", 16)]), &limits);
    assert!(matches!(
        &over[..],
        [Violation::Overcharged {
            unseen_allowance: Amount(10),
            ..
        }]
    ));
    // Without a limit an unseen charge is not allowed at all.
    assert!(matches!(
        &check(&events, &bills(vec![bill("c0", 6)]))[..],
        [Violation::Overcharged { .. }]
    ));
    assert!(matches!(
        &check_with(&events, &bills(vec![bill("c0", 4)]), &limits)[..],
        [Violation::Undercharged { .. }]
    ));
}

#[test]
fn requests_must_end_once_and_in_time() {
    let events = vec![
        at(0, 1, chat("c0", false)),
        at(0, 2, chat("c0", false)),
        at(3_000, 2, ok(1, None)),
        at(0, 3, chat("c0", false)),
        at(3_001, 3, ok(1, None)),
        at(5, 4, chat("c0", false)),
        at(6, 4, ok(1, None)),
        at(7, 4, ok(1, None)),
        at(8, 5, ok(1, None)),
    ];
    let found = check(&events, &Facts::default());
    let expected = vec![
        Violation::EndWithoutInvoke { op: 5 },
        Violation::Unanswered { op: 1 },
        Violation::Hung {
            op: 3,
            took_ms: 3_001,
            timeout_ms: 1_000,
        },
        Violation::AnsweredTwice { op: 4, ends: 2 },
    ];
    assert_eq!(found, expected);
    assert_eq!(found[1].to_string(), "op 1 was invoked and never ended");
}

#[test]
fn an_error_must_say_what_went_wrong() {
    let events = vec![
        at(0, 1, chat("c0", false)),
        at(1, 1, fail(None, "weird", 0)),
        at(0, 2, chat("c0", false)),
        at(1, 2, fail(Some(500), "", 0)),
        at(0, 3, chat("c0", false)),
        at(1, 3, fail(None, "ledger_insufficient_funds", 0)),
        at(0, 4, chat("c0", false)),
        at(1, 4, fail(None, "ledger_", 0)),
    ];
    let found = check(&events, &Facts::default());
    let ops: Vec<u64> = found.iter().flat_map(Violation::ops).collect();
    assert_eq!(ops, vec![1, 2, 4]);
    assert!(
        found
            .iter()
            .all(|v| matches!(v, Violation::UnclearError { .. }))
    );
    assert!(found[0].to_string().contains("\"weird\""));
}

#[test]
fn stream_usage_must_cover_received_tokens_and_stay_under_max_tokens() {
    let with_usage = |tokens_received, completion_tokens| Body::Ok {
        outcome: Outcome {
            tokens_received,
            usage: Some(Usage {
                prompt_tokens: 1,
                completion_tokens,
            }),
            ..Outcome::default()
        },
    };
    let events = vec![
        at(0, 1, chat("c0", true)),
        at(1, 1, with_usage(5, 4)),
        at(0, 2, chat("c0", true)),
        at(1, 2, with_usage(5, 17)),
        at(0, 3, chat("c0", false)),
        at(1, 3, with_usage(4, 4)),
    ];
    let found = check(&events, &Facts::default());
    let expected = vec![
        Violation::UsageBelowReceived {
            op: 1,
            completion_tokens: 4,
            tokens_received: 5,
        },
        Violation::UsageOverMax {
            op: 2,
            completion_tokens: 17,
            max_tokens: 16,
        },
    ];
    assert_eq!(found, expected);
}

#[test]
fn validators_that_fork_at_height_3_are_reported_once_at_3() {
    let facts = Facts {
        validators: vec![
            chain("v1", &[1, 2, 3, 4]),
            chain("v2", &[1, 2, 3, 4]),
            chain("v3", &[1, 2, 9, 9]),
        ],
        ..Facts::default()
    };
    let found = check(&[], &facts);
    // Each validator is compared with the first one holding the height: v2 agrees with v1,
    // and the later heights of the fork are not reported again.
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        matches!(&found[0], Violation::BlocksDisagree { height: 3, a, b, .. }
        if a == "v1" && b == "v3")
    );
    assert!(
        found[0]
            .to_string()
            .starts_with("validators v1 and v3 finalized different")
    );
    assert_eq!(found[0].ops(), Vec::<u64>::new());
}

#[test]
fn a_chain_must_run_from_height_1_without_gaps() {
    let mut gapped = chain("v1", &[1, 2, 3, 4]);
    gapped.blocks.remove(2);
    let facts = Facts {
        validators: vec![gapped, chain("v2", &[1, 2])],
        ..Facts::default()
    };
    let gap = Violation::ChainGap {
        node: "v1".into(),
        expected_height: 3,
        found_height: 4,
    };
    assert_eq!(check(&[], &facts), vec![gap]);
}

#[test]
fn samples_must_conserve_supply_and_agree_on_roots() {
    let events = vec![
        at(0, 1, sample("v1", 5, 1, 1_000, 1_000)),
        at(1, 2, sample("v2", 5, 2, 1_000, 999)),
        at(2, 3, sample("v2", 6, 3, 1_000, 999)),
        at(3, 4, sample("v2", 7, 3, 1_000, 998)),
        at(4, 5, sample("v1", 7, 3, 1_000, 1_000)),
    ];
    let found = check(&events, &Facts::default());
    let broken = |op, height, circulating| Violation::SupplyBroken {
        op,
        node: "v2".into(),
        height,
        expected: Amount(1_000),
        circulating: Amount(circulating),
    };
    // The unchanged gap at op 3 is not reported again.
    assert_eq!(found[..2], [broken(2, 5, 999), broken(4, 7, 998)]);
    assert!(matches!(
        &found[2..],
        [Violation::SampleRootsDisagree {
            height: 5,
            a_op: 1,
            b_op: 2,
            ..
        }]
    ));
}

#[test]
fn vouchers_must_be_redeemed_once_in_increasing_order_within_the_deposit() {
    let twice = channel(100, 40, vec![redeem(2, 20, 1), redeem(3, 40, 1)]);
    let mut decreasing = channel(100, 30, vec![redeem(2, 50, 1), redeem(3, 30, 2)]);
    decreasing.id = hash(2);
    let mut mismatch = channel(10, 40, vec![redeem(2, 20, 1)]);
    mismatch.redeems.push(RedeemFact {
        applied: false,
        ..redeem(3, 40, 2)
    });
    mismatch.id = hash(3);
    let facts = Facts {
        channels: vec![twice, decreasing, mismatch],
        ..Facts::default()
    };
    let expected = vec![
        Violation::RedeemedTwice {
            channel: hash(1),
            voucher: hash(1),
            first_height: 2,
            second_height: 3,
        },
        Violation::RedeemNotIncreasing {
            channel: hash(2),
            height: 3,
            previous: Amount(50),
            cumulative: Amount(30),
        },
        Violation::RedeemedMismatch {
            channel: hash(3),
            last_cumulative: Amount(20),
            redeemed: Amount(40),
        },
        Violation::OverDeposit {
            channel: hash(3),
            redeemed: Amount(40),
            deposit: Amount(10),
        },
    ];
    assert_eq!(check(&[], &facts), expected);
}

fn book(transfers_in: u128, fees: u128, deposits: u128, actual: u128) -> PayerBook {
    PayerBook {
        payer: PublicKey([1; 32]),
        transfers_in: Amount(transfers_in),
        transfers_out: Amount(0),
        fees: Amount(fees),
        deposits: Amount(deposits),
        actual: Amount(actual),
        unmodelled: vec![],
    }
}

/// The payer got 1,000, paid 4 in fees and put 150 into two channels of 100 and 50, of which
/// providers redeemed 30 and 50: settled, they give back 70, so it holds 916.
fn settled(actual: u128, second_settled: bool) -> Facts {
    let mut a = channel(100, 30, vec![redeem(2, 30, 1)]);
    a.settled = true;
    let mut b = channel(50, 50, vec![redeem(3, 50, 2)]);
    b.id = hash(2);
    b.settled = second_settled;
    // Someone else's channel is not the payer's business.
    let mut other = channel(10, 0, vec![]);
    other.id = hash(3);
    other.payer = PublicKey([9; 32]);
    Facts {
        channels: vec![a, b, other],
        payer_book: Some(book(1_000, 4, 150, actual)),
        ..Facts::default()
    }
}

#[test]
fn every_deposit_comes_back_as_redeems_plus_refund() {
    assert_eq!(check(&[], &settled(916, true)), vec![]);
    // A refund short by one base unit.
    assert_eq!(
        check(&[], &settled(915, true)),
        vec![Violation::RefundMismatch {
            expected: Amount(916),
            got: Amount(915),
        }]
    );
    // More than the deposits left: money from nowhere.
    assert_eq!(
        check(&[], &settled(921, true)),
        vec![Violation::RefundMismatch {
            expected: Amount(916),
            got: Amount(921),
        }]
    );
    // A channel left open.
    assert_eq!(
        check(&[], &settled(916, false)),
        vec![Violation::Unsettled { channel: hash(2) }]
    );
    // A transaction the book cannot follow voids the comparison, loudly.
    let mut facts = settled(0, true);
    if let Some(b) = facts.payer_book.as_mut() {
        b.unmodelled.push("bond at 7".into());
    }
    assert_eq!(
        check(&[], &facts),
        vec![Violation::Unmodelled {
            txs: "bond at 7".into()
        }]
    );
}

#[test]
fn honest_providers_keep_their_stake_and_cheaters_lose_it() {
    let mut shrunk = provider("p1", 4, true);
    shrunk.stake_after = Amount(90);
    let facts = Facts {
        providers: vec![provider("p0", 3, true), shrunk, provider("p2", 5, false)],
        slashes: vec![slash(3)],
        ..Facts::default()
    };
    let found = check(&[], &facts);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        matches!(&found[0], Violation::HonestSlashed { provider, why, .. }
        if provider == "p0" && why == "slashed for failed_audit")
    );
    assert!(
        matches!(&found[1], Violation::HonestSlashed { provider, why, .. }
        if provider == "p1" && why.contains("stake fell"))
    );
    assert!(matches!(&found[2], Violation::CheaterNotSlashed { provider, .. } if provider == "p2"));
}

#[test]
fn a_failing_slice_keeps_the_ops_and_only_overlapping_faults() {
    let events = vec![
        at(0, 10, fault("kill", Phase::Start)),
        at(50, 10, fault("kill", Phase::End)),
        at(100, 11, fault("partition", Phase::Start)),
        at(120, 1, chat("c0", false)),
        at(130, 2, chat("c0", false)),
        at(150, 11, fault("partition", Phase::End)),
        at(200, 1, fail(None, "weird", 0)),
        at(210, 2, ok(1, None)),
        at(300, 12, fault("stall", Phase::Start)),
    ];
    let found = check(&events, &Facts::default());
    let slice = failing_slice(&events, &found[0]);
    let kept: Vec<(u64, u64)> = slice.iter().map(|e| (e.t_ms, e.op)).collect();
    assert_eq!(kept, vec![(100, 11), (120, 1), (150, 11), (200, 1)]);
    // An op that never ends spans to the end of the history, reaching the open stall.
    let unanswered: Vec<Event> = events.iter().filter(|e| e.t_ms != 200).cloned().collect();
    let slice = failing_slice(&unanswered, &Violation::Unanswered { op: 1 });
    let kept: Vec<u64> = slice.iter().map(|e| e.t_ms).collect();
    assert_eq!(kept, vec![100, 120, 150, 300]);
}

#[test]
fn a_failing_slice_of_a_fork_is_placed_by_the_samples_at_its_height() {
    let events = vec![
        at(0, 10, fault("kill", Phase::Start)),
        at(50, 10, fault("kill", Phase::End)),
        at(90, 11, fault("partition", Phase::Start)),
        at(100, 1, sample("v1", 3, 1, 5, 5)),
        at(120, 12, fault("stall", Phase::Start)),
        at(150, 2, sample("v1", 4, 1, 5, 5)),
    ];
    let fork_at = |height| Violation::BlocksDisagree {
        height,
        a: "v1".into(),
        b: "v2".into(),
        a_id: hash(1),
        b_id: hash(2),
        a_root: hash(1),
        b_root: hash(2),
    };
    let times = |slice: Vec<Event>| slice.iter().map(|e| e.t_ms).collect::<Vec<_>>();
    assert_eq!(times(failing_slice(&events, &fork_at(3))), vec![90, 100]);
    // No sample at height 9 places it in time, so every fault is kept.
    let everything = vec![0, 50, 90, 120];
    assert_eq!(times(failing_slice(&events, &fork_at(9))), everything);
}

#[test]
fn hostile_numbers_do_not_panic() {
    let events = vec![
        at(
            u64::MAX,
            1,
            Body::Invoke {
                call: Call::Embedding {
                    customer: "c0".into(),
                    inputs: 1,
                },
                timeout_ms: u64::MAX,
            },
        ),
        at(0, 1, ok(u32::MAX, Some(u128::MAX))),
        at(0, 2, chat("c0", false)),
        at(u64::MAX, 2, ok(1, Some(u128::MAX))),
    ];
    let limits = Limits {
        max_charge_per_request: Amount(u128::MAX),
        grace_ms: 0,
    };
    let found = check_with(&events, &bills(vec![bill("c0", u128::MAX)]), &limits);
    assert!(
        found
            .iter()
            .any(|v| matches!(v, Violation::Hung { op: 2, .. }))
    );
    assert!(
        !found
            .iter()
            .any(|v| matches!(v, Violation::Overcharged { .. }))
    );
}
