//! The gateway's small state files (API-key book, channel journal): read whole, written whole.

use std::path::Path;

/// The JSON document at `path`; a missing file is `T::default()`, an unreadable or corrupt one
/// an error naming the file (these files hold credit and deposits: better to stop than forget).
pub fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> std::io::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never half
/// of either: write a sibling, fsync it, rename it over.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
