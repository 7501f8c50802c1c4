#!/usr/bin/env python3
"""Checks the fake Amazon Bedrock (`ccp-fake-bedrock`) with the real boto3 clients.

Usage: check_bedrock_boto3.py URL KEY [--model MODEL_ID]

URL is the fake (e.g. http://127.0.0.1:8091) and KEY a Bedrock API key it accepts. Both the
`bedrock-runtime` client (InvokeModel, InvokeModelWithResponseStream, CountTokens) and the
`bedrock` control-plane client (ListInferenceProfiles, ListFoundationModels) point at it: the
fake serves both. boto3 sends the key as `Authorization: Bearer KEY` because it is in
AWS_BEARER_TOKEN_BEDROCK (botocore >= 1.39; the pin is in tests/python/requirements.txt). boto3
parses the answers with the service models it ships, so these checks prove the wire format. The
error, mid-stream, model-access and listing-fault checks script the fake through its control
endpoints (`POST URL/_fake/enqueue`, `/_fake/disabled_models`, `/_fake/listing_fault`) and
undo what they set.

Prints one line per check and a last line `N passed, M failed`; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import traceback
import urllib.request
from typing import Any, Callable

DEFAULT_TEXT = "Hello from fake_bedrock."
DEFAULT_MODEL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
NEW_PROFILES = [
    "global.anthropic.claude-opus-5-5-v1:0",
    "us.anthropic.claude-opus-5-5-v1:0",
    "global.anthropic.claude-opus-4-8-v1:0",
]
DEFAULT_FOUNDATION_MODELS = [
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-opus-4-5-20251101-v1:0",
    "anthropic.claude-opus-4-1-20250805-v1:0",
    "anthropic.claude-opus-5-5-v1:0",
    "anthropic.claude-opus-4-8-v1:0",
]
MODEL_ACCESS_DENIED = "You don't have access to the model with the specified model ID."
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


def estimate(body: bytes) -> int:
    """The fake's token estimate for a body: its length / 100 + 1."""
    return len(body) // 100 + 1


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
        self.control = self.make_client(key, "bedrock")

    def make_client(self, key: str, service: str = "bedrock-runtime", config: Any = None) -> Any:
        # botocore reads the token when it signs; it prefers it over SigV4 when no
        # credentials are given in code. Both services sign as `bedrock`, so both read
        # AWS_BEARER_TOKEN_BEDROCK.
        os.environ["AWS_BEARER_TOKEN_BEDROCK"] = key
        return self.boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=self.url,
            config=config or self.config,
        )

    def fake_control(self, what: str, body: Any) -> Any:
        req = urllib.request.Request(
            f"{self.url}/_fake/{what}",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            expect(resp.status == 200, f"{what} answered {resp.status}")
            return json.loads(resp.read())

    def enqueue(self, scenario: dict) -> None:
        self.fake_control("enqueue", scenario)

    def expect_error(self, call: Callable[[], Any], code: str, status: int, modeled: Any) -> str:
        from botocore.exceptions import ClientError

        try:
            call()
        except ClientError as e:
            got = e.response["Error"]["Code"]
            got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            expect(got == code and got_status == status, f"{got_status} {got}, expected {status} {code}")
            expect(isinstance(e, modeled), f"modeled exception, got {type(e).__name__}")
            return f"{got_status} {got}: {e.response['Error']['Message']}"
        raise CheckFailed(f"expected {status} {code}, got a 2xx")

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


    def count_tokens(self) -> str:
        body = request_body(say_hi())
        resp = self.client.count_tokens(modelId=self.model, input={"invokeModel": {"body": body}})
        expect(resp["ResponseMetadata"]["HTTPStatusCode"] == 200, "status 200")
        expect(set(resp) == {"inputTokens", "ResponseMetadata"}, f"members {sorted(resp)}")
        expect(resp["inputTokens"] == estimate(body), f"inputTokens {resp['inputTokens']}")
        # The count is what InvokeModel reports for the same body.
        message = json.loads(self.client.invoke_model(modelId=self.model, body=body)["body"].read())
        expect(message["usage"]["input_tokens"] == resp["inputTokens"], f"usage {message['usage']}")
        long = request_body([{"role": "user", "content": "word " * 500}])
        n = self.client.count_tokens(modelId=NEW_PROFILES[0], input={"invokeModel": {"body": long}})["inputTokens"]
        expect(n == estimate(long) and n > 20, f"long body: {n}")
        converse = {"messages": [{"role": "user", "content": [{"text": "say hi"}]}]}
        m = self.client.count_tokens(modelId=self.model, input={"converse": converse})["inputTokens"]
        expect(m >= 1, f"converse: {m}")
        return f"inputTokens={resp['inputTokens']}, long={n} on {NEW_PROFILES[0]}, converse={m}"

    def count_tokens_errors(self) -> str:
        details = []
        bad = self.make_client(self.key + "-wrong")
        try:
            details.append(
                self.expect_error(
                    lambda: bad.count_tokens(
                        modelId=self.model, input={"invokeModel": {"body": request_body(say_hi())}}
                    ),
                    "UnrecognizedClientException",
                    403,
                    Exception,
                )
            )
        finally:
            os.environ["AWS_BEARER_TOKEN_BEDROCK"] = self.key
        details.append(
            self.expect_error(
                lambda: self.client.count_tokens(
                    modelId="amazon.nova-pro-v1:0", input={"invokeModel": {"body": request_body(say_hi())}}
                ),
                "ValidationException",
                400,
                self.client.exceptions.ValidationException,
            )
        )
        self.enqueue({"name": "throttling", "operation": "CountTokens"})
        details.append(
            self.expect_error(
                lambda: self.client.count_tokens(
                    modelId=self.model, input={"invokeModel": {"body": request_body(say_hi())}}
                ),
                "ThrottlingException",
                429,
                self.client.exceptions.ThrottlingException,
            )
        )
        return "; ".join(details)

    def disabled_model(self) -> str:
        model = "us.anthropic.claude-opus-4-1-20250805-v1:0"
        listed = self.fake_control("disabled_models", ["claude-opus-4-1-20250805"])
        expect(listed["disabled_models"] == ["claude-opus-4-1-20250805"], f"disabled {listed}")
        denied = self.client.exceptions.AccessDeniedException
        body = request_body(say_hi())
        try:
            details = [
                self.expect_error(
                    lambda: self.client.count_tokens(modelId=model, input={"invokeModel": {"body": body}}),
                    "AccessDeniedException",
                    403,
                    denied,
                ),
                self.expect_error(
                    lambda: self.client.invoke_model(modelId=model, body=body), "AccessDeniedException", 403, denied
                ),
                self.expect_error(
                    lambda: self.client.invoke_model_with_response_stream(modelId=model, body=body),
                    "AccessDeniedException",
                    403,
                    denied,
                ),
            ]
            expect(all(MODEL_ACCESS_DENIED in d for d in details), f"messages {details}")
            # Other models still answer.
            self.client.count_tokens(modelId=self.model, input={"invokeModel": {"body": body}})
        finally:
            self.fake_control("disabled_models", [])
        self.client.count_tokens(modelId=model, input={"invokeModel": {"body": body}})
        return details[0]

    def list_inference_profiles(self) -> str:
        ids = []
        pages = 0
        kwargs: dict[str, Any] = {"maxResults": 1}
        while True:
            page = self.control.list_inference_profiles(**kwargs)
            pages += 1
            summaries = page["inferenceProfileSummaries"]
            expect(len(summaries) == 1, f"page {pages}: {len(summaries)} summaries with maxResults=1")
            ids.extend(s["inferenceProfileId"] for s in summaries)
            if "nextToken" not in page:
                break
            kwargs["nextToken"] = page["nextToken"]
            expect(pages < 100, "pagination does not end")
        expect(len(ids) == len(set(ids)) and len(ids) >= 8, f"ids {ids}")
        for wanted in NEW_PROFILES + [DEFAULT_MODEL]:
            expect(wanted in ids, f"{wanted} not in {ids}")
        # The paginator, page size 1, walks the same list.
        paginator = self.control.get_paginator("list_inference_profiles")
        walked = [
            s["inferenceProfileId"]
            for page in paginator.paginate(PaginationConfig={"PageSize": 1})
            for s in page["inferenceProfileSummaries"]
        ]
        expect(walked == ids, f"paginator {walked}")
        everything = self.control.list_inference_profiles(typeEquals="SYSTEM_DEFINED")
        expect("nextToken" not in everything, "one page without maxResults")
        summaries = {s["inferenceProfileId"]: s for s in everything["inferenceProfileSummaries"]}
        expect(list(summaries) == ids, "SYSTEM_DEFINED lists them all")
        opus = summaries[NEW_PROFILES[0]]
        expect(opus["inferenceProfileName"] == "Global Anthropic Claude Opus 5.5", f"name {opus}")
        expect(opus["status"] == "ACTIVE" and opus["type"] == "SYSTEM_DEFINED", f"status/type {opus}")
        expect(
            opus["inferenceProfileArn"].endswith(":inference-profile/" + NEW_PROFILES[0]),
            f"arn {opus['inferenceProfileArn']}",
        )
        arns = [m["modelArn"] for m in opus["models"]]
        expect(all(a.endswith("::foundation-model/anthropic.claude-opus-5-5-v1:0") for a in arns), f"{arns}")
        # botocore parsed the ISO 8601 timestamps into aware datetimes.
        created = opus["createdAt"]
        expect(isinstance(created, datetime.datetime) and created.tzinfo is not None, f"createdAt {created!r}")
        sonnet = summaries[DEFAULT_MODEL]
        expect(
            sonnet["createdAt"] == datetime.datetime(2025, 9, 29, tzinfo=datetime.timezone.utc),
            f"createdAt {sonnet['createdAt']!r}",
        )
        expect(isinstance(sonnet["updatedAt"], datetime.datetime), "updatedAt")
        apps = self.control.list_inference_profiles(typeEquals="APPLICATION")
        expect(apps["inferenceProfileSummaries"] == [], f"APPLICATION {apps['inferenceProfileSummaries']}")
        return f"{len(ids)} profiles in {pages} pages of 1 (and by the paginator)"

    def list_foundation_models(self) -> str:
        resp = self.control.list_foundation_models(byProvider="Anthropic", byOutputModality="TEXT")
        models = {m["modelId"]: m for m in resp["modelSummaries"]}
        for wanted in DEFAULT_FOUNDATION_MODELS:
            expect(wanted in models, f"{wanted} not in {sorted(models)}")
        opus = models["anthropic.claude-opus-5-5-v1:0"]
        expect(opus["modelName"] == "Claude Opus 5.5" and opus["providerName"] == "Anthropic", f"{opus}")
        expect(opus["modelArn"].endswith("::foundation-model/anthropic.claude-opus-5-5-v1:0"), opus["modelArn"])
        expect(opus["inputModalities"] == ["TEXT", "IMAGE"] and opus["outputModalities"] == ["TEXT"], f"{opus}")
        expect(opus["responseStreamingSupported"] is True, "responseStreamingSupported is a boolean")
        expect(opus["customizationsSupported"] == [], f"customizations {opus['customizationsSupported']}")
        expect(opus["inferenceTypesSupported"] == ["INFERENCE_PROFILE"], f"{opus['inferenceTypesSupported']}")
        lifecycle = opus["modelLifecycle"]
        expect(lifecycle["status"] == "ACTIVE", f"lifecycle {lifecycle}")
        expect(isinstance(lifecycle["startOfLifeTime"], datetime.datetime), f"lifecycle {lifecycle}")
        on_demand = self.control.list_foundation_models(byInferenceType="ON_DEMAND")["modelSummaries"]
        expect(
            [m["modelId"] for m in on_demand] == ["anthropic.claude-3-haiku-20240307-v1:0"],
            f"ON_DEMAND {[m['modelId'] for m in on_demand]}",
        )
        none = self.control.list_foundation_models(byProvider="Amazon")["modelSummaries"]
        expect(none == [], f"Amazon {none}")
        return f"{len(models)} Anthropic models, ON_DEMAND: {on_demand[0]['modelId']}"

    def listing_faults(self) -> str:
        from botocore.config import Config
        from botocore.exceptions import ReadTimeoutError

        details = []
        try:
            self.fake_control("listing_fault", {"fault": "access_denied"})
            details.append(
                self.expect_error(
                    lambda: self.control.list_inference_profiles(),
                    "AccessDeniedException",
                    403,
                    self.control.exceptions.AccessDeniedException,
                )
            )
            self.fake_control("listing_fault", {"fault": "throttling", "operation": "ListFoundationModels"})
            details.append(
                self.expect_error(
                    lambda: self.control.list_foundation_models(),
                    "ThrottlingException",
                    429,
                    self.control.exceptions.ThrottlingException,
                )
            )
            # A 200 whose body is not JSON: botocore keeps the text as a message and finds none
            # of the operation's members.
            self.fake_control("listing_fault", {"fault": "garbage"})
            garbage = self.control.list_inference_profiles()
            expect("inferenceProfileSummaries" not in garbage, f"garbage parsed as {garbage}")
            details.append(f"garbage -> members {sorted(k for k in garbage if k != 'ResponseMetadata')}")
            # Hang: longer than the client's read timeout.
            self.fake_control("listing_fault", {"fault": "hang", "delay_ms": 3000})
            impatient = self.make_client(
                self.key,
                "bedrock",
                Config(read_timeout=1, connect_timeout=2, retries={"total_max_attempts": 1, "mode": "standard"}),
            )
            started = time.monotonic()
            try:
                impatient.list_foundation_models()
            except ReadTimeoutError:
                elapsed = time.monotonic() - started
                expect(elapsed < 2.5, f"timed out after {elapsed:.1f}s")
                details.append(f"hang -> ReadTimeoutError after {elapsed:.1f}s")
            else:
                raise CheckFailed("a hanging listing answered within the read timeout")
        finally:
            self.fake_control("listing_fault", None)
        expect(self.control.list_foundation_models()["modelSummaries"] != [], "listing after the faults")
        return "; ".join(details)


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
        ("count_tokens", checks.count_tokens),
        ("count_tokens_errors", checks.count_tokens_errors),
        ("disabled_model", checks.disabled_model),
        ("list_inference_profiles", checks.list_inference_profiles),
        ("list_foundation_models", checks.list_foundation_models),
        ("listing_faults", checks.listing_faults),
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
