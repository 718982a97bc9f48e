//! Helpers shared by the integration tests.

use std::time::Duration;

use agora_p2p::bench::wait_until;
use agora_p2p::node::OfferTerms;
use agora_p2p::{
    Handle, Inbound, ModelId, Multiaddr, NetConfig, OfferHeader, OfferSigner, OfferValidator,
    generate_seed, spawn,
};
use libp2p::identity::{Keypair, ed25519};
use libp2p::multiaddr::Protocol;

/// Starts a loopback node and waits until it listens; returns its dialable `/p2p/` address.
pub async fn start(cfg: NetConfig) -> (Handle, Inbound, Multiaddr) {
    start_seeded(generate_seed(), cfg).await
}

/// [`start`] with a chosen key seed (a provider signs its offers with it).
pub async fn start_seeded(seed: [u8; 32], cfg: NetConfig) -> (Handle, Inbound, Multiaddr) {
    let cfg = NetConfig {
        offer_validator: cfg
            .offer_validator
            .clone()
            .or_else(|| Some(test_offers::validator())),
        ..cfg
    };
    let (h, inbound) = spawn(seed, cfg, None).await.expect("node starts");
    assert!(
        wait_until(&h, Duration::from_secs(5), |s| !s.listen_addrs.is_empty()).await,
        "node did not listen"
    );
    let addr = h.status().await.expect("running").listen_addrs[0]
        .clone()
        .with(Protocol::P2p(h.peer_id()));
    (h, inbound, addr)
}

/// A loopback config bootstrapping from `boot`.
pub fn cfg_with_boot(boot: &Multiaddr) -> NetConfig {
    NetConfig {
        bootstrap: vec![boot.clone()],
        ..NetConfig::local_test()
    }
}

/// A stand-in offer format for the overlay's own tests (the real one is the market's, which this
/// crate does not link): `provider | seq | issued | expires | n | models | ed25519 signature`.
pub mod test_offers {
    use super::*;

    const DOMAIN: &[u8] = b"agora-p2p test offer";

    pub fn encode(key: &Keypair, h: &OfferHeader) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&h.provider);
        for v in [h.seq, h.issued_at_ms, h.expires_at_ms] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        body.push(h.models.len() as u8);
        for m in &h.models {
            body.extend_from_slice(m);
        }
        let sig = key.sign(&[DOMAIN, &body].concat()).expect("ed25519 signs");
        body.extend_from_slice(&sig);
        body
    }

    pub fn decode(b: &[u8]) -> Result<OfferHeader, String> {
        let fixed = 32 + 24 + 1;
        if b.len() < fixed + 64 {
            return Err("truncated".into());
        }
        let (body, sig) = b.split_at(b.len() - 64);
        let n = body[fixed - 1] as usize;
        if body.len() != fixed + 32 * n {
            return Err("bad length".into());
        }
        let provider: [u8; 32] = body[..32].try_into().map_err(|_| "key")?;
        let pk = ed25519::PublicKey::try_from_bytes(&provider).map_err(|_| "bad key")?;
        if !pk.verify(&[DOMAIN, body].concat(), sig) {
            return Err("bad signature".into());
        }
        let u = |i: usize| {
            u64::from_be_bytes(body[32 + 8 * i..40 + 8 * i].try_into().unwrap_or([0; 8]))
        };
        let models = body[fixed..]
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or([0; 32]))
            .collect();
        Ok(OfferHeader {
            provider,
            seq: u(0),
            issued_at_ms: u(1),
            expires_at_ms: u(2),
            models,
        })
    }

    pub fn validator() -> OfferValidator {
        OfferValidator::new(decode)
    }

    pub fn provider_key(key: &Keypair) -> [u8; 32] {
        key.public().try_into_ed25519().expect("ed25519").to_bytes()
    }

    /// Terms that sign `models` with the node's own key.
    pub fn terms(seed: [u8; 32], models: Vec<ModelId>, ttl: Duration) -> OfferTerms {
        let key = agora_p2p::identity::keypair_from_seed(seed).expect("seed");
        OfferTerms {
            signer: OfferSigner::new(move |stamp| {
                let h = OfferHeader {
                    provider: provider_key(&key),
                    seq: stamp.seq,
                    issued_at_ms: stamp.issued_at_ms,
                    expires_at_ms: stamp.expires_at_ms,
                    models: models.clone(),
                };
                Ok(encode(&key, &h))
            }),
            ttl,
        }
    }
}
