//! The end of a run's money: once the services have stopped, the runner settles every channel
//! of the gateway still unsettled, with the gateway's own key (closing any still open, then
//! waiting out the challenge period), so the checker can see each deposit come back as redeemed
//! plus refund. Returns how many it settled.

use std::time::{Duration, Instant};

use agora_node::keystore;
use agora_rpc::{ChainClient, TxSender};
use agora_types::{Hash, Outcome, TxBody};
use eyre::{bail, eyre};

use crate::net::{Network, PASSWORD};

pub async fn settle_gateway(net: &Network, timeout: Duration) -> eyre::Result<usize> {
    let deadline = Instant::now() + timeout;
    let chain = ChainClient::new(net.rpc0());
    let key = keystore::load(&net.gateway_key_file, PASSWORD)?;
    let sender = TxSender::new(key, chain.clone()).await?;
    let spend = chain.spend(&net.gateway).await?;
    if spend.channel_count > spend.channels.len() as u64 {
        bail!(
            "the gateway opened {} channels, more than one read lists ({})",
            spend.channel_count,
            spend.channels.len()
        );
    }
    // Every unsettled channel closed first, so their challenge periods run together.
    let mut open: Vec<Hash> = Vec::new();
    for c in spend.channels.iter().filter(|c| !c.channel.settled) {
        if c.channel.close_deadline.is_none() {
            send(&sender, TxBody::CloseChannel { channel: c.id }, deadline).await?;
        }
        open.push(c.id);
    }
    for id in &open {
        // The close deadline, as the ledger now holds it.
        let at = chain
            .channel(id)
            .await?
            .and_then(|c| c.close_deadline)
            .ok_or_else(|| eyre!("channel {id} has no close deadline after its close"))?;
        while chain.status().await?.height < at {
            if Instant::now() > deadline {
                bail!("the chain did not reach channel {id}'s close deadline {at} in time");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        send(&sender, TxBody::SettleChannel { channel: *id }, deadline).await?;
    }
    Ok(open.len())
}

/// Sends `body` and waits until final; a failed outcome fails.
async fn send(sender: &TxSender, body: TxBody, deadline: Instant) -> eyre::Result<()> {
    let (id, _) = sender.submit(body).await?;
    let left = deadline.saturating_duration_since(Instant::now());
    let receipt = sender.chain().wait_final(&id, left).await?;
    if let Outcome::Failed { code, message } = receipt.outcome {
        bail!("transaction {id} failed ({code}): {message}");
    }
    Ok(())
}
