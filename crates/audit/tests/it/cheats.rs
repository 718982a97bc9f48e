//! The cheater harness: an honest provider and providers that cheat in each way the audit must
//! catch, all on real models. Each produces what a gateway would hold for one response: the
//! provider-signed receipt, the proof that came with it and the replay (job + delivered tokens).
//! Shared by the `it` tests and the `slow` detection-rate binary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agora_inference::backends::llama_cpp::{self, LlamaConfig};
use agora_inference::requant::{self, GgmlDType};
use agora_inference::{Prompt, Request, SamplingParams, Scheduler, SchedulerConfig};
use agora_market::protocol::{
    InferenceReceipt, Price, ProofBytes, Replay, SignedReceipt, Work, token_hash, work_hash,
};
use agora_types::{Amount, Encode, Hash, SecretKey};
use agora_verify::toploc::{self, Proof};
use agora_verify::{Rows, flatten};

pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

/// The layers (of SmolLM2-135M's 30, numbered from 0) that [`Cheat::SkippedLayers`] makes
/// identities: the two deepest but the last. Two layers is about the least a cheater saves
/// (6.7% of the layer compute) for the smallest change to the output, so the hardest case to
/// catch; and pruning studies (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the
/// Deeper Layers") find the deep layers before the final one the ones a model misses least.
pub const SKIPPED_LAYERS: [u32; 2] = [27, 28];

/// The sha256 the model is registered under (the auditor and the receipts agree on it; its
/// value does not matter here).
pub const REGISTERED: Hash = Hash([7; 32]);

fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

fn models_dir() -> PathBuf {
    std::env::var_os("AGORA_MODELS_DIR").map_or_else(
        || PathBuf::from(manifest_dir()).join("../../models"),
        PathBuf::from,
    )
}

/// A model file from `$AGORA_MODELS_DIR` (else `<workspace>/models`); panics with the command
/// that fetches it when missing.
pub fn model(name: &str) -> PathBuf {
    let dir = models_dir();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "model file {} is missing: run `bash scripts/fetch-models.sh {}`",
        p.display(),
        dir.display()
    );
    p
}

/// The file a cheat derives from the registered model, built on first use and kept in
/// `<models dir>/derived/` for later runs (the conversion is deterministic, and written under a
/// temporary name and renamed, so concurrent test processes never read half a file). Delete the
/// folder when the registered file changes.
pub fn derived(cheat: Cheat) -> PathBuf {
    let name = match cheat {
        Cheat::Requantized => "SmolLM2-135M-Instruct.Q4_0.gguf",
        Cheat::RequantizedQ8 => "SmolLM2-135M-Instruct.Q8_0.gguf",
        Cheat::SkippedLayers => "SmolLM2-135M-Instruct.Q4_1.skip-27-28.gguf",
        other => panic!("{other:?} serves no derived model"),
    };
    let dir = models_dir().join("derived");
    let p = dir.join(name);
    if !p.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let real = model(SMOLLM);
        match cheat {
            Cheat::Requantized => requant::requantize(&real, &p, GgmlDType::Q4_0),
            Cheat::RequantizedQ8 => requant::requantize(&real, &p, GgmlDType::Q8_0),
            _ => requant::zero_layers(&real, &p, &SKIPPED_LAYERS),
        }
        .unwrap();
    }
    p
}

/// Schedulers for those of `cheats` that serve a model derived from the registered one (what
/// [`Harness::derived`] holds).
pub fn derived_engines(cheats: &[Cheat]) -> Vec<(Cheat, Arc<Scheduler>)> {
    cheats
        .iter()
        .filter(|c| {
            matches!(
                c,
                Cheat::Requantized | Cheat::RequantizedQ8 | Cheat::SkippedLayers
            )
        })
        .map(|&c| (c, engine_at(&derived(c), &format!("{c:?}"), 1, 2)))
        .collect()
}

/// A scheduler with hidden states on (what providers and auditors both run).
pub fn engine(name: &str, n_seq: u32, threads: u32) -> Arc<Scheduler> {
    engine_at(&model(name), name, n_seq, threads)
}

fn engine_at(path: &Path, name: &str, n_seq: u32, threads: u32) -> Arc<Scheduler> {
    Arc::new(
        llama_cpp::serve(
            path,
            name,
            LlamaConfig {
                n_seq,
                n_ctx_seq: Some(1024),
                threads,
                hidden_states: true,
                ..LlamaConfig::default()
            },
            SchedulerConfig::default(),
        )
        .unwrap(),
    )
}

