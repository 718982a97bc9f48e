//! Parties that lie, on the real network: a provider that answers with scripted frames (registered
//! and staked on the ledger, offering through the overlay like any other), and a stranger overlay
//! peer that sends jobs in someone else's name. Each test plays one attack and checks what the
//! liar got: vouchers, work, money.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_market::offer::{ModelOffer, offer_validator};
use agora_market::protocol::{
    ChatMessage, Frame, InferenceReceipt, Job, ProofBytes, RpcReply, RpcRequest, SamplingParams,
    Tok, Usage, Work, token_hash, work_hash,
};
use agora_p2p::{Handle, InferenceRequest, NetConfig, OfferTerms};
use agora_provider::launch::{listen_addr, offer_signer};
use agora_provider::register::{ModelListing, ensure_registered};
use agora_provider::{Price, TxSender};
use agora_types::tx::HardwareSummary;
use agora_types::{Amount, Encode, Hash, SecretKey};
use serde_json::json;

use crate::net::{API_KEY, MODEL, ROYALTY_BPS, TestNet, model_sha, price, spare_keys};

/// What a scripted provider answers to a job: the frames it sends, in order, then the stream ends.
pub type Script = Arc<dyn Fn(&Job, &SecretKey) -> Vec<Frame> + Send + Sync>;

/// A provider that says whatever its script says.
pub struct Liar {
    /// Its overlay node.
    net: Handle,
    /// The cumulative amount of every voucher the gateway sent, in order.
    pub vouchers: Arc<Mutex<Vec<Amount>>>,
    /// Jobs received.
    pub jobs: Arc<Mutex<Vec<Job>>>,
}

impl Liar {
    /// Leaves the network at once, as a crash would.
    pub async fn crash(&self) {
        self.net.shutdown().await;
    }

    /// The most any voucher it received promised it.
    pub fn paid(&self) -> Amount {
        self.vouchers
            .lock()
            .unwrap()
            .iter()
            .copied()
            .max()
            .unwrap_or(Amount::ZERO)
    }
}

