//! Constrained JSON output: byte-level validators for JSON mode, a bounded JSON-Schema subset and the tool-call envelope, shared by the inference engine, the provider and the gateway.
//!
//! It depends on nothing beyond serde_json and `agora-types`, so the gateway can check a client's schema
//! ([`Schema::parse`]) without linking an ML framework; `agora-inference` re-exports it as
//! `agora_inference::json`.
//!
//! JSON mode: [`JsonPrefix`] is a push-down automaton over bytes. `feed` accepts a byte only if the text so
//! far can still be extended to a valid JSON document whose top-level value is an object (what
//! OpenAI's `response_format: {"type": "json_object"}` promises). The sampler asks it about each
//! candidate token in Gumbel order and takes the first one that keeps the prefix valid; once
//! [`JsonPrefix::is_complete`] the generation ends. Runs of whitespace are capped so a model cannot
//! loop on blanks.
//!
//! `response_format: {"type": "json_schema", ...}` compiles the schema into a [`Schema`] whose
//! [`SchemaPrefix`] works the same way with the schema's constraints on top (see [`schema`]);
//! [`Constraint`] is what the scheduler holds for either. Neither costs anything when unused.

pub mod schema;
pub mod tools;

pub use schema::{Schema, SchemaError, SchemaPrefix};

const MAX_WS_RUN: u8 = 4;
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level object.
    Start,
    /// Expecting a value (after `:`, `[` or `,` in an array).
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the closing bracket.
    After,
    /// Inside a string; `key` tells whether it is an object key.
    Str { key: bool, escape: bool, hex: u8 },
    /// Inside a number; `phase` follows the JSON number grammar.
    Num(NumPhase),
    /// Inside `true` / `false` / `null`: remaining bytes.
    Lit { word: &'static [u8], at: u8 },
    /// The top-level object is closed.
    Done,
}

/// Where a number is in the JSON grammar `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumPhase {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl NumPhase {
    /// The phase after byte `b`, by the grammar alone (`None`: `b` cannot continue the number).
    /// The validators add their own limits (digit counts, integers only) on top.
    fn next(self, b: u8) -> Option<NumPhase> {
        use NumPhase::*;
        match (self, b) {
            (Minus, b'0') => Some(Zero),
            (Minus | Int, b'0'..=b'9') => Some(Int),
            (Zero | Int, b'.') => Some(Dot),
            (Dot | Frac, b'0'..=b'9') => Some(Frac),
            (Zero | Int | Frac, b'e' | b'E') => Some(E),
            (E, b'+' | b'-') => Some(ESign),
            (E | ESign | Exp, b'0'..=b'9') => Some(Exp),
            _ => None,
        }
    }

    fn can_end(self) -> bool {
        matches!(
            self,
            NumPhase::Zero | NumPhase::Int | NumPhase::Frac | NumPhase::Exp
        )
    }
}

/// The output constraint of one generation.
#[derive(Debug, Clone)]
pub enum Constraint {
    /// One JSON object (`json_object`).
    Object(JsonPrefix),
    /// A document satisfying a JSON schema (`json_schema`).
    Schema(SchemaPrefix),
}

impl Constraint {
    /// The constraint a request asks for: a schema (JSON text) wins over `json`; `None` when
    /// neither is set.
    pub fn new(json: bool, json_schema: Option<&str>) -> Result<Option<Constraint>, SchemaError> {
        Ok(match json_schema {
            Some(text) => Some(Constraint::Schema(Schema::parse(text)?.prefix())),
            None if json => Some(Constraint::Object(JsonPrefix::new())),
            None => None,
        })
    }

    /// Would `bytes` keep the prefix valid?
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        match self {
            Constraint::Object(j) => j.accepts(bytes),
            Constraint::Schema(s) => s.accepts(bytes),
        }
    }

    /// Feed a whole token's bytes; on `false` the state is unchanged.
    pub fn feed_all(&mut self, bytes: &[u8]) -> bool {
        match self {
            Constraint::Object(j) => j.feed_all(bytes),
            Constraint::Schema(s) => s.feed_all(bytes),
        }
    }

    /// The document is closed: nothing more may follow, generation stops.
    pub fn is_complete(&self) -> bool {
        match self {
            Constraint::Object(j) => j.is_complete(),
            Constraint::Schema(s) => s.is_complete(),
        }
    }

    /// The text so far is a whole valid document (end-of-generation is allowed).
    pub fn can_end(&self) -> bool {
        match self {
            Constraint::Object(j) => j.is_complete(),
            Constraint::Schema(s) => s.can_end(),
        }
    }
}

