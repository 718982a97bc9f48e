use serde_json::Value;

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
        r#"{"nam":"#,                                  // unknown key (additionalProperties false)
        r#"{"x"#,                                      // no declared key starts with x
        r#"{"name":"a","name""#,                       // repeated key
        r#"{"name":1"#,                                // wrong type
        r#"{"name":"a"}"#,                             // missing required age
        r#"{"name":"a","age":1.5"#,                    // integer with a fraction
        r#"{"name":"a","age":1e3"#,                    // integer with an exponent
        r#"{"name":"a","age":1,"tags":[]"#,            // minItems 1
        r#"{"name":"a","age":1,"tags":["a","b","c","#, // maxItems 3
        r#"{"name":"a","age":1,"tags":[1"#,            // items are strings
        r#"{"name":"a","age":1,"role":"adm""#,         // not in the enum
        r#"{"name":"a","age":1,"role":"guest"#,        // not in the enum
        r#"{"name":"a","age":1,"role":70"#,            // 7 is, 70 is not
        r#"{"name":"a","age":1,"ok":"yes"#,            // boolean or null
        r#"{"name":"a","age":1}x"#,                    // after the end
        r#"{"name":"a","age":1}  "#,                   // nothing after the end
        r#"{"\u006eame":"#,                            // a declared name spelled with an escape
        "{      \"name\"",                             // whitespace run over the cap
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
    let e =
        Schema::parse(r##"{"type":"object","properties":{"n":{"$ref":"#"}},"required":["n"]}"##)
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
        r#"{"type":"object","properties":{
            "s":{"type":"string","minLength":3,"maxLength":5},
            "list":{"type":"array","maxItems":3,"items":{"type":"object","properties":{
                "t":{"type":"string","minLength":1,"maxLength":2},
                "u":{"type":["string","integer","null"],"maxLength":0}},
                "required":["t"],"additionalProperties":false}},
            "e":{"anyOf":[{"type":"string","minLength":4},{"type":"string","maxLength":1}]}},
            "required":["s","list"],"additionalProperties":false}"#,
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
    let walks = schemas.len() * 60;
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
    assert!(
        finished >= walks / 2,
        "only {finished} of {walks} walks finished"
    );
}

/// The automaton's verdict on a whole document and the oracle's must agree.
fn agree(s: &Schema, doc: &str, valid: bool) {
    assert_eq!(complete(s, doc), valid, "automaton on {doc}");
    let v: Value = serde_json::from_str(doc).unwrap();
    assert_eq!(s.validate(&v), valid, "oracle on {doc}");
}

