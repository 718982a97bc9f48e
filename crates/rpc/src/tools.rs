//! Read-only tools over the node's RPC, for language-model agents: each a function tool (name,
//! description, JSON-Schema parameters, in `agora_types::Tool`'s form, ready for `tools` on
//! `/v1/chat/completions`) and [`call`], which runs one against a node and answers in small JSON
//! a model can read (amounts in AGR). Used by `agora ask`; any agent may offer the same set.
//!
//! | tool | answers with |
//! |---|---|
//! | `chain_status` | chain id, height, time, mempool size, supply |
//! | `top_accounts` | the `top` (1 to 10) richest accounts with their balances |
//! | `get_account` | an address's balance, nonce and stake |
//! | `list_providers` | how many providers are registered, each with its models and stake |
//! | `list_markets` | the markets with their members and paid usage |
//! | `get_block` | a block's height, time, proposer and transaction count |
//! | `account_spend` | what an account paid providers through its channels |
//!
//! Nothing here signs or sends a transaction.

use agora_types::{Address, Amount, Tool};
use serde_json::{Value, json};

use crate::api::BlockTxs;
use crate::client::{ChainClient, ChainError};

/// Why a tool call could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("there is no tool named {0:?}")]
    Unknown(String),
    #[error("bad arguments for {tool}: {reason}")]
    Arguments { tool: String, reason: String },
    #[error("the node: {0}")]
    Chain(#[from] ChainError),
}

fn tool(name: &str, description: &str, parameters: Value) -> Tool {
    Tool {
        name: name.into(),
        description: description.into(),
        parameters: parameters.to_string(),
    }
}

fn no_arguments() -> Value {
    json!({"type": "object", "properties": {}, "additionalProperties": false})
}

fn address_argument() -> Value {
    json!({"type": "object", "properties": {"address": {"type": "string", "maxLength": 90}},
        "required": ["address"], "additionalProperties": false})
}

/// The tools, as a chat request's `tools` carries them.
pub fn specs() -> Vec<Tool> {
    vec![
        tool(
            "chain_status",
            "The chain's status: its current height (how many blocks), chain id, time and token supply.",
            no_arguments(),
        ),
        tool(
            "top_accounts",
            "The richest accounts: which accounts hold the most AGR, richest first.",
            json!({"type": "object", "properties": {"top": {"type": "integer", "enum": [1, 3, 5, 10]}},
                "required": ["top"], "additionalProperties": false}),
        ),
        tool(
            "get_account",
            "One account by its agora1... address: its balance, nonce and stake.",
            address_argument(),
        ),
        tool(
            "list_providers",
            "The providers: how many providers are registered, with their models and stake.",
            no_arguments(),
        ),
        tool(
            "list_markets",
            "The markets: how many markets there are, their members and paid usage.",
            no_arguments(),
        ),
        tool(
            "get_block",
            "One block by its height: its time, proposer and number of transactions.",
            json!({"type": "object", "properties": {"height": {"type": "integer"}},
                "required": ["height"], "additionalProperties": false}),
        ),
        tool(
            "account_spend",
            "What an account (an agent, a gateway) has paid providers, by its agora1... address.",
            address_argument(),
        ),
    ]
}

fn agr(a: Amount) -> String {
    a.to_string()
}

fn address_of(tool: &str, args: &Value) -> Result<Address, ToolError> {
    let bad = |reason: String| ToolError::Arguments {
        tool: tool.into(),
        reason,
    };
    let text = args["address"]
        .as_str()
        .ok_or_else(|| bad("address must be a string".into()))?;
    text.trim()
        .parse()
        .map_err(|e| bad(format!("{text:?} is not an address: {e}")))
}

/// Runs tool `name` with `arguments` (JSON text) against the node behind `chain`.
pub async fn call(chain: &ChainClient, name: &str, arguments: &str) -> Result<Value, ToolError> {
    let args: Value = serde_json::from_str(if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    })
    .map_err(|e| ToolError::Arguments {
        tool: name.into(),
        reason: format!("not JSON: {e}"),
    })?;
    Ok(match name {
        "chain_status" => {
            let s = chain.status().await?;
            json!({"chain_id": s.chain_id, "height": s.height, "timestamp_ms": s.timestamp_ms,
                "mempool": s.mempool, "genesis_supply": agr(s.supply.genesis),
                "minted": agr(s.supply.minted), "burned": agr(s.supply.burned)})
        }
        "top_accounts" => {
            let top = args["top"].as_u64().unwrap_or(3).clamp(1, 10) as u32;
            let v = chain.top_accounts(top).await?;
            json!({"richest_accounts": v.accounts.iter().map(|a| json!({
                    "address": a.address.to_string(), "balance": agr(a.balance)}))
                .collect::<Vec<_>>(), "accounts_in_all": v.total, "height": v.height})
        }
        "get_account" => {
            let a = address_of(name, &args)?;
            let v = chain.account(&a).await?;
            json!({"address": a.to_string(), "balance": agr(v.balance), "nonce": v.nonce,
                "self_stake": agr(v.self_stake), "stake_behind": agr(v.stake_behind)})
        }
        "list_providers" => {
            let v = chain.providers().await?;
            json!({"number_of_providers": v.total, "providers": v.providers.iter().map(|p| json!({
                "address": p.address.to_string(), "stake": agr(p.stake),
                "models": p.record.info.models.iter().map(|m| m.model.to_string()).collect::<Vec<_>>(),
                "jailed_until": p.record.jailed_until})).collect::<Vec<_>>()})
        }
        "list_markets" => {
            let v = chain.markets().await?;
            json!({"number_of_markets": v.markets.len(), "markets": v.markets.iter().map(|m| json!({
                "name": m.name, "members": m.members, "usage": agr(m.usage),
                "epochs_run": m.epochs_run})).collect::<Vec<_>>()})
        }
        "get_block" => {
            let h = args["height"]
                .as_u64()
                .ok_or_else(|| ToolError::Arguments {
                    tool: name.into(),
                    reason: "height must be a non-negative integer".into(),
                })?;
            match chain.block(h, BlockTxs::Ids).await? {
                None => json!({"height": h, "found": false}),
                Some(b) => json!({"height": b.header.height, "found": true,
                    "timestamp_ms": b.header.timestamp_ms,
                    "proposer": b.header.proposer.to_string(), "transactions": b.txs.len()}),
            }
        }
        "account_spend" => {
            let a = address_of(name, &args)?;
            let v = chain.spend(&a).await?;
            json!({"address": a.to_string(), "paid_to_providers": agr(v.redeemed),
                "unspent_deposits": agr(v.unspent), "channels": v.channel_count})
        }
        other => return Err(ToolError::Unknown(other.into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_unique_name_and_object_parameters() {
        let specs = specs();
        let mut names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), specs.len());
        for t in &specs {
            let p: Value = serde_json::from_str(&t.parameters).unwrap();
            assert_eq!(p["type"], "object", "{}", t.name);
            assert!(!t.description.is_empty());
        }
    }
}
