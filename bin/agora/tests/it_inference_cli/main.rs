//! The inference commands of the `agora` binary, run as processes on the real SmolLM2 file:
//! `models list/verify/pull --file`, `generate` (text, `--record`, `--json`), `chat` with piped
//! stdin, `bench inference` at a tiny size, and the errors a user sees for bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The package's directory as the test runner gives it when the test runs (cargo and nextest set
/// it), not as it was when the binary was built: a warm build cache may hold a binary built in
/// another checkout.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn models_dir() -> PathBuf {
    std::env::var_os("AGORA_MODELS_DIR").map_or_else(
        || PathBuf::from(manifest_dir()).join("../../models"),
        PathBuf::from,
    )
}

fn smollm() -> PathBuf {
    let p = models_dir().join(SMOLLM);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/fetch-models.sh`",
        p.display()
    );
    p
}

fn agora(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agora"));
    c.args(args)
        .env("AGORA_MODELS_DIR", dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    agora(dir, args).output().expect("cannot start agora")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "agora {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(!out.status.success(), "agora {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn models_list_verify_and_pull_a_local_file() {
    smollm();
    let dir = models_dir();
    let list: serde_json::Value =
        serde_json::from_str(&ok(&dir, &["models", "list", "--json"])).unwrap();
    let smol = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "smollm2-135m-instruct")
        .expect("smollm2 listed");
    assert_ne!(smol["state"], "missing", "{smol}");
    let verify = ok(&dir, &["models", "verify", "smollm2-135m-instruct"]);
    assert!(
        verify.contains("ok       smollm2-135m-instruct"),
        "{verify}"
    );

    // A fresh store: pull --file copies and hashes; list shows it; a corrupted copy fails verify.
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let store_s = store.to_str().unwrap();
    let pulled = ok(
        &store,
        &[
            "models",
            "--models-dir",
            store_s,
            "pull",
            "--file",
            smollm().to_str().unwrap(),
        ],
    );
    assert!(pulled.contains("sha256 b179c952"), "{pulled}");
    let list = ok(&store, &["models", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("smollm2-135m-instruct") && l.contains("present")),
        "{list}"
    );
    let file = store.join(SMOLLM);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let out = run(&store, &["models", "verify", "smollm2-135m-instruct"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("BAD"));
    // Unknown names and bad files are clear errors.
    let err = fails(&store, &["models", "pull", "no-such-model"]);
    assert!(err.contains("no-such-model"), "{err}");
    let junk = tmp.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF not really").unwrap();
    let err = fails(
        &store,
        &["models", "pull", "--file", junk.to_str().unwrap()],
    );
    assert!(err.to_lowercase().contains("gguf"), "{err}");
}

#[test]
fn generate_prints_text_records_and_json() {
    let dir = models_dir();
    smollm();
    let base = ["generate", "--threads", "1", "--temperature", "0"];
    let text = ok(
        &dir,
        &[
            &base[..],
            &[
                "--max-tokens",
                "12",
                "--prompt",
                // Under SmolLM2's default system prompt the greedy answer depends on the wording:
                // "What is the capital of France?" gets a list of French words (llama.cpp too).
                "Which city is the capital of France?",
            ],
        ]
        .concat(),
    );
    assert!(text.contains("Paris"), "{text:?}");

    let rec = ok(
        &dir,
        &[
            &base[..],
            &[
                "--max-tokens",
                "12",
                "--record",
                "--prompt",
                "Which city is the capital of France?",
            ],
        ]
        .concat(),
    );
    let rec: serde_json::Value = serde_json::from_str(rec.trim()).unwrap();
    assert_eq!(rec["text"].as_str().unwrap().trim(), text.trim());
    assert_eq!(
        rec["usage"]["completion_tokens"],
        rec["tokens"].as_array().unwrap().len()
    );

    let json = ok(
        &dir,
        &[
            &base[..],
            &[
                "--json",
                "--record",
                "--max-tokens",
                "60",
                "--prompt",
                "Describe a cat as a JSON object with the keys name and age.",
            ],
        ]
        .concat(),
    );
    let rec: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let out = rec["text"].as_str().unwrap();
    if rec["finish_reason"] == "stop" {
        let v: serde_json::Value =
            serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert!(v.is_object(), "{out}");
    } else {
        // Cut by max_tokens: still a valid prefix of one object.
        let mut p = agora_inference::json::JsonPrefix::new();
        assert!(out.starts_with('{') && p.feed_all(out.as_bytes()), "{out}");
    }

    let err = fails(
        &dir,
        &["generate", "--model", "no-such-model", "--prompt", "hi"],
    );
    assert!(err.contains("unknown model"), "{err}");
    let err = fails(
        &dir,
        &[&base[..], &["--max-tokens", "0", "--prompt", "hi"]].concat(),
    );
    assert!(err.contains("max_tokens"), "{err}");
    let err = fails(
        &dir,
        &[&base[..], &["--max-tokens", "100000", "--prompt", "hi"]].concat(),
    );
    assert!(err.contains("context length exceeded"), "{err}");
}

#[test]
fn chat_answers_piped_lines_and_keeps_the_conversation() {
    let dir = models_dir();
    smollm();
    let mut child = agora(
        &dir,
        &[
            "chat",
            "--threads",
            "1",
            "--temperature",
            "0",
            "--max-tokens",
            "24",
            "--system",
            "Answer in one short sentence.",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\n\nAnd what is the capital of Italy?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    // Two answers (the blank line is skipped), then the prompt that met end of input.
    assert_eq!(stdout.matches("> ").count(), 4, "{stdout}");
    assert!(stdout.contains("Paris"), "{stdout}");
    assert!(stdout.contains("Rome"), "{stdout}");
}

#[test]
fn bench_inference_runs_at_a_tiny_size() {
    let dir = models_dir();
    smollm();
    let out = ok(
        &dir,
        &[
            "bench",
            "inference",
            "--threads",
            "1",
            "--prompt-tokens",
            "32",
            "--gen-tokens",
            "8",
            "--streams",
            "2",
            "--reps",
            "1",
            "--skip-candle",
        ],
    );
    for needle in [
        "prompt tokens/s (pp32)",
        "generated tokens/s (tg8)",
        "llama.cpp raw, decode phase",
        "peak RSS",
    ] {
        assert!(out.contains(needle), "{needle:?} missing in\n{out}");
    }
}
