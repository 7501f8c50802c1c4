//! The fake Bedrock Runtime, decoded by the real clients: `aws-sdk-bedrockruntime` (bearer
//! key auth, InvokeModel, InvokeModelWithResponseStream, CountTokens, modeled errors,
//! mid-stream exceptions, models without access) and boto3 (`tests/python/check_bedrock_boto3.py`:
//! the runtime operations and the control plane's ListInferenceProfiles and
//! ListFoundationModels); plus the raw wire format, Bedrock's request checks, the listings'
//! filters, pagination, catalog and faults, scenarios, recording, control endpoints and the
//! `ccp-fake-bedrock` binary.

// Test helpers fail loudly: a panic here is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::{Region, Token};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::count_tokens::CountTokensError;
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
use aws_sdk_bedrockruntime::operation::invoke_model_with_response_stream::InvokeModelWithResponseStreamError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseTokensRequest, CountTokensInput, InvokeModelTokensRequest, Message,
    ResponseStream,
};
use aws_sdk_bedrockruntime::Client;
use base64::Engine as _;
use ccp_tests::fake_anthropic::TOOL_RAN_OK;
use ccp_tests::fake_bedrock::{
    decode_event_stream, sha256_hex, BedrockCatalog, BedrockOperation, BedrockScenario, BedrockScenarioName,
    FakeBedrock, ListingFault, ListingFaultKind, Usage, DEFAULT_ALLOWED_BETAS, DEFAULT_TEXT, LISTING_GARBAGE,
    MODEL_ACCESS_DENIED,
};
use serde_json::{json, Value};

const KEY: &str = "ABSKQmVkcm9ja0FQSUtleS10ZXN0LWtleQ==";
const MODEL: &str = "global.anthropic.claude-sonnet-4-5-20250929-v1:0";
const MODEL_NAME: &str = "claude-sonnet-4-5-20250929";

fn start() -> FakeBedrock {
    FakeBedrock::start(&[KEY, "second-key"]).unwrap()
}

/// The real SDK client, with a bearer key, no retries, at the fake.
fn sdk(fake: &FakeBedrock, key: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(fake.url())
        .bearer_token(Token::new(key, None))
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

fn body(messages: Value) -> Value {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "messages": messages,
    })
}

fn hello() -> Value {
    body(json!([{"role": "user", "content": "say hi"}]))
}

fn blob(v: &Value) -> Blob {
    Blob::new(serde_json::to_vec(v).unwrap())
}

async fn invoke(client: &Client, v: &Value) -> Result<Value, SdkError<InvokeModelError>> {
    let out = client
        .invoke_model()
        .model_id(MODEL)
        .content_type("application/json")
        .accept("application/json")
        .body(blob(v))
        .send()
        .await?;
    assert_eq!(out.content_type(), "application/json");
    Ok(serde_json::from_slice(out.body().as_ref()).unwrap())
}

/// The decoded chunks of a stream, and the error it ended with, if any.
async fn stream(
    client: &Client,
    v: &Value,
) -> Result<(Vec<Value>, Option<ResponseStreamError>), SdkError<InvokeModelWithResponseStreamError>> {
    let mut out = client
        .invoke_model_with_response_stream()
        .model_id(MODEL)
        .content_type("application/json")
        .body(blob(v))
        .send()
        .await?;
    assert_eq!(out.content_type(), "application/json");
    let mut events = Vec::new();
    loop {
        match out.body.recv().await {
            Ok(Some(ResponseStream::Chunk(part))) => {
                let bytes = part.bytes().expect("a chunk has bytes");
                events.push(serde_json::from_slice(bytes.as_ref()).unwrap());
            }
            Ok(Some(other)) => panic!("unexpected stream member {other:?}"),
            Ok(None) => return Ok((events, None)),
            Err(e) => return Ok((events, Some(e.into_service_error()))),
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn collapsed<'a>(kinds: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = kinds.to_vec();
    out.dedup();
    out
}

fn status_of<E: std::fmt::Debug>(e: &SdkError<E>) -> u16 {
    e.raw_response().map(|r| r.status().as_u16()).unwrap_or_else(|| panic!("no raw response in {e:?}"))
}

// ---------------------------------------------------------------------------------------------
// The SDK

#[tokio::test]
async fn sdk_invoke_model_returns_the_message() {
    let fake = start();
    let client = sdk(&fake, KEY);
    let msg = invoke(&client, &hello()).await.unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["model"], MODEL_NAME);
    assert!(msg["id"].as_str().unwrap().starts_with("msg_bdrk_"), "{msg}");
    assert_eq!(msg["content"], json!([{"type": "text", "text": DEFAULT_TEXT}]));
    assert_eq!(msg["stop_reason"], "end_turn");
    let words = u64::try_from(DEFAULT_TEXT.split_whitespace().count()).unwrap();
    assert_eq!(msg["usage"]["output_tokens"], words + 1);

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path, "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
        "the SDK percent-encodes the model id"
    );
    assert_eq!(r.model_id.as_deref(), Some(MODEL));
    assert!(!r.streaming);
    assert_eq!(r.status, 200);
    assert!(r.key_accepted);
    assert!(r.key_was(KEY));
    assert_eq!(r.key_sha256.as_deref(), Some(sha256_hex(KEY).as_str()));
    assert_eq!(r.header("authorization"), Some("Bearer <redacted>"));
    let dump = serde_json::to_string(&reqs).unwrap();
    assert!(!dump.contains(KEY), "the key itself is never recorded");
    assert_eq!(r.body_json().unwrap(), hello());
    assert_eq!(r.usage.unwrap().output_tokens, words + 1);
    assert_eq!(r.scenario.as_ref().unwrap().name, BedrockScenarioName::Auto);
}

#[tokio::test]
async fn sdk_stream_yields_the_anthropic_events_in_order() {
    let fake = start();
    let client = sdk(&fake, "second-key");
    fake.enqueue(BedrockScenario::default().with_usage(Usage::new(120, 9, 30, 4)));
    let (events, err) = stream(&client, &hello()).await.unwrap();
    assert!(err.is_none(), "{err:?}");
    let kinds = types(&events);
    assert_eq!(
        collapsed(&kinds),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{kinds:?}"
    );
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, DEFAULT_TEXT);
    let start = &events[0]["message"];
    assert_eq!(start["model"], MODEL_NAME);
    assert_eq!(start["usage"]["input_tokens"], 120);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 30);
    assert_eq!(start["usage"]["output_tokens"], 1);
    let delta = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 9);
    let metrics = &events[events.len() - 1]["amazon-bedrock-invocationMetrics"];
    assert_eq!(metrics["inputTokenCount"], 120);
    assert_eq!(metrics["outputTokenCount"], 9);
    assert_eq!(metrics["cacheReadInputTokenCount"], 30);
    assert_eq!(metrics["cacheWriteInputTokenCount"], 4);
    assert!(metrics["invocationLatency"].as_u64().unwrap() >= 1);
    assert!(metrics["firstByteLatency"].as_u64().unwrap() >= 1);

    let r = &fake.requests()[0];
    assert!(r.streaming && r.key_was("second-key") && r.status == 200);
    assert!(r.path.ends_with("/invoke-with-response-stream"));
    assert_eq!(r.usage, Some(Usage::new(120, 9, 30, 4)));
}

