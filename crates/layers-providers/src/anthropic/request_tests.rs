use serde_json::{json, Value};

use super::*;

fn req(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

/// The body as Anthropic receives it.
fn wire(body: &MessagesRequest) -> Value {
    serde_json::from_slice(&body.encode().unwrap()).unwrap()
}

fn build_ok(v: Value) -> (Value, Mode) {
    let (body, mode) = build(&req(v), "claude-up", false, 8192).unwrap();
    (wire(&body), mode)
}

fn refused(v: Value) -> String {
    match build(&req(v), "m", false, 10) {
        Err(ProviderError::Unsupported { param, .. }) => param,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn system_turns_images_and_parameters() {
    let (body, mode) = build_ok(json!({
        "model": "anthropic/claude", "temperature": 0.3, "top_p": 0.9, "stop": "END", "user": "u-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}
            ]},
            {"role": "user", "content": "Second user message merges."},
            {"role": "assistant", "content": "Un chat."},
            {"role": "user", "content": "Merci"}
        ]
    }));
    assert!(!mode.json_tool);
    assert_eq!(body["model"], "claude-up");
    assert_eq!(body["max_tokens"], 8192, "the model's cap when the client set none");
    assert_eq!(body["system"], json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}]));
    assert_eq!(body["temperature"], 0.3);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(body["metadata"]["user_id"], "u-1");
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["role"], "user");
    let c = msgs[0]["content"].as_array().unwrap();
    assert_eq!(c.len(), 4);
    assert_eq!(c[1]["source"], json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}));
    assert_eq!(c[2]["source"], json!({"type": "url", "url": "https://example.com/cat.jpg"}));
    assert_eq!(c[3]["text"], "Second user message merges.");
    assert_eq!(msgs[1], json!({"role": "assistant", "content": [{"type": "text", "text": "Un chat."}]}));
    assert!(body.get("stream").is_none());
}

#[test]
fn tools_tool_calls_and_results() {
    let (body, _) = build_ok(json!({
        "model": "a/b", "max_tokens": 300, "parallel_tool_calls": false,
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]}
        ]
    }));
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["tools"][0]["name"], "get_weather");
    assert_eq!(body["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}));
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(
        msgs[1]["content"][1],
        json!({"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}})
    );
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(
        msgs[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C"}]})
    );
    assert_eq!(msgs[2]["content"][1]["tool_use_id"], "call_2");
}

#[test]
fn json_modes_thinking_cache_and_pass_through() {
    let (body, mode) = build_ok(json!({
        "model": "a/b", "cache": true,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
        "anthropic": {"top_k": 5},
        "openai": {"store": true},
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "go"}]
    }));
    assert!(mode.json_tool);
    assert_eq!(body["tools"][0]["name"], JSON_TOOL);
    assert_eq!(body["tools"][0]["input_schema"]["properties"]["n"]["type"], "integer");
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
    assert_eq!(body["top_k"], 5);
    assert!(body.get("store").is_none(), "another provider's options stay out");
    assert_eq!(body["system"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(body["messages"][0]["content"][0]["cache_control"], json!({"type": "ephemeral"}));

    let (body, _) = build_ok(json!({"model": "a/b", "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "think"}]}));
    assert_eq!(body["thinking"], json!({"type": "enabled", "budget_tokens": 2048}));
    let (body, _) = build_ok(json!({"model": "a/b", "reasoning_effort": "medium",
        "messages": [{"role": "user", "content": "think"}]}));
    assert_eq!(body["thinking"]["budget_tokens"], 4096);
    let (streamed, _) =
        build(&req(json!({"model": "a/b", "messages": [{"role": "user", "content": "x"}]})), "m", true, 5).unwrap();
    assert_eq!(wire(&streamed)["stream"], true);
}

#[test]
fn what_anthropic_cannot_do_is_refused_by_name() {
    let user = json!([{"role": "user", "content": "hi"}]);
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "n": 2})), "n");
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "logprobs": true})), "logprobs");
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "frequency_penalty": 0.5})), "frequency_penalty");
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "temperature": 1.5})), "temperature");
    assert_eq!(
        refused(
            json!({"model": "a/b", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})
        ),
        "messages[0].content[0]"
    );
    assert_eq!(
        refused(
            json!({"model": "a/b", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}]}]})
        ),
        "messages[0].content[0]"
    );
    assert_eq!(
        refused(json!({"model": "a/b", "messages": [{"role": "tool", "content": "x"}]})),
        "messages[0].tool_call_id"
    );
    assert_eq!(
        refused(
            json!({"model": "a/b", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "not json"}}]}]})
        ),
        "messages[0].tool_calls[0].function.arguments"
    );
    assert_eq!(
        refused(json!({"model": "a/b", "messages": user, "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "f"}}]})),
        "response_format"
    );
    assert_eq!(
        refused(
            json!({"model": "a/b", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]})
        ),
        "messages[0].tool_calls[0].id",
        "a tool call without its id"
    );
    assert_eq!(
        refused(
            json!({"model": "a/b", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": 7}}]}]})
        ),
        "messages[0].tool_calls[0].function.name"
    );
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "user": {"id": 1}})), "user");
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "top_p": "high"})), "top_p");
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "stop": [1, 2]})), "stop");
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "tools": [{"type": "web_search"}]})), "tools[0].type");
    assert_eq!(refused(json!({"model": "a/b", "messages": user, "tool_choice": {"type": "function"}})), "tool_choice");
    // null means absent, as in OpenAI's API.
    assert!(build(&req(json!({"model": "a/b", "messages": user, "logprobs": null})), "m", false, 5).is_ok());
}

#[test]
fn the_option_object_wins_over_the_mapped_field_and_the_json_tool_stays_forced() {
    let (body, _) = build_ok(json!({"model": "a/b", "temperature": 0.2, "anthropic": {"temperature": 0.9, "top_k": 3},
        "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!((body["temperature"].as_f64(), body["top_k"].as_u64()), (Some(0.9), Some(3)));
    let text = String::from_utf8(
        build(
            &req(json!({"model": "a/b", "temperature": 0.2, "anthropic": {"temperature": 0.9},
        "messages": [{"role": "user", "content": "x"}]})),
            "m",
            false,
            5,
        )
        .unwrap()
        .0
        .encode()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(text.matches("\"temperature\"").count(), 1, "one key, never two: {text}");
    let (body, _) =
        build_ok(json!({"model": "a/b", "parallel_tool_calls": false, "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": JSON_TOOL, "disable_parallel_tool_use": true}));
}