/// Incremental validator for a prefix of one JSON object.
#[derive(Debug, Clone)]
pub struct JsonPrefix {
    stack: Vec<Ctx>,
    state: State,
    ws_run: u8,
    /// Digits so far in a number's integer part or exponent (capped like the schema automaton's,
    /// so every number stays a finite f64 for the client's parser).
    num_digits: u8,
}

impl Default for JsonPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonPrefix {
    /// An empty prefix.
    pub fn new() -> Self {
        Self {
            stack: Vec::new(),
            state: State::Start,
            ws_run: 0,
            num_digits: 0,
        }
    }

    /// True once the top-level object has been closed.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Feed a whole token's bytes; on `false` the validator is left unchanged.
    pub fn feed_all(&mut self, bytes: &[u8]) -> bool {
        let mut next = self.clone();
        for &b in bytes {
            if !next.feed(b) {
                return false;
            }
        }
        *self = next;
        true
    }

    /// Would `bytes` keep the prefix valid?
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        self.clone().feed_all(bytes)
    }

    fn after_value(&mut self) {
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::After
        };
    }

    fn start_value(&mut self, b: u8) -> bool {
        match b {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return false;
                }
                if b == b'{' {
                    self.stack.push(Ctx::Object);
                    self.state = State::ObjectFirst;
                } else {
                    self.stack.push(Ctx::Array);
                    self.state = State::ArrayFirst;
                }
            }
            b'"' => {
                self.state = State::Str {
                    key: false,
                    escape: false,
                    hex: 0,
                }
            }
            b'-' => {
                self.state = State::Num(NumPhase::Minus);
                self.num_digits = 0;
            }
            b'0' => {
                self.state = State::Num(NumPhase::Zero);
                self.num_digits = 1;
            }
            b'1'..=b'9' => {
                self.state = State::Num(NumPhase::Int);
                self.num_digits = 1;
            }
            b't' => {
                self.state = State::Lit {
                    word: b"true",
                    at: 1,
                }
            }
            b'f' => {
                self.state = State::Lit {
                    word: b"false",
                    at: 1,
                }
            }
            b'n' => {
                self.state = State::Lit {
                    word: b"null",
                    at: 1,
                }
            }
            _ => return false,
        }
        true
    }

    fn close(&mut self, b: u8) -> bool {
        let want = match b {
            b'}' => Ctx::Object,
            b']' => Ctx::Array,
            _ => return false,
        };
        if self.stack.last() != Some(&want) {
            return false;
        }
        self.stack.pop();
        self.after_value();
        true
    }

    /// Feed one byte; returns false (and may leave a partial state) if it cannot continue.
    pub fn feed(&mut self, b: u8) -> bool {
        let ws = matches!(b, b' ' | b'\n' | b'\r' | b'\t');
        let in_token = matches!(self.state, State::Str { .. } | State::Lit { .. });
        if ws && !in_token {
            if let State::Num(p) = self.state {
                if !p.can_end() {
                    return false;
                }
                self.after_value();
            }
            if self.state == State::Done || self.state == State::Start {
                return false;
            }
            self.ws_run += 1;
            return self.ws_run <= MAX_WS_RUN;
        }
        self.ws_run = 0;
        match self.state {
            State::Start => {
                if b == b'{' {
                    self.stack.push(Ctx::Object);
                    self.state = State::ObjectFirst;
                    true
                } else {
                    false
                }
            }
            State::Done => false,
            State::Value => self.start_value(b),
            State::ArrayFirst => {
                if b == b']' {
                    self.close(b)
                } else {
                    self.start_value(b)
                }
            }
            State::ObjectFirst | State::Key => {
                if b == b'"' {
                    self.state = State::Str {
                        key: true,
                        escape: false,
                        hex: 0,
                    };
                    true
                } else if b == b'}' && self.state == State::ObjectFirst {
                    self.close(b)
                } else {
                    false
                }
            }
            State::Colon => {
                if b == b':' {
                    self.state = State::Value;
                    true
                } else {
                    false
                }
            }
            State::After => match b {
                b',' => {
                    self.state = match self.stack.last() {
                        Some(Ctx::Object) => State::Key,
                        _ => State::Value,
                    };
                    true
                }
                b'}' | b']' => self.close(b),
                _ => false,
            },
            State::Str { key, escape, hex } => {
                if hex > 0 {
                    if !b.is_ascii_hexdigit() {
                        return false;
                    }
                    self.state = State::Str {
                        key,
                        escape: false,
                        hex: hex - 1,
                    };
                    return true;
                }
                if escape {
                    let hex = match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 0,
                        b'u' => 4,
                        _ => return false,
                    };
                    self.state = State::Str {
                        key,
                        escape: false,
                        hex,
                    };
                    return true;
                }
                match b {
                    b'"' => {
                        if key {
                            self.state = State::Colon;
                        } else {
                            self.after_value();
                        }
                        true
                    }
                    b'\\' => {
                        self.state = State::Str {
                            key,
                            escape: true,
                            hex: 0,
                        };
                        true
                    }
                    0..=0x1f => false,
                    _ => true,
                }
            }
            State::Num(p) => {
                use NumPhase::*;
                let d = self.num_digits;
                let next = match (p, p.next(b)) {
                    // Digits are capped so every number stays a finite f64.
                    (Int, Some(Int)) if d >= schema::MAX_INT_DIGITS => None,
                    (Exp, Some(Exp)) if d >= schema::MAX_EXP_DIGITS => None,
                    (_, next) => next,
                };
                match next {
                    Some(n) => {
                        self.num_digits = match (n == p, b.is_ascii_digit()) {
                            (true, true) => d.saturating_add(1),
                            (false, true) => 1,
                            (_, false) => 0,
                        };
                        self.state = State::Num(n);
                        true
                    }
                    None if p.can_end() => {
                        self.after_value();
                        self.feed(b)
                    }
                    None => false,
                }
            }
            State::Lit { word, at } => {
                if word.get(at as usize) != Some(&b) {
                    return false;
                }
                if at as usize + 1 == word.len() {
                    self.after_value();
                } else {
                    self.state = State::Lit { word, at: at + 1 };
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_prefix(s: &str) -> bool {
        JsonPrefix::new().feed_all(s.as_bytes())
    }

    #[test]
    fn accepts_every_prefix_of_valid_objects() {
        for doc in [
            r#"{}"#,
            r#"{"a": 1, "b": [true, false, null, -0.5e+3, "x\"y\u00e9"], "c": {"d": []}}"#,
            r#"{"name":"Ada","age":36,"langs":["en","fr"]}"#,
            "{\"é\": \"日本\"}",
        ] {
            for i in 0..=doc.len() {
                if doc.is_char_boundary(i) {
                    assert!(valid_prefix(&doc[..i]), "{:?}", &doc[..i]);
                }
            }
            let mut p = JsonPrefix::new();
            assert!(p.feed_all(doc.as_bytes()));
            assert!(p.is_complete(), "{doc}");
            assert!(serde_json::from_str::<serde_json::Value>(doc).is_ok());
        }
    }

    #[test]
    fn rejects_invalid_continuations() {
        for bad in [
            "[",
            "\"a\"",
            "{a",
            "{\"a\" 1",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":01",
            "{\"a\":tru ",
            "{\"a\":\"\\q\"",
            "{\"a\":1]",
            "{}x",
            "{\"a\":-}",
            "{\"a\":1.}",
            "{\"a\":\"\n\"}",
            "{     \"a\":1}",
        ] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_failed_feed_leaves_the_state_unchanged() {
        let mut p = JsonPrefix::new();
        assert!(p.feed_all(b"{\"a\":"));
        assert!(!p.feed_all(b"}"));
        assert!(p.feed_all(b"2}"));
        assert!(p.is_complete());
    }

    #[test]
    fn numbers_stay_finite() {
        let long = format!("{{\"a\":{}", "9".repeat(64));
        assert!(valid_prefix(&long));
        assert!(!valid_prefix(&format!("{long}9")));
        assert!(valid_prefix("{\"a\":-1.5e99"));
        assert!(!valid_prefix("{\"a\":-1.5e999"));
        assert!(valid_prefix(
            "{\"a\":0.000000000000000000000000000000000000000000000000000000000000000001}"
        ));
    }

    #[test]
    fn numbers_end_at_delimiters() {
        assert!(valid_prefix("{\"a\":12,\"b\":3.5e2}"));
        assert!(valid_prefix("{\"a\":[1 ,2]}"));
    }
}
