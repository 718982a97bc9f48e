//! The gateway's side of audits: it commits the ids of the receipts it holds on the ledger in
//! batches (`CommitReceipts`), serves each batch and, to active validators only, each job's
//! replay, and keeps the board of verdicts auditors post (`agora_market::audit`).
//!
//! ```text
//!  relay: ReceiptStore::record ──► uncommitted queue
//!  every commit_every: take ≤ MAX_BATCH ids ──► root = receipts_root(ids)
//!        append {root, ids} to audit-batches.jsonl (fsynced) ──► CommitReceipts{root, count}
//!        final: the batch is served;  refused: the ids go back to the queue
//! ```
//!
//! A restart reads the batch file back, so batches stay served and their receipts are not
//! committed twice; receipts that were waiting go into the next batch.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_ledger::audit::receipts_root;
use agora_market::audit::{BatchView, KeptReceipt, MAX_BATCH, VerdictsView};
use agora_market::{ChainClient, TxSender};
use agora_types::tx::limits::MAX_AUDIT_VERDICTS;
use agora_types::{Address, Hash, SignedVerdict, TxBody};
use serde::{Deserialize, Serialize};

use crate::feed::{Feed, FeedEvent, VerdictEvent, now_ms};
use crate::receipts::ReceiptStore;

/// How long the active validator set read from the ledger is reused.
const VALIDATORS_TTL: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct BatchLine {
    root: Hash,
    ids: Vec<Hash>,
}

/// Why an auditor's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("{0} is not an active validator")]
    NotAValidator(Address),
    #[error("the ledger cannot be read: {0}")]
    Chain(String),
    #[error("no such batch")]
    NoBatch,
    #[error("no such receipt")]
    NoReceipt,
    #[error("the verdict's signature is not its auditor's")]
    BadSignature,
    #[error("the verdict is for chain {0}")]
    WrongChain(String),
}

#[derive(Default)]
struct Board {
    batches: BTreeMap<Hash, Vec<Hash>>,
    verdicts: BTreeMap<Hash, Vec<SignedVerdict>>,
}

/// Batches, cases and verdicts.
pub struct AuditDesk {
    receipts: Arc<ReceiptStore>,
    chain: ChainClient,
    chain_id: String,
    path: Option<PathBuf>,
    board: Mutex<Board>,
    validators: tokio::sync::Mutex<Option<(Instant, BTreeSet<Address>)>>,
    /// Where each new verdict is announced (the dashboard's live view).
    feed: Arc<Feed>,
}

