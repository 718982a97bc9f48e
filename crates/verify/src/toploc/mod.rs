//! TOPLOC proofs over final-norm hidden states (Prime Intellect, arXiv 2501.16007), integer-only
//! and byte-compatible with upstream's chunk wire format.
//!
//! ```text
//! rows (one per position fed to the model: prompt, then each generated token but the last)
//!   | chunking: [prompt rows, flattened] [32 generated rows] [32 ..] .. [last, <= 32]
//!   v
//! chunk values --f32->bf16 (round to nearest even)--> top-128 by |value| (ties: lower index)
//!   v
//! points (flat index, bf16 bits) --injective modulus m (65497 down)--> (idx mod m, bits)
//!   v
//! Newton interpolation mod 65497 -> coefficients c_0..c_127 -> [m][c_0]..[c_127] (u16 BE, 258 B)
//!
//! auditor: its own rows from one prefill -> its own top-128 per chunk -> P(idx mod m) at each
//!   -> sign/exponent mismatches, mantissa ULP mean and upper median -> Thresholds -> Verdict
//! ```
//!
//! Everything after the f32 -> bf16 rounding is integer arithmetic (`u64` accumulators, the
//! prime 65497), so prover and auditor agree bit for bit on every platform. The wire format,
//! chunking, tie-break and thresholds are specified in `docs/design/verification.md` ("Proof
//! format"); `tests/data/toploc_reference.py` is an independent Python implementation whose
//! outputs the `it` tests reproduce byte for byte.

mod bf16;
mod check;
mod poly;
#[cfg(test)]
mod tests;

use agora_types::codec::{Reader, Writer};
use agora_types::{DecodeError, Encode, Hash, HashDomain};

use crate::Rows;
pub use bf16::{bf16_bits, top_k_abs};
pub use check::{ChunkVerdict, Thresholds, check_chunk};
pub use poly::{ChunkDecodeError, ChunkProof, MAX_CHUNK_BYTES, PRIME};

/// Values per chunk proof: the top-k size.
pub const K: usize = 128;
/// Generated-token rows per decode chunk.
pub const DECODE_CHUNK: usize = 32;
/// The version byte that opens [`Proof::encode`].
pub const PROOF_VERSION: u8 = 1;

/// Why a proof could not be built (the prover's own input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError {
    #[error("the prompt is empty: a proof needs at least one prompt row")]
    EmptyPrompt,
    #[error("prompt_len {prompt_len} is more than the {rows} rows given")]
    PromptPastRows { prompt_len: usize, rows: usize },
    #[error("a chunk has no values")]
    EmptyChunk,
    #[error("a chunk of {len} values is too large (the limit is 2^48)")]
    ChunkTooLarge { len: usize },
    #[error("{points} points given; a chunk proof holds at most {K}")]
    TooManyPoints { points: usize },
    #[error("no modulus maps the {points} top-k indices injectively (duplicate indices?)")]
    NoInjectiveModulus { points: usize },
}

/// Why the auditor's own input cannot be checked (a proof that does not fit is a failed
/// [`Verdict`], not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the prompt is empty: a proof covers at least one prompt row")]
    EmptyPrompt,
    #[error("prompt_len {prompt_len} is more than the {rows} rows given")]
    PromptPastRows { prompt_len: usize, rows: usize },
    #[error("a chunk of {len} values is too large (the limit is 2^48)")]
    ChunkTooLarge { len: usize },
}

/// Bytes that are not a [`Proof`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofDecodeError {
    #[error(transparent)]
    Codec(#[from] DecodeError),
    #[error("proof format version {version} is not {PROOF_VERSION}")]
    Version { version: u8 },
    #[error("chunk {index}: {source}")]
    Chunk {
        index: usize,
        #[source]
        source: ChunkDecodeError,
    },
}

/// The proof of one response: the prompt's chunk, then one per [`DECODE_CHUNK`] generated rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub prefill: ChunkProof,
    pub decode: Vec<ChunkProof>,
}

/// The generated-row spans `[start, end)` after a prompt of `prompt_len` rows.
fn decode_spans(rows: usize, prompt_len: usize) -> impl Iterator<Item = (usize, usize)> {
    (prompt_len..rows)
        .step_by(DECODE_CHUNK)
        .map(move |s| (s, s.saturating_add(DECODE_CHUNK).min(rows)))
}

/// A shape both [`prove`] and [`verify`] refuse.
enum Shape {
    EmptyPrompt,
    PromptPastRows { prompt_len: usize, rows: usize },
    TooLarge { len: usize },
}

fn check_shape(rows: &Rows<'_>, prompt_len: usize) -> Result<(), Shape> {
    if prompt_len == 0 {
        return Err(Shape::EmptyPrompt);
    }
    if prompt_len > rows.len() {
        return Err(Shape::PromptPastRows {
            prompt_len,
            rows: rows.len(),
        });
    }
    // No chunk is longer than all the rows together.
    let len = rows.as_flat().len();
    if len >= bf16::MAX_CHUNK_VALUES {
        return Err(Shape::TooLarge { len });
    }
    Ok(())
}

