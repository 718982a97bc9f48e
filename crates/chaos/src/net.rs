//! The network under test, assembled from `agora` processes: `agora testnet` validators (each
//! `agora node --config`, through the node builder), one gateway (`agora node --gateway`) and the
//! providers (`agora node --provider`, the deterministic test engine), each in its namespace.
//! Everyone is funded from the testnet's faucet with ordinary transfers, and each client gets its
//! API key the way an agent does: a signed key request, then a deposit to the gateway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_market::keys::{IssuedKey, KeyRequest, KeyTerms};
use agora_node::keystore;
use agora_node::testnet::{TestnetPorts, write_on};
use agora_rpc::{ChainClient, TxSender};
use agora_types::{Address, Amount, SecretKey, TxBody};
use eyre::{WrapErr, bail, eyre};

use crate::clock::Clocks;
use crate::disk::{DISK_MIB, Disk};
use crate::lab::Lab;
use crate::procs::Proc;
use crate::scenario::{FaultKind, Scenario};

pub const PASSWORD: &str = "chaos";
const RPC_PORT: u16 = 8645;
const VALIDATOR_PORT: u16 = 9000;
const OVERLAY_PORT: u16 = 4100;
const GATEWAY_PORT: u16 = 8080;
/// Each provider's price per million tokens, in and out.
pub const PRICE: &str = "2";

pub struct Network {
    pub dir: PathBuf,
    pub lab: Lab,
    /// Every process by name, behind one lock: the nemesis and the shutdown take turns.
    pub procs: Arc<Mutex<BTreeMap<String, Proc>>>,
    /// Validator name to RPC base URL, in order.
    pub validators: Vec<(String, String)>,
    pub providers: Vec<(String, Address)>,
    /// The OpenAI base URL (`.../v1`).
    pub gateway_url: String,
    pub gateway: Address,
    /// The gateway's keystore (the runner settles its channels with it at the end).
    pub gateway_key_file: PathBuf,
    pub faucet: Arc<TxSender>,
    /// Each validator's data disk, when the scenario fills one (`full_disk`).
    pub disks: BTreeMap<String, Disk>,
    /// Every process's wall clock, when the scenario skews one (`clock_skew`).
    pub clocks: Option<Clocks>,
}

impl Network {
    pub fn rpc0(&self) -> &str {
        &self.validators[0].1
    }

