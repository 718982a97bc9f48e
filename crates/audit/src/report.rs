//! What an audit found, with the numbers an operator or a re-auditor needs.

use agora_types::Hash;
use agora_verify::tokens::TokenReport;
use agora_verify::toploc::Verdict;

/// One reason the response is not what the provider was paid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The receipt's signature is not its provider's.
    BadSignature,
    /// The job or tokens handed over do not match the receipt's hash of them (named field): the
    /// replay is not of this response.
    ReplayMismatch(&'static str),
    /// A generated response without a proof.
    NoProof,
    /// Proof bytes that do not decode within the request's bounds.
    ProofUndecodable,
    /// The receipt's `proof_hash` is not the proof's.
    ProofNotBound,
    /// The work rendered and tokenized by the real model is not the prompt the provider signed.
    PromptMismatch { ours: u32, claimed: u32 },
    /// The TOPLOC proof does not match the real model's hidden states.
    ProofFailed,
    /// Tokens our sampler would not have picked from the real model's logits.
    TokensFlagged { flagged: u32, of: u32 },
    /// A delivered or continued token id the real model's vocabulary does not have: another
    /// model's tokens (index into continuation ++ output).
    OutsideVocabulary {
        index: u32,
        token: u32,
        n_vocab: u32,
    },
    /// A token the request's generation rules would not have produced (index into continuation
    /// ++ output): one after the generation had ended (an end-of-generation token, a stop
    /// sequence, a complete JSON document, `max_tokens`), billed but never owed; or one JSON
    /// mode refuses.
    AgainstTheRules { index: u32, why: String },
    /// A receipt that says the response is complete, though it stops where neither a rule ended
    /// it nor the real model would have ended it: a truncated answer sold as whole.
    EndedEarly,
}

/// The outcome of one audit.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    /// The audited receipt (`agora_types::audit::receipt_id`).
    pub receipt: Hash,
    pub findings: Vec<Finding>,
    /// The TOPLOC statistics per chunk, when the proof could be checked.
    pub toploc: Option<Verdict>,
    /// The token replay, when it ran.
    pub tokens: Option<TokenReport>,
}

impl AuditReport {
    pub(crate) fn new(receipt: Hash) -> AuditReport {
        AuditReport {
            receipt,
            findings: Vec::new(),
            toploc: None,
            tokens: None,
        }
    }

    /// The provider did not serve what it was paid for.
    pub fn failed(&self) -> bool {
        !self.findings.is_empty()
    }
}
