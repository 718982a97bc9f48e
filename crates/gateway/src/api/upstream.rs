//! What the handlers need from the network, as a trait: the real one is the relay and its
//! market; tests put an in-memory fake behind the same router.

use std::sync::Arc;

use agora_market::Price;
use agora_types::Hash;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::market::{Constraints, ModelView};
use crate::receipts::KeptReceipt;
use crate::relay::{CompletionJob, Relay, RelayEvent};

/// Runs completions and knows the models on offer.
pub trait Upstream: Send + Sync + 'static {
    /// Starts one completion; its events arrive on the channel, ending with `Done` or `Error`.
    /// Dropping the receiver cancels it.
    fn start(&self, job: CompletionJob) -> mpsc::Receiver<RelayEvent>;
    /// The model named `name` (or by its sha256) if a provider serves it now.
    fn model(&self, name: &str) -> Option<ModelView>;
    /// Every served model with the prices of its providers.
    fn models(&self) -> Vec<(ModelView, Vec<Price>)>;
    /// How many providers the constraints let serve `model` now.
    fn admitted(&self, model: &Hash, c: &Constraints) -> usize;
    /// Re-reads the offers now (the list is empty until the first refresh).
    fn refresh(&self) -> BoxFuture<'_, ()>;
    /// The providers' receipts for a request id, as kept by the gateway.
    fn receipts(&self, request_id: &Hash) -> Vec<KeptReceipt>;
}

/// The network: the relay and its market.
pub struct RelayUpstream(pub Arc<Relay>);

impl Upstream for RelayUpstream {
    fn start(&self, job: CompletionJob) -> mpsc::Receiver<RelayEvent> {
        self.0.start(job)
    }
    fn model(&self, name: &str) -> Option<ModelView> {
        self.0.market.model(name)
    }
    fn models(&self) -> Vec<(ModelView, Vec<Price>)> {
        self.0.market.models()
    }
    fn admitted(&self, model: &Hash, c: &Constraints) -> usize {
        self.0.market.admitted(model, c)
    }
    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.market.refresh())
    }
    fn receipts(&self, request_id: &Hash) -> Vec<KeptReceipt> {
        self.0.receipts.get(request_id)
    }
}