/// The ways a provider may cheat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cheat {
    Honest,
    /// Serves another model (Gemma 3) under the registered hash, retokenizing its text with the
    /// real model's tokenizer and proving with its own hidden states.
    OtherModel,
    /// Generates with the cheap model, then runs one prefill of the real model over that text to
    /// build a valid proof (TOPLOC's known gap).
    PrefillAttack,
    /// Edits the delivered text (a few tokens replaced) after an honest generation.
    EditedOutput,
    /// Attaches the proof of another (honest) response.
    ReplayedProof,
    /// Random proof bytes.
    RandomProof,
    /// Samples at another temperature and seed than the request's.
    TamperedSampler,
    /// Serves another model (Gemma 3) and delivers its own token ids as they are, with its own
    /// rows proved: what a provider that swaps in a model with another tokenizer sends.
    ForeignTokens,
    /// Serves the registered model (Q4_1) re-quantized to Q4_0, smaller and cheaper, and
    /// generates and proves on it.
    Requantized,
    /// The registered model re-quantized to Q8_0: larger, not cheaper, the same weights at
    /// another precision. Measured for the record (not in [`CHEATS`]).
    RequantizedQ8,
    /// Serves the registered model with [`SKIPPED_LAYERS`] made identities (the compute a
    /// provider saves by skipping them), and generates and proves on it.
    SkippedLayers,
}

pub const CHEATS: [Cheat; 9] = [
    Cheat::OtherModel,
    Cheat::ForeignTokens,
    Cheat::PrefillAttack,
    Cheat::EditedOutput,
    Cheat::ReplayedProof,
    Cheat::RandomProof,
    Cheat::TamperedSampler,
    Cheat::Requantized,
    Cheat::SkippedLayers,
];

/// What a gateway holds after one response.
#[derive(Clone)]
pub struct Served {
    pub receipt: SignedReceipt,
    pub proof: Option<ProofBytes>,
    pub replay: Replay,
}

pub struct Harness {
    pub real: Arc<Scheduler>,
    /// The cheap model (only the cheats that need it load it).
    pub cheap: Option<Arc<Scheduler>>,
    /// The models derived from the registered one, by cheat ([`derived_engines`]).
    pub derived: Vec<(Cheat, Arc<Scheduler>)>,
    pub key: SecretKey,
}

pub fn request_params(seed: u64, max_tokens: u32) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        seed,
        max_tokens,
        ignore_eos: true,
        ..SamplingParams::default()
    }
}

fn prove(rows: &[Vec<f32>]) -> Proof {
    let (flat, width) = flatten(rows).unwrap();
    toploc::prove(Rows::new(&flat, width).unwrap(), 1).unwrap()
}

/// One generation: the rendered prompt, the tokens, the sampled positions' rows, the text.
struct Generated {
    prompt: Vec<u32>,
    tokens: Vec<u32>,
    rows: Vec<Vec<f32>>,
    text: String,
}

fn generate(engine: &Scheduler, work: &Work, params: SamplingParams) -> Generated {
    let prompt = match work {
        Work::Text { prompt } => Prompt::Text(prompt.clone()),
        Work::Chat { messages, .. } => Prompt::Chat(messages.clone()),
        Work::Embed { .. } => unreachable!(),
    };
    let mut r = Request::generate(prompt, params);
    r.capture_sampled = true;
    let out = engine.generate_blocking(r).unwrap();
    let c = out.completion;
    let rows = c.hidden.unwrap();
    Generated {
        rows: rows[..c.tokens.len()].to_vec(),
        prompt: c.prompt,
        tokens: c.tokens,
        text: out.text,
    }
}

/// The real model's tokens for `text` as a continuation (no beginning-of-sequence token).
fn retokenize(engine: &Scheduler, text: &str) -> Vec<u32> {
    let mut r = Request::score(Vec::new(), false);
    r.prompt = Prompt::Text(text.to_string());
    let mut t = engine.generate_blocking(r).unwrap().completion.prompt;
    if engine.info().add_bos && t.first() == engine.info().bos.as_ref() {
        t.remove(0);
    }
    t
}

