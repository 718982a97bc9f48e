//! Dev-only helpers: seeded keys, genesis and transaction generators, fixtures.

use agora_ledger::genesis::{GenesisAccount, GenesisValidator};
use agora_ledger::{BlockContext, Built, Genesis, Params, State};
use agora_types::{
    Address, Amount, HardwareSummary, Hash, ModelPrice, ProviderInfo, SecretKey, SignedTx, Tx,
    TxBody,
};
use std::collections::BTreeMap;

pub const TEST_CHAIN: &str = "agora-test";

/// `n` deterministic keys named `user-0`, `user-1`, ...
pub fn test_keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_test_seed(&format!("user-{i}")))
        .collect()
}

/// What a test provider registers: no peer id or endpoints, a one-core CPU, serving `model` at
/// one base unit per million tokens either way.
pub fn provider_info(model: Hash) -> ProviderInfo {
    ProviderInfo {
        peer_id: vec![],
        endpoints: vec![],
        hardware: HardwareSummary {
            accelerator: "cpu".into(),
            memory_mib: 1,
            cpu_cores: 1,
        },
        models: vec![ModelPrice {
            model,
            input_per_million: Amount(1),
            output_per_million: Amount(1),
        }],
    }
}

/// A genesis giving each key `balance`, with default params and an optional validator.
pub fn test_genesis(keys: &[SecretKey], balance: Amount, params: Params) -> Genesis {
    Genesis {
        chain_id: TEST_CHAIN.to_string(),
        timestamp_ms: 1_700_000_000_000,
        params,
        accounts: keys
            .iter()
            .map(|k| GenesisAccount {
                address: k.public(),
                balance,
            })
            .collect(),
        validators: vec![GenesisValidator {
            address: SecretKey::from_test_seed("validator-0").public(),
            stake: Amount::from_agr(10_000),
        }],
    }
}

/// Signs transactions with the right next nonce for each signer.
#[derive(Default)]
pub struct TxFactory {
    pub chain_id: String,
    nonces: BTreeMap<Address, u64>,
    pub fee: Amount,
}

impl TxFactory {
    pub fn new(chain_id: &str, fee: Amount) -> Self {
        TxFactory {
            chain_id: chain_id.to_string(),
            nonces: BTreeMap::new(),
            fee,
        }
    }

    /// Starts from the nonces recorded in `state`.
    pub fn sync(&mut self, state: &State, keys: &[SecretKey]) {
        for k in keys {
            self.nonces
                .insert(k.public(), state.account(&k.public()).nonce);
        }
    }

    pub fn set_nonce(&mut self, who: &Address, nonce: u64) {
        self.nonces.insert(*who, nonce);
    }

    /// Forgets the last signed transaction of `who` (it was never included).
    pub fn rollback(&mut self, who: &Address) {
        if let Some(n) = self.nonces.get_mut(who) {
            *n = n.saturating_sub(1);
        }
    }

    pub fn next_nonce(&self, who: &Address) -> u64 {
        self.nonces.get(who).copied().unwrap_or(0)
    }

    pub fn sign(&mut self, key: &SecretKey, body: TxBody) -> SignedTx {
        let nonce = self.nonces.entry(key.public()).or_insert(0);
        let tx = Tx {
            chain_id: self.chain_id.clone(),
            signer: key.public(),
            nonce: *nonce,
            fee: self.fee,
            body,
        };
        *nonce += 1;
        tx.sign(key)
    }
}

/// Builds and applies blocks in memory: the single-node producer without storage.
pub struct Chain {
    pub state: State,
    pub proposer: Address,
    pub time_ms: u64,
}

impl Chain {
    pub fn new(genesis: &Genesis) -> Chain {
        Chain {
            state: genesis.into_state().expect("test genesis is valid"),
            proposer: SecretKey::from_test_seed("validator-0").public(),
            time_ms: genesis.timestamp_ms,
        }
    }

    /// Builds a block from `txs`, applies it, and returns what was built.
    pub fn produce(&mut self, txs: Vec<SignedTx>) -> Built {
        self.time_ms += 250;
        let built = agora_ledger::build_block(
            &self.state,
            &BlockContext {
                timestamp_ms: self.time_ms,
                proposer: self.proposer,
            },
            txs,
        );
        self.state = built.state.clone();
        built
    }
}

/// A chat in OpenAI's request shapes (`messages` with `tool_calls` and `tool_call_id`, `tools` as
/// `[{"type": "function", "function": {...}}]`), as Agora carries it: the tool message's `name`
/// is left out (Agora derives it from the call) and parameters are serde_json's text (keys
/// sorted). Reads the chat-template golden fixture in the tests that use it.
pub fn openai_chat(
    messages: &serde_json::Value,
    tools: &serde_json::Value,
) -> (Vec<agora_types::ChatMessage>, Vec<agora_types::Tool>) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let messages = messages
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| agora_types::ChatMessage {
            tool_calls: m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| agora_types::ToolCall {
                    id: text(&c["id"]),
                    name: text(&c["function"]["name"]),
                    arguments: text(&c["function"]["arguments"]),
                })
                .collect(),
            tool_call_id: m["tool_call_id"].as_str().map(str::to_owned),
            ..agora_types::ChatMessage::new(text(&m["role"]), text(&m["content"]))
        })
        .collect();
    let tools = tools
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| agora_types::Tool {
            name: text(&t["function"]["name"]),
            description: text(&t["function"]["description"]),
            parameters: t["function"]["parameters"].to_string(),
        })
        .collect();
    (messages, tools)
}
