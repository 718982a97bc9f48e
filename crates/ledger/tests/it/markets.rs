//! Markets, weights and emission on the ledger. The `a_*` tests each play a liar (a copier, a
//! stranger, a provider in the wrong market, a validator revealing early or revealing other
//! weights) against one rule and check it is refused with its own error; the others follow an
//! epoch to the base unit: the schedule minted exactly, every account's line, supply
//! conserved, and the epoch recomputed from the blocks alone.

use agora_ledger::emission::pay_market;
use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::incentives::epoch_view;
use agora_ledger::yuma::run_epoch;
use agora_ledger::{Built, Event, Params, State};
use agora_testkit::{Chain, TEST_CHAIN, TxFactory, provider_info, test_genesis};
use agora_types::{
    Amount, Hash, MarketSpec, ModelRegistration, Outcome, ProviderWeight, SecretKey, TxBody,
    Voucher, WeightsReveal, market_id, weights_commitment,
};

const FEE: u128 = 1_000;
const MODEL: Hash = Hash([7; 32]);
const OTHER_MODEL: Hash = Hash([8; 32]);
const EPOCH: u64 = 10;
const REWARD: u128 = 1_000_003; // odd, so splits leave remainders to place
const NAME: &str = "chat/test";

fn key(name: &str) -> SecretKey {
    SecretKey::from_test_seed(&format!("markets-{name}"))
}

fn outcome(b: &Built, i: usize) -> String {
    match &b.applied.receipts[i].outcome {
        Outcome::Failed { message, .. } => message.clone(),
        Outcome::Success => "success".into(),
    }
}

fn params() -> Params {
    let mut p = Params::default();
    p.incentives.epoch_blocks = EPOCH;
    p.incentives.schedule.initial_block_reward = REWARD;
    p.incentives.schedule.halving_interval_blocks = 1_000;
    p.incentives.market_deposit = Amount::from_agr(100);
    p.incentives.max_members = 3;
    p.incentives.immunity_blocks = 15;
    p
}

struct World {
    chain: Chain,
    f: TxFactory,
    owner: SecretKey,
    payer: SecretKey,
    /// p0..p2 serve MODEL, p3 serves MODEL too (to test a full market), p4 serves only OTHER_MODEL.
    providers: Vec<SecretKey>,
    /// Three validators with stakes 10k, 20k, 30k AGR (plus the testkit's validator-0, 10k,
    /// which never sets weights).
    validators: Vec<SecretKey>,
    stranger: SecretKey,
    channel: Hash,
    cumulative: u128,
}

