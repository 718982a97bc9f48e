//! Compiling a JSON-Schema subset into the node arena: keyword checks and limits, `$ref`
//! resolution, cycle detection and pruning of what no value can satisfy.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{
    ANY, Inner, MAX_ANY_OF, MAX_ENUM, MAX_LITERAL_BYTES, MAX_NODES, MAX_PROPERTIES,
    MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, Node, NodeId, Prop, Schema, T_ALL, T_ARRAY, T_BOOLEAN,
    T_INTEGER, T_NULL, T_NUMBER, T_OBJECT, T_STRING, ValueNode, escaped, resolve, validate_node,
};

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
         required, additionalProperties, items, minItems, maxItems, minLength, maxLength, enum, \
         const, anyOf, $ref to #/$defs/... or #/definitions/...)"
    )]
    Unsupported { path: String, keyword: String },
    #[error("json_schema at {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("json_schema at {path}: no JSON value can satisfy it")]
    Unsatisfiable { path: String },
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    refs: BTreeMap<String, NodeId>,
    paths: Vec<String>,
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
            "minLength",
            "maxLength",
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
        let has_string_kw = ["minLength", "maxLength"]
            .iter()
            .any(|k| m.contains_key(*k));
        node.types = match m.get("type") {
            None if has_object_kw || has_array_kw || has_string_kw => {
                (if has_object_kw { T_OBJECT } else { 0 })
                    | (if has_array_kw { T_ARRAY } else { 0 })
                    | (if has_string_kw { T_STRING } else { 0 })
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
        // Strings (lengths in code points).
        node.min_length = count("minLength")?.unwrap_or(0);
        node.max_length = count("maxLength")?.unwrap_or(u32::MAX);
        if node.min_length > node.max_length {
            node.types &= !T_STRING;
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
        let scalar = v.types & (T_NUMBER | T_INTEGER | T_BOOLEAN | T_NULL) != 0
            || (v.types & T_STRING != 0 && v.min_length <= v.max_length);
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
