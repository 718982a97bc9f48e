//! Incremental detokenisation and stop sequences.
//!
//! Tokens are byte strings; one UTF-8 character can span several tokens (emoji, CJK with byte
//! fallback). [`TextStream`] buffers bytes until they form complete characters, so every emitted
//! chunk is valid UTF-8, and holds back any tail that could be the start of a stop sequence, so a
//! stop sequence is never partly emitted.

/// What [`TextStream::push`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    /// Text safe to send to the client now (may be empty).
    pub text: String,
    /// A stop sequence was completed; `text` ends right before it and generation must stop.
    pub stopped: bool,
}

/// Byte-to-text stream with stop-sequence detection.
#[derive(Debug, Clone, Default)]
pub struct TextStream {
    bytes: Vec<u8>,
    held: String,
    stops: Vec<String>,
}

impl TextStream {
    /// A stream that stops at any of `stops` (which must be non-empty strings).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            bytes: Vec::new(),
            held: String::new(),
            stops,
        }
    }

    /// Append one token's bytes.
    pub fn push(&mut self, piece: &[u8]) -> Chunk {
        self.bytes.extend_from_slice(piece);
        let valid = self.take_complete();
        self.held.push_str(&valid);
        self.release()
    }

    /// Flush everything at the end of generation (incomplete trailing bytes become U+FFFD).
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        if !self.bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.bytes));
            self.bytes.clear();
        }
        out
    }

    /// Decode the longest prefix of complete characters; invalid bytes become U+FFFD, an incomplete
    /// sequence at the end is kept for the next token.
    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.to_vec();
        self.bytes = keep;
        out
    }

    fn release(&mut self) -> Chunk {
        if self.stops.is_empty() {
            return Chunk {
                text: std::mem::take(&mut self.held),
                stopped: false,
            };
        }
        // Earliest complete stop sequence wins.
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = hit {
            let text = self.held[..at].to_string();
            self.held.clear();
            self.bytes.clear();
            return Chunk {
                text,
                stopped: true,
            };
        }
        // Hold back the longest suffix that is a proper prefix of some stop sequence.
        let mut hold = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                let p = &s[..i];
                if i > hold && self.held.ends_with(p) {
                    hold = i;
                }
            }
        }
        let cut = self.held.len() - hold;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Chunk {
            text,
            stopped: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_multibyte_characters_are_never_emitted_broken() {
        let s = "héllo 🚀 你好";
        let bytes = s.as_bytes();
        let mut t = TextStream::new(vec![]);
        let mut out = String::new();
        for b in bytes {
            let c = t.push(&[*b]);
            out.push_str(&c.text);
        }
        out.push_str(&t.finish());
        assert_eq!(out, s);
        // After the first byte of the rocket, nothing of it has been emitted.
        let mut t = TextStream::new(vec![]);
        assert_eq!(t.push(&"🚀".as_bytes()[..2]).text, "");
        assert_eq!(t.push(&"🚀".as_bytes()[2..]).text, "🚀");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut t = TextStream::new(vec![]);
        assert_eq!(t.push(&[b'a', 0xff, b'b']).text, "a\u{fffd}b");
        assert_eq!(t.push(&[0xe4, 0xbd]).text, "");
        assert_eq!(t.finish(), "\u{fffd}");
    }

    #[test]
    fn stop_sequences_cut_the_text_and_are_never_partly_emitted() {
        let mut t = TextStream::new(vec!["END".into(), "\n\n".into()]);
        let mut out = String::new();
        let mut stopped = false;
        for piece in ["Hello E", "N", "D and more"] {
            let c = t.push(piece.as_bytes());
            out.push_str(&c.text);
            if c.stopped {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        assert_eq!(out, "Hello ");
        // A held prefix that turns out not to be a stop is released.
        let mut t = TextStream::new(vec!["END".into()]);
        assert_eq!(t.push(b"x E").text, "x ");
        assert_eq!(t.push(b"Nx").text, "ENx");
        assert_eq!(t.push(b" EN").text, " ");
        assert_eq!(t.finish(), "EN");
    }

    #[test]
    fn stop_sequence_with_multibyte_characters() {
        let mut t = TextStream::new(vec!["🚀!".into()]);
        let bytes = "go 🚀! after".as_bytes();
        let mut out = String::new();
        for b in bytes {
            let c = t.push(&[*b]);
            out.push_str(&c.text);
            if c.stopped {
                break;
            }
        }
        assert_eq!(out, "go ");
    }
}
