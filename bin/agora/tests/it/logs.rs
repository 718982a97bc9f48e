//! `--log-format json`: every log line is one JSON object a log collector can read.

use std::process::Command;

#[test]
fn json_logs_are_one_object_a_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["--log-format", "json", "--log", "info", "net", "status"])
        .args([
            "--seconds",
            "1",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--json",
        ])
        .env_remove("AGORA_LOG_FORMAT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    // The command's own output is untouched.
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status["peer_id"].is_string(), "{status}");
}
