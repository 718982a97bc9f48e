//! Prometheus metrics of one overlay node (one registry per node, so many nodes can live in one
//! process; the node crate merges it into its `/metrics` endpoint).

use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Handles to every metric the overlay exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Connections opened, by path (`direct` or `relayed`).
    pub connections: IntCounterVec,
    /// Peers currently connected.
    pub connected_peers: IntGauge,
    /// Open connections by path.
    pub open_connections: IntGaugeVec,
    /// Gossip messages by topic and verdict (`accept`, `reject`, `ignore`).
    pub gossip: IntCounterVec,
    /// Live offers held.
    pub offers: IntGauge,
    /// Inference streams by direction (`in`, `out`) and outcome.
    pub infer_streams: IntCounterVec,
    /// Token chunks streamed, by direction.
    pub infer_chunks: IntCounterVec,
    /// RPC requests by direction and outcome.
    pub rpc: IntCounterVec,
    /// Offences recorded, by kind.
    pub offences: IntCounterVec,
    /// Peers banned.
    pub bans: IntCounterVec,
    /// Hole punches by result.
    pub hole_punch: IntCounterVec,
    /// Relay reservations (as client) and circuits (as server), by event.
    pub relay: IntCounterVec,
    /// 1 when this node believes it is publicly reachable, 0 when private, -1 unknown.
    pub nat_public: IntGauge,
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    reg.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

impl Metrics {
    /// Creates and registers all metrics in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let connected_peers =
            IntGauge::new("p2p_connected_peers", "Peers currently connected").expect("static");
        registry
            .register(Box::new(connected_peers.clone()))
            .expect("once");
        let offers = IntGauge::new("p2p_offers", "Live provider offers held").expect("static");
        registry.register(Box::new(offers.clone())).expect("once");
        let nat_public = IntGauge::new(
            "p2p_nat_public",
            "1 publicly reachable, 0 behind NAT, -1 unknown",
        )
        .expect("static");
        registry
            .register(Box::new(nat_public.clone()))
            .expect("once");
        let open_connections = IntGaugeVec::new(
            Opts::new("p2p_open_connections", "Open connections by path"),
            &["path"],
        )
        .expect("static");
        registry
            .register(Box::new(open_connections.clone()))
            .expect("once");
        nat_public.set(-1);
        Self {
            connections: counter(
                &registry,
                "p2p_connections_total",
                "Connections opened by path",
                &["path"],
            ),
            gossip: counter(
                &registry,
                "p2p_gossip_messages_total",
                "Gossip messages by topic and verdict",
                &["topic", "verdict"],
            ),
            infer_streams: counter(
                &registry,
                "p2p_infer_streams_total",
                "Inference streams by direction and outcome",
                &["direction", "outcome"],
            ),
            infer_chunks: counter(
                &registry,
                "p2p_infer_chunks_total",
                "Token chunks streamed by direction",
                &["direction"],
            ),
            rpc: counter(
                &registry,
                "p2p_rpc_requests_total",
                "RPC requests by direction and outcome",
                &["direction", "outcome"],
            ),
            offences: counter(
                &registry,
                "p2p_offences_total",
                "Peer offences by kind",
                &["kind"],
            ),
            bans: counter(&registry, "p2p_bans_total", "Peers banned", &["reason"]),
            hole_punch: counter(
                &registry,
                "p2p_hole_punch_total",
                "DCUtR hole punches by result",
                &["result"],
            ),
            relay: counter(
                &registry,
                "p2p_relay_events_total",
                "Relay reservations and circuits",
                &["event"],
            ),
            registry,
            connected_peers,
            open_connections,
            offers,
            nat_public,
        }
    }

    /// The registry (for merging into a node-wide one).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own well-formed metrics into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let m = Metrics::new();
        m.connections.with_label_values(&["relayed"]).inc();
        m.offences.with_label_values(&["malformed_frame"]).inc_by(2);
        let text = m.render();
        assert!(
            text.contains("p2p_connections_total{path=\"relayed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("p2p_offences_total{kind=\"malformed_frame\"} 2"),
            "{text}"
        );
        assert!(text.contains("p2p_nat_public -1"), "{text}");
    }
}
