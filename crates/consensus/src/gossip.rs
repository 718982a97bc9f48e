//! Transaction gossip between validators: a transaction admitted by any validator's mempool is
//! sent to every other validator on p2p channel [`crate::channel::TXS`], so whoever leads the
//! next view can include it.
//!
//! ```text
//!   RPC / wallet ──► mempool (validator A) ──► batch ──► p2p ch 5 ──► every other validator
//!                                                                      decode (bounded) ──► admit
//! ```
//!
//! One hop: the validator network is a full mesh, so a received transaction is admitted and not
//! sent on again (no echo, no amplification).
//!
//! Wire format of one message (one batch): `u16` count, then per transaction a `u32` length and
//! the canonical `SignedTx` encoding. Bounds, checked before anything is allocated: count <=
//! [`MAX_BATCH_TXS`], each length <= `MAX_TX_BYTES`, the whole message <= [`MAX_BATCH_BYTES`],
//! no trailing bytes. A message that breaks them, or a transaction that only a dishonest sender
//! could produce (bad signature, wrong chain, oversized), gets the sending peer blocked. Stale
//! nonces and duplicates are normal races between mempools and are ignored.

use agora_types::tx::limits::MAX_TX_BYTES;
use agora_types::{BatchVerifier, Decode, Encode, SignDomain, SignedTx};
use commonware_p2p::{Blocker, Receiver, Recipients, Sender};

/// Most transactions in one gossip message.
pub const MAX_BATCH_TXS: usize = 1_024;
/// Largest gossip message (well under the p2p layer's maximum message size).
pub const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// Why a gossip message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("message of {0} bytes exceeds the gossip bound")]
    TooLarge(usize),
    #[error("message ends early")]
    Truncated,
    #[error("{0} transactions exceed the batch bound")]
    TooMany(usize),
    #[error("transaction of {0} bytes exceeds the bound")]
    TxTooLarge(usize),
    #[error("transaction does not decode: {0}")]
    Undecodable(String),
    #[error("trailing bytes after the last transaction")]
    Trailing,
}

/// What the receiving mempool made of one gossiped transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted.
    Accepted,
    /// Not admitted for an honest reason (already pending, nonce already used, mempool full).
    Ignored,
    /// Not admitted for a reason only a dishonest sender causes (bad signature, wrong chain).
    Offending,
}

/// Encodes up to [`MAX_BATCH_TXS`] transactions into messages of at most [`MAX_BATCH_BYTES`].
pub fn encode_batches(txs: &[SignedTx]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut size = 2usize;
    let flush = |current: &mut Vec<Vec<u8>>, out: &mut Vec<Vec<u8>>| {
        if current.is_empty() {
            return;
        }
        let mut msg = Vec::with_capacity(2 + current.iter().map(|t| 4 + t.len()).sum::<usize>());
        msg.extend_from_slice(&(current.len() as u16).to_be_bytes());
        for t in current.drain(..) {
            msg.extend_from_slice(&(t.len() as u32).to_be_bytes());
            msg.extend_from_slice(&t);
        }
        out.push(msg);
    };
    for stx in txs {
        let bytes = stx.encode();
        if bytes.len() > MAX_TX_BYTES {
            continue; // never admitted anywhere; do not send
        }
        if current.len() == MAX_BATCH_TXS || size + 4 + bytes.len() > MAX_BATCH_BYTES {
            flush(&mut current, &mut out);
            size = 2;
        }
        size += 4 + bytes.len();
        current.push(bytes);
    }
    flush(&mut current, &mut out);
    out
}

/// Decodes one gossip message, checking every bound before allocating.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<SignedTx>, BatchError> {
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge(bytes.len()));
    }
    let (count, mut rest) = bytes
        .split_first_chunk::<2>()
        .ok_or(BatchError::Truncated)?;
    let count = u16::from_be_bytes(*count) as usize;
    if count > MAX_BATCH_TXS {
        return Err(BatchError::TooMany(count));
    }
    // Every entry takes at least 4 bytes: a count the input cannot hold is rejected up front.
    if count * 4 > rest.len() {
        return Err(BatchError::Truncated);
    }
    let mut txs = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or(BatchError::Truncated)?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > MAX_TX_BYTES {
            return Err(BatchError::TxTooLarge(len));
        }
        if tail.len() < len {
            return Err(BatchError::Truncated);
        }
        let (tx, tail) = tail.split_at(len);
        txs.push(SignedTx::decode(tx).map_err(|e| BatchError::Undecodable(e.to_string()))?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(BatchError::Trailing);
    }
    Ok(txs)
}

/// Sends `txs` to every other validator (best effort: offline or rate-limited peers miss it;
/// the transaction is still in this validator's mempool for its own turn as leader).
pub fn broadcast<S: Sender>(sender: &mut S, txs: &[SignedTx]) {
    for msg in encode_batches(txs) {
        let _ = sender.send(Recipients::All, msg, false);
    }
}

/// Most transactions whose signatures one coalesced verification checks (see [`receive`]).
pub const MAX_COALESCED_TXS: usize = 4_096;