/// A signed `Done` frame for `usage` as this liar claims it.
pub fn done(job: &Job, key: &SecretKey, usage: Usage, tokens: &[u32]) -> Frame {
    let charged = job
        .price
        .cost(
            u64::from(usage.prompt_tokens),
            u64::from(usage.completion_tokens),
        )
        .unwrap_or(Amount::ZERO);
    let proof = proof_for(usage.completion_tokens);
    let receipt = InferenceReceipt {
        chain_id: "agora-gateway-test".into(),
        work_hash: work_hash(&job.work),
        continuation_hash: token_hash(&job.continuation),
        prompt_hash: Hash::ZERO,
        engine: "liar".into(),
        complete: true,
        request_id: job.request_id,
        proof_hash: proof.as_ref().map_or(Hash::ZERO, |p| p.hash()),
        provider: key.public(),
        payer: job.payer,
        channel: job.channel,
        model: model_sha(),
        seed: job.sampling.seed,
        params_hash: job.sampling.hash(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        continuation_tokens: job.continuation.len() as u32,
        price: job.price,
        charged,
        output_hash: token_hash(tokens),
        time_ms: 0,
    }
    .sign(key);
    Frame::Done {
        finish_reason: "stop".into(),
        usage,
        receipt: Box::new(receipt),
        proof: proof.map(|p| ProofBytes(p.encode())),
    }
}

/// A well-formed proof for `tokens` generated tokens, over made-up rows: what the gateway can
/// check without the model (the shape), not what an auditor checks.
pub fn proof_for(tokens: u32) -> Option<agora_verify::toploc::Proof> {
    let rows: Vec<f32> = (0..tokens * 8).map(|i| i as f32 * 0.5 - 3.0).collect();
    let rows = agora_verify::Rows::new(&rows, 8).ok()?;
    (tokens > 0).then(|| agora_verify::toploc::prove(rows, 1).unwrap())
}

/// `n` tokens of the word "ok".
pub fn toks(n: usize) -> Vec<Tok> {
    (0..n)
        .map(|i| Tok {
            id: 100 + i as u32,
            text: "ok ".into(),
            logprob: None,
            top: Vec::new(),
            top_text: Vec::new(),
        })
        .collect()
}

impl TestNet {
    /// Overlay settings for a node of one's own on this net, as any stranger can run.
    pub(crate) fn stranger_config(&self) -> NetConfig {
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![self.boot.clone()],
            ..NetConfig::local_test()
        }
    }

    /// Registers `key` as a provider of the test model at `price` (staked like an honest one),
    /// offers it on the overlay and answers every job with `script`, every voucher with
    /// "accepted".
    pub async fn start_liar(&self, key: SecretKey, price: Price, script: Script) -> Liar {
        let sender = TxSender::new(key.clone(), self.chain.clone())
            .await
            .unwrap();
        let mut cfg = self.stranger_config();
        cfg.offer_validator = Some(offer_validator());
        let (net, inbound) = agora_p2p::spawn(key.to_bytes(), cfg, None).await.unwrap();
        let addr = listen_addr(&net).await;
        let listing = ModelListing {
            sha256: model_sha(),
            name: MODEL.into(),
            family: "test".into(),
            kind: agora_types::ModelKind::Chat,
            license: "test".into(),
            royalty_bps: ROYALTY_BPS,
            price,
        };
        ensure_registered(
            &sender,
            &[listing],
            Amount::from_agr(200),
            net.peer_id().to_bytes(),
            addr.iter().map(|a| a.to_string()).collect(),
            HardwareSummary {
                accelerator: "cpu".into(),
                memory_mib: 0,
                cpu_cores: 1,
            },
        )
        .await
        .unwrap();
        let offered = vec![ModelOffer {
            model: model_sha(),
            price,
        }];
        net.set_offer(Some(OfferTerms {
            signer: offer_signer(key.clone(), offered, Arc::new(|| 0), 8),
            ttl: Duration::from_secs(60),
        }))
        .await
        .unwrap();
        let vouchers = Arc::new(Mutex::new(Vec::new()));
        let jobs = Arc::new(Mutex::new(Vec::new()));
        let agora_p2p::Inbound {
            mut inference,
            mut rpc,
        } = inbound;
        let seen = vouchers.clone();
        tokio::spawn(async move {
            while let Some(call) = rpc.recv().await {
                let reply = match serde_json::from_slice::<RpcRequest>(&call.request) {
                    Ok(RpcRequest::Voucher { voucher }) => {
                        let cumulative = voucher.voucher.cumulative;
                        seen.lock().unwrap().push(cumulative);
                        RpcReply::Accepted { cumulative }
                    }
                    Err(e) => RpcReply::Rejected {
                        message: e.to_string(),
                    },
                };
                let _ = call.reply.send(serde_json::to_vec(&reply).unwrap());
            }
        });
        let got = jobs.clone();
        let signer = key.clone();
        tokio::spawn(async move {
            while let Some(call) = inference.recv().await {
                let Ok(job) = Job::decode(&call.request.payload) else {
                    continue;
                };
                got.lock().unwrap().push(job.clone());
                let frames = script(&job, &signer);
                tokio::spawn(async move {
                    for f in frames {
                        if call.tokens.send(f.encode()).await.is_err() {
                            return;
                        }
                    }
                    let _ = call.tokens.finish().await;
                });
            }
        });
        Liar {
            net,
            vouchers,
            jobs,
        }
    }
}

