#!/usr/bin/env python3
"""Measure the proxy's interrupted-stream output-token estimate against a real Anthropic tokenizer.

The proxy (proxy/src/tap.rs) sums, over every `content_block_delta`, the byte length of the
delta's `text` / `thinking` / `partial_json` string *as escaped in the SSE JSON* and estimates
tokens = ceil(bytes / CONTENT_BYTES_PER_TOKEN). This script builds samples of the three kinds of
content a stream carries from real files of the repository -- English prose, source code
(Rust, Python, shell) and JSON (Claude Code tool inputs and JSON documents) -- counts each
sample's real tokens and its escaped bytes, and reports the estimate/real ratio for a few
candidate constants.

Tokenizer: Anthropic's only published tokenizer, the Claude 2-era BPE (65,000 tokens, NFKC,
GPT-2-style byte-level pre-tokenisation) shipped as `tokenizer.json` in the `anthropic` PyPI
package up to 0.25.x (`Anthropic().count_tokens`). Current models (Claude 3 and later) use
an unpublished tokenizer, so the counts here approximate theirs; they are not theirs.
Optionally cross-checks every sample against the npm `@anthropic-ai/tokenizer` claude.json
(tiktoken) when --claude-json is given, and with --ctok also reports against `ctok` (PyPI), an
UNOFFICIAL third-party reconstruction of the current tokenizers' counts (family v3 = Claude 3
through Opus 4.6, v4.7 = Opus 4.7 and later), content tokens only (its message frame removed).

Setup (throwaway, outside the repo):
    python3 -m venv /tmp/tokvenv
    /tmp/tokvenv/bin/pip install 'anthropic==0.25.9' 'httpx<0.28' tokenizers tiktoken
    /tmp/tokvenv/bin/pip install --ignore-requires-python ctok==1.3.0   # optional, for --ctok
    # optional cross-check: (cd /tmp/toknpm && npm install @anthropic-ai/tokenizer@0.0.4)
Run:
    /tmp/tokvenv/bin/python estimator_error.py --repo /work/main \
        --fixtures tests/fixtures/claude-code \
        [--claude-json /tmp/toknpm/node_modules/@anthropic-ai/tokenizer/claude.json] [--ctok] [--csv out.csv]
"""
from __future__ import annotations

import argparse
import base64
import csv
import glob
import json
import math
import os
import random
import re
import statistics
import sys
import unicodedata

CANDIDATES = (2.5, 3.0, 3.5, 4.0)
MIN_CHARS, MAX_CHARS = 200, 4000
SEED = 20240601


# ---------------------------------------------------------------- tokenizers
def sdk_counter():
    """Anthropic().count_tokens from anthropic<=0.25 (bundled Claude 2-era tokenizer.json)."""
    import anthropic

    if not hasattr(anthropic.Anthropic, "count_tokens"):
        sys.exit(f"anthropic {anthropic.__version__} has no count_tokens; install anthropic==0.25.9")
    client = anthropic.Anthropic(api_key="unused-offline")
    return f"anthropic=={anthropic.__version__} Anthropic().count_tokens", client.count_tokens


def npm_counter(path):
    """The npm @anthropic-ai/tokenizer claude.json through tiktoken, NFKC first as its countTokens."""
    import tiktoken

    spec = json.load(open(path, encoding="utf-8"))
    parts = spec["bpe_ranks"].split(" ")  # "! <first rank> <base64 token> ..."
    assert parts[0] == "!", parts[:2]
    first = int(parts[1])
    ranks = {base64.b64decode(tok): first + i for i, tok in enumerate(parts[2:])}
    enc = tiktoken.Encoding(
        name="claude",
        pat_str=spec["pat_str"],
        mergeable_ranks=ranks,
        special_tokens=spec["special_tokens"],
    )
    return lambda text: len(enc.encode(unicodedata.normalize("NFKC", text), allowed_special="all"))