/// The real model's sampled-position rows for `prompt` ++ `tokens` (one prefill).
fn prefill_rows(engine: &Scheduler, work: &Work, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut r = Request::score(Vec::new(), true);
    r.prompt = match work {
        Work::Text { prompt } => Prompt::Text(prompt.clone()),
        Work::Chat { messages, .. } => Prompt::Chat(messages.clone()),
        Work::Embed { .. } => unreachable!(),
    };
    r.continuation = tokens[..tokens.len() - 1].to_vec();
    let rows = engine
        .generate_blocking(r)
        .unwrap()
        .completion
        .hidden
        .unwrap();
    rows[rows.len() - tokens.len()..].to_vec()
}

impl Harness {
    /// Serves `work` at `params` the way `cheat` says, and signs what the provider would sign.
    pub fn serve(&self, cheat: Cheat, work: &Work, params: &SamplingParams) -> Served {
        let real = &*self.real;
        let (prompt, output, proof) = match cheat {
            Cheat::Honest => {
                let g = generate(real, work, params.clone());
                (g.prompt, g.tokens, Some(prove(&g.rows).encode()))
            }
            Cheat::OtherModel | Cheat::PrefillAttack => {
                let cheap = self.cheap.as_ref().expect("the cheap model");
                let g = generate(cheap, work, params.clone());
                let mut t = retokenize(real, &g.text);
                t.truncate(params.max_tokens as usize);
                if t.is_empty() {
                    t.push(g.tokens[0] % real.info().n_vocab);
                }
                let p = real_prompt(real, work);
                let proof = if cheat == Cheat::OtherModel {
                    // Its own rows, as many as the tokens it claims.
                    let n = t.len().min(g.rows.len());
                    t.truncate(n);
                    prove(&g.rows[..n])
                } else {
                    prove(&prefill_rows(real, work, &t))
                };
                (p, t, Some(proof.encode()))
            }
            Cheat::ForeignTokens => {
                let cheap = self.cheap.as_ref().expect("the cheap model");
                let g = generate(cheap, work, params.clone());
                let p = real_prompt(real, work);
                (p, g.tokens, Some(prove(&g.rows).encode()))
            }
            Cheat::EditedOutput => {
                let g = generate(real, work, params.clone());
                let (p, mut t) = (g.prompt, g.tokens);
                let proof = prove(&g.rows).encode();
                // Replace a token every eight, starting in the middle of the first chunk.
                for i in (t.len() / 4..t.len()).step_by(8) {
                    t[i] = (t[i] + 17) % real.info().n_vocab;
                }
                (p, t, Some(proof))
            }
            Cheat::ReplayedProof => {
                let other = Work::Text {
                    prompt: "An unrelated question about gardening in spring.".into(),
                };
                let old = generate(real, &other, params.clone());
                let g = generate(real, work, params.clone());
                let n = g.tokens.len().min(old.rows.len());
                (
                    g.prompt,
                    g.tokens[..n].to_vec(),
                    Some(prove(&old.rows[..n]).encode()),
                )
            }
            Cheat::RandomProof => {
                let g = generate(real, work, params.clone());
                let len = prove(&g.rows).encode().len();
                let mut x = params.seed | 1;
                let bytes = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                (g.prompt, g.tokens, Some(bytes))
            }
            Cheat::Requantized | Cheat::RequantizedQ8 | Cheat::SkippedLayers => {
                // The derived model has the registered one's tokenizer and template: its prompt
                // and tokens are the real model's as they are (nothing to retokenize), and it
                // proves with its own rows.
                let (_, derived) = self
                    .derived
                    .iter()
                    .find(|(c, _)| *c == cheat)
                    .expect("the derived model");
                let g = generate(derived, work, params.clone());
                (g.prompt, g.tokens, Some(prove(&g.rows).encode()))
            }
            Cheat::TamperedSampler => {
                let cheap_params = SamplingParams {
                    temperature: 1.3,
                    seed: params.seed.wrapping_add(1),
                    ..params.clone()
                };
                let g = generate(real, work, cheap_params);
                (g.prompt, g.tokens, Some(prove(&g.rows).encode()))
            }
        };
        self.sign(work, params, prompt, output, proof)
    }

