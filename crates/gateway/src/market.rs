//! The gateway's view of the market: which providers offer which models at what price (signed
//! offers from the overlay, checked against the ledger's registry), how each has performed for
//! this gateway, and the choice of a provider for one request.
//!
//! Routing score (lower is better), per candidate that passes the request's filters:
//! `expected cost x (1 + in-flight/4) x (1 + ttft/1s) x (1 + 4 x recent failure rate)
//! x (3 on probation)`, the cost at the price the provider's signed offer names for the model.
//! Audit results count twice: a provider the ledger jailed (slashed for a failed audit or an
//! equivocation) is not a candidate at all until its jail ends, and one on probation after a
//! failed audit scores three times its price. A provider that failed in the
//! last `cooldown` is skipped while any other candidate exists; between equal scores the less
//! loaded provider (by its offer) wins.

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use agora_market::offer::SignedOffer;
use agora_market::{ChainClient, Price};
use agora_p2p::{Handle, PeerId};
use agora_types::{Address, Amount, Hash};

/// What a model can be used for, as its ledger registration records it.
pub use agora_types::ModelKind;

/// A model on the network.
#[derive(Debug, Clone)]
pub struct ModelView {
    pub sha256: Hash,
    pub name: String,
    pub family: String,
    pub license: String,
    pub owner: Address,
    pub royalty_bps: u16,
    pub kind: ModelKind,
}

/// A provider with a live offer and a ledger registration.
#[derive(Debug, Clone)]
pub struct ProviderView {
    pub peer: PeerId,
    pub address: Address,
    /// The offer's price of each model it serves that the ledger also lists for it.
    pub prices: BTreeMap<Hash, Price>,
    pub stake: Amount,
    /// The offer's load (0 idle, 1000 saturated).
    pub load_permille: u16,
    pub free_slots: u32,
    /// On the ledger's probation after a failed audit.
    pub on_probation: bool,
}

/// How a provider has served this gateway.
#[derive(Debug, Clone, Default)]
pub struct ProviderStats {
    pub in_flight: u32,
    pub successes: u64,
    pub failures: u64,
    /// Exponentially weighted failure rate (0..1).
    pub failure_rate: f64,
    /// Exponentially weighted time to first frame, ms.
    pub ttft_ms: f64,
    /// Exponentially weighted tokens per second of a stream.
    pub tokens_per_sec: f64,
    pub last_failure: Option<Instant>,
}

/// Filters one request sets (`agora` field or `x-agora-*` headers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Constraints {
    /// Most base units per million tokens, input and output alike.
    pub max_price_per_mtok: Option<u128>,
    /// 0: any registered provider; 1: self-stake at least twice the minimum; 2: level 1 and at
    /// least 10 requests served for this gateway with a failure rate under 10%.
    pub min_trust: u8,
    /// How the answer is checked (the request's trust tier).
    pub verification: Verification,
    /// A provider not to route to: the first of a redundant pair, for the second run.
    pub avoid: Option<Address>,
}

/// The trust tier a request asks for (`agora.verification`, `x-agora-verification`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verification {
    /// One provider; every response carries a proof and a sampled share is audited by the
    /// validators (the default).
    #[default]
    Sampled,
    /// The same request, seed included, run on two distinct providers; the token sequences are
    /// compared before the answer is returned, and both runs are paid for.
    Redundant,
}

/// A chosen provider.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub provider: ProviderView,
    pub price: Price,
}

/// A gateway's overlay node needs it in its config (`NetConfig::offer_validator`) to hear
/// offers at all.
pub use agora_market::offer::offer_validator;

/// Offers, registry and statistics.
pub struct Market {
    net: Handle,
    chain: ChainClient,
    min_provider_stake: Amount,
    providers: RwLock<Vec<ProviderView>>,
    models: RwLock<BTreeMap<Hash, ModelView>>,
    stats: Mutex<BTreeMap<PeerId, ProviderStats>>,
    cooldown: Duration,
}