def ctok_counter(version):
    """ctok's reconstructed count of `text` as content: its single-message frame (the leading
    PAD tokens of tokenize()) left out."""
    from ctok import tokenize

    def count(text):
        toks = tokenize(text, version)
        return len(toks) - sum(1 for t in toks if t == "\u27e8pad\u27e9")
    return count


# ---------------------------------------------------------------- the estimator
def escaped_bytes(content: str) -> int:
    """Bytes of `content` as a JSON string body (serde_json style: \\n, \\", \\\\ escaped;
    non-ASCII left as UTF-8), which is what delta_content_len counts."""
    return len(json.dumps(content, ensure_ascii=False)[1:-1].encode("utf-8"))


def estimate(nbytes: int, per_token: float) -> int:
    return math.ceil(nbytes / per_token)


# ---------------------------------------------------------------- samples
def chunks(text: str, rng: random.Random, sep: str = "\n"):
    """Split text at `sep` boundaries into chunks of a log-uniform target size in
    [MIN_CHARS, MAX_CHARS] (a long unit is cut hard at MAX_CHARS)."""
    units = [u for u in text.split(sep)]
    out, cur = [], ""
    target = _target(rng)
    for u in units:
        cur = cur + sep + u if cur else u
        while len(cur) > MAX_CHARS:
            out.append(cur[:MAX_CHARS])
            cur = cur[MAX_CHARS:]
        if len(cur) >= target:
            out.append(cur)
            cur, target = "", _target(rng)
    if len(cur.strip()) >= MIN_CHARS:
        out.append(cur)
    return [c for c in out if c.strip()]


def _target(rng):
    return int(math.exp(rng.uniform(math.log(MIN_CHARS), math.log(MAX_CHARS))))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


FENCE = re.compile(r"^```.*?^```[ \t]*$\n?", re.S | re.M)


def prose_samples(repo, rng):
    """Markdown prose: README, ARCHITECTURE, SECURITY, docs/*.md with fenced code removed,
    chunked at paragraph boundaries."""
    files = [os.path.join(repo, f) for f in ("README.md", "ARCHITECTURE.md", "SECURITY.md")]
    files += sorted(glob.glob(os.path.join(repo, "docs", "*.md")))
    out = []
    for f in files:
        if os.path.exists(f):
            text = FENCE.sub("", read(f))
            text = re.sub(r"\n{3,}", "\n\n", text)
            out += [("prose", os.path.relpath(f, repo), c) for c in chunks(text, rng, "\n\n")]
    return out


def markdown_samples(repo, rng):
    """Whole markdown as an answer would carry it (prose, tables and fenced code mixed)."""
    files = [os.path.join(repo, f) for f in ("README.md", "ARCHITECTURE.md", "SECURITY.md")]
    files += sorted(glob.glob(os.path.join(repo, "docs", "*.md")))
    out = []
    for f in files:
        if os.path.exists(f):
            out += [("markdown", os.path.relpath(f, repo), c) for c in chunks(read(f), rng)]
    return out


def shell_files(repo):
    files = sorted(glob.glob(os.path.join(repo, "scripts", "*.sh")))
    for f in sorted(glob.glob(os.path.join(repo, "scripts", "*"))):
        if os.path.isfile(f) and "." not in os.path.basename(f):
            first = read(f).split("\n", 1)[0]
            if first.startswith("#!") and ("bash" in first or first.endswith("sh")):
                files.append(f)
    return files


def code_samples(repo, rng):
    groups = {
        "code:rust": sorted(glob.glob(os.path.join(repo, "proxy", "src", "*.rs"))),
        "code:python": sorted(glob.glob(os.path.join(repo, "scripts", "*.py")))
        + sorted(glob.glob(os.path.join(repo, "tests", "python", "*.py"))),
        "code:shell": shell_files(repo),
    }
    out = []
    for kind, files in groups.items():
        for f in files:
            out += [(kind, os.path.relpath(f, repo), c) for c in chunks(read(f), rng)]
    return out


