//! NAT traversal with real network separation: network namespaces made by this test.
//!
//! ```text
//!  ns gw: gateway 10.77.N.20 ──┐
//!                              ├─ bridge in ns pub: relay 10.77.N.10 (relay v2, AutoNAT server)
//!  ns rtr: wan 10.77.N.1 ──────┘    the "internet"
//!          MASQUERADE; FORWARD wan→lan and INPUT on wan: only ESTABLISHED,RELATED,
//!          everything else dropped silently
//!          lan 192.168.N.1 ──── ns home: provider 192.168.N.2 (default route via the router)
//! ```
//!
//! Neither `pub` nor `gw` has a route to 192.168.N.0/24, so nobody can dial the provider. The provider dials
//! out to the relay and reserves a slot. Phase 1: a gateway without hole punching streams a
//! request through the relay circuit (asserted: only relayed connections). Phase 2: a gateway
//! with DCUtR connects through the relay, the hole punch upgrades to a direct connection from
//! the NAT's public address, the relayed one is closed, and the request streams directly
//! (asserted: only direct connections, remote address = the router's WAN address).
//!
//! Needs root, iproute2 and iptables. Skips (loudly) only when network namespaces cannot be
//! created at all; missing iptables with working namespaces is a failure.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_agora-p2p-probe");

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ns_exec(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// Owns the namespaces and processes of one run; tears everything down on drop, failure
/// included.
struct Lab {
    id: u32,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("agp2p-{role}-{}", self.id)
    }

    fn spawn(&mut self, ns: &str, args: &[&str]) -> mpsc::Receiver<Value> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, PROBE])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("AGORA_NAT_TEST_LOG").unwrap_or_else(|_| "agora_p2p=info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn probe");
        let stdout = child.stdout.take().expect("stdout");
        self.children.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        rx
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

fn wait_event(rx: &mpsc::Receiver<Value>, event: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if v["event"] == event => return v,
            Ok(v) if v["event"] == "error" => panic!("probe failed waiting for {event}: {v}"),
            Ok(_) => {}
            Err(_) => panic!("no `{event}` event within {timeout:?}"),
        }
    }
}