#[tokio::test]
async fn sdk_tool_use_round_trip_by_default_rules() {
    let fake = start();
    let client = sdk(&fake, KEY);
    let tools = json!([{"name": "Bash", "description": "Run", "input_schema": {"type": "object"}}]);
    let mut first = body(json!([{"role": "user", "content": "do it\nrun echo"}]));
    first["tools"] = tools.clone();
    let (events, _) = stream(&client, &first).await.unwrap();
    let block = &events[1]["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "Bash");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_bdrk_"));
    let input: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    let input: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(input["command"], format!("echo {TOOL_RAN_OK}"));
    assert_eq!(events[events.len() - 2]["delta"]["stop_reason"], "tool_use");

    let mut second = body(json!([
        {"role": "user", "content": "do it\nrun echo"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": block["id"], "name": "Bash", "input": input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": [{"type": "text", "text": "TOOL_RAN_OK\n"}]}]},
    ]));
    second["tools"] = tools;
    let msg = invoke(&client, &second).await.unwrap();
    assert_eq!(msg["content"][0]["text"], format!("Tool said: {TOOL_RAN_OK}"));

    // Scripted answers win over the rules.
    fake.enqueue(BedrockScenario::tool_use("Read", json!({"file_path": "/etc/hosts"})));
    let msg = invoke(&client, &hello()).await.unwrap();
    assert_eq!(msg["content"][0]["name"], "Read");
    assert_eq!(msg["content"][0]["input"]["file_path"], "/etc/hosts");
    assert_eq!(msg["stop_reason"], "tool_use");
    fake.enqueue(BedrockScenario::text("scripted").with_model("claude-x"));
    let msg = invoke(&client, &hello()).await.unwrap();
    assert_eq!(msg["content"][0]["text"], "scripted");
    assert_eq!(msg["model"], "claude-x");
}

#[tokio::test]
async fn sdk_bad_key_is_unrecognized_client() {
    let fake = start();
    let client = sdk(&fake, "not-a-key");
    let err = invoke(&client, &hello()).await.unwrap_err();
    assert_eq!(status_of(&err), 403);
    let service = err.into_service_error();
    assert_eq!(service.code(), Some("UnrecognizedClientException"));
    assert_eq!(service.message(), Some("The security token included in the request is invalid."));
    let err = stream(&client, &hello()).await.unwrap_err();
    assert_eq!(err.into_service_error().code(), Some("UnrecognizedClientException"));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| !r.key_accepted && r.status == 403));
    assert!(reqs[0].key_was("not-a-key"));
    assert_eq!(reqs[0].error_type.as_deref(), Some("UnrecognizedClientException"));
    assert!(reqs[0].scenario.is_none());
}

#[tokio::test]
async fn sdk_throttling_is_the_modeled_variant() {
    let fake = start();
    let client = sdk(&fake, KEY);
    fake.enqueue(BedrockScenario::throttling());
    let err = invoke(&client, &hello()).await.unwrap_err();
    assert_eq!(status_of(&err), 429);
    match err.into_service_error() {
        InvokeModelError::ThrottlingException(e) => {
            assert_eq!(e.message(), Some("Too many requests, please wait before trying again."));
        }
        other => panic!("expected ThrottlingException, got {other:?}"),
    }
    fake.enqueue(BedrockScenario::throttling().with_message("slow down"));
    let err = stream(&client, &hello()).await.unwrap_err();
    match err.into_service_error() {
        InvokeModelWithResponseStreamError::ThrottlingException(e) => {
            assert_eq!(e.message(), Some("slow down"));
        }
        other => panic!("expected ThrottlingException, got {other:?}"),
    }
    // One request each: retries are off, and nothing else was queued.
    assert_eq!(fake.requests().len(), 2);
    assert!(invoke(&client, &hello()).await.is_ok());
}

#[tokio::test]
async fn sdk_model_stream_error_arrives_mid_stream() {
    let fake = start();
    let client = sdk(&fake, KEY);
    fake.enqueue(BedrockScenario::model_stream_error());
    let (events, err) = stream(&client, &hello()).await.unwrap();
    assert_eq!(types(&events), ["message_start", "content_block_start", "content_block_delta"]);
    match err {
        Some(ResponseStreamError::ModelStreamErrorException(e)) => {
            assert!(e.message().unwrap().contains("error while streaming"), "{e:?}");
        }
        other => panic!("expected ModelStreamErrorException, got {other:?}"),
    }
    let r = &fake.requests()[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.error_type.as_deref(), Some("modelStreamErrorException"));
    assert_eq!(r.usage.unwrap().output_tokens, 1);

    // The other exceptions a stream can end with.
    for (kind, check) in [
        (
            "throttlingException",
            (|e: &ResponseStreamError| matches!(e, ResponseStreamError::ThrottlingException(_)))
                as fn(&ResponseStreamError) -> bool,
        ),
        ("internalServerException", |e| matches!(e, ResponseStreamError::InternalServerException(_))),
        ("serviceUnavailableException", |e| matches!(e, ResponseStreamError::ServiceUnavailableException(_))),
        ("validationException", |e| matches!(e, ResponseStreamError::ValidationException(_))),
        ("modelTimeoutException", |e| matches!(e, ResponseStreamError::ModelTimeoutException(_))),
    ] {
        fake.enqueue(BedrockScenario::model_stream_error().with_stream_exception(kind));
        let (events, err) = stream(&client, &hello()).await.unwrap();
        assert_eq!(events.len(), 3);
        let err = err.unwrap_or_else(|| panic!("{kind}: no error"));
        assert!(check(&err), "{kind}: got {err:?}");
    }

    // Not streaming, the scenario is a 424 ModelErrorException.
    fake.enqueue(BedrockScenario::model_stream_error());
    let err = invoke(&client, &hello()).await.unwrap_err();
    assert_eq!(status_of(&err), 424);
    assert!(matches!(err.into_service_error(), InvokeModelError::ModelErrorException(_)));
}

#[tokio::test]
async fn sdk_sees_every_error_scenario() {
    let fake = start();
    let client = sdk(&fake, KEY);
    for (scenario, status, code) in [
        (BedrockScenario::throttling(), 429, "ThrottlingException"),
        (BedrockScenario::access_denied(), 403, "AccessDeniedException"),
        (BedrockScenario::unrecognized_client(), 403, "UnrecognizedClientException"),
        (BedrockScenario::validation(None), 400, "ValidationException"),
        (BedrockScenario::service_unavailable(), 503, "ServiceUnavailableException"),
        (BedrockScenario::internal(), 500, "InternalServerException"),
        (BedrockScenario::quota_exceeded(), 400, "ServiceQuotaExceededException"),
        (BedrockScenario::new(BedrockScenarioName::ModelError), 424, "ModelErrorException"),
        (BedrockScenario::new(BedrockScenarioName::ModelTimeout), 408, "ModelTimeoutException"),
        (BedrockScenario::new(BedrockScenarioName::ResourceNotFound), 404, "ResourceNotFoundException"),
        (
            BedrockScenario::error(
                429,
                "ModelNotReadyException",
                "The model is not ready to serve inference requests.",
            ),
            429,
            "ModelNotReadyException",
        ),
    ] {
        fake.enqueue(scenario.clone());
        let err = invoke(&client, &hello()).await.unwrap_err();
        assert_eq!(status_of(&err), status, "{scenario:?}");
        let service = err.into_service_error();
        assert_eq!(service.code(), Some(code), "{scenario:?}: {service:?}");
        assert!(service.message().is_some_and(|m| !m.is_empty()));
        // Modeled codes come back as their variants, not as `Unhandled`.
        if code != "UnrecognizedClientException" {
            assert!(!format!("{service:?}").starts_with("Unhandled"), "{code}: {service:?}");
        }
        fake.enqueue(scenario.clone());
        let err = stream(&client, &hello()).await.unwrap_err();
        assert_eq!(err.into_service_error().code(), Some(code));
    }
    let reqs = fake.requests();
    assert!(reqs.iter().all(|r| r.key_accepted && r.status >= 400));
}

