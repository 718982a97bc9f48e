//! Reads the tool-call envelope while the model is still writing it.
//!
//! With tools on, the model's output is constrained to one JSON object, either
//! `{"tool_calls": [{"name": "f", "arguments": {...}}, ...]}` or `{"content": ...}`. `OpenAI`
//! clients expect something else: streamed `tool_calls` deltas (a call's name, then its arguments
//! as string fragments) or plain content deltas, sent while the tokens arrive rather than after
//! the whole object is done. [`EnvelopeReader`] is the small push-down parser in between: the
//! gateway feeds it the text in whatever pieces the detokenizer yields, and it hands back a
//! [`ToolEvent`] as soon as each one is certain. It checks the envelope's shape and the JSON
//! grammar as it goes, uses an explicit stack instead of recursion, and holds no more memory than
//! the input itself, so hostile or broken output ends in an [`EnvelopeError`], never a panic.

use std::mem;

use crate::NumPhase;

/// Deepest nesting of objects and arrays, the top-level object included (as in JSON mode).
const MAX_DEPTH: usize = 64;
/// Longest `name` value, in bytes once decoded; real names are far shorter.
const MAX_NAME_BYTES: usize = 256;
/// Longest key the envelope's own objects can hold; `tool_calls` is the longest valid one.
const MAX_KEY_BYTES: usize = 16;

/// One step of the reply the gateway streams to the client, in the order the model wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolEvent {
    /// Text of the assistant's answer: for a string `content`, its decoded characters (escapes
    /// resolved); for a non-string `content` value, its raw JSON text as generated.
    Content(String),
    /// Tool call `index` (0-based position in `tool_calls`) has its name; emitted once per call,
    /// as soon as the `name` string closes, and always before any `Arguments` of that call.
    CallStart { index: usize, name: String },
    /// More raw JSON text of call `index`'s `arguments` value, exactly as generated (from the
    /// value's first byte through its last; not the whitespace around it). Concatenating a call's
    /// Arguments texts gives the value's exact source text.
    Arguments { index: usize, text: String },
}

/// Why the output could not be turned into a reply; `at` is a byte offset in the whole output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The text broke the JSON grammar or the envelope's shape at byte `at`.
    #[error("the output is not a tool-call envelope: {reason} at byte {at}")]
    Malformed { at: usize, reason: &'static str },
    /// The text stopped before the envelope's closing brace (usually the token limit).
    #[error("the output ended inside the tool-call envelope (cut off at {at} bytes)")]
    Truncated { at: usize },
}

/// An open object or array; the envelope's own containers are told apart from those inside a
/// value because only theirs have keys and items the reader must check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// The top-level object.
    Top,
    /// The `tool_calls` array.
    Calls,
    /// One call object in `tool_calls`.
    Call,
    /// An object inside `arguments` or `content`.
    Object,
    /// An array inside `arguments` or `content`.
    Array,
}

impl Frame {
    fn is_object(self) -> bool {
        matches!(self, Frame::Top | Frame::Call | Frame::Object)
    }
}

/// The envelope key whose value comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ToolCalls,
    Content,
    Name,
    Arguments,
}

/// What a string is, which decides where its decoded characters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrKind {
    /// A key of the top-level or a call object: decoded and checked.
    EnvKey,
    /// A key inside a value: only checked.
    PlainKey,
    /// A call's `name`: decoded and kept.
    Name,
    /// A string `content`: decoded and emitted.
    Content,
    /// A string inside a value: only checked (its raw text is captured).
    PlainValue,
}

