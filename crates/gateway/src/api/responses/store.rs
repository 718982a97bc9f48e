//! Responses kept for `previous_response_id` and `GET /v1/responses/{id}`: in memory, per API
//! key, bounded by count, bytes and age (the oldest go first), so a client cannot grow the
//! gateway's memory by chaining or by storing large conversations. They do not survive a
//! restart; a continuation of a response that is gone is a 404 naming it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agora_types::ChatMessage;
use serde_json::Value;

use crate::customers::KeyHash;

/// Most responses kept.
pub const MAX_RESPONSES: usize = 4096;
/// Most bytes of conversation and response bodies kept, all responses together.
pub const MAX_BYTES: usize = 256 << 20;
/// How long a response is kept.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// One kept response.
#[derive(Clone)]
pub struct Stored {
    /// Whose key created it: only that key may read or continue it.
    pub owner: KeyHash,
    /// The conversation a continuation starts from: the turns before it, its own input and its
    /// output (instructions are not carried over, as OpenAI does).
    pub conversation: Vec<ChatMessage>,
    /// The response object as it was returned.
    pub body: Value,
}

impl Stored {
    fn bytes(&self) -> usize {
        let turns: usize = self.conversation.iter().map(ChatMessage::text_len).sum();
        turns + self.body.to_string().len()
    }
}

struct Entry {
    stored: Stored,
    bytes: usize,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    by_id: BTreeMap<String, Entry>,
    /// Ids oldest first.
    order: VecDeque<String>,
    bytes: usize,
}

/// The gateway's kept responses.
#[derive(Default)]
pub struct ResponseStore {
    inner: Mutex<Inner>,
}

impl ResponseStore {
    /// Keeps `stored` under `id`, dropping the oldest responses beyond the limits. A response
    /// larger than all the room there is is not kept.
    pub fn put(&self, id: String, stored: Stored) {
        let bytes = stored.bytes();
        if bytes > MAX_BYTES {
            return;
        }
        let mut g = self.lock();
        g.expire(Instant::now());
        while g.by_id.len() >= MAX_RESPONSES || g.bytes + bytes > MAX_BYTES {
            if !g.drop_oldest() {
                break;
            }
        }
        g.bytes += bytes;
        g.order.push_back(id.clone());
        g.by_id.insert(
            id,
            Entry {
                stored,
                bytes,
                at: Instant::now(),
            },
        );
    }

    /// The response `id` if `owner` created it and it is still kept.
    pub fn get(&self, id: &str, owner: &KeyHash) -> Option<Stored> {
        let mut g = self.lock();
        g.expire(Instant::now());
        g.by_id
            .get(id)
            .filter(|e| e.stored.owner == *owner)
            .map(|e| e.stored.clone())
    }

    /// Forgets the response `id` if `owner` created it; whether it was there.
    pub fn delete(&self, id: &str, owner: &KeyHash) -> bool {
        let mut g = self.lock();
        let mine = g.by_id.get(id).is_some_and(|e| e.stored.owner == *owner);
        if mine && let Some(e) = g.by_id.remove(id) {
            g.bytes -= e.bytes;
            g.order.retain(|o| o != id);
        }
        mine
    }

    /// Responses kept now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Nothing kept?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some(e) = self.order.front().and_then(|id| self.by_id.get(id)) {
            if now.duration_since(e.at) < RETENTION {
                break;
            }
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) -> bool {
        let Some(id) = self.order.pop_front() else {
            return false;
        };
        if let Some(e) = self.by_id.remove(&id) {
            self.bytes -= e.bytes;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(owner: u8, text: &str) -> Stored {
        Stored {
            owner: [owner; 32],
            conversation: vec![ChatMessage::new("user", text)],
            body: Value::Null,
        }
    }

    #[test]
    fn a_response_is_kept_for_its_owner_only() {
        let s = ResponseStore::default();
        s.put("resp_a".into(), stored(1, "hi"));
        assert!(s.get("resp_a", &[1; 32]).is_some());
        assert!(
            s.get("resp_a", &[2; 32]).is_none(),
            "another key cannot read it"
        );
        assert!(!s.delete("resp_a", &[2; 32]), "nor delete it");
        assert!(s.delete("resp_a", &[1; 32]));
        assert!(s.get("resp_a", &[1; 32]).is_none());
    }

    #[test]
    fn the_oldest_go_first_when_the_store_is_full() {
        let s = ResponseStore::default();
        for i in 0..MAX_RESPONSES + 10 {
            s.put(format!("resp_{i}"), stored(1, "x"));
        }
        assert_eq!(s.len(), MAX_RESPONSES);
        assert!(s.get("resp_0", &[1; 32]).is_none());
        assert!(
            s.get(&format!("resp_{}", MAX_RESPONSES + 9), &[1; 32])
                .is_some()
        );
        // Bytes bound the store too: one large response pushes out what it needs.
        let big = "y".repeat(MAX_BYTES / 2);
        s.put("big1".into(), stored(1, &big));
        s.put("big2".into(), stored(1, &big));
        assert!(s.get("big1", &[1; 32]).is_none() && s.get("big2", &[1; 32]).is_some());
        s.put("huge".into(), stored(1, &"z".repeat(MAX_BYTES + 1)));
        assert!(
            s.get("huge", &[1; 32]).is_none(),
            "larger than the store: not kept"
        );
    }
}
