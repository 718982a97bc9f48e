//! JSON-Schema constrained output: a compiled [`Schema`] and its incremental validator
//! [`SchemaPrefix`].
//!
//! ```text
//! schema text ──Schema::parse──► nodes (arena; $ref = edge, so recursive $defs work)
//!        (size, depth, node, enum and anyOf limits; unsupported keywords are errors;
//!         parts no JSON value can satisfy are pruned, an unsatisfiable root is an error)
//! sampler candidate ──SchemaPrefix::accepts(token bytes)──► keep the first that stays valid
//! ```
//!
//! `SchemaPrefix` is a push-down automaton over bytes, like [`super::JsonPrefix`], whose frames
//! also carry the schema node they must satisfy. `anyOf` makes it non-deterministic: it keeps a
//! small set of configurations (at most [`MAX_CONFIGS`]) and drops those a byte kills. Every
//! configuration can still be completed to a valid document (unsatisfiable branches are pruned at
//! compile time), so constrained sampling never walks into a dead end.
//!
//! Supported keywords: `type` (one or a list of object, array, string, number, integer, boolean,
//! null), `properties`, `required`, `additionalProperties` (true, false or a schema), `items` (one
//! schema), `minItems`, `maxItems`, `minLength`, `maxLength` (in Unicode code points, after
//! unescaping; a `\uXXXX` surrogate pair is one), `enum`, `const`, `anyOf`, and `$ref` to `#`,
//! `#/$defs/NAME` or `#/definitions/NAME`. Annotations (`title`, `description`, `default`,
//! `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`, `writeOnly`) are ignored.
//! Every other keyword (`pattern`, `format`, `minimum`, `oneOf`, `allOf`, tuple `items`, ...) is an
//! error, so a client never gets output that silently breaks its schema. Counts and lengths above
//! `u32::MAX` are clamped to it.
//!
//! The generated text is also a little stricter than the schema: `integer` values are written
//! without fraction or exponent, `enum`/`const` values in their compact serde_json form, a schema
//! with no `type` but object (array, string) keywords generates objects (arrays, strings), keys
//! never repeat, and whitespace between tokens is capped at 4 bytes in a row.
//!
//! The compiler (`compile`: schema text to the node arena below, with [`SchemaError`]) and the
//! automaton (`automaton`: [`SchemaPrefix`] stepping over those nodes) live apart; this file holds
//! the limits and the compiled form they share.

use std::sync::Arc;

use serde_json::Value;

mod automaton;
mod compile;
#[cfg(test)]
mod tests;

pub use automaton::SchemaPrefix;
pub use compile::SchemaError;

/// Largest schema text accepted.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most subschemas (after `$ref` resolution) in one schema.
pub const MAX_NODES: usize = 1024;
/// Deepest nesting of subschemas.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Most `properties` of one object schema.
pub const MAX_PROPERTIES: usize = 128;
/// Most values in one `enum`.
pub const MAX_ENUM: usize = 256;
/// Longest `enum`/`const` value (compact JSON bytes).
pub const MAX_LITERAL_BYTES: usize = 1024;
/// Most branches of one `anyOf`.
pub const MAX_ANY_OF: usize = 16;
/// Most automaton configurations alive at once (anyOf alternatives being tracked).
pub const MAX_CONFIGS: usize = 32;
const MAX_WS_RUN: u8 = 4;
/// Longest integer part and exponent of a generated number (1e99 at most, a finite f64).
pub(super) const MAX_INT_DIGITS: u8 = 64;
pub(super) const MAX_EXP_DIGITS: u8 = 2;
/// Deepest nesting of the generated document.
const MAX_DEPTH: usize = 64;

type NodeId = u32;
/// Node 0 accepts any JSON value.
const ANY: NodeId = 0;

const T_OBJECT: u8 = 1;
const T_ARRAY: u8 = 2;
const T_STRING: u8 = 4;
const T_NUMBER: u8 = 8;
const T_INTEGER: u8 = 16;
const T_BOOLEAN: u8 = 32;
const T_NULL: u8 = 64;
const T_ALL: u8 = 127;

#[derive(Debug, Clone)]
enum Node {
    /// Being compiled (only during `parse`).
    Pending,
    Ref(NodeId),
    AnyOf(Vec<NodeId>),
    Value(Box<ValueNode>),
}

