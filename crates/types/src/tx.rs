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

// ---- canonical encoding -------------------------------------------------------------------

impl Encode for Tx {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.chain_id.as_bytes());
        self.signer.encode_to(out);
        out.put_u64(self.nonce);
        self.fee.encode_to(out);
        self.body.encode_to(out);
    }
}

impl Decode for Tx {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Tx {
            chain_id: r.string("chain id", MAX_CHAIN_ID)?,
            signer: PublicKey::decode_from(r)?,
            nonce: r.u64()?,
            fee: Amount::decode_from(r)?,
            body: TxBody::decode_from(r)?,
        })
    }
}

impl Encode for TxBody {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            TxBody::Transfer { to, amount } => {
                out.put_u8(0);
                to.encode_to(out);
                amount.encode_to(out);
            }
            TxBody::Bond { target, amount } => {
                out.put_u8(1);
                target.encode_to(out);
                amount.encode_to(out);
            }
            TxBody::Unbond { target, amount } => {
                out.put_u8(2);
                target.encode_to(out);
                amount.encode_to(out);
            }
            TxBody::Withdraw => out.put_u8(3),
            TxBody::RegisterValidator => out.put_u8(4),
            TxBody::RegisterProvider(info) => {
                out.put_u8(5);
                info.encode_to(out);
            }
            TxBody::RegisterModel(info) => {
                out.put_u8(6);
                info.encode_to(out);
            }
            TxBody::RegisterDataset(info) => {
                out.put_u8(7);
                info.encode_to(out);
            }
            TxBody::OpenChannel {
                provider,
                deposit,
                expiry_height,
            } => {
                out.put_u8(8);
                provider.encode_to(out);
                deposit.encode_to(out);
                out.put_u64(*expiry_height);
            }
            TxBody::TopUpChannel { channel, amount } => {
                out.put_u8(9);
                channel.encode_to(out);
                amount.encode_to(out);
            }
            TxBody::RedeemVoucher(v) => {
                out.put_u8(10);
                v.encode_to(out);
            }
            TxBody::CloseChannel { channel } => {
                out.put_u8(11);
                channel.encode_to(out);
            }
            TxBody::SettleChannel { channel } => {
                out.put_u8(12);
                channel.encode_to(out);
            }
            TxBody::Slash(e) => {
                out.put_u8(13);
                e.encode_to(out);
            }
            TxBody::CommitReceipts { root, count } => {
                out.put_u8(14);
                root.encode_to(out);
                out.put_u32(*count);
            }
            TxBody::CreateMarket(spec) => {
                out.put_u8(15);
                spec.encode_to(out);
            }
            TxBody::JoinMarket { market } => {
                out.put_u8(16);
                market.encode_to(out);
            }
            TxBody::CommitWeights { market, commitment } => {
                out.put_u8(17);
                market.encode_to(out);
                commitment.encode_to(out);
            }
            TxBody::RevealWeights(reveal) => {
                out.put_u8(18);
                reveal.encode_to(out);
            }
        }
    }
}

impl Decode for TxBody {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => TxBody::Transfer {
                to: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
            },
            1 => TxBody::Bond {
                target: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
            },
            2 => TxBody::Unbond {
                target: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
            },
            3 => TxBody::Withdraw,
            4 => TxBody::RegisterValidator,
            5 => TxBody::RegisterProvider(Decode::decode_from(r)?),
            6 => TxBody::RegisterModel(Decode::decode_from(r)?),
            7 => TxBody::RegisterDataset(Decode::decode_from(r)?),
            8 => TxBody::OpenChannel {
                provider: Decode::decode_from(r)?,
                deposit: Decode::decode_from(r)?,
                expiry_height: r.u64()?,
            },
            9 => TxBody::TopUpChannel {
                channel: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
            },
            10 => TxBody::RedeemVoucher(Decode::decode_from(r)?),
            11 => TxBody::CloseChannel {
                channel: Decode::decode_from(r)?,
            },
            12 => TxBody::SettleChannel {
                channel: Decode::decode_from(r)?,
            },
            13 => TxBody::Slash(Decode::decode_from(r)?),
            14 => TxBody::CommitReceipts {
                root: Decode::decode_from(r)?,
                count: r.u32()?,
            },
            15 => TxBody::CreateMarket(Decode::decode_from(r)?),
            16 => TxBody::JoinMarket {
                market: Decode::decode_from(r)?,
            },
            17 => TxBody::CommitWeights {
                market: Decode::decode_from(r)?,
                commitment: Decode::decode_from(r)?,
            },
            18 => TxBody::RevealWeights(Decode::decode_from(r)?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "tx kind",
                    tag,
                });
            }
        })
    }
}

impl Encode for ProviderInfo {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(&self.peer_id);
        out.put_len(self.endpoints.len());
        for e in &self.endpoints {
            out.put_bytes(e.as_bytes());
        }
        self.hardware.encode_to(out);
        out.put_vec(&self.models);
    }
}

impl Decode for ProviderInfo {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let peer_id = r.bytes("peer id", MAX_PEER_ID)?;
        let n = r.len("endpoints", MAX_ENDPOINTS, 4)?;
        let mut endpoints = Vec::with_capacity(n);
        for _ in 0..n {
            endpoints.push(r.string("endpoint", MAX_ENDPOINT)?);
        }
        Ok(ProviderInfo {
            peer_id,
            endpoints,
            hardware: Decode::decode_from(r)?,
            models: r.vec("provider models", MAX_MODELS_PER_PROVIDER, 64)?,
        })
    }
}

impl Encode for HardwareSummary {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.accelerator.as_bytes());
        out.put_u32(self.memory_mib);
        out.put_u16(self.cpu_cores);
    }
}

