//! One identity: the node's ed25519 account key is its libp2p key, so a [`PeerId`] maps to an
//! on-chain account and back.
//!
//! A libp2p peer id for an ed25519 key is the identity multihash of the protobuf-encoded public
//! key (36 bytes of encoding, well under the 42-byte inline limit), so the mapping is lossless.

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey, ed25519};

/// Failure to build a node key from a 32-byte ed25519 secret seed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The seed was rejected by the ed25519 implementation.
    #[error("invalid ed25519 secret seed: {reason}")]
    InvalidSeed {
        /// Why it was rejected.
        reason: String,
    },
}

/// Failure to map a peer id back to an account public key.
#[derive(Debug, thiserror::Error)]
pub enum PeerIdError {
    /// The peer id does not inline its public key (e.g. an RSA peer id).
    #[error("peer id {peer} does not embed a public key")]
    NoInlineKey {
        /// The offending peer id.
        peer: PeerId,
    },
    /// The embedded key is not an ed25519 key, so it is not an Agora account.
    #[error("peer id {peer} is not an ed25519 key")]
    NotEd25519 {
        /// The offending peer id.
        peer: PeerId,
    },
}

/// Builds the libp2p keypair from the account's 32-byte ed25519 secret seed.
pub fn keypair_from_seed(seed: [u8; 32]) -> Result<Keypair, KeyError> {
    let mut seed = seed;
    Keypair::ed25519_from_bytes(&mut seed).map_err(|e| KeyError::InvalidSeed {
        reason: e.to_string(),
    })
}

/// Generates a fresh random identity and returns its secret seed (for tests and ephemeral CLI
/// nodes; real nodes load the account key from the wallet).
pub fn generate_seed() -> [u8; 32] {
    let kp = ed25519::Keypair::generate();
    let mut seed = [0u8; 32];
    seed.copy_from_slice(kp.secret().as_ref());
    seed
}

/// The peer id of the account whose ed25519 public key is `pubkey`.
///
/// Returns `None` when the 32 bytes are not a valid ed25519 point.
pub fn peer_id_from_account_pubkey(pubkey: [u8; 32]) -> Option<PeerId> {
    let pk = ed25519::PublicKey::try_from_bytes(&pubkey).ok()?;
    Some(PeerId::from_public_key(&PublicKey::from(pk)))
}

/// Whether `peer` is the overlay identity of the account whose public key is `pubkey`, without
/// decompressing the key (a comparison of bytes: it runs on every inference job). An ed25519 peer
/// id is the identity multihash of the key's protobuf encoding, `08 01 12 20 || key`.
pub fn is_account_peer(peer: &PeerId, pubkey: &[u8; 32]) -> bool {
    const ED25519_PROTOBUF_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];
    let mh = peer.as_ref();
    let digest = mh.digest();
    mh.code() == 0x00
        && digest.len() == 36
        && digest[..4] == ED25519_PROTOBUF_PREFIX
        && digest[4..] == pubkey[..]
}

/// The 32-byte ed25519 account public key embedded in a peer id.
pub fn account_pubkey_from_peer_id(peer: &PeerId) -> Result<[u8; 32], PeerIdError> {
    let mh = peer.as_ref();
    // 0x00 = identity multihash: the digest is the protobuf encoding of the public key.
    if mh.code() != 0x00 {
        return Err(PeerIdError::NoInlineKey { peer: *peer });
    }
    let pk = PublicKey::try_decode_protobuf(mh.digest())
        .map_err(|_| PeerIdError::NoInlineKey { peer: *peer })?;
    let ed = pk
        .try_into_ed25519()
        .map_err(|_| PeerIdError::NotEd25519 { peer: *peer })?;
    Ok(ed.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_account_peer_agrees_with_the_decoded_peer_id() {
        for _ in 0..32 {
            let a = keypair_from_seed(generate_seed()).unwrap();
            let b = keypair_from_seed(generate_seed()).unwrap();
            let a_key = a.public().try_into_ed25519().unwrap().to_bytes();
            let b_key = b.public().try_into_ed25519().unwrap().to_bytes();
            let a_peer = PeerId::from_public_key(&a.public());
            assert_eq!(peer_id_from_account_pubkey(a_key), Some(a_peer));
            assert!(is_account_peer(&a_peer, &a_key));
            assert!(!is_account_peer(&a_peer, &b_key));
        }
    }

    #[test]
    fn seed_peer_id_and_account_key_round_trip() {
        let seed = [7u8; 32];
        let kp = keypair_from_seed(seed).unwrap();
        let pubkey = kp.public().try_into_ed25519().unwrap().to_bytes();
        let peer = peer_id_from_account_pubkey(pubkey).unwrap();
        assert_eq!(peer, kp.public().to_peer_id());
        assert_eq!(account_pubkey_from_peer_id(&peer).unwrap(), pubkey);
        // Same seed, same identity: deterministic.
        assert_eq!(keypair_from_seed(seed).unwrap().public().to_peer_id(), peer);
        let other = keypair_from_seed(generate_seed()).unwrap();
        assert_ne!(other.public().to_peer_id(), peer);
    }

    #[test]
    fn non_inline_peer_id_is_rejected() {
        // A sha2-256 multihash peer id (what RSA keys produce) carries no key.
        let mh = libp2p::multihash::Multihash::<64>::wrap(0x12, &[1u8; 32]).unwrap();
        let peer = PeerId::from_multihash(mh).unwrap();
        assert!(matches!(
            account_pubkey_from_peer_id(&peer),
            Err(PeerIdError::NoInlineKey { .. })
        ));
    }
}
