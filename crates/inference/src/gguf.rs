//! A bounded GGUF reader that validates a file before llama.cpp sees it.
//!
//! llama.cpp trusts its input: a truncated file or a tensor table that points past the end can
//! abort the process. [`inspect`] reads the header, every metadata entry and the tensor table with
//! checked arithmetic, computes each tensor's byte size from its ggml type and shape, and checks
//! that every tensor lies inside the file. Only a file that passes is handed to a backend.
//!
//! ```text
//! "GGUF" | version u32 | n_tensors u64 | n_kv u64 | kv* | tensor_info* | pad to alignment | data
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Largest metadata or tensor count we accept; real models have a few hundred of each.
const MAX_COUNT: u64 = 1 << 20;
/// Largest single string (a Jinja chat template is the longest in practice).
const MAX_STRING: u64 = 16 << 20;
const MAX_DIMS: u32 = 4;

/// Why a file is not a usable GGUF model.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF file (magic {magic:02x?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, magic: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (2 and 3 are)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path} is truncated: {what} needs bytes up to offset {needed}, the file has {len}")]
    Truncated {
        path: PathBuf,
        what: String,
        needed: u64,
        len: u64,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// A metadata value. Arrays keep their element type and length, not their contents.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array { elem_type: u32, len: u64 },
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            MetaValue::Uint(v) => Some(*v),
            MetaValue::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
    /// The value as a string slice, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor's entry in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Offset from the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

/// What [`inspect`] learned about a valid file.
#[derive(Debug, Clone)]
pub struct GgufInfo {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub data_offset: u64,
    pub file_len: u64,
}

impl GgufInfo {
    /// `general.architecture`, e.g. `llama` or `gemma3`.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata
            .get("general.architecture")
            .and_then(MetaValue::as_str)
    }
    /// `{arch}.context_length`: the context the model was trained for.
    pub fn context_length(&self) -> Option<u64> {
        let arch = self.architecture()?;
        self.metadata
            .get(&format!("{arch}.context_length"))
            .and_then(MetaValue::as_u64)
    }
    /// The Jinja chat template stored in the file, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.metadata
            .get("tokenizer.chat_template")
            .and_then(MetaValue::as_str)
    }
    /// Total parameter count (elements over all tensors).
    pub fn n_params(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| t.dims.iter().product::<u64>())
            .sum()
    }
}

/// (block size in elements, bytes per block) for the ggml tensor types we know.
fn type_layout(t: u32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        _ => return None,
    })
}

struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
    path: PathBuf,
}

impl<R: Read> Reader<R> {
    fn need(&self, n: u64, what: &str) -> Result<(), GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.corrupt(format!("{what}: size overflows")))?;
        if end > self.len {
            return Err(GgufError::Truncated {
                path: self.path.clone(),
                what: what.to_string(),
                needed: end,
                len: self.len,
            });
        }
        Ok(())
    }
    fn corrupt(&self, reason: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .map_err(|source| GgufError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
    }
    fn skip(&mut self, n: u64, what: &str) -> Result<(), GgufError> {
        self.need(n, what)?;
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink()).map_err(
            |source| GgufError::Io {
                path: self.path.clone(),
                source,
            },
        )?;
        if copied != n {
            return Err(self.corrupt(format!("{what}: short read")));
        }
        self.pos += n;
        Ok(())
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(self.corrupt(format!("{what}: string length {n} is implausible")));
        }
        self.need(n, what)?;
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|source| GgufError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.pos += n;
        String::from_utf8(buf).map_err(|_| self.corrupt(format!("{what}: string is not UTF-8")))
    }
    fn skip_string(&mut self, what: &str) -> Result<(), GgufError> {
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(self.corrupt(format!("{what}: string length {n} is implausible")));
        }
        self.skip(n, what)
    }
    fn scalar_size(t: u32) -> Option<u64> {
        Some(match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => return None,
        })
    }
    fn value(&mut self, t: u32, key: &str) -> Result<MetaValue, GgufError> {
        Ok(match t {
            0 => MetaValue::Uint(self.bytes::<1>(key)?[0].into()),
            1 => MetaValue::Int((self.bytes::<1>(key)?[0] as i8).into()),
            2 => MetaValue::Uint(u16::from_le_bytes(self.bytes::<2>(key)?).into()),
            3 => MetaValue::Int(i16::from_le_bytes(self.bytes::<2>(key)?).into()),
            4 => MetaValue::Uint(self.u32(key)?.into()),
            5 => MetaValue::Int(i32::from_le_bytes(self.bytes::<4>(key)?).into()),
            6 => MetaValue::Float(f32::from_le_bytes(self.bytes::<4>(key)?).into()),
            7 => MetaValue::Bool(self.bytes::<1>(key)?[0] != 0),
            8 => MetaValue::Str(self.string(key)?),
            9 => {
                let elem_type = self.u32(key)?;
                let len = self.u64(key)?;
                // Every element needs at least this many bytes: a count the file cannot hold
                // is a truncation (or a corrupt count), caught before any allocation.
                let min_elem = Self::scalar_size(elem_type).unwrap_or(8);
                let min = len
                    .checked_mul(min_elem)
                    .ok_or_else(|| self.corrupt(format!("{key}: array size overflows")))?;
                self.need(min, key)?;
                if let Some(sz) = Self::scalar_size(elem_type) {
                    let total = len
                        .checked_mul(sz)
                        .ok_or_else(|| self.corrupt(format!("{key}: array size overflows")))?;
                    self.skip(total, key)?;
                } else if elem_type == 8 {
                    for _ in 0..len {
                        self.skip_string(key)?;
                    }
                } else {
                    return Err(
                        self.corrupt(format!("{key}: unsupported array element type {elem_type}"))
                    );
                }
                MetaValue::Array { elem_type, len }
            }
            10 => MetaValue::Uint(self.u64(key)?),
            11 => MetaValue::Int(i64::from_le_bytes(self.bytes::<8>(key)?)),
            12 => MetaValue::Float(f64::from_le_bytes(self.bytes::<8>(key)?)),
            other => return Err(self.corrupt(format!("{key}: unknown metadata type {other}"))),
        })
    }
}