impl AuditDesk {
    /// The desk over `receipts`, reading back the batch file at `path` (`None`: memory only).
    pub fn open(
        receipts: Arc<ReceiptStore>,
        chain: ChainClient,
        chain_id: String,
        path: Option<PathBuf>,
        feed: Arc<Feed>,
    ) -> std::io::Result<AuditDesk> {
        let mut board = Board::default();
        if let Some(p) = &path {
            match std::fs::File::open(p) {
                Ok(f) => {
                    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
                        match serde_json::from_str::<BatchLine>(&line?) {
                            Ok(b) => {
                                board.batches.insert(b.root, b.ids);
                            }
                            Err(e) => {
                                tracing::warn!(target: "agora::gateway", path = %p.display(), line = n + 1, error = %e, "skipping an unreadable batch line");
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let done: BTreeSet<Hash> = board.batches.values().flatten().copied().collect();
        receipts.mark_committed(&done);
        Ok(AuditDesk {
            receipts,
            chain,
            chain_id,
            path,
            board: Mutex::new(board),
            validators: tokio::sync::Mutex::new(None),
            feed,
        })
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits the next batch of waiting receipts; returns its root and size (`None`: nothing
    /// waited, or the commitment did not land and the ids wait for the next try).
    pub async fn commit_next(&self, sender: &TxSender) -> Option<(Hash, usize)> {
        let ids = self.receipts.take_uncommitted(MAX_BATCH);
        if ids.is_empty() {
            return None;
        }
        let root = receipts_root(&ids);
        let count = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        // Served from before the transaction exists: an auditor may see the block first.
        self.board().batches.insert(root, ids.clone());
        let line = BatchLine {
            root,
            ids: ids.clone(),
        };
        let path = self.path.clone();
        let sent = sender
            .send_after(TxBody::CommitReceipts { root, count }, |_| async move {
                tokio::task::spawn_blocking(move || append(path, &line))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            })
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(target: "agora::gateway", %root, count, "receipts committed for audit");
                Some((root, ids.len()))
            }
            Err(e) => {
                tracing::warn!(target: "agora::gateway", %root, error = %e, "receipt commitment did not land; retrying with the next batch");
                self.board().batches.remove(&root);
                self.receipts.requeue(&ids);
                None
            }
        }
    }

    /// Commits every `every` until the task is dropped.
    pub async fn commit_loop(self: Arc<Self>, sender: Arc<TxSender>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            while let Some((_, n)) = self.commit_next(&sender).await {
                if n < MAX_BATCH {
                    break;
                }
            }
        }
    }

    /// The signed receipts of the batch committed as `root`.
    pub fn batch(&self, root: &Hash) -> Result<BatchView, DeskError> {
        let ids = self
            .board()
            .batches
            .get(root)
            .cloned()
            .ok_or(DeskError::NoBatch)?;
        let receipts = ids
            .iter()
            .filter_map(|rid| self.receipts.by_receipt_id(rid).map(|k| k.signed))
            .collect();
        Ok(BatchView {
            root: *root,
            receipts,
        })
    }

    /// Whether `who` is in the ledger's active validator set (read at most every
    /// [`VALIDATORS_TTL`]).
    pub async fn check_validator(&self, who: &Address) -> Result<(), DeskError> {
        let mut cached = self.validators.lock().await;
        let stale = cached
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > VALIDATORS_TTL);
        if stale {
            let view = self
                .chain
                .validators()
                .await
                .map_err(|e| DeskError::Chain(e.to_string()))?;
            *cached = Some((
                Instant::now(),
                view.active.into_iter().map(|v| v.address).collect(),
            ));
        }
        match cached.as_ref() {
            Some((_, set)) if set.contains(who) => Ok(()),
            _ => Err(DeskError::NotAValidator(*who)),
        }
    }

    /// One job for an auditor already checked to be an active validator.
    pub fn case(&self, rid: &Hash) -> Result<KeptReceipt, DeskError> {
        self.receipts.by_receipt_id(rid).ok_or(DeskError::NoReceipt)
    }

    /// Posts a verdict: signed by its auditor, for this chain, on a receipt this gateway holds,
    /// by an active validator. One per auditor (the first kept), at most `MAX_AUDIT_VERDICTS`
    /// per receipt.
    pub async fn post(&self, v: SignedVerdict) -> Result<(), DeskError> {
        v.verify().map_err(|_| DeskError::BadSignature)?;
        if v.verdict.chain_id != self.chain_id {
            return Err(DeskError::WrongChain(v.verdict.chain_id.clone()));
        }
        let Some(kept) = self.receipts.by_receipt_id(&v.verdict.receipt) else {
            return Err(DeskError::NoReceipt);
        };
        self.check_validator(&v.auditor).await?;
        let event = VerdictEvent {
            at_ms: now_ms(),
            receipt_id: v.verdict.receipt,
            provider: kept.signed.receipt.provider,
            auditor: v.auditor,
            failed: v.verdict.failed,
        };
        let added = {
            let mut board = self.board();
            let list = board.verdicts.entry(v.verdict.receipt).or_default();
            let new =
                list.len() < MAX_AUDIT_VERDICTS && list.iter().all(|o| o.auditor != v.auditor);
            if new {
                list.push(v);
            }
            new
        };
        if added {
            self.feed.publish(FeedEvent::Verdict(event));
        }
        Ok(())
    }

    pub fn verdicts(&self, rid: &Hash) -> VerdictsView {
        VerdictsView {
            receipt: *rid,
            verdicts: self.board().verdicts.get(rid).cloned().unwrap_or_default(),
        }
    }
}

fn append(path: Option<PathBuf>, line: &BatchLine) -> std::io::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(&bytes)?;
    f.sync_data()
}
