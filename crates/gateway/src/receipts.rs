//! Every provider receipt this gateway received, kept so a client, an auditor or an operator can
//! ask for it by request id (`GET /v1/receipts/{request_id}`).
//!
//! On disk: one JSON line per receipt, appended and fsynced before the completion's answer ends,
//! so a receipt a client was told about survives a crash. In memory: the receipts of the latest
//! [`MAX_KEPT`] requests (older ones stay in the file). A line that does not parse (a torn last
//! write) is skipped with a warning when the file is read back. Replayable receipts also wait
//! in a queue for the auditors' next committed batch (`audit`).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;

use agora_types::Hash;
use agora_types::audit::receipt_id;

pub use agora_market::audit::KeptReceipt;

/// Request ids whose receipts are kept in memory.
pub const MAX_KEPT: usize = 100_000;
/// Receipts kept for one request id (one per provider that served part of it).
const MAX_PER_REQUEST: usize = 16;

#[derive(Default)]
struct Index {
    by_request: BTreeMap<Hash, Vec<KeptReceipt>>,
    /// `receipt_id` -> its request id, for the auditors' case lookups.
    by_receipt: BTreeMap<Hash, Hash>,
    order: VecDeque<Hash>,
    /// Ids of replayable receipts not yet in a committed batch, oldest first.
    uncommitted: VecDeque<Hash>,
}

impl Index {
    fn insert(&mut self, r: KeptReceipt) {
        let id = r.signed.receipt.request_id;
        let rid = receipt_id(&r.signed);
        if self.by_receipt.contains_key(&rid) {
            return;
        }
        let list = self.by_request.entry(id).or_insert_with(|| {
            self.order.push_back(id);
            Vec::new()
        });
        if list.len() < MAX_PER_REQUEST {
            if r.replay.is_some() {
                self.uncommitted.push_back(rid);
                if self.uncommitted.len() > MAX_KEPT {
                    self.uncommitted.pop_front();
                }
            }
            self.by_receipt.insert(rid, id);
            list.push(r);
        }
        while self.order.len() > MAX_KEPT {
            if let Some(old) = self.order.pop_front()
                && let Some(gone) = self.by_request.remove(&old)
            {
                for k in &gone {
                    self.by_receipt.remove(&receipt_id(&k.signed));
                }
            }
        }
    }

    fn by_receipt_id(&self, rid: &Hash) -> Option<&KeptReceipt> {
        let request = self.by_receipt.get(rid)?;
        self.by_request
            .get(request)?
            .iter()
            .find(|k| receipt_id(&k.signed) == *rid)
    }
}

/// The receipt store.
pub struct ReceiptStore {
    path: Option<PathBuf>,
    index: std::sync::Mutex<Index>,
    /// Serialises appends.
    disk: tokio::sync::Mutex<()>,
}