    /// Builds the lab, writes the testnet, and starts every process.
    pub async fn start(dir: &Path, s: &Scenario, run: u8, bin: &Path) -> eyre::Result<Network> {
        let t = &s.topology;
        let validators: Vec<String> = (0..t.validators)
            .map(|i| format!("validator-{i}"))
            .collect();
        let providers: Vec<String> = (0..t.providers).map(|i| format!("provider-{i}")).collect();
        let mut members = validators.clone();
        members.push("gateway".into());
        members.extend(providers.iter().cloned());
        let lab = Lab::create(run, &members)?;
        std::fs::create_dir_all(dir.join("logs"))?;
        std::fs::create_dir_all(dir.join("keys"))?;
        let has = |k: FaultKind| s.faults.iter().any(|f| f.kind == k);
        let clocks = if has(FaultKind::ClockSkew) {
            Some(Clocks::new(&dir.join("clocks"))?)
        } else {
            None
        };
        let clocks_ref = clocks.as_ref();

        let hosts = validators
            .iter()
            .map(|v| lab.ip(v))
            .collect::<eyre::Result<Vec<_>>>()?;
        let ports = TestnetPorts {
            rpc_base: RPC_PORT,
            p2p_base: VALIDATOR_PORT,
        };
        // Each validator has its own address, so all may use the same ports: base + i is fine too.
        let testnet = write_on(&dir.join("net"), &hosts, ports, PASSWORD, 1024)?;
        let mut disks = BTreeMap::new();
        if has(FaultKind::FullDisk) {
            for (i, name) in validators.iter().enumerate() {
                // The testnet's `data_dir` ("data", beside each node's agora.toml).
                let disk = Disk::mount(&testnet.nodes[i].join("data"), DISK_MIB)?;
                disks.insert(name.clone(), disk);
            }
        }
        let mut procs = BTreeMap::new();
        let mut urls = Vec::new();
        for (i, name) in validators.iter().enumerate() {
            let config = testnet.nodes[i].join("agora.toml");
            let cmd_lab = command_maker(&lab, name, bin, clocks_ref)?;
            let mut p = Proc::new(name, dir.join(format!("logs/{name}.log")), move || {
                let mut c = cmd_lab()?;
                c.args(["--log", "info", "node", "--config"])
                    .arg(&config)
                    .env("AGORA_PASSWORD", PASSWORD);
                Ok(c)
            });
            p.start()?;
            procs.insert(name.clone(), p);
            urls.push((name.clone(), format!("http://{}", testnet.rpc[i])));
        }
        for (name, p) in procs.iter_mut() {
            p.wait_for("RPC at", Duration::from_secs(120))
                .wrap_err_with(|| format!("{name} did not start"))?;
        }
        let chain0 = ChainClient::new(&urls[0].1);
        wait_height(&chain0, 2, Duration::from_secs(120)).await?;

        let faucet_key = keystore::load(&testnet.faucet_key, PASSWORD)?;
        let faucet = Arc::new(TxSender::new(faucet_key, chain0.clone()).await?);
        let gateway_key = SecretKey::generate();
        let gateway_key_file = save_key(dir, "gateway", &gateway_key)?;
        let provider_keys: Vec<SecretKey> =
            providers.iter().map(|_| SecretKey::generate()).collect();
        let mut funding = vec![(gateway_key.public(), Amount::from_agr(20_000))];
        for k in &provider_keys {
            funding.push((k.public(), Amount::from_agr(1_000)));
        }
        fund(&faucet, &funding).await?;

        let gw_ip = lab.ip("gateway")?;
        let gateway_url = format!("http://{gw_ip}:{GATEWAY_PORT}/v1");
        let rpc0 = urls[0].1.clone();
        {
            let make = command_maker(&lab, "gateway", bin, clocks_ref)?;
            let (rpc, key, data) = (rpc0.clone(), gateway_key_file.clone(), dir.join("gateway"));
            let mut p = Proc::new("gateway", dir.join("logs/gateway.log"), move || {
                let mut c = make()?;
                c.args(["--log", "info", "node", "--gateway", "--chain-rpc", &rpc])
                    .arg("--gateway-key")
                    .arg(&key)
                    .args(["--gateway-listen", &format!("{gw_ip}:{GATEWAY_PORT}")])
                    .arg("--api-keys")
                    .arg(data.join("api-keys.json"))
                    .args(["--p2p-listen", &format!("/ip4/{gw_ip}/tcp/{OVERLAY_PORT}")])
                    .arg("--data-dir")
                    .arg(&data)
                    .env("AGORA_PASSWORD", PASSWORD);
                Ok(c)
            });
            p.start()?;
            procs.insert("gateway".into(), p);
        }
        let boot_line = procs
            .get_mut("gateway")
            .ok_or_else(|| eyre!("no gateway"))?
            .wait_for("overlay address", Duration::from_secs(120))?;
        let boot = boot_line
            .rsplit(' ')
            .next()
            .ok_or_else(|| eyre!("no overlay address in {boot_line:?}"))?
            .trim()
            .to_string();

        let mut provider_list = Vec::new();
        for (name, key) in providers.iter().zip(&provider_keys) {
            let key_file = save_key(dir, name, key)?;
            let ip = lab.ip(name)?;
            let make = command_maker(&lab, name, bin, clocks_ref)?;
            let (rpc, boot, data, step) = (
                rpc0.clone(),
                boot.clone(),
                dir.join(name),
                t.step_ms.to_string(),
            );
            let mut p = Proc::new(name, dir.join(format!("logs/{name}.log")), move || {
                let mut c = make()?;
                c.args(["--log", "info", "node", "--provider", "--chain-rpc", &rpc])
                    .arg("--provider-key")
                    .arg(&key_file)
                    .args(["--bootstrap", &boot])
                    .args(["--p2p-listen", &format!("/ip4/{ip}/tcp/{OVERLAY_PORT}")])
                    .args(["--test-engine", &step])
                    .args(["--input-price", PRICE, "--output-price", PRICE])
                    .arg("--data-dir")
                    .arg(&data)
                    .env("AGORA_PASSWORD", PASSWORD);
                Ok(c)
            });
            p.start()?;
            procs.insert(name.clone(), p);
            provider_list.push((name.clone(), key.public()));
        }
        for name in &providers {
            if let Some(p) = procs.get_mut(name) {
                p.wait_for("serving on the overlay", Duration::from_secs(120))?;
            }
        }
        let net = Network {
            dir: dir.to_path_buf(),
            lab,
            procs: Arc::new(Mutex::new(procs)),
            validators: urls,
            providers: provider_list,
            gateway_url,
            gateway: gateway_key.public(),
            gateway_key_file,
            faucet,
            disks,
            clocks,
        };
        Ok(net)
    }

