#!/usr/bin/env python3
"""Checks an Anthropic-compatible endpoint with the official Anthropic Python SDK.

Usage: check_anthropic_sdk.py BASE_URL [--header NAME:VALUE ...] [--model MODEL]

BASE_URL is the fake Anthropic server (`ccp-fake-anthropic`) or the proxy in front of it
(e.g. http://127.0.0.1:8080/ak/ak_xxx). The checks expect the fake's default answers and
scenarios (`x-fake-scenario` request header), so whatever is in between must pass them on.

Prints one line per check and a last line `N passed, M failed`; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from typing import Callable

import anthropic

DEFAULT_TEXT = "Hello from fake_anthropic."

BASH_TOOL = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {
            "command": {"type": "string"},
            "description": {"type": "string"},
        },
        "required": ["command"],
    },
}


class CheckFailed(Exception):
    pass


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def check_usage(usage: anthropic.types.Usage, text: str) -> None:
    expect(usage.input_tokens > 0, f"input_tokens {usage.input_tokens} should be > 0")
    # The fake answers output_tokens = words of the answer + 1.
    expected = len(text.split()) + 1
    expect(usage.output_tokens == expected, f"output_tokens {usage.output_tokens} != {expected}")


def say_hi() -> list[dict]:
    return [{"role": "user", "content": "say hi"}]


def check_stream(client: anthropic.Anthropic, model: str) -> str:
    with client.messages.stream(model=model, max_tokens=256, messages=say_hi()) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expect(text == DEFAULT_TEXT, f"streamed text {text!r}")
    expect(final.content[0].type == "text" and final.content[0].text == text, "final message text")
    expect(final.stop_reason == "end_turn", f"stop_reason {final.stop_reason!r}")
    expect(final.model == model, f"model {final.model!r}")
    check_usage(final.usage, text)
    return f"text={text!r} usage=in:{final.usage.input_tokens},out:{final.usage.output_tokens}"


def check_create(client: anthropic.Anthropic, model: str) -> str:
    message = client.messages.create(model=model, max_tokens=256, messages=say_hi())
    expect(message.id.startswith("msg_"), f"id {message.id!r}")
    expect(message.role == "assistant", f"role {message.role!r}")
    expect(len(message.content) == 1 and message.content[0].type == "text", "one text block")
    text = message.content[0].text
    expect(text == DEFAULT_TEXT, f"text {text!r}")
    expect(message.stop_reason == "end_turn", f"stop_reason {message.stop_reason!r}")
    check_usage(message.usage, text)
    request_id = getattr(message, "_request_id", None)
    expect(bool(request_id) and request_id.startswith("req_"), f"request id {request_id!r}")
    return f"id={message.id} request_id={request_id}"


def check_count_tokens(client: anthropic.Anthropic, model: str) -> str:
    counted = client.messages.count_tokens(model=model, messages=say_hi())
    expect(counted.input_tokens > 0, f"input_tokens {counted.input_tokens}")
    return f"input_tokens={counted.input_tokens}"


def check_tool_round_trip(client: anthropic.Anthropic, model: str) -> str:
    messages: list[dict] = [{"role": "user", "content": "run: echo sdk-check"}]
    with client.messages.stream(
        model=model, max_tokens=256, messages=messages, tools=[BASH_TOOL]
    ) as stream:
        first = stream.get_final_message()
    expect(first.stop_reason == "tool_use", f"first stop_reason {first.stop_reason!r}")
    uses = [b for b in first.content if b.type == "tool_use"]
    expect(len(uses) == 1, f"tool_use blocks: {first.content!r}")
    use = uses[0]
    expect(use.name == "Bash", f"tool name {use.name!r}")
    expect(use.id.startswith("toolu_"), f"tool id {use.id!r}")
    expect(use.input.get("command") == "echo sdk-check", f"tool input {use.input!r}")

    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sdk-check\n"}],
        }
    )
    second = client.messages.create(model=model, max_tokens=256, messages=messages, tools=[BASH_TOOL])
    expect(second.stop_reason == "end_turn", f"second stop_reason {second.stop_reason!r}")
    text = second.content[0].text if second.content and second.content[0].type == "text" else None
    expect(text == "Tool said: sdk-check", f"second text {text!r}")
    return f"tool_use {use.input!r} -> {text!r}"


def check_rate_limit(client: anthropic.Anthropic, model: str) -> str:
    try:
        client.messages.create(
            model=model,
            max_tokens=256,
            messages=say_hi(),
            extra_headers={"x-fake-scenario": "rate_limit"},
        )
    except anthropic.RateLimitError as e:
        expect(e.status_code == 429, f"status {e.status_code}")
        body = e.body if isinstance(e.body, dict) else {}
        error_type = (body.get("error") or {}).get("type")
        expect(error_type == "rate_limit_error", f"error type {error_type!r}")
        retry_after = e.response.headers.get("retry-after")
        expect(retry_after is not None, "no retry-after header")
        return f"RateLimitError status={e.status_code} retry-after={retry_after}"
    raise CheckFailed("no RateLimitError raised")


def check_stream_error(client: anthropic.Anthropic, model: str) -> str:
    received = ""
    try:
        with client.messages.stream(
            model=model,
            max_tokens=256,
            messages=say_hi(),
            extra_headers={"x-fake-scenario": "stream_error"},
        ) as stream:
            for text in stream.text_stream:
                received += text
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        error_type = (body.get("error") or {}).get("type")
        expect(error_type == "overloaded_error", f"error type {error_type!r} ({e})")
        return f"{type(e).__name__} after {received!r}: {error_type}"
    raise CheckFailed(f"stream ended without an error (got {received!r})")


CHECKS: list[tuple[str, Callable[[anthropic.Anthropic, str], str]]] = [
    ("messages.stream", check_stream),
    ("messages.create", check_create),
    ("messages.count_tokens", check_count_tokens),
    ("tool_use round trip", check_tool_round_trip),
    ("rate_limit -> RateLimitError", check_rate_limit),
    ("stream_error -> APIStatusError", check_stream_error),
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    parser.add_argument("--model", default="claude-opus-5-5")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)

    headers: dict[str, str] = {}
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            parser.error(f"--header {h!r}: expected NAME:VALUE")
        headers[name.strip()] = value.strip()

    client = anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url=args.base_url,
        default_headers=headers,
        max_retries=0,
        timeout=30.0,
    )
    # The base URL carries the access key: print only where it points.
    shown = re.sub(r"/ak/[^/]+", "/ak/<access key>", args.base_url)
    print(f"anthropic SDK {anthropic.__version__} against {shown}", flush=True)
    passed = failed = 0
    for name, check in CHECKS:
        try:
            detail = check(client, args.model)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            if args.verbose:
                traceback.print_exc()
        else:
            passed += 1
            print(f"PASS {name}: {detail}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