impl Market {
    pub fn new(net: Handle, chain: ChainClient, min_provider_stake: Amount) -> Market {
        Market {
            net,
            chain,
            min_provider_stake,
            providers: RwLock::new(Vec::new()),
            models: RwLock::new(BTreeMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            cooldown: Duration::from_secs(30),
        }
    }

    /// Re-reads offers from the overlay and the matching registrations from the ledger.
    pub async fn refresh(&self) {
        let Ok(offers) = self.net.offers().await else {
            return;
        };
        let now = agora_p2p::offer::now_ms();
        let mut providers = Vec::new();
        for (peer, gossiped) in offers {
            if gossiped.header.expires_at_ms <= now {
                continue;
            }
            // The overlay checked it already; decode it again for the market's fields.
            let Ok(signed) = SignedOffer::decode(&gossiped.bytes) else {
                continue;
            };
            let o = &signed.offer;
            let address = o.provider;
            let Ok(Some(record)) = self.chain.provider(&address).await else {
                continue;
            };
            // Slashed and jailed: routed around until the jail ends.
            if record.record.jailed_until > record.height {
                continue;
            }
            let mut prices = BTreeMap::new();
            for mp in &record.record.info.models {
                // Only models the signed offer names are served now, at the offer's price.
                if let Some(price) = o.price_of(&mp.model) {
                    prices.insert(mp.model, price);
                    self.learn_model(&mp.model).await;
                }
            }
            providers.push(ProviderView {
                peer,
                address,
                prices,
                stake: record.stake,
                load_permille: o.load.permille(),
                free_slots: o.load.free_slots(),
                on_probation: record.probation_until > record.height,
            });
        }
        *self.providers.write().unwrap_or_else(|e| e.into_inner()) = providers;
    }

    async fn learn_model(&self, sha: &Hash) {
        if self
            .models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(sha)
        {
            return;
        }
        if let Ok(Some(m)) = self.chain.model(sha).await {
            let view = ModelView {
                sha256: *sha,
                kind: m.info.kind,
                name: m.info.name,
                family: m.info.family,
                license: m.info.license,
                owner: m.owner,
                royalty_bps: m.info.royalty_bps,
            };
            self.models
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(*sha, view);
        }
    }

    /// Refreshes every `every` until dropped.
    pub async fn refresh_loop(self: std::sync::Arc<Self>, every: Duration) {
        loop {
            self.refresh().await;
            tokio::time::sleep(every).await;
        }
    }

    /// Models with at least one live provider, with the providers' price range.
    pub fn models(&self) -> Vec<(ModelView, Vec<Price>)> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let providers = self.providers.read().unwrap_or_else(|e| e.into_inner());
        models
            .values()
            .filter_map(|m| {
                let prices: Vec<Price> = providers
                    .iter()
                    .filter_map(|p| p.prices.get(&m.sha256).copied())
                    .collect();
                (!prices.is_empty()).then(|| (m.clone(), prices))
            })
            .collect()
    }

