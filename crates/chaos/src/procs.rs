//! The network's processes: each an `agora` process in its own namespace, started, killed
//! (SIGKILL), stalled (SIGSTOP/SIGCONT), restarted with the same command line, and stopped at the
//! end with SIGTERM so its own shutdown order runs. Output goes to `logs/<name>.log`, appended
//! across restarts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eyre::{WrapErr, bail};

/// How to start one process again and again.
pub struct Proc {
    pub name: String,
    /// Builds the command line (inside its namespace); called at each start.
    make: Box<dyn Fn() -> eyre::Result<Command> + Send + Sync>,
    log: PathBuf,
    child: Option<Child>,
    /// The log's length when the current incarnation started: readiness is read after it.
    log_from: u64,
}

impl Proc {
    pub fn new(
        name: &str,
        log: PathBuf,
        make: impl Fn() -> eyre::Result<Command> + Send + Sync + 'static,
    ) -> Proc {
        Proc {
            name: name.to_string(),
            make: Box::new(make),
            log,
            child: None,
            log_from: 0,
        }
    }

    pub fn start(&mut self) -> eyre::Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.name);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .wrap_err_with(|| format!("cannot open {}", self.log.display()))?;
        self.log_from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let child = (self.make)()?
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .wrap_err_with(|| format!("cannot start {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: &str) -> eyre::Result<()> {
        let Some(pid) = self.pid() else {
            bail!("{} is not running", self.name);
        };
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .wrap_err("cannot run kill")?
            .success();
        if !ok {
            bail!("kill {sig} {} ({pid}) failed", self.name);
        }
        Ok(())
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stall(&self) -> eyre::Result<()> {
        self.signal("-STOP")
    }

    pub fn resume(&self) -> eyre::Result<()> {
        self.signal("-CONT")
    }

    /// SIGTERM and wait up to `grace` for the process's own shutdown; SIGKILL after that.
    /// Returns whether it ended by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        // A stalled process cannot act on SIGTERM. (Either fails only if it is gone already.)
        let _ = self.signal("-CONT");
        let _ = self.signal("-TERM");
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Whether the current incarnation has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// What this incarnation has logged so far.
    pub fn output(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(self.log_from)
            .unwrap_or(usize::MAX)
            .min(text.len());
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// Waits until this incarnation logs a line containing `marker`; returns that line. Fails
    /// with the log's tail if the process exits or `timeout` passes first.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> eyre::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if let Some(line) = out.lines().find(|l| l.contains(marker)) {
                return Ok(line.to_string());
            }
            if let Some(status) = self.exited() {
                bail!(
                    "{} exited ({status}) before printing {marker:?}; its log ends:\n{}",
                    self.name,
                    tail(&out, 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {marker:?} within {timeout:?}; its log ends:\n{}",
                    self.name,
                    tail(&out, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
