//! Signed transactions: what an account asks the ledger to do.
//!
//! A transaction names its chain, its signer, the signer's next nonce and the fee it pays; the
//! signature covers all of it under the [`SignDomain::Transaction`] tag, so it cannot be replayed
//! on another chain, at another nonce, or as another kind of signed message.

use crate::amount::Amount;
use crate::audit::{MIN_SIGNED_VERDICT_BYTES, SignedVerdict, receipt_id};
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{Hash, HashDomain};
use crate::keys::{Address, PublicKey, SecretKey, SignDomain, Signature, SignatureError};
use crate::market::{MarketSpec, WeightsReveal};
use crate::receipt::SignedReceipt;
use serde::{Deserialize, Serialize};

/// Size limits for untrusted input. Changing one changes what decodes: a consensus change.
pub mod limits {
    /// Largest encoded signed transaction.
    pub const MAX_TX_BYTES: usize = 16 * 1024;
    pub const MAX_CHAIN_ID: usize = 64;
    pub const MAX_NAME: usize = 128;
    pub const MAX_LICENSE: usize = 256;
    pub const MAX_ENDPOINTS: usize = 8;
    pub const MAX_ENDPOINT: usize = 256;
    pub const MAX_PEER_ID: usize = 64;
    pub const MAX_MODELS_PER_PROVIDER: usize = 64;
    pub const MAX_MODELS_PER_VOUCHER: usize = 16;
    pub const MAX_TXS_PER_BLOCK: usize = 20_000;
    pub const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;
    pub const MAX_RECEIPT_MESSAGE: usize = 256;
    /// Most auditor verdicts one `Evidence::FailedAudit` carries (a first audit, two
    /// re-audits, and room for more).
    pub const MAX_AUDIT_VERDICTS: usize = 8;
    /// Most receipts one `TxBody::CommitReceipts` may stand for.
    pub const MAX_COMMITTED_RECEIPTS: u32 = 65_536;
}
use limits::*;

/// A chain's name, bounded in length (e.g. `agora-dev`).
pub type ChainId = String;

/// A transaction before signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    pub chain_id: ChainId,
    pub signer: PublicKey,
    pub nonce: u64,
    pub fee: Amount,
    pub body: TxBody,
}

/// What the transaction does. In JSON its variant is the `type` field: not `kind`, which
/// [`ModelRegistration`] and [`Evidence`] already use inside their variants (the same name twice in
/// one object does not parse back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxBody {
    Transfer {
        to: Address,
        amount: Amount,
    },
    /// Bond the signer's tokens as stake behind `target` (the signer itself, a validator or a
    /// provider). Stake is what slashing takes from.
    Bond {
        target: Address,
        amount: Amount,
    },
    /// Start unbonding; the tokens become withdrawable after the unbonding period.
    Unbond {
        target: Address,
        amount: Amount,
    },
    /// Move every matured unbonding entry of the signer back to its balance.
    Withdraw,
    RegisterValidator,
    RegisterProvider(ProviderInfo),
    RegisterModel(ModelRegistration),
    RegisterDataset(DatasetInfo),
    OpenChannel {
        provider: Address,
        deposit: Amount,
        expiry_height: u64,
    },
    TopUpChannel {
        channel: Hash,
        amount: Amount,
    },
    /// Submitted by the channel's provider with the payer's latest voucher.
    RedeemVoucher(SignedVoucher),
    /// The payer asks to close; the provider has the challenge period to redeem.
    CloseChannel {
        channel: Hash,
    },
    /// After the challenge period (or expiry), refund what was not redeemed to the payer.
    SettleChannel {
        channel: Hash,
    },
    Slash(Evidence),
    /// A gateway commits to a batch of the receipts it received: `root` is
    /// `agora_ledger::audit::receipts_root` of their ids, `count` how many (1..=
    /// [`limits::MAX_COMMITTED_RECEIPTS`]). The id of the block that includes it is the audit
    /// beacon for those receipts.
    CommitReceipts {
        root: Hash,
        count: u32,
    },
    /// Open a market over some registered models; the signer owns it and locks
    /// `IncentiveParams::market_deposit` in it.
    CreateMarket(MarketSpec),
    /// A registered provider serving one of the market's models takes a slot in it.
    JoinMarket {
        market: Hash,
    },
    /// A validator commits to its weights over a market's members
    /// ([`crate::market::weights_commitment`]); it reveals them from the next epoch on.
    CommitWeights {
        market: Hash,
        commitment: Hash,
    },
    /// The weights committed to earlier, with their salt.
    RevealWeights(WeightsReveal),
}

