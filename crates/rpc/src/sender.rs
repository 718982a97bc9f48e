//! Signing and sending one account's transactions in nonce order over the node API.

use crate::client::{ChainClient, ChainError, ChainInfo};
use agora_types::{Address, Hash, Outcome, SecretKey, Tx, TxBody};
use std::time::Duration;
use tokio::sync::Mutex;

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
        self.submit_after(body, |_| async { Ok(()) }).await
    }

    /// Like [`TxSender::submit`], but first runs `record(nonce)` (e.g. journals what the
    /// transaction will create, which its nonce determines) and sends nothing if that fails: a
    /// transaction that lands after its sender gave up waiting is still on record.
    pub async fn submit_after<F, Fut>(
        &self,
        body: TxBody,
        record: F,
    ) -> Result<(Hash, u64), ChainError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
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
        record(nonce).await.map_err(ChainError::NotRecorded)?;
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
        self.send_after(body, |_| async { Ok(()) }).await
    }

    /// [`TxSender::submit_after`], then waits until final; a failed outcome is an error.
    pub async fn send_after<F, Fut>(
        &self,
        body: TxBody,
        record: F,
    ) -> Result<(Hash, u64), ChainError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let (id, nonce) = self.submit_after(body, record).await?;
        let receipt = self.chain.wait_final(&id, Duration::from_secs(60)).await?;
        match receipt.outcome {
            Outcome::Success => Ok((id, nonce)),
            Outcome::Failed { code, message } => Err(ChainError::TxFailed { id, code, message }),
        }
    }
}