impl From<Shape> for ProveError {
    fn from(s: Shape) -> Self {
        match s {
            Shape::EmptyPrompt => ProveError::EmptyPrompt,
            Shape::PromptPastRows { prompt_len, rows } => {
                ProveError::PromptPastRows { prompt_len, rows }
            }
            Shape::TooLarge { len } => ProveError::ChunkTooLarge { len },
        }
    }
}

impl From<Shape> for VerifyError {
    fn from(s: Shape) -> Self {
        match s {
            Shape::EmptyPrompt => VerifyError::EmptyPrompt,
            Shape::PromptPastRows { prompt_len, rows } => {
                VerifyError::PromptPastRows { prompt_len, rows }
            }
            Shape::TooLarge { len } => VerifyError::ChunkTooLarge { len },
        }
    }
}

/// The proof of `rows` (one final-norm hidden row per position fed to the model: the prompt's
/// `prompt_len`, then each generated token except the last), one chunk for the prompt and one
/// per 32 generated rows (the last may be shorter; none when nothing was generated after the
/// first token).
pub fn prove(rows: Rows<'_>, prompt_len: usize) -> Result<Proof, ProveError> {
    check_shape(&rows, prompt_len)?;
    let prefill = ChunkProof::of_values(rows.span(0, prompt_len))?;
    let decode = decode_spans(rows.len(), prompt_len)
        .map(|(a, b)| ChunkProof::of_values(rows.span(a, b)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Proof { prefill, decode })
}

/// A proof's per-chunk statistics against the auditor's rows, and the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The prompt chunk first, then the decode chunks both sides have.
    pub chunks: Vec<ChunkVerdict>,
    /// Decode chunks in the proof.
    pub proof_decode_chunks: usize,
    /// Decode chunks the auditor's rows call for.
    pub expected_decode_chunks: usize,
    /// Every chunk passed and the chunk counts agree.
    pub pass: bool,
}

/// Checks `proof` against the auditor's own `rows` of the same response (one prefill over prompt
/// ++ generated tokens but the last, final-norm output), chunked as [`prove`] chunks.
pub fn verify(
    proof: &Proof,
    rows: Rows<'_>,
    prompt_len: usize,
    thresholds: &Thresholds,
) -> Result<Verdict, VerifyError> {
    check_shape(&rows, prompt_len)?;
    let mut chunks = vec![check_chunk(
        &proof.prefill,
        rows.span(0, prompt_len),
        thresholds,
    )];
    let spans: Vec<(usize, usize)> = decode_spans(rows.len(), prompt_len).collect();
    for (p, &(a, b)) in proof.decode.iter().zip(&spans) {
        chunks.push(check_chunk(p, rows.span(a, b), thresholds));
    }
    let pass = proof.decode.len() == spans.len() && chunks.iter().all(|c| c.pass);
    Ok(Verdict {
        chunks,
        proof_decode_chunks: proof.decode.len(),
        expected_decode_chunks: spans.len(),
        pass,
    })
}

impl Proof {
    /// The most decode chunks a response of at most `max_tokens` generated tokens can have: its
    /// rows after the prompt number at most `max_tokens - 1` (the last token is never fed back).
    pub fn max_decode_chunks(max_tokens: u32) -> usize {
        (max_tokens.saturating_sub(1) as usize).div_ceil(DECODE_CHUNK)
    }

    /// Decodes untrusted bytes, accepting at most `max_decode_chunks` decode chunks (see
    /// [`Proof::max_decode_chunks`]); the length is checked against the bytes left before
    /// anything is allocated, so no input allocates more than its own size.
    pub fn decode(bytes: &[u8], max_decode_chunks: usize) -> Result<Self, ProofDecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PROOF_VERSION {
            return Err(ProofDecodeError::Version { version });
        }
        let chunk = |r: &mut Reader<'_>, index: usize| -> Result<ChunkProof, ProofDecodeError> {
            let b = r.bytes("toploc chunk", MAX_CHUNK_BYTES)?;
            ChunkProof::from_bytes(&b).map_err(|source| ProofDecodeError::Chunk { index, source })
        };
        let prefill = chunk(&mut r, 0)?;
        // Each decode chunk takes at least its 4-byte length and 4 bytes of proof.
        let n = r.len("toploc decode chunks", max_decode_chunks, 8)?;
        let mut decode = Vec::with_capacity(n);
        for i in 0..n {
            decode.push(chunk(&mut r, i + 1)?);
        }
        r.finish()?;
        Ok(Self { prefill, decode })
    }

    /// The hash a receipt commits to, over [`Proof::encode`] (its first byte is the version).
    pub fn hash(&self) -> Hash {
        Hash::of(HashDomain::Proof, &self.encode())
    }
}

/// `[u8 version = 1][prefill chunk][u32 LE n][n decode chunks]`, each chunk as a `u32` LE length
/// and its wire bytes ([`ChunkProof::to_bytes`]): agora-types' canonical codec around upstream's
/// chunk format.
impl Encode for Proof {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(PROOF_VERSION);
        out.put_bytes(&self.prefill.to_bytes());
        out.put_len(self.decode.len());
        for c in &self.decode {
            out.put_bytes(&c.to_bytes());
        }
    }
}