    /// Honest responses of `works` generated on `engine` all at once, so they share its
    /// batches (the batch shape an honest provider under load has).
    pub fn honest_batch(
        &self,
        engine: &Scheduler,
        works: &[Work],
        params: &[SamplingParams],
    ) -> Vec<Served> {
        let streams: Vec<_> = works
            .iter()
            .zip(params)
            .map(|(w, p)| {
                let Work::Text { prompt } = w else {
                    unreachable!()
                };
                let mut r = Request::generate(Prompt::Text(prompt.clone()), p.clone());
                r.capture_sampled = true;
                engine.submit(r).unwrap()
            })
            .collect();
        streams
            .into_iter()
            .zip(works.iter().zip(params))
            .map(|(s, (w, p))| {
                let c = s.collect_blocking().unwrap().completion;
                let rows = c.hidden.unwrap();
                let proof = prove(&rows[..c.tokens.len()]).encode();
                self.sign(w, p, c.prompt, c.tokens, Some(proof))
            })
            .collect()
    }

    /// A response generated honestly at `generated_with` but signed as served at `params`
    /// (a provider that ignores a rule the request set, such as a stop sequence, to bill more
    /// tokens), with its delivered text.
    pub fn signed_for(
        &self,
        work: &Work,
        generated_with: &SamplingParams,
        params: &SamplingParams,
    ) -> (Served, String) {
        let g = generate(&self.real, work, generated_with.clone());
        let proof = prove(&g.rows).encode();
        (
            self.sign(work, params, g.prompt, g.tokens, Some(proof)),
            g.text,
        )
    }

    /// An honest response cut to its first `keep` tokens (proved over those), still signed as
    /// complete: a truncated answer sold as whole.
    pub fn truncated(&self, work: &Work, params: &SamplingParams, keep: usize) -> Served {
        let g = generate(&self.real, work, params.clone());
        assert!(
            keep < g.tokens.len(),
            "only {} tokens generated",
            g.tokens.len()
        );
        let proof = prove(&g.rows[..keep]).encode();
        self.sign(
            work,
            params,
            g.prompt,
            g.tokens[..keep].to_vec(),
            Some(proof),
        )
    }

    /// One honest response generated on `engine` (another provider's settings than the
    /// auditor's: threads, slots).
    pub fn honest_on(&self, engine: &Scheduler, work: &Work, params: &SamplingParams) -> Served {
        let g = generate(engine, work, params.clone());
        let proof = prove(&g.rows).encode();
        self.sign(work, params, g.prompt, g.tokens, Some(proof))
    }

    fn sign(
        &self,
        work: &Work,
        params: &SamplingParams,
        prompt: Vec<u32>,
        output: Vec<u32>,
        proof: Option<Vec<u8>>,
    ) -> Served {
        let price = Price {
            input_per_million: Amount(1_000_000),
            output_per_million: Amount(2_000_000),
        };
        // A proof that decodes has its hash signed in; random bytes are signed as they are.
        let proof_hash =
            proof
                .as_ref()
                .map_or(Hash::ZERO, |b| match Proof::decode(b, usize::MAX >> 8) {
                    Ok(p) => p.hash(),
                    Err(_) => Hash::of(agora_types::HashDomain::Request, b),
                });
        let receipt = InferenceReceipt {
            chain_id: "agora-audit-test".into(),
            request_id: Hash([1; 32]),
            provider: self.key.public(),
            payer: SecretKey::from_test_seed("payer").public(),
            channel: Hash([2; 32]),
            model: REGISTERED,
            seed: params.seed,
            params_hash: params.hash(),
            work_hash: work_hash(work),
            continuation_hash: token_hash(&[]),
            prompt_hash: token_hash(&prompt),
            engine: "agora test".into(),
            prompt_tokens: prompt.len() as u32,
            completion_tokens: output.len() as u32,
            continuation_tokens: 0,
            price,
            charged: price
                .cost(prompt.len() as u64, output.len() as u64)
                .unwrap(),
            output_hash: token_hash(&output),
            time_ms: 0,
            complete: true,
            proof_hash,
        }
        .sign(&self.key);
        Served {
            receipt,
            proof: proof.map(ProofBytes),
            replay: Replay {
                work: work.clone(),
                sampling: params.clone(),
                continuation: Vec::new(),
                output,
            },
        }
    }
}

/// The rendered prompt the real model prefills for `work` (what an honest receipt names).
fn real_prompt(engine: &Scheduler, work: &Work) -> Vec<u32> {
    let mut r = Request::score(Vec::new(), false);
    r.prompt = match work {
        Work::Text { prompt } => Prompt::Text(prompt.clone()),
        Work::Chat { messages, .. } => Prompt::Chat(messages.clone()),
        Work::Embed { .. } => unreachable!(),
    };
    engine.generate_blocking(r).unwrap().completion.prompt
}
