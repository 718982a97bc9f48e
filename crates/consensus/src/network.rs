//! The validator network's transport: commonware `authenticated::lookup` (peers known by key
//! and socket address) over a SAKE handshake and CUPS (ChaCha20-Poly1305) streams.
//!
//! One place for these settings: every validator of a network must use the same handshake
//! and message limit, or their connections fail.

use commonware_cryptography::{ChaCha20Poly1305, ed25519::PrivateKey};
use commonware_p2p::authenticated::lookup;
use commonware_stream::{cups, cups::Cups, sake, sake::Sake};
use commonware_utils::NZUsize;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

/// The lookup p2p configuration of the validator signing with `signer`, listening on `listen`,
/// for peer sets of up to `max_peers` (itself included) and payloads of up to
/// `max_message_bytes` (a peer sending more is disconnected).
pub fn validator_p2p_config(
    signer: PrivateKey,
    namespace: &[u8],
    listen: SocketAddr,
    max_peers: NonZeroUsize,
    max_message_bytes: u32,
) -> lookup::Config<Cups<Sake<PrivateKey>, ChaCha20Poly1305>> {
    lookup::Config::local(
        Cups::<_, ChaCha20Poly1305>::new(
            Sake {
                signer,
                synchrony_bound: Duration::from_secs(5),
                max_handshake_age: Duration::from_secs(10),
                version: sake::Version::V1,
            },
            cups::Version::V1,
        ),
        namespace,
        listen,
        max_peers,
        max_message_bytes,
        NZUsize!(4096),
    )
}
