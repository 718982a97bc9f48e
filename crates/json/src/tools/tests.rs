use std::borrow::Cow;

use agora_types::{ChatMessage, Tool, ToolCall, ToolChoice, Tools};
use serde_json::{Value, json};

use super::*;
use crate::schema::Schema;

fn tool(name: &str, parameters: Value) -> Tool {
    Tool {
        name: name.into(),
        description: format!("does {name}"),
        parameters: parameters.to_string(),
    }
}

fn weather() -> Tool {
    tool(
        "get_weather",
        json!({"type": "object", "properties": {"city": {"type": "string"},
               "unit": {"enum": ["c", "f"]}}, "required": ["city"], "additionalProperties": false}),
    )
}

fn time() -> Tool {
    tool(
        "get_time",
        json!({"type": "object", "properties": {"zone": {"type": "integer"}}, "required": ["zone"]}),
    )
}

fn tools(choice: ToolChoice, parallel: bool) -> Tools {
    Tools {
        list: vec![weather(), time()],
        choice,
        parallel,
    }
}

fn compiled(t: &Tools) -> Schema {
    output_schema(t, None).unwrap().1
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

#[test]
fn auto_accepts_offered_calls_and_text_and_nothing_else() {
    let s = compiled(&tools(ToolChoice::Auto, true));
    let paris = call("get_weather", json!({"city": "Paris"}));
    let utc = call("get_time", json!({"zone": 0}));
    assert!(s.validate(&json!({"tool_calls": [paris]})));
    assert!(s.validate(&json!({"tool_calls": [paris, utc]})));
    assert!(s.validate(&json!({"content": "It is sunny."})));
    // A name not offered, arguments outside the schema, a call with a name of the other tool.
    assert!(!s.validate(&json!({"tool_calls": [call("rm_rf", json!({}))]})));
    assert!(!s.validate(&json!({"tool_calls": [call("get_weather", json!({"town": "Paris"}))]})));
    assert!(!s.validate(&json!({"tool_calls": [call("get_time", json!({"city": "Paris"}))]})));
    assert!(!s.validate(&json!({"tool_calls": []})));
    assert!(!s.validate(&json!({"content": "x", "tool_calls": [paris]})));
}

#[test]
fn arguments_use_declared_keys_only_unless_the_schema_allows_more() {
    let open = tool(
        "f",
        json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {}}}},
               "required": ["a"]}),
    );
    let free = tool(
        "g",
        json!({"type": "object", "properties": {"a": {}}, "additionalProperties": true}),
    );
    let t = Tools {
        list: vec![open, free],
        choice: ToolChoice::Required,
        parallel: true,
    };
    let s = compiled(&t);
    assert!(s.validate(&json!({"tool_calls": [call("f", json!({"a": {"b": 1}}))]})));
    assert!(!s.validate(&json!({"tool_calls": [call("f", json!({"a": {"b": 1}, "type": "x"}))]})));
    assert!(!s.validate(&json!({"tool_calls": [call("f", json!({"a": {"b": 1, "c": 2}}))]})));
    assert!(s.validate(&json!({"tool_calls": [call("g", json!({"a": 1, "z": 2}))]})));
}

#[test]
fn each_choice_bounds_the_output() {
    let paris = call("get_weather", json!({"city": "Paris", "unit": "c"}));
    let utc = call("get_time", json!({"zone": 0}));
    let required = compiled(&tools(ToolChoice::Required, true));
    assert!(required.validate(&json!({"tool_calls": [paris]})));
    assert!(!required.validate(&json!({"content": "no"})));
    let named = compiled(&tools(ToolChoice::Function("get_time".into()), true));
    assert!(named.validate(&json!({"tool_calls": [utc]})));
    assert!(!named.validate(&json!({"tool_calls": [paris]})));
    assert!(!named.validate(&json!({"tool_calls": [utc, utc]})));
    let single = compiled(&tools(ToolChoice::Auto, false));
    assert!(single.validate(&json!({"tool_calls": [paris]})));
    assert!(!single.validate(&json!({"tool_calls": [paris, utc]})));
    let missing = Tools {
        choice: ToolChoice::Function("nope".into()),
        ..tools(ToolChoice::Auto, true)
    };
    assert_eq!(output_schema(&missing, None).unwrap_err().at, "tool_choice");
}

#[test]
fn a_structured_text_answer_follows_the_response_schema() {
    let content =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let s = output_schema(&tools(ToolChoice::Auto, true), Some(&content))
        .unwrap()
        .1;
    assert!(s.validate(&json!({"content": {"n": 3}})));
    assert!(!s.validate(&json!({"content": "three"})));
}