    /// The model named `name` (its ledger name or its sha256 in hex).
    pub fn model(&self, name: &str) -> Option<ModelView> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let by_hash = name.parse::<Hash>().ok();
        models
            .values()
            .find(|m| m.name == name || Some(m.sha256) == by_hash)
            .cloned()
    }

    fn trust(&self, p: &ProviderView, s: Option<&ProviderStats>) -> u8 {
        let staked = p.stake
            >= self
                .min_provider_stake
                .checked_add(self.min_provider_stake)
                .unwrap_or(p.stake);
        if !staked {
            return 0;
        }
        match s {
            Some(s) if s.successes + s.failures >= 10 && s.failure_rate < 0.1 => 2,
            _ => 1,
        }
    }

    /// `p`'s price for `model` when `c` lets it serve (it serves the model, within the price
    /// cap and the trust level, and is not the provider to avoid).
    fn admits(
        &self,
        p: &ProviderView,
        s: Option<&ProviderStats>,
        model: &Hash,
        c: &Constraints,
    ) -> Option<Price> {
        if c.avoid == Some(p.address) {
            return None;
        }
        let price = p.prices.get(model).copied()?;
        if let Some(max) = c.max_price_per_mtok
            && (price.input_per_million.0 > max || price.output_per_million.0 > max)
        {
            return None;
        }
        (self.trust(p, s) >= c.min_trust).then_some(price)
    }

    /// How many providers `c` lets serve `model` now (the redundant tier needs two).
    pub fn admitted(&self, model: &Hash, c: &Constraints) -> usize {
        let providers = self.providers.read().unwrap_or_else(|e| e.into_inner());
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        providers
            .iter()
            .filter(|p| self.admits(p, stats.get(&p.peer), model, c).is_some())
            .count()
    }

    /// The best provider for `model` under `c`, skipping `exclude`.
    pub fn pick(&self, model: &Hash, c: &Constraints, exclude: &[PeerId]) -> Option<Candidate> {
        let providers = self.providers.read().unwrap_or_else(|e| e.into_inner());
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<(bool, f64, u16, Candidate)> = None;
        for p in providers.iter() {
            if exclude.contains(&p.peer) {
                continue;
            }
            let s = stats.get(&p.peer);
            let Some(price) = self.admits(p, s, model, c) else {
                continue;
            };
            let cooling = s
                .and_then(|s| s.last_failure)
                .is_some_and(|t| t.elapsed() < self.cooldown);
            let d = ProviderStats::default();
            let s = s.unwrap_or(&d);
            // Typical request: 200 prompt tokens, 200 generated.
            let cost = price.cost(200, 200).map_or(f64::MAX, |a| a.0 as f64) + 1.0;
            let score = cost
                * (1.0 + f64::from(s.in_flight) / 4.0)
                * (1.0 + s.ttft_ms / 1000.0)
                * (1.0 + 4.0 * s.failure_rate)
                * if p.on_probation { 3.0 } else { 1.0 };
            let better = match &best {
                None => true,
                // Providers not cooling down first, then by score, then the less loaded.
                Some((bc, bs, bl, _)) => (cooling, score, p.load_permille) < (*bc, *bs, *bl),
            };
            if better {
                best = Some((
                    cooling,
                    score,
                    p.load_permille,
                    Candidate {
                        provider: p.clone(),
                        price,
                    },
                ));
            }
        }
        best.map(|(_, _, _, c)| c)
    }

    fn with_stats(&self, peer: PeerId, f: impl FnOnce(&mut ProviderStats)) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f(stats.entry(peer).or_default());
    }

    pub fn started(&self, peer: PeerId) {
        self.with_stats(peer, |s| s.in_flight += 1);
    }

    pub fn first_frame(&self, peer: PeerId, ttft: Duration) {
        let ms = ttft.as_secs_f64() * 1000.0;
        self.with_stats(peer, |s| {
            s.ttft_ms = if s.successes + s.failures == 0 {
                ms
            } else {
                0.8 * s.ttft_ms + 0.2 * ms
            }
        });
    }

    /// Ends one attempt; `tokens_per_sec` when the stream produced tokens.
    pub fn finished(&self, peer: PeerId, ok: bool, tokens_per_sec: Option<f64>) {
        self.with_stats(peer, |s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if ok {
                s.successes += 1;
            } else {
                s.failures += 1;
                s.last_failure = Some(Instant::now());
            }
            s.failure_rate = 0.9 * s.failure_rate + if ok { 0.0 } else { 0.1 };
            if let Some(t) = tokens_per_sec {
                s.tokens_per_sec = if s.tokens_per_sec == 0.0 {
                    t
                } else {
                    0.8 * s.tokens_per_sec + 0.2 * t
                };
            }
        });
    }

    /// Statistics of every provider seen, for `/metrics`-style inspection and tests.
    pub fn stats(&self) -> BTreeMap<PeerId, ProviderStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Live providers.
    pub fn providers(&self) -> Vec<ProviderView> {
        self.providers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
