//! The running auditor: a validator follows the ledger's receipt commitments, draws the receipts
//! the beacon selects, audits the ones it is first auditor of, re-audits the ones whose first
//! audit failed when it is second or third, posts every verdict to the committing gateway and
//! submits `Evidence::FailedAudit` once two failing verdicts exist.
//!
//! ```text
//!  finalized block h: CommitReceipts{root} by gateway G
//!     beacon = beacon(id(h), root);  GET G/v1/audit/batches/{root}  (receipts_root must be root)
//!     each receipt paid by G:  selected(beacon, id, audit_bps, probation)?
//!        order = auditors(beacon, id, active validators - provider, 3)
//!        me = order[0]: fetch the case (signed request), audit, post the verdict
//!        me = order[1|2]: watch G's board; order[0] posted a failing verdict -> re-audit, post
//!     >= 2 failing verdicts on the board (checked here) -> Slash(FailedAudit)
//! ```
//!
//! The gateway is only a rendezvous: it cannot forge a batch (the root), a case (the receipt's
//! hashes), or a verdict (signatures); it can withhold, which only spares the providers it pays
//! from audits of its own receipts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_ledger::audit::{MIN_FAILING_VERDICTS, auditors, beacon, receipts_root, selected};
use agora_market::audit::{
    BatchView, KeptReceipt, MAX_ANSWER_BYTES, VerdictsView, fill, paths, sign_fetch,
};
use agora_market::chain::BlockTxs;
use agora_market::protocol::SignedReceipt;
use agora_market::{ChainClient, TxSender};
use agora_types::audit::{AuditVerdict, SignedVerdict, receipt_id};
use agora_types::tx::limits::MAX_AUDIT_VERDICTS;
use agora_types::{Address, Evidence, Hash, HashDomain, Outcome, TxBody};

use crate::scorer::Scorer;
use crate::{AuditReport, Auditor};

/// Auditors per receipt: the first and two re-auditors (verification.md §6.1).
const AUDITORS_PER_RECEIPT: usize = 3;

/// Knobs of the running auditor.
#[derive(Debug, Clone)]
pub struct RoleSettings {
    /// Base URLs of the gateways whose commitments are followed (`http://host:port`).
    pub gateways: Vec<String>,
    /// How often the ledger and the verdict boards are read.
    pub poll: Duration,
    /// How long a re-auditor waits for the first auditor's verdict before giving up on it.
    pub reaudit_wait: Duration,
    /// Where the scorer keeps the weights it committed until it reveals them; `None` turns
    /// scoring off (`crate::scorer`).
    pub score_dir: Option<std::path::PathBuf>,
    /// The scorer's own timed requests through a gateway (latency and throughput), if any.
    pub probe: Option<crate::scorer::ProbeSettings>,
}

impl Default for RoleSettings {
    fn default() -> Self {
        RoleSettings {
            gateways: Vec::new(),
            poll: Duration::from_millis(500),
            reaudit_wait: Duration::from_secs(600),
            score_dir: None,
            probe: None,
        }
    }
}

/// A receipt this validator re-audits once its first auditor failed it.
struct Watch {
    receipt: SignedReceipt,
    gateway: String,
    first: Address,
    since: Instant,
}

/// The auditor of one validator.
pub struct AuditRole {
    sender: Arc<TxSender>,
    auditors: BTreeMap<Hash, Auditor>,
    settings: RoleSettings,
    http: reqwest::Client,
    watching: BTreeMap<Hash, Watch>,
    /// Receipts this validator already audited (a batch seen twice is not audited twice).
    done: Recent,
    /// The scorer fed by the same blocks, batches and verdicts (when scoring is on).
    scorer: Option<Scorer>,
    metrics: AuditMetrics,
}

/// Prometheus metrics of the audit role (its own registry; the node gathers it into
/// `/metrics`).
#[derive(Clone)]
pub struct AuditMetrics {
    registry: prometheus::Registry,
    /// Audits by verdict: `pass`, `fail`, `error` (the case could not be fetched or replayed).
    pub audits: prometheus::IntCounterVec,
    /// Slashing evidence this auditor submitted that the ledger took.
    pub evidence: prometheus::IntCounter,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        let registry = prometheus::Registry::new();
        let audits = prometheus::IntCounterVec::new(
            prometheus::Opts::new("agora_audits_total", "Audits by verdict"),
            &["verdict"],
        )
        .expect("static metric definition");
        let evidence = prometheus::IntCounter::new(
            "agora_audit_evidence_total",
            "Failed-audit evidence submitted and taken by the ledger",
        )
        .expect("static metric definition");
        registry
            .register(Box::new(audits.clone()))
            .expect("registered once");
        registry
            .register(Box::new(evidence.clone()))
            .expect("registered once");
        Self {
            registry,
            audits,
            evidence,
        }
    }
}

