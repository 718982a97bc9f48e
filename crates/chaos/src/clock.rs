//! Per-process wall clocks through libfaketime. In a run with `clock_skew` faults every process
//! starts with libfaketime preloaded and reads its offset from a file of its own, which the
//! nemesis rewrites (the library reads it again every second). Only the wall clock moves: the
//! monotonic clock, which timers and timeouts use, is left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use eyre::{WrapErr, bail};

/// Where Debian's `faketime` package (and a build from source) puts the library: the
/// thread-safe build (`MT`), since every node is a multi-threaded tokio process.
const LIBRARIES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

pub struct Clocks {
    dir: PathBuf,
    library: PathBuf,
}

impl Clocks {
    /// Offsets kept under `dir`; fails with the install hint when libfaketime is missing.
    pub fn new(dir: &Path) -> eyre::Result<Clocks> {
        let Some(library) = LIBRARIES.iter().map(PathBuf::from).find(|p| p.exists()) else {
            bail!(
                "a clock_skew fault needs libfaketime (Debian: apt-get install faketime); \
                 looked in {}",
                LIBRARIES.join(", ")
            );
        };
        std::fs::create_dir_all(dir)?;
        Ok(Clocks {
            dir: dir.to_path_buf(),
            library,
        })
    }

    fn file(&self, member: &str) -> PathBuf {
        self.dir.join(format!("{member}.offset"))
    }

    /// Makes `c` (which starts `member`) run on `member`'s clock, at no offset until skewed.
    pub fn apply(&self, member: &str, c: &mut Command) -> eyre::Result<()> {
        let file = self.file(member);
        if !file.exists() {
            self.set(member, 0)?;
        }
        c.env("LD_PRELOAD", &self.library)
            .env("FAKETIME_TIMESTAMP_FILE", &file)
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        Ok(())
    }

    /// Moves `member`'s wall clock `seconds` from the true time (0: back to it).
    pub fn set(&self, member: &str, seconds: i64) -> eyre::Result<()> {
        // Written whole, then renamed: the library never reads half a line.
        let file = self.file(member);
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, format!("{seconds:+}\n"))
            .and_then(|()| std::fs::rename(&tmp, &file))
            .wrap_err_with(|| format!("cannot write {}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `date +%s` run on a clock set 3600 s ahead reads an hour ahead; back at 0, the true time.
    #[test]
    fn a_process_started_on_a_skewed_clock_reads_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let clocks = match Clocks::new(dir.path()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED: {e}");
                return;
            }
        };
        let read = |clocks: &Clocks| -> i64 {
            let mut c = Command::new("date");
            c.arg("+%s");
            clocks.apply("p", &mut c).unwrap();
            let out = c.output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        };
        clocks.set("p", 3600).unwrap();
        let ahead = read(&clocks) - now();
        assert!((3595..=3605).contains(&ahead), "{ahead}");
        clocks.set("p", 0).unwrap();
        let off = read(&clocks) - now();
        assert!(off.abs() <= 5, "{off}");
    }
}
