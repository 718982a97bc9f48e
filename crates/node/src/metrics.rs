//! One Prometheus `/metrics` endpoint per node process (`[metrics] listen`), whatever roles it
//! runs: the ledger's (height, block interval, mempool, supply; read when scraped), the overlay's,
//! the provider's, the auditor's and the gateway's registries, gathered together.
//! `docs/grafana/agora.json` is a Grafana dashboard over these names.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

use crate::Shared;

/// The registries of every role in this process, and the ledger's gauges.
#[derive(Default)]
pub struct MetricsHub {
    registries: Mutex<Vec<Source>>,
    ledger: Mutex<Option<LedgerGauges>>,
}

/// A role's registry, with the label its series get here (an overlay's peer id), if any.
type Source = (Registry, Option<(String, String)>);

/// The ledger's figures, read from the validator's chain at each scrape.
struct LedgerGauges {
    shared: Arc<Shared>,
    registry: Registry,
    height: IntGauge,
    block_interval_ms: IntGauge,
    last_block_ms: IntGauge,
    mempool: IntGauge,
    supply: IntGauge,
}

fn gauge(reg: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    reg.register(Box::new(g.clone())).expect("registered once");
    g
}

impl MetricsHub {
    /// Adds a role's registry.
    pub fn add(&self, registry: Registry) {
        self.registries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((registry, None));
    }

    /// Adds a registry whose series all get the label `name="value"` here: the overlays of
    /// several roles in one process export the same names, told apart by `peer`.
    pub fn add_labelled(&self, registry: Registry, name: &str, value: &str) {
        self.registries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((registry, Some((name.to_string(), value.to_string()))));
    }

    /// Reads the ledger's figures from this validator's chain at each scrape.
    pub fn add_ledger(&self, shared: Arc<Shared>) {
        let registry = Registry::new();
        let g = LedgerGauges {
            height: gauge(
                &registry,
                "agora_chain_height",
                "Height of the last finalized block",
            ),
            block_interval_ms: gauge(
                &registry,
                "agora_chain_block_interval_ms",
                "Time between the last two finalized blocks (their header timestamps), ms",
            ),
            last_block_ms: gauge(
                &registry,
                "agora_chain_last_block_timestamp_ms",
                "Header timestamp of the last finalized block, ms since the Unix epoch",
            ),
            mempool: gauge(
                &registry,
                "agora_chain_mempool_txs",
                "Transactions waiting in the mempool",
            ),
            supply: gauge(
                &registry,
                "agora_chain_supply_agr",
                "Total supply (genesis + minted - burned), whole AGR",
            ),
            shared,
            registry,
        };
        *self.ledger.lock().unwrap_or_else(|e| e.into_inner()) = Some(g);
    }

    /// Every metric of this process in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut families = Vec::new();
        if let Some(l) = self
            .ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            l.read();
            families.extend(l.registry.gather());
        }
        for (r, label) in self
            .registries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let mut gathered = r.gather();
            if let Some((name, value)) = label {
                for f in &mut gathered {
                    for m in f.mut_metric() {
                        let mut pair = prometheus::proto::LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value(value.clone());
                        let mut labels = m.get_label().to_vec();
                        labels.push(pair);
                        m.set_label(labels);
                    }
                }
            }
            families.extend(gathered);
        }
        // Two overlays in one process (a gateway's and a provider's) export the same names with
        // different `peer` labels: one family each, with both series.
        let mut merged: std::collections::BTreeMap<String, prometheus::proto::MetricFamily> =
            std::collections::BTreeMap::new();
        for mut f in families {
            match merged.get_mut(f.name()) {
                Some(first) => first.mut_metric().extend(f.take_metric()),
                None => {
                    merged.insert(f.name().to_string(), f);
                }
            }
        }
        let families: Vec<_> = merged.into_values().collect();
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl LedgerGauges {
    fn read(&self) {
        let Ok(chain) = self.shared.chain.lock() else {
            return;
        };
        let height = chain.state().height();
        self.height.set(i64::try_from(height).unwrap_or(i64::MAX));
        self.mempool
            .set(i64::try_from(chain.mempool().len()).unwrap_or(i64::MAX));
        let stamp = |h: u64| {
            chain
                .store()
                .block(h)
                .ok()
                .flatten()
                .map(|b| b.header.timestamp_ms)
        };
        if let Some(last) = stamp(height) {
            self.last_block_ms
                .set(i64::try_from(last).unwrap_or(i64::MAX));
            if let Some(before) = height.checked_sub(1).and_then(stamp) {
                self.block_interval_ms
                    .set(i64::try_from(last.saturating_sub(before)).unwrap_or(i64::MAX));
            }
        }
        let s = chain.state().supply();
        if let Some(total) = s.expected_total() {
            let agr = total.0 / agora_types::amount::BASE_UNITS_PER_AGR;
            self.supply.set(i64::try_from(agr).unwrap_or(i64::MAX));
        }
    }
}

/// Serves `GET /metrics` on `listen` until the task is aborted.
pub async fn serve(
    listen: SocketAddr,
    hub: Arc<MetricsHub>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let hub = hub.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    hub.render(),
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(target: "agora::node", error = %e, "the metrics server stopped");
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names `docs/grafana/agora.json` queries, found in its expressions.
    fn dashboard_names() -> Vec<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana/agora.json");
        let text = std::fs::read_to_string(path).expect("docs/grafana/agora.json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let mut names = Vec::new();
        for p in json["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if ["agora_", "gateway_", "p2p_"]
                        .iter()
                        .any(|p| word.starts_with(p))
                    {
                        names.push(word.to_string());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn every_metric_the_grafana_dashboard_reads_is_exported() {
        let hub = MetricsHub::default();
        let provider = agora_provider::metrics::ProviderMetrics::new();
        provider.jobs.with_label_values(&["ok"]).inc();
        let audit = agora_audit::role::AuditMetrics::default();
        audit.audits.with_label_values(&["pass"]).inc();
        let gateway = agora_gateway::metrics::Metrics::new();
        gateway.request("chat");
        gateway.error(503);
        let overlay = agora_p2p::metrics::Metrics::new();
        hub.add(provider.registry().clone());
        hub.add(audit.registry().clone());
        hub.add(gateway.registry().clone());
        hub.add_labelled(overlay.registry().clone(), "peer", "12D3KooWtest");
        let text = hub.render();
        // The ledger's gauges need a running chain; their names are checked against this file.
        let ledger = include_str!("metrics.rs");
        let names = dashboard_names();
        assert!(names.len() >= 15, "{names:?}");
        for n in names {
            let exported = text.contains(&format!("\n{n}")) || text.contains(&format!("\n{n}{{"));
            let ledger_gauge =
                n.starts_with("agora_chain_") && ledger.contains(&format!("\"{n}\""));
            assert!(
                exported || ledger_gauge,
                "the dashboard reads {n}, which no role exports"
            );
        }
    }

    #[test]
    fn two_overlays_in_one_process_export_one_family_with_both_peers() {
        let hub = MetricsHub::default();
        for peer in ["a", "b"] {
            let m = agora_p2p::metrics::Metrics::new();
            m.connected_peers.set(1);
            hub.add_labelled(m.registry().clone(), "peer", peer);
        }
        let text = hub.render();
        assert_eq!(
            text.matches("# TYPE p2p_connected_peers gauge").count(),
            1,
            "{text}"
        );
        assert!(text.contains("p2p_connected_peers{peer=\"a\"} 1"), "{text}");
        assert!(text.contains("p2p_connected_peers{peer=\"b\"} 1"), "{text}");
    }
}
