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
//! schema), `minItems`, `maxItems`, `enum`, `const`, `anyOf`, and `$ref` to `#`, `#/$defs/NAME` or
//! `#/definitions/NAME`. Annotations (`title`, `description`, `default`, `examples`, `$schema`,
//! `$id`, `$comment`, `deprecated`, `readOnly`, `writeOnly`) are ignored. Every other keyword
//! (`pattern`, `format`, `minimum`, `minLength`, `oneOf`, `allOf`, tuple `items`, ...) is an error,
//! so a client never gets output that silently breaks its schema.
//!
//! The generated text is also a little stricter than the schema: `integer` values are written
//! without fraction or exponent, `enum`/`const` values in their compact serde_json form, a schema
//! with no `type` but object (array) keywords generates objects (arrays), keys never repeat, and
//! whitespace between tokens is capped at 4 bytes in a row.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::NumPhase;

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

/// Keywords that only annotate and are ignored.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

/// Why a JSON schema was refused (the message is meant for the API client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("json_schema is not valid JSON: {0}")]
    Json(String),
    #[error("json_schema is {len} bytes; the limit is {MAX_SCHEMA_BYTES}")]
    TooLarge { len: usize },
    #[error("json_schema nests deeper than {MAX_SCHEMA_DEPTH} levels at {path}")]
    TooDeep { path: String },
    #[error("json_schema has more than {MAX_NODES} subschemas")]
    TooManyNodes,
    #[error(
        "json_schema at {path}: `{keyword}` is not supported (supported: type, properties, \
         required, additionalProperties, items, minItems, maxItems, enum, const, anyOf, $ref to \
         #/$defs/... or #/definitions/...)"
    )]
    Unsupported { path: String, keyword: String },
    #[error("json_schema at {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("json_schema at {path}: no JSON value can satisfy it")]
    Unsatisfiable { path: String },
}

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

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    refs: BTreeMap<String, NodeId>,
    paths: Vec<String>,
}

fn escaped(name: &str) -> Vec<u8> {
    let s = serde_json::to_string(name).unwrap_or_default();
    s.as_bytes()[1..s.len() - 1].to_vec()
}

fn type_bit(name: &str) -> Option<u8> {
    Some(match name {
        "object" => T_OBJECT,
        "array" => T_ARRAY,
        "string" => T_STRING,
        "number" => T_NUMBER,
        "integer" => T_INTEGER,
        "boolean" => T_BOOLEAN,
        "null" => T_NULL,
        _ => return None,
    })
}