impl AuditMetrics {
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }
}

/// The most recent [`Recent::CAP`] receipt ids audited, oldest forgotten first: a long-running
/// validator's memory stays bounded, and a batch is only seen again soon after its commitment.
#[derive(Default)]
struct Recent {
    ids: BTreeSet<Hash>,
    order: VecDeque<Hash>,
}

impl Recent {
    const CAP: usize = 100_000;

    fn contains(&self, id: &Hash) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: Hash) {
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > Self::CAP {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("ledger: {0}")]
    Chain(#[from] agora_market::ChainError),
    #[error("gateway {url}: {message}")]
    Gateway { url: String, message: String },
}

impl AuditRole {
    /// An auditor signing with `sender`'s key, with one [`Auditor`] per model sha256 it can
    /// replay.
    pub fn new(
        sender: Arc<TxSender>,
        auditors: BTreeMap<Hash, Auditor>,
        settings: RoleSettings,
    ) -> AuditRole {
        let scorer = settings
            .score_dir
            .clone()
            .map(|dir| Scorer::new(dir).with_probes(settings.probe.clone()));
        AuditRole {
            sender,
            auditors,
            scorer,
            settings,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            watching: BTreeMap::new(),
            done: Recent::default(),
            metrics: AuditMetrics::default(),
        }
    }

    /// Audit outcomes, for the node's `/metrics` (take it before `run` consumes the role).
    pub fn metrics(&self) -> AuditMetrics {
        self.metrics.clone()
    }

    fn chain(&self) -> &ChainClient {
        self.sender.chain()
    }

    fn me(&self) -> Address {
        self.sender.address()
    }

    /// Follows the ledger from the block after `after` until the task is dropped.
    pub async fn run(mut self, after: u64) {
        let mut next = after + 1;
        let mut tick = tokio::time::interval(self.settings.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.step(next).await {
                Ok(n) => next = n,
                Err(e) => {
                    tracing::warn!(target: "agora::audit", error = %e, height = next, "audit step failed; retrying");
                }
            }
            self.watch().await;
        }
    }

    /// Reads the finalized blocks from `next` to the tip; returns the next height to read.
    async fn step(&mut self, mut next: u64) -> Result<u64, StepError> {
        let tip = self.chain().status().await?;
        while next <= tip.height {
            let Some(block) = self.chain().block(next, BlockTxs::Full).await? else {
                break;
            };
            let txs = block.transactions.unwrap_or_default();
            let epoch_blocks = tip.params.incentives.epoch_blocks;
            for (stx, r) in txs.iter().zip(&block.receipts) {
                if let (TxBody::CommitReceipts { root, .. }, Outcome::Success) =
                    (&stx.tx.body, &r.outcome)
                {
                    let b = beacon(block.id, *root);
                    let at = (next, epoch_blocks);
                    self.commitment(stx.tx.signer, *root, b, tip.params.audit_bps, at)
                        .await;
                }
            }
            let sender = self.sender.clone();
            if let Some(scorer) = self.scorer.as_mut() {
                scorer.on_block(next, epoch_blocks, &sender).await;
            }
            next += 1;
        }
        Ok(next)
    }

    /// One commitment (in block `at.0`, incentive epochs of `at.1` blocks): find its batch,
    /// give its paid receipts to the scorer, draw, audit what is ours.
    async fn commitment(
        &mut self,
        committer: Address,
        root: Hash,
        beacon: Hash,
        audit_bps: u16,
        at: (u64, u64),
    ) {
        let Some((gateway, batch)) = self.find_batch(&root).await else {
            tracing::debug!(target: "agora::audit", %root, "no configured gateway serves this batch");
            return;
        };
        let active: Vec<Address> = match self.chain().validators().await {
            Ok(v) => v.active.into_iter().map(|v| v.address).collect(),
            Err(e) => {
                tracing::warn!(target: "agora::audit", error = %e, "cannot read the validator set");
                return;
            }
        };
        for receipt in batch.receipts {
            let r = &receipt.receipt;
            // Only the payer's own commitment draws its receipts (ledger audit.rs), and only
            // the receipts it paid for count as served work.
            if r.payer != committer {
                continue;
            }
            if let Some(scorer) = self.scorer.as_mut() {
                scorer.observe_receipt(at.0, at.1, r);
            }
            if !self.auditors.contains_key(&r.model) {
                continue;
            }
            let rid = receipt_id(&receipt);
            let probation = match self.chain().provider(&r.provider).await {
                Ok(Some(p)) => p.probation_until > p.height,
                _ => false,
            };
            if !selected(beacon, rid, audit_bps, probation) || self.done.contains(&rid) {
                continue;
            }
            let candidates: Vec<Address> = active
                .iter()
                .filter(|a| **a != r.provider)
                .copied()
                .collect();
            let order = auditors(beacon, rid, &candidates, AUDITORS_PER_RECEIPT);
            match order.iter().position(|a| *a == self.me()) {
                Some(0) => {
                    self.done.insert(rid);
                    self.audit_and_post(&gateway, &receipt).await;
                }
                Some(_) => {
                    self.watching.insert(
                        rid,
                        Watch {
                            receipt,
                            gateway: gateway.clone(),
                            first: order[0],
                            since: Instant::now(),
                        },
                    );
                }
                None => {}
            }
        }
    }

    /// The first configured gateway holding the batch committed as `root`, checked against it.
    async fn find_batch(&self, root: &Hash) -> Option<(String, BatchView)> {
        for g in &self.settings.gateways {
            let url = format!(
                "{}{}",
                g.trim_end_matches('/'),
                fill(paths::BATCH, "{root}", root)
            );
            let Ok(view) = self.get_json::<BatchView>(&url, &[]).await else {
                continue;
            };
            let ids: Vec<Hash> = view.receipts.iter().map(receipt_id).collect();
            if view.root == *root && receipts_root(&ids) == *root {
                return Some((g.clone(), view));
            }
            tracing::warn!(target: "agora::audit", gateway = %g, %root, "a batch that does not hash to its commitment");
        }
        None
    }

    /// Re-audits the watched receipts whose first auditor posted a failing verdict.
    async fn watch(&mut self) {
        let rids: Vec<Hash> = self.watching.keys().copied().collect();
        for rid in rids {
            let Some(w) = self.watching.get(&rid) else {
                continue;
            };
            if w.since.elapsed() > self.settings.reaudit_wait {
                self.watching.remove(&rid);
                continue;
            }
            let (gateway, first) = (w.gateway.clone(), w.first);
            let board = self.board(&gateway, &rid).await;
            let first_failed = board.iter().any(|v| v.auditor == first && v.verdict.failed);
            let first_passed = board
                .iter()
                .any(|v| v.auditor == first && !v.verdict.failed);
            if first_passed {
                self.watching.remove(&rid);
            } else if first_failed && let Some(w) = self.watching.remove(&rid) {
                self.done.insert(rid);
                tracing::info!(target: "agora::audit", receipt = %rid, "first audit failed; re-auditing");
                self.audit_and_post(&gateway, &w.receipt).await;
            }
        }
    }

    /// Fetches the case, audits it, posts the signed verdict and, on a failure, reports it when
    /// the board holds enough failing verdicts.
    async fn audit_and_post(&mut self, gateway: &str, receipt: &SignedReceipt) {
        let rid = receipt_id(receipt);
        let report = match self.audit(gateway, receipt).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: "agora::audit", receipt = %rid, error = %e, "cannot audit");
                self.metrics.audits.with_label_values(&["error"]).inc();
                return;
            }
        };
        let failed = report.failed();
        self.metrics
            .audits
            .with_label_values(&[if failed { "fail" } else { "pass" }])
            .inc();
        if let Some(scorer) = self.scorer.as_mut() {
            scorer.observe_verdict(receipt.receipt.provider, failed);
        }
        if failed {
            tracing::warn!(target: "agora::audit", receipt = %rid, provider = %receipt.receipt.provider, findings = ?report.findings, "audit failed");
        } else {
            tracing::info!(target: "agora::audit", receipt = %rid, provider = %receipt.receipt.provider, "audit passed");
        }
        let verdict = AuditVerdict {
            chain_id: self.sender.chain_id().to_string(),
            receipt: rid,
            failed,
            detail: Hash::of(
                HashDomain::AuditReport,
                format!("{:?}", report.findings).as_bytes(),
            ),
        }
        .sign(self.sender.key());
        let url = format!("{}{}", gateway.trim_end_matches('/'), paths::VERDICTS);
        if let Err(e) = self.http.post(&url).json(&verdict).send().await {
            tracing::warn!(target: "agora::audit", error = %e, "cannot post the verdict");
        }
        if failed {
            self.report(gateway, receipt, verdict).await;
        }
    }

    async fn audit(
        &self,
        gateway: &str,
        receipt: &SignedReceipt,
    ) -> Result<AuditReport, StepError> {
        let rid = receipt_id(receipt);
        let path = fill(paths::CASE, "{receipt_id}", rid);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let headers = sign_fetch(self.sender.key(), "GET", &path, at);
        let url = format!("{}{}", gateway.trim_end_matches('/'), path);
        let case: KeptReceipt = self.get_json(&url, &headers).await?;
        let bad = |message: &str| StepError::Gateway {
            url: url.clone(),
            message: message.into(),
        };
        // The case must be of the committed receipt, not one the gateway prefers.
        if case.signed != *receipt {
            return Err(bad("the case is of another receipt"));
        }
        let replay = case
            .replay
            .as_ref()
            .ok_or_else(|| bad("the case has no replay"))?;
        let auditor = self
            .auditors
            .get(&receipt.receipt.model)
            .ok_or_else(|| bad("no auditor for the model"))?;
        auditor
            .audit(receipt, case.proof.as_ref(), replay)
            .await
            .map_err(|e| bad(&e.to_string()))
    }

    /// The verdicts `gateway` holds on `rid` that check: signed, this chain, this receipt.
    async fn board(&self, gateway: &str, rid: &Hash) -> Vec<SignedVerdict> {
        let url = format!(
            "{}{}",
            gateway.trim_end_matches('/'),
            fill(paths::RECEIPT_VERDICTS, "{receipt_id}", rid)
        );
        let Ok(view) = self.get_json::<VerdictsView>(&url, &[]).await else {
            return Vec::new();
        };
        view.verdicts
            .into_iter()
            .filter(|v| {
                v.verify().is_ok()
                    && v.verdict.receipt == *rid
                    && v.verdict.chain_id == self.sender.chain_id()
            })
            .take(MAX_AUDIT_VERDICTS * 4)
            .collect()
    }

    /// Submits the evidence when this verdict and the board's make at least two failing ones
    /// from distinct active validators.
    async fn report(&mut self, gateway: &str, receipt: &SignedReceipt, mine: SignedVerdict) {
        let rid = receipt_id(receipt);
        let active: BTreeSet<Address> = match self.chain().validators().await {
            Ok(v) => v.active.into_iter().map(|v| v.address).collect(),
            Err(_) => return,
        };
        let mut seen = BTreeSet::from([mine.auditor]);
        let mut verdicts = vec![mine];
        for v in self.board(gateway, &rid).await {
            if v.verdict.failed
                && v.auditor != receipt.receipt.provider
                && active.contains(&v.auditor)
                && seen.insert(v.auditor)
                && verdicts.len() < MAX_AUDIT_VERDICTS
            {
                verdicts.push(v);
            }
        }
        if verdicts.len() < MIN_FAILING_VERDICTS {
            return;
        }
        let evidence = Evidence::FailedAudit {
            receipt: Box::new(receipt.clone()),
            verdicts,
        };
        match self.sender.send(TxBody::Slash(evidence)).await {
            Ok((tx, _)) => {
                self.metrics.evidence.inc();
                tracing::warn!(target: "agora::audit", receipt = %rid, provider = %receipt.receipt.provider, %tx, "failed audit reported: provider slashed");
            }
            // Another auditor reported first, most likely.
            Err(e) => {
                tracing::info!(target: "agora::audit", receipt = %rid, error = %e, "evidence not taken");
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<T, StepError> {
        let err = |message: String| StepError::Gateway {
            url: url.to_string(),
            message,
        };
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut resp = req.send().await.map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("status {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(err("answer too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    #[test]
    fn the_audited_set_forgets_the_oldest_beyond_its_cap() {
        let mut r = Recent::default();
        let id = |i: u32| Hash::of(HashDomain::Request, &i.to_le_bytes());
        for i in 0..(Recent::CAP as u32 + 10) {
            r.insert(id(i));
            r.insert(id(i)); // twice: counted once
        }
        assert_eq!(r.ids.len(), Recent::CAP);
        assert_eq!(r.order.len(), Recent::CAP);
        assert!(!r.contains(&id(9)) && r.contains(&id(10)));
        assert!(r.contains(&id(Recent::CAP as u32 + 9)));
    }
}