/// Where a string is in an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// Just after `\`.
    Backslash,
    /// After `\u` and `n` hex digits whose value is `val`.
    Hex {
        n: u8,
        val: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{`.
    Start,
    /// Expecting a value (after `:` or after `,` in an array).
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closing bracket.
    After,
    /// Inside a string; `high` is a decoded high surrogate waiting for its low half.
    Str {
        kind: StrKind,
        esc: Esc,
        high: Option<u32>,
    },
    Num(NumPhase),
    /// Inside `true`, `false` or `null`; `next` indexes the letter expected next.
    Lit {
        word: &'static [u8],
        next: usize,
    },
    /// After the top-level `}`: only whitespace may follow.
    Done,
}

/// Whose raw text is being copied out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Content,
    Arguments,
}

/// A value whose source text is being copied out: it began with the stack `depth` deep and, in
/// the current piece, its uncopied text starts at byte `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Capture {
    target: Target,
    depth: usize,
    from: usize,
}

/// Turns the envelope text, fed in arbitrary pieces, into [`ToolEvent`]s as early as each is
/// certain, so the gateway can stream `OpenAI` `tool_calls`/`content` deltas token by token.
#[derive(Debug, Clone)]
pub struct EnvelopeReader {
    state: State,
    stack: Vec<Frame>,
    /// Bytes in the pieces before the current one.
    pos: usize,
    error: Option<EnvelopeError>,
    finished: bool,
    /// The envelope key just read, until its value starts.
    field: Option<Field>,
    has_tool_calls: bool,
    has_content: bool,
    calls: usize,
    /// Whether the open call's name has been emitted.
    call_named: bool,
    /// Whether the open call has had an `arguments` key.
    call_has_args: bool,
    /// Arguments text of the open call, held until its name arrives.
    pending: String,
    /// The envelope key being decoded.
    key: String,
    /// The call name being decoded.
    name: String,
    /// Decoded `content` characters of the current piece.
    text: String,
    capture: Option<Capture>,
}

impl Default for EnvelopeReader {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvelopeReader {
    /// A reader waiting for the first piece of a new output.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: State::Start,
            stack: Vec::new(),
            pos: 0,
            error: None,
            finished: false,
            field: None,
            has_tool_calls: false,
            has_content: false,
            calls: 0,
            call_named: false,
            call_has_args: false,
            pending: String::new(),
            key: String::new(),
            name: String::new(),
            text: String::new(),
            capture: None,
        }
    }

    /// Feeds the next piece; appends events to `out`. After the first malformed byte it records
    /// the error and ignores everything after (as it does once [`finish`](Self::finish) was called).
    /// Text that was certain before the bad byte is still emitted, so the events never depend on
    /// how the output was split.
    pub fn feed(&mut self, piece: &str, out: &mut Vec<ToolEvent>) {
        if self.error.is_some() || self.finished {
            return;
        }
        if let Some(cap) = &mut self.capture {
            cap.from = 0;
        }
        for (i, ch) in piece.char_indices() {
            if let Err(reason) = self.step(piece, i, ch, out) {
                self.flush(piece, i, out);
                self.error = Some(EnvelopeError::Malformed {
                    at: self.pos.saturating_add(i),
                    reason,
                });
                self.pos = self.pos.saturating_add(piece.len());
                return;
            }
        }
        self.flush(piece, piece.len(), out);
        self.pos = self.pos.saturating_add(piece.len());
    }

    /// Ends the text. Emits any events still held and returns whether the envelope was complete
    /// and well-formed. Arguments held for a call whose name never arrived are dropped: without a
    /// name the client could not place them.
    pub fn finish(&mut self, out: &mut Vec<ToolEvent>) -> Result<(), EnvelopeError> {
        self.finished = true;
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        if !self.text.is_empty() {
            out.push(ToolEvent::Content(mem::take(&mut self.text)));
        }
        if matches!(self.state, State::Done) {
            Ok(())
        } else {
            let err = EnvelopeError::Truncated { at: self.pos };
            self.error = Some(err.clone());
            Err(err)
        }
    }

    /// Number of tool calls begun so far, so the caller can tell a tool reply from a content one.
    #[must_use]
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Index of the open call (only meaningful while one is open).
    fn index(&self) -> usize {
        self.calls.saturating_sub(1)
    }

    /// Emits what the current piece holds up to byte `end` of captured or decoded text.
    fn flush(&mut self, piece: &str, end: usize, out: &mut Vec<ToolEvent>) {
        if let Some(cap) = self.capture {
            self.emit_raw(cap.target, piece, cap.from, end, out);
            self.capture = Some(Capture { from: end, ..cap });
        }
        if !self.text.is_empty() {
            out.push(ToolEvent::Content(mem::take(&mut self.text)));
        }
    }

    fn emit_raw(
        &mut self,
        target: Target,
        piece: &str,
        from: usize,
        end: usize,
        out: &mut Vec<ToolEvent>,
    ) {
        let Some(text) = piece.get(from..end) else {
            return;
        };
        if text.is_empty() {
            return;
        }
        match target {
            Target::Content => out.push(ToolEvent::Content(text.to_owned())),
            Target::Arguments if self.call_named => out.push(ToolEvent::Arguments {
                index: self.index(),
                text: text.to_owned(),
            }),
            Target::Arguments => self.pending.push_str(text),
        }
    }

    fn step(
        &mut self,
        piece: &str,
        i: usize,
        ch: char,
        out: &mut Vec<ToolEvent>,
    ) -> Result<(), &'static str> {
        match self.state {
            State::Start => match ch {
                '{' => {
                    self.stack.push(Frame::Top);
                    self.state = State::ObjectFirst;
                    Ok(())
                }
                c if is_ws(c) => Ok(()),
                _ => Err("text before the envelope"),
            },
            State::Value => self.start_value(i, ch),
            State::ArrayFirst => match ch {
                ']' => self.close(ch, piece, i, out),
                '}' => Err("mismatched bracket"),
                _ => self.start_value(i, ch),
            },
            State::ObjectFirst | State::Key => match ch {
                '"' => {
                    self.start_key();
                    Ok(())
                }
                '}' if self.state == State::ObjectFirst => self.close(ch, piece, i, out),
                ']' if self.state == State::ObjectFirst => Err("mismatched bracket"),
                c if is_ws(c) => Ok(()),
                _ => Err("expected a key"),
            },
            State::Colon => match ch {
                ':' => {
                    self.state = State::Value;
                    Ok(())
                }
                c if is_ws(c) => Ok(()),
                _ => Err("expected ':'"),
            },
            State::After => match ch {
                ',' => {
                    let in_object = self.stack.last().is_some_and(|f| f.is_object());
                    self.state = if in_object { State::Key } else { State::Value };
                    Ok(())
                }
                '}' | ']' => self.close(ch, piece, i, out),
                c if is_ws(c) => Ok(()),
                _ => Err("expected ',' or a closing bracket"),
            },
            State::Str { .. } => self.string_char(piece, i, ch, out),
            State::Num(phase) => {
                // A leading zero takes no more digits: an error here, not the end of the number.
                if phase == NumPhase::Zero && ch.is_ascii_digit() {
                    return Err("invalid number");
                }
                let next = u8::try_from(ch).ok().and_then(|b| phase.next(b));
                if next.is_none() && !phase.can_end() {
                    return Err("invalid number");
                }
                match next {
                    Some(phase) => {
                        self.state = State::Num(phase);
                        Ok(())
                    }
                    None => {
                        // The number ended on the byte before; this one belongs to what follows
                        // (the state is now `After`, so this recurses once at most).
                        self.value_done(piece, i, out);
                        self.step(piece, i, ch, out)
                    }
                }
            }
            State::Lit { word, next } => {
                if word.get(next).map(|&b| char::from(b)) != Some(ch) {
                    return Err("invalid literal");
                }
                if next + 1 == word.len() {
                    self.value_done(piece, i + ch.len_utf8(), out);
                } else {
                    self.state = State::Lit {
                        word,
                        next: next + 1,
                    };
                }
                Ok(())
            }
            State::Done => {
                if is_ws(ch) {
                    Ok(())
                } else {
                    Err("text after the envelope")
                }
            }
        }
    }

    fn start_key(&mut self) {
        let kind = match self.stack.last() {
            Some(Frame::Top | Frame::Call) => {
                self.key.clear();
                StrKind::EnvKey
            }
            _ => StrKind::PlainKey,
        };
        self.state = State::Str {
            kind,
            esc: Esc::None,
            high: None,
        };
    }

    /// Checks an envelope key once its string has closed and notes what its value must be.
    fn resolve_key(&mut self) -> Result<(), &'static str> {
        let field = match (self.stack.last(), self.key.as_str()) {
            (Some(Frame::Top), "tool_calls") => Field::ToolCalls,
            (Some(Frame::Top), "content") => Field::Content,
            (Some(Frame::Call), "name") => Field::Name,
            (Some(Frame::Call), "arguments") => Field::Arguments,
            _ => return Err("unexpected key"),
        };
        match field {
            Field::ToolCalls | Field::Content => {
                let (this, other) = if field == Field::ToolCalls {
                    (self.has_tool_calls, self.has_content)
                } else {
                    (self.has_content, self.has_tool_calls)
                };
                if this {
                    return Err("duplicate key");
                }
                if other {
                    return Err("both tool_calls and content");
                }
                if field == Field::ToolCalls {
                    self.has_tool_calls = true;
                } else {
                    self.has_content = true;
                }
            }
            Field::Name if self.call_named => return Err("duplicate key"),
            Field::Arguments if self.call_has_args => return Err("duplicate key"),
            Field::Name => {}
            Field::Arguments => self.call_has_args = true,
        }
        self.field = Some(field);
        Ok(())
    }

    fn push_frame(&mut self, frame: Frame) -> Result<(), &'static str> {
        if self.stack.len() >= MAX_DEPTH {
            return Err("nesting deeper than 64");
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Handles the first byte of a value (or whitespace before it), applying the envelope's
    /// rule for the slot the value fills.
    fn start_value(&mut self, i: usize, ch: char) -> Result<(), &'static str> {
        if is_ws(ch) {
            return Ok(());
        }
        let depth = self.stack.len();
        let capture = |target| Capture {
            target,
            depth,
            from: i,
        };
        match self.stack.last() {
            Some(Frame::Top) => match self.field.take() {
                Some(Field::ToolCalls) => {
                    if ch != '[' {
                        return Err("tool_calls is not an array");
                    }
                    self.push_frame(Frame::Calls)?;
                    self.state = State::ArrayFirst;
                    Ok(())
                }
                Some(Field::Content) if ch == '"' => {
                    self.state = State::Str {
                        kind: StrKind::Content,
                        esc: Esc::None,
                        high: None,
                    };
                    Ok(())
                }
                Some(Field::Content) => {
                    self.capture = Some(capture(Target::Content));
                    self.plain_value(ch)
                }
                _ => Err("expected a key"),
            },
            Some(Frame::Calls) => {
                if ch != '{' {
                    return Err("a tool call is not an object");
                }
                self.push_frame(Frame::Call)?;
                self.calls += 1;
                self.call_named = false;
                self.call_has_args = false;
                self.pending.clear();
                self.state = State::ObjectFirst;
                Ok(())
            }
            Some(Frame::Call) => match self.field.take() {
                Some(Field::Name) => {
                    if ch != '"' {
                        return Err("name is not a string");
                    }
                    self.name.clear();
                    self.state = State::Str {
                        kind: StrKind::Name,
                        esc: Esc::None,
                        high: None,
                    };
                    Ok(())
                }
                Some(Field::Arguments) => {
                    self.capture = Some(capture(Target::Arguments));
                    self.plain_value(ch)
                }
                _ => Err("expected a key"),
            },
            _ => self.plain_value(ch),
        }
    }

    /// Starts any JSON value whose text the reader only checks (and perhaps captures).
    fn plain_value(&mut self, ch: char) -> Result<(), &'static str> {
        self.state = match ch {
            '{' => {
                self.push_frame(Frame::Object)?;
                State::ObjectFirst
            }
            '[' => {
                self.push_frame(Frame::Array)?;
                State::ArrayFirst
            }
            '"' => State::Str {
                kind: StrKind::PlainValue,
                esc: Esc::None,
                high: None,
            },
            '-' => State::Num(NumPhase::Minus),
            '0' => State::Num(NumPhase::Zero),
            '1'..='9' => State::Num(NumPhase::Int),
            't' => State::Lit {
                word: b"true",
                next: 1,
            },
            'f' => State::Lit {
                word: b"false",
                next: 1,
            },
            'n' => State::Lit {
                word: b"null",
                next: 1,
            },
            _ => return Err("expected a value"),
        };
        Ok(())
    }

    /// Closes the innermost container with `ch` (at byte `i`), checking what the envelope needs
    /// of it.
    fn close(
        &mut self,
        ch: char,
        piece: &str,
        i: usize,
        out: &mut Vec<ToolEvent>,
    ) -> Result<(), &'static str> {
        let Some(frame) = self.stack.pop() else {
            return Err("mismatched bracket");
        };
        if frame.is_object() != (ch == '}') {
            return Err("mismatched bracket");
        }
        match frame {
            Frame::Top => {
                if !self.has_tool_calls && !self.has_content {
                    return Err("neither tool_calls nor content");
                }
                self.state = State::Done;
                return Ok(());
            }
            Frame::Call => {
                if !self.call_named {
                    return Err("tool call without a name");
                }
                self.call_named = false;
                self.call_has_args = false;
                self.pending.clear();
            }
            Frame::Calls | Frame::Object | Frame::Array => {}
        }
        self.value_done(piece, i + ch.len_utf8(), out);
        Ok(())
    }

    /// A value inside a container has ended just before byte `end` of the piece.
    fn value_done(&mut self, piece: &str, end: usize, out: &mut Vec<ToolEvent>) {
        if let Some(cap) = self.capture
            && cap.depth == self.stack.len()
        {
            self.emit_raw(cap.target, piece, cap.from, end, out);
            self.capture = None;
        }
        self.state = State::After;
    }

    fn string_char(
        &mut self,
        piece: &str,
        i: usize,
        ch: char,
        out: &mut Vec<ToolEvent>,
    ) -> Result<(), &'static str> {
        let State::Str {
            kind,
            mut esc,
            mut high,
        } = self.state
        else {
            return Err("expected a value");
        };
        match esc {
            Esc::None => match ch {
                '"' => {
                    if high.is_some() {
                        self.push_char(kind, char::REPLACEMENT_CHARACTER)?;
                    }
                    return self.end_string(kind, piece, i, out);
                }
                '\\' => esc = Esc::Backslash,
                c if u32::from(c) < 0x20 => return Err("control character in string"),
                c => {
                    if high.take().is_some() {
                        self.push_char(kind, char::REPLACEMENT_CHARACTER)?;
                    }
                    self.push_char(kind, c)?;
                }
            },
            Esc::Backslash => {
                let decoded = match ch {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => {
                        self.state = State::Str {
                            kind,
                            esc: Esc::Hex { n: 0, val: 0 },
                            high,
                        };
                        return Ok(());
                    }
                    _ => return Err("invalid escape"),
                };
                if high.take().is_some() {
                    self.push_char(kind, char::REPLACEMENT_CHARACTER)?;
                }
                self.push_char(kind, decoded)?;
                esc = Esc::None;
            }
            Esc::Hex { n, val } => {
                let digit = ch.to_digit(16).ok_or("invalid escape")?;
                let val = (val << 4) | digit;
                if n < 3 {
                    esc = Esc::Hex { n: n + 1, val };
                } else {
                    esc = Esc::None;
                    match val {
                        0xD800..=0xDBFF => {
                            // A high surrogate waits for its low half; one already waiting is lone.
                            if high.replace(val).is_some() {
                                self.push_char(kind, char::REPLACEMENT_CHARACTER)?;
                            }
                        }
                        0xDC00..=0xDFFF => {
                            let c = match high.take() {
                                Some(h) => {
                                    char::from_u32(0x10000 + ((h - 0xD800) << 10) + (val - 0xDC00))
                                }
                                None => None,
                            };
                            self.push_char(kind, c.unwrap_or(char::REPLACEMENT_CHARACTER))?;
                        }
                        _ => {
                            if high.take().is_some() {
                                self.push_char(kind, char::REPLACEMENT_CHARACTER)?;
                            }
                            let c = char::from_u32(val).unwrap_or(char::REPLACEMENT_CHARACTER);
                            self.push_char(kind, c)?;
                        }
                    }
                }
            }
        }
        self.state = State::Str { kind, esc, high };
        Ok(())
    }

    /// Sends one decoded character where its string's kind wants it.
    fn push_char(&mut self, kind: StrKind, c: char) -> Result<(), &'static str> {
        match kind {
            StrKind::EnvKey => {
                if self.key.len() + c.len_utf8() > MAX_KEY_BYTES {
                    return Err("unexpected key");
                }
                self.key.push(c);
            }
            StrKind::Name => {
                if self.name.len() + c.len_utf8() > MAX_NAME_BYTES {
                    return Err("name longer than 256 bytes");
                }
                self.name.push(c);
            }
            StrKind::Content => self.text.push(c),
            StrKind::PlainKey | StrKind::PlainValue => {}
        }
        Ok(())
    }

    /// A string has closed with the quote at byte `i`.
    fn end_string(
        &mut self,
        kind: StrKind,
        piece: &str,
        i: usize,
        out: &mut Vec<ToolEvent>,
    ) -> Result<(), &'static str> {
        match kind {
            StrKind::EnvKey => {
                self.resolve_key()?;
                self.state = State::Colon;
            }
            StrKind::PlainKey => self.state = State::Colon,
            StrKind::Name => {
                let index = self.index();
                out.push(ToolEvent::CallStart {
                    index,
                    name: mem::take(&mut self.name),
                });
                self.call_named = true;
                if !self.pending.is_empty() {
                    out.push(ToolEvent::Arguments {
                        index,
                        text: mem::take(&mut self.pending),
                    });
                }
                self.value_done(piece, i + 1, out);
            }
            StrKind::Content => {
                if !self.text.is_empty() {
                    out.push(ToolEvent::Content(mem::take(&mut self.text)));
                }
                self.value_done(piece, i + 1, out);
            }
            StrKind::PlainValue => self.value_done(piece, i + 1, out),
        }
        Ok(())
    }
}