/// Receives gossip until the channel closes: checks signatures in one batch verification,
/// admits each transaction with a valid signature with `admit` (which may rely on the
/// signature being checked), and blocks a peer whose message is malformed or carries a
/// transaction only a dishonest sender produces (a bad signature included).
///
/// Messages that arrived while the previous verification ran are verified together (up to
/// [`MAX_COALESCED_TXS`]): a batch verification costs less per signature the larger it is, so
/// under load the receiver gets cheaper per transaction instead of falling behind.
pub async fn receive<R, B>(
    mut receiver: R,
    mut blocker: B,
    mut admit: impl FnMut(SignedTx) -> Verdict,
) where
    R: Receiver,
    B: Blocker<PublicKey = R::PublicKey>,
{
    use futures::{SinkExt as _, StreamExt as _};
    let (mut queue, mut arrived) = futures::channel::mpsc::channel(receiver.capacity().get());
    let forward = async move {
        while let Ok(message) = receiver.recv().await {
            if queue.send(message).await.is_err() {
                break;
            }
        }
    };
    let process = async move {
        while let Some(first) = arrived.next().await {
            let mut batches: Vec<(R::PublicKey, Vec<SignedTx>)> = Vec::new();
            let mut total = 0;
            let mut next = Some(first);
            while let Some((peer, msg)) = next.take() {
                match decode_batch(msg.as_ref()) {
                    Ok(txs) => {
                        total += txs.len();
                        batches.push((peer, txs));
                    }
                    Err(error) => {
                        tracing::warn!(target: "agora::gossip", %peer, %error,
                            "malformed gossip; blocking peer");
                        let _ = blocker.block(peer);
                    }
                }
                if total < MAX_COALESCED_TXS {
                    next = arrived.try_recv().ok();
                }
            }
            let all: Vec<&SignedTx> = batches.iter().flat_map(|(_, txs)| txs).collect();
            let bad = bad_signatures_of(&all);
            drop(all);
            let mut index = 0;
            for (peer, txs) in batches {
                let mut offending = 0;
                for stx in txs {
                    let verdict = if bad.contains(&index) {
                        Verdict::Offending
                    } else {
                        admit(stx)
                    };
                    index += 1;
                    if verdict == Verdict::Offending {
                        offending += 1;
                    }
                }
                if offending > 0 {
                    tracing::warn!(target: "agora::gossip", %peer, offending,
                        "peer gossiped invalid transactions; blocking");
                    let _ = blocker.block(peer);
                }
            }
        }
    };
    futures::future::join(forward, process).await;
}

/// Indices of the transactions whose signatures fail, checked in one batch.
pub fn bad_signatures(txs: &[SignedTx]) -> std::collections::BTreeSet<usize> {
    bad_signatures_of(&txs.iter().collect::<Vec<_>>())
}

/// [`bad_signatures`] over borrowed transactions (no copies of a batch the caller keeps).
pub fn bad_signatures_of(txs: &[&SignedTx]) -> std::collections::BTreeSet<usize> {
    let mut batch = BatchVerifier::new();
    for stx in txs {
        batch.queue(
            &stx.tx.signer,
            SignDomain::Transaction,
            &stx.tx.encode(),
            &stx.signature,
        );
    }
    batch
        .verify()
        .err()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::{Amount, SecretKey, Tx, TxBody};

    fn tx(i: u64) -> SignedTx {
        let k = SecretKey::from_test_seed("gossip");
        Tx {
            chain_id: "c".into(),
            signer: k.public(),
            nonce: i,
            fee: Amount(1),
            body: TxBody::Transfer {
                to: k.public(),
                amount: Amount(i as u128),
            },
        }
        .sign(&k)
    }

    #[test]
    fn batches_round_trip_and_split_at_the_bound() {
        let txs: Vec<SignedTx> = (0..2_500).map(tx).collect();
        let msgs = encode_batches(&txs);
        assert_eq!(msgs.len(), 3);
        let back: Vec<SignedTx> = msgs.iter().flat_map(|m| decode_batch(m).unwrap()).collect();
        assert_eq!(back, txs);
    }

    #[test]
    fn hostile_batches_are_rejected_without_panics() {
        let good = encode_batches(&[tx(1), tx(2)]).remove(0);
        assert_eq!(decode_batch(&[]), Err(BatchError::Truncated));
        assert_eq!(
            decode_batch(&[0xff, 0xff]),
            Err(BatchError::TooMany(65_535))
        );
        assert_eq!(decode_batch(&[0x01, 0x00]), Err(BatchError::Truncated));
        assert_eq!(
            decode_batch(&[0, 1, 0xff, 0xff, 0xff, 0xff]),
            Err(BatchError::TxTooLarge(u32::MAX as usize))
        );
        assert_eq!(
            decode_batch(&vec![0u8; MAX_BATCH_BYTES + 1]),
            Err(BatchError::TooLarge(MAX_BATCH_BYTES + 1))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode_batch(&trailing), Err(BatchError::Trailing));
        // Every truncation and every single-byte corruption decodes or errors, never panics.
        for cut in 0..good.len() {
            assert!(decode_batch(&good[..cut]).is_err());
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let _ = decode_batch(&bad);
        }
    }
}
