//! A validator's disk of its own: its data directory is a small tmpfs, so a `full_disk` fault
//! fills that validator's disk alone (a filler file takes every free block) and gives the space
//! back when it ends. Needs root, like the lab.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use eyre::{WrapErr, bail};

/// Each validator's disk, in MiB: a two-minute run writes about a tenth of it.
pub const DISK_MIB: u64 = 512;

/// One mounted tmpfs; unmounted on drop.
pub struct Disk {
    mount: PathBuf,
}

impl Disk {
    /// Mounts a `mib` MiB tmpfs on `path` (created if missing, and empty: the node's data is
    /// written after).
    pub fn mount(path: &Path, mib: u64) -> eyre::Result<Disk> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .output()
            .wrap_err("cannot run mount")?;
        if !out.status.success() {
            bail!(
                "cannot mount a tmpfs on {} (full_disk needs root): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Disk {
            mount: path.to_path_buf(),
        })
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("chaos-filler")
    }

    /// Takes every free block: writes the filler until the disk says it is full. Returns the
    /// bytes taken.
    pub fn fill(&self) -> eyre::Result<u64> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .wrap_err("cannot create the filler")?;
        let chunk = vec![0u8; 1 << 20];
        let mut taken = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => return Ok(taken),
                Ok(n) => taken += n as u64,
                Err(e) if e.kind() == ErrorKind::StorageFull => return Ok(taken),
                Err(e) => return Err(e).wrap_err("cannot write the filler"),
            }
        }
    }

    /// Gives the space back.
    pub fn drain(&self) -> eyre::Result<()> {
        match std::fs::remove_file(self.filler()) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(e).wrap_err("cannot remove the filler")
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there does not keep the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (mount), as the chaos e2e test does; skips, loudly, without it.
    #[test]
    fn a_full_disk_refuses_writes_until_drained() {
        if !root() {
            eprintln!("SKIPPED: not root, so no tmpfs can be mounted");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::mount(&dir.path().join("d"), 4).unwrap();
        let taken = disk.fill().unwrap();
        assert!(taken > 3 << 20 && taken <= 4 << 20, "{taken}");
        let err = std::fs::write(dir.path().join("d/x"), vec![1u8; 64 << 10]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StorageFull);
        disk.drain().unwrap();
        std::fs::write(dir.path().join("d/x"), vec![1u8; 64 << 10]).unwrap();
        drop(disk);
        assert!(!dir.path().join("d/x").exists(), "unmounted on drop");
    }

    fn root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }
}
