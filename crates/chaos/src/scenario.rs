//! A scenario file: the network's shape, the load, and the fault schedule (TOML; see
//! `scenarios/` at the repository root). Checked when loaded, so a typo fails before any
//! process starts.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// How long the load runs, in seconds (faults must fall inside it).
    pub duration_s: u64,
    pub topology: Topology,
    pub load: Load,
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Validators (simplex BFT; 4 tolerate one faulty).
    pub validators: usize,
    /// Honest providers, each its own process serving the deterministic test engine.
    pub providers: usize,
    /// Milliseconds per generated token of the test engine.
    #[serde(default = "default_step_ms")]
    pub step_ms: u64,
}

fn default_step_ms() -> u64 {
    10
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Concurrent gateway clients, each with its own API key and ledger account.
    pub clients: usize,
    /// Concurrent wallet clients sending transfers through the validators' RPC.
    #[serde(default)]
    pub transfer_clients: usize,
    /// Each operation's deadline, in seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// `max_tokens` of every generation.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// A client's pause between operations, in milliseconds.
    #[serde(default)]
    pub think_ms: u64,
    /// Relative weights of the gateway calls.
    #[serde(default)]
    pub mix: Mix,
}

fn default_timeout_s() -> u64 {
    30
}

fn default_max_tokens() -> u32 {
    24
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    #[serde(default)]
    pub chat_stream: u32,
    #[serde(default)]
    pub chat: u32,
    #[serde(default)]
    pub completion_stream: u32,
    #[serde(default)]
    pub completion: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            chat_stream: 2,
            chat: 1,
            completion_stream: 1,
            completion: 1,
        }
    }
}

impl Mix {
    pub fn total(&self) -> u64 {
        [
            self.chat_stream,
            self.chat,
            self.completion_stream,
            self.completion,
        ]
        .iter()
        .map(|w| u64::from(*w))
        .sum()
    }
}