fn build(lab: &mut Lab) -> Result<(), String> {
    let n = lab.id % 200 + 20;
    let (public, gw, router, home) = (lab.ns("pub"), lab.ns("gw"), lab.ns("rtr"), lab.ns("home"));
    for ns in [&public, &gw, &router, &home] {
        sh(&["ip", "netns", "add", ns])?;
        lab.namespaces.push(ns.clone());
        ns_exec(ns, &["ip", "link", "set", "lo", "up"])?;
    }
    // The "internet" is a bridge in `pub` (where the relay lives) joining the gateway's
    // namespace and the router's WAN side. Interface names must fit in 15 bytes.
    let br = format!("agb{}", lab.id);
    let (wan_a, wan_b) = (format!("agw{}a", lab.id), format!("agw{}b", lab.id));
    let (gw_a, gw_b) = (format!("agg{}a", lab.id), format!("agg{}b", lab.id));
    let (lan_a, lan_b) = (format!("agl{}a", lab.id), format!("agl{}b", lab.id));
    sh(&["ip", "-n", &public, "link", "add", &br, "type", "bridge"])?;
    sh(&[
        "ip", "link", "add", &wan_a, "netns", &public, "type", "veth", "peer", "name", &wan_b,
        "netns", &router,
    ])?;
    sh(&[
        "ip", "link", "add", &gw_a, "netns", &public, "type", "veth", "peer", "name", &gw_b,
        "netns", &gw,
    ])?;
    sh(&[
        "ip", "link", "add", &lan_a, "netns", &router, "type", "veth", "peer", "name", &lan_b,
        "netns", &home,
    ])?;
    let pub_net = format!("10.77.{n}");
    let home_net = format!("192.168.{n}");
    ns_exec(&public, &["ip", "link", "set", &wan_a, "master", &br])?;
    ns_exec(&public, &["ip", "link", "set", &gw_a, "master", &br])?;
    ns_exec(
        &public,
        &["ip", "addr", "add", &format!("{pub_net}.10/24"), "dev", &br],
    )?;
    for dev in [&br, &wan_a, &gw_a] {
        ns_exec(&public, &["ip", "link", "set", dev, "up"])?;
    }
    ns_exec(
        &gw,
        &[
            "ip",
            "addr",
            "add",
            &format!("{pub_net}.20/24"),
            "dev",
            &gw_b,
        ],
    )?;
    ns_exec(&gw, &["ip", "link", "set", &gw_b, "up"])?;
    ns_exec(
        &router,
        &[
            "ip",
            "addr",
            "add",
            &format!("{pub_net}.1/24"),
            "dev",
            &wan_b,
        ],
    )?;
    ns_exec(
        &router,
        &[
            "ip",
            "addr",
            "add",
            &format!("{home_net}.1/24"),
            "dev",
            &lan_a,
        ],
    )?;
    ns_exec(&router, &["ip", "link", "set", &wan_b, "up"])?;
    ns_exec(&router, &["ip", "link", "set", &lan_a, "up"])?;
    ns_exec(
        &home,
        &[
            "ip",
            "addr",
            "add",
            &format!("{home_net}.2/24"),
            "dev",
            &lan_b,
        ],
    )?;
    ns_exec(&home, &["ip", "link", "set", &lan_b, "up"])?;
    ns_exec(
        &home,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("{home_net}.1"),
        ],
    )?;
    // /proc/sys/net is per network namespace: this turns on forwarding in the router only.
    ns_exec(
        &router,
        &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
    )?;
    ns_exec(
        &router,
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            &wan_b,
            "-j",
            "MASQUERADE",
        ],
    )?;
    ns_exec(
        &router,
        &[
            "iptables",
            "-A",
            "FORWARD",
            "-i",
            &wan_b,
            "-o",
            &lan_a,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
    )?;
    ns_exec(
        &router,
        &[
            "iptables", "-A", "FORWARD", "-i", &wan_b, "-o", &lan_a, "-j", "DROP",
        ],
    )?;
    // Like a home router: unsolicited packets to the WAN address are dropped silently (no RST).
    ns_exec(
        &router,
        &[
            "iptables",
            "-A",
            "INPUT",
            "-i",
            &wan_b,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
    )?;
    ns_exec(
        &router,
        &["iptables", "-A", "INPUT", "-i", &wan_b, "-j", "DROP"],
    )?;
    Ok(())
}

#[test]
fn provider_behind_nat_serves_via_relay_then_direct_after_hole_punch() {
    if !cfg!(target_os = "linux") {
        eprintln!("\n*** SKIPPED nat test: network namespaces need Linux ***\n");
        return;
    }
    let id = std::process::id() % 100_000;
    // Probe namespace support with a throwaway namespace.
    let probe_ns = format!("agp2p-chk-{id}");
    if let Err(e) = sh(&["ip", "netns", "add", &probe_ns]) {
        eprintln!(
            "\n*** SKIPPED nat test: network namespaces unavailable here ({e}); \
             it needs root and iproute2 ***\n"
        );
        return;
    }
    let _ = sh(&["ip", "netns", "del", &probe_ns]);
    if Command::new("iptables").arg("--version").output().is_err() {
        panic!("namespaces work but iptables is missing: apt-get install -y iptables");
    }

    let mut lab = Lab {
        id,
        namespaces: Vec::new(),
        children: Vec::new(),
    };
    if let Err(e) = build(&mut lab) {
        panic!("building the namespaces failed: {e}");
    }
    let n = id % 200 + 20;
    let (public, gw, home) = (lab.ns("pub"), lab.ns("gw"), lab.ns("home"));
    let wan_ip = format!("10.77.{n}.1");

    // The NAT is real: the public side has no route to the home network at all.
    assert!(
        sh(&[
            "ip",
            "-n",
            &public,
            "route",
            "get",
            &format!("192.168.{n}.2")
        ])
        .is_err()
            && sh(&["ip", "-n", &gw, "route", "get", &format!("192.168.{n}.2")]).is_err(),
        "the provider is routable from outside: the NAT is not in place"
    );

    let relay_rx = lab.spawn(
        &public,
        &[
            "relay",
            "--listen",
            &format!("/ip4/10.77.{n}.10/tcp/4100"),
            "--run-secs",
            "90",
        ],
    );
    let ready = wait_event(&relay_rx, "ready", Duration::from_secs(20));
    let relay_id = ready["peer_id"].as_str().expect("peer id").to_owned();
    let relay_addr = format!("/ip4/10.77.{n}.10/tcp/4100/p2p/{relay_id}");

    let prov_rx = lab.spawn(
        &home,
        &[
            "provider",
            "--listen",
            &format!("/ip4/192.168.{n}.2/tcp/4100"),
            "--bootstrap",
            &relay_addr,
            "--run-secs",
            "90",
        ],
    );
    let reserved = wait_event(&prov_rx, "reserved", Duration::from_secs(30));
    let provider_id = reserved["peer_id"].as_str().expect("peer id").to_owned();
    let circuit = format!("{relay_addr}/p2p-circuit/p2p/{provider_id}");

    // Phase 1: through the relay.
    let gw1 = lab.spawn(
        &gw,
        &[
            "gateway",
            "--listen",
            &format!("/ip4/10.77.{n}.20/tcp/4101"),
            "--target",
            &circuit,
            "--expect",
            "relayed",
            "--no-hole-punch",
            "--tokens",
            "64",
            "--run-secs",
            "60",
        ],
    );
    let r1 = wait_event(&gw1, "streamed", Duration::from_secs(30));
    eprintln!("phase 1 (relayed): {r1}");
    assert_eq!(r1["tokens"], 64);
    assert_eq!(r1["in_order"], true);
    assert_eq!(r1["path_before"], "relayed", "{r1}");
    assert_eq!(r1["path_after"], "relayed", "{r1}");
    for c in r1["connections"].as_array().expect("connections") {
        assert!(
            c["addr"].as_str().expect("addr").contains("/p2p-circuit"),
            "{c}"
        );
    }

    // Phase 2: hole punch, then direct.
    let gw2 = lab.spawn(
        &gw,
        &[
            "gateway",
            "--listen",
            &format!("/ip4/10.77.{n}.20/tcp/4102"),
            "--target",
            &circuit,
            "--expect",
            "direct",
            "--tokens",
            "64",
            "--run-secs",
            "60",
        ],
    );
    let r2 = wait_event(&gw2, "streamed", Duration::from_secs(45));
    eprintln!("phase 2 (direct): {r2}");
    assert_eq!(r2["tokens"], 64);
    assert_eq!(r2["in_order"], true);
    assert_eq!(r2["hole_punched"], true, "{r2}");
    assert_eq!(r2["path_before"], "direct", "{r2}");
    assert_eq!(r2["path_after"], "direct", "{r2}");
    let conns = r2["connections"].as_array().expect("connections");
    assert!(!conns.is_empty());
    for c in conns {
        let addr = c["addr"].as_str().expect("addr");
        assert!(!addr.contains("/p2p-circuit"), "{c}");
        assert!(
            addr.starts_with(&format!("/ip4/{wan_ip}/")),
            "direct connection should come from the NAT's public address {wan_ip}: {c}"
        );
    }

    // AutoNAT (dial-back by the relay) tells the provider it is behind NAT.
    let mut nat_private = reserved["nat"] == "private";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nat_private && Instant::now() < deadline {
        match prov_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(v) if v["event"] == "nat" && v["nat"] == "private" => nat_private = true,
            _ => {}
        }
    }
    assert!(nat_private, "provider never learned it is behind NAT");
}
