//! Prometheus metrics of a provider (its own registry; the node gathers it into `/metrics`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Handles to every metric the provider exports.
#[derive(Clone)]
pub struct ProviderMetrics {
    registry: Registry,
    /// Jobs by how they ended: `ok`, `failed` (after delivering work), `refused` (nothing
    /// delivered: bad job, wrong payer, price, channel), `cancelled` (the requester left).
    pub jobs: IntCounterVec,
    /// Tokens generated and delivered.
    pub tokens: IntCounter,
    /// Jobs running now: also the load the provider's offer reports (`Provider::active_jobs`).
    pub active: IntGauge,
    /// What delivered work was billed at (base units), the sum of the jobs' meters.
    pub billed: IntCounter,
}

impl Default for ProviderMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProviderMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let jobs = IntCounterVec::new(
            Opts::new("agora_provider_jobs_total", "Jobs by outcome"),
            &["outcome"],
        )
        .expect("static metric definition");
        let tokens = IntCounter::new(
            "agora_provider_tokens_total",
            "Tokens generated and delivered",
        )
        .expect("static metric definition");
        let active = IntGauge::new("agora_provider_active_jobs", "Jobs running now")
            .expect("static metric definition");
        let billed = IntCounter::new(
            "agora_provider_billed_base_units_total",
            "Delivered work billed, base units (1e9 per AGR)",
        )
        .expect("static metric definition");
        for c in [
            Box::new(jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(tokens.clone()),
            Box::new(active.clone()),
            Box::new(billed.clone()),
        ] {
            registry.register(c).expect("registered once");
        }
        Self {
            registry,
            jobs,
            tokens,
            active,
            billed,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
