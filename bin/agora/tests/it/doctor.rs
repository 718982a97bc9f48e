//! `agora doctor` as a new provider would run it: on an empty model store, on one holding a
//! model, and against a real overlay peer.

use std::path::PathBuf;

use serde_json::Value;

use crate::wallet::agora;

const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn models_dir() -> PathBuf {
    std::env::var_os("AGORA_MODELS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"),
        PathBuf::from,
    )
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn doctor_names_what_is_missing_and_passes_once_a_model_is_in_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    let (code, report, out) = agora(
        &["doctor", "--json", "--models-dir", empty.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["ready"], false, "{out}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu", "memory", "gpu", "disk", "models", "network"]);
    let models = check(&report, "models");
    assert_eq!(models["status"], "fail", "{report}");
    assert!(
        models["fix"]
            .as_str()
            .unwrap()
            .contains("agora models pull"),
        "{report}"
    );
    assert_eq!(check(&report, "network")["status"], "skipped");
    // This machine has the build's kernels (the tests run on it).
    assert_eq!(check(&report, "cpu")["status"], "ok", "{report}");
    assert!(out.contains("cannot serve yet: models failed"), "{out}");

    // The same store once it holds the model (linked from the test models).
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::os::unix::fs::symlink(models_dir().join(SMOLLM), store.join(SMOLLM)).unwrap();
    let (code, report, out) = agora(
        &["doctor", "--json", "--models-dir", store.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["ready"], true, "{out}");
    let models = check(&report, "models");
    assert_eq!(models["status"], "ok", "{report}");
    assert!(
        models["found"].as_str().unwrap().contains("smollm2"),
        "{report}"
    );
    // The human-readable form says the same.
    let (code, _, out) = agora(&["doctor", "--models-dir", store.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    models") && out.contains("ready to serve"),
        "{out}"
    );
}

#[test]
fn doctor_reaches_a_peer_of_the_overlay_and_reports_an_unreachable_one() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A public peer on loopback, as a validator or gateway would be.
    let (peer, _inbound) = rt
        .block_on(agora_p2p::spawn(
            agora_p2p::generate_seed(),
            agora_p2p::NetConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                public: true,
                autonat_server: true,
                upnp: false,
                ..agora_p2p::NetConfig::default()
            },
            None,
        ))
        .unwrap();
    // Its listen address appears once the socket is bound.
    let st = rt.block_on(async {
        for _ in 0..100 {
            let st = peer.status().await.unwrap();
            if !st.listen_addrs.is_empty() {
                return st;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the peer never listened");
    });
    let addr = format!("{}/p2p/{}", st.listen_addrs[0], st.peer_id);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let args = [
        "doctor",
        "--json",
        "--models-dir",
        dir,
        "--network-seconds",
        "3",
    ];
    let (_, report, out) = agora(&[&args[..], &["--bootstrap", &addr]].concat(), &[]);
    let network = check(&report, "network");
    assert_ne!(network["status"], "fail", "{out}");
    assert!(
        network["found"]
            .as_str()
            .unwrap()
            .contains("connected to 1 peer"),
        "{report}"
    );
    // A peer nobody listens for: the check fails and says what to look at.
    let closed = format!("/ip4/127.0.0.1/tcp/9/p2p/{}", st.peer_id);
    let (code, report, out) = agora(&[&args[..], &["--bootstrap", &closed]].concat(), &[]);
    assert_eq!(code, 1, "{out}");
    let network = check(&report, "network");
    assert_eq!(network["status"], "fail", "{report}");
    assert!(
        network["fix"].as_str().unwrap().contains("firewall"),
        "{report}"
    );
    rt.block_on(peer.shutdown());
}