impl ReceiptStore {
    /// Opens the store at `path` (`None`: memory only), reading back what it holds.
    pub fn open(path: Option<PathBuf>) -> std::io::Result<ReceiptStore> {
        let mut index = Index::default();
        if let Some(p) = &path {
            match std::fs::File::open(p) {
                Ok(f) => {
                    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
                        let line = line?;
                        match serde_json::from_str::<KeptReceipt>(&line) {
                            Ok(r) => index.insert(r),
                            Err(e) => {
                                tracing::warn!(target: "agora::gateway", path = %p.display(), line = n + 1, error = %e, "skipping an unreadable receipt line");
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ReceiptStore {
            path,
            index: std::sync::Mutex::new(index),
            disk: tokio::sync::Mutex::new(()),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `r`: appended to the file (fsynced) and indexed by its request id.
    pub async fn record(&self, r: &KeptReceipt) {
        self.index().insert(r.clone());
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        line.push(b'\n');
        let _guard = self.disk.lock().await;
        let res = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&line)?;
            f.sync_data()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        if let Err(e) = res {
            tracing::error!(target: "agora::gateway", error = %e, "cannot write a receipt");
        }
    }

    /// The kept receipt whose `receipt_id` is `rid`.
    pub fn by_receipt_id(&self, rid: &Hash) -> Option<KeptReceipt> {
        self.index().by_receipt_id(rid).cloned()
    }

    /// Up to `max` ids of replayable receipts not yet handed to a batch, oldest first, taken out
    /// of the queue (evicted ones are skipped).
    pub fn take_uncommitted(&self, max: usize) -> Vec<Hash> {
        let mut index = self.index();
        let mut out = Vec::new();
        while out.len() < max {
            let Some(rid) = index.uncommitted.pop_front() else {
                break;
            };
            if index.by_receipt.contains_key(&rid) {
                out.push(rid);
            }
        }
        out
    }

    /// Puts ids back at the front of the queue (a commitment that did not land).
    pub fn requeue(&self, ids: &[Hash]) {
        let mut index = self.index();
        for rid in ids.iter().rev() {
            index.uncommitted.push_front(*rid);
        }
    }

    /// Takes ids that an earlier run already committed out of the queue.
    pub fn mark_committed(&self, ids: &std::collections::BTreeSet<Hash>) {
        self.index().uncommitted.retain(|rid| !ids.contains(rid));
    }

    /// The receipts of one request, in the order they arrived.
    pub fn get(&self, request_id: &Hash) -> Vec<KeptReceipt> {
        self.index()
            .by_request
            .get(request_id)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_market::protocol::{InferenceReceipt, Price, ProofBytes};
    use agora_types::{Amount, SecretKey};

    fn receipt(request: u8, provider: &str) -> KeptReceipt {
        let key = SecretKey::from_test_seed(provider);
        let signed = InferenceReceipt {
            chain_id: "test".into(),
            request_id: Hash([request; 32]),
            provider: key.public(),
            payer: key.public(),
            channel: Hash::ZERO,
            model: Hash::ZERO,
            seed: 0,
            params_hash: Hash::ZERO,
            work_hash: Hash::ZERO,
            continuation_hash: Hash::ZERO,
            prompt_hash: Hash::ZERO,
            proof_hash: Hash::ZERO,
            engine: "test".into(),
            prompt_tokens: 1,
            completion_tokens: 2,
            continuation_tokens: 0,
            price: Price {
                input_per_million: Amount(1),
                output_per_million: Amount(1),
            },
            charged: Amount(1),
            output_hash: Hash::ZERO,
            time_ms: 0,
            complete: true,
        }
        .sign(&key);
        KeptReceipt {
            signed,
            proof: Some(ProofBytes(vec![request, 7])),
            replay: None,
        }
    }

    #[tokio::test]
    async fn receipts_survive_a_restart_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receipts.jsonl");
        let store = ReceiptStore::open(Some(path.clone())).unwrap();
        store.record(&receipt(1, "a")).await;
        store.record(&receipt(1, "b")).await;
        store.record(&receipt(2, "a")).await;
        drop(store);
        // A crash mid-append leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"receipt\":{\"chain").unwrap();
        let store = ReceiptStore::open(Some(path)).unwrap();
        let one = store.get(&Hash([1; 32]));
        assert_eq!(one.len(), 2);
        assert!(one.iter().all(|k| k.signed.verify()));
        assert_eq!(
            one[0],
            receipt(1, "a"),
            "the proof is kept beside the receipt"
        );
        assert_eq!(store.get(&Hash([2; 32])).len(), 1);
        assert!(store.get(&Hash([3; 32])).is_empty());
    }

    #[test]
    fn a_line_written_before_proofs_reads_back_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receipts.jsonl");
        let old = serde_json::to_string(&receipt(4, "a").signed).unwrap();
        std::fs::write(&path, format!("{old}\n")).unwrap();
        let store = ReceiptStore::open(Some(path)).unwrap();
        let got = store.get(&Hash([4; 32]));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].proof, None);
        assert!(got[0].signed.verify());
    }
}