async fn chat(net: &TestNet, content: &str, max_tokens: u32) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(net.url("/v1/chat/completions"))
        .bearer_auth(API_KEY)
        .json(&json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

fn spent(net: &TestNet) -> Amount {
    let key = agora_gateway::customers::key_hash(API_KEY);
    net.gateway.customers.get(&key).unwrap().spent
}

const PRICE: (u128, u128) = (1_000_000, 2_000_000);

/// A network whose only provider is the liar.
async fn liar_only(script: Script) -> (TestNet, Liar) {
    let net = TestNet::start(&[], Duration::ZERO, Default::default()).await;
    let liar = net
        .start_liar(spare_keys()[0].clone(), price(PRICE.0, PRICE.1), script)
        .await;
    net.wait_for_providers(1).await;
    (net, liar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_billing_a_huge_prompt_for_hi_is_refused_and_unpaid() {
    let (net, liar) = liar_only(Arc::new(|job: &Job, key: &SecretKey| {
        let usage = Usage {
            prompt_tokens: 200_000_000,
            completion_tokens: 2,
            cached_tokens: 0,
        };
        vec![
            Frame::Started {
                prompt_tokens: usage.prompt_tokens,
                cached_tokens: 0,
            },
            Frame::Tokens { tokens: toks(2) },
            done(job, key, usage, &[100, 101]),
        ]
    }))
    .await;
    let (status, body) = chat(&net, "hi", 16).await;
    net.settle_vouchers().await;
    // "hi" is at most 4 + 2 + 16 + 256 prompt tokens (agora_market::bounds): 278 at 1 per token,
    // nothing more, whatever the provider claims.
    assert!(
        liar.paid() <= Amount(278 + 2 * 16),
        "the liar holds a voucher for {:?} (status {status}: {body})",
        liar.paid()
    );
    assert!(status >= 500, "{status}: {body}");
    assert!(spent(&net) <= Amount(278 + 2 * 16), "{:?}", spent(&net));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_sending_started_twice_is_paid_for_one_prompt() {
    let (net, liar) = liar_only(Arc::new(|job: &Job, key: &SecretKey| {
        // Each count within what "hi" may cost, so only the repetition is the lie.
        let started = |prompt_tokens| Frame::Started {
            prompt_tokens,
            cached_tokens: 0,
        };
        vec![
            started(200),
            Frame::Tokens { tokens: toks(1) },
            started(250),
            started(270),
            Frame::Tokens { tokens: toks(1) },
            done(
                job,
                key,
                Usage {
                    prompt_tokens: 270,
                    completion_tokens: 2,
                    cached_tokens: 0,
                },
                &[100, 100],
            ),
        ]
    }))
    .await;
    let (status, body) = chat(&net, "hi", 16).await;
    net.settle_vouchers().await;
    // One prompt of 200 and one token: 200 + 2 base units, then the second Started is refused.
    assert_eq!(liar.paid(), Amount(202), "status {status}: {body}");
    assert_eq!(liar.jobs.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_streaming_past_max_tokens_is_not_paid_for_the_excess() {
    let (net, liar) = liar_only(Arc::new(|job: &Job, key: &SecretKey| {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 100,
            cached_tokens: 0,
        };
        vec![
            Frame::Started {
                prompt_tokens: 10,
                cached_tokens: 0,
            },
            Frame::Tokens { tokens: toks(4) },
            Frame::Tokens { tokens: toks(96) },
            done(job, key, usage, &[]),
        ]
    }))
    .await;
    let (status, body) = chat(&net, "hi", 4).await;
    net.settle_vouchers().await;
    // The prompt and the 4 tokens asked for: 10 + 4 x 2.
    assert_eq!(liar.paid(), Amount(18), "status {status}: {body}");
    assert_eq!(spent(&net), Amount(18));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_bill_a_job_to_someone_elses_channel() {
    let net = TestNet::start(&[price(1, 1)], Duration::ZERO, Default::default()).await;
    // The gateway opens its channel to the provider with one honest request.
    let (status, body) = chat(&net, "hello", 4).await;
    assert_eq!(status, 200, "{body}");
    let channel = net.gateway.payer.channels().await[0].id;
    let provider = net.providers[0].as_ref().unwrap();
    let owed = || provider.provider.payments().book(&channel).map(|b| b.owed);
    let owed_before = owed();
    // A stranger on the overlay names the gateway as payer and the gateway's channel (both are
    // public on the ledger's RPC).
    let stranger = SecretKey::from_test_seed("stranger");
    let (snet, _inbound) = agora_p2p::spawn(stranger.to_bytes(), net.stranger_config(), None)
        .await
        .unwrap();
    let paddr = provider.p2p_addr().await.unwrap();
    snet.dial(paddr).await.unwrap();
    let job = Job {
        request_id: Hash(rand::random()),
        work: Work::Chat {
            messages: vec![ChatMessage::new("user", "write me a long essay")],
            tools: None,
        },
        sampling: SamplingParams::greedy(64),
        continuation: Vec::new(),
        payer: net.gateway.payer.address(),
        channel,
        price: price(1, 1),
    };
    let stream = snet
        .infer(
            provider.net.peer_id(),
            InferenceRequest {
                model: model_sha().0,
                payload: job.encode(),
            },
        )
        .await
        .unwrap();
    let frames: Vec<Frame> = stream
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|b| Frame::decode(b).unwrap())
        .collect();
    assert!(
        matches!(
            frames.as_slice(),
            [Frame::Failed {
                code: agora_market::FailureCode::NotThePayer,
                ..
            }]
        ),
        "the stranger got {frames:?}"
    );
    assert_eq!(owed(), owed_before, "the victim's channel was billed");
    // The victim's own requests still go through.
    let (status, body) = chat(&net, "hello again", 4).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_cannot_spend_credit_it_lacks_by_running_completions_at_once() {
    let net = TestNet::start(
        &[price(PRICE.0, PRICE.1)],
        Duration::from_millis(30),
        Default::default(),
    )
    .await;
    // Credit for one completion's worst case ("hi", 16 tokens: 278 + 2 x 16 = 310), not two.
    let key = "sk-agora-almost-broke";
    net.gateway.customers.insert(
        key,
        agora_gateway::Customer {
            name: "almost broke".into(),
            account: net.owner.public(),
            credit: Amount(320),
            spent: Amount::ZERO,
            limits: Default::default(),
        },
    );
    let client = reqwest::Client::new();
    let requests = (0..8).map(|_| {
        client
            .post(net.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 16,
            }))
            .send()
    });
    let mut statuses = Vec::new();
    for r in futures::future::join_all(requests).await {
        let r = r.unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if status == 429 {
            assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
        }
        statuses.push(status);
    }
    let h = agora_gateway::customers::key_hash(key);
    let c = net.gateway.customers.get(&h).unwrap();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.contains(&429),
        "every one of 8 concurrent completions ran on credit for one: {statuses:?}"
    );
    assert!(c.spent <= c.credit, "spent {:?} of {:?}", c.spent, c.credit);
    assert_eq!(net.gateway.customers.held(&h), Amount::ZERO);
}

/// A payer that talks to a provider itself (its own channel, its own overlay node), to play the
/// payer's lies the gateway would never tell.
pub(crate) struct DirectPayer {
    key: SecretKey,
    sender: TxSender,
    net: Handle,
    /// What its jobs offer to pay.
    price: Price,
    /// Providers already dialled: a dial per message would open a connection each time, and
    /// the provider refuses a peer's fifth.
    dialled: Mutex<HashSet<agora_p2p::PeerId>>,
}

impl DirectPayer {
    pub(crate) async fn start(net: &TestNet, key: SecretKey, price: Price) -> DirectPayer {
        let sender = TxSender::new(key.clone(), net.chain.clone()).await.unwrap();
        let (pnet, _inbound) = agora_p2p::spawn(key.to_bytes(), net.stranger_config(), None)
            .await
            .unwrap();
        DirectPayer {
            key,
            sender,
            net: pnet,
            price,
            dialled: Mutex::new(HashSet::new()),
        }
    }

    /// Connects to `provider` unless already connected.
    async fn reach(&self, provider: &agora_provider::launch::RunningProvider) {
        let peer = provider.net.peer_id();
        if self.dialled.lock().unwrap().contains(&peer) {
            return;
        }
        self.net
            .dial(provider.p2p_addr().await.unwrap())
            .await
            .unwrap();
        self.dialled.lock().unwrap().insert(peer);
    }

    pub(crate) async fn open(&self, provider: agora_types::Address, deposit: Amount) -> Hash {
        let height = self.sender.chain().info().await.unwrap().height;
        let (_, nonce) = self
            .sender
            .send(agora_types::TxBody::OpenChannel {
                provider,
                deposit,
                expiry_height: height + 100_000,
            })
            .await
            .unwrap();
        agora_ledger::channels::channel_id(&self.key.public(), &provider, nonce)
    }

    /// Sends a job on `channel` and reads the whole answer.
    async fn job(
        &self,
        provider: &agora_provider::launch::RunningProvider,
        channel: Hash,
    ) -> Vec<Frame> {
        self.job_frames(provider, channel, usize::MAX).await
    }

    /// Sends a job on `channel`, reads at most `keep` frames, then walks away.
    async fn job_frames(
        &self,
        provider: &agora_provider::launch::RunningProvider,
        channel: Hash,
        keep: usize,
    ) -> Vec<Frame> {
        self.job_then_leave(provider, channel, 4, keep, Duration::ZERO)
            .await
    }

    /// Sends a job for `max_tokens` on `channel`, reads at most `keep` frames, stays connected
    /// for `linger` without reading, then walks away.
    async fn job_then_leave(
        &self,
        provider: &agora_provider::launch::RunningProvider,
        channel: Hash,
        max_tokens: u32,
        keep: usize,
        linger: Duration,
    ) -> Vec<Frame> {
        self.reach(provider).await;
        let job = Job {
            request_id: Hash(rand::random()),
            work: Work::Chat {
                messages: vec![ChatMessage::new("user", "hello")],
                tools: None,
            },
            sampling: SamplingParams::greedy(max_tokens),
            continuation: Vec::new(),
            payer: self.key.public(),
            channel,
            price: self.price,
        };
        let mut stream = self
            .net
            .infer(
                provider.net.peer_id(),
                InferenceRequest {
                    model: model_sha().0,
                    payload: job.encode(),
                },
            )
            .await
            .unwrap();
        let mut frames = Vec::new();
        while frames.len() < keep {
            match stream.next().await {
                Some(Ok(b)) => frames.push(Frame::decode(&b).unwrap()),
                Some(Err(e)) => panic!("stream broke: {e}"),
                None => break,
            }
        }
        tokio::time::sleep(linger).await;
        frames
    }

    async fn pay(
        &self,
        provider: &agora_provider::launch::RunningProvider,
        channel: Hash,
        cumulative: Amount,
    ) -> RpcReply {
        let voucher = agora_types::Voucher {
            chain_id: self.sender.chain_id().to_string(),
            channel,
            cumulative,
            per_model: vec![(model_sha(), cumulative)],
        }
        .sign(&self.key);
        self.send_voucher(provider, voucher).await
    }

    /// Sends any signed voucher, as a payer that lies about it would.
    pub(crate) async fn send_voucher(
        &self,
        provider: &agora_provider::launch::RunningProvider,
        voucher: agora_types::SignedVoucher,
    ) -> RpcReply {
        self.reach(provider).await;
        let bytes = serde_json::to_vec(&RpcRequest::Voucher { voucher }).unwrap();
        let reply = self.net.rpc(provider.net.peer_id(), bytes).await.unwrap();
        serde_json::from_slice(&reply).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_that_closes_its_channel_gets_no_more_work_and_the_provider_redeems_at_once() {
    let net = TestNet::start(&[price(1, 1)], Duration::ZERO, Default::default()).await;
    let provider = net.providers[0].as_ref().unwrap();
    let payer = DirectPayer::start(&net, spare_keys()[1].clone(), price(1, 1)).await;
    let channel = payer
        .open(provider.sender.address(), Amount::from_agr(1))
        .await;
    let frames = payer.job(provider, channel).await;
    let Some(Frame::Done { receipt, .. }) = frames.last() else {
        panic!("no answer: {frames:?}");
    };
    let charged = receipt.receipt.charged;
    assert!(!charged.is_zero());
    assert_eq!(
        payer.pay(provider, channel, charged).await,
        RpcReply::Accepted {
            cumulative: charged
        }
    );
    // The payer closes; it may settle (taking back the whole unredeemed deposit) once the
    // challenge period has passed. The provider's periodic redeem is an hour away in this net.
    let (_, close_height) = {
        let sent = payer
            .sender
            .send(agora_types::TxBody::CloseChannel { channel })
            .await
            .unwrap();
        (sent, net.chain.info().await.unwrap().height)
    };
    let closed_at = std::time::Instant::now();
    let mut redeemed = Amount::ZERO;
    for _ in 0..100 {
        redeemed = net.chain.channel(&channel).await.unwrap().unwrap().redeemed;
        if redeemed == charged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let blocks = net.chain.info().await.unwrap().height - close_height;
    eprintln!(
        "redeem final {} ms and {blocks} blocks after the close was final",
        closed_at.elapsed().as_millis()
    );
    assert_eq!(
        redeemed, charged,
        "the provider did not redeem within 10 s of the close (challenge period 20 blocks)"
    );
    // And no more work on the closing channel.
    let frames = payer.job(provider, channel).await;
    assert!(
        matches!(frames.as_slice(), [Frame::Failed { .. }]),
        "work on a closing channel: {frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cut_off_when_its_channel_runs_out_is_proved_as_far_as_it_went() {
    // One unit a token; a deposit of 40 runs out after the prompt and a few dozen tokens of
    // the 64 asked for, so the job fails midway with channel_exhausted.
    let unit = price(1_000_000, 1_000_000);
    let net = TestNet::start(&[unit], Duration::from_millis(2), Default::default()).await;
    let provider = net.providers[0].as_ref().unwrap();
    let payer = DirectPayer::start(&net, spare_keys()[1].clone(), unit).await;
    let channel = payer.open(provider.sender.address(), Amount(40)).await;
    let frames = payer
        .job_then_leave(provider, channel, 64, usize::MAX, Duration::ZERO)
        .await;
    let delivered: Vec<u32> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Tokens { tokens } => Some(tokens.iter().map(|t| t.id)),
            _ => None,
        })
        .flatten()
        .collect();
    let Some(Frame::Failed {
        code,
        receipt: Some(receipt),
        proof,
        ..
    }) = frames.last()
    else {
        panic!("no failed frame with a receipt: {frames:?}");
    };
    assert!(code.is_payment(), "{code}");
    let r = &receipt.receipt;
    assert!(receipt.verify() && !r.complete, "{r:?}");
    assert!(
        !delivered.is_empty() && delivered.len() < 64,
        "{}",
        delivered.len()
    );
    assert_eq!(r.completion_tokens as usize, delivered.len());
    assert_eq!(r.output_hash, token_hash(&delivered));
    assert_ne!(r.prompt_hash, Hash::ZERO, "the prompt is bound too");
    // The proof covers exactly the delivered tokens and is the one the receipt binds.
    let proof = proof.as_ref().expect("a cut-off job's proof");
    let decoded = agora_verify::toploc::Proof::decode(&proof.0, usize::MAX >> 8).unwrap();
    assert_eq!(r.proof_hash, decoded.hash());
    assert_eq!(
        decoded.decode.len(),
        agora_verify::toploc::Proof::max_decode_chunks(r.completion_tokens)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_back_for_payment_sees_its_requester_leave_and_does_not_lock_the_channel() {
    // 60,000 units a token against a credit limit of 100,000: the third token frame waits for
    // a voucher. The requester reads a little, never pays, and leaves while the job waits.
    let dear = price(1, 60_000_000_000);
    let net = TestNet::start(&[dear], Duration::from_millis(5), Default::default()).await;
    let provider = net.providers[0].as_ref().unwrap();
    let payer = DirectPayer::start(&net, spare_keys()[1].clone(), dear).await;
    let channel = payer
        .open(provider.sender.address(), Amount::from_agr(1))
        .await;
    let linger = Duration::from_millis(500);
    let frames = payer.job_then_leave(provider, channel, 64, 2, linger).await;
    assert!(
        matches!(frames.first(), Some(Frame::Started { .. })),
        "{frames:?}"
    );
    let book = || provider.provider.payments().book(&channel).unwrap();
    assert!(
        book().owed > Amount(100_000),
        "the job never waited: {:?}",
        book()
    );
    // The job must end as cancelled within the cancel grace (1 s), not after the provider's
    // voucher wait (10 s) runs out as a failed job whose frames stay owed: that debt would
    // hold every later job on the channel.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while book().owed > book().paid() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = book();
    assert_eq!(
        b.owed.saturating_sub(b.paid()),
        Amount::ZERO,
        "still owed: {b:?}"
    );
    assert!(b.forgiven > Amount::ZERO, "{b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_cannot_get_free_prompts_by_abandoning_channel_after_channel() {
    // Dear enough that one prompt is more than the provider's per-payer limit (1,000,000 units):
    // 1,000,000 units a token, and "hello" in the chat template is more than one token.
    let dear = price(1_000_000_000_000, 1_000_000_000_000);
    let net = TestNet::start(&[dear], Duration::ZERO, Default::default()).await;
    let provider = net.providers[0].as_ref().unwrap();
    let payer = DirectPayer::start(&net, spare_keys()[1].clone(), dear).await;
    let mut served = 0;
    // The second round waits out the provider's voucher wait (10 s) before it is refused.
    for round in 0..2 {
        let channel = payer
            .open(provider.sender.address(), Amount::from_agr(1))
            .await;
        // Take the prefilled prompt (charged before any voucher), pay nothing, walk away.
        let frames = payer.job_frames(provider, channel, 1).await;
        match frames.first() {
            Some(Frame::Started { .. }) => served += 1,
            Some(Frame::Failed { code, .. }) => {
                assert!(code.is_payment(), "round {round}: {code}");
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    assert_eq!(
        served, 1,
        "unpaid prompts served on fresh channels of one payer"
    );
}
