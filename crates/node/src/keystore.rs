//! Encrypted key files: the ed25519 seed sealed with XChaCha20-Poly1305 under a key stretched
//! from a password by Argon2id.

use agora_types::{Address, SecretKey};
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::Zeroize;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a keystore file: {0}")]
    Format(String),
    #[error("wrong password (or the file was altered)")]
    WrongPassword,
    #[error("the key inside does not match the address {0}")]
    AddressMismatch(Address),
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    address: Address,
    kdf: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

/// Argon2id cost: 64 MiB, 3 passes — about half a second here, slow enough to hurt guessing.
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;

fn derive(password: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32], KeystoreError> {
    // Bounds stop a hostile file from asking for gigabytes of memory.
    if m > 1024 * 1024 || t > 16 || p > 16 {
        return Err(KeystoreError::Format(
            "key derivation cost out of bounds".into(),
        ));
    }
    let params = Params::new(m, t, p, Some(32)).map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut key)
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

pub fn save(path: &Path, key: &SecretKey, password: &str) -> Result<(), KeystoreError> {
    save_with_cost(path, key, password, M_COST_KIB, T_COST)
}

/// Like [`save`] with a chosen Argon2 cost (tests and `agora dev` use a cheap one).
pub fn save_with_cost(
    path: &Path,
    key: &SecretKey,
    password: &str,
    m_cost_kib: u32,
    t_cost: u32,
) -> Result<(), KeystoreError> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut salt);
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut k = derive(password, &salt, m_cost_kib, t_cost, 1)?;
    let cipher = XChaCha20Poly1305::new((&k).into());
    k.zeroize();
    let mut seed = key.to_bytes();
    let ciphertext = cipher
        .encrypt(XNonce::from_slice(&nonce), seed.as_slice())
        .map_err(|_| KeystoreError::Kdf("encryption failed".into()))?;
    seed.zeroize();
    let file = KeyFile {
        version: 1,
        address: key.public(),
        kdf: "argon2id".into(),
        m_cost_kib,
        t_cost,
        p_cost: 1,
        salt: hex::encode(salt),
        cipher: "xchacha20poly1305".into(),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    };
    let json =
        serde_json::to_string_pretty(&file).map_err(|e| KeystoreError::Format(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| KeystoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    // Write then rename, so a crash never leaves a half-written key file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).map_err(|source| KeystoreError::Io {
        path: tmp.display().to_string(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The address stored in a key file, without the password.
pub fn address(path: &Path) -> Result<Address, KeystoreError> {
    Ok(read_file(path)?.address)
}

fn read_file(path: &Path) -> Result<KeyFile, KeystoreError> {
    let meta = std::fs::metadata(path).map_err(|source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if meta.len() > 64 * 1024 {
        return Err(KeystoreError::Format("file too large".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| KeystoreError::Format(e.to_string()))
}

pub fn load(path: &Path, password: &str) -> Result<SecretKey, KeystoreError> {
    let f = read_file(path)?;
    if f.version != 1 || f.kdf != "argon2id" || f.cipher != "xchacha20poly1305" {
        return Err(KeystoreError::Format(
            "unsupported version, kdf or cipher".into(),
        ));
    }
    let bad = |what: &str| KeystoreError::Format(format!("bad {what}"));
    let salt = hex::decode(&f.salt).map_err(|_| bad("salt"))?;
    let nonce: [u8; 24] = hex::decode(&f.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("nonce"))?;
    let ciphertext = hex::decode(&f.ciphertext).map_err(|_| bad("ciphertext"))?;
    let mut k = derive(password, &salt, f.m_cost_kib, f.t_cost, f.p_cost)?;
    let cipher = XChaCha20Poly1305::new((&k).into());
    k.zeroize();
    let mut seed = cipher
        .decrypt(XNonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| KeystoreError::WrongPassword)?;
    let arr: [u8; 32] = seed.as_slice().try_into().map_err(|_| bad("key length"))?;
    seed.zeroize();
    let key = SecretKey::from_bytes(arr);
    if key.public() != f.address {
        return Err(KeystoreError::AddressMismatch(f.address));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = SecretKey::from_test_seed("ks");
        save_with_cost(&path, &key, "hunter2", 1024, 1).unwrap();
        assert_eq!(address(&path).unwrap(), key.public());
        assert_eq!(load(&path, "hunter2").unwrap().public(), key.public());
        assert!(matches!(
            load(&path, "wrong"),
            Err(KeystoreError::WrongPassword)
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("argon2id", "scrypt")).unwrap();
        assert!(matches!(
            load(&path, "hunter2"),
            Err(KeystoreError::Format(_))
        ));
    }
}