#[test]
fn definitions_and_recursion_still_resolve_once_nested() {
    let tree = tool(
        "plant",
        json!({"$defs": {"node": {"type": "object", "properties": {
                  "name": {"type": "string"},
                  "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                  "required": ["name"], "additionalProperties": false}},
               "type": "object", "properties": {"root": {"$ref": "#/$defs/node"},
                  "again": {"$ref": "#"}}, "required": ["root"]}),
    );
    let t = Tools {
        list: vec![weather(), tree],
        choice: ToolChoice::Required,
        parallel: true,
    };
    let s = compiled(&t);
    let good = json!({"root": {"name": "a", "kids": [{"name": "b"}]},
                      "again": {"root": {"name": "c"}}});
    assert!(s.validate(&json!({"tool_calls": [call("plant", good)]})));
    let bad = json!({"root": {"name": "a", "kids": [{"label": "b"}]}});
    assert!(!s.validate(&json!({"tool_calls": [call("plant", bad)]})));
    let bad_again = json!({"root": {"name": "a"}, "again": {"root": 1}});
    assert!(!s.validate(&json!({"tool_calls": [call("plant", bad_again)]})));
}

#[test]
fn more_functions_than_one_any_of_holds_are_all_callable() {
    let list: Vec<Tool> = (0..MAX_TOOLS)
        .map(|i| {
            tool(
                &format!("f{i}"),
                json!({"type": "object", "properties": {"x": {"const": i}}, "required": ["x"]}),
            )
        })
        .collect();
    let t = Tools {
        list,
        choice: ToolChoice::Required,
        parallel: true,
    };
    let s = compiled(&t);
    for i in 0..MAX_TOOLS {
        assert!(
            s.validate(&json!({"tool_calls": [call(&format!("f{i}"), json!({"x": i}))]})),
            "f{i}"
        );
        assert!(!s.validate(&json!({"tool_calls": [call(&format!("f{i}"), json!({"x": i + 1}))]})));
    }
    // And the automaton can generate each of them byte by byte.
    for i in [0, 15, 16, MAX_TOOLS - 1] {
        let text = json!({"tool_calls": [call(&format!("f{i}"), json!({"x": i}))]}).to_string();
        let mut p = s.prefix();
        assert!(p.feed_all(text.as_bytes()) && p.is_complete(), "{text}");
    }
    let over = Tools {
        list: (0..=MAX_TOOLS)
            .map(|i| tool(&format!("f{i}"), json!({})))
            .collect(),
        ..t
    };
    assert_eq!(output_schema(&over, None).unwrap_err().at, "tools");
}

#[test]
fn a_function_is_checked_with_the_place_of_its_fault() {
    assert!(check_tool(&weather()).is_ok());
    let e = check_tool(&tool(
        "f",
        json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^a"}}}),
    ))
    .unwrap_err();
    assert_eq!(e.at, "function.parameters");
    assert!(
        e.reason.contains("#/properties/code") && e.reason.contains("pattern"),
        "{e}"
    );
    for bad in ["", "has space", "semi;colon", &"x".repeat(MAX_NAME + 1)] {
        assert_eq!(
            check_tool(&tool(bad, json!({}))).unwrap_err().at,
            "function.name",
            "{bad:?}"
        );
    }
}

#[test]
fn a_chat_without_tools_is_passed_through_untouched() {
    let m = vec![ChatMessage::new("user", "hi")];
    assert!(matches!(prompt_messages(&m, None), Cow::Borrowed(_)));
}

#[test]
fn tool_turns_are_written_out_as_the_model_would_write_them() {
    let t = tools(ToolChoice::Auto, true);
    let mut asked = ChatMessage::new("assistant", "");
    asked.tool_calls.push(ToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: "{\"city\": \"Paris\"}".into(),
    });
    let mut answer = ChatMessage::new("tool", "22 C, sunny");
    answer.tool_call_id = Some("call_1".into());
    let chat = vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Weather in Paris?"),
        asked,
        answer,
    ];
    let out = prompt_messages(&chat, Some(&t));
    let roles: Vec<&str> = out.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert!(
        out[0]
            .content
            .starts_with("Be brief.\n\nYou can call functions.")
    );
    assert!(out[0].content.contains("\"name\": \"get_time\""));
    assert!(
        out.iter()
            .all(|m| m.tool_calls.is_empty() && m.tool_call_id.is_none())
    );
    // The call in the history is exactly an output the constraint allows.
    let shown: Value = serde_json::from_str(&out[2].content).unwrap();
    assert!(compiled(&t).validate(&shown));
    assert_eq!(shown["tool_calls"][0]["arguments"]["city"], "Paris");
    let result: Value = serde_json::from_str(&out[3].content).unwrap();
    assert_eq!(
        result,
        json!({"tool_result": {"name": "get_weather", "content": "22 C, sunny"}})
    );
    // Without a system message the instruction opens the chat; the same input, the same prompt.
    let out2 = prompt_messages(&chat[1..], Some(&t));
    assert_eq!(out2[0].role, "system");
    assert!(out2[0].content.starts_with("You can call functions."));
    assert_eq!(prompt_messages(&chat, Some(&t)), out);
}

#[test]
fn the_instruction_says_what_each_choice_allows() {
    let auto = instruction(&tools(ToolChoice::Auto, true));
    assert!(auto.contains("{\"content\":") && !auto.contains("must"));
    assert!(instruction(&tools(ToolChoice::Required, true)).contains("must call at least one"));
    assert!(
        instruction(&tools(ToolChoice::Function("get_time".into()), true))
            .contains("must call the function get_time")
    );
    assert!(instruction(&tools(ToolChoice::Auto, false)).contains("one function at a time"));
}