impl World {
    /// Models registered, five providers registered, the market created and p0..p2 joined, a
    /// channel from the payer to p0; the chain stands in epoch 0 at height 4.
    fn new() -> World {
        let owner = key("owner");
        let payer = key("payer");
        let stranger = key("stranger");
        let providers: Vec<SecretKey> = (0..5).map(|i| key(&format!("provider-{i}"))).collect();
        let validators: Vec<SecretKey> = (0..3).map(|i| key(&format!("validator-{i}"))).collect();
        let mut keys = vec![owner.clone(), payer.clone(), stranger.clone()];
        keys.extend(providers.iter().cloned());
        let mut genesis = test_genesis(&keys, Amount::from_agr(1_000), params());
        for (i, v) in validators.iter().enumerate() {
            genesis.accounts.push(GenesisAccount {
                address: v.public(),
                balance: Amount::from_agr(10),
            });
            genesis.validators.push(GenesisValidator {
                address: v.public(),
                stake: Amount::from_agr(10_000 * (i as u64 + 1)),
            });
        }
        let mut chain = Chain::new(&genesis);
        let mut f = TxFactory::new(TEST_CHAIN, Amount(FEE));
        let min = chain.state.params().min_provider_stake;
        let model = |sha256, name: &str| {
            TxBody::RegisterModel(ModelRegistration {
                sha256,
                name: name.into(),
                family: "llama".into(),
                kind: agora_types::ModelKind::Chat,
                license: "apache-2.0".into(),
                royalty_bps: 0,
            })
        };
        let mut txs = vec![
            f.sign(&owner, model(MODEL, "m")),
            f.sign(&owner, model(OTHER_MODEL, "o")),
        ];
        for p in &providers {
            txs.push(f.sign(
                p,
                TxBody::Bond {
                    target: p.public(),
                    amount: min,
                },
            ));
        }
        let b = chain.produce(txs);
        assert!((0..7).all(|i| outcome(&b, i) == "success"));
        let txs = providers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                f.sign(
                    p,
                    TxBody::RegisterProvider(provider_info(if i == 4 {
                        OTHER_MODEL
                    } else {
                        MODEL
                    })),
                )
            })
            .collect();
        let b = chain.produce(txs);
        assert!((0..5).all(|i| outcome(&b, i) == "success"));
        let nonce = f.next_nonce(&payer.public());
        let b = chain.produce(vec![
            f.sign(
                &owner,
                TxBody::CreateMarket(MarketSpec {
                    name: NAME.into(),
                    models: vec![MODEL],
                }),
            ),
            f.sign(
                &payer,
                TxBody::OpenChannel {
                    provider: providers[0].public(),
                    deposit: Amount(1_000_000_000),
                    expiry_height: 1_000_000,
                },
            ),
        ]);
        assert!(
            (0..2).all(|i| outcome(&b, i) == "success"),
            "{}",
            outcome(&b, 0)
        );
        let market = market_id(NAME);
        let b = chain.produce(
            (0..3)
                .map(|i| f.sign(&providers[i], TxBody::JoinMarket { market }))
                .collect(),
        );
        assert!((0..3).all(|i| outcome(&b, i) == "success"));
        let channel =
            agora_ledger::channels::channel_id(&payer.public(), &providers[0].public(), nonce);
        World {
            chain,
            f,
            owner,
            payer,
            providers,
            validators,
            stranger,
            channel,
            cumulative: 0,
        }
    }

    fn market(&self) -> Hash {
        market_id(NAME)
    }

    fn height(&self) -> u64 {
        self.chain.state.height()
    }

    fn one(&mut self, who: &SecretKey, body: TxBody) -> (Built, String) {
        let tx = self.f.sign(who, body);
        let b = self.chain.produce(vec![tx]);
        let o = outcome(&b, 0);
        (b, o)
    }

    /// Empty blocks until the chain's height is `height`.
    fn until(&mut self, height: u64) -> Vec<Built> {
        let mut out = Vec::new();
        while self.height() < height {
            out.push(self.chain.produce(vec![]));
        }
        out
    }

    fn reveal(&self, weights: &[(usize, u16)], salt: u8) -> WeightsReveal {
        WeightsReveal {
            market: self.market(),
            weights: weights
                .iter()
                .map(|(p, w)| ProviderWeight {
                    provider: self.providers[*p].public(),
                    weight: *w,
                })
                .collect(),
            salt: Hash([salt; 32]),
        }
    }

    /// Every validator commits `weights` in this epoch.
    fn commit_all(&mut self, weights: &[(usize, u16)]) {
        let market = self.market();
        let txs = self
            .validators
            .clone()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let commitment = weights_commitment(&v.public(), &self.reveal(weights, i as u8));
                self.f.sign(v, TxBody::CommitWeights { market, commitment })
            })
            .collect();
        let b = self.chain.produce(txs);
        assert!(
            (0..3).all(|i| outcome(&b, i) == "success"),
            "{}",
            outcome(&b, 0)
        );
    }

    fn reveal_all(&mut self, weights: &[(usize, u16)]) {
        let txs = self
            .validators
            .clone()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                self.f
                    .sign(v, TxBody::RevealWeights(self.reveal(weights, i as u8)))
            })
            .collect();
        let b = self.chain.produce(txs);
        assert!(
            (0..3).all(|i| outcome(&b, i) == "success"),
            "{}",
            outcome(&b, 0)
        );
    }

    /// The payer pays p0 `amount` more on MODEL.
    fn redeem(&mut self, amount: u128) -> Built {
        self.cumulative += amount;
        let v = Voucher {
            chain_id: TEST_CHAIN.into(),
            channel: self.channel,
            cumulative: Amount(self.cumulative),
            per_model: vec![(MODEL, Amount(self.cumulative))],
        }
        .sign(&self.payer);
        let p0 = self.providers[0].clone();
        let (b, o) = self.one(&p0, TxBody::RedeemVoucher(v));
        assert_eq!(o, "success");
        b
    }
}

fn supply_conserved(state: &State) {
    assert_eq!(
        state.circulating_total(),
        state.supply().expected_total(),
        "supply"
    );
}