#[tokio::test]
async fn sdk_validation_errors_for_model_stream_and_betas() {
    let fake = start();
    let client = sdk(&fake, KEY);
    let validation = |e: SdkError<InvokeModelError>| -> String {
        assert_eq!(status_of(&e), 400);
        match e.into_service_error() {
            InvokeModelError::ValidationException(v) => v.message().unwrap().to_owned(),
            other => panic!("expected ValidationException, got {other:?}"),
        }
    };
    // A body in the first-party API's shape.
    let mut b = hello();
    b["model"] = json!("claude-sonnet-4-5");
    b["stream"] = json!(true);
    let msg = validation(invoke(&client, &b).await.unwrap_err());
    assert!(msg.starts_with("Malformed input request: #: extraneous key [model] is not permitted"), "{msg}");
    assert!(msg.contains("extraneous key [stream] is not permitted"), "{msg}");
    assert!(msg.ends_with(", please reformat your input and try again."), "{msg}");
    let mut b = hello();
    b["stream"] = json!(true);
    let err = stream(&client, &b).await.unwrap_err();
    assert!(err.into_service_error().message().unwrap().contains("extraneous key [stream]"));
    let mut b = hello();
    b["service_tier"] = json!("auto");
    let msg = validation(invoke(&client, &b).await.unwrap_err());
    assert!(msg.contains("extraneous key [service_tier]"), "{msg}");

    // Required keys and the version.
    let msg = validation(invoke(&client, &json!({"max_tokens": 5, "messages": []})).await.unwrap_err());
    assert!(msg.contains("required key [anthropic_version] not found"), "{msg}");
    let mut b = hello();
    b["anthropic_version"] = json!("2023-06-01");
    let msg = validation(invoke(&client, &b).await.unwrap_err());
    assert!(msg.contains("#/anthropic_version"), "{msg}");
    let mut b = hello();
    b.as_object_mut().unwrap().remove("max_tokens");
    let msg = validation(invoke(&client, &b).await.unwrap_err());
    assert!(msg.contains("required key [max_tokens] not found"), "{msg}");

    // Betas.
    let mut b = hello();
    b["anthropic_beta"] = json!(["interleaved-thinking-2025-05-14", "claude-code-20250219"]);
    assert_eq!(validation(invoke(&client, &b).await.unwrap_err()), "invalid beta flag");
    b["anthropic_beta"] = json!("interleaved-thinking-2025-05-14");
    let msg = validation(invoke(&client, &b).await.unwrap_err());
    assert!(msg.contains("#/anthropic_beta: expected type: JSONArray"), "{msg}");
    b["anthropic_beta"] = json!(DEFAULT_ALLOWED_BETAS);
    invoke(&client, &b).await.unwrap();
    fake.set_allowed_betas(&["claude-code-20250219"]);
    assert_eq!(fake.allowed_betas(), ["claude-code-20250219"]);
    b["anthropic_beta"] = json!(["claude-code-20250219"]);
    invoke(&client, &b).await.unwrap();
    b["anthropic_beta"] = json!(["interleaved-thinking-2025-05-14"]);
    assert_eq!(validation(invoke(&client, &b).await.unwrap_err()), "invalid beta flag");

    // Every accepted key at once passes.
    let full = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "top_k": 5,
        "stop_sequences": ["\n\nHuman:"],
        "tools": [],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "adaptive"},
        "metadata": {"user_id": "u1"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": []},
    });
    invoke(&client, &full).await.unwrap();

    // A failed check does not take the queued scenario.
    fake.enqueue(BedrockScenario::text("kept"));
    let mut b = hello();
    b["model"] = json!("m");
    invoke(&client, &b).await.unwrap_err();
    assert_eq!(invoke(&client, &hello()).await.unwrap()["content"][0]["text"], "kept");
}

#[tokio::test]
async fn sdk_unknown_model_id_is_a_validation_error() {
    let fake = start();
    let client = sdk(&fake, KEY);
    for model in ["amazon.nova-pro-v1:0", "claude-sonnet-4-5", "meta.llama3-70b"] {
        let err = client.invoke_model().model_id(model).body(blob(&hello())).send().await.unwrap_err();
        assert_eq!(status_of(&err), 400);
        let e = err.into_service_error();
        assert_eq!(e.code(), Some("ValidationException"), "{model}");
        assert_eq!(e.message(), Some("The provided model identifier is invalid."));
    }
    // Region prefixes, bare ids and inference-profile ARNs are Claude.
    for (model, name) in [
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku-20241022"),
        ("anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-20250514-v1:0",
            "claude-sonnet-4-20250514",
        ),
    ] {
        let out = client.invoke_model().model_id(model).body(blob(&hello())).send().await.unwrap();
        let msg: Value = serde_json::from_slice(out.body().as_ref()).unwrap();
        assert_eq!(msg["model"], name, "{model}");
        assert_eq!(fake.requests().last().unwrap().model_id.as_deref(), Some(model));
    }
}

#[tokio::test]
async fn sdk_slow_and_paced() {
    let fake = start();
    let client = sdk(&fake, KEY);
    fake.enqueue(BedrockScenario::slow(400));
    let t = Instant::now();
    invoke(&client, &hello()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());
    fake.enqueue(BedrockScenario::text("a b c d").with_pace_ms(60));
    let t = Instant::now();
    let (events, _) = stream(&client, &hello()).await.unwrap();
    // 9 messages, 8 gaps of 60 ms.
    assert_eq!(events.len(), 9);
    assert!(t.elapsed() >= Duration::from_millis(480), "{:?}", t.elapsed());
    let latency = events[8]["amazon-bedrock-invocationMetrics"]["invocationLatency"].as_u64().unwrap();
    assert!(latency >= 480, "{latency}");
    fake.enqueue(BedrockScenario::new(BedrockScenarioName::Slow));
    let t = Instant::now();
    invoke(&client, &hello()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1000), "default delay");
}

// ---------------------------------------------------------------------------------------------
// CountTokens and models without access, through the SDK

/// CountTokens of an InvokeModel body.
async fn count(client: &Client, model: &str, v: &Value) -> Result<i32, SdkError<CountTokensError>> {
    let input = CountTokensInput::InvokeModel(InvokeModelTokensRequest::builder().body(blob(v)).build().unwrap());
    Ok(client.count_tokens().model_id(model).input(input).send().await?.input_tokens())
}

