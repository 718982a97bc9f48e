//! The one async client of the node API: typed answers, bounded bodies, timeouts.

use crate::api::{
    AccountView, AccountsView, BatchRequest, BatchResponse, BlockTxs, BlockView, ChannelView,
    EpochReportView, ErrorBody, MarketView, MarketsView, ModelView, ProviderView, ProvidersView,
    SpendView, StateRootView, StatusView, SubmitRequest, SubmitResponse, SupplyView, TxView,
    ValidatorsView, paths,
};
use agora_ledger::state::{Channel, ModelRecord};
use agora_types::{Address, Amount, Encode, Hash, Receipt, SignedTx};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Largest answer read for anything but a block (records are bounded by the transaction size).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Largest block answer read (a full block is at most 16 MiB encoded; JSON with hex is larger).
pub const MAX_BLOCK_ANSWER_BYTES: usize = 64 << 20;

/// Whole request, connect included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often `wait_final` asks.
const POLL: Duration = Duration::from_millis(50);

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
    #[error("the transaction was not sent: recording it first failed: {0}")]
    NotRecorded(String),
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

impl From<&StatusView> for ChainInfo {
    fn from(s: &StatusView) -> ChainInfo {
        ChainInfo {
            chain_id: s.chain_id.clone(),
            min_fee: s.params.min_fee,
            height: s.height,
            channel_challenge_blocks: s.params.channel_challenge_blocks,
            min_provider_stake: s.params.min_provider_stake,
        }
    }
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
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(8)
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn status(&self) -> Result<StatusView, ChainError> {
        self.get(paths::STATUS, MAX_ANSWER_BYTES)
            .await?
            .ok_or_else(|| ChainError::BadAnswer(format!("no {}", paths::STATUS)))
    }

    pub async fn info(&self) -> Result<ChainInfo, ChainError> {
        Ok(ChainInfo::from(&self.status().await?))
    }

    pub async fn state_root(&self) -> Result<StateRootView, ChainError> {
        self.get(paths::STATE_ROOT, MAX_ANSWER_BYTES)
            .await?
            .ok_or_else(|| ChainError::BadAnswer(format!("no {}", paths::STATE_ROOT)))
    }

    pub async fn supply(&self) -> Result<SupplyView, ChainError> {
        self.get(paths::SUPPLY, MAX_ANSWER_BYTES)
            .await?
            .ok_or_else(|| ChainError::BadAnswer(format!("no {}", paths::SUPPLY)))
    }

    pub async fn validators(&self) -> Result<ValidatorsView, ChainError> {
        self.get(paths::VALIDATORS, MAX_ANSWER_BYTES)
            .await?
            .ok_or_else(|| ChainError::BadAnswer(format!("no {}", paths::VALIDATORS)))
    }

    pub async fn markets(&self) -> Result<MarketsView, ChainError> {
        self.get(paths::MARKETS, MAX_ANSWER_BYTES)
            .await?
            .ok_or_else(|| ChainError::BadAnswer(format!("no {}", paths::MARKETS)))
    }

    pub async fn market(&self, id: &Hash) -> Result<Option<MarketView>, ChainError> {
        self.get(&fill(paths::MARKET, "{id}", id), MAX_ANSWER_BYTES)
            .await
    }

    /// One market epoch's report (only `account`'s lines when given); `None` when the node has
    /// none. A whole report of a large market runs to megabytes, hence the larger bound.
    pub async fn epoch_report(
        &self,
        id: &Hash,
        epoch: u64,
        account: Option<&Address>,
    ) -> Result<Option<EpochReportView>, ChainError> {
        let mut path = fill(&fill(paths::MARKET_EPOCH, "{id}", id), "{epoch}", epoch);
        if let Some(a) = account {
            path.push_str(&format!("?account={a}"));
        }
        self.get(&path, 16 * MAX_ANSWER_BYTES).await
    }

    pub async fn account(&self, a: &Address) -> Result<AccountView, ChainError> {
        self.get(&fill(paths::ACCOUNT, "{address}", a), MAX_ANSWER_BYTES)
            .await?
            .ok_or_else(|| ChainError::BadAnswer("account query answered 404".into()))
    }

    pub async fn provider(&self, a: &Address) -> Result<Option<ProviderView>, ChainError> {
        self.get(&fill(paths::PROVIDER, "{address}", a), MAX_ANSWER_BYTES)
            .await
    }

    pub async fn model_view(&self, sha: &Hash) -> Result<Option<ModelView>, ChainError> {
        self.get(&fill(paths::MODEL, "{sha256}", sha), MAX_ANSWER_BYTES)
            .await
    }

    pub async fn model(&self, sha: &Hash) -> Result<Option<ModelRecord>, ChainError> {
        Ok(self.model_view(sha).await?.map(|m| m.record))
    }

    /// The `top` accounts with the largest balances.
    pub async fn top_accounts(&self, top: u32) -> Result<AccountsView, ChainError> {
        self.get(&format!("{}?top={top}", paths::ACCOUNTS), MAX_ANSWER_BYTES)
            .await?
            .ok_or_else(|| ChainError::BadAnswer("no accounts view".into()))
    }

    /// Every registered provider (at most `MAX_PROVIDERS_LISTED`).
    pub async fn providers(&self) -> Result<ProvidersView, ChainError> {
        self.get(paths::PROVIDERS, MAX_ANSWER_BYTES)
            .await?
            .ok_or_else(|| ChainError::BadAnswer("no providers view".into()))
    }

