//! The 30-minute chaos soak (`scenarios/soak.toml`), in the `slow` profile:
//! `cargo nextest run -p agora --profile slow -E 'binary(slow)'`.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_agora");

#[test]
fn soak_keeps_every_invariant_for_thirty_minutes() {
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let scenario = Path::new(&manifest).join("../../scenarios/soak.toml");
    let dir = std::env::var_os("AGORA_CHAOS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("agora-soak-{}", std::process::id())));
    let seed = std::env::var("AGORA_CHAOS_SEED").unwrap_or_else(|_| "1".into());
    let out = Command::new(BIN)
        .args(["testnet", "chaos", "--scenario"])
        .arg(&scenario)
        .args(["--seed", &seed, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("chaos: no violations"),
        "soak failed ({}), run directory {}:\n{stdout}\n{}",
        out.status,
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
