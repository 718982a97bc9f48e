//! Every provider receipt this gateway received, kept so a client, an auditor or an operator can
//! ask for it by request id (`GET /v1/receipts/{request_id}`).
//!
//! On disk: one JSON line per receipt, appended and fsynced before the completion's answer ends,
//! so a receipt a client was told about survives a crash. In memory: the receipts of the latest
//! [`MAX_KEPT`] requests (older ones stay in the file). A line that does not parse (a torn last
//! write) is skipped with a warning when the file is read back.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;

use agora_market::protocol::{ProofBytes, Replay, SignedReceipt};
use agora_types::Hash;
use serde::{Deserialize, Serialize};

/// A provider's signed receipt, the proof of inference that came with it (the receipt's
/// `proof_hash` binds it) and what an auditor needs to replay the response. On disk and on the API it is the receipt's JSON object with a `proof`
/// field (hex) beside its fields; lines written before proofs existed read back without one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptReceipt {
    #[serde(flatten)]
    pub signed: SignedReceipt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofBytes>,
    /// The job and the delivered tokens, for an auditor (generated responses only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
}

/// Request ids whose receipts are kept in memory.
pub const MAX_KEPT: usize = 100_000;
/// Receipts kept for one request id (one per provider that served part of it).
const MAX_PER_REQUEST: usize = 16;

#[derive(Default)]
struct Index {
    by_request: BTreeMap<Hash, Vec<KeptReceipt>>,
    order: VecDeque<Hash>,
}

impl Index {
    fn insert(&mut self, r: KeptReceipt) {
        let id = r.signed.receipt.request_id;
        let list = self.by_request.entry(id).or_insert_with(|| {
            self.order.push_back(id);
            Vec::new()
        });
        if list.len() < MAX_PER_REQUEST {
            list.push(r);
        }
        while self.order.len() > MAX_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.by_request.remove(&old);
            }
        }
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
    use agora_market::protocol::{InferenceReceipt, Price};
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