    /// Waits until the gateway's `/models` (asked with `api_key`) lists the test model with `n`
    /// providers.
    pub async fn wait_listed(
        &self,
        n: usize,
        api_key: &str,
        timeout: Duration,
    ) -> eyre::Result<()> {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = http
                .get(format!("{}/models", self.gateway_url))
                .bearer_auth(api_key)
                .send()
                .await
                && let Ok(v) = r.json::<serde_json::Value>().await
            {
                let listed = v["data"].as_array().into_iter().flatten().any(|m| {
                    m["id"] == crate::load::MODEL
                        && m["agora"]["providers"].as_u64() == Some(n as u64)
                });
                if listed {
                    return Ok(());
                }
                last = v.to_string();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "the gateway never listed {n} providers of {}: {last}",
            crate::load::MODEL
        )
    }

    /// A funded account with an API key at the gateway and `deposit` of credit on it.
    pub async fn customer(&self, name: &str, deposit: Amount) -> eyre::Result<(SecretKey, String)> {
        let key = SecretKey::generate();
        fund(
            &self.faucet,
            &[(
                key.public(),
                deposit
                    .checked_add(Amount::from_agr(10))
                    .ok_or_else(|| eyre!("deposit overflows"))?,
            )],
        )
        .await?;
        let api_key = agora_market::keys::new_api_key();
        let issued = request_key(&self.gateway_url, &key, name, &api_key).await?;
        let me = TxSender::new(key.clone(), ChainClient::new(self.rpc0())).await?;
        me.send(TxBody::Transfer {
            to: issued.deposit_to,
            amount: deposit,
        })
        .await?;
        // The gateway credits deposits when it scans the block (every 2 s).
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let v: serde_json::Value = http
                .get(format!(
                    "{}/dashboard/api/me",
                    self.gateway_url.trim_end_matches("/v1")
                ))
                .bearer_auth(&api_key)
                .send()
                .await?
                .json()
                .await?;
            let credit: u128 = v["credit"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if credit >= deposit.0 {
                return Ok((key, api_key));
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the gateway never credited {name}'s deposit: {v}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// How to start `member` in its namespace (on its own clock when there are `clocks`).
fn command_maker(
    lab: &Lab,
    member: &str,
    bin: &Path,
    clocks: Option<&Clocks>,
) -> eyre::Result<impl Fn() -> eyre::Result<std::process::Command> + Send + Sync + 'static> {
    // Check the member exists now; the command itself is built at each start.
    let mut probe = lab.command(member, bin)?;
    if let Some(c) = clocks {
        c.apply(member, &mut probe)?;
    }
    let args: Vec<std::ffi::OsString> = probe.get_args().map(|a| a.to_os_string()).collect();
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = probe
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string())))
        .collect();
    Ok(move || {
        let mut c = std::process::Command::new("ip");
        c.args(&args).envs(envs.iter().cloned());
        Ok(c)
    })
}

fn save_key(dir: &Path, name: &str, key: &SecretKey) -> eyre::Result<PathBuf> {
    let path = dir.join(format!("keys/{name}.json"));
    keystore::save_with_cost(&path, key, PASSWORD, 1024, 1)?;
    Ok(path)
}

/// Transfers from the faucet, all submitted, then each waited on.
pub async fn fund(faucet: &TxSender, to: &[(Address, Amount)]) -> eyre::Result<()> {
    let mut ids = Vec::new();
    for (a, amount) in to {
        let (id, _) = faucet
            .submit(TxBody::Transfer {
                to: *a,
                amount: *amount,
            })
            .await?;
        ids.push(id);
    }
    for id in ids {
        let r = faucet
            .chain()
            .wait_final(&id, Duration::from_secs(60))
            .await?;
        if let agora_types::Outcome::Failed { code, message } = r.outcome {
            bail!("funding transfer {id} failed ({code}): {message}");
        }
    }
    Ok(())
}

async fn wait_height(chain: &ChainClient, h: u64, timeout: Duration) -> eyre::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(s) = chain.status().await
            && s.height >= h
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the chain at {} did not reach height {h} in {timeout:?}",
                chain.base()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The signed key request an agent sends (`POST /v1/keys`).
async fn request_key(
    base: &str,
    key: &SecretKey,
    name: &str,
    api_key: &str,
) -> eyre::Result<IssuedKey> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{base}/keys");
    let terms: KeyTerms = http
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let at_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let signed = KeyRequest {
        account: key.public(),
        gateway: terms.gateway,
        name: name.into(),
        key_sha256: agora_market::keys::key_digest(api_key),
        per_request_cap: None,
        expires_at: None,
        at_ms,
    }
    .sign(key);
    let resp = http.post(&url).json(&signed).send().await?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("POST {url}: {status}: {text}");
    }
    Ok(resp.json().await?)
}
