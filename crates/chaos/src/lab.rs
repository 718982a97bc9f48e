//! The lab: one network namespace per process, each with its own address on a bridge in the
//! runner's namespace, so a fault can cut or thin one process's traffic with iptables inside its
//! namespace while the runner (the bridge's own address) still reaches it. Needs root, iproute2
//! and iptables. `tc netem` is not used: kernels without the netem module (this project's CI
//! VM) have no latency fault, so the scenario format has none yet.

use std::net::Ipv4Addr;
use std::process::Command;

use eyre::{WrapErr, bail};

/// The namespaces and the bridge of one run; removed on drop.
pub struct Lab {
    prefix: String,
    subnet: [u8; 3],
    bridge: String,
    members: Vec<String>,
}

/// The runner's own address on the bridge: never cut by a partition.
pub const RUNNER_HOST: u8 = 1;

fn sh(args: &[&str]) -> eyre::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .wrap_err_with(|| format!("cannot run `{}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lab {
    /// Namespaces for `members` (in order: addresses .10, .11, ...) on subnet `10.79.<run>.0/24`.
    pub fn create(run: u8, members: &[String]) -> eyre::Result<Lab> {
        if members.len() > 200 {
            bail!("at most 200 processes in one lab");
        }
        let prefix = format!("agch{run}");
        let lab = Lab {
            bridge: format!("{prefix}-br"),
            prefix,
            subnet: [10, 79, run],
            members: members.to_vec(),
        };
        // A run killed earlier may have left its lab behind under the same name.
        lab.teardown();
        sh(&["ip", "link", "add", &lab.bridge, "type", "bridge"])
            .wrap_err("cannot create a bridge: the chaos runner needs root and iproute2")?;
        let runner = format!("{}/24", lab.addr_of(RUNNER_HOST));
        sh(&["ip", "addr", "add", &runner, "dev", &lab.bridge])?;
        sh(&["ip", "link", "set", &lab.bridge, "up"])?;
        for (i, _) in members.iter().enumerate() {
            let ns = lab.ns(i);
            let host_end = format!("{}-v{i}", lab.prefix);
            let addr = format!("{}/24", lab.addr_of(host_byte(i)));
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            sh(&["ip", "link", "set", &host_end, "master", &lab.bridge])?;
            sh(&["ip", "link", "set", &host_end, "up"])?;
            lab.in_ns(i, &["ip", "addr", "add", &addr, "dev", "eth0"])?;
            lab.in_ns(i, &["ip", "link", "set", "eth0", "up"])?;
            lab.in_ns(i, &["ip", "link", "set", "lo", "up"])?;
            // One chain for this lab's rules, so healing is one flush.
            lab.in_ns(i, &["iptables", "-N", "CHAOS"])
                .wrap_err("iptables is needed inside the namespaces")?;
            lab.in_ns(i, &["iptables", "-I", "INPUT", "-j", "CHAOS"])?;
            lab.in_ns(i, &["iptables", "-I", "OUTPUT", "-j", "CHAOS"])?;
            lab.reset(i)?;
        }
        Ok(lab)
    }

    fn addr_of(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    fn index(&self, member: &str) -> eyre::Result<usize> {
        self.members
            .iter()
            .position(|m| m == member)
            .ok_or_else(|| eyre::eyre!("no process {member} in the lab"))
    }

    fn in_ns(&self, i: usize, args: &[&str]) -> eyre::Result<()> {
        let ns = self.ns(i);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `member`'s address.
    pub fn ip(&self, member: &str) -> eyre::Result<Ipv4Addr> {
        Ok(self.addr_of(host_byte(self.index(member)?)))
    }

    /// The runner's address on the bridge.
    pub fn runner_ip(&self) -> Ipv4Addr {
        self.addr_of(RUNNER_HOST)
    }

    /// A command that runs `program` inside `member`'s namespace.
    pub fn command(&self, member: &str, program: &std::path::Path) -> eyre::Result<Command> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(self.index(member)?)])
            .arg(program);
        Ok(c)
    }

    /// Drops every packet between `member` and the other processes (not the runner).
    pub fn isolate(&self, member: &str) -> eyre::Result<()> {
        let i = self.index(member)?;
        let subnet = format!("{}/24", self.addr_of(0));
        self.in_ns(i, &["iptables", "-A", "CHAOS", "-s", &subnet, "-j", "DROP"])
    }

    /// Drops `percent`% of the packets between `member` and the other processes.
    pub fn lose(&self, member: &str, percent: u32) -> eyre::Result<()> {
        let i = self.index(member)?;
        let subnet = format!("{}/24", self.addr_of(0));
        let p = format!("{:.2}", f64::from(percent.min(100)) / 100.0);
        self.in_ns(
            i,
            &[
                "iptables",
                "-A",
                "CHAOS",
                "-s",
                &subnet,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        )
    }

    /// Removes every fault rule of `member`: only the exemptions stay.
    pub fn heal(&self, member: &str) -> eyre::Result<()> {
        self.reset(self.index(member)?)
    }

    /// The chain's exemptions, first: traffic with the runner and with itself is never cut, so
    /// the runner keeps sampling a partitioned node. A packet leaving the namespace carries its
    /// own address as source, so one `-s <subnet>` rule after these covers both directions.
    fn reset(&self, i: usize) -> eyre::Result<()> {
        let me = self.addr_of(host_byte(i)).to_string();
        let runner = self.runner_ip().to_string();
        self.in_ns(i, &["iptables", "-F", "CHAOS"])?;
        self.in_ns(
            i,
            &["iptables", "-A", "CHAOS", "-s", &runner, "-j", "RETURN"],
        )?;
        self.in_ns(
            i,
            &["iptables", "-A", "CHAOS", "-d", &runner, "-j", "RETURN"],
        )?;
        self.in_ns(
            i,
            &[
                "iptables", "-A", "CHAOS", "-s", &me, "-d", &me, "-j", "RETURN",
            ],
        )
    }

    fn teardown(&self) {
        for i in 0..self.members.len() {
            let _ = sh(&["ip", "netns", "del", &self.ns(i)]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

fn host_byte(i: usize) -> u8 {
    u8::try_from(10 + i).unwrap_or(u8::MAX)
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}
