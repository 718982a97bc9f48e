//! What the gateway sees, as it happens: finished and failed requests (who served them, what
//! they paid, the receipt), auditors' verdicts, new blocks and slashes. The dashboard streams it
//! (`GET /dashboard/events`, server-sent events) instead of polling whole tables.
//!
//! Publishing never waits: a subscriber that falls behind loses the oldest events (it is told
//! how many), it never holds a request back. The last [`HISTORY`] events are kept so that a page
//! opened late starts with the recent past.

use std::collections::VecDeque;
use std::sync::Mutex;

use agora_types::{Address, Amount, Hash, PublicKey};
use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for pages that open late, and the most a slow subscriber may fall behind.
pub const HISTORY: usize = 200;

/// One thing that happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedEvent {
    Request(RequestEvent),
    Verdict(VerdictEvent),
    Block(BlockEvent),
    /// The providers this gateway routes to changed (one joined or left, a stake, price or
    /// probation moved): the whole list, which is short.
    Providers(ProvidersEvent),
}

/// The providers a gateway routes to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProvidersEvent {
    pub providers: Vec<ProviderEntry>,
}

/// One provider as the market sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderEntry {
    pub address: Address,
    pub peer: String,
    pub stake: Amount,
    /// Model sha256 to its price per million tokens.
    pub prices: std::collections::BTreeMap<Hash, agora_types::Price>,
    pub on_probation: bool,
}

/// A completion that ended, well or not.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestEvent {
    pub at_ms: u64,
    /// Hex, as the answer's `agora.request_id` and `GET /v1/receipts/{request_id}` spell it.
    pub request_id: String,
    pub model: Hash,
    /// `None` when it ended well; else why it failed.
    pub error: Option<String>,
    pub finish_reason: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// What the customer paid: exactly what the providers were paid.
    pub charged: Amount,
    /// One per provider that served part of it (more than one after a failover).
    pub segments: Vec<SegmentEvent>,
}

/// One provider's part of a completion.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SegmentEvent {
    pub provider: Address,
    pub completion_tokens: u32,
    pub charged: Amount,
    /// The provider's signed receipt matched what was sent and received.
    pub receipt_ok: bool,
    /// The receipt's id (what auditors' verdicts name), when one came.
    pub receipt_id: Option<Hash>,
    /// The payment channel the receipt names (what paid for this part).
    pub channel: Option<Hash>,
    /// Size of the proof of inference the receipt binds (0: none came).
    pub proof_bytes: usize,
}

/// An auditor's verdict on one of this gateway's receipts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerdictEvent {
    pub at_ms: u64,
    pub receipt_id: Hash,
    /// The receipt's provider.
    pub provider: Address,
    pub auditor: PublicKey,
    pub failed: bool,
}

/// A finalized block, with the providers it slashed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BlockEvent {
    pub height: u64,
    pub timestamp_ms: u64,
    pub txs: usize,
    pub slashed: Vec<Address>,
}

/// Milliseconds since the Unix epoch (0 before it), the time events carry.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The gateway's event stream and its recent history.
pub struct Feed {
    tx: broadcast::Sender<FeedEvent>,
    recent: Mutex<VecDeque<FeedEvent>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(HISTORY).0,
            recent: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Records `event` and hands it to every subscriber; never waits.
    pub fn publish(&self, event: FeedEvent) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == HISTORY {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        // No subscriber is not an error: the history still has it.
        let _ = self.tx.send(event);
    }

    /// The recent past (oldest first) and the events after it, with nothing lost or repeated
    /// between the two: the subscription is taken under the history's lock.
    pub fn subscribe(&self) -> (Vec<FeedEvent>, broadcast::Receiver<FeedEvent>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        (recent.iter().cloned().collect(), self.tx.subscribe())
    }

    /// The last `n` events that `keep` selects, oldest first.
    pub fn recent(&self, n: usize, keep: impl Fn(&FeedEvent) -> bool) -> Vec<FeedEvent> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<FeedEvent> = recent
            .iter()
            .rev()
            .filter(|e| keep(e))
            .take(n)
            .cloned()
            .collect();
        v.reverse();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(h: u64) -> FeedEvent {
        FeedEvent::Block(BlockEvent {
            height: h,
            timestamp_ms: 0,
            txs: 0,
            slashed: vec![],
        })
    }

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let f = Feed::new();
        for h in 0..(HISTORY as u64 + 50) {
            f.publish(block(h));
        }
        let (past, _) = f.subscribe();
        assert_eq!(past.len(), HISTORY);
        assert_eq!(past.first(), Some(&block(50)));
        assert_eq!(past.last(), Some(&block(HISTORY as u64 + 49)));
    }

    #[tokio::test]
    async fn a_subscriber_gets_what_follows_its_history_once() {
        let f = Feed::new();
        f.publish(block(1));
        let (past, mut rx) = f.subscribe();
        f.publish(block(2));
        assert_eq!(past, vec![block(1)]);
        assert_eq!(rx.recv().await.unwrap(), block(2));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_slow_subscriber_skips_events_and_never_blocks_publishing() {
        let f = Feed::new();
        let (_, mut rx) = f.subscribe();
        for h in 0..(3 * HISTORY as u64) {
            f.publish(block(h));
        }
        // The channel keeps at least HISTORY (rounded up to a power of two): the subscriber is
        // told how many it missed and goes on from the oldest one kept, to the newest.
        let missed = match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => n,
            other => panic!("expected a lag, got {other:?}"),
        };
        assert!((1..=2 * HISTORY as u64).contains(&missed), "{missed}");
        let mut next = missed;
        while let Ok(e) = rx.try_recv() {
            assert_eq!(e, block(next));
            next += 1;
        }
        assert_eq!(next, 3 * HISTORY as u64);
    }

    #[test]
    fn recent_filters_and_keeps_order() {
        let f = Feed::new();
        for h in 0..10 {
            f.publish(block(h));
        }
        let odd = f.recent(3, |e| matches!(e, FeedEvent::Block(b) if b.height % 2 == 1));
        assert_eq!(odd, vec![block(5), block(7), block(9)]);
    }
}