fn emission_lines(b: &Built) -> Vec<(agora_types::Address, String, u128)> {
    b.applied
        .events
        .iter()
        .filter_map(|e| match e {
            Event::EmissionPaid {
                account,
                role,
                amount,
                ..
            } => Some((*account, role.clone(), amount.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_epoch_mints_the_schedule_exactly_and_pays_by_yuma() {
    let mut w = World::new();
    w.commit_all(&[(0, 3), (1, 1)]);
    w.until(EPOCH);
    w.reveal_all(&[(0, 3), (1, 1)]);
    w.redeem(5_000_000);
    w.until(2 * EPOCH - 2);
    let before = w.chain.state.clone();
    let locked_before: Vec<u128> = w
        .providers
        .iter()
        .map(|p| before.locked_total(&p.public()).0)
        .collect();
    let b = w.chain.produce(vec![]); // height 19: the last block of epoch 1
    assert_eq!(b.block.header.height, 2 * EPOCH - 1);
    let emission = before
        .params()
        .incentives
        .schedule
        .emission_between(EPOCH, 2 * EPOCH - 1);
    assert_eq!(emission, 10 * REWARD);
    let lines = emission_lines(&b);
    let paid: u128 = lines.iter().map(|(_, _, a)| a).sum();
    assert_eq!(
        paid, emission,
        "every base unit of the epoch's emission is paid"
    );
    assert_eq!(
        w.chain.state.supply().minted.0 - before.supply().minted.0,
        emission
    );
    supply_conserved(&w.chain.state);
    // 18% to the owner, 41% to providers by incentive (3:1, p2 weighted by no one), 41% to
    // validators by dividends.
    let owner: u128 = lines.iter().filter(|l| l.1 == "owner").map(|l| l.2).sum();
    assert_eq!(owner, emission * 1_800 / 10_000);
    let p: Vec<u128> = (0..3)
        .map(|i| w.chain.state.locked_total(&w.providers[i].public()).0 - locked_before[i])
        .collect();
    assert_eq!(p[2], 0);
    let providers_total: u128 = p.iter().sum();
    assert!(p[0].abs_diff(3 * p[1]) <= 4, "3:1 split, got {p:?}");
    assert!(providers_total.abs_diff(emission * 4_100 / 10_000) <= 1);
    // Dividends follow stake among the validators that bonded (10k : 20k : 30k); the testkit's
    // validator-0 set no weights, has no bonds and earns nothing.
    let v: Vec<u128> = w
        .validators
        .iter()
        .map(|k| {
            lines
                .iter()
                .filter(|l| l.0 == k.public() && l.1 == "validator")
                .map(|l| l.2)
                .sum()
        })
        .collect();
    assert!(
        v[1].abs_diff(2 * v[0]) <= 3 && v[2].abs_diff(3 * v[0]) <= 3,
        "{v:?}"
    );
    let silent = SecretKey::from_test_seed("validator-0").public();
    assert!(!lines.iter().any(|l| l.0 == silent));
    // The epoch's report says the same, line by line, and why a line is 0.
    let report = b
        .applied
        .epochs
        .iter()
        .find(|r| r.market == w.market())
        .expect("a report");
    assert_eq!(report.epoch, 1);
    assert_eq!(report.emission.0, emission);
    for (i, line) in report.providers.iter().enumerate() {
        assert_eq!(line.provider, w.providers[i].public());
        assert_eq!(line.paid.0, p[i]);
    }
    assert_eq!(
        report.providers[2].reason.as_deref(),
        Some("no active validator with a permit weighted it")
    );
    assert!(report.providers[0].reason.is_none() && report.providers[0].incentive_ppm > 700_000);
    let silent_line = report
        .validators
        .iter()
        .find(|l| l.validator == silent)
        .expect("validator-0 has a line");
    assert_eq!(silent_line.paid, Amount::ZERO);
    assert!(
        silent_line
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("no bonds")),
        "{silent_line:?}"
    );
    let v0 = report
        .validators
        .iter()
        .find(|l| l.validator == w.validators[0].public())
        .expect("line");
    assert_eq!(v0.paid.0, v[0]);
    assert_eq!(
        v0.weights.len(),
        2,
        "its two weights, with what clipping left and its bonds"
    );
    assert!(
        v0.weights
            .iter()
            .all(|wl| wl.clipped_ppm == wl.weight_ppm && wl.bond_ppm > 0)
    );
    let json = serde_json::to_string(report).expect("json");
    let back: agora_ledger::incentives::EpochReport =
        serde_json::from_str(&json).expect("parses back");
    assert_eq!(&back, report);
    // Usage starts again, the market remembers its epoch.
    let m = w.chain.state.market(&w.market()).expect("market");
    assert_eq!(m.usage, Amount::ZERO);
    assert_eq!(
        m.epochs_run, 2,
        "the market's first epoch ended at height 9"
    );
    assert!(m.members[0].incentive_ppm > 700_000);
}

#[test]
fn an_epoch_recomputed_from_the_blocks_gives_the_ledgers_figures() {
    let mut w = World::new();
    w.commit_all(&[(0, 5), (1, 2), (2, 1)]);
    w.until(EPOCH);
    w.reveal_all(&[(0, 5), (1, 2), (2, 1)]);
    w.redeem(7_000_000);
    w.until(2 * EPOCH - 2);
    // Anyone holding the state after block 18 (replayed from the blocks) recomputes block 19's
    // epoch with the public functions the ledger uses.
    let state = w.chain.state.clone();
    let view = epoch_view(&state, &w.market(), 2 * EPOCH - 1).expect("market");
    let out = run_epoch(&state.params().incentives.yuma, &view.input).expect("valid");
    let emission = state
        .params()
        .incentives
        .schedule
        .emission_between(EPOCH, 2 * EPOCH - 1);
    let payout = pay_market(
        emission,
        &state.params().incentives.split,
        &out.incentive,
        &out.dividends,
        &out.active_stake,
    );
    let b = w.chain.produce(vec![]);
    let lines = emission_lines(&b);
    for (p, amount) in view.providers.iter().zip(&payout.providers) {
        let got: u128 = lines
            .iter()
            .filter(|l| l.0 == *p && l.1 == "provider")
            .map(|l| l.2)
            .sum();
        assert_eq!(got, *amount);
    }
    for (v, amount) in view.validators.iter().zip(&payout.validators) {
        let got: u128 = lines
            .iter()
            .filter(|l| l.0 == *v && l.1 == "validator")
            .map(|l| l.2)
            .sum();
        assert_eq!(got, *amount);
    }
}

#[test]
fn an_epoch_without_paid_work_mints_nothing_and_says_why() {
    let mut w = World::new();
    w.commit_all(&[(0, 1)]);
    w.until(EPOCH);
    w.reveal_all(&[(0, 1)]);
    let minted = w.chain.state.supply().minted;
    let blocks = w.until(2 * EPOCH - 1);
    let last = blocks.last().expect("blocks");
    assert!(last.applied.events.iter().any(|e| matches!(e, Event::EmissionNotMinted { reason, .. } if reason.contains("no market served paid work"))));
    assert_eq!(w.chain.state.supply().minted, minted);
    supply_conserved(&w.chain.state);
}

#[test]
fn a_copier_cannot_reveal_before_the_next_epoch_nor_reuse_another_validators_commitment() {
    let mut w = World::new();
    let market = w.market();
    let honest = w.validators[0].clone();
    let copier = w.validators[1].clone();
    let weights = w.reveal(&[(0, 9), (1, 1)], 1);
    let commitment = weights_commitment(&honest.public(), &weights);
    let (_, o) = w.one(&honest, TxBody::CommitWeights { market, commitment });
    assert_eq!(o, "success");
    // Revealing in the same epoch: refused (weights stay hidden until the next one).
    let (_, o) = w.one(&honest, TxBody::RevealWeights(weights.clone()));
    assert!(o.contains("can be revealed from height 10"), "{o}");
    // The copier commits the honest validator's commitment as its own, then reveals the
    // honest weights once they are public: the commitment binds the committer.
    let (_, o) = w.one(&copier, TxBody::CommitWeights { market, commitment });
    assert_eq!(o, "success");
    w.until(EPOCH);
    let (_, o) = w.one(&honest, TxBody::RevealWeights(weights.clone()));
    assert_eq!(o, "success");
    let (_, o) = w.one(&copier, TxBody::RevealWeights(weights.clone()));
    assert!(o.contains("do not match the commitment"), "{o}");
    // A validator that never committed cannot reveal at all.
    let third = w.validators[2].clone();
    let (_, o) = w.one(&third, TxBody::RevealWeights(weights));
    assert!(o.contains("no weights committed"), "{o}");
}

#[test]
fn a_reveal_with_other_weights_or_after_the_window_is_refused() {
    let mut w = World::new();
    let market = w.market();
    let v = w.validators[0].clone();
    let committed = w.reveal(&[(0, 9)], 1);
    let commitment = weights_commitment(&v.public(), &committed);
    w.one(&v, TxBody::CommitWeights { market, commitment });
    w.until(EPOCH);
    let mut changed = committed.clone();
    changed.weights[0].weight = 10;
    let (_, o) = w.one(&v, TxBody::RevealWeights(changed));
    assert!(o.contains("do not match"), "{o}");
    // The window is the commit's epoch plus two: epochs 1 and 2 (heights 10..=29).
    w.until(3 * EPOCH);
    let (_, o) = w.one(&v, TxBody::RevealWeights(committed));
    assert!(o.contains("reveal window closed at height 29"), "{o}");
}

#[test]
fn a_stranger_cannot_commit_weights_nor_join_and_weights_name_only_members() {
    let mut w = World::new();
    let market = w.market();
    let stranger = w.stranger.clone();
    let (_, o) = w.one(
        &stranger,
        TxBody::CommitWeights {
            market,
            commitment: Hash([1; 32]),
        },
    );
    assert!(o.contains("not a registered validator"), "{o}");
    let (_, o) = w.one(&stranger, TxBody::JoinMarket { market });
    assert!(o.contains("not a registered provider"), "{o}");
    // p4 serves only another model.
    let p4 = w.providers[4].clone();
    let (_, o) = w.one(&p4, TxBody::JoinMarket { market });
    assert!(o.contains("serves none of the market's models"), "{o}");
    // p3 is registered but not a member: a reveal naming it is refused.
    let v = w.validators[0].clone();
    let reveal = w.reveal(&[(0, 1), (3, 1)], 4);
    let commitment = weights_commitment(&v.public(), &reveal);
    w.one(&v, TxBody::CommitWeights { market, commitment });
    w.until(EPOCH);
    let (_, o) = w.one(&v, TxBody::RevealWeights(reveal));
    assert!(o.contains("is not a member"), "{o}");
    // Duplicates and all-zero weights are refused too.
    for bad in [w.reveal(&[(0, 1), (0, 2)], 5), w.reveal(&[(0, 0)], 6)] {
        let commitment = weights_commitment(&v.public(), &bad);
        w.one(&v, TxBody::CommitWeights { market, commitment });
        w.until((w.height() / EPOCH + 1) * EPOCH);
        let (_, o) = w.one(&v, TxBody::RevealWeights(bad));
        assert!(o.contains("distinct members"), "{o}");
    }
}

#[test]
fn a_market_refuses_taken_unknown_or_duplicate_models_and_names() {
    let mut w = World::new();
    let owner = w.owner.clone();
    let spec = |name: &str, models: Vec<Hash>| {
        TxBody::CreateMarket(MarketSpec {
            name: name.into(),
            models,
        })
    };
    let (_, o) = w.one(&owner, spec("chat/other", vec![MODEL]));
    assert!(o.contains("already belongs to market"), "{o}");
    let (_, o) = w.one(&owner, spec("chat/other", vec![Hash([9; 32])]));
    assert!(o.contains("is not registered"), "{o}");
    let (_, o) = w.one(&owner, spec("chat/other", vec![OTHER_MODEL, OTHER_MODEL]));
    assert!(o.contains("distinct registered models"), "{o}");
    let (_, o) = w.one(&owner, spec(NAME, vec![OTHER_MODEL]));
    assert!(o.contains("name exists"), "{o}");
    let (_, o) = w.one(&owner, spec("Chat Other", vec![OTHER_MODEL]));
    assert!(o.contains("market name must be"), "{o}");
    let balance = w.chain.state.balance(&owner.public());
    let (_, o) = w.one(&owner, spec("chat/other", vec![OTHER_MODEL]));
    assert_eq!(o, "success");
    assert_eq!(
        balance.0 - w.chain.state.balance(&owner.public()).0,
        Amount::from_agr(100).0 + FEE
    );
    supply_conserved(&w.chain.state);
}

#[test]
fn a_full_market_replaces_its_lowest_scorer_past_immunity_and_no_one_else() {
    let mut w = World::new();
    let market = w.market();
    let p3 = w.providers[3].clone();
    // Full (3 of 3) and every member joined at height 4, immune until 19.
    let (_, o) = w.one(&p3, TxBody::JoinMarket { market });
    assert!(o.contains("within its immunity"), "{o}");
    // Weights make p1 the lowest scorer with incentive (p2 has none either, but p2 is the
    // lowest: 0 incentive), paid at the end of epoch 1.
    w.commit_all(&[(0, 5), (1, 1)]);
    w.until(EPOCH);
    w.reveal_all(&[(0, 5), (1, 1)]);
    w.redeem(1_000_000);
    w.until(2 * EPOCH);
    let (b, o) = w.one(&p3, TxBody::JoinMarket { market });
    assert_eq!(o, "success");
    let replaced = b.applied.events.iter().find_map(|e| match e {
        Event::MarketJoined { replaced, slot, .. } => Some((*replaced, *slot)),
        _ => None,
    });
    assert_eq!(
        replaced,
        Some((Some(w.providers[2].public()), 2)),
        "p2 had the lowest incentive"
    );
    let m = w.chain.state.market(&market).expect("market");
    assert_eq!(m.members[2].provider, p3.public());
    assert_eq!(m.members[2].joined_at, w.height());
}

#[test]
fn a_jailed_member_earns_nothing_whatever_validators_weight_it() {
    let mut w = World::new();
    // Every validator weights p0 and p1 equally; then p1 equivocates and is slashed (jailed).
    w.commit_all(&[(0, 1), (1, 1)]);
    w.until(EPOCH);
    w.reveal_all(&[(0, 1), (1, 1)]);
    w.redeem(1_000_000);
    let p1 = w.providers[1].clone();
    let subject = Hash([1; 32]);
    let (a, b) = (Hash([2; 32]), Hash([3; 32]));
    let claim = |c: &Hash| {
        p1.sign(
            agora_types::SignDomain::Claim,
            &agora_types::tx::claim_message(&subject, c),
        )
    };
    let evidence = agora_types::Evidence::ConflictingClaims {
        offender: p1.public(),
        subject,
        claim_a: a,
        signature_a: claim(&a),
        claim_b: b,
        signature_b: claim(&b),
    };
    let reporter = w.stranger.clone();
    let (_, o) = w.one(&reporter, TxBody::Slash(evidence));
    assert_eq!(o, "success");
    w.until(2 * EPOCH - 2);
    let b = w.chain.produce(vec![]);
    let report = b
        .applied
        .epochs
        .iter()
        .find(|r| r.market == w.market())
        .expect("a report");
    assert_eq!(report.providers[1].incentive_ppm, 0);
    assert_eq!(report.providers[1].paid, Amount::ZERO);
    assert!(
        report.providers[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("jailed")),
        "{:?}",
        report.providers[1]
    );
    assert!(
        report.providers[0].incentive_ppm > 999_000,
        "p0 takes the whole incentive"
    );
}

#[test]
fn paid_work_counts_as_usage_and_a_failed_audit_takes_its_payment_back_out() {
    use super::audits::{World as AuditWorld, failed_audit};
    let mut params = Params::default();
    params.incentives.market_deposit = Amount::from_agr(1);
    let mut w = AuditWorld::new(params);
    let payer = w.payer.clone();
    let model = Hash([3; 32]); // the audits world's model
    let b = w.produce(
        &payer,
        TxBody::CreateMarket(MarketSpec {
            name: "chat/audited".into(),
            models: vec![model],
        }),
    );
    assert_eq!(outcome(&b, 0), "success");
    let market = market_id("chat/audited");
    w.redeem(300_000);
    w.redeem(200_000);
    assert_eq!(
        w.state().market(&market).expect("market").usage,
        Amount(500_000)
    );
    let (reporter, v) = (w.reporter.clone(), w.validators.clone());
    let r = w.receipt(300_000);
    assert_eq!(
        w.report(&reporter, failed_audit(&r, &[&v[0], &v[1]])),
        "success"
    );
    assert_eq!(
        w.state().market(&market).expect("market").usage,
        Amount(200_000),
        "the forfeited 300,000 is not usage"
    );
}

/// One step of the money-path property test below.
#[derive(Debug, Clone)]
enum Op {
    /// The payer pays p0 for work on the market's model.
    Redeem(u128),
    /// Validator `v` commits weights on members (by provider index 0..4, raw weights).
    Commit(usize, Vec<(usize, u16)>),
    /// Validator `v` reveals what it committed last (it may be too early, too late or absent).
    Reveal(usize),
    /// Provider `p` asks to join (the market holds 3; p3 and p4 may be refused or prune).
    Join(usize),
    /// Empty blocks.
    Wait(u64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (1u128..5_000_000).prop_map(Op::Redeem),
        (
            0usize..3,
            proptest::collection::vec((0usize..5, 0u16..=u16::MAX), 1..4)
        )
            .prop_map(|(v, w)| Op::Commit(v, w)),
        (0usize..3).prop_map(Op::Reveal),
        (3usize..5).prop_map(Op::Join),
        (1u64..12).prop_map(Op::Wait),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Random interleavings of payments, commits, reveals (early, late, mismatched or absent),
    /// joins and waits across several incentive epochs. After every block: supply is conserved;
    /// what the block minted is exactly what its `EmissionPaid` lines pay, and no more than the
    /// schedule's emission for the epoch; every line goes to a member of the market, an active
    /// validator, the owner or the treasury; and the epoch's report says the same per account.
    #[test]
    fn emission_is_paid_exactly_and_only_inside_the_market(ops in proptest::collection::vec(op(), 1..40)) {
        let mut w = World::new();
        let market = w.market();
        let mut last_reveal: Vec<Option<WeightsReveal>> = vec![None; 3];
        let mut salt = 0u8;
        let start_minted = w.chain.state.supply().minted.0;
        let mut blocks = Vec::new();
        for op in ops {
            match op {
                Op::Redeem(a) => blocks.push(w.redeem(a)),
                Op::Commit(v, weights) => {
                    salt = salt.wrapping_add(1);
                    let reveal = w.reveal(&weights, salt);
                    let key = w.validators[v].clone();
                    let commitment = weights_commitment(&key.public(), &reveal);
                    blocks.push(w.one(&key, TxBody::CommitWeights { market, commitment }).0);
                    last_reveal[v] = Some(reveal);
                }
                Op::Reveal(v) => {
                    let key = w.validators[v].clone();
                    let reveal = last_reveal[v].clone().unwrap_or_else(|| w.reveal(&[(0, 1)], 0));
                    blocks.push(w.one(&key, TxBody::RevealWeights(reveal)).0);
                }
                Op::Join(p) => {
                    let key = w.providers[p].clone();
                    blocks.push(w.one(&key, TxBody::JoinMarket { market }).0);
                }
                Op::Wait(n) => {
                    let to = w.height() + n;
                    blocks.extend(w.until(to));
                }
            }
        }
        // Run past two more epoch ends so every interleaving meets at least one.
        let to = w.height() + 2 * EPOCH;
        blocks.extend(w.until(to));
        supply_conserved(&w.chain.state);
        let validators: Vec<agora_types::Address> = agora_ledger::epochs::active_set(&w.chain.state).into_iter().map(|(a, _)| a).collect();
        let treasury = w.chain.state.params().treasury;
        let owner = w.owner.public();
        let mut minted = start_minted;
        for b in &blocks {
            let lines = emission_lines(b);
            let paid: u128 = lines.iter().map(|l| l.2).sum();
            let height = b.block.header.height;
            let now = b.state.supply().minted.0;
            proptest::prop_assert_eq!(now - minted, paid, "height {} minted other than it paid", height);
            minted = now;
            let schedule = w.chain.state.params().incentives.schedule.emission_between((height + 1).saturating_sub(EPOCH), height);
            proptest::prop_assert!(paid <= schedule, "paid {} over the schedule's {}", paid, schedule);
            for report in &b.applied.epochs {
                let members: Vec<agora_types::Address> = report.providers.iter().map(|l| l.provider).collect();
                for (account, role, amount) in &lines {
                    let inside = match role.as_str() {
                        "provider" => members.contains(account),
                        "validator" => validators.contains(account),
                        "owner" => *account == owner,
                        "treasury" => *account == treasury,
                        _ => false,
                    };
                    proptest::prop_assert!(inside, "{} {} paid {} from outside the market", role, account, amount);
                }
                let reported: u128 = report.providers.iter().map(|l| l.paid.0).sum::<u128>()
                    + report.validators.iter().map(|l| l.paid.0).sum::<u128>()
                    + report.owner_paid.0
                    + report.treasury_paid.0;
                proptest::prop_assert_eq!(reported, paid, "the report and the events disagree at height {}", height);
                proptest::prop_assert_eq!(paid, report.emission.0, "the market's share is paid whole");
            }
        }
    }
}
