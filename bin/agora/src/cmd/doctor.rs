//! `agora doctor`: checks this machine for what a provider needs (CPU features, memory, GPU,
//! disk, the model store, reachability through the overlay) and says what to fix.
//!
//! Each check reports what it found, a status and, when something is wrong, the command or
//! change that fixes it. `ok` and `warn` leave the machine ready to serve; any `fail` makes the
//! command exit non-zero, so a script can gate on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_inference::store::FileState;
use agora_p2p::{Multiaddr, NatStatus, NetConfig};
use clap::Args;
use serde::Serialize;

use super::models::StoreArgs;

/// Options of `agora doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A peer of the network to join, `/…/p2p/<id>` (repeatable): the overlay is started and
    /// its reachability and NAT status read. Without one the network check is skipped.
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Seconds to give the overlay to connect and learn its NAT status.
    #[arg(long, default_value_t = 8)]
    network_seconds: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Serves, but worse than it could (no GPU, little disk).
    Warn,
    /// Cannot serve until fixed.
    Fail,
    /// Not checked (the network check without a peer to try).
    Skipped,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found, in words.
    pub found: String,
    /// What to do about it, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, found: impl Into<String>) -> Check {
        Check {
            name,
            status,
            found: found.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// Every check, and whether the machine can serve.
#[derive(Debug, Serialize)]
struct Report {
    ready: bool,
    checks: Vec<Check>,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Runs `agora doctor`.
pub fn run(args: DoctorArgs) -> eyre::Result<()> {
    let store = args.store.store();
    let entries = store.list();
    let largest_model = entries
        .iter()
        .filter(|e| !matches!(e.state, FileState::Missing))
        .map(|e| e.size)
        .max()
        .unwrap_or(0);
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    sys.refresh_cpu_all();
    let brand = sys
        .cpus()
        .first()
        .map_or_else(String::new, |c| c.brand().trim().to_string());
    let checks = vec![
        cpu(&brand, sys.cpus().len(), &cpu_features()),
        memory(sys.total_memory(), sys.available_memory(), largest_model),
        gpu(nvidia_smi().as_deref(), cfg!(feature = "cuda")),
        disk(store.dir(), free_space(store.dir())),
        models(store.dir(), &entries),
        network(&args.bootstrap, args.network_seconds),
    ];
    let report = Report {
        ready: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    if !report.ready {
        // An expected outcome, not an error: said plainly, with the exit status scripts test.
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect();
        eprintln!(
            "this machine cannot serve yet: {} failed",
            failed.join(", ")
        );
        std::process::exit(1);
    }
    Ok(())
}

fn print(report: &Report) {
    for c in &report.checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skipped => "skip",
        };
        println!("{mark}  {:<8} {}", c.name, c.found);
        if let Some(fix) = &c.fix {
            println!("      {:<8} fix: {fix}", "");
        }
    }
    println!();
    if report.ready {
        println!(
            "ready to serve: `agora node --provider --chain-rpc URL --provider-key K` joins a network (`agora dev` runs a local one)"
        );
    }
}

/// The instruction-set extensions this build's llama.cpp kernels use (.cargo/config.toml turns
/// on the x86-64-v3 set), with whether this CPU has each.
fn cpu_features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        vec![
            ("avx", std::is_x86_feature_detected!("avx")),
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("fma", std::is_x86_feature_detected!("fma")),
            ("f16c", std::is_x86_feature_detected!("f16c")),
            ("bmi2", std::is_x86_feature_detected!("bmi2")),
        ]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

fn cpu(brand: &str, threads: usize, features: &[(&'static str, bool)]) -> Check {
    let missing: Vec<&str> = features
        .iter()
        .filter(|(_, has)| !has)
        .map(|(name, _)| *name)
        .collect();
    let brand = if brand.is_empty() {
        "unknown CPU"
    } else {
        brand
    };
    let found = format!("{brand}, {threads} threads");
    if !missing.is_empty() {
        return Check::new(
            "cpu",
            Status::Fail,
            format!("{found}; lacks {}", missing.join(", ")),
        )
        .fix(
            "this build's llama.cpp kernels need x86-64-v3 (AVX2, FMA, F16C, BMI2) and would stop \
             with an illegal instruction: turn those GGML_* flags OFF in .cargo/config.toml and rebuild",
        );
    }
    if threads < 2 {
        return Check::new(
            "cpu",
            Status::Warn,
            format!("{found}: generation will be slow"),
        )
        .fix("give the provider at least 2 cores");
    }
    let have: Vec<&str> = features.iter().map(|(n, _)| *n).collect();
    let suffix = if have.is_empty() {
        String::new()
    } else {
        format!("; {}", have.join(", "))
    };
    Check::new("cpu", Status::Ok, format!("{found}{suffix}"))
}

/// Memory for the largest model in the store, its KV cache and the runtime: the file's size
/// plus a quarter, plus 512 MiB.
fn memory(total: u64, available: u64, largest_model: u64) -> Check {
    let need = largest_model
        .saturating_add(largest_model / 4)
        .saturating_add(512 * MIB)
        .max(GIB);
    let found = format!(
        "{} available of {} (the largest model here needs about {})",
        human(available),
        human(total),
        human(need)
    );
    if total < need {
        Check::new("memory", Status::Fail, found)
            .fix("serve a smaller model (a lower quantization or fewer parameters), or add memory")
    } else if available < need {
        Check::new("memory", Status::Warn, found)
            .fix("other programs hold the memory the model needs: stop some before serving")
    } else {
        Check::new("memory", Status::Ok, found)
    }
}

/// `name, driver, memory` of each NVIDIA GPU, as `nvidia-smi` reports them; `None` when there is
/// no `nvidia-smi` or it fails (no GPU, no driver).
fn nvidia_smi() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn gpu(nvidia: Option<&str>, built_with_cuda: bool) -> Check {
    match (nvidia, built_with_cuda) {
        (Some(gpus), true) => Check::new("gpu", Status::Ok, gpus.replace('\n', "; ")),
        (Some(gpus), false) => Check::new(
            "gpu",
            Status::Warn,
            format!("{}; this build runs on the CPU", gpus.replace('\n', "; ")),
        )
        .fix("rebuild with the GPU: cargo build --release -p agora --features cuda"),
        (None, true) => Check::new(
            "gpu",
            Status::Fail,
            "built for CUDA, but nvidia-smi finds no GPU (or no driver)",
        )
        .fix("install the NVIDIA driver, or use a build without --features cuda"),
        (None, false) => Check::new(
            "gpu",
            Status::Warn,
            "none found: models run on the CPU (fine for small ones, slow for 7B and up)",
        )
        .fix("a provider with an NVIDIA GPU serves larger models: install its driver and build with --features cuda"),
    }
}

/// Free bytes on the filesystem holding `dir` (or its nearest existing ancestor).
fn free_space(dir: &Path) -> Option<u64> {
    let mut at: PathBuf = std::path::absolute(dir).ok()?;
    while !at.exists() {
        at = at.parent()?.to_path_buf();
    }
    let disks = sysinfo::Disks::new_with_refreshed_list();
    disks
        .list()
        .iter()
        .filter(|d| at.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(sysinfo::Disk::available_space)
}

fn disk(dir: &Path, free: Option<u64>) -> Check {
    let Some(free) = free else {
        return Check::new(
            "disk",
            Status::Warn,
            format!("cannot tell the free space at {}", dir.display()),
        );
    };
    let found = format!("{} free at {}", human(free), dir.display());
    if free < GIB {
        Check::new("disk", Status::Fail, found)
            .fix("free some space: a small model needs about 100 MiB, a 7B one about 5 GiB")
    } else if free < 10 * GIB {
        Check::new("disk", Status::Warn, found)
            .fix("room for small models only: a 7B model needs about 5 GiB")
    } else {
        Check::new("disk", Status::Ok, found)
    }
}

fn models(dir: &Path, entries: &[agora_inference::store::Entry]) -> Check {
    let present: Vec<&str> = entries
        .iter()
        .filter(|e| matches!(e.state, FileState::Present | FileState::Verified))
        .map(|e| e.name.as_str())
        .collect();
    let bad: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.state {
            FileState::Bad(why) => Some(format!("{}: {why}", e.name)),
            _ => None,
        })
        .collect();
    if !bad.is_empty() {
        return Check::new(
            "models",
            Status::Fail,
            format!("damaged in {}: {}", dir.display(), bad.join("; ")),
        )
        .fix("delete the damaged files and pull them again: agora models pull NAME");
    }
    if present.is_empty() {
        return Check::new(
            "models",
            Status::Fail,
            format!("no model in {}", dir.display()),
        )
        .fix(format!(
            "agora models pull smollm2 --models-dir {} (or set AGORA_MODELS_DIR)",
            dir.display()
        ));
    }
    Check::new(
        "models",
        Status::Ok,
        format!("{} in {}", present.join(", "), dir.display()),
    )
}

fn network(bootstrap: &[Multiaddr], seconds: u64) -> Check {
    if bootstrap.is_empty() {
        return Check::new("network", Status::Skipped, "no peer to try")
            .fix("pass --bootstrap /ip4/…/tcp/…/p2p/<peer id> (a validator's or gateway's address) to check reachability and NAT");
    }
    let probe = || async {
        let cfg = NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("static"),
                "/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("static"),
            ],
            bootstrap: bootstrap.to_vec(),
            ..NetConfig::default()
        };
        let (h, _inbound) = agora_p2p::spawn(agora_p2p::generate_seed(), cfg, None).await?;
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let st = h.status().await;
        h.shutdown().await;
        Ok::<_, eyre::Report>(st?)
    };
    let status = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(eyre::Report::from)
        .and_then(|rt| rt.block_on(probe()));
    let st = match status {
        Ok(st) => st,
        Err(e) => {
            return Check::new(
                "network",
                Status::Fail,
                format!("the overlay did not start: {e}"),
            )
            .fix("another program may hold the port, or the system refuses sockets");
        }
    };
    let peers = st.connections.len();
    if peers == 0 {
        return Check::new(
            "network",
            Status::Fail,
            format!(
                "no connection to any of {} peer(s) in {seconds} s",
                bootstrap.len()
            ),
        )
        .fix("check the address and that outbound TCP/UDP is allowed by the firewall");
    }
    let found = format!(
        "connected to {peers} peer(s); NAT {}",
        match st.nat {
            NatStatus::Public => "public: reachable directly",
            NatStatus::Private => "private: reachable through relays and hole punching",
            NatStatus::Unknown => "not known yet",
        }
    );
    match st.nat {
        NatStatus::Private => Check::new("network", Status::Warn, found).fix(
            "forward a port to this machine (or allow UPnP) so gateways reach it directly; relays add latency",
        ),
        _ => Check::new("network", Status::Ok, found),
    }
}

/// Bytes in binary units, one decimal.
fn human(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / MIB as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_without_the_builds_kernels_fails_and_says_how_to_rebuild() {
        let c = cpu(
            "Old CPU",
            4,
            &[("avx", true), ("avx2", false), ("fma", false)],
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.contains("lacks avx2, fma"), "{}", c.found);
        assert!(c.fix.unwrap().contains(".cargo/config.toml"));
        assert_eq!(cpu("New CPU", 8, &[("avx2", true)]).status, Status::Ok);
        assert_eq!(cpu("", 1, &[("avx2", true)]).status, Status::Warn);
    }

    #[test]
    fn memory_is_judged_against_the_largest_model_here() {
        // A 4 GiB model needs 5.5 GiB: 16 GiB machines serve it, 4 GiB ones cannot.
        let model = 4 * GIB;
        assert_eq!(memory(16 * GIB, 12 * GIB, model).status, Status::Ok);
        assert_eq!(memory(16 * GIB, 2 * GIB, model).status, Status::Warn);
        assert_eq!(memory(4 * GIB, 4 * GIB, model).status, Status::Fail);
        // No model yet: a gibibyte is the floor.
        assert_eq!(memory(GIB / 2, GIB / 2, 0).status, Status::Fail);
    }

    #[test]
    fn gpu_and_build_must_agree() {
        let smi = "NVIDIA H100, 550.54, 81559 MiB";
        assert_eq!(gpu(Some(smi), true).status, Status::Ok);
        let cpu_build = gpu(Some(smi), false);
        assert_eq!(cpu_build.status, Status::Warn);
        assert!(cpu_build.fix.unwrap().contains("--features cuda"));
        assert_eq!(gpu(None, true).status, Status::Fail);
        assert_eq!(gpu(None, false).status, Status::Warn);
    }

    #[test]
    fn disk_thresholds() {
        let dir = Path::new("models");
        assert_eq!(disk(dir, Some(GIB / 2)).status, Status::Fail);
        assert_eq!(disk(dir, Some(5 * GIB)).status, Status::Warn);
        assert_eq!(disk(dir, Some(50 * GIB)).status, Status::Ok);
        assert_eq!(disk(dir, None).status, Status::Warn);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(3 * GIB / 2), "1.5 GiB");
        assert_eq!(human(100 * MIB), "100 MiB");
    }
}
