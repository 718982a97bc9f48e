use super::*;
use agora_types::Amount;

fn price(i: u128, o: u128) -> Price {
    Price {
        input_per_million: Amount(i),
        output_per_million: Amount(o),
    }
}

fn sample(key: &SecretKey) -> Offer {
    Offer {
        provider: key.public(),
        seq: 3,
        issued_at_ms: 1_000,
        expires_at_ms: 61_000,
        load: Load {
            active: 1,
            slots: 4,
        },
        models: vec![
            ModelOffer {
                model: Hash([1; 32]),
                price: price(50_000, 100_000),
            },
            ModelOffer {
                model: Hash([2; 32]),
                price: price(10_000, 0),
            },
        ],
        addrs: vec![b"/ip4/127.0.0.1/tcp/4001".to_vec()],
    }
}

#[test]
fn sign_encode_decode_round_trip() {
    let key = SecretKey::from_test_seed("provider");
    let signed = sample(&key).sign(&key).unwrap();
    let bytes = signed.to_bytes();
    assert!(bytes.len() <= MAX_OFFER_BYTES);
    let back = SignedOffer::decode(&bytes).unwrap();
    assert_eq!(back, signed);
    assert!(back.offer.serves(&Hash([2; 32])));
    assert!(!back.offer.serves(&Hash([3; 32])));
    assert_eq!(
        back.offer.price_of(&Hash([1; 32])),
        Some(price(50_000, 100_000))
    );
    assert_eq!(back.offer.load.permille(), 250);
    assert_eq!(back.offer.load.free_slots(), 3);
}

#[test]
fn offers_are_signed_under_the_offer_domain() {
    let key = SecretKey::from_test_seed("provider");
    let offer = sample(&key);
    let signed = offer.clone().sign(&key).unwrap();
    let msg = offer.encode();
    assert!(
        key.public()
            .verify(SignDomain::Offer, &msg, &signed.signature)
            .is_ok()
    );
    // The same bytes signed for another purpose are not an offer, and an offer's signature is
    // valid for nothing else.
    for other in [
        SignDomain::Receipt,
        SignDomain::Transaction,
        SignDomain::Voucher,
    ] {
        let forged = SignedOffer {
            offer: offer.clone(),
            signature: key.sign(other, &msg),
        };
        assert_eq!(
            SignedOffer::decode(&forged.to_bytes()),
            Err(OfferError::BadSignature)
        );
        assert!(key.public().verify(other, &msg, &signed.signature).is_err());
    }
}

#[test]
fn tampered_offers_are_refused() {
    let key = SecretKey::from_test_seed("provider");
    let signed = sample(&key).sign(&key).unwrap();
    let tamper = |f: &dyn Fn(&mut Offer)| {
        let mut bad = signed.clone();
        f(&mut bad.offer);
        assert_ne!(bad, signed);
        SignedOffer::decode(&bad.to_bytes())
    };
    // A cheaper price, a lighter load, another model, a later expiry, a higher sequence.
    let cases: [&dyn Fn(&mut Offer); 6] = [
        &|o| o.models[0].price.output_per_million = Amount(1),
        &|o| o.models[1].price.input_per_million = Amount(1),
        &|o| o.load.active = 0,
        &|o| o.models[0].model = Hash([9; 32]),
        &|o| o.expires_at_ms += 1,
        &|o| o.seq += 1,
    ];
    for case in cases {
        assert_eq!(tamper(case), Err(OfferError::BadSignature));
    }
    // And a flipped bit anywhere in the signed bytes.
    let bytes = signed.to_bytes();
    for i in (0..bytes.len()).step_by(7) {
        let mut b = bytes.clone();
        b[i] ^= 1;
        assert!(SignedOffer::decode(&b).is_err(), "bit flip at {i} accepted");
    }
}

#[test]
fn signing_with_another_key_is_refused() {
    let key = SecretKey::from_test_seed("provider");
    let other = SecretKey::from_test_seed("other");
    assert_eq!(sample(&key).sign(&other), Err(SignOfferError::WrongKey));
}

#[test]
fn oversized_offers_are_refused_both_ways() {
    let key = SecretKey::from_test_seed("provider");
    let mut big = sample(&key);
    big.models = vec![big.models[0]; MAX_OFFER_MODELS + 1];
    assert_eq!(
        big.clone().sign(&key),
        Err(SignOfferError::TooLarge { what: "models" })
    );
    // Built by hand past the signer's check: the decoder refuses it on its own.
    let forged = SignedOffer {
        signature: key.sign(SignDomain::Offer, &big.encode()),
        offer: big,
    };
    assert!(matches!(
        SignedOffer::decode(&forged.to_bytes()),
        Err(OfferError::Malformed(DecodeError::TooLong { .. }) | OfferError::TooLong { .. })
    ));
    let mut long_addr = sample(&key);
    long_addr.addrs = vec![vec![0; MAX_ADDR_BYTES + 1]];
    assert_eq!(
        long_addr.sign(&key),
        Err(SignOfferError::TooLarge { what: "addr" })
    );
}

#[test]
fn garbage_and_truncation_never_panic() {
    let key = SecretKey::from_test_seed("provider");
    let bytes = sample(&key).sign(&key).unwrap().to_bytes();
    for cut in 0..bytes.len() {
        assert!(SignedOffer::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(matches!(
        SignedOffer::decode(&extra),
        Err(OfferError::Malformed(DecodeError::TrailingBytes { .. }))
    ));
    // Deterministic pseudo-random garbage (xorshift).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in [0usize, 1, 63, 64, 65, 200, 2_000, MAX_OFFER_BYTES + 1] {
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(SignedOffer::decode(&buf).is_err());
    }
}

#[test]
fn load_in_permille_is_bounded() {
    let l = |active, slots| Load { active, slots };
    assert_eq!(l(0, 4).permille(), 0);
    assert_eq!(l(4, 4).permille(), 1000);
    assert_eq!(l(9, 4).permille(), 1000);
    assert_eq!(l(0, 0).permille(), 1000);
    assert_eq!(l(u32::MAX, 1).free_slots(), 0);
}
