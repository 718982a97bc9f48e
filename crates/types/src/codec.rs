//! The one canonical binary encoding of every consensus-critical value.
//!
//! Rules, chosen so that every value has exactly one encoding and decoding never trusts a length:
//! - integers are fixed-width little-endian (`u8`, `u16`, `u32`, `u64`, `u128`);
//! - `bool` is one byte, `0` or `1`; `Option<T>` is a tag byte `0`/`1` then `T`;
//! - byte strings, UTF-8 strings and lists carry a `u32` length prefix that is checked against a
//!   per-field maximum *and* against the bytes left before anything is allocated;
//! - enums are a `u8` tag then the variant's fields; unknown tags are errors;
//! - a top-level decode must consume every byte (no trailing garbage).
//!
//! Decoding any byte string returns `Ok` or a [`DecodeError`]; it never panics and never allocates
//! more than the input's length.

use thiserror::Error;

/// Why a byte string is not a valid encoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("input ended early: needed {needed} more bytes, {remaining} left")]
    UnexpectedEnd { needed: usize, remaining: usize },
    #[error("{trailing} trailing bytes after the value")]
    TrailingBytes { trailing: usize },
    #[error("{what}: length {len} exceeds the maximum {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what}: unknown tag {tag}")]
    InvalidTag { what: &'static str, tag: u8 },
    #[error("{what}: not valid UTF-8")]
    InvalidUtf8 { what: &'static str },
    #[error("{what}: {reason}")]
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
}

/// A value with a canonical encoding.
pub trait Encode {
    fn encode_to(&self, out: &mut Vec<u8>);

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// A value that can be decoded from untrusted bytes.
pub trait Decode: Sized {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a whole buffer; trailing bytes are an error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let value = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

/// A cursor over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes { trailing }),
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                needed: n,
                remaining: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    /// A float by its IEEE-754 bits; only finite values decode (JSON, which some of these
    /// values travelled as before, can carry no other, and engines need none).
    pub fn finite_f32(&mut self, what: &'static str) -> Result<f32, DecodeError> {
        let v = f32::from_bits(self.u32()?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(DecodeError::Invalid {
                what,
                reason: "not a finite number",
            })
        }
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::InvalidTag { what, tag }),
        }
    }

    /// Reads a `u32` length and checks it against `max` and against the bytes left, assuming
    /// each item takes at least `min_item_size` bytes, before the caller allocates anything.
    pub fn len(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_size: usize,
    ) -> Result<usize, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        let needed = len.saturating_mul(min_item_size.max(1));
        if needed > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                needed,
                remaining: self.remaining(),
            });
        }
        Ok(len)
    }

    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.len(what, max, 1)?;
        Ok(self.take(len)?.to_vec())
    }

    pub fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let bytes = self.bytes(what, max)?;
        String::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { what })
    }

    pub fn vec<T: Decode>(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_size: usize,
    ) -> Result<Vec<T>, DecodeError> {
        let len = self.len(what, max, min_item_size)?;
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(T::decode_from(self)?);
        }
        Ok(out)
    }

    pub fn option<T: Decode>(&mut self, what: &'static str) -> Result<Option<T>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(T::decode_from(self)?))
        } else {
            Ok(None)
        }
    }
}

/// Helpers for writing the same shapes that [`Reader`] reads.
pub trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_u128(&mut self, v: u128);
    /// A float by its IEEE-754 bits: exact and platform independent.
    fn put_f32(&mut self, v: f32);
    fn put_bool(&mut self, v: bool);
    fn put_bytes(&mut self, v: &[u8]);
    fn put_len(&mut self, len: usize);
    fn put_vec<T: Encode>(&mut self, v: &[T]);
    fn put_option<T: Encode>(&mut self, v: &Option<T>);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u128(&mut self, v: u128) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_f32(&mut self, v: f32) {
        self.put_u32(v.to_bits());
    }
    fn put_bool(&mut self, v: bool) {
        self.push(v as u8);
    }
    fn put_bytes(&mut self, v: &[u8]) {
        self.put_len(v.len());
        self.extend_from_slice(v);
    }
    fn put_len(&mut self, len: usize) {
        // Every length we encode is bounded far below u32::MAX by the type's own limits.
        self.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    }
    fn put_vec<T: Encode>(&mut self, v: &[T]) {
        self.put_len(v.len());
        for item in v {
            item.encode_to(self);
        }
    }
    fn put_option<T: Encode>(&mut self, v: &Option<T>) {
        match v {
            None => self.put_u8(0),
            Some(x) => {
                self.put_u8(1);
                x.encode_to(self);
            }
        }
    }
}

macro_rules! int_codec {
    ($($t:ty => $read:ident, $write:ident);*) => {$(
        impl Encode for $t {
            fn encode_to(&self, out: &mut Vec<u8>) { out.$write(*self) }
        }
        impl Decode for $t {
            fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> { r.$read() }
        }
    )*};
}
int_codec!(u8 => u8, put_u8; u16 => u16, put_u16; u32 => u32, put_u32; u64 => u64, put_u64; u128 => u128, put_u128);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_larger_than_input_is_rejected_before_allocation() {
        let mut bytes = vec![];
        bytes.put_u32(u32::MAX);
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.bytes("x", usize::MAX),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.bytes("x", 10),
            Err(DecodeError::TooLong {
                len: _,
                max: 10,
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        assert_eq!(
            u32::decode(&[1, 0, 0, 0, 9]),
            Err(DecodeError::TrailingBytes { trailing: 1 })
        );
        assert_eq!(u32::decode(&[1, 0, 0, 0]), Ok(1));
    }

    #[test]
    fn bool_must_be_zero_or_one() {
        let mut r = Reader::new(&[2]);
        assert!(matches!(
            r.bool("flag"),
            Err(DecodeError::InvalidTag { tag: 2, .. })
        ));
    }
}
