//! Function calling: the tools a request offers reach the job with the constraint that binds
//! the output, the envelope comes back as OpenAI's `tool_calls` (whole and as chunk deltas),
//! and a provider whose output breaks the tools' schemas is refused, not passed on.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::fake::{CHAT, Script};
use super::*;
use agora_market::protocol::Work;
use agora_types::ToolChoice;

/// A weather call, cut the way a tokenizer might cut it (keys split, arguments in pieces).
const CALL: &[&str] = &[
    "{\"tool",
    "_calls\": [{\"name\": \"get_",
    "weather\", \"argu",
    "ments\": {\"ci",
    "ty\": \"Par",
    "is\"}}]}",
];

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}},
          {"type": "function", "function": {"name": "get_time"}}])
}

fn ask(extra: Value) -> Value {
    let mut body = json!({"model": CHAT, "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tools()});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn a_tool_call_comes_back_as_tool_calls_and_the_job_is_bound_to_the_tools() {
    let (app, fake) = setup(Script::Tokens(CALL.to_vec()));
    let (status, body) = post_json(&app, "/v1/chat/completions", ask(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = &body["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["content"], Value::Null);
    let call = &c["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\": \"Paris\"}");
    let job = &fake.jobs()[0];
    let Work::Chat {
        tools: Some(tools), ..
    } = &job.work
    else {
        panic!("the job carries the tools");
    };
    assert_eq!(tools.choice, ToolChoice::Auto);
    assert!(
        !tools.parallel,
        "one call per answer unless parallel_tool_calls says otherwise"
    );
    assert_eq!(
        tools.list[1].parameters,
        "{\"properties\":{},\"type\":\"object\"}"
    );
    let schema = agora_json::Schema::parse(job.sampling.json_schema.as_deref().unwrap()).unwrap();
    assert!(schema.validate(&json!({"tool_calls": [{"name": "get_time", "arguments": {}}]})));
    assert!(!schema.validate(&json!({"tool_calls": [{"name": "get_weather", "arguments": {}}]})));
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_as_openai_deltas() {
    let (app, _) = setup(Script::Tokens(CALL.to_vec()));
    let (status, text) = send(
        &app,
        post(
            "/v1/chat/completions",
            Some(KEY),
            ask(json!({"stream": true})).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let evs = events(&text);
    assert_eq!(evs.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = evs[..evs.len() - 1].iter().map(|e| json_exact(e)).collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    // The first names the call; the arguments come in more than one piece and add up.
    assert!(deltas.len() >= 2, "{text}");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert_eq!(deltas[0]["type"], "function");
    assert!(deltas[0]["id"].as_str().unwrap().starts_with("call_"));
    assert!(
        deltas[1..]
            .iter()
            .all(|d| d.get("id").is_none() && d["index"] == 0)
    );
    let arguments: String = deltas
        .iter()
        .map(|d| d["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(arguments, "{\"city\": \"Paris\"}");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("content").is_none()
                || c["choices"][0]["delta"]["content"] == "")
    );
    let last = &chunks[chunks.len() - 1]["choices"][0];
    assert_eq!(last["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn a_text_answer_under_auto_is_plain_content_whole_and_streamed() {
    let answer = vec!["{\"content\": \"It is ", "sunny \\u00e9\\n", "\"}"];
    let (app, _) = setup(Script::Tokens(answer.clone()));
    let (_, body) = post_json(&app, "/v1/chat/completions", ask(json!({}))).await;
    let c = &body["choices"][0];
    assert_eq!(c["message"]["content"], "It is sunny é\n");
    assert!(c["message"].get("tool_calls").is_none());
    assert_eq!(c["finish_reason"], "stop");
    let (app, _) = setup(Script::Tokens(answer));
    let (_, text) = send(
        &app,
        post(
            "/v1/chat/completions",
            Some(KEY),
            ask(json!({"stream": true})).to_string(),
        ),
    )
    .await;
    let content: String = events(&text)
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| json_exact(e))
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "It is sunny é\n");
}

#[tokio::test]
async fn a_provider_that_calls_a_function_not_offered_is_refused() {
    let liar = vec!["{\"tool_calls\": [{\"name\": \"rm_rf\", \"arguments\": {}}]}"];
    let (app, _) = setup(Script::Tokens(liar.clone()));
    let (status, body) = post_json(&app, "/v1/chat/completions", ask(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_error(&body, "server_error", Some("provider_output"), None);
    // Streamed: the stream ends with the error instead of a call to a function nobody offered.
    let (app, _) = setup(Script::Tokens(liar));
    let (_, text) = send(
        &app,
        post(
            "/v1/chat/completions",
            Some(KEY),
            ask(json!({"stream": true})).to_string(),
        ),
    )
    .await;
    assert!(!text.contains("rm_rf"), "{text}");
    let evs = events(&text);
    let last = json_exact(evs.last().unwrap());
    assert_error(&last, "server_error", Some("provider_output"), None);
    // Arguments outside the parameters' schema are refused the same way.
    let (app, _) = setup(Script::Tokens(vec![
        "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"town\": 1}}]}",
    ]));
    let (status, _) = post_json(&app, "/v1/chat/completions", ask(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn tool_choice_shapes_the_constraint_and_none_sends_no_tools() {
    let (app, fake) = setup(Script::Tokens(CALL.to_vec()));
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    for (choice, parallel) in [
        (json!("required"), true),
        (named.clone(), true),
        (json!("none"), true),
    ] {
        let (status, _) = post_json(
            &app,
            "/v1/chat/completions",
            ask(json!({"tool_choice": choice, "parallel_tool_calls": parallel})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let jobs = fake.jobs();
    let tools = |i: usize| match &jobs[i].work {
        Work::Chat { tools, .. } => tools.clone(),
        _ => panic!("chat"),
    };
    let required = tools(0).unwrap();
    assert_eq!(
        (required.choice, required.parallel),
        (ToolChoice::Required, true)
    );
    assert_eq!(
        tools(1).unwrap().choice,
        ToolChoice::Function("get_weather".into())
    );
    assert_eq!(tools(2), None);
    assert_eq!(jobs[2].sampling.json_schema, None);
    assert!(!jobs[2].sampling.json);
}

#[tokio::test]
async fn a_tool_loop_history_reaches_the_job() {
    let (app, fake) = setup(Script::Tokens(vec!["{\"content\": \"Sunny.\"}"]));
    let history = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 C"}]);
    let (status, body) = post_json(
        &app,
        "/v1/chat/completions",
        ask(json!({"messages": history})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Sunny.");
    let Work::Chat { messages, .. } = &fake.jobs()[0].work else {
        panic!("chat");
    };
    assert_eq!(messages[1].tool_calls[0].name, "get_weather");
    assert_eq!(messages[2].tool_call_id.as_deref(), Some("call_1"));
}

#[tokio::test]
async fn bad_tools_are_refused_naming_their_place() {
    let (app, fake) = setup(Script::Tokens(CALL.to_vec()));
    let pattern = json!([{"type": "function", "function": {"name": "f", "parameters":
        {"type": "object", "properties": {"code": {"type": "string", "pattern": "^a"}}}}}]);
    let cases = [
        (
            ask(json!({"tools": pattern})),
            "tools[0].function.parameters",
            "#/properties/code",
        ),
        (ask(json!({"tools": []})), "tools", "between 1 and"),
        (
            ask(json!({"tools": [{"type": "retrieval", "function": {"name": "f"}}]})),
            "tools[0].type",
            "retrieval",
        ),
        (
            ask(json!({"tools": [{"type": "function", "function": {"name": "bad name"}}]})),
            "tools[0].function.name",
            "bad name",
        ),
        (
            ask(json!({"tool_choice": {"type": "function", "function": {"name": "nope"}}})),
            "tool_choice",
            "nope",
        ),
        (
            ask(json!({"tool_choice": "sometimes"})),
            "tool_choice",
            "required",
        ),
        (
            json!({"model": CHAT, "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
            "tool_choice",
            "only allowed when tools",
        ),
        (
            ask(json!({"messages": [{"role": "tool", "tool_call_id": "call_9", "content": "x"}]})),
            "messages",
            "call_9",
        ),
        (
            ask(json!({"messages": [{"role": "tool", "content": "x"}]})),
            "messages",
            "tool_call_id",
        ),
    ];
    for (body, param, needle) in cases {
        let (status, got) = post_json(&app, "/v1/chat/completions", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let msg = assert_error(&got, "invalid_request_error", None, Some(param));
        assert!(msg.contains(needle), "{msg}");
    }
    assert!(fake.jobs().is_empty(), "no job runs for a refused request");
}