#[derive(Debug, Clone)]
struct Prop {
    /// The name as it appears between quotes in JSON (escaped).
    name: Vec<u8>,
    node: NodeId,
    required: bool,
}

#[derive(Debug, Clone)]
struct ValueNode {
    types: u8,
    /// `enum`/`const`: the allowed values as compact JSON, sorted and deduplicated.
    literals: Option<Vec<Vec<u8>>>,
    /// Sorted by name.
    props: Vec<Prop>,
    /// Schema of other keys; `None` = no other keys.
    additional: Option<NodeId>,
    items: NodeId,
    min_items: u32,
    max_items: u32,
    /// `minLength`/`maxLength` of strings, in code points.
    min_length: u32,
    max_length: u32,
}

impl ValueNode {
    fn any() -> Self {
        Self {
            types: T_ALL,
            literals: None,
            props: Vec::new(),
            additional: Some(ANY),
            items: ANY,
            min_items: 0,
            max_items: u32::MAX,
            min_length: 0,
            max_length: u32::MAX,
        }
    }
}

#[derive(Debug)]
struct Inner {
    nodes: Vec<Node>,
    root: NodeId,
}

/// A compiled JSON schema (cheap to clone).
#[derive(Debug, Clone)]
pub struct Schema {
    inner: Arc<Inner>,
}

fn escaped(name: &str) -> Vec<u8> {
    let s = serde_json::to_string(name).unwrap_or_default();
    s.as_bytes()[1..s.len() - 1].to_vec()
}

/// Follow `$ref` edges (acyclic after `check_cycles`).
fn resolve(nodes: &[Node], mut id: NodeId) -> NodeId {
    for _ in 0..=nodes.len() {
        match nodes[id as usize] {
            Node::Ref(t) => id = t,
            _ => return id,
        }
    }
    id
}

/// Does `v` satisfy node `id`? (The compiled semantics; also the test oracle.)
fn validate_node(nodes: &[Node], id: NodeId, v: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH + MAX_NODES {
        return false;
    }
    let id = resolve(nodes, id);
    let n = match &nodes[id as usize] {
        Node::Pending | Node::Ref(_) => return true,
        Node::AnyOf(b) => return b.iter().any(|&b| validate_node(nodes, b, v, depth + 1)),
        Node::Value(n) => n,
    };
    if let Some(l) = &n.literals {
        let text = serde_json::to_vec(v).unwrap_or_default();
        return l.binary_search(&text).is_ok();
    }
    match v {
        Value::Null => n.types & T_NULL != 0,
        Value::Bool(_) => n.types & T_BOOLEAN != 0,
        Value::Number(x) => {
            n.types & T_NUMBER != 0
                || (n.types & T_INTEGER != 0
                    && (x.is_i64() || x.is_u64() || x.as_f64().is_some_and(|f| f.fract() == 0.0)))
        }
        Value::String(s) => {
            n.types & T_STRING != 0 && {
                let len = s.chars().count();
                len >= n.min_length as usize && len <= n.max_length as usize
            }
        }
        Value::Array(a) => {
            n.types & T_ARRAY != 0
                && a.len() >= n.min_items as usize
                && a.len() <= n.max_items as usize
                && a.iter()
                    .all(|x| validate_node(nodes, n.items, x, depth + 1))
        }
        Value::Object(o) => {
            if n.types & T_OBJECT == 0 {
                return false;
            }
            for p in &n.props {
                if p.required && !o.contains_key(&unescape(&p.name)) {
                    return false;
                }
            }
            o.iter().all(|(k, x)| {
                let e = escaped(k);
                match n.props.binary_search_by(|p| p.name.cmp(&e)) {
                    Ok(i) => validate_node(nodes, n.props[i].node, x, depth + 1),
                    Err(_) => n
                        .additional
                        .is_some_and(|a| validate_node(nodes, a, x, depth + 1)),
                }
            })
        }
    }
}

fn unescape(name: &[u8]) -> String {
    let quoted = [b"\"".as_slice(), name, b"\""].concat();
    serde_json::from_slice(&quoted).unwrap_or_default()
}

impl Schema {
    /// Does a parsed JSON value satisfy this schema (as compiled: see the module docs)?
    pub fn validate(&self, v: &Value) -> bool {
        validate_node(&self.inner.nodes, self.inner.root, v, 0)
    }
}