impl Decode for HardwareSummary {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HardwareSummary {
            accelerator: r.string("accelerator", MAX_NAME)?,
            memory_mib: r.u32()?,
            cpu_cores: r.u16()?,
        })
    }
}

impl Encode for ModelPrice {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.model.encode_to(out);
        self.input_per_million.encode_to(out);
        self.output_per_million.encode_to(out);
    }
}

impl Decode for ModelPrice {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ModelPrice {
            model: Decode::decode_from(r)?,
            input_per_million: Decode::decode_from(r)?,
            output_per_million: Decode::decode_from(r)?,
        })
    }
}

impl Encode for ModelRegistration {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.sha256.encode_to(out);
        out.put_bytes(self.name.as_bytes());
        out.put_bytes(self.family.as_bytes());
        self.kind.encode_to(out);
        out.put_bytes(self.license.as_bytes());
        out.put_u16(self.royalty_bps);
    }
}

impl Decode for ModelRegistration {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ModelRegistration {
            sha256: Decode::decode_from(r)?,
            name: r.string("model name", MAX_NAME)?,
            family: r.string("model family", MAX_NAME)?,
            kind: Decode::decode_from(r)?,
            license: r.string("model license", MAX_LICENSE)?,
            royalty_bps: r.u16()?,
        })
    }
}

impl Encode for ModelKind {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(match self {
            ModelKind::Chat => 0,
            ModelKind::Completion => 1,
            ModelKind::Embedding => 2,
        });
    }
}

impl Decode for ModelKind {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(ModelKind::Chat),
            1 => Ok(ModelKind::Completion),
            2 => Ok(ModelKind::Embedding),
            tag => Err(DecodeError::InvalidTag {
                what: "model kind",
                tag,
            }),
        }
    }
}

impl Encode for DatasetInfo {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.content_hash.encode_to(out);
        out.put_bytes(self.name.as_bytes());
        out.put_bytes(self.license.as_bytes());
    }
}

impl Decode for DatasetInfo {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DatasetInfo {
            content_hash: Decode::decode_from(r)?,
            name: r.string("dataset name", MAX_NAME)?,
            license: r.string("dataset license", MAX_LICENSE)?,
        })
    }
}

impl Encode for (Hash, Amount) {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out);
        self.1.encode_to(out);
    }
}

impl Decode for (Hash, Amount) {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((Decode::decode_from(r)?, Decode::decode_from(r)?))
    }
}

impl Encode for Voucher {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.chain_id.as_bytes());
        self.channel.encode_to(out);
        self.cumulative.encode_to(out);
        out.put_vec(&self.per_model);
    }
}

impl Decode for Voucher {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Voucher {
            chain_id: r.string("chain id", MAX_CHAIN_ID)?,
            channel: Decode::decode_from(r)?,
            cumulative: Decode::decode_from(r)?,
            per_model: r.vec("voucher models", MAX_MODELS_PER_VOUCHER, 48)?,
        })
    }
}

impl Encode for SignedVoucher {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.voucher.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedVoucher {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedVoucher {
            voucher: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

impl Encode for Evidence {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Evidence::ConflictingClaims {
                offender,
                subject,
                claim_a,
                signature_a,
                claim_b,
                signature_b,
            } => {
                out.put_u8(0);
                offender.encode_to(out);
                subject.encode_to(out);
                claim_a.encode_to(out);
                signature_a.encode_to(out);
                claim_b.encode_to(out);
                signature_b.encode_to(out);
            }
            Evidence::ConflictingVotes {
                offender,
                epoch,
                view,
                vote_a,
                vote_b,
            } => {
                out.put_u8(1);
                offender.encode_to(out);
                out.put_u64(*epoch);
                out.put_u64(*view);
                vote_a.encode_to(out);
                vote_b.encode_to(out);
            }
            Evidence::FailedAudit { receipt, verdicts } => {
                out.put_u8(2);
                receipt.encode_to(out);
                out.put_vec(verdicts);
            }
        }
    }
}

impl Decode for Evidence {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(Evidence::ConflictingClaims {
                offender: Decode::decode_from(r)?,
                subject: Decode::decode_from(r)?,
                claim_a: Decode::decode_from(r)?,
                signature_a: Decode::decode_from(r)?,
                claim_b: Decode::decode_from(r)?,
                signature_b: Decode::decode_from(r)?,
            }),
            1 => Ok(Evidence::ConflictingVotes {
                offender: Decode::decode_from(r)?,
                epoch: r.u64()?,
                view: r.u64()?,
                vote_a: Decode::decode_from(r)?,
                vote_b: Decode::decode_from(r)?,
            }),
            2 => Ok(Evidence::FailedAudit {
                receipt: Box::new(Decode::decode_from(r)?),
                verdicts: r.vec(
                    "audit verdicts",
                    MAX_AUDIT_VERDICTS,
                    MIN_SIGNED_VERDICT_BYTES,
                )?,
            }),
            tag => Err(DecodeError::InvalidTag {
                what: "evidence kind",
                tag,
            }),
        }
    }
}

impl Encode for ConsensusVote {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(match self.kind {
            VoteKind::Notarize => 0,
            VoteKind::Nullify => 1,
            VoteKind::Finalize => 2,
        });
        out.put_u64(self.parent_view);
        self.payload.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for ConsensusVote {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = match r.u8()? {
            0 => VoteKind::Notarize,
            1 => VoteKind::Nullify,
            2 => VoteKind::Finalize,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "vote kind",
                    tag,
                });
            }
        };
        Ok(ConsensusVote {
            kind,
            parent_view: r.u64()?,
            payload: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

impl Encode for SignedTx {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.tx.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedTx {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedTx {
            tx: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLong {
                what: "transaction",
                len: bytes.len(),
                max: MAX_TX_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let v = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

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
