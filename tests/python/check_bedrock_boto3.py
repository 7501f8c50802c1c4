#!/usr/bin/env python3
"""Checks the fake Bedrock Runtime (`ccp-fake-bedrock`) with the real boto3 client.

Usage: check_bedrock_boto3.py URL KEY [--model MODEL_ID]

URL is the fake (e.g. http://127.0.0.1:8091) and KEY a Bedrock API key it accepts. boto3 sends
the key as `Authorization: Bearer KEY` because it is in AWS_BEARER_TOKEN_BEDROCK (botocore
>= 1.39; the pin is in tests/python/requirements.txt). The error and mid-stream checks script
the fake through its control endpoint (`POST URL/_fake/enqueue`).

Prints one line per check and a last line `N passed, M failed`; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import urllib.request
from typing import Any, Callable

DEFAULT_TEXT = "Hello from fake_bedrock."
DEFAULT_MODEL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
EXPECTED_EVENTS = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
]

BASH_TOOL = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
        "required": ["command"],
    },
}


class CheckFailed(Exception):
    pass


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def request_body(messages: list[dict], **extra: Any) -> bytes:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "messages": messages,
    }
    body.update(extra)
    return json.dumps(body).encode()


def say_hi() -> list[dict]:
    return [{"role": "user", "content": "say hi"}]


class Checks:
    def __init__(self, url: str, key: str, model: str) -> None:
        import boto3
        from botocore.config import Config

        self.url = url.rstrip("/")
        self.key = key
        self.model = model
        self.boto3 = boto3
        # One attempt: the error checks must see the first answer, not a retried one
        # (`max_attempts` would count retries only; `total_max_attempts` counts them all).
        self.config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
        self.client = self.make_client(key)

    def make_client(self, key: str) -> Any:
        # botocore reads the token when it signs; it prefers it over SigV4 when no
        # credentials are given in code.
        os.environ["AWS_BEARER_TOKEN_BEDROCK"] = key
        return self.boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=self.url,
            config=self.config,
        )

    def enqueue(self, scenario: dict) -> None:
        req = urllib.request.Request(
            f"{self.url}/_fake/enqueue",
            data=json.dumps(scenario).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            expect(resp.status == 200, f"enqueue answered {resp.status}")

    def stream_events(self, body: bytes) -> list[dict]:
        resp = self.client.invoke_model_with_response_stream(
            modelId=self.model, body=body, contentType="application/json", accept="application/json"
        )
        expect(resp["contentType"] == "application/json", f"contentType {resp['contentType']!r}")
        events = []
        for part in resp["body"]:
            expect(set(part) == {"chunk"}, f"stream part {list(part)}")
            # boto3 has already base64-decoded `bytes`.
            events.append(json.loads(part["chunk"]["bytes"]))
        return events

    # ---- checks ----

    def invoke_model(self) -> str:
        resp = self.client.invoke_model(
            modelId=self.model, body=request_body(say_hi()), contentType="application/json"
        )
        headers = resp["ResponseMetadata"]["HTTPHeaders"]
        expect(resp["ResponseMetadata"]["HTTPStatusCode"] == 200, "status 200")
        expect(resp["contentType"] == "application/json", f"contentType {resp['contentType']!r}")
        message = json.loads(resp["body"].read())
        expect(message["type"] == "message" and message["role"] == "assistant", "a message")
        expect(message["id"].startswith("msg_bdrk_"), f"id {message['id']!r}")
        expect(message["model"] == "claude-sonnet-4-5-20250929", f"model {message['model']!r}")
        expect(message["content"] == [{"type": "text", "text": DEFAULT_TEXT}], "content")
        expect(message["stop_reason"] == "end_turn", f"stop_reason {message['stop_reason']!r}")
        usage = message["usage"]
        expect(usage["output_tokens"] == len(DEFAULT_TEXT.split()) + 1, f"usage {usage}")
        expect(
            headers.get("x-amzn-bedrock-input-token-count") == str(usage["input_tokens"])
            and headers.get("x-amzn-bedrock-output-token-count") == str(usage["output_tokens"]),
            f"token-count headers {headers}",
        )
        expect(bool(resp["ResponseMetadata"].get("RequestId")), "a request id")
        return f"text={message['content'][0]['text']!r} usage={usage['input_tokens']}/{usage['output_tokens']}"

    def invoke_model_with_response_stream(self) -> str:
        events = self.stream_events(request_body(say_hi()))
        kinds = [e["type"] for e in events]
        collapsed = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
        expect(collapsed == EXPECTED_EVENTS, f"event order {kinds}")
        text = "".join(
            e["delta"]["text"] for e in events if e["type"] == "content_block_delta"
        )
        expect(text == DEFAULT_TEXT, f"text {text!r}")
        expect(events[0]["message"]["model"] == "claude-sonnet-4-5-20250929", "model")
        metrics = events[-1].get("amazon-bedrock-invocationMetrics")
        expect(isinstance(metrics, dict), "message_stop has amazon-bedrock-invocationMetrics")
        out = events[-2]["usage"]["output_tokens"]
        expect(metrics["outputTokenCount"] == out, f"metrics {metrics} vs output {out}")
        expect(
            metrics["inputTokenCount"] == events[0]["message"]["usage"]["input_tokens"],
            f"metrics {metrics}",
        )
        return f"{len(events)} events, text={text!r}, metrics={metrics}"

    def tool_round_trip(self) -> str:
        first = [{"role": "user", "content": "please\nrun: echo hi"}]
        events = self.stream_events(request_body(first, tools=[BASH_TOOL]))
        start = next(e for e in events if e["type"] == "content_block_start")
        block = start["content_block"]
        expect(block["type"] == "tool_use" and block["name"] == "Bash", f"block {block}")
        expect(block["id"].startswith("toolu_bdrk_"), f"tool id {block['id']!r}")
        partial = "".join(
            e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"
        )
        expect(json.loads(partial)["command"] == "echo hi", f"input {partial!r}")
        stop = next(e for e in events if e["type"] == "message_delta")
        expect(stop["delta"]["stop_reason"] == "tool_use", f"stop {stop}")
        second = first + [
            {"role": "assistant", "content": [dict(block, input=json.loads(partial))]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "hi\n"}],
            },
        ]
        resp = self.client.invoke_model(
            modelId=self.model, body=request_body(second, tools=[BASH_TOOL])
        )
        message = json.loads(resp["body"].read())
        text = message["content"][0]["text"]
        expect(text == "Tool said: hi", f"text {text!r}")
        return f"tool_use {json.loads(partial)} -> {text!r}"

    def bad_key(self) -> str:
        from botocore.exceptions import ClientError

        bad = self.make_client(self.key + "-wrong")
        try:
            bad.invoke_model(modelId=self.model, body=request_body(say_hi()))
        except ClientError as e:
            code = e.response["Error"]["Code"]
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            expect(code == "UnrecognizedClientException", f"code {code!r}")
            expect(status == 403, f"status {status}")
            return f"{status} {code}: {e.response['Error']['Message']}"
        finally:
            os.environ["AWS_BEARER_TOKEN_BEDROCK"] = self.key
        raise CheckFailed("a bad key was accepted")

    def extraneous_key(self) -> str:
        from botocore.exceptions import ClientError

        try:
            self.client.invoke_model(
                modelId=self.model, body=request_body(say_hi(), model="claude", stream=True)
            )
        except ClientError as e:
            code, message = e.response["Error"]["Code"], e.response["Error"]["Message"]
            expect(code == "ValidationException", f"code {code!r}")
            expect("extraneous key [model] is not permitted" in message, f"message {message!r}")
            return f"{code}: {message}"
        raise CheckFailed("a body with `model` and `stream` was accepted")

    def throttling(self) -> str:
        from botocore.exceptions import ClientError

        self.enqueue({"name": "throttling"})
        try:
            self.client.invoke_model_with_response_stream(
                modelId=self.model, body=request_body(say_hi())
            )
        except ClientError as e:
            code = e.response["Error"]["Code"]
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            expect(code == "ThrottlingException" and status == 429, f"{status} {code}")
            expect(
                isinstance(e, self.client.exceptions.ThrottlingException),
                f"modeled exception, got {type(e).__name__}",
            )
            retries = e.response["ResponseMetadata"].get("RetryAttempts")
            expect(retries == 0, f"retried {retries} times")
            return f"{status} {code}"
        raise CheckFailed("throttling scenario answered 2xx")

    def model_stream_error(self) -> str:
        from botocore.exceptions import EventStreamError

        self.enqueue({"name": "model_stream_error"})
        resp = self.client.invoke_model_with_response_stream(
            modelId=self.model, body=request_body(say_hi())
        )
        seen = []
        try:
            for part in resp["body"]:
                seen.append(json.loads(part["chunk"]["bytes"])["type"])
        except EventStreamError as e:
            code = e.response["Error"]["Code"]
            expect(code == "modelStreamErrorException", f"code {code!r}")
            expect(
                seen == ["message_start", "content_block_start", "content_block_delta"],
                f"events before the error {seen}",
            )
            return f"{seen} then {code}"
        raise CheckFailed(f"stream ended without an exception after {seen}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    try:
        import boto3
        import botocore
    except ImportError as e:
        print(f"boto3 is not installed ({e}): pip install -r tests/python/requirements.txt")
        print("0 passed, 1 failed")
        return 1
    print(f"boto3 {boto3.__version__}, botocore {botocore.__version__}")
    checks = Checks(args.url, args.key, args.model)
    order: list[tuple[str, Callable[[], str]]] = [
        ("invoke_model", checks.invoke_model),
        ("invoke_model_with_response_stream", checks.invoke_model_with_response_stream),
        ("tool_round_trip", checks.tool_round_trip),
        ("bad_key", checks.bad_key),
        ("extraneous_key", checks.extraneous_key),
        ("throttling", checks.throttling),
        ("model_stream_error", checks.model_stream_error),
    ]
    passed = failed = 0
    for name, check in order:
        try:
            detail = check()
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if not isinstance(e, CheckFailed):
                traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {name}: {detail}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