    /// What `a` has paid providers through its channels.
    pub async fn spend(&self, a: &Address) -> Result<SpendView, ChainError> {
        self.get(
            &fill(paths::ACCOUNT_SPEND, "{address}", a),
            MAX_ANSWER_BYTES,
        )
        .await?
        .ok_or_else(|| ChainError::BadAnswer("no spend view".into()))
    }

    pub async fn channel_view(&self, id: &Hash) -> Result<Option<ChannelView>, ChainError> {
        self.get(&fill(paths::CHANNEL, "{id}", id), MAX_ANSWER_BYTES)
            .await
    }

    pub async fn channel(&self, id: &Hash) -> Result<Option<Channel>, ChainError> {
        Ok(self.channel_view(id).await?.map(|c| c.channel))
    }

    /// The finalized block at `height`; `None` above the tip.
    pub async fn block(&self, height: u64, txs: BlockTxs) -> Result<Option<BlockView>, ChainError> {
        let path = format!(
            "{}?txs={}",
            fill(paths::BLOCK, "{height}", height),
            txs.as_str()
        );
        self.get(&path, MAX_BLOCK_ANSWER_BYTES).await
    }

    /// The finalized block at `height` as (signed transaction, receipt) pairs; `None` above the tip.
    pub async fn block_txs(
        &self,
        height: u64,
    ) -> Result<Option<Vec<(SignedTx, Receipt)>>, ChainError> {
        let Some(b) = self.block(height, BlockTxs::Full).await? else {
            return Ok(None);
        };
        let txs = b
            .transactions
            .ok_or_else(|| ChainError::BadAnswer("block without its transactions".into()))?;
        Ok(Some(txs.into_iter().zip(b.receipts).collect()))
    }

    /// A transaction's status; `None` when the node knows nothing of it.
    pub async fn tx(&self, id: &Hash) -> Result<Option<TxView>, ChainError> {
        self.get(&fill(paths::TX, "{id}", id), MAX_ANSWER_BYTES)
            .await
    }

    /// Submits one signed transaction; the node's answer.
    pub async fn post_tx(&self, stx: &SignedTx) -> Result<SubmitResponse, ChainError> {
        let body = SubmitRequest {
            tx: hex::encode(stx.encode()),
        };
        self.post(paths::SUBMIT_TX, &body).await
    }

    /// Submits one signed transaction; its id.
    pub async fn submit(&self, stx: &SignedTx) -> Result<Hash, ChainError> {
        Ok(self.post_tx(stx).await?.id)
    }

    /// Submits many signed transactions at once; one result each, in order.
    pub async fn submit_batch(&self, txs: &[SignedTx]) -> Result<BatchResponse, ChainError> {
        let body = BatchRequest {
            txs: txs.iter().map(|t| hex::encode(t.encode())).collect(),
        };
        self.post(paths::SUBMIT_BATCH, &body).await
    }

    /// Polls until the transaction is in a finalized block; its final view.
    pub async fn wait_final_view(
        &self,
        id: &Hash,
        timeout: Duration,
    ) -> Result<TxView, ChainError> {
        let start = tokio::time::Instant::now();
        while start.elapsed() < timeout {
            if let Some(v @ TxView::Final { .. }) = self.tx(id).await? {
                return Ok(v);
            }
            tokio::time::sleep(POLL).await;
        }
        Err(ChainError::NotFinal(*id, timeout))
    }

    /// Polls until the transaction is in a finalized block; returns its receipt.
    pub async fn wait_final(&self, id: &Hash, timeout: Duration) -> Result<Receipt, ChainError> {
        match self.wait_final_view(id, timeout).await? {
            TxView::Final {
                receipt: Some(r), ..
            } => Ok(r),
            _ => Err(ChainError::BadAnswer(format!(
                "final transaction {id} has no receipt"
            ))),
        }
    }

    /// `None` for a 404 (the node has no such record).
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<Option<T>, ChainError> {
        let req = self.http.get(format!("{}{path}", self.base));
        let (status, body) = self.exchange(req, limit).await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        answer(status, &body).map(Some)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ChainError> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        let (status, body) = self.exchange(req, MAX_ANSWER_BYTES).await?;
        answer(status, &body)
    }

    /// Sends the request and reads at most `limit` bytes of the answer.
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ChainError> {
        let unreachable = |e: reqwest::Error| ChainError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let mut resp = req.send().await.map_err(unreachable)?;
        let too_large = || ChainError::BadAnswer(format!("answer exceeds {limit} bytes"));
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((resp.status(), body))
    }
}

/// `path` with its `{name}` parameter filled in.
fn fill(path: &str, name: &str, value: impl std::fmt::Display) -> String {
    path.replace(name, &value.to_string())
}

/// The typed answer of a successful call, or the node's refusal in its error shape.
fn answer<T: DeserializeOwned>(status: reqwest::StatusCode, body: &[u8]) -> Result<T, ChainError> {
    if !status.is_success() {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => ("error".into(), "no error message".into()),
        };
        return Err(ChainError::Refused {
            status: status.as_u16(),
            code,
            message,
        });
    }
    serde_json::from_slice(body).map_err(|e| ChainError::BadAnswer(e.to_string()))
}
