//! What the generation rules need of a model's vocabulary (each token's bytes and which tokens
//! end a generation), and a copy of it taken off the engine thread, so that an auditor applies
//! the very rules a provider's scheduler applied (JSON mode, stop sequences, the end of a
//! generation) without running the model.

use crate::engine::{Engine, TokenId};

/// A vocabulary as the generation rules read it.
pub trait Pieces {
    /// The bytes `token` renders to in output text (control tokens render as nothing).
    fn piece(&self, token: TokenId) -> &[u8];
    /// Whether `token` ends a generation (EOS, EOT, ...).
    fn is_eog(&self, token: TokenId) -> bool;
    /// The context one sequence may fill, when known.
    fn context_limit(&self) -> Option<u32>;
}

impl<E: Engine> Pieces for E {
    fn piece(&self, token: TokenId) -> &[u8] {
        Engine::piece(self, token)
    }
    fn is_eog(&self, token: TokenId) -> bool {
        Engine::is_eog(self, token)
    }
    fn context_limit(&self) -> Option<u32> {
        Some(self.info().n_ctx_seq)
    }
}

/// A model's pieces and end-of-generation tokens, copied once when its engine starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    pieces: Vec<Box<[u8]>>,
    eog: Vec<TokenId>,
}

impl Vocabulary {
    /// Copies `engine`'s vocabulary.
    pub fn of<E: Engine>(engine: &E) -> Vocabulary {
        let n = engine.info().n_vocab;
        Vocabulary {
            pieces: (0..n).map(|t| Engine::piece(engine, t).into()).collect(),
            eog: engine.info().eog_tokens.clone(),
        }
    }

    /// Tokens in the vocabulary.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

impl Pieces for Vocabulary {
    fn piece(&self, token: TokenId) -> &[u8] {
        self.pieces.get(token as usize).map_or(&[], |p| p)
    }
    fn is_eog(&self, token: TokenId) -> bool {
        self.eog.contains(&token)
    }
    /// Unknown: another machine's context may be larger. A request whose prompt and
    /// `max_tokens` do not fit is refused before it starts, so within `max_tokens` the context
    /// never ends a generation.
    fn context_limit(&self) -> Option<u32> {
        None
    }
}
