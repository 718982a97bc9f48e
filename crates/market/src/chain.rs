//! A small async client for a node's JSON RPC: what providers and gateways need from the ledger.

use std::time::Duration;

use agora_ledger::state::{Channel, ModelRecord, ProviderRecord};
use agora_types::{Address, Amount, Hash, Outcome, Receipt, SecretKey, SignedTx, Tx, TxBody};
use serde::Deserialize;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("node refused ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the node: {0}")]
    BadAnswer(String),
    #[error("transaction {id} failed on the ledger (code {code}): {message}")]
    TxFailed {
        id: Hash,
        code: u16,
        message: String,
    },
    #[error("transaction {0} was not final after {1:?}")]
    NotFinal(Hash, Duration),
}

/// An account as the RPC reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountView {
    pub balance: Amount,
    pub nonce: u64,
    pub self_stake: Amount,
    pub height: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct ChannelAnswer {
    channel: Channel,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderView {
    pub record: ProviderRecord,
    pub stake: Amount,
}

#[derive(Debug, Clone, Deserialize)]
struct ModelAnswer {
    record: ModelRecord,
}

/// Chain facts every signer needs.
#[derive(Debug, Clone)]
pub struct ChainInfo {
    pub chain_id: String,
    pub min_fee: Amount,
    pub height: u64,
    pub channel_challenge_blocks: u64,
    pub min_provider_stake: Amount,
}

/// Reads the ledger and submits transactions through one node's RPC.
#[derive(Clone)]
pub struct ChainClient {
    base: String,
    http: reqwest::Client,
}

impl ChainClient {
    pub fn new(base: &str) -> ChainClient {
        ChainClient {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(8)
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, ChainError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ChainError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(refused(status.as_u16(), &v));
        }
        Ok(Some(v))
    }

    fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ChainError> {
        serde_json::from_value(v).map_err(|e| ChainError::BadAnswer(e.to_string()))
    }

    pub async fn info(&self) -> Result<ChainInfo, ChainError> {
        let v = self
            .get_json("/v1/status")
            .await?
            .ok_or_else(|| ChainError::BadAnswer("no /v1/status".into()))?;
        Ok(ChainInfo {
            chain_id: v["chain_id"]
                .as_str()
                .ok_or_else(|| ChainError::BadAnswer("status has no chain_id".into()))?
                .to_string(),
            min_fee: Self::parse(v["params"]["min_fee"].clone())?,
            height: v["height"].as_u64().unwrap_or(0),
            channel_challenge_blocks: v["params"]["channel_challenge_blocks"]
                .as_u64()
                .unwrap_or(20),
            min_provider_stake: Self::parse(v["params"]["min_provider_stake"].clone())?,
        })
    }

    pub async fn account(&self, a: &Address) -> Result<AccountView, ChainError> {
        let v = self
            .get_json(&format!("/v1/accounts/{a}"))
            .await?
            .ok_or_else(|| ChainError::BadAnswer("account query answered 404".into()))?;
        Self::parse(v)
    }

    pub async fn channel(&self, id: &Hash) -> Result<Option<Channel>, ChainError> {
        match self.get_json(&format!("/v1/channels/{id}")).await? {
            None => Ok(None),
            Some(v) => Ok(Some(Self::parse::<ChannelAnswer>(v)?.channel)),
        }
    }

    /// The finalized block at `height` as (signed transaction, receipt) pairs; `None` above the tip.
    pub async fn block_txs(
        &self,
        height: u64,
    ) -> Result<Option<Vec<(agora_types::SignedTx, agora_types::Receipt)>>, ChainError> {
        #[derive(serde::Deserialize)]
        struct FullBlock {
            transactions: Vec<agora_types::SignedTx>,
            receipts: Vec<agora_types::Receipt>,
        }
        match self
            .get_json(&format!("/v1/blocks/{height}?txs=full"))
            .await?
        {
            None => Ok(None),
            Some(v) => {
                let b = Self::parse::<FullBlock>(v)?;
                Ok(Some(b.transactions.into_iter().zip(b.receipts).collect()))
            }
        }
    }

    pub async fn provider(&self, a: &Address) -> Result<Option<ProviderView>, ChainError> {
        match self.get_json(&format!("/v1/providers/{a}")).await? {
            None => Ok(None),
            Some(v) => Ok(Some(Self::parse(v)?)),
        }
    }

    pub async fn model(&self, sha: &Hash) -> Result<Option<ModelRecord>, ChainError> {
        match self.get_json(&format!("/v1/models/{sha}")).await? {
            None => Ok(None),
            Some(v) => Ok(Some(Self::parse::<ModelAnswer>(v)?.record)),
        }
    }

    pub async fn submit(&self, stx: &SignedTx) -> Result<Hash, ChainError> {
        use agora_types::Encode;
        let url = format!("{}/v1/txs", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&serde_json::json!({ "tx": hex::encode(stx.encode()) }))
            .send()
            .await
            .map_err(|e| ChainError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            return Err(refused(status.as_u16(), &v));
        }
        Ok(stx.id())
    }

    /// Polls until the transaction is in a finalized block; returns its receipt.
    pub async fn wait_final(&self, id: &Hash, timeout: Duration) -> Result<Receipt, ChainError> {
        let start = tokio::time::Instant::now();
        while start.elapsed() < timeout {
            if let Some(v) = self.get_json(&format!("/v1/txs/{id}")).await?
                && v["status"] == "final"
            {
                return Self::parse(v["receipt"].clone());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ChainError::NotFinal(*id, timeout))
    }
}

fn refused(status: u16, v: &serde_json::Value) -> ChainError {
    ChainError::Refused {
        status,
        code: v["error"]["code"].as_str().unwrap_or("error").to_string(),
        message: v["error"]["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_string(),
    }
}

/// Signs and sends one account's transactions in nonce order.
pub struct TxSender {
    key: SecretKey,
    chain: ChainClient,
    info: ChainInfo,
    next_nonce: Mutex<Option<u64>>,
}

impl TxSender {
    pub async fn new(key: SecretKey, chain: ChainClient) -> Result<TxSender, ChainError> {
        let info = chain.info().await?;
        Ok(TxSender {
            key,
            chain,
            info,
            next_nonce: Mutex::new(None),
        })
    }

    pub fn address(&self) -> Address {
        self.key.public()
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    pub fn chain(&self) -> &ChainClient {
        &self.chain
    }

    pub fn chain_id(&self) -> &str {
        &self.info.chain_id
    }

    pub fn info(&self) -> &ChainInfo {
        &self.info
    }

    /// Signs `body` with the next nonce and submits it; returns the tx id and the nonce used.
    pub async fn submit(&self, body: TxBody) -> Result<(Hash, u64), ChainError> {
        let mut guard = self.next_nonce.lock().await;
        let nonce = match *guard {
            Some(n) => n,
            None => self.chain.account(&self.key.public()).await?.nonce,
        };
        let tx = Tx {
            chain_id: self.info.chain_id.clone(),
            signer: self.key.public(),
            nonce,
            fee: self.info.min_fee,
            body,
        }
        .sign(&self.key);
        match self.chain.submit(&tx).await {
            Ok(id) => {
                *guard = Some(nonce + 1);
                Ok((id, nonce))
            }
            Err(e) => {
                // Re-read the nonce next time: someone else may have used this account.
                *guard = None;
                Err(e)
            }
        }
    }

    /// Submits and waits until final; a failed outcome is an error.
    pub async fn send(&self, body: TxBody) -> Result<(Hash, u64), ChainError> {
        let (id, nonce) = self.submit(body).await?;
        let receipt = self.chain.wait_final(&id, Duration::from_secs(60)).await?;
        match receipt.outcome {
            Outcome::Success => Ok((id, nonce)),
            Outcome::Failed { code, message } => Err(ChainError::TxFailed { id, code, message }),
        }
    }
}