/// The fake's estimate for a body: its length / 100 + 1.
fn estimate(v: &Value) -> i32 {
    i32::try_from(serde_json::to_vec(v).unwrap().len() / 100 + 1).unwrap()
}

#[tokio::test]
async fn sdk_count_tokens_matches_what_invoke_reports() {
    let fake = start();
    let client = sdk(&fake, KEY);
    let long = body(json!([{"role": "user", "content": "word ".repeat(400)}]));
    let n = count(&client, MODEL, &long).await.unwrap();
    assert_eq!(n, estimate(&long));
    assert!(n > 20, "{n}");
    // The count is the input_tokens InvokeModel reports for the same body.
    let msg = invoke(&client, &long).await.unwrap();
    assert_eq!(msg["usage"]["input_tokens"], json!(n));
    assert_eq!(count(&client, MODEL, &hello()).await.unwrap(), estimate(&hello()));

    let r = &fake.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens");
    assert_eq!(r.operation, Some(BedrockOperation::CountTokens));
    assert!(!r.streaming && r.status == 200 && r.key_was(KEY));
    assert_eq!(r.usage.unwrap().input_tokens, u64::try_from(n).unwrap());
    // The SDK sends the body as base64 inside `input.invokeModel.body`.
    let sent = r.body_json().unwrap();
    let inner =
        base64::engine::general_purpose::STANDARD.decode(sent["input"]["invokeModel"]["body"].as_str().unwrap());
    assert_eq!(serde_json::from_slice::<Value>(&inner.unwrap()).unwrap(), long);
    assert_eq!(fake.requests()[1].operation, Some(BedrockOperation::InvokeModel));

    // The new models' profile ids (no date in them) are Claude ids.
    for (model, name) in [
        ("global.anthropic.claude-opus-5-5-v1:0", "claude-opus-5-5"),
        ("us.anthropic.claude-opus-5-5-v1:0", "claude-opus-5-5"),
        ("global.anthropic.claude-opus-4-8-v1:0", "claude-opus-4-8"),
    ] {
        assert_eq!(count(&client, model, &hello()).await.unwrap(), estimate(&hello()), "{model}");
        let out = client.invoke_model().model_id(model).body(blob(&hello())).send().await.unwrap();
        let msg: Value = serde_json::from_slice(out.body().as_ref()).unwrap();
        assert_eq!(msg["model"], name, "{model}");
    }

    // The Converse input variant is accepted too.
    let converse = ConverseTokensRequest::builder()
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("say hi".into()))
                .build()
                .unwrap(),
        )
        .build();
    let out = client.count_tokens().model_id(MODEL).input(CountTokensInput::Converse(converse)).send().await.unwrap();
    assert!(out.input_tokens() >= 1);
    let sent = fake.requests().last().unwrap().body_json().unwrap();
    assert_eq!(sent["input"]["converse"]["messages"][0]["content"][0]["text"], "say hi");

    // A scenario's usage sets the count; a scenario for another operation is left queued.
    fake.enqueue(BedrockScenario::text("for invoke").for_operation(BedrockOperation::InvokeModel));
    fake.enqueue(BedrockScenario::default().with_usage(Usage::new(4242, 0, 0, 0)));
    assert_eq!(count(&client, MODEL, &hello()).await.unwrap(), 4242);
    assert_eq!(count(&client, MODEL, &hello()).await.unwrap(), estimate(&hello()));
    assert_eq!(invoke(&client, &hello()).await.unwrap()["content"][0]["text"], "for invoke");
}

