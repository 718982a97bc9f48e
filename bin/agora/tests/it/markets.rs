//! Markets and weights from the command line, as a provider, a validator and anyone reading
//! an epoch would use them: `agora tx create-market / join-market / commit-weights /
//! reveal-weights`, `agora market list / show`, `agora epoch show`.

use super::wallet::{agora, start_dev};
use serde_json::Value;

#[test]
fn a_market_from_create_to_an_explained_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    // First start writes the dev genesis and keys; shorten the incentive epoch to 5 blocks
    // (about 5 s of idle blocks) and start again on a fresh chain.
    drop(start_dev(&dir));
    let genesis_path = dir.join("genesis.json");
    let mut genesis: Value =
        serde_json::from_str(&std::fs::read_to_string(&genesis_path).unwrap()).unwrap();
    genesis["params"]["incentives"]["epoch_blocks"] = 5.into();
    std::fs::write(&genesis_path, genesis.to_string()).unwrap();
    std::fs::remove_dir_all(dir.join("data")).unwrap();
    let (_dev, url) = start_dev(&dir);
    let home = tmp.path().join("home");
    let key = |name: &str| {
        dir.join(format!("keys/{name}.json"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let (dev_key, validator_key) = (key("dev"), key("validator"));
    let env = |keystore: &str| {
        vec![
            ("AGORA_RPC", url.clone()),
            ("AGORA_KEYSTORE", keystore.to_string()),
            ("AGORA_PASSWORD", "dev".to_string()),
            ("AGORA_HOME", home.to_str().unwrap().to_string()),
        ]
    };
    let run = |args: &[&str], keystore: &str| {
        let env = env(keystore);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        agora(args, &env)
    };
    let (_, me, _) = run(&["wallet", "address", "--json"], &dev_key);
    let provider = me["address"].as_str().unwrap().to_string();
    let sha = "cd".repeat(32);

    // The dev account registers a model, stakes, serves it and opens a market over it.
    for args in [
        vec![
            "tx",
            "register-model",
            "--sha256",
            &sha,
            "--name",
            "m",
            "--family",
            "llama",
            "--license",
            "mit",
        ],
        vec!["tx", "bond", "--amount", "100"],
        vec![
            "tx",
            "register-provider",
            "--model",
            &sha,
            "--input-price",
            "0.1",
            "--output-price",
            "0.2",
        ],
        vec!["tx", "create-market", "--name", "chat/cli", "--model", &sha],
        vec!["tx", "join-market", "--market", "chat/cli"],
    ] {
        let (code, _, out) = run(&args, &dev_key);
        assert_eq!(code, 0, "{args:?}: {out}");
    }
    let (code, list, out) = run(&["market", "list", "--json"], &dev_key);
    assert_eq!(code, 0, "{out}");
    assert_eq!(list["markets"][0]["name"], "chat/cli");
    assert_eq!(list["markets"][0]["members"], 1);
    let (code, _, out) = run(&["market", "show", "chat/cli"], &dev_key);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&provider) && out.contains("joined at"),
        "{out}"
    );

    // The validator commits weights; revealing in the same epoch is refused on chain, in the
    // next one it lands. The salt waited on disk in between.
    let weight = format!("{provider}=7");
    let (code, _, out) = run(
        &[
            "tx",
            "commit-weights",
            "--market",
            "chat/cli",
            "--weight",
            &weight,
        ],
        &validator_key,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        std::fs::read_dir(home.join("weights")).unwrap().count() == 1,
        "the reveal is saved"
    );
    let (_, status, _) = run(&["market", "show", "chat/cli", "--json"], &dev_key);
    let next_epoch_end = status["next_epoch_height"].as_u64().unwrap();
    let (code, _, out) = run(
        &["tx", "reveal-weights", "--market", "chat/cli"],
        &validator_key,
    );
    let height_of = |out: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix("height"))
            .and_then(|h| h.trim().parse().ok())
            .unwrap_or(0)
    };
    if height_of(&out) <= next_epoch_end {
        assert_eq!(
            code, 2,
            "a reveal in the commit's epoch fails on chain: {out}"
        );
        assert!(out.contains("can be revealed from height"), "{out}");
        // Wait for the next epoch, then reveal.
        for _ in 0..60 {
            let (_, m, _) = run(&["market", "show", "chat/cli", "--json"], &dev_key);
            if m["height"].as_u64().unwrap_or(0) > next_epoch_end {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let (code, _, out) = run(
            &["tx", "reveal-weights", "--market", "chat/cli"],
            &validator_key,
        );
        assert_eq!(code, 0, "{out}");
    } else {
        assert_eq!(code, 0, "{out}");
    }
    // Wait for an epoch that ran after the reveal, and read it line by line.
    let mut shown = String::new();
    for _ in 0..120 {
        let (_, m, _) = run(&["market", "show", "chat/cli", "--json"], &dev_key);
        let epochs_run = m["record"]["epochs_run"].as_u64().unwrap_or(0);
        let height = m["height"].as_u64().unwrap_or(0);
        if epochs_run >= 2 && height > next_epoch_end + 5 {
            let epoch = (next_epoch_end + 5) / 5; // the epoch after the commit's
            let (code, _, out) = run(
                &[
                    "epoch",
                    "show",
                    &epoch.to_string(),
                    "--market",
                    "chat/cli",
                    "--account",
                    &provider,
                ],
                &dev_key,
            );
            assert_eq!(code, 0, "{out}");
            shown = out;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        shown.contains("chat/cli") && shown.contains(&provider),
        "{shown}"
    );
    // No channel paid for work in this market, so nothing was minted, and the line says why.
    assert!(
        shown.contains("why 0: the market's share of emission was 0"),
        "{shown}"
    );
    let (code, _, out) = run(
        &["epoch", "show", "999999", "--market", "chat/cli"],
        &dev_key,
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("no report") && !out.contains("panicked"),
        "{out}"
    );
}