#[test]
fn string_length_limits_count_code_points() {
    let s = schema(
        r#"{"type":"object","properties":{"s":{"type":"string","minLength":2,"maxLength":4}},
            "required":["s"],"additionalProperties":false}"#,
    );
    for doc in [
        r#"{"s":"ab"}"#,
        r#"{"s":"abcd"}"#,
        r#"{"s":"é😀x"}"#,               // 3 code points, 6 bytes
        r#"{"s":"\u00e9\ud83d\ude00"}"#, // 2 code points: a surrogate pair is one
        r#"{"s":"\n\t\"\\"}"#,           // 4 escapes, 4 code points
        r#"{"s":"abc\ud83d\ude00"}"#,    // the pair is the 4th code point
        r#"{"s":"😀😀😀😀"}"#,           // 16 bytes, 4 code points
    ] {
        accepts_doc(&s, doc);
        agree(&s, doc, true);
    }
    for doc in [
        r#"{"s":"a"}"#,
        r#"{"s":"abcde"}"#,
        r#"{"s":""}"#,
        r#"{"s":"\ud83d\ude00"}"#,
        r#"{"s":"😀😀😀😀😀"}"#,
        r#"{"s":"abc\u00e9\n"}"#,
    ] {
        agree(&s, doc, false);
    }
    // Where exactly the automaton refuses: the closing quote below minLength ...
    assert!(prefix_ok(&s, r#"{"s":"a"#));
    assert!(!prefix_ok(&s, r#"{"s":"a""#));
    assert!(!prefix_ok(&s, r#"{"s":"\ud83d\ude00""#));
    assert!(prefix_ok(&s, r#"{"s":"\ud83d\ude00x""#));
    // ... and any new character (lead byte or backslash) at maxLength, but not the rest of one.
    assert!(prefix_ok(&s, r#"{"s":"abcd"#));
    for next in ["e", "\\", "é", "\""] {
        let text = format!(r#"{{"s":"abcd{next}"#);
        assert_eq!(prefix_ok(&s, &text), next == "\"", "{text}");
    }
    assert!(prefix_ok(&s, r#"{"s":"abc\ud83d\ude00""#));
    assert!(!prefix_ok(&s, r#"{"s":"abcd\u"#));
    assert!(s.prefix().feed_all(b"{\"s\":\"abc\xf0\x9f\x98"));
    assert!(s.prefix().feed_all(b"{\"s\":\"abc\xf0\x9f\x98\x80\""));
    assert!(!s.prefix().feed_all(b"{\"s\":\"abcd\xf0"));
    assert!(!s.prefix().feed_all(b"{\"s\":\"abc\xf0\x9f\x98\x80\x80"));
    assert!(!s.prefix().feed_all(b"{\"s\":\"ab\xf0c\x80"));
    // At maxLength only the closing quote may follow: there is always a way on.
    let mut p = s.prefix();
    assert!(p.feed_all(br#"{"s":"abcd"#));
    let allowed: Vec<u8> = (0..=255u8).filter(|&b| p.accepts(&[b])).collect();
    assert_eq!(allowed, vec![b'"']);
}

#[test]
fn string_length_limits_apply_to_strings_only() {
    // maxLength 0 still allows "".
    let z = schema(r#"{"type":"string","maxLength":0}"#);
    accepts_doc(&z, r#""""#);
    assert!(!prefix_ok(&z, r#""a"#));
    // Other types are unconstrained by string lengths.
    let t = schema(r#"{"type":["string","integer"],"maxLength":1}"#);
    accepts_doc(&t, "12345 ");
    agree(&t, r#""ab""#, false);
    agree(&t, r#""a""#, true);
    // Without `type`, string keywords generate strings (like array and object keywords).
    let u = schema(r#"{"minLength":1}"#);
    accepts_doc(&u, r#""x""#);
    assert!(!prefix_ok(&u, "1"));
    // enum/const values are kept only when their length fits.
    let e = schema(r#"{"type":["string","integer"],"enum":["ab","abc",1],"maxLength":2}"#);
    accepts_doc(&e, r#""ab""#);
    accepts_doc(&e, "1 ");
    assert!(!prefix_ok(&e, r#""abc"#));
    assert!(!e.validate(&serde_json::json!("abc")));
    // Limits above u32::MAX are clamped, like item counts.
    let big = schema(r#"{"type":"string","minLength":0,"maxLength":99999999999999}"#);
    accepts_doc(&big, r#""a long string""#);
}

#[test]
fn invalid_and_unsatisfiable_string_lengths() {
    for (text, path) in [
        (r#"{"type":"string","maxLength":-1}"#, "#/maxLength"),
        (r#"{"maxLength":1.5}"#, "#/maxLength"),
        (r#"{"minLength":"3"}"#, "#/minLength"),
        (
            r#"{"properties":{"a":{"type":"string","minLength":null}}}"#,
            "#/properties/a/minLength",
        ),
    ] {
        match Schema::parse(text) {
            Err(SchemaError::Invalid { path: p, reason }) => {
                assert_eq!(p, path, "{text}");
                assert!(reason.contains("non-negative integer"), "{text}: {reason}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    assert_eq!(
        Schema::parse(r#"{"type":"string","minLength":5,"maxLength":2}"#).unwrap_err(),
        SchemaError::Unsatisfiable { path: "#".into() }
    );
    // Only the string type is pruned when other types remain.
    let s = schema(r#"{"type":["string","null"],"minLength":5,"maxLength":2}"#);
    accepts_doc(&s, "null");
    assert!(!prefix_ok(&s, r#"""#));
    // A required property that can never be a string makes its object unsatisfiable too.
    let e = Schema::parse(
        r#"{"type":"object","properties":{"a":{"type":"string","minLength":3,"maxLength":1}},
            "required":["a"]}"#,
    )
    .unwrap_err();
    assert!(matches!(e, SchemaError::Unsatisfiable { .. }), "{e}");
    // An optional one is only never offered.
    let o = schema(
        r#"{"type":"object","properties":{"a":{"type":"string","minLength":3,"maxLength":1}},
            "additionalProperties":false}"#,
    );
    assert!(!prefix_ok(&o, r#"{"a"#));
    accepts_doc(&o, "{}");
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