#[tokio::test]
async fn sdk_count_tokens_errors() {
    let fake = start();
    let err = count(&sdk(&fake, "not-a-key"), MODEL, &hello()).await.unwrap_err();
    assert_eq!(status_of(&err), 403);
    let e = err.into_service_error();
    assert_eq!(e.code(), Some("UnrecognizedClientException"));
    assert_eq!(e.message(), Some("The security token included in the request is invalid."));
    let r = &fake.requests()[0];
    assert!(!r.key_accepted && r.operation == Some(BedrockOperation::CountTokens));

    let client = sdk(&fake, KEY);
    let err = count(&client, "amazon.nova-pro-v1:0", &hello()).await.unwrap_err();
    assert_eq!(status_of(&err), 400);
    match err.into_service_error() {
        CountTokensError::ValidationException(e) => {
            assert_eq!(e.message(), Some("The provided model identifier is invalid."))
        }
        other => panic!("expected ValidationException, got {other:?}"),
    }
    // The body is checked as InvokeModel checks it.
    let mut b = hello();
    b["stream"] = json!(true);
    match count(&client, MODEL, &b).await.unwrap_err().into_service_error() {
        CountTokensError::ValidationException(e) => {
            assert!(e.message().unwrap().contains("extraneous key [stream] is not permitted"), "{e:?}")
        }
        other => panic!("expected ValidationException, got {other:?}"),
    }
    let mut b = hello();
    b["anthropic_beta"] = json!(["claude-code-20250219"]);
    let e = count(&client, MODEL, &b).await.unwrap_err().into_service_error();
    assert_eq!(e.message(), Some("invalid beta flag"));

    fake.enqueue(BedrockScenario::throttling());
    let err = count(&client, MODEL, &hello()).await.unwrap_err();
    assert_eq!(status_of(&err), 429);
    assert!(matches!(err.into_service_error(), CountTokensError::ThrottlingException(_)));
    fake.enqueue(BedrockScenario::access_denied());
    let err = count(&client, MODEL, &hello()).await.unwrap_err();
    assert_eq!(status_of(&err), 403);
    match err.into_service_error() {
        CountTokensError::AccessDeniedException(e) => assert_eq!(e.message(), Some(MODEL_ACCESS_DENIED)),
        other => panic!("expected AccessDeniedException, got {other:?}"),
    }
    fake.enqueue(BedrockScenario::service_unavailable());
    assert!(matches!(
        count(&client, MODEL, &hello()).await.unwrap_err().into_service_error(),
        CountTokensError::ServiceUnavailableException(_)
    ));
    fake.enqueue(BedrockScenario::slow(300));
    let t = Instant::now();
    count(&client, MODEL, &hello()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
}

#[tokio::test]
async fn sdk_disabled_model_is_access_denied() {
    let fake = start();
    let client = sdk(&fake, KEY);
    let opus41 = "us.anthropic.claude-opus-4-1-20250805-v1:0";
    // By Claude name, and by one profile id of a model (which covers its other ids).
    fake.set_disabled_models(&["claude-opus-4-1-20250805", "global.anthropic.claude-opus-5-5-v1:0"]);
    assert_eq!(fake.disabled_models(), ["claude-opus-4-1-20250805", "claude-opus-5-5"]);
    fake.enqueue(BedrockScenario::text("kept"));
    for model in [opus41, "us.anthropic.claude-opus-5-5-v1:0", "anthropic.claude-opus-4-1-20250805-v1:0"] {
        let err = client.invoke_model().model_id(model).body(blob(&hello())).send().await.unwrap_err();
        assert_eq!(status_of(&err), 403, "{model}");
        match err.into_service_error() {
            InvokeModelError::AccessDeniedException(e) => assert_eq!(e.message(), Some(MODEL_ACCESS_DENIED)),
            other => panic!("{model}: expected AccessDeniedException, got {other:?}"),
        }
        let err =
            client.invoke_model_with_response_stream().model_id(model).body(blob(&hello())).send().await.unwrap_err();
        assert!(matches!(err.into_service_error(), InvokeModelWithResponseStreamError::AccessDeniedException(_)));
        let err = count(&client, model, &hello()).await.unwrap_err();
        assert_eq!(status_of(&err), 403);
        assert!(matches!(err.into_service_error(), CountTokensError::AccessDeniedException(_)));
    }
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 9);
    assert!(reqs.iter().all(|r| r.key_accepted
        && r.status == 403
        && r.error_type.as_deref() == Some("AccessDeniedException")
        && r.scenario.is_none()));
    // Other models still answer, and the denied requests left the scenario queued.
    assert_eq!(invoke(&client, &hello()).await.unwrap()["content"][0]["text"], "kept");

    // The control endpoint replaces the list; an empty list enables everything again.
    let c = http();
    let r: Value = c
        .post(format!("{}/_fake/disabled_models", fake.url()))
        .json(&json!([MODEL]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["disabled_models"], json!([MODEL_NAME]));
    assert!(matches!(
        count(&client, MODEL, &hello()).await.unwrap_err().into_service_error(),
        CountTokensError::AccessDeniedException(_)
    ));
    count(&client, opus41, &hello()).await.unwrap();
    c.post(format!("{}/_fake/disabled_models", fake.url())).json(&json!([])).send().await.unwrap();
    let listed: Value =
        c.get(format!("{}/_fake/disabled_models", fake.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["disabled_models"], json!([]));
    invoke(&client, &hello()).await.unwrap();
    let bad = c.post(format!("{}/_fake/disabled_models", fake.url())).json(&json!({"x": 1})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

// ---------------------------------------------------------------------------------------------
// The raw wire format

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn raw_post(fake: &FakeBedrock, op: &str, key: Option<&str>, b: &Value) -> reqwest::Response {
    let mut req = http()
        .post(format!("{}/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/{op}", fake.url()))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(b).unwrap());
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    req.send().await.unwrap()
}

fn h<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<usize> = s.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test]
async fn wire_invoke_headers() {
    let fake = start();
    fake.enqueue(BedrockScenario::default().with_usage(Usage::new(11, 7, 5, 3)));
    let r = raw_post(&fake, "invoke", Some(KEY), &hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-type"), Some("application/json"));
    assert!(is_uuid(h(&r, "x-amzn-requestid").unwrap()));
    assert!(h(&r, "x-amzn-bedrock-invocation-latency").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(h(&r, "x-amzn-bedrock-input-token-count"), Some("11"));
    assert_eq!(h(&r, "x-amzn-bedrock-output-token-count"), Some("7"));
    assert_eq!(h(&r, "x-amzn-bedrock-cache-read-input-token-count"), Some("5"));
    assert_eq!(h(&r, "x-amzn-bedrock-cache-write-input-token-count"), Some("3"));
    let msg: Value = r.json().await.unwrap();
    assert_eq!(msg["usage"]["input_tokens"], 11);
    assert_eq!(msg["usage"]["cache_creation_input_tokens"], 3);

    // Errors: JSON `{"message"}` and the qualified `x-amzn-ErrorType`.
    fake.enqueue(BedrockScenario::throttling());
    let r = raw_post(&fake, "invoke", Some(KEY), &hello()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        h(&r, "x-amzn-errortype"),
        Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")
    );
    assert!(is_uuid(h(&r, "x-amzn-requestid").unwrap()));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Too many requests, please wait before trying again."})
    );
    let r = raw_post(&fake, "invoke", Some("nope"), &hello()).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        h(&r, "x-amzn-errortype"),
        Some("UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/")
    );
    let r = raw_post(&fake, "invoke", None, &hello()).await;
    assert_eq!(r.status(), 403);
    assert!(h(&r, "x-amzn-errortype").unwrap().starts_with("MissingAuthenticationTokenException:"));
    let r = http()
        .post(format!("{}/model/{MODEL}/converse", fake.url()))
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(h(&r, "x-amzn-errortype").unwrap().starts_with("UnknownOperationException:"));
}

#[tokio::test]
async fn wire_event_stream_frames() {
    let fake = start();
    let r = raw_post(&fake, "invoke-with-response-stream", Some(KEY), &hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-type"), Some("application/vnd.amazon.eventstream"));
    assert_eq!(h(&r, "x-amzn-bedrock-content-type"), Some("application/json"));
    assert!(is_uuid(h(&r, "x-amzn-requestid").unwrap()));
    let bytes = r.bytes().await.unwrap();
    let (frames, used) = decode_event_stream(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    let mut kinds = Vec::new();
    for f in &frames {
        assert_eq!(
            f.headers,
            [
                (":event-type".to_owned(), "chunk".to_owned()),
                (":content-type".to_owned(), "application/json".to_owned()),
                (":message-type".to_owned(), "event".to_owned()),
            ]
        );
        let payload: Value = serde_json::from_slice(&f.payload).unwrap();
        assert!(payload["p"].is_string(), "Bedrock's padding field");
        let event: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD.decode(payload["bytes"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        kinds.push(event["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds.first().map(String::as_str), Some("message_start"));
    assert_eq!(kinds.last().map(String::as_str), Some("message_stop"));
    assert!(!kinds.iter().any(|k| k == "ping"));

    fake.enqueue(BedrockScenario::model_stream_error().with_message("boom"));
    let r = raw_post(&fake, "invoke-with-response-stream", Some(KEY), &hello()).await;
    let bytes = r.bytes().await.unwrap();
    let (frames, _) = decode_event_stream(&bytes).unwrap();
    assert_eq!(frames.len(), 4);
    let last = &frames[3];
    assert_eq!(last.header(":message-type"), Some("exception"));
    assert_eq!(last.header(":exception-type"), Some("modelStreamErrorException"));
    assert_eq!(last.header(":content-type"), Some("application/json"));
    assert_eq!(serde_json::from_slice::<Value>(&last.payload).unwrap(), json!({"message": "boom"}));
}

#[tokio::test]
async fn control_endpoints_and_clear() {
    let fake = start();
    let c = http();
    let queued: Value = c
        .post(format!("{}/_fake/enqueue", fake.url()))
        .json(&json!([{"name": "text", "text": "one"}, {"name": "access_denied"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued["queued"], 2);
    let r = raw_post(&fake, "invoke", Some(KEY), &hello()).await;
    assert_eq!(r.json::<Value>().await.unwrap()["content"][0]["text"], "one");
    let r = raw_post(&fake, "invoke", Some(KEY), &hello()).await;
    assert_eq!(r.status(), 403);
    let list: Value = c.get(format!("{}/_fake/requests", fake.url())).send().await.unwrap().json().await.unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["model_id"], MODEL);
    assert_eq!(list[0]["body_json"], hello());
    assert_eq!(list[0]["key_sha256"], sha256_hex(KEY));
    assert_eq!(list[1]["error_type"], "AccessDeniedException");
    assert!(!serde_json::to_string(&list).unwrap().contains(KEY));

    let r: Value = c
        .post(format!("{}/_fake/allowed_betas", fake.url()))
        .json(&json!(["only-this"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["allowed_betas"], json!(["only-this"]));
    assert_eq!(fake.allowed_betas(), ["only-this"]);

    fake.enqueue(BedrockScenario::internal());
    fake.clear();
    assert!(fake.requests().is_empty());
    assert_eq!(raw_post(&fake, "invoke", Some(KEY), &hello()).await.status(), 200);
    c.post(format!("{}/_fake/reset", fake.url())).send().await.unwrap();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn wire_count_tokens() {
    let fake = start();
    let inner = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&hello()).unwrap());
    let r = raw_post(&fake, "count-tokens", Some(KEY), &json!({"input": {"invokeModel": {"body": inner}}})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-type"), Some("application/json"));
    assert!(is_uuid(h(&r, "x-amzn-requestid").unwrap()));
    assert!(h(&r, "x-amzn-bedrock-input-token-count").is_none(), "no invocation headers on CountTokens");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"inputTokens": estimate(&hello())}));

    for (b, needle) in [
        (json!({}), "Value null at 'input'"),
        (json!({"input": {}}), "exactly one of invokeModel or converse"),
        (json!({"input": {"invokeModel": {"body": "%%%"}}}), "not valid base64"),
        (json!({"input": {"invokeModel": {"body": inner}, "converse": {"messages": []}}}), "exactly one"),
    ] {
        let r = raw_post(&fake, "count-tokens", Some(KEY), &b).await;
        assert_eq!(r.status(), 400, "{b}");
        assert!(h(&r, "x-amzn-errortype").unwrap().starts_with("ValidationException:"));
        let msg = r.json::<Value>().await.unwrap()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{b}: {msg}");
    }
    let r = raw_post(&fake, "count-tokens", None, &json!({})).await;
    assert_eq!(r.status(), 403);
    assert!(h(&r, "x-amzn-errortype").unwrap().starts_with("MissingAuthenticationTokenException:"));
}

async fn raw_get(fake: &FakeBedrock, path_and_query: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = http().get(format!("{}{path_and_query}", fake.url()));
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    req.send().await.unwrap()
}

async fn get_json(fake: &FakeBedrock, path_and_query: &str) -> Value {
    let r = raw_get(fake, path_and_query, Some(KEY)).await;
    assert_eq!(r.status(), 200, "{path_and_query}");
    assert_eq!(h(&r, "content-type"), Some("application/json"));
    assert!(is_uuid(h(&r, "x-amzn-requestid").unwrap()));
    r.json().await.unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn profile_ids(page: &Value) -> Vec<String> {
    page["inferenceProfileSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["inferenceProfileId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn wire_list_inference_profiles_paginates() {
    let fake = start();
    let all = get_json(&fake, "/inference-profiles").await;
    assert_eq!(keys(&all), ["inferenceProfileSummaries"], "no nextToken on the last page");
    let ids = profile_ids(&all);
    assert_eq!(ids, fake.catalog().profile_ids());
    for id in [
        "global.anthropic.claude-opus-5-5-v1:0",
        "us.anthropic.claude-opus-5-5-v1:0",
        "global.anthropic.claude-opus-4-8-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "global.anthropic.claude-opus-4-5-20251101-v1:0",
        "us.anthropic.claude-opus-4-1-20250805-v1:0",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} in {ids:?}");
    }
    let summaries = all["inferenceProfileSummaries"].as_array().unwrap();
    let opus55 = summaries.iter().find(|p| p["inferenceProfileId"] == "global.anthropic.claude-opus-5-5-v1:0").unwrap();
    assert_eq!(
        keys(opus55),
        [
            "createdAt",
            "description",
            "inferenceProfileArn",
            "inferenceProfileId",
            "inferenceProfileName",
            "models",
            "status",
            "type",
            "updatedAt"
        ]
    );
    assert_eq!(opus55["inferenceProfileName"], "Global Anthropic Claude Opus 5.5");
    assert_eq!(
        opus55["inferenceProfileArn"],
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-opus-5-5-v1:0"
    );
    assert_eq!(opus55["status"], "ACTIVE");
    assert_eq!(opus55["type"], "SYSTEM_DEFINED");
    assert_eq!(
        opus55["models"][0],
        json!({"modelArn": "arn:aws:bedrock:::foundation-model/anthropic.claude-opus-5-5-v1:0"})
    );
    assert_eq!(
        opus55["models"][1]["modelArn"],
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-5-5-v1:0"
    );
    let created = opus55["createdAt"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok(), "ISO 8601: {created}");
    // Every id listed is one InvokeModel accepts.
    let client = sdk(&fake, KEY);
    for id in &ids {
        client.invoke_model().model_id(id).body(blob(&hello())).send().await.unwrap();
    }

    // Pages of 5, then of 1, each walk the whole list once.
    for size in [5, 1] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let q = match &token {
                Some(t) => format!("/inference-profiles?maxResults={size}&nextToken={t}"),
                None => format!("/inference-profiles?maxResults={size}"),
            };
            let page = get_json(&fake, &q).await;
            let got = profile_ids(&page);
            assert!(!got.is_empty() && got.len() <= size, "{q}: {got:?}");
            seen.extend(got);
            pages += 1;
            match page.get("nextToken") {
                Some(t) => token = Some(t.as_str().unwrap().to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, ids, "pages of {size}");
        assert_eq!(pages, ids.len().div_ceil(size));
    }
    let last = fake.requests().into_iter().last().unwrap();
    assert_eq!(last.operation, Some(BedrockOperation::ListInferenceProfiles));
    assert_eq!(last.method, "GET");
    assert!(last.query.contains("nextToken="), "{}", last.query);

    // `type`, validation, authentication, routing.
    assert_eq!(profile_ids(&get_json(&fake, "/inference-profiles?type=SYSTEM_DEFINED").await), ids);
    assert_eq!(get_json(&fake, "/inference-profiles?type=APPLICATION").await["inferenceProfileSummaries"], json!([]));
    for (q, needle) in [
        ("maxResults=0", "Value '0' at 'maxResults' failed to satisfy constraint"),
        ("maxResults=1001", "less than or equal to 1000"),
        ("type=CUSTOM", "Member must satisfy enum value set: [SYSTEM_DEFINED, APPLICATION]"),
        ("nextToken=garbage", "pagination token is invalid"),
    ] {
        let r = raw_get(&fake, &format!("/inference-profiles?{q}"), Some(KEY)).await;
        assert_eq!(r.status(), 400, "{q}");
        assert!(h(&r, "x-amzn-errortype").unwrap().starts_with("ValidationException:"));
        let msg = r.json::<Value>().await.unwrap()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    let r = raw_get(&fake, "/inference-profiles", Some("nope")).await;
    assert_eq!(r.status(), 403);
    assert!(h(&r, "x-amzn-errortype").unwrap().starts_with("UnrecognizedClientException:"));
    let r = raw_get(&fake, "/inference-profiles", None).await;
    assert_eq!(r.status(), 403);
    assert!(h(&r, "x-amzn-errortype").unwrap().starts_with("MissingAuthenticationTokenException:"));
    let r = http()
        .post(format!("{}/inference-profiles", fake.url()))
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn wire_list_foundation_models_filters() {
    let fake = start();
    let all = get_json(&fake, "/foundation-models").await;
    assert_eq!(keys(&all), ["modelSummaries"]);
    let models = all["modelSummaries"].as_array().unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m["modelId"].as_str().unwrap()).collect();
    for id in [
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "anthropic.claude-opus-4-5-20251101-v1:0",
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "anthropic.claude-opus-5-5-v1:0",
        "anthropic.claude-opus-4-8-v1:0",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    let opus55 = models.iter().find(|m| m["modelId"] == "anthropic.claude-opus-5-5-v1:0").unwrap();
    assert_eq!(
        opus55,
        &json!({
            "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-5-5-v1:0",
            "modelId": "anthropic.claude-opus-5-5-v1:0",
            "modelName": "Claude Opus 5.5",
            "providerName": "Anthropic",
            "inputModalities": ["TEXT", "IMAGE"],
            "outputModalities": ["TEXT"],
            "responseStreamingSupported": true,
            "customizationsSupported": [],
            "inferenceTypesSupported": ["INFERENCE_PROFILE"],
            "modelLifecycle": {"status": "ACTIVE", "startOfLifeTime": "2026-01-15T00:00:00Z"},
        })
    );
    assert_eq!(get_json(&fake, "/foundation-models?byProvider=anthropic").await, all);
    assert_eq!(get_json(&fake, "/foundation-models?byProvider=Anthropic&byOutputModality=TEXT").await, all);
    assert_eq!(get_json(&fake, "/foundation-models?byProvider=Amazon").await, json!({"modelSummaries": []}));
    assert_eq!(get_json(&fake, "/foundation-models?byOutputModality=EMBEDDING").await, json!({"modelSummaries": []}));
    let on_demand = get_json(&fake, "/foundation-models?byInferenceType=ON_DEMAND").await;
    let on_demand: Vec<&str> =
        on_demand["modelSummaries"].as_array().unwrap().iter().map(|m| m["modelId"].as_str().unwrap()).collect();
    assert_eq!(on_demand, ["anthropic.claude-3-haiku-20240307-v1:0"]);
    let r = raw_get(&fake, "/foundation-models?byInferenceType=SOMETIMES", Some(KEY)).await;
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("[ON_DEMAND, PROVISIONED]"));
    assert_eq!(raw_get(&fake, "/foundation-models", Some("nope")).await.status(), 403);
    // GetFoundationModel is not served.
    assert_eq!(raw_get(&fake, "/foundation-models/anthropic.claude-opus-5-5-v1:0", Some(KEY)).await.status(), 404);
    let r = &fake.requests()[0];
    assert_eq!((r.operation, r.status), (Some(BedrockOperation::ListFoundationModels), 200));
}

#[tokio::test]
async fn catalog_is_replaceable() {
    let fake = start();
    let c = http();
    fake.set_catalog(BedrockCatalog::empty().with_claude(
        "anthropic.claude-opus-9-v1:0",
        "Claude Opus 9",
        &["global", "eu"],
    ));
    let page = get_json(&fake, "/inference-profiles").await;
    assert_eq!(profile_ids(&page), ["global.anthropic.claude-opus-9-v1:0", "eu.anthropic.claude-opus-9-v1:0"]);
    assert_eq!(page["inferenceProfileSummaries"][1]["inferenceProfileName"], "EU Anthropic Claude Opus 9");
    let models = get_json(&fake, "/foundation-models").await;
    assert_eq!(models["modelSummaries"][0]["modelId"], "anthropic.claude-opus-9-v1:0");
    assert_eq!(models["modelSummaries"].as_array().unwrap().len(), 1);

    // The control endpoint takes the response members themselves.
    let doc = json!({
        "modelSummaries": [{
            "modelArn": "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-x-v1:0",
            "modelId": "anthropic.claude-x-v1:0",
            "providerName": "Anthropic",
            "modelLifecycle": {"status": "LEGACY", "legacyTime": "2026-03-01T00:00:00Z"}
        }],
        "inferenceProfileSummaries": [{
            "inferenceProfileName": "My app profile",
            "inferenceProfileArn": "arn:aws:bedrock:eu-west-1:111122223333:application-inference-profile/abc123",
            "models": [{"modelArn": "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-x-v1:0"}],
            "inferenceProfileId": "abc123",
            "status": "ACTIVE",
            "type": "APPLICATION"
        }]
    });
    let r: Value =
        c.post(format!("{}/_fake/catalog", fake.url())).json(&doc).send().await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({"modelSummaries": 1, "inferenceProfileSummaries": 1}));
    assert_eq!(get_json(&fake, "/foundation-models").await, json!({"modelSummaries": doc["modelSummaries"]}));
    assert_eq!(
        get_json(&fake, "/inference-profiles?type=APPLICATION").await,
        json!({"inferenceProfileSummaries": doc["inferenceProfileSummaries"]})
    );
    assert_eq!(
        get_json(&fake, "/inference-profiles?type=SYSTEM_DEFINED").await["inferenceProfileSummaries"],
        json!([])
    );
    let stored: Value = c.get(format!("{}/_fake/catalog", fake.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stored, doc);
    assert_eq!(fake.catalog().profile_ids(), ["abc123"]);

    let bad = c.post(format!("{}/_fake/catalog", fake.url())).json(&json!({"modelSummaries": [{"modelId": "x"}]}));
    assert_eq!(bad.send().await.unwrap().status(), 400, "modelArn is required");
    assert_eq!(fake.catalog().profile_ids(), ["abc123"], "a refused document changes nothing");
    // `"default"` restores the default catalog; `clear` keeps the catalog.
    c.post(format!("{}/_fake/catalog", fake.url())).json(&json!("default")).send().await.unwrap();
    assert_eq!(fake.catalog(), BedrockCatalog::default());
    fake.set_catalog(BedrockCatalog::empty());
    fake.clear();
    assert_eq!(get_json(&fake, "/foundation-models").await, json!({"modelSummaries": []}));
}

#[tokio::test]
async fn listing_faults() {
    let fake = start();
    let c = http();
    fake.set_listing_fault(Some(ListingFault::new(ListingFaultKind::Garbage)));
    for path in ["/inference-profiles", "/foundation-models"] {
        let r = raw_get(&fake, path, Some(KEY)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(h(&r, "content-type"), Some("application/json"));
        let text = r.text().await.unwrap();
        assert_eq!(text, LISTING_GARBAGE);
        assert!(serde_json::from_str::<Value>(&text).is_err());
    }
    // The key is still checked first, and the runtime is unaffected.
    assert_eq!(raw_get(&fake, "/inference-profiles", Some("nope")).await.status(), 403);
    assert_eq!(raw_post(&fake, "invoke", Some(KEY), &hello()).await.status(), 200);

    fake.set_listing_fault(Some(ListingFault::new(ListingFaultKind::AccessDenied)));
    let r = raw_get(&fake, "/inference-profiles", Some(KEY)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        h(&r, "x-amzn-errortype"),
        Some("AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/")
    );
    let msg = r.json::<Value>().await.unwrap()["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("is not authorized to perform: bedrock:ListInferenceProfiles"), "{msg}");

    // Through the control endpoint, for one listing only.
    let r: Value = c
        .post(format!("{}/_fake/listing_fault", fake.url()))
        .json(&json!({"fault": "throttling", "operation": "ListFoundationModels"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["listing_fault"], json!({"fault": "throttling", "operation": "ListFoundationModels"}));
    let r = raw_get(&fake, "/foundation-models", Some(KEY)).await;
    assert_eq!(r.status(), 429);
    assert!(h(&r, "x-amzn-errortype").unwrap().starts_with("ThrottlingException:"));
    get_json(&fake, "/inference-profiles").await;

    // Hang: longer than the client's timeout.
    c.post(format!("{}/_fake/listing_fault", fake.url()))
        .json(&json!({"fault": "hang", "delay_ms": 800}))
        .send()
        .await
        .unwrap();
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let t = Instant::now();
    let err = quick
        .get(format!("{}/inference-profiles", fake.url()))
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(t.elapsed() < Duration::from_millis(800));
    let t = Instant::now();
    get_json(&fake, "/foundation-models").await;
    assert!(t.elapsed() >= Duration::from_millis(800), "a patient client gets the answer: {:?}", t.elapsed());

    // `null` (or no fault) clears it; so does `clear`.
    c.post(format!("{}/_fake/listing_fault", fake.url())).json(&json!(null)).send().await.unwrap();
    get_json(&fake, "/inference-profiles").await;
    let bad = c.post(format!("{}/_fake/listing_fault", fake.url())).json(&json!({"fault": "explode"}));
    assert_eq!(bad.send().await.unwrap().status(), 400);
    fake.set_listing_fault(Some(ListingFault::new(ListingFaultKind::Throttling)));
    fake.clear();
    get_json(&fake, "/inference-profiles").await;

    // The default hang outlasts a client timeout, and dropping the fake does not wait for it.
    fake.set_listing_fault(Some(
        ListingFault::new(ListingFaultKind::Hang).only(BedrockOperation::ListInferenceProfiles),
    ));
    let t = Instant::now();
    let err = quick
        .get(format!("{}/inference-profiles", fake.url()))
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let t2 = Instant::now();
    drop(fake);
    assert!(t2.elapsed() < Duration::from_secs(10), "drop took {:?}", t2.elapsed());
    assert!(t.elapsed() < Duration::from_secs(15));
}

#[test]
fn scenario_names_round_trip() {
    for name in BedrockScenarioName::ALL {
        assert_eq!(name.as_str().parse::<BedrockScenarioName>().unwrap(), name);
        let json = serde_json::to_value(BedrockScenario::new(name)).unwrap();
        assert_eq!(json["name"], name.as_str());
    }
    let s: BedrockScenario = serde_json::from_value(json!({"name": "slow", "delay_ms": 5, "pace_ms": 2})).unwrap();
    assert_eq!(s, BedrockScenario::slow(5).with_pace_ms(2));
}

#[test]
fn handle_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<FakeBedrock>();
}

#[tokio::test]
async fn drop_stops_the_server() {
    let fake = start();
    let addr = fake.addr();
    assert_eq!(raw_post(&fake, "invoke", Some(KEY), &hello()).await.status(), 200);
    drop(fake);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn works_from_a_plain_thread() {
    let fake = FakeBedrock::start(&[]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // No keys given: any key is accepted.
    let msg = rt.block_on(async { invoke(&sdk(&fake, "anything"), &hello()).await.unwrap() });
    assert_eq!(msg["content"][0]["text"], DEFAULT_TEXT);
}

// ---------------------------------------------------------------------------------------------
// The binary

/// Starts the binary; returns it and its URL (from its first stderr line).
fn spawn_binary(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ccp-fake-bedrock"))
        .args(args)
        .env_remove("CCP_FAKE_BEDROCK_KEYS")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("ccp-fake-bedrock listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url, line)
}

fn terminate(child: &mut std::process::Child) {
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        assert!(Instant::now() < deadline, "did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn binary_status(url: &str, key: &str) -> u16 {
    http()
        .post(format!("{url}/model/{MODEL}/invoke"))
        .header("authorization", format!("Bearer {key}"))
        .json(&hello())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn binary_serves_and_exits_on_sigterm() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut child, url, line) = spawn_binary(&["--listen", "127.0.0.1:0", "--accept-key", "k-one", "k-two"], &[]);
    assert!(!line.contains("k-one"), "keys are not logged: {line}");
    assert!(line.contains("2 keys"), "{line}");
    rt.block_on(async {
        assert_eq!(binary_status(&url, "k-one").await, 200);
        assert_eq!(binary_status(&url, "k-two").await, 200);
        assert_eq!(binary_status(&url, "k-three").await, 403);
        http().post(format!("{url}/_fake/enqueue")).json(&json!({"name": "throttling"})).send().await.unwrap();
        assert_eq!(binary_status(&url, "k-one").await, 429);
        let list: Value = http().get(format!("{url}/_fake/requests")).send().await.unwrap().json().await.unwrap();
        assert_eq!(list.as_array().unwrap().len(), 4);
    });
    terminate(&mut child);

    let (mut child, url, line) =
        spawn_binary(&["--listen=127.0.0.1:0"], &[("CCP_FAKE_BEDROCK_KEYS", "env-key, other")]);
    assert!(line.contains("2 keys"), "{line}");
    rt.block_on(async {
        assert_eq!(binary_status(&url, "env-key").await, 200);
        assert_eq!(binary_status(&url, "k-one").await, 403);
    });
    terminate(&mut child);
}

// ---------------------------------------------------------------------------------------------
// boto3

fn requirements() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/requirements.txt")
}

#[test]
fn boto3_decodes_the_fake() {
    let python = std::env::var("CCP_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = std::process::Command::new(&python)
        .args(["-c", "import boto3, botocore; print(botocore.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); set CCP_TEST_PYTHON"));
    assert!(
        probe.status.success(),
        "boto3 is missing for {python}: pip install -r {} (or run scripts/install-clients.sh and \
         set CCP_TEST_PYTHON)\n{}",
        requirements().display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    let fake = start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/check_bedrock_boto3.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(fake.url())
        .arg(KEY)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed") && !last.starts_with("0 "), "last line {last:?}\n{stdout}");
    // Every request came with the bearer key, and the streaming ones hit the stream path.
    let reqs = fake.requests();
    assert!(reqs.iter().any(|r| r.streaming && r.status == 200));
    assert!(reqs.iter().all(|r| r.header("authorization").is_some_and(|a| a.starts_with("Bearer "))));
    assert!(reqs.iter().filter(|r| r.key_accepted).count() >= 5);
    // The runtime client reached CountTokens, the control-plane client both listings, page by
    // page (maxResults=1: one request per profile, plus the paginator's walk).
    let ok = |op: BedrockOperation| reqs.iter().filter(|r| r.operation == Some(op) && r.status == 200).count();
    assert!(ok(BedrockOperation::CountTokens) >= 1);
    assert!(ok(BedrockOperation::ListInferenceProfiles) >= 2 * fake.catalog().profile_ids().len());
    assert!(ok(BedrockOperation::ListFoundationModels) >= 2);
    assert!(reqs
        .iter()
        .any(|r| r.operation == Some(BedrockOperation::ListInferenceProfiles) && r.query.contains("nextToken=")));
}