/// Read and validate a GGUF file: header, metadata, tensor table and that every tensor's bytes are
/// inside the file.
pub fn inspect(path: &Path) -> Result<GgufInfo, GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let len = file
        .metadata()
        .map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    inspect_reader(BufReader::with_capacity(1 << 20, file), len, path)
}

/// [`inspect`] over any reader of `len` bytes (`path` is only used in messages).
pub fn inspect_reader(inner: impl Read, len: u64, path: &Path) -> Result<GgufInfo, GgufError> {
    let mut r = Reader {
        inner,
        pos: 0,
        len,
        path: path.to_path_buf(),
    };
    let magic = r.bytes::<4>("magic")?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic {
            path: path.to_path_buf(),
            magic,
        });
    }
    let version = r.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    if n_tensors > MAX_COUNT || n_kv > MAX_COUNT {
        return Err(r.corrupt(format!(
            "implausible counts: {n_tensors} tensors, {n_kv} metadata entries"
        )));
    }
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r.string(&format!("metadata key #{i}"))?;
        let t = r.u32(&key)?;
        let v = r.value(t, &key)?;
        metadata.insert(key, v);
    }
    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => a,
            _ => return Err(r.corrupt(format!("general.alignment {v:?} is not a power of two"))),
        },
    };
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = r.string(&format!("tensor name #{i}"))?;
        let n_dims = r.u32(&name)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(r.corrupt(format!("tensor {name}: {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64(&name)?);
        }
        let ggml_type = r.u32(&name)?;
        let offset = r.u64(&name)?;
        let (block, block_bytes) = type_layout(ggml_type)
            .ok_or_else(|| r.corrupt(format!("tensor {name}: unknown ggml type {ggml_type}")))?;
        if dims[0] % block != 0 {
            return Err(r.corrupt(format!(
                "tensor {name}: row length {} is not a multiple of the block size {block}",
                dims[0]
            )));
        }
        let mut n_bytes = (dims[0] / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| r.corrupt(format!("tensor {name}: size overflows")))?;
        for d in &dims[1..] {
            n_bytes = n_bytes
                .checked_mul(*d)
                .ok_or_else(|| r.corrupt(format!("tensor {name}: size overflows")))?;
        }
        if offset % alignment != 0 {
            return Err(r.corrupt(format!(
                "tensor {name}: offset {offset} is not aligned to {alignment}"
            )));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        });
    }
    let data_offset = r.pos.div_ceil(alignment) * alignment;
    for t in &tensors {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|x| x.checked_add(t.n_bytes))
            .ok_or_else(|| r.corrupt(format!("tensor {}: end offset overflows", t.name)))?;
        if end > len {
            return Err(GgufError::Truncated {
                path: path.to_path_buf(),
                what: format!("tensor {}", t.name),
                needed: end,
                len,
            });
        }
    }
    Ok(GgufInfo {
        version,
        metadata,
        tensors,
        data_offset,
        file_len: len,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small well-formed GGUF image: two metadata entries and one F32 tensor of 8 elements.
    pub(crate) fn tiny_gguf() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        s(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        s(&mut b, "llama");
        s(&mut b, "llama.context_length");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&128u32.to_le_bytes());
        s(&mut b, "w");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&8u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend_from_slice(&[0u8; 32]);
        b
    }

    fn check(bytes: &[u8]) -> Result<GgufInfo, GgufError> {
        inspect_reader(bytes, bytes.len() as u64, Path::new("mem.gguf"))
    }

    #[test]
    fn accepts_a_well_formed_file() {
        let info = check(&tiny_gguf()).unwrap();
        assert_eq!(info.architecture(), Some("llama"));
        assert_eq!(info.context_length(), Some(128));
        assert_eq!(info.tensors.len(), 1);
        assert_eq!(info.tensors[0].n_bytes, 32);
        assert_eq!(info.n_params(), 8);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = tiny_gguf();
        for cut in 0..full.len() {
            let err = check(&full[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    GgufError::Truncated { .. } | GgufError::BadMagic { .. }
                ),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn rejects_bad_magic_version_and_types() {
        let mut b = tiny_gguf();
        b[0] = b'X';
        assert!(matches!(check(&b), Err(GgufError::BadMagic { .. })));
        let mut b = tiny_gguf();
        b[4] = 1;
        assert!(matches!(
            check(&b),
            Err(GgufError::UnsupportedVersion { .. })
        ));
        let good = tiny_gguf();
        let mut b = good.clone();
        // Corrupt the element count of the tensor to a huge value: it no longer fits the file.
        let pos = b
            .windows(6)
            .position(|w| w == [b'w', 1, 0, 0, 0, 8])
            .map(|p| p + 5);
        if let Some(p) = pos {
            b[p..p + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            let err = check(&b).unwrap_err();
            assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
        } else {
            panic!("tensor entry not found in fixture");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678;
        for _ in 0..200 {
            let mut b = tiny_gguf();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % b.len();
                b[i] = (x >> 32) as u8;
            }
            let _ = check(&b);
        }
    }
}
