//! Prometheus metrics of the gateway (`GET /metrics`).

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Handles to every metric the gateway exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    tokens: IntCounter,
    failovers: IntCounter,
    channels_open: IntGauge,
    channel_deposits: IntGauge,
    channel_signed: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let requests = vec("gateway_requests_total", "Requests by endpoint", "endpoint");
        let errors = vec(
            "gateway_errors_total",
            "Error responses by HTTP status",
            "status",
        );
        let one = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let tokens = one(
            "gateway_completion_tokens_total",
            "Tokens delivered to clients",
        );
        let failovers = one(
            "gateway_failovers_total",
            "Completions continued on another provider",
        );
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let channels_open = gauge(
            "gateway_channels_open",
            "Payment channels open to providers",
        );
        let channel_deposits = gauge(
            "gateway_channel_deposits_base_units",
            "Deposits locked in the open channels, base units (1e9 per AGR)",
        );
        let channel_signed = gauge(
            "gateway_channel_signed_base_units",
            "Vouchers signed on the open channels (what providers can claim), base units",
        );
        Self {
            registry,
            requests,
            errors,
            tokens,
            failovers,
            channels_open,
            channel_deposits,
            channel_signed,
        }
    }

    /// The open channels' count, deposits and signed totals (base units).
    pub fn channels(&self, open: usize, deposits: u128, signed: u128) {
        let clamp = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
        self.channels_open.set(clamp(open as u128));
        self.channel_deposits.set(clamp(deposits));
        self.channel_signed.set(clamp(signed));
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn request(&self, endpoint: &str) {
        self.requests.with_label_values(&[endpoint]).inc();
    }

    pub fn error(&self, status: u16) {
        self.errors.with_label_values(&[&status.to_string()]).inc();
    }

    /// A finished completion: its tokens and how many providers served it.
    pub fn tokens(&self, completion_tokens: u32, providers: usize) {
        self.tokens.inc_by(u64::from(completion_tokens));
        if providers > 1 {
            self.failovers.inc_by((providers - 1) as u64);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
