//! An agent's own client: the gateway's market, payer and relay used as a library, so an agent
//! that trusts no gateway pays providers from its own ledger account, through channels it opens
//! itself, with vouchers it signs itself, and no HTTP hop.
//!
//! ```text
//! Agent::chat ──budget and per-request cap: the worst case held before any work──► Relay
//!      ──► Market.pick ──► Payer (the agent's key) opens / tops up its channel ──► provider
//!      ◄── tokens, signed receipt ◄── vouchers for exactly what was delivered
//! ```
//!
//! The limits are the gateway's customer limits on one internal key: `budget` is its credit,
//! `per_request_cap` its [`Limits::per_request`]; the relay holds a request's worst case (its
//! token bounds at the chosen provider's price) before it buys any work, and refuses a request
//! whose worst case is over either. What the agent spent is what its providers were paid, to the
//! base unit (`spent`), and what they can redeem from its channels on the ledger.

use std::sync::Arc;
use std::time::Duration;

use agora_market::TxSender;
use agora_market::protocol::{ChatMessage, SamplingParams, Work};
use agora_types::Tools;
use agora_types::{Address, Amount};
use tokio::sync::mpsc;

use crate::customers::{Customer, Customers, KeyHash, Limits, key_hash};
use crate::market::{Constraints, Market, ModelView};
use crate::payer::{Payer, PayerSettings};
use crate::relay::{
    CompletionJob, Relay, RelayError, RelayEvent, RelaySettings, Summary, new_request_id,
};
use crate::{GatewayError, feed, receipts};

/// What an agent may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLimits {
    /// The most all its requests together may cost.
    pub budget: Amount,
    /// The most one request may cost.
    pub per_request_cap: Amount,
}

/// Why an agent's request did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no provider serves a model named {0:?} now")]
    NoModel(String),
    #[error("{message} ({code})")]
    Refused { code: String, message: String },
    #[error("the request ended without a result")]
    Ended,
}

impl From<RelayError> for AgentError {
    fn from(e: RelayError) -> Self {
        AgentError::Refused {
            code: e.code,
            message: e.message,
        }
    }
}

/// A finished completion: its text and what it cost, per provider.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub summary: Summary,
}

/// A running agent client.
pub struct Agent {
    pub market: Arc<Market>,
    pub payer: Arc<Payer>,
    relay: Arc<Relay>,
    customers: Arc<Customers>,
    key: KeyHash,
    limits: AgentLimits,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `cfg` made fit for an agent's overlay node: it must read the providers' gossiped offers to
/// find them (as a gateway's node does).
pub fn overlay_config(mut cfg: agora_p2p::NetConfig) -> agora_p2p::NetConfig {
    cfg.offer_validator = Some(crate::market::offer_validator());
    cfg
}

/// The agent's one internal key (never leaves the process).
const AGENT_KEY: &str = "agent";

impl Agent {
    /// Starts the client on the agent's overlay node and ledger account (`sender` signs with the
    /// agent's key). Channels get deposits no larger than the budget.
    pub async fn start(
        limits: AgentLimits,
        net: agora_p2p::Handle,
        sender: Arc<TxSender>,
        relay: RelaySettings,
    ) -> Result<Agent, GatewayError> {
        let chain = sender.chain().clone();
        let info = chain.info().await?;
        let market = Arc::new(Market::new(
            net.clone(),
            chain.clone(),
            info.min_provider_stake,
        ));
        let account = sender.address();
        let deposit = limits.budget.min(PayerSettings::default().deposit);
        let payer = Payer::new(
            sender,
            net.clone(),
            PayerSettings {
                deposit,
                low_water: Amount(deposit.0 / 5),
                ..PayerSettings::default()
            },
        );
        let customers = Arc::new(Customers::open(None).map_err(GatewayError::Customers)?);
        customers.insert(
            AGENT_KEY,
            Customer {
                name: "agent".into(),
                account,
                credit: limits.budget,
                spent: Amount::ZERO,
                limits: Limits {
                    per_request: Some(limits.per_request_cap),
                    expires_at: None,
                },
            },
        );
        let relay = Arc::new(Relay {
            market: market.clone(),
            payer: payer.clone(),
            net,
            customers: customers.clone(),
            receipts: Arc::new(receipts::ReceiptStore::open(None).map_err(GatewayError::Receipts)?),
            settings: relay,
            feed: Arc::new(feed::Feed::new()),
        });
        market.refresh().await;
        let tasks = vec![tokio::spawn(
            market.clone().refresh_loop(Duration::from_secs(1)),
        )];
        Ok(Agent {
            market,
            payer,
            relay,
            customers,
            key: key_hash(AGENT_KEY),
            limits,
            tasks,
        })
    }

    /// The agent's ledger account.
    pub fn account(&self) -> Address {
        self.payer.address()
    }

    pub fn limits(&self) -> AgentLimits {
        self.limits
    }

    /// The model named `name` (or by its sha256) if a provider serves it now.
    pub fn model(&self, name: &str) -> Option<ModelView> {
        self.market.model(name)
    }

    /// Starts a chat completion; its events end with `Done` (what it cost) or `Error` (a refusal
    /// over budget or cap comes before any provider is asked to work).
    pub fn chat(
        &self,
        model: &str,
        messages: Vec<ChatMessage>,
        tools: Option<Tools>,
        sampling: SamplingParams,
    ) -> Result<mpsc::Receiver<RelayEvent>, AgentError> {
        let model = self
            .model(model)
            .ok_or_else(|| AgentError::NoModel(model.to_owned()))?;
        Ok(self.relay.start(CompletionJob {
            request_id: new_request_id(),
            model: model.sha256,
            work: Work::Chat { messages, tools },
            sampling,
            constraints: Constraints::default(),
            customer: self.key,
        }))
    }

    /// A chat completion run to its end.
    pub async fn ask(
        &self,
        model: &str,
        messages: Vec<ChatMessage>,
        sampling: SamplingParams,
    ) -> Result<Answer, AgentError> {
        let mut rx = self.chat(model, messages, None, sampling)?;
        let mut text = String::new();
        loop {
            match rx.recv().await {
                Some(RelayEvent::Token(t)) => text.push_str(&t.text),
                Some(RelayEvent::Text(t)) => text.push_str(&t),
                Some(RelayEvent::Embeddings { .. }) => {}
                Some(RelayEvent::Done(summary)) => return Ok(Answer { text, summary }),
                Some(RelayEvent::Error(e)) => return Err(e.into()),
                None => return Err(AgentError::Ended),
            }
        }
    }

    /// What the agent's requests have cost so far: exactly what its providers were paid.
    pub fn spent(&self) -> Amount {
        self.customers
            .get(&self.key)
            .map_or(Amount::ZERO, |c| c.spent)
    }

    /// Budget not yet spent.
    pub fn remaining(&self) -> Amount {
        self.limits.budget.saturating_sub(self.spent())
    }

    /// Closes every channel (after up to 3 s for the providers to acknowledge the last
    /// vouchers); the unspent deposits come back once the channels settle.
    pub async fn shutdown(self) -> usize {
        for t in &self.tasks {
            t.abort();
        }
        self.payer.close_all(Duration::from_secs(3)).await
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