/// What a provider tells the network about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// The libp2p peer id bytes (for the overlay; derived from the same key).
    #[serde(with = "hex_bytes")]
    pub peer_id: Vec<u8>,
    /// Multiaddrs or URLs where the provider may be reached; hints, not promises.
    pub endpoints: Vec<String>,
    pub hardware: HardwareSummary,
    pub models: Vec<ModelPrice>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareSummary {
    pub accelerator: String,
    pub memory_mib: u32,
    pub cpu_cores: u16,
}

/// Prices are per one million tokens, in base units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub model: Hash,
    pub input_per_million: Amount,
    pub output_per_million: Amount,
}

/// What a model can be used for. Recorded by whoever registers the model, so a gateway reads it
/// from the ledger instead of guessing it from the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// An instruction-tuned model with a chat template: chat and plain completions.
    Chat,
    /// A base model: plain completions only.
    Completion,
    /// A sentence-embedding model.
    Embedding,
}

impl ModelKind {
    /// Every kind, in tag order.
    pub const ALL: [ModelKind; 3] = [ModelKind::Chat, ModelKind::Completion, ModelKind::Embedding];

    /// The lower-case name used in JSON, on the command line and in `/v1/models`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Completion => "completion",
            ModelKind::Embedding => "embedding",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model kind name that is not `chat`, `completion` or `embedding`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model kind {0:?} (expected chat, completion or embedding)")]
pub struct ParseModelKindError(pub String);

impl std::str::FromStr for ModelKind {
    type Err = ParseModelKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseModelKindError(s.to_string()))
    }
}

/// What a model's owner puts on the ledger about it (the engine's facts about a loaded model
/// are `agora-inference`'s `ModelInfo`, a different thing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRegistration {
    /// SHA-256 of the GGUF (or other weights) file: the model's identity.
    pub sha256: Hash,
    pub name: String,
    /// Free-text architecture family (informational; `kind` says what the model is for).
    pub family: String,
    pub kind: ModelKind,
    pub license: String,
    /// Share of every payment for this model that goes to its owner, in basis points.
    pub royalty_bps: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub content_hash: Hash,
    pub name: String,
    pub license: String,
}

/// A payer's promise: "the provider of `channel` may take `cumulative` in total from it".
/// `per_model` says how much of that total was for which registered model, so royalties reach
/// the right owners; the ledger requires it to account for the whole increase of each redeem,
/// so every unit paid carries its model's royalty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    pub chain_id: ChainId,
    pub channel: Hash,
    pub cumulative: Amount,
    /// Sorted by model, no duplicates, each cumulative, summing to at most `cumulative`.
    pub per_model: Vec<(Hash, Amount)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVoucher {
    pub voucher: Voucher,
    pub signature: Signature,
}

/// Proof that an account misbehaved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// The offender signed two different claims about the same subject (e.g. two different
    /// outputs for one inference request): equivocation, checkable from the two signatures.
    ConflictingClaims {
        offender: PublicKey,
        subject: Hash,
        claim_a: Hash,
        signature_a: Signature,
        claim_b: Hash,
        signature_b: Signature,
    },
    /// A validator signed two conflicting consensus (simplex) votes in one round: two
    /// notarizes or two finalizes of different proposals, or a nullify and a finalize. The
    /// ledger rebuilds the exact bytes simplex signs (namespace = the chain id) and checks
    /// both signatures against `offender`.
    ConflictingVotes {
        offender: PublicKey,
        epoch: u64,
        view: u64,
        vote_a: ConsensusVote,
        vote_b: ConsensusVote,
    },
    /// A provider's signed receipt that auditors re-ran and found not to match: the offender is
    /// the receipt's provider; `verdicts` (at most [`limits::MAX_AUDIT_VERDICTS`]) are failing
    /// verdicts on this receipt by distinct active validators, at least two of them.
    FailedAudit {
        receipt: Box<SignedReceipt>,
        verdicts: Vec<SignedVerdict>,
    },
}