impl<'a> Compiler<'a> {
    fn alloc(&mut self, node: Node, path: &str) -> Result<NodeId, SchemaError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(SchemaError::TooManyNodes);
        }
        self.nodes.push(node);
        self.paths.push(path.to_string());
        Ok((self.nodes.len() - 1) as NodeId)
    }

    fn invalid(path: &str, reason: impl Into<String>) -> SchemaError {
        SchemaError::Invalid {
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    /// The node of a `$ref` target, compiled once.
    fn reference(&mut self, r: &str, path: &str, depth: usize) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.refs.get(r) {
            return Ok(id);
        }
        let target = if r == "#" {
            Some(self.root)
        } else if let Some(rest) = r
            .strip_prefix("#/$defs/")
            .map(|n| ("$defs", n))
            .or_else(|| r.strip_prefix("#/definitions/").map(|n| ("definitions", n)))
        {
            let (section, name) = rest;
            if name.contains('/') {
                None
            } else {
                let name = name.replace("~1", "/").replace("~0", "~");
                self.root.get(section).and_then(|d| d.get(&name))
            }
        } else {
            None
        };
        let Some(target) = target else {
            return Err(SchemaError::Unsupported {
                path: path.to_string(),
                keyword: format!("$ref {r:?} (only #, #/$defs/NAME and #/definitions/NAME)"),
            });
        };
        let id = self.alloc(Node::Pending, r)?;
        self.refs.insert(r.to_string(), id);
        let body = self.compile(target, &r.replacen('#', "", 1), depth + 1)?;
        self.nodes[id as usize] = Node::Ref(body);
        Ok(id)
    }

    fn compile(&mut self, v: &Value, path: &str, depth: usize) -> Result<NodeId, SchemaError> {
        let shown = if path.is_empty() { "#" } else { path };
        if depth > MAX_SCHEMA_DEPTH {
            return Err(SchemaError::TooDeep {
                path: format!("#{path}"),
            });
        }
        let m: &Map<String, Value> = match v {
            Value::Bool(true) => return Ok(ANY),
            Value::Bool(false) => {
                return Err(SchemaError::Unsatisfiable {
                    path: format!("#{path}"),
                });
            }
            Value::Object(m) => m,
            _ => {
                return Err(Self::invalid(
                    shown,
                    "a schema must be a JSON object or a boolean",
                ));
            }
        };
        let at = |k: &str| format!("#{path}/{k}");
        const SUPPORTED: &[&str] = &[
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "minItems",
            "maxItems",
            "enum",
            "const",
            "anyOf",
            "$ref",
        ];
        let mut constraints = 0;
        for k in m.keys() {
            if ANNOTATIONS.contains(&k.as_str()) {
                continue;
            }
            if !SUPPORTED.contains(&k.as_str()) {
                return Err(SchemaError::Unsupported {
                    path: format!("#{path}"),
                    keyword: k.clone(),
                });
            }
            constraints += 1;
        }
        if let Some(r) = m.get("$ref") {
            let Some(r) = r.as_str() else {
                return Err(Self::invalid(&at("$ref"), "must be a string"));
            };
            if constraints > 1 {
                return Err(SchemaError::Unsupported {
                    path: format!("#{path}"),
                    keyword: "$ref next to other keywords".into(),
                });
            }
            return self.reference(r, &format!("#{path}"), depth);
        }
        if let Some(branches) = m.get("anyOf") {
            let Some(branches) = branches.as_array() else {
                return Err(Self::invalid(&at("anyOf"), "must be an array"));
            };
            if constraints > 1 {
                return Err(SchemaError::Unsupported {
                    path: format!("#{path}"),
                    keyword: "anyOf next to other keywords".into(),
                });
            }
            if branches.is_empty() || branches.len() > MAX_ANY_OF {
                return Err(Self::invalid(
                    &at("anyOf"),
                    format!("must have 1 to {MAX_ANY_OF} schemas"),
                ));
            }
            let id = self.alloc(Node::Pending, shown)?;
            let mut ids = Vec::with_capacity(branches.len());
            for (i, b) in branches.iter().enumerate() {
                match self.compile(b, &format!("{path}/anyOf/{i}"), depth + 1) {
                    Ok(n) => ids.push(n),
                    // A `false` branch adds nothing.
                    Err(SchemaError::Unsatisfiable { .. }) if *b == Value::Bool(false) => {}
                    Err(e) => return Err(e),
                }
            }
            self.nodes[id as usize] = Node::AnyOf(ids);
            return Ok(id);
        }

        let id = self.alloc(Node::Pending, shown)?;
        let mut node = ValueNode::any();
        let has_object_kw = ["properties", "required", "additionalProperties"]
            .iter()
            .any(|k| m.contains_key(*k));
        let has_array_kw = ["items", "minItems", "maxItems"]
            .iter()
            .any(|k| m.contains_key(*k));
        node.types = match m.get("type") {
            None if has_object_kw || has_array_kw => {
                (if has_object_kw { T_OBJECT } else { 0 })
                    | (if has_array_kw { T_ARRAY } else { 0 })
            }
            None => T_ALL,
            Some(Value::String(s)) => type_bit(s)
                .ok_or_else(|| Self::invalid(&at("type"), format!("unknown type {s:?}")))?,
            Some(Value::Array(list)) if !list.is_empty() => {
                let mut t = 0;
                for s in list {
                    let bit = s
                        .as_str()
                        .and_then(type_bit)
                        .ok_or_else(|| Self::invalid(&at("type"), format!("unknown type {s}")))?;
                    t |= bit;
                }
                t
            }
            Some(_) => {
                return Err(Self::invalid(
                    &at("type"),
                    "must be a type name or a non-empty list of them",
                ));
            }
        };
        // Objects.
        let mut required: Vec<String> = Vec::new();
        if let Some(r) = m.get("required") {
            let list = r
                .as_array()
                .ok_or_else(|| Self::invalid(&at("required"), "must be an array of strings"))?;
            for n in list {
                let n = n
                    .as_str()
                    .ok_or_else(|| Self::invalid(&at("required"), "must be an array of strings"))?;
                if !required.iter().any(|r| r == n) {
                    required.push(n.to_string());
                }
            }
        }
        node.additional = match m.get("additionalProperties") {
            None | Some(Value::Bool(true)) => Some(ANY),
            Some(Value::Bool(false)) => None,
            Some(s) => Some(self.compile(s, &format!("{path}/additionalProperties"), depth + 1)?),
        };
        if let Some(p) = m.get("properties") {
            let p = p
                .as_object()
                .ok_or_else(|| Self::invalid(&at("properties"), "must be an object"))?;
            if p.len() > MAX_PROPERTIES {
                return Err(Self::invalid(
                    &at("properties"),
                    format!("more than {MAX_PROPERTIES} properties"),
                ));
            }
            for (name, s) in p {
                let key = name.replace('~', "~0").replace('/', "~1");
                let sub = self.compile(s, &format!("{path}/properties/{key}"), depth + 1);
                let required = required.iter().any(|r| r == name);
                let sub = match sub {
                    Ok(n) => n,
                    // `"x": false` forbids the key, unless it is required.
                    Err(SchemaError::Unsatisfiable { .. }) if *s == Value::Bool(false) => {
                        if required && node.types & T_OBJECT != 0 {
                            node.types &= !T_OBJECT;
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                node.props.push(Prop {
                    name: escaped(name),
                    node: sub,
                    required,
                });
            }
        }
        for r in &required {
            let known = m
                .get("properties")
                .and_then(|p| p.as_object())
                .is_some_and(|p| p.contains_key(r));
            if !known {
                // Required but undeclared: the key must appear, with the additional schema.
                match node.additional {
                    Some(a) if node.props.len() < MAX_PROPERTIES => node.props.push(Prop {
                        name: escaped(r),
                        node: a,
                        required: true,
                    }),
                    _ => node.types &= !T_OBJECT,
                }
            }
        }
        node.props.sort_by(|a, b| a.name.cmp(&b.name));
        // Arrays.
        if let Some(items) = m.get("items") {
            if *items == Value::Bool(false) {
                node.max_items = 0;
            } else if items.is_array() {
                return Err(SchemaError::Unsupported {
                    path: format!("#{path}"),
                    keyword: "items as an array (tuple)".into(),
                });
            } else {
                node.items = self.compile(items, &format!("{path}/items"), depth + 1)?;
            }
        }
        let count = |k: &str| -> Result<Option<u32>, SchemaError> {
            match m.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|n| Some(n.min(u64::from(u32::MAX)) as u32))
                    .ok_or_else(|| Self::invalid(&at(k), "must be a non-negative integer")),
            }
        };
        node.min_items = count("minItems")?.unwrap_or(0);
        node.max_items = count("maxItems")?.unwrap_or(u32::MAX);
        if node.min_items > node.max_items {
            node.types &= !T_ARRAY;
        }
        // enum / const: the literal values that also satisfy the rest of this node.
        let mut literals: Option<Vec<&Value>> = None;
        if let Some(e) = m.get("enum") {
            let e = e
                .as_array()
                .ok_or_else(|| Self::invalid(&at("enum"), "must be an array"))?;
            if e.is_empty() || e.len() > MAX_ENUM {
                return Err(Self::invalid(
                    &at("enum"),
                    format!("must have 1 to {MAX_ENUM} values"),
                ));
            }
            literals = Some(e.iter().collect());
        }
        if let Some(c) = m.get("const") {
            literals = Some(match literals {
                None => vec![c],
                Some(l) => l.into_iter().filter(|v| *v == c).collect(),
            });
        }
        self.nodes[id as usize] = Node::Value(Box::new(node));
        if let Some(values) = literals {
            let mut out = Vec::new();
            for v in values {
                let text = serde_json::to_vec(v).unwrap_or_default();
                if text.len() > MAX_LITERAL_BYTES {
                    return Err(Self::invalid(
                        shown,
                        format!("an enum/const value is over {MAX_LITERAL_BYTES} bytes"),
                    ));
                }
                if validate_node(&self.nodes, id, v, 0) {
                    out.push(text);
                }
            }
            out.sort();
            out.dedup();
            if let Node::Value(n) = &mut self.nodes[id as usize] {
                n.literals = Some(out);
            }
        }
        Ok(id)
    }
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
        Value::String(_) => n.types & T_STRING != 0,
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
    /// Compile a JSON schema given as JSON text. Errors name the offending place (`#/properties/x`)
    /// and are meant to be shown to the API client.
    pub fn parse(text: &str) -> Result<Schema, SchemaError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge { len: text.len() });
        }
        let v: Value = serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        Self::from_value(&v)
    }

    /// Compile an already parsed schema.
    pub fn from_value(v: &Value) -> Result<Schema, SchemaError> {
        let mut c = Compiler {
            root: v,
            nodes: vec![Node::Value(Box::new(ValueNode::any()))],
            refs: BTreeMap::new(),
            paths: vec!["#".into()],
        };
        let root = c.reference("#", "#", 0)?;
        let Compiler {
            mut nodes, paths, ..
        } = c;
        check_cycles(&nodes, &paths)?;
        prune(&mut nodes);
        let root = resolve(&nodes, root);
        if !satisfiable(&nodes, root) {
            return Err(SchemaError::Unsatisfiable { path: "#".into() });
        }
        Ok(Schema {
            inner: Arc::new(Inner { nodes, root }),
        })
    }

    /// Does a parsed JSON value satisfy this schema (as compiled: see the module docs)?
    pub fn validate(&self, v: &Value) -> bool {
        validate_node(&self.inner.nodes, self.inner.root, v, 0)
    }

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

