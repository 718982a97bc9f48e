//! The byte-level automaton over a compiled [`Schema`]: a set of push-down configurations, each
//! a stack of frames carrying the schema node they must satisfy.

use super::{
    ANY, MAX_CONFIGS, MAX_DEPTH, MAX_EXP_DIGITS, MAX_INT_DIGITS, MAX_WS_RUN, Node, NodeId, Schema,
    T_ARRAY, T_BOOLEAN, T_INTEGER, T_NULL, T_NUMBER, T_OBJECT, T_STRING, ValueNode, resolve,
};
use crate::NumPhase;

impl Schema {
    /// A validator for prefixes of documents this schema accepts.
    pub fn prefix(&self) -> SchemaPrefix {
        SchemaPrefix {
            schema: self.clone(),
            cfgs: vec![Cfg {
                stack: Vec::new(),
                state: St::Value(self.inner.root),
                ws_run: 0,
            }],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// `seen`: bit i = property i (sorted order) already present.
    Object {
        node: NodeId,
        seen: u128,
    },
    Array {
        node: NodeId,
        count: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Expecting a value of this node.
    Value(NodeId),
    /// Just after `{`.
    ObjectFirst,
    /// After `,` in an object.
    Key,
    /// Inside a key. `lo..hi`: the properties whose (escaped) names start with the `at` bytes so
    /// far; `free`: any other key is allowed too (additionalProperties).
    KeyStr {
        lo: u16,
        hi: u16,
        at: u32,
        free: bool,
        escape: bool,
        hex: u8,
    },
    /// After a key: `:`, then a value of this node.
    Colon(NodeId),
    /// Just after `[`.
    ArrayFirst,
    /// After a value inside an object or array.
    After,
    /// Inside a string value of `node` (a `ValueNode`, for its length limits). `len`: code
    /// points so far (UTF-8 lead bytes and whole escapes; a `\uXXXX` high surrogate counts 0,
    /// so a surrogate pair counts 1); `high`: the `\u` escape being read is so far a high
    /// surrogate (`D8`..`DB`); `cont`: continuation bytes the last UTF-8 lead byte still expects
    /// (so the end of a character that reached `maxLength` may follow, but no stray byte).
    Str {
        node: NodeId,
        len: u32,
        escape: bool,
        hex: u8,
        high: bool,
        cont: u8,
    },
    /// `digits`: digits so far in the integer part or the exponent (capped, so every number
    /// stays a finite f64 for the client's parser).
    Num {
        phase: NumPhase,
        integer: bool,
        digits: u8,
    },
    Lit {
        word: &'static [u8],
        at: u8,
    },
    /// Inside an enum/const value: literals `lo..hi` of `node` match the `at` bytes so far.
    Enum {
        node: NodeId,
        lo: u16,
        hi: u16,
        at: u32,
    },
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cfg {
    stack: Vec<Frame>,
    state: St,
    ws_run: u8,
}

fn value_node(nodes: &[Node], id: NodeId) -> Option<&ValueNode> {
    match &nodes[id as usize] {
        Node::Value(v) => Some(v),
        _ => None,
    }
}

/// The sub-range of sorted `items` in `lo..hi` whose byte `at` is `b` (all share `at` bytes).
fn narrow<T>(
    items: &[T],
    bytes: impl Fn(&T) -> &[u8],
    lo: u16,
    hi: u16,
    at: u32,
    b: u8,
) -> (u16, u16) {
    let r = &items[lo as usize..hi as usize];
    let at = at as usize;
    let start = r.partition_point(|x| bytes(x).get(at).is_none_or(|&c| c < b));
    let end = r.partition_point(|x| bytes(x).get(at).is_none_or(|&c| c <= b));
    (lo + start as u16, lo + end as u16)
}

impl Cfg {
    fn after_value(&mut self) {
        self.state = if self.stack.is_empty() {
            St::Done
        } else {
            St::After
        };
    }

    fn object_node<'a>(&self, nodes: &'a [Node]) -> Option<(&'a ValueNode, u128)> {
        match self.stack.last()? {
            Frame::Object { node, seen } => Some((value_node(nodes, *node)?, *seen)),
            Frame::Array { .. } => None,
        }
    }

    fn unseen_in(v: &ValueNode, seen: u128, lo: u16, hi: u16) -> bool {
        (lo..hi).any(|i| seen & (1u128 << i) == 0 && i < v.props.len() as u16)
    }

    /// Begin a value of `node` with byte `b` (not whitespace).
    fn start(mut self, nodes: &[Node], node: NodeId, b: u8, out: &mut Vec<Cfg>) {
        let id = resolve(nodes, node);
        let v = match &nodes[id as usize] {
            Node::AnyOf(branches) => {
                for &br in branches {
                    self.clone().start(nodes, br, b, out);
                }
                return;
            }
            Node::Value(v) => v,
            Node::Pending | Node::Ref(_) => return,
        };
        if let Some(lits) = &v.literals {
            let (lo, hi) = narrow(lits, |l| l.as_slice(), 0, lits.len() as u16, 0, b);
            if lo < hi {
                self.state = St::Enum {
                    node: id,
                    lo,
                    hi,
                    at: 1,
                };
                out.push(self);
            }
            return;
        }
        let t = v.types;
        match b {
            b'{' if t & T_OBJECT != 0 && self.stack.len() < MAX_DEPTH => {
                self.stack.push(Frame::Object { node: id, seen: 0 });
                self.state = St::ObjectFirst;
            }
            b'[' if t & T_ARRAY != 0 && self.stack.len() < MAX_DEPTH => {
                self.stack.push(Frame::Array { node: id, count: 0 });
                self.state = St::ArrayFirst;
            }
            b'"' if t & T_STRING != 0 => {
                self.state = St::Str {
                    node: id,
                    len: 0,
                    escape: false,
                    hex: 0,
                    high: false,
                    cont: 0,
                }
            }
            b'-' | b'0'..=b'9' if t & (T_NUMBER | T_INTEGER) != 0 => {
                let phase = match b {
                    b'-' => NumPhase::Minus,
                    b'0' => NumPhase::Zero,
                    _ => NumPhase::Int,
                };
                self.state = St::Num {
                    phase,
                    integer: t & T_NUMBER == 0,
                    digits: u8::from(b != b'-'),
                };
            }
            b't' if t & T_BOOLEAN != 0 => {
                self.state = St::Lit {
                    word: b"true",
                    at: 1,
                }
            }
            b'f' if t & T_BOOLEAN != 0 => {
                self.state = St::Lit {
                    word: b"false",
                    at: 1,
                }
            }
            b'n' if t & T_NULL != 0 => {
                self.state = St::Lit {
                    word: b"null",
                    at: 1,
                }
            }
            _ => return,
        }
        out.push(self);
    }

    /// Start a key (after `"`) in the object on top of the stack.
    fn start_key(&mut self, nodes: &[Node]) -> bool {
        let Some((v, seen)) = self.object_node(nodes) else {
            return false;
        };
        let hi = v.props.len() as u16;
        let free = v.additional.is_some();
        if !free && !Self::unseen_in(v, seen, 0, hi) {
            return false;
        }
        self.state = St::KeyStr {
            lo: 0,
            hi,
            at: 0,
            free,
            escape: false,
            hex: 0,
        };
        true
    }

    fn can_close_object(&self, nodes: &[Node]) -> bool {
        let Some((v, seen)) = self.object_node(nodes) else {
            return false;
        };
        v.props
            .iter()
            .enumerate()
            .all(|(i, p)| !p.required || seen & (1u128 << i) != 0)
    }

    fn close(&mut self, nodes: &[Node], b: u8) -> bool {
        let ok = match (self.stack.last(), b) {
            (Some(Frame::Object { .. }), b'}') => self.can_close_object(nodes),
            (Some(Frame::Array { node, count }), b']') => {
                value_node(nodes, *node).is_some_and(|v| *count >= v.min_items)
            }
            _ => false,
        };
        if ok {
            self.stack.pop();
            self.after_value();
        }
        ok
    }

    /// Feed byte `b`; push every configuration it can lead to onto `out`.
    fn step(mut self, nodes: &[Node], b: u8, out: &mut Vec<Cfg>) {
        let ws = matches!(b, b' ' | b'\n' | b'\r' | b'\t');
        match self.state {
            St::Str { .. }
            | St::KeyStr { .. }
            | St::Lit { .. }
            | St::Num { .. }
            | St::Enum { .. } => {}
            St::Done => return,
            St::Value(_) if ws && self.stack.is_empty() => return,
            _ if ws => {
                self.ws_run += 1;
                if self.ws_run <= MAX_WS_RUN {
                    out.push(self);
                }
                return;
            }
            _ => {}
        }
        if !ws {
            self.ws_run = 0;
        }
        match self.state {
            St::Done => {}
            St::Value(node) => self.start(nodes, node, b, out),
            St::ObjectFirst | St::Key => {
                let ok = match b {
                    b'"' => self.start_key(nodes),
                    b'}' if self.state == St::ObjectFirst => self.close(nodes, b),
                    _ => false,
                };
                if ok {
                    out.push(self);
                }
            }
            St::Colon(node) => {
                if b == b':' {
                    self.state = St::Value(node);
                    out.push(self);
                }
            }
            St::ArrayFirst => {
                if b == b']' {
                    if self.close(nodes, b) {
                        out.push(self);
                    }
                } else if let Some(item) = self.next_item(nodes) {
                    self.start(nodes, item, b, out);
                }
            }
            St::After => match (b, self.stack.last().copied()) {
                (b',', Some(Frame::Object { .. })) => {
                    let Some((v, seen)) = self.object_node(nodes) else {
                        return;
                    };
                    if v.additional.is_some() || Self::unseen_in(v, seen, 0, v.props.len() as u16) {
                        self.state = St::Key;
                        out.push(self);
                    }
                }
                (b',', Some(Frame::Array { .. })) => {
                    if let Some(item) = self.next_item(nodes) {
                        self.state = St::Value(item);
                        out.push(self);
                    }
                }
                (b'}' | b']', _) if self.close(nodes, b) => out.push(self),
                _ => {}
            },
            St::Str {
                node,
                len,
                escape,
                hex,
                high,
                cont,
            } => {
                let Some(v) = value_node(nodes, node) else {
                    return;
                };
                match string_byte(escape, hex, b) {
                    None => return,
                    // The closing quote, once `minLength` is reached.
                    Some(None) if len >= v.min_length => self.after_value(),
                    Some(None) => return,
                    Some(Some((next_escape, next_hex))) => {
                        let mut next_cont = 0;
                        let (len, high) = if hex > 0 {
                            // A `\u` escape counts when its last digit arrives, unless it is a
                            // high surrogate (the low one that follows counts for the pair).
                            match hex {
                                4 => (len, matches!(b, b'd' | b'D')),
                                3 => (
                                    len,
                                    high && matches!(b, b'8'..=b'9' | b'a'..=b'b' | b'A'..=b'B'),
                                ),
                                2 => (len, high),
                                _ => (len.saturating_add(u32::from(!high)), false),
                            }
                        } else if escape {
                            (len.saturating_add(u32::from(b != b'u')), false)
                        } else {
                            // A new character (a UTF-8 lead byte or a backslash) only below
                            // `maxLength`, and at it only the rest of the last character; a
                            // backslash counts when its escape is complete.
                            let lead = b & 0xC0 != 0x80;
                            if len >= v.max_length && (lead || cont == 0) {
                                return;
                            }
                            next_cont = match b {
                                0xC0..=0xDF => 1,
                                0xE0..=0xEF => 2,
                                0xF0..=0xFF => 3,
                                0x80..=0xBF => cont.saturating_sub(1),
                                _ => 0,
                            };
                            (len.saturating_add(u32::from(lead && b != b'\\')), false)
                        };
                        self.state = St::Str {
                            node,
                            len,
                            escape: next_escape,
                            hex: next_hex,
                            high,
                            cont: next_cont,
                        };
                    }
                }
                out.push(self);
            }
            St::KeyStr {
                lo,
                hi,
                at,
                free,
                escape,
                hex,
            } => {
                let Some((v, seen)) = self.object_node(nodes) else {
                    return;
                };
                let Some(next) = string_byte(escape, hex, b) else {
                    return;
                };
                match next {
                    None => {
                        // The key is complete: a known property (not yet present) or another key.
                        let exact = (lo < hi && v.props[lo as usize].name.len() == at as usize)
                            .then_some(lo as usize);
                        let value = match exact {
                            Some(i) if seen & (1u128 << i) != 0 => return,
                            Some(i) => {
                                if let Some(Frame::Object { seen, .. }) = self.stack.last_mut() {
                                    *seen |= 1u128 << i;
                                }
                                v.props[i].node
                            }
                            None if free => v.additional.unwrap_or(ANY),
                            None => return,
                        };
                        self.state = St::Colon(value);
                    }
                    Some((escape, hex)) => {
                        let (lo, hi) = narrow(&v.props, |p| p.name.as_slice(), lo, hi, at, b);
                        // A backslash outside a declared name could spell a declared name in
                        // another way; only declared names may contain escapes.
                        let free = free && b != b'\\';
                        if !free && !Self::unseen_in(v, seen, lo, hi) {
                            return;
                        }
                        self.state = St::KeyStr {
                            lo,
                            hi,
                            at: at.saturating_add(1),
                            free,
                            escape,
                            hex,
                        };
                    }
                }
                out.push(self);
            }
            St::Num {
                phase,
                integer,
                digits,
            } => {
                use NumPhase::*;
                let next = match (phase, phase.next(b)) {
                    (Int, Some(Int)) if digits >= MAX_INT_DIGITS => None,
                    (Exp, Some(Exp)) if digits >= MAX_EXP_DIGITS => None,
                    (_, Some(Dot | E)) if integer => None,
                    (_, next) => next,
                };
                match next {
                    Some(next) => {
                        let digits = match (phase == next, b.is_ascii_digit()) {
                            (true, true) => digits.saturating_add(1),
                            (false, true) => 1,
                            (_, false) => 0,
                        };
                        self.state = St::Num {
                            phase: next,
                            integer,
                            digits,
                        };
                        out.push(self);
                    }
                    None if phase.can_end() => self.end_token(nodes, b, ws, out),
                    None => {}
                }
            }
            St::Lit { word, at } => {
                if word.get(at as usize) == Some(&b) {
                    if at as usize + 1 == word.len() {
                        self.after_value();
                    } else {
                        self.state = St::Lit { word, at: at + 1 };
                    }
                    out.push(self);
                }
            }
            St::Enum { node, lo, hi, at } => {
                let Some(v) = value_node(nodes, node) else {
                    return;
                };
                let lits = v.literals.as_deref().unwrap_or_default();
                let (nlo, nhi) = narrow(lits, |l| l.as_slice(), lo, hi, at, b);
                if nlo < nhi {
                    let at = at + 1;
                    let only = &lits[nlo as usize];
                    // A literal that is complete and cannot be extended ends here, unless it is a
                    // number (which ends at the next delimiter, like other numbers).
                    if nhi - nlo == 1 && only.len() == at as usize && !b.is_ascii_digit() {
                        self.after_value();
                    } else {
                        self.state = St::Enum {
                            node,
                            lo: nlo,
                            hi: nhi,
                            at,
                        };
                    }
                    out.push(self);
                } else if lits[lo as usize].len() == at as usize {
                    self.end_token(nodes, b, ws, out);
                }
            }
        }
    }

    /// A number-like token ended at delimiter `b`: close the value and feed `b` after it.
    fn end_token(mut self, nodes: &[Node], b: u8, ws: bool, out: &mut Vec<Cfg>) {
        self.after_value();
        if self.state == St::Done {
            // A top-level number ends at whitespace.
            if ws {
                out.push(self);
            }
            return;
        }
        self.step(nodes, b, out);
    }

    /// Count one more array item; its schema, or `None` at `maxItems`.
    fn next_item(&mut self, nodes: &[Node]) -> Option<NodeId> {
        let Some(Frame::Array { node, count }) = self.stack.last_mut() else {
            return None;
        };
        let v = value_node(nodes, *node)?;
        if *count >= v.max_items {
            return None;
        }
        *count += 1;
        Some(v.items)
    }
}

/// One byte inside a JSON string: `None` = rejected, `Some(None)` = the closing quote,
/// `Some(Some((escape, hex)))` = still inside.
#[allow(clippy::option_option)]
fn string_byte(escape: bool, hex: u8, b: u8) -> Option<Option<(bool, u8)>> {
    if hex > 0 {
        return b.is_ascii_hexdigit().then_some(Some((false, hex - 1)));
    }
    if escape {
        return match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(Some((false, 0))),
            b'u' => Some(Some((false, 4))),
            _ => None,
        };
    }
    match b {
        b'"' => Some(None),
        b'\\' => Some(Some((true, 0))),
        0..=0x1f => None,
        _ => Some(Some((false, 0))),
    }
}

/// Incremental validator for a prefix of a document that satisfies a [`Schema`].
#[derive(Debug, Clone)]
pub struct SchemaPrefix {
    schema: Schema,
    cfgs: Vec<Cfg>,
}

impl SchemaPrefix {
    /// True once a complete value has been closed: nothing more may follow.
    pub fn is_complete(&self) -> bool {
        self.cfgs.iter().any(|c| c.state == St::Done)
    }

    /// True when the text so far is a complete valid document (a top-level number may still go
    /// on, an object may not).
    pub fn can_end(&self) -> bool {
        let nodes = &self.schema.inner.nodes;
        self.cfgs.iter().any(|c| {
            c.stack.is_empty()
                && match c.state {
                    St::Done => true,
                    St::Num { phase, .. } => phase.can_end(),
                    St::Enum { node, lo, at, .. } => value_node(nodes, node)
                        .and_then(|v| v.literals.as_ref())
                        .is_some_and(|l| l[lo as usize].len() == at as usize),
                    _ => false,
                }
        })
    }

    fn feed(&mut self, b: u8) -> bool {
        let nodes = &self.schema.inner.nodes;
        let mut out = Vec::with_capacity(self.cfgs.len());
        for c in self.cfgs.drain(..) {
            c.step(nodes, b, &mut out);
        }
        if out.len() > 1 {
            let mut uniq: Vec<Cfg> = Vec::with_capacity(out.len());
            for c in out {
                if uniq.len() < MAX_CONFIGS && !uniq.contains(&c) {
                    uniq.push(c);
                }
            }
            out = uniq;
        }
        self.cfgs = out;
        !self.cfgs.is_empty()
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
}