/// Which simplex vote a [`ConsensusVote`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    Notarize,
    Nullify,
    Finalize,
}

/// One signed simplex vote of a round (the round itself is in the evidence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusVote {
    pub kind: VoteKind,
    /// The proposal's parent view (0 for a nullify, which names no proposal).
    pub parent_view: u64,
    /// The proposal's block digest (zero for a nullify).
    pub payload: Hash,
    pub signature: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    pub tx: Tx,
    pub signature: Signature,
}

impl Tx {
    pub fn sign(self, key: &SecretKey) -> SignedTx {
        let signature = key.sign(SignDomain::Transaction, &self.encode());
        SignedTx {
            tx: self,
            signature,
        }
    }
}

impl SignedTx {
    /// The transaction id: a hash of the whole signed encoding.
    pub fn id(&self) -> Hash {
        Hash::of(HashDomain::TxId, &self.encode())
    }

    pub fn verify_signature(&self) -> Result<(), SignatureError> {
        self.tx
            .signer
            .verify(SignDomain::Transaction, &self.tx.encode(), &self.signature)
    }
}

impl Voucher {
    pub fn sign(self, payer: &SecretKey) -> SignedVoucher {
        let signature = payer.sign(SignDomain::Voucher, &self.encode());
        SignedVoucher {
            voucher: self,
            signature,
        }
    }
}

impl SignedVoucher {
    pub fn verify(&self, payer: &PublicKey) -> Result<(), SignatureError> {
        payer.verify(SignDomain::Voucher, &self.voucher.encode(), &self.signature)
    }
}

/// The message an account signs to make a claim (used in [`Evidence::ConflictingClaims`]).
pub fn claim_message(subject: &Hash, claim: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    subject.encode_to(&mut out);
    claim.encode_to(&mut out);
    out
}

impl Evidence {
    pub fn offender(&self) -> PublicKey {
        match self {
            Evidence::ConflictingClaims { offender, .. }
            | Evidence::ConflictingVotes { offender, .. } => *offender,
            Evidence::FailedAudit { receipt, .. } => receipt.receipt.provider,
        }
    }

    /// A canonical id for the offence, the same whichever order the two claims come in, so the
    /// same offence cannot be slashed twice. For consensus votes the offence is the round: one
    /// slash per offender, epoch and view, whichever conflicting pair proves it. For a failed
    /// audit the offence is the receipt: one slash per [`receipt_id`], whichever verdicts prove
    /// it.
    pub fn id(&self) -> Hash {
        match self {
            Evidence::ConflictingClaims {
                offender,
                subject,
                claim_a,
                claim_b,
                ..
            } => {
                let (lo, hi) = if claim_a <= claim_b {
                    (claim_a, claim_b)
                } else {
                    (claim_b, claim_a)
                };
                Hash::of_parts(
                    HashDomain::Evidence,
                    &[&offender.0, &subject.0, &lo.0, &hi.0],
                )
            }
            Evidence::ConflictingVotes {
                offender,
                epoch,
                view,
                ..
            } => Hash::of_parts(
                HashDomain::Evidence,
                &[
                    &offender.0,
                    b"consensus round",
                    &epoch.to_le_bytes(),
                    &view.to_le_bytes(),
                ],
            ),
            Evidence::FailedAudit { receipt, .. } => Hash::of_parts(
                HashDomain::Evidence,
                &[b"failed audit", &receipt_id(receipt).0],
            ),
        }
    }
}

mod wire;

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}