/// A `$ref`/`anyOf` cycle that consumes no input (`{"$ref": "#"}`, `a: {anyOf: [{$ref: a}]}`)
/// would loop forever; refuse it.
fn check_cycles(nodes: &[Node], paths: &[String]) -> Result<(), SchemaError> {
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut mark = vec![0u8; nodes.len()];
    fn edges(n: &Node) -> &[NodeId] {
        match n {
            Node::Ref(t) => std::slice::from_ref(t),
            Node::AnyOf(b) => b,
            _ => &[],
        }
    }
    for start in 0..nodes.len() {
        if mark[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = 1;
        while let Some((n, i)) = stack.pop() {
            let e = edges(&nodes[n]);
            if i < e.len() {
                stack.push((n, i + 1));
                let t = e[i] as usize;
                match mark[t] {
                    0 => {
                        mark[t] = 1;
                        stack.push((t, 0));
                    }
                    1 => {
                        return Err(SchemaError::Invalid {
                            path: paths[t].clone(),
                            reason: "$ref/anyOf refers back to itself without an enclosing \
                                     object or array"
                                .into(),
                        });
                    }
                    _ => {}
                }
            } else {
                mark[n] = 2;
            }
        }
    }
    Ok(())
}

fn satisfiable(nodes: &[Node], id: NodeId) -> bool {
    match &nodes[resolve(nodes, id) as usize] {
        Node::Pending | Node::Ref(_) => false,
        Node::AnyOf(b) => !b.is_empty(),
        Node::Value(n) => match &n.literals {
            Some(l) => !l.is_empty(),
            None => n.types != 0,
        },
    }
}

/// Remove what no finite value can satisfy, so the automaton never enters a dead end: compute
/// satisfiability as a least fixpoint, then drop types, properties, branches and items built on
/// unsatisfiable parts.
fn prune(nodes: &mut [Node]) {
    let n = nodes.len();
    let mut sat = vec![false; n];
    let value_sat = |v: &ValueNode, sat: &[bool], nodes: &[Node]| -> (bool, bool, bool) {
        let s = |id: NodeId| sat[resolve(nodes, id) as usize];
        let obj = v.types & T_OBJECT != 0 && v.props.iter().all(|p| !p.required || s(p.node));
        let arr = v.types & T_ARRAY != 0
            && v.min_items <= v.max_items
            && (v.min_items == 0 || s(v.items));
        let scalar = v.types & (T_STRING | T_NUMBER | T_INTEGER | T_BOOLEAN | T_NULL) != 0;
        (obj, arr, scalar)
    };
    loop {
        let mut changed = false;
        for i in 0..n {
            if sat[i] {
                continue;
            }
            let now = match &nodes[i] {
                Node::Pending => false,
                Node::Ref(t) => sat[resolve(nodes, *t) as usize],
                Node::AnyOf(b) => b.iter().any(|&b| sat[resolve(nodes, b) as usize]),
                Node::Value(v) => match &v.literals {
                    Some(l) => !l.is_empty(),
                    None => {
                        let (o, a, s) = value_sat(v, &sat, nodes);
                        o || a || s
                    }
                },
            };
            if now {
                sat[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let s = |id: NodeId, nodes: &[Node]| sat[resolve(nodes, id) as usize];
    for i in 0..n {
        let mut node = std::mem::replace(&mut nodes[i], Node::Pending);
        match &mut node {
            Node::AnyOf(b) => b.retain(|&b| s(b, nodes)),
            Node::Value(v) if v.literals.is_none() => {
                let (o, a, _) = value_sat(v, &sat, nodes);
                if !o {
                    v.types &= !T_OBJECT;
                }
                if !a {
                    v.types &= !T_ARRAY;
                }
                v.props.retain(|p| s(p.node, nodes));
                if v.additional.is_some_and(|x| !s(x, nodes)) {
                    v.additional = None;
                }
                if !s(v.items, nodes) {
                    v.max_items = 0;
                }
            }
            _ => {}
        }
        nodes[i] = node;
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
    Str {
        escape: bool,
        hex: u8,
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
                    escape: false,
                    hex: 0,
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
            St::Str { escape, hex } => {
                if let Some(next) = string_byte(escape, hex, b) {
                    match next {
                        None => self.after_value(),
                        Some((escape, hex)) => self.state = St::Str { escape, hex },
                    }
                    out.push(self);
                }
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
                let next = match (phase, b) {
                    (Minus, b'0') => Some(Zero),
                    (Minus, b'1'..=b'9') => Some(Int),
                    (Int, b'0'..=b'9') if digits < MAX_INT_DIGITS => Some(Int),
                    (Zero | Int, b'.') if !integer => Some(Dot),
                    (Dot | Frac, b'0'..=b'9') => Some(Frac),
                    (Zero | Int | Frac, b'e' | b'E') if !integer => Some(E),
                    (E, b'+' | b'-') => Some(ESign),
                    (E | ESign, b'0'..=b'9') => Some(Exp),
                    (Exp, b'0'..=b'9') if digits < MAX_EXP_DIGITS => Some(Exp),
                    _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(s: &str) -> Schema {
        Schema::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn prefix_ok(s: &Schema, text: &str) -> bool {
        s.prefix().feed_all(text.as_bytes())
    }

    fn complete(s: &Schema, text: &str) -> bool {
        let mut p = s.prefix();
        p.feed_all(text.as_bytes()) && p.can_end()
    }

    /// Every prefix of `doc` is accepted, the whole is complete, and the oracle agrees.
    fn accepts_doc(s: &Schema, doc: &str) {
        for i in 0..=doc.len() {
            if doc.is_char_boundary(i) {
                assert!(prefix_ok(s, &doc[..i]), "prefix {:?} of {doc}", &doc[..i]);
            }
        }
        assert!(complete(s, doc), "{doc} should be complete");
        let v: Value = serde_json::from_str(doc).unwrap();
        assert!(s.validate(&v), "oracle rejects {doc}");
    }

    const PERSON: &str = r#"{
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "height": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "role": {"enum": ["admin", "user", null, 7]},
            "ok": {"type": ["boolean", "null"]}
        },
        "required": ["name", "age"],
        "additionalProperties": false
    }"#;

    #[test]
    fn accepts_every_prefix_of_valid_documents() {
        let s = schema(PERSON);
        for doc in [
            r#"{"name":"Ada","age":36}"#,
            r#"{"age": -4, "name": "x\"y\u00e9"}"#,
            r#"{"name":"B","age":0,"height":1.5e3,"tags":["a","b"],"role":"admin","ok":null}"#,
            r#"{"name":"B","age":10,"role":null,"ok":true}"#,
            r#"{"name":"B","age":10,"role":7}"#,
            "{\n  \"name\": \"日本\",\n  \"age\": 1\n}",
        ] {
            accepts_doc(&s, doc);
        }
    }

    #[test]
    fn rejects_violating_bytes() {
        let s = schema(PERSON);
        for bad in [
            "[",                                           // not an object
            " {",                                          // leading whitespace
            r#"{"nam":"#,               // unknown key (additionalProperties false)
            r#"{"x"#,                   // no declared key starts with x
            r#"{"name":"a","name""#,    // repeated key
            r#"{"name":1"#,             // wrong type
            r#"{"name":"a"}"#,          // missing required age
            r#"{"name":"a","age":1.5"#, // integer with a fraction
            r#"{"name":"a","age":1e3"#, // integer with an exponent
            r#"{"name":"a","age":1,"tags":[]"#, // minItems 1
            r#"{"name":"a","age":1,"tags":["a","b","c","#, // maxItems 3
            r#"{"name":"a","age":1,"tags":[1"#, // items are strings
            r#"{"name":"a","age":1,"role":"adm""#, // not in the enum
            r#"{"name":"a","age":1,"role":"guest"#, // not in the enum
            r#"{"name":"a","age":1,"role":70"#, // 7 is, 70 is not
            r#"{"name":"a","age":1,"ok":"yes"#, // boolean or null
            r#"{"name":"a","age":1}x"#, // after the end
            r#"{"name":"a","age":1}  "#, // nothing after the end
            r#"{"\u006eame":"#,         // a declared name spelled with an escape
            "{      \"name\"",          // whitespace run over the cap
        ] {
            assert!(!prefix_ok(&s, bad), "{bad:?} should be rejected");
        }
        // Still valid prefixes, for contrast.
        assert!(prefix_ok(&s, r#"{"name":"a","age":1,"role":7"#));
        assert!(prefix_ok(&s, r#"{"name":"a","age":1,"tags":["a","b","c""#));
    }

    #[test]
    fn completion_detection() {
        let s = schema(PERSON);
        let mut p = s.prefix();
        assert!(p.feed_all(br#"{"name":"a","age":12"#));
        assert!(!p.is_complete() && !p.can_end());
        assert!(p.feed_all(b"}"));
        assert!(p.is_complete() && p.can_end());
        assert!(!p.accepts(b" "));

        // A top-level number can end (EOG allowed) but is not closed until a delimiter.
        let n = schema(r#"{"type":"integer"}"#);
        let mut p = n.prefix();
        assert!(p.feed_all(b"12"));
        assert!(p.can_end() && !p.is_complete());
        assert!(p.feed_all(b"3 "));
        assert!(p.is_complete());
        assert!(n.prefix().accepts(b"-1"));
        assert!(!n.prefix().accepts(b"-."));
        assert!(!n.prefix().accepts(b"1."));

        // Enum literals: a string literal closes at its quote; a number waits for a delimiter.
        let e = schema(r#"{"enum":["a","ab",1,10]}"#);
        let mut p = e.prefix();
        assert!(p.feed_all(br#""a""#));
        assert!(p.is_complete());
        let mut p = e.prefix();
        assert!(p.feed_all(b"1"));
        assert!(p.can_end() && !p.is_complete());
        assert!(p.accepts(b"0"));
        assert!(!p.accepts(b"2"));
    }

    #[test]
    fn a_failed_feed_leaves_the_state_unchanged() {
        let s = schema(PERSON);
        let mut p = s.prefix();
        assert!(p.feed_all(br#"{"name":"#));
        assert!(!p.feed_all(b"1"));
        assert!(p.feed_all(br#""x","age":2}"#));
        assert!(p.is_complete());
    }

    #[test]
    fn any_of_nested_and_recursive_refs() {
        let s = schema(
            r##"{
            "$defs": {
                "node": {"type": "object", "properties": {
                    "v": {"type": "integer"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}
                }, "required": ["v"], "additionalProperties": false}
            },
            "anyOf": [
                {"$ref": "#/$defs/node"},
                {"type": "array", "items": {"anyOf": [{"type": "string"}, {"const": {"k": [1, 2]}}]}}
            ]
        }"##,
        );
        for doc in [
            r#"{"v":1}"#,
            r#"{"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]}"#,
            r#"["a",{"k":[1,2]}]"#,
            r#"[]"#,
        ] {
            accepts_doc(&s, doc);
        }
        for bad in [
            r#"{"v":1,"kids":[{"v":2},{"v":3},"#,
            r#"{"kids":[]}"#,
            r#"[{"k":[1,3"#,
            r#"[{"k": [1,2]}"#, // const values are written compactly
            r#""s""#,
        ] {
            assert!(!prefix_ok(&s, bad), "{bad}");
        }
    }

    #[test]
    fn additional_properties_schema_and_free_keys() {
        let s = schema(
            r#"{"type":"object","properties":{"a":{"type":"string"}},
                "additionalProperties":{"type":"number"}}"#,
        );
        accepts_doc(&s, r#"{"a":"x","b":1,"ab":2.5}"#);
        accepts_doc(&s, r#"{}"#);
        assert!(!prefix_ok(&s, r#"{"b":"x"#));
        assert!(!prefix_ok(&s, r#"{"a":1"#));
        // Only declared names may be spelled with escapes.
        assert!(!prefix_ok(&s, r#"{"\u0061"#));
        // Required but undeclared keys take the additional schema.
        let r = schema(r#"{"type":"object","required":["z"]}"#);
        assert!(!complete(&r, "{}"));
        accepts_doc(&r, r#"{"z":[1,{"q":null}]}"#);
    }

    #[test]
    fn all_properties_used_forces_the_close() {
        let s = schema(
            r#"{"type":"object","properties":{"a":{"type":"boolean"}},"additionalProperties":false}"#,
        );
        assert!(!prefix_ok(&s, r#"{"a":true,"#));
        accepts_doc(&s, r#"{"a":true}"#);
        accepts_doc(&s, r#"{}"#);
    }

    #[test]
    fn unsupported_and_invalid_schemas_are_errors() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"type":"string","pattern":"^a"}"#,
                "`pattern` is not supported",
            ),
            (r#"{"type":"string","format":"date"}"#, "`format`"),
            (
                r#"{"properties":{"a":{"minimum":1}}}"#,
                "#/properties/a: `minimum`",
            ),
            (r#"{"oneOf":[{"type":"string"}]}"#, "`oneOf`"),
            (r##"{"$ref":"http://x/y"}"##, "$ref"),
            (r##"{"$ref":"#/$defs/missing"}"##, "$ref"),
            (r#"{"type":"strin"}"#, "unknown type"),
            (r#"{"enum":[]}"#, "1 to 256 values"),
            (
                r#"{"type":"string","enum":[1,2]}"#,
                "no JSON value can satisfy it",
            ),
            (
                r#"{"type":"object","required":["a"],"additionalProperties":false}"#,
                "satisfy",
            ),
            (
                r##"{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}"##,
                "refers back",
            ),
            (r##"{"anyOf":[{"$ref":"#"}]}"##, "refers back"),
            (r#"{"items":[{"type":"string"}]}"#, "tuple"),
            (
                r#"{"anyOf":[{"type":"string"}],"type":"string"}"#,
                "anyOf next to",
            ),
            ("[1]", "must be a JSON object"),
            ("{", "not valid JSON"),
            (r#"{"type":"array","minItems":2,"maxItems":1}"#, "satisfy"),
        ];
        for (text, want) in cases {
            let e = Schema::parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e:?} should mention {want:?}");
        }
        // A recursive structure that must nest forever has no finite instance.
        let e = Schema::parse(
            r##"{"type":"object","properties":{"n":{"$ref":"#"}},"required":["n"]}"##,
        )
        .unwrap_err();
        assert!(matches!(e, SchemaError::Unsatisfiable { .. }), "{e}");
    }

    #[test]
    fn size_and_depth_limits() {
        let big = format!(r#"{{"description":"{}"}}"#, "x".repeat(MAX_SCHEMA_BYTES));
        assert!(matches!(
            Schema::parse(&big),
            Err(SchemaError::TooLarge { .. })
        ));
        let mut deep = String::from(r#"{"type":"string"}"#);
        for _ in 0..=MAX_SCHEMA_DEPTH {
            deep = format!(r#"{{"type":"array","items":{deep}}}"#);
        }
        assert!(matches!(
            Schema::parse(&deep),
            Err(SchemaError::TooDeep { .. })
        ));
        let props: Vec<String> = (0..MAX_PROPERTIES)
            .map(|i| format!(r#""p{i}":{{"type":"null"}}"#))
            .collect();
        let object = format!(r#"{{"properties":{{{}}}}}"#, props.join(","));
        let text = format!(r#"{{"anyOf":[{}]}}"#, vec![object; MAX_ANY_OF].join(","));
        assert!(matches!(
            Schema::parse(&text),
            Err(SchemaError::TooManyNodes)
        ));
    }

    #[test]
    fn unsatisfiable_parts_are_pruned() {
        // Property `b` can never be completed (it must nest forever), so it is never offered.
        let s = schema(
            r##"{"$defs":{"inf":{"type":"object","properties":{"x":{"$ref":"#/$defs/inf"}},"required":["x"]}},
                "type":"object","properties":{"a":{"type":"null"},"b":{"$ref":"#/$defs/inf"}},
                "additionalProperties":false}"##,
        );
        assert!(!prefix_ok(&s, r#"{"b"#));
        accepts_doc(&s, r#"{"a":null}"#);
        // anyOf with a false branch and a satisfiable one.
        let s = schema(r#"{"anyOf":[false,{"type":"boolean"}]}"#);
        accepts_doc(&s, "true");
    }

    /// Random walks through the automaton over all printable ASCII bytes: there is always an
    /// allowed byte (no dead ends), and whenever it says the document can end, serde_json parses
    /// it and the oracle accepts it (soundness).
    #[test]
    fn random_walks_never_get_stuck_and_end_valid() {
        let schemas = [
            PERSON,
            r##"{"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},
                "kids":{"type":"array","items":{"$ref":"#/$defs/n"},"maxItems":2}},
                "required":["v"],"additionalProperties":false}},
                "anyOf":[{"$ref":"#/$defs/n"},{"type":"array","items":{"enum":["x",1,[true]]},
                "minItems":2}]}"##,
            r#"{"type":"object","properties":{"a":{"type":"string"},"ab":{"const":null}},
                "additionalProperties":{"type":["number","boolean"]},"required":["ab"]}"#,
            "{}",
        ];
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let priority = b"\"}]0nultrefas:";
        let mut finished = 0;
        for text in schemas {
            let s = schema(text);
            for _walk in 0..60 {
                let mut p = s.prefix();
                let mut doc = Vec::new();
                for _ in 0..600 {
                    if p.is_complete() || (p.can_end() && (doc.len() > 60 || next() % 4 == 0)) {
                        break;
                    }
                    let allowed: Vec<u8> = (0x20u8..0x7f)
                        .chain([b'\n'])
                        .filter(|&b| p.accepts(&[b]))
                        .collect();
                    assert!(
                        !allowed.is_empty(),
                        "dead end after {:?}",
                        String::from_utf8_lossy(&doc)
                    );
                    let b = if doc.len() > 80 {
                        priority
                            .iter()
                            .copied()
                            .find(|b| allowed.contains(b))
                            .unwrap_or(allowed[next() as usize % allowed.len()])
                    } else {
                        allowed[next() as usize % allowed.len()]
                    };
                    assert!(p.feed_all(&[b]));
                    doc.push(b);
                }
                if p.can_end() {
                    finished += 1;
                    let v: Value = serde_json::from_slice(&doc).unwrap_or_else(|e| {
                        panic!("{e}: {:?} under {text}", String::from_utf8_lossy(&doc))
                    });
                    assert!(
                        s.validate(&v),
                        "{:?} under {text}",
                        String::from_utf8_lossy(&doc)
                    );
                }
            }
        }
        assert!(finished >= 120, "only {finished} of 240 walks finished");
    }

    #[test]
    fn any_schema_accepts_any_json() {
        let s = schema("{}");
        for doc in [
            r#"{"a":[1,2.5,-3e2,"x",null,true,{"b":{}}]}"#,
            "[]",
            r#""s""#,
            "false",
        ] {
            accepts_doc(&s, doc);
        }
        assert!(s.validate(&serde_json::json!(12)));
    }
}