/// JSON's four whitespace characters.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A small deterministic generator, so failures reproduce without a proptest dependency.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Splits `text` into random pieces of 1 to 8 bytes, moved forward to char boundaries.
    fn random_split<'a>(text: &'a str, rng: &mut Lcg) -> Vec<&'a str> {
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let mut end = (start + 1 + rng.below(8)).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            pieces.push(&text[start..end]);
            start = end;
        }
        pieces
    }

    fn by_char(text: &str) -> Vec<&str> {
        text.char_indices()
            .map(|(i, c)| &text[i..i + c.len_utf8()])
            .collect()
    }

    fn run(pieces: &[&str]) -> (Vec<ToolEvent>, Result<(), EnvelopeError>) {
        let mut reader = EnvelopeReader::new();
        let mut out = Vec::new();
        for piece in pieces {
            reader.feed(piece, &mut out);
        }
        let result = reader.finish(&mut out);
        for event in &out {
            match event {
                ToolEvent::Content(t) | ToolEvent::Arguments { text: t, .. } => {
                    assert!(!t.is_empty(), "empty event in {out:?}")
                }
                ToolEvent::CallStart { .. } => {}
            }
        }
        (out, result)
    }

    /// Joins adjacent text events of the same kind (and call), which splitting may divide.
    fn merged(events: &[ToolEvent]) -> Vec<ToolEvent> {
        let mut merged: Vec<ToolEvent> = Vec::new();
        for event in events {
            match (merged.last_mut(), event) {
                (Some(ToolEvent::Content(a)), ToolEvent::Content(b)) => a.push_str(b),
                (
                    Some(ToolEvent::Arguments { index: i, text: a }),
                    ToolEvent::Arguments { index: j, text: b },
                ) if i == j => a.push_str(b),
                _ => merged.push(event.clone()),
            }
        }
        merged
    }

    /// Per call (name, arguments text), plus the content text if any; checks the order rules.
    fn summary(events: &[ToolEvent]) -> (Vec<(String, String)>, Option<String>) {
        let mut calls: Vec<(String, String)> = Vec::new();
        let mut content: Option<String> = None;
        for event in events {
            match event {
                ToolEvent::Content(t) => content.get_or_insert_with(String::new).push_str(t),
                ToolEvent::CallStart { index, name } => {
                    assert_eq!(*index, calls.len(), "calls start in order");
                    calls.push((name.clone(), String::new()));
                }
                ToolEvent::Arguments { index, text } => {
                    assert!(
                        *index + 1 == calls.len(),
                        "arguments of the latest started call"
                    );
                    calls[*index].1.push_str(text);
                }
            }
        }
        (calls, content)
    }

    fn malformed_reason(result: &Result<(), EnvelopeError>) -> Option<&'static str> {
        match result {
            Err(EnvelopeError::Malformed { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    const TWO_CALLS: &str = concat!(
        " { \"tool_calls\" : [\n",
        "  {\"name\": \"get_weather\", \"arguments\" :  ",
        r#"{"city": "Paris \"FR\" \u00e9 ü", "days": [1, 2.5e3, -0, 1E-2], "ok": true, "none": null, "nested": {"x": [[], {}], "y": false}}"#,
        "  },\n",
        "  {\"arguments\": -12.5e+3 , \"na\\u006de\": \"caf\\u00e9 😀\"}\n",
        "] }\n"
    );
    const ARGS_0: &str = r#"{"city": "Paris \"FR\" \u00e9 ü", "days": [1, 2.5e3, -0, 1E-2], "ok": true, "none": null, "nested": {"x": [[], {}], "y": false}}"#;

    #[test]
    fn two_calls_any_split() {
        let expected = vec![
            ("get_weather".to_string(), ARGS_0.to_string()),
            ("café 😀".to_string(), "-12.5e+3".to_string()),
        ];
        let (whole, result) = run(&[TWO_CALLS]);
        assert_eq!(result, Ok(()));
        assert_eq!(summary(&whole), (expected.clone(), None));
        let reference = merged(&whole);

        let (chars, result) = run(&by_char(TWO_CALLS));
        assert_eq!(result, Ok(()));
        assert_eq!(summary(&chars), (expected.clone(), None));
        assert_eq!(merged(&chars), reference);

        let mut rng = Lcg(7);
        for _ in 0..200 {
            let pieces = random_split(TWO_CALLS, &mut rng);
            let (events, result) = run(&pieces);
            assert_eq!(result, Ok(()), "{pieces:?}");
            assert_eq!(summary(&events), (expected.clone(), None), "{pieces:?}");
            assert_eq!(merged(&events), reference, "{pieces:?}");
        }

        let mut reader = EnvelopeReader::new();
        reader.feed(TWO_CALLS, &mut Vec::new());
        assert_eq!(reader.calls(), 2);
    }

    #[test]
    fn arguments_before_name_wait_for_it() {
        let text = r#"{"tool_calls": [{"arguments": {"a": [1, "x"]}, "name": "f"}]}"#;
        let name_at = text.find(r#""f""#).unwrap();
        let mut reader = EnvelopeReader::new();
        let mut out = Vec::new();
        for piece in by_char(&text[..name_at + 2]) {
            reader.feed(piece, &mut out);
        }
        assert!(out.is_empty(), "nothing before the name closes: {out:?}");
        reader.feed(&text[name_at + 2..], &mut out);
        assert_eq!(reader.finish(&mut out), Ok(()));
        assert_eq!(
            out,
            vec![
                ToolEvent::CallStart {
                    index: 0,
                    name: "f".into()
                },
                ToolEvent::Arguments {
                    index: 0,
                    text: r#"{"a": [1, "x"]}"#.into()
                },
            ]
        );
    }

    #[test]
    fn content_escapes_split_anywhere() {
        let text = r#"{"content": "caf\u00e9 \ud83d\ude00 \"q\"\n"}"#;
        let want = "café 😀 \"q\"\n";
        for cut in 0..=text.len() {
            let (events, result) = run(&[&text[..cut], &text[cut..]]);
            assert_eq!(result, Ok(()), "cut at {cut}");
            assert_eq!(
                summary(&events),
                (vec![], Some(want.to_string())),
                "cut at {cut}"
            );
        }
        let pieces = by_char(text);
        let (events, result) = run(&pieces);
        assert_eq!(result, Ok(()));
        assert_eq!(summary(&events).1.as_deref(), Some(want));
        // One event per piece that adds characters, never one for a piece inside an escape.
        assert_eq!(events.len(), "café 😀 \"q\"\n".chars().count());

        let lone = [
            (r#"{"content": "\ud83d x"}"#, "\u{FFFD} x"),
            (r#"{"content": "\ude00"}"#, "\u{FFFD}"),
            (r#"{"content": "\ud83d\u0041"}"#, "\u{FFFD}A"),
            (r#"{"content": "\ud83d\n"}"#, "\u{FFFD}\n"),
            (r#"{"content": "\ud83d"}"#, "\u{FFFD}"),
            (r#"{"content": "\ud83d\ud83d\ude00"}"#, "\u{FFFD}😀"),
            (r#"{"content": "\/\b\f\r\t\\"}"#, "/\u{8}\u{c}\r\t\\"),
        ];
        for (text, want) in lone {
            let (events, result) = run(&by_char(text));
            assert_eq!(result, Ok(()), "{text}");
            assert_eq!(summary(&events).1.as_deref(), Some(want), "{text}");
        }
        let (events, result) = run(&[r#"{"content": ""}"#]);
        assert_eq!((events, result), (vec![], Ok(())));
    }

    #[test]
    fn non_string_content_is_raw() {
        for (text, want) in [
            (r#"{"content": {"a": [1, 2]}}"#, r#"{"a": [1, 2]}"#),
            ("{\"content\":\n 42 \n}", "42"),
            (r#"{"content":null}"#, "null"),
            (
                r#"{"content": [true, -0.5e-7, "x\"]"]}"#,
                r#"[true, -0.5e-7, "x\"]"]"#,
            ),
        ] {
            for pieces in [vec![text], by_char(text)] {
                let (events, result) = run(&pieces);
                assert_eq!(result, Ok(()), "{text}");
                assert_eq!(summary(&events), (vec![], Some(want.to_string())), "{text}");
            }
        }
    }

    #[test]
    fn malformed_envelopes() {
        let deep_ok = format!(r#"{{"content": {}{}}}"#, "[".repeat(63), "]".repeat(63));
        let deep_bad = format!(r#"{{"content": {}{}}}"#, "[".repeat(64), "]".repeat(64));
        let name_ok = format!(r#"{{"tool_calls": [{{"name": "{}"}}]}}"#, "a".repeat(256));
        let name_bad = format!(r#"{{"tool_calls": [{{"name": "{}"}}]}}"#, "a".repeat(257));
        for ok in [&deep_ok, &name_ok] {
            assert_eq!(run(&by_char(ok)).1, Ok(()));
        }
        let cases: Vec<(&str, &'static str)> = vec![
            (r#"{"tool_calls": [], "extra": 1}"#, "unexpected key"),
            (
                r#"{"tool_calls": [{"name": "f", "args": {}}]}"#,
                "unexpected key",
            ),
            (
                r#"{"content": "a", "tool_calls": []}"#,
                "both tool_calls and content",
            ),
            (
                r#"{"tool_calls": [], "content": "a"}"#,
                "both tool_calls and content",
            ),
            (r#"{"content": "a", "content": "b"}"#, "duplicate key"),
            (
                r#"{"tool_calls": [{"name": "f", "name": "g"}]}"#,
                "duplicate key",
            ),
            (
                r#"{"tool_calls": {"name": "f"}}"#,
                "tool_calls is not an array",
            ),
            (r#"{"tool_calls": [1]}"#, "a tool call is not an object"),
            (
                r#"{"tool_calls": [{"arguments": {}}]}"#,
                "tool call without a name",
            ),
            (r#"{"tool_calls": [{"name": 1}]}"#, "name is not a string"),
            ("{}", "neither tool_calls nor content"),
            (r#"{"content": "a"} x"#, "text after the envelope"),
            (r#"{"content": "a"}{}"#, "text after the envelope"),
            (r#"x {"content": "a"}"#, "text before the envelope"),
            (r#"[{"content": "a"}]"#, "text before the envelope"),
            (&deep_bad, "nesting deeper than 64"),
            (r#"{"content": [1, 2}}"#, "mismatched bracket"),
            (r#"{"content": {"a": 1]}"#, "mismatched bracket"),
            (&name_bad, "name longer than 256 bytes"),
            (r#"{"content" "a"}"#, "expected ':'"),
            (r#"{"content": nope}"#, "invalid literal"),
            (r#"{"content": bare}"#, "expected a value"),
            (r#"{"content": [1,]}"#, "expected a value"),
            (r#"{"content": [1 2]}"#, "expected ',' or a closing bracket"),
            (r#"{"content": 01}"#, "invalid number"),
            (r#"{"content": 1.e3}"#, "invalid number"),
            (r#"{"content": "\q"}"#, "invalid escape"),
            (r#"{"content": "\u00g0"}"#, "invalid escape"),
            ("{\"content\": \"a\u{1}\"}", "control character in string"),
            (r#"{"content": {"a" 1}}"#, "expected ':'"),
            (r#"{"content": {1: 2}}"#, "expected a key"),
            (r#"{"content": {"a": 1,}}"#, "expected a key"),
            (r#"{"content": "a",}"#, "expected a key"),
        ];
        for (text, reason) in cases {
            let (whole_events, whole) = run(&[text]);
            assert_eq!(malformed_reason(&whole), Some(reason), "{text}");
            let (char_events, chars) = run(&by_char(text));
            assert_eq!(chars, whole, "{text}");
            assert_eq!(merged(&char_events), merged(&whole_events), "{text}");
        }

        let text = r#"{"content": "a"}  x"#;
        assert_eq!(
            run(&[text]).1,
            Err(EnvelopeError::Malformed {
                at: text.len() - 1,
                reason: "text after the envelope"
            })
        );
        let at = deep_bad.find('[').unwrap() + 63;
        assert_eq!(
            run(&[&deep_bad]).1,
            Err(EnvelopeError::Malformed {
                at,
                reason: "nesting deeper than 64"
            })
        );
        // Nothing after the first bad byte counts, even a repair.
        let mut reader = EnvelopeReader::new();
        let mut out = Vec::new();
        reader.feed(r#"{"content": x"#, &mut out);
        reader.feed(r#""a"}"#, &mut out);
        assert_eq!(
            reader.finish(&mut out),
            Err(EnvelopeError::Malformed {
                at: 12,
                reason: "expected a value"
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn truncated_keeps_what_was_complete() {
        let text = r#"{"tool_calls": [{"name": "f", "arguments": {"a": [1, 2"#;
        let (events, result) = run(&by_char(text));
        assert_eq!(result, Err(EnvelopeError::Truncated { at: text.len() }));
        assert_eq!(
            merged(&events),
            vec![
                ToolEvent::CallStart {
                    index: 0,
                    name: "f".into()
                },
                ToolEvent::Arguments {
                    index: 0,
                    text: r#"{"a": [1, 2"#.into()
                },
            ]
        );

        // The second call never got its name: its arguments are dropped.
        let text = r#"{"tool_calls": [{"name": "f", "arguments": {}}, {"arguments": {"b": 1}"#;
        let mut reader = EnvelopeReader::new();
        let mut out = Vec::new();
        reader.feed(text, &mut out);
        assert_eq!(reader.calls(), 2);
        assert_eq!(
            reader.finish(&mut out),
            Err(EnvelopeError::Truncated { at: text.len() })
        );
        assert_eq!(summary(&out).0, vec![("f".to_string(), "{}".to_string())]);

        let text = r#"{"content": "caf\u00"#;
        let (events, result) = run(&by_char(text));
        assert_eq!(result, Err(EnvelopeError::Truncated { at: text.len() }));
        assert_eq!(summary(&events).1.as_deref(), Some("caf"));

        assert_eq!(run(&[]).1, Err(EnvelopeError::Truncated { at: 0 }));
        assert_eq!(run(&["  "]).1, Err(EnvelopeError::Truncated { at: 2 }));
    }

    /// Whether serde_json's view of `v` is a valid envelope by the reader's shape rules.
    fn envelope_shape_ok(v: &Value) -> bool {
        let Some(top) = v.as_object() else {
            return false;
        };
        if top.len() != 1 {
            return false;
        }
        match top.get("tool_calls") {
            Some(calls) => calls.as_array().is_some_and(|calls| {
                calls.iter().all(|call| {
                    call.as_object().is_some_and(|call| {
                        call.keys().all(|k| k == "name" || k == "arguments")
                            && call
                                .get("name")
                                .and_then(Value::as_str)
                                .is_some_and(|n| n.len() <= MAX_NAME_BYTES)
                    })
                })
            }),
            None => top.contains_key("content"),
        }
    }

    /// Feeds `text` whole and split; both must agree, and an Ok must be a real envelope.
    fn check_fuzz_case(text: &str, rng: &mut Lcg) -> (bool, bool) {
        let (whole_events, whole) = run(&[text]);
        let pieces = random_split(text, rng);
        let (split_events, split) = run(&pieces);
        assert_eq!(split, whole, "{text:?} split as {pieces:?}");
        assert_eq!(merged(&split_events), merged(&whole_events), "{text:?}");
        let parsed = serde_json::from_str::<Value>(text);
        let expected = parsed.as_ref().is_ok_and(envelope_shape_ok);
        if whole.is_ok() && !expected {
            // The reader checks the number grammar, not whether an f64 can hold the value.
            let out_of_range = parsed
                .as_ref()
                .is_err_and(|e| e.to_string().contains("number out of range"));
            assert!(out_of_range, "reader accepted {text:?}: {parsed:?}");
        }
        (whole.is_ok(), expected)
    }

    #[test]
    fn fuzz_never_panics_and_ok_means_envelope() {
        const ALPHABET: &[char] = &[
            '{', '}', '[', ']', '"', ':', ',', '\\', ' ', 'n', 't', 'r', 'u', 'e', '0', '1', '2',
            '3', '4', '5', '6', '7', '8', '9', 'a',
        ];
        let mut rng = Lcg(0x5eed);
        for _ in 0..2000 {
            let len = rng.below(48);
            let mut text: String = (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect();
            if rng.below(2) == 0 {
                text.insert(0, '{');
            }
            check_fuzz_case(&text, &mut rng);
        }

        // Near misses of real envelopes reach deeper states; here Ok must match serde_json
        // exactly, apart from duplicate keys, which serde_json's Value silently merges.
        const SEEDS: &[&str] = &[
            r#"{"tool_calls": [{"name": "f", "arguments": {"a": [1, true, null], "b": "x\"y"}}]}"#,
            r#"{"tool_calls": []}"#,
            r#"{"content": "hi \n there"}"#,
            r#"{"content": {"a": [1, 2.5]}}"#,
            r#"{"tool_calls": [{"arguments": 12, "name": "g"}, {"name": "h"}]}"#,
            r#" {"content": false} "#,
        ];
        const EXTRA: &[char] = &['-', '.', 'E', '+', '/', 'f', 'l', 's', '\n'];
        let (mut accepted, mut rejected) = (0, 0);
        for _ in 0..2000 {
            let mut chars: Vec<char> = SEEDS[rng.below(SEEDS.len())].chars().collect();
            for _ in 0..=rng.below(2) {
                let at = rng.below(chars.len());
                let c = if rng.below(3) == 0 {
                    EXTRA[rng.below(EXTRA.len())]
                } else {
                    ALPHABET[rng.below(ALPHABET.len())]
                };
                match rng.below(3) {
                    0 => {
                        chars.remove(at);
                    }
                    1 => chars.insert(at, c),
                    _ => chars[at] = c,
                }
            }
            let text: String = chars.into_iter().collect();
            let (ok, expected) = check_fuzz_case(&text, &mut rng);
            if expected && !ok {
                let reason = malformed_reason(&run(&[&text]).1);
                assert_eq!(reason, Some("duplicate key"), "reader refused {text:?}");
            }
            if ok {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        assert!(accepted > 50 && rejected > 50, "{accepted} / {rejected}");
    }
}