/// One fault: at `at_s` seconds into the load, do `kind` to `target` for `for_s` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub at_s: u64,
    pub kind: FaultKind,
    /// A process (`validator-2`, `provider-0`, `gateway`) or a role (`validator`, `provider`),
    /// meaning one of that role picked by the seed. `validator-0` serves the ledger RPC the
    /// providers and the gateway read, so a role pick of `validator` never takes it.
    pub target: String,
    /// How long the fault lasts before the process is restarted, resumed or healed.
    pub for_s: u64,
    /// `loss` only: the share of the target's packets dropped, in percent (1 to 100).
    #[serde(default)]
    pub percent: Option<u32>,
    /// `clock_skew` only: how far the target's wall clock is moved, in seconds (ahead if
    /// positive; at most an hour either way, not 0).
    #[serde(default)]
    pub skew_s: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL (no shutdown path runs), then start it again.
    Kill,
    /// SIGSTOP (a stall: sockets stay open, nothing answers), then SIGCONT.
    Stall,
    /// Cut the target off from every other process of the network (the runner still reaches
    /// it, so its RPC can be sampled).
    Partition,
    /// Drop `percent` of the packets the target receives.
    Loss,
    /// Fill a validator's disk (its data directory is a small tmpfs of its own); the space
    /// comes back at the end, and a validator that stopped on the full disk is started again.
    FullDisk,
    /// Move the target's wall clock by `skew_s` seconds (libfaketime; timers and timeouts run
    /// on the monotonic clock, which does not move), then back.
    ClockSkew,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Stall => "stall",
            FaultKind::Partition => "partition",
            FaultKind::Loss => "loss",
            FaultKind::FullDisk => "full_disk",
            FaultKind::ClockSkew => "clock_skew",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let s: Scenario = toml::from_str(&text).map_err(|e| ScenarioError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// The rules a file must follow beyond its shape.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if !(1..=16).contains(&self.topology.validators) {
            return bad("topology.validators must be 1 to 16".into());
        }
        if !(1..=8).contains(&self.topology.providers) {
            return bad("topology.providers must be 1 to 8".into());
        }
        if !(1..=64).contains(&self.load.clients) || self.load.transfer_clients > 16 {
            return bad("load.clients must be 1 to 64, load.transfer_clients at most 16".into());
        }
        if self.load.mix.total() == 0 {
            return bad("load.mix gives every call a weight of 0".into());
        }
        if self.duration_s == 0 || self.duration_s > 24 * 3600 {
            return bad("duration_s must be 1 to 86400".into());
        }
        if !(1..=4096).contains(&self.load.max_tokens) {
            return bad("load.max_tokens must be 1 to 4096".into());
        }
        for (i, f) in self.faults.iter().enumerate() {
            let end = f.at_s.checked_add(f.for_s);
            if end.is_none_or(|e| e > self.duration_s) || f.for_s == 0 {
                return bad(format!(
                    "faults[{i}]: at_s + for_s must end within duration_s ({}) and for_s be > 0",
                    self.duration_s
                ));
            }
            match (f.kind, f.percent) {
                (FaultKind::Loss, Some(p)) if (1..=100).contains(&p) => {}
                (FaultKind::Loss, _) => {
                    return bad(format!("faults[{i}]: loss needs percent, 1 to 100"));
                }
                (_, Some(_)) => return bad(format!("faults[{i}]: percent is for loss only")),
                _ => {}
            }
            match (f.kind, f.skew_s) {
                (FaultKind::ClockSkew, Some(s)) if s != 0 && s.unsigned_abs() <= 3600 => {}
                (FaultKind::ClockSkew, _) => {
                    return bad(format!(
                        "faults[{i}]: clock_skew needs skew_s, -3600 to 3600 and not 0"
                    ));
                }
                (_, Some(_)) => {
                    return bad(format!("faults[{i}]: skew_s is for clock_skew only"));
                }
                _ => {}
            }
            if f.kind == FaultKind::FullDisk && !f.target.starts_with("validator") {
                return bad(format!(
                    "faults[{i}]: full_disk is for validators (their data is on a disk of its own)"
                ));
            }
            if self.resolve_role(&f.target).is_none() {
                return bad(format!(
                    "faults[{i}]: unknown target {:?} (validator, provider, gateway, or one of \
                     validator-0..{}, provider-0..{})",
                    f.target,
                    self.topology.validators - 1,
                    self.topology.providers - 1
                ));
            }
            if f.target == "validator" && self.topology.validators < 2 {
                return bad(format!(
                    "faults[{i}]: a `validator` pick needs 2 validators (validator-0 serves the RPC)"
                ));
            }
        }
        Ok(())
    }

    /// The processes a target may mean: itself, or every process of a role.
    pub fn resolve_role(&self, target: &str) -> Option<Vec<String>> {
        let t = &self.topology;
        let numbered = |role: &str, n: usize, from: usize| -> Vec<String> {
            (from..n).map(|i| format!("{role}-{i}")).collect()
        };
        match target {
            "validator" => Some(numbered("validator", t.validators, 1)),
            "provider" => Some(numbered("provider", t.providers, 0)),
            "gateway" => Some(vec!["gateway".into()]),
            name => {
                let all = numbered("validator", t.validators, 0)
                    .into_iter()
                    .chain(numbered("provider", t.providers, 0));
                all.into_iter().find(|p| p == name).map(|p| vec![p])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: "test".into(),
            message: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    const BASE: &str = r#"
name = "t"
duration_s = 60
[topology]
validators = 4
providers = 2
[load]
clients = 2
"#;

    #[test]
    fn a_scenario_parses_with_defaults_and_its_faults_are_checked() {
        let s = parse(BASE).unwrap();
        assert_eq!(s.load.mix, Mix::default());
        assert_eq!(s.load.timeout_s, 30);
        let ok = format!(
            "{BASE}[[faults]]\nat_s = 10\nkind = \"loss\"\ntarget = \"provider-1\"\nfor_s = 5\npercent = 30\n"
        );
        assert_eq!(parse(&ok).unwrap().faults[0].percent, Some(30));
        for (fault, why) in [
            (
                "at_s = 50\nkind = \"kill\"\ntarget = \"gateway\"\nfor_s = 20",
                "within duration_s",
            ),
            (
                "at_s = 5\nkind = \"loss\"\ntarget = \"gateway\"\nfor_s = 5",
                "needs percent",
            ),
            (
                "at_s = 5\nkind = \"kill\"\ntarget = \"validator-9\"\nfor_s = 5",
                "unknown target",
            ),
            (
                "at_s = 5\nkind = \"stall\"\ntarget = \"gateway\"\nfor_s = 5\npercent = 3",
                "loss only",
            ),
            (
                "at_s = 5\nkind = \"clock_skew\"\ntarget = \"gateway\"\nfor_s = 5",
                "needs skew_s",
            ),
            (
                "at_s = 5\nkind = \"clock_skew\"\ntarget = \"gateway\"\nfor_s = 5\nskew_s = 7200",
                "needs skew_s",
            ),
            (
                "at_s = 5\nkind = \"kill\"\ntarget = \"gateway\"\nfor_s = 5\nskew_s = 3",
                "clock_skew only",
            ),
            (
                "at_s = 5\nkind = \"full_disk\"\ntarget = \"provider\"\nfor_s = 5",
                "for validators",
            ),
        ] {
            let err = parse(&format!("{BASE}[[faults]]\n{fault}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{fault}: {err}");
        }
        let typo = format!("{BASE}[[faults]]\nat = 1\n");
        assert!(parse(&typo).is_err());
    }

    #[test]
    fn a_validator_pick_never_takes_the_rpc_node() {
        let s = parse(BASE).unwrap();
        assert_eq!(
            s.resolve_role("validator").unwrap(),
            vec!["validator-1", "validator-2", "validator-3"]
        );
        assert_eq!(s.resolve_role("validator-0").unwrap(), vec!["validator-0"]);
        assert_eq!(s.resolve_role("provider").unwrap().len(), 2);
    }
}