def tool_input_samples(repo, fixtures, rng):
    """Claude Code tool_use inputs as the model streams them in partial_json:
    Bash {command, description} from commented shell commands in the repo's scripts,
    Edit {file_path, old_string, new_string} and Write {file_path, content} carrying real code."""
    out = []
    # Bash: a command line preceded by a comment, the comment as its description.
    for f in shell_files(repo):
        lines = read(f).split("\n")
        for prev, line in zip(lines, lines[1:]):
            p, c = prev.strip(), line.strip()
            if p.startswith("#") and not p.startswith("#!") and c and not c.startswith("#") and len(c) > 15:
                desc = p.lstrip("# ").rstrip(".")
                if 5 < len(desc) < 120:
                    out.append(("json:tool-bash", os.path.relpath(f, repo),
                                json.dumps({"command": c, "description": desc})))
    # the real tool_use input from the captured Claude Code fixtures
    for f in sorted(glob.glob(os.path.join(fixtures, "*.json"))):
        def walk(x):
            if isinstance(x, dict):
                if x.get("type") == "tool_use" and isinstance(x.get("input"), dict):
                    yield x["input"]
                for v in x.values():
                    yield from walk(v)
            elif isinstance(x, list):
                for v in x:
                    yield from walk(v)
        seen = set()
        for inp in walk(json.load(open(f, encoding="utf-8"))):
            s = json.dumps(inp)
            if s not in seen:
                seen.add(s)
                out.append(("json:tool-bash", os.path.relpath(f, fixtures), s))
    # Edit / Write carrying code (and prose) chunks
    srcs = sorted(glob.glob(os.path.join(repo, "proxy", "src", "*.rs")))
    srcs += sorted(glob.glob(os.path.join(repo, "scripts", "*.py"))) + shell_files(repo)
    srcs += [os.path.join(repo, "README.md")]
    for i, f in enumerate(srcs):
        cs = chunks(read(f), rng)
        if not cs:
            continue
        c = cs[rng.randrange(len(cs))]
        path = os.path.join(repo, os.path.relpath(f, repo))
        if i % 2 == 0:
            lines = c.split("\n")
            keep = max(1, len(lines) * 2 // 3)
            old = "\n".join(lines[:keep])
            new = "\n".join(lines[:keep] + ["    // changed"] + lines[keep:keep + 3])
            out.append(("json:tool-edit/write", os.path.relpath(f, repo),
                        json.dumps({"file_path": path, "old_string": old, "new_string": new})))
        else:
            out.append(("json:tool-edit/write", os.path.relpath(f, repo),
                        json.dumps({"file_path": path, "content": c})))
    return out


def json_doc_samples(repo, fixtures):
    """JSON documents: each event fixture as stored (pretty), and the captured Claude Code
    request/response envelopes (headers, query, response) without their redacted bodies."""
    out = []
    for f in sorted(glob.glob(os.path.join(repo, "schemas", "fixtures", "events", "v1", "*.json"))):
        out.append(("json:document", os.path.relpath(f, repo), read(f).strip()))
    for f in sorted(glob.glob(os.path.join(fixtures, "*.json"))):
        d = json.load(open(f, encoding="utf-8"))
        for rec in d if isinstance(d, list) else [d]:
            env = {k: v for k, v in rec.items() if k != "body"}
            out.append(("json:document", os.path.relpath(f, fixtures), json.dumps(env, indent=1)[:MAX_CHARS]))
    return out


# ---------------------------------------------------------------- report
def select(rows, kind):
    if kind == "all":
        return [r for r in rows if r["kind"] != "markdown"]
    return [r for r in rows if r["kind"] == kind or (kind.endswith("*") and r["kind"].startswith(kind[:-1]))]


def summarise(rows, kinds, key):
    lines = []
    head = f"{'kind':21} {'n':>4} {'chars':>7} {'esc.bytes':>9} {'real tok':>8} {'B/tok':>5}"
    for c in CANDIDATES:
        head += f" | c={c:<3} {'est':>6} {'tot':>5} {'mean':>5} {'min':>5} {'max':>5}"
    lines.append(head)
    for kind in kinds:
        rs = select(rows, kind)
        if not rs:
            continue
        real = sum(r[key] for r in rs)
        nbytes = sum(r["bytes"] for r in rs)
        line = (f"{kind:21} {len(rs):4d} {sum(r['chars'] for r in rs):7d} {nbytes:9d} {real:8d}"
                f" {nbytes / real:5.2f}")
        for c in CANDIDATES:
            est = sum(estimate(r["bytes"], c) for r in rs)
            ratios = [estimate(r["bytes"], c) / r[key] for r in rs]
            line += (f" | {'':5} {est:6d} {est / real:5.2f} {statistics.mean(ratios):5.2f}"
                     f" {min(ratios):5.2f} {max(ratios):5.2f}")
        lines.append(line)
    return "\n".join(lines)


def worst_cases(rows, kinds, key):
    lines = []
    for kind in kinds:
        rs = select(rows, kind)
        parts = []
        for c in CANDIDATES:
            ratios = [estimate(r["bytes"], c) / r[key] for r in rs]
            parts.append(f"c={c}: under {max(0, 1 - min(ratios)) * 100:3.0f}% over {max(0, max(ratios) - 1) * 100:4.0f}%")
        lines.append(f"  {kind:9} " + " | ".join(parts))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", default="/work/main")
    ap.add_argument("--fixtures", default="tests/fixtures/claude-code")
    ap.add_argument("--claude-json", help="npm @anthropic-ai/tokenizer claude.json, to cross-check")
    ap.add_argument("--ctok", action="store_true", help="also report against ctok's unofficial v3/v4.7 reconstructions")
    ap.add_argument("--csv", help="write per-sample rows here")
    args = ap.parse_args()

    name, count = sdk_counter()
    counters = [("real", f"{name} -- Anthropic's Claude 2-era tokenizer", count)]
    if args.ctok:
        counters += [("ctok_v3", "ctok 1.3.0 v3 (UNOFFICIAL reconstruction: Claude 3 .. Opus 4.6)", ctok_counter("3.0")),
                     ("ctok_v4_7", "ctok 1.3.0 v4.7 (UNOFFICIAL reconstruction: Opus 4.7 and later)", ctok_counter("4.7"))]
    check = npm_counter(args.claude_json) if args.claude_json else None
    rng = random.Random(SEED)
    samples = (prose_samples(args.repo, rng) + markdown_samples(args.repo, rng)
               + code_samples(args.repo, rng) + tool_input_samples(args.repo, args.fixtures, rng)
               + json_doc_samples(args.repo, args.fixtures))
    rows, mismatches = [], 0
    for kind, src, text in samples:
        row = {"kind": kind, "source": src, "chars": len(text), "bytes": escaped_bytes(text),
               "non_ascii_chars": sum(1 for ch in text if ord(ch) > 127)}
        for key, _, fn in counters:
            row[key] = fn(text)
        if check is not None and check(text) != row["real"]:
            mismatches += 1
        rows.append(row)
    if check is not None:
        print(f"cross-check, npm @anthropic-ai/tokenizer claude.json via tiktoken: "
              f"{mismatches} of {len(rows)} samples differ from the SDK count")
    print("est = sum of per-sample ceil(escaped_bytes/c); tot = est/real over the kind;"
          " mean/min/max = per-sample est/real; B/tok = escaped bytes per real token (break-even c);"
          " all = prose + code + json")
    kinds = ["prose", "markdown", "code:rust", "code:python", "code:shell", "code:*",
             "json:tool-bash", "json:tool-edit/write", "json:document", "json:*", "all"]
    for key, label, _ in counters:
        print(f"\n== tokens by {label}\n")
        print(summarise(rows, kinds, key))
        print("\nworst sample per kind (under = 1 - min ratio, over = max ratio - 1):")
        print(worst_cases(rows, ["prose", "code:*", "json:*", "all"], key))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
