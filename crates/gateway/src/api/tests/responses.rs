//! `POST /v1/responses`: text in and out, instructions, a continuation through
//! `previous_response_id` (kept per key), function tools, structured output, the typed events
//! of a stream, and refusals naming their place.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::fake::{CHAT, Script};
use super::*;
use agora_market::protocol::Work;

const URL: &str = "/v1/responses";

fn chat_of(job: &crate::relay::CompletionJob) -> Vec<agora_types::ChatMessage> {
    match &job.work {
        Work::Chat { messages, .. } => messages.clone(),
        _ => panic!("chat work"),
    }
}

/// The typed events of a stream: (event name, data), one per blank-line-separated block.
fn typed_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let field = |k: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap_or_else(|| panic!("no {k} in {block:?}"))
                    .to_string()
            };
            (field("event: "), json_exact(&field("data: ")))
        })
        .collect()
}

#[tokio::test]
async fn a_response_and_its_continuation() {
    let (app, fake) = setup(Script::Tokens(vec!["Bon", "jour"]));
    let (status, first) = post_json(
        &app,
        URL,
        json!({"model": CHAT, "input": "Say hello in French.", "instructions": "Be brief."}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["object"], "response");
    assert_eq!(first["status"], "completed");
    let id = first["id"].as_str().unwrap();
    assert!(id.starts_with("resp_"));
    let item = &first["output"][0];
    assert_eq!(
        (&item["type"], &item["role"]),
        (&json!("message"), &json!("assistant"))
    );
    assert_eq!(
        item["content"][0],
        json!({"type": "output_text", "text": "Bonjour", "annotations": []})
    );
    assert_eq!(first["usage"]["output_tokens"], 2);
    assert_eq!(first["instructions"], "Be brief.");
    assert_eq!(first["agora"]["charged"], "42");

    // The next turn continues it: earlier input and output, then the new input; the earlier
    // instructions are not carried over.
    let (status, second) = post_json(
        &app,
        URL,
        json!({"model": CHAT, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Again?"}]}],
            "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["previous_response_id"], id);
    let turns: Vec<(String, String)> = chat_of(&fake.jobs()[1])
        .into_iter()
        .map(|m| (m.role, m.content))
        .collect();
    let want: Vec<(String, String)> = [
        ("user", "Say hello in French."),
        ("assistant", "Bonjour"),
        ("user", "Again?"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    assert_eq!(turns, want);
    assert_eq!(chat_of(&fake.jobs()[0])[0].role, "system");

    // Kept for its key: GET returns it; another key sees nothing to read or continue.
    let (status, got) = send(&app, get(&format!("{URL}/{id}"), Some(KEY))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_exact(&got)["id"], id);
    let (status, body) = send(
        &app,
        post(
            URL,
            Some(OTHER),
            json!({"model": CHAT, "input": "hi", "previous_response_id": id}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(
        &json_exact(&body),
        "invalid_request_error",
        Some("response_not_found"),
        Some("previous_response_id"),
    );
    // store: false keeps nothing.
    let (_, unkept) = post_json(
        &app,
        URL,
        json!({"model": CHAT, "input": "x", "store": false}),
    )
    .await;
    let (status, _) = send(
        &app,
        get(
            &format!("{URL}/{}", unkept["id"].as_str().unwrap()),
            Some(KEY),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_streamed_response_sends_the_typed_events_in_order() {
    let (app, _) = setup(Script::Tokens(vec!["Bon", "jour"]));
    let (status, text) = send(
        &app,
        post(
            URL,
            Some(KEY),
            json!({"model": CHAT, "input": "hi", "stream": true}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let evs = typed_events(&text);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (name, data)) in evs.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
    }
    assert_eq!(evs[4].1["delta"], "Bon");
    assert_eq!(evs[6].1["text"], "Bonjour");
    let done = &evs[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["id"], evs[2].1["item"]["id"]);
    assert_eq!(done["output"][0]["content"][0]["text"], "Bonjour");
}

const CALL: &[&str] = &[
    "{\"tool_calls\": [{\"name\": \"get_weather\", ",
    "\"arguments\": {\"city\": ",
    "\"Paris\"}}]}",
];

fn weather() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

#[tokio::test]
async fn a_function_tool_is_called_and_its_output_continues_the_response() {
    let (app, fake) = setup(Script::Tokens(CALL.to_vec()));
    let (status, first) = post_json(
        &app,
        URL,
        json!({"model": CHAT, "input": "Weather in Paris?", "tools": weather(),
            "tool_choice": {"type": "function", "name": "get_weather"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let call = &first["output"][0];
    assert_eq!(first["output"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], "{\"city\": \"Paris\"}");
    let call_id = call["call_id"].as_str().unwrap();
    assert!(call_id.starts_with("call_"));
    assert_eq!(
        first["tool_choice"],
        json!({"type": "function", "name": "get_weather"})
    );
    let Work::Chat { tools: Some(t), .. } = &fake.jobs()[0].work else {
        panic!("tools reach the job");
    };
    assert_eq!(
        t.choice,
        agora_types::ToolChoice::Function("get_weather".into())
    );

    // The tool's output continues the response.
    let (status, second) = post_json(
        &app,
        URL,
        json!({"model": CHAT, "previous_response_id": first["id"], "tools": weather(),
            "input": [{"type": "function_call_output", "call_id": call_id, "output": "22 C"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let turns = chat_of(&fake.jobs()[1]);
    assert_eq!(turns[1].tool_calls[0].id, call_id);
    assert_eq!(turns[2].role, "tool");
    assert_eq!(turns[2].tool_call_id.as_deref(), Some(call_id));

    // Streamed: the call's item opens with its name and its arguments arrive as deltas.
    let (_, text) = send(
        &app,
        post(
            URL,
            Some(KEY),
            json!({"model": CHAT, "input": "Weather?", "tools": weather(), "tool_choice": "required",
                "stream": true})
            .to_string(),
        ),
    )
    .await;
    let evs = typed_events(&text);
    let added = evs
        .iter()
        .find(|(n, _)| n == "response.output_item.added")
        .unwrap();
    assert_eq!(added.1["item"]["name"], "get_weather");
    let args: String = evs
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args, "{\"city\": \"Paris\"}");
    let done = &evs.last().unwrap().1;
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["output"][0]["arguments"], args);
    assert_eq!(done["response"]["output"][0]["id"], added.1["item"]["id"]);
}

#[tokio::test]
async fn structured_output_binds_the_job() {
    let (app, fake) = setup(Script::Tokens(vec!["{\"n\": 3}"]));
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let (status, body) = post_json(
        &app,
        URL,
        json!({"model": CHAT, "input": "Count.", "text": {"format": {"type": "json_schema", "name": "count", "schema": schema}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["text"]["format"]["type"], "json_schema");
    let job = &fake.jobs()[0];
    assert_eq!(
        serde_json::from_str::<Value>(job.sampling.json_schema.as_deref().unwrap()).unwrap(),
        schema
    );
}

#[tokio::test]
async fn bad_responses_requests_are_refused_naming_their_place() {
    let (app, fake) = setup(Script::Tokens(vec!["x"]));
    let cases = [
        (
            json!({"model": CHAT, "input": [{"type": "reasoning", "summary": []}]}),
            "input[0]",
            "reasoning",
        ),
        (
            json!({"model": CHAT, "input": [{"type": "function_call_output", "call_id": "call_9", "output": "x"}]}),
            "input[0]",
            "call_9",
        ),
        (
            json!({"model": CHAT, "input": [{"role": "wizard", "content": "x"}]}),
            "input[0]",
            "wizard",
        ),
        (
            json!({"model": CHAT, "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
            "at least 1",
        ),
        (
            json!({"model": CHAT, "input": "x", "text": {"format": {"type": "json_schema", "schema":
                {"type": "string", "format": "email"}}}}),
            "text.format.schema",
            "format",
        ),
        (
            json!({"model": CHAT, "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
            "missing",
        ),
        (
            json!({"model": CHAT, "input": "x", "reasoning": {"effort": "high"}}),
            "reasoning",
            "Unrecognized",
        ),
        (json!({"model": CHAT, "input": []}), "input", "empty"),
    ];
    for (body, param, needle) in cases {
        let (status, got) = post_json(&app, URL, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {got}");
        let msg = assert_error(&got, "invalid_request_error", None, Some(param));
        assert!(msg.contains(needle), "{msg}");
    }
    assert!(fake.jobs().is_empty(), "no job runs for a refused request");
    let (status, _) = send(&app, get(&format!("{URL}/resp_nope"), Some(KEY))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
