//! `GET /ccp/statusline`: one short line for Claude Code's status line — the developer's Plan
//! 5-hour and 7-day utilisation with the next resets, "On Bedrock since 14:02 (Plan limit)"
//! while their requests go to Bedrock, and the month's spend against their budget — or the same
//! facts as JSON (`?format=json` or `Accept: application/json`). Authenticated by the access key
//! in `x-ccp-access-key` (or `Authorization: Bearer ak_…`), never in the URL.
//!
//! **Why the proxy and not the admin API.** Claude Code runs the status-line command every few
//! seconds in every session, so an answer must cost microseconds and touch nothing remote. The
//! proxy already holds every figure in memory because its hot path needs them: the key table
//! (`directory`), the newest Plan-limit state per key, shared by the fleet (`rate_limits`), the
//! month's spend per user, shared by the fleet (`spend`). The admin API would need a JetStream
//! round trip per call for the Plan limits (as `/v1/self` does) and ClickHouse for spend, and it
//! is not on the path developers already reach (`ANTHROPIC_BASE_URL`). The path is outside
//! `/v1/` and `/ak/<key>/v1/`, which are forwarded to Anthropic.
//!
//! What the proxy does not keep per key — since when and why requests go to Bedrock (the
//! circuit's transitions, how the last request was answered) — comes from the key's events,
//! watched only while the key's status line is being asked for ([`board`]).
//!
//! The answer is marked `Cache-Control: private, max-age=5` and has a strong `ETag` of its bytes:
//! `If-None-Match` with it gets a 304. A refused key gets a 401 whose body is one short line
//! (`text/plain`, or JSON for the JSON form), so the status line says what is wrong.

pub mod board;
pub mod render;

use std::hash::{Hash as _, Hasher as _};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ccp_schemas::events::{FallbackReason, Provider, RoutingStrategy};
use ccp_schemas::secrets::access_key::AccessKey;
use ccp_schemas::state::Refusal;
use chrono::Utc;
use chrono_tz::Tz;

use crate::directory::Authenticated;
use crate::forward::{Shared, ACCESS_KEY_HEADER};
use crate::metrics::OutcomeLabels;
use crate::spend::Month;
use board::{Board, CircuitState, KeyFacts};
use render::{BedrockReason, Budget, Facts, OnBedrock};

/// The path.
pub const PATH: &str = "/ccp/statusline";
/// How long a client may reuse an answer without asking.
pub const CACHE_CONTROL: &str = "private, max-age=5";
/// What the answer varies with besides the URL.
const VARY: &str = "accept, x-ccp-access-key, authorization";

/// The query string's options.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    json: bool,
    colour: bool,
    tz: Result<Tz, String>,
}

/// Percent-decodes a query value (`+` is a space).
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn options(req: &HttpRequest) -> Options {
    let (mut format, mut colour, mut tz) = (None, false, None);
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "format" => format = Some(decode(value)),
            "color" | "colour" => colour = matches!(decode(value).as_str(), "1" | "true" | "yes" | "on"),
            "tz" => tz = Some(decode(value)),
            _ => {}
        }
    }
    let json = match format.as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/plain")),
    };
    let tz = match tz.as_deref().map(str::trim) {
        None | Some("") => Ok(Tz::UTC),
        Some(name) => name.parse::<Tz>().map_err(|_| name.chars().take(40).collect()),
    };
    Options { json, colour, tz }
}

/// The key as presented: `x-ccp-access-key`, else `Authorization: Bearer ak_…`.
fn presented_key(req: &HttpRequest) -> Option<&str> {
    let headers = req.headers();
    if let Some(v) = headers.get(ACCESS_KEY_HEADER) {
        return v.to_str().ok().map(str::trim);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer "))?.trim();
    token.starts_with("ak_").then_some(token)
}

/// A refusal: one short line, in the form asked for, never cached.
fn refusal(status: StatusCode, kind: &'static str, line: &str, json: bool) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    resp.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::VARY, VARY));
    if json {
        resp.json(serde_json::json!({ "error": { "type": kind, "message": line }, "line": line }))
    } else {
        resp.content_type("text/plain; charset=utf-8").body(format!("{line}\n"))
    }
}

/// Authenticates the presented key against the in-memory table.
fn authenticate(shared: &Shared, req: &HttpRequest) -> Result<Authenticated, (&'static str, &'static str)> {
    let presented = presented_key(req)
        .ok_or(("missing_key", "ClaudeCodeProxy: no access key (send it in the x-ccp-access-key header)"))?;
    let key = AccessKey::parse(presented).map_err(|_| ("malformed_key", "ClaudeCodeProxy: malformed access key"))?;
    let hash = key.hash(&shared.pepper);
    drop(key);
    shared.keys.authenticate(&hash).map_err(|refusal| match refusal {
        Refusal::Unknown => ("unknown_key", "ClaudeCodeProxy: unknown access key - ask your platform team"),
        Refusal::Revoked => ("revoked_key", "ClaudeCodeProxy: access key revoked - ask your platform team"),
        Refusal::InactiveUser => ("inactive_user", "ClaudeCodeProxy: user deactivated - ask your platform team"),
    })
}

/// Where the key's requests go, when it is Bedrock: the user is routed there, the circuit is
/// open (and no request since went to Anthropic), or the last request failed over.
fn on_bedrock(routing: RoutingStrategy, facts: &KeyFacts, now: chrono::DateTime<Utc>) -> Option<OnBedrock> {
    let last = facts.last_request.as_ref();
    let bedrock_since = last.and_then(|l| l.bedrock_since);
    if routing == RoutingStrategy::BedrockOnly {
        let reason = BedrockReason::Fallback(FallbackReason::Routing);
        return Some(OnBedrock { since: bedrock_since, reason, circuit: None });
    }
    if let Some(c) = &facts.circuit {
        let answered_since = last.is_some_and(|l| l.at > c.at && l.provider == Provider::Anthropic);
        let skipping = match c.state {
            CircuitState::Open => c.retry_at.is_none_or(|r| r > now),
            CircuitState::HalfOpen => true,
            CircuitState::Closed => false,
        };
        if skipping && !answered_since {
            let reason = c.reason.map_or(BedrockReason::Fallback(FallbackReason::CircuitOpen), BedrockReason::Trip);
            let since = Some(bedrock_since.map_or(c.since, |s| s.min(c.since)));
            return Some(OnBedrock { since, reason, circuit: Some(c.state.as_str()) });
        }
    }
    let last = last.filter(|l| l.provider == Provider::Bedrock)?;
    let reason = BedrockReason::Fallback(last.fallback_reason.unwrap_or(FallbackReason::CircuitOpen));
    // A request sent to Bedrock because the circuit was open: the circuit's reason says why.
    let reason = match (reason, facts.circuit.as_ref().and_then(|c| c.reason)) {
        (BedrockReason::Fallback(FallbackReason::CircuitOpen), Some(trip)) => BedrockReason::Trip(trip),
        (reason, _) => reason,
    };
    Some(OnBedrock { since: last.bedrock_since, reason, circuit: None })
}

/// A strong validator of the answer's bytes and type.
fn etag(body: &[u8], json: bool) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    body.hash(&mut h);
    format!("\"sl-{:016x}\"", h.finish())
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers().get_all(header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| {
        let t = t.trim();
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
    })
}

/// `GET /ccp/statusline[?tz=Area/City][&format=json|text][&color=1]`.
pub async fn serve(req: HttpRequest, shared: web::Data<Shared>, board: web::Data<Board>) -> HttpResponse {
    let metrics = &shared.recorder.metrics;
    let count = |outcome: &'static str| metrics.statusline_requests.get_or_create(&OutcomeLabels { outcome }).inc();
    let opts = options(&req);
    if !shared.keys.is_ready() || !shared.spend.is_ready() {
        count("not_ready");
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "ClaudeCodeProxy: starting up", opts.json);
    }
    let key = match authenticate(&shared, &req) {
        Ok(key) => key,
        Err((kind, line)) => {
            count("refused");
            return refusal(StatusCode::UNAUTHORIZED, kind, line, opts.json);
        }
    };
    let tz = match &opts.tz {
        Ok(tz) => *tz,
        Err(name) => {
            count("bad_request");
            let line = format!("ClaudeCodeProxy: unknown time zone {name:?} (use e.g. Europe/Berlin)");
            return refusal(StatusCode::BAD_REQUEST, "bad_time_zone", &line, opts.json);
        }
    };
    let now = Utc::now();
    let known = board.facts(key.key_id).await;
    metrics.statusline_watched_keys.set(i64::try_from(board.watched()).unwrap_or(i64::MAX));
    let latest = shared.recorder.rate_limits.latest(&key.key_id);
    // The proxy's newest state, unless it lacks the Plan's limits (a 429 without them) and an
    // event carried them.
    let plan_state = match (&latest, &known.plan) {
        (Some(l), _) if l.unified.is_some() => Some((l.unified.as_ref(), l.observed_at)),
        (_, Some(p)) => Some((p.unified.as_ref(), p.observed_at)),
        _ => None,
    };
    let budget = key.monthly_limit_usd.map(|limit| {
        let budget_tz = shared.spend.tz();
        Budget {
            spent: shared.spend.spent_everywhere(key.user_id, now),
            limit,
            resets_on: Month::of(now, budget_tz).next().first_day(),
            tz: budget_tz,
        }
    });
    let facts = Facts {
        now,
        tz,
        plan: plan_state.and_then(|(u, at)| u.map(|u| (u, at))),
        limits_seen: latest.is_some() || known.plan.is_some(),
        bedrock: on_bedrock(key.routing, &known, now),
        budget,
    };
    let (body, content_type) = if opts.json {
        let mut body = serde_json::to_vec(&render::json(&facts, key.key_prefix.as_str())).unwrap_or_default();
        body.push(b'\n');
        (body, "application/json")
    } else {
        let mut line = render::line(&facts, opts.colour);
        line.push('\n');
        (line.into_bytes(), "text/plain; charset=utf-8")
    };
    let tag = etag(&body, opts.json);
    let unchanged = not_modified(&req, &tag);
    count(if unchanged { "not_modified" } else { "ok" });
    let mut resp = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    resp.insert_header((header::CACHE_CONTROL, CACHE_CONTROL)).insert_header((header::VARY, VARY));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        resp.insert_header((header::ETAG, v));
    }
    if unchanged {
        return resp.finish();
    }
    resp.content_type(content_type).body(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn options_come_from_the_query_and_the_accept_header() {
        let o = options(&TestRequest::with_uri("/ccp/statusline?tz=America%2FNew_York&color=1").to_http_request());
        assert_eq!(o, Options { json: false, colour: true, tz: Ok(chrono_tz::America::New_York) });
        let o = options(&TestRequest::with_uri("/ccp/statusline?tz=Etc/GMT%2B5").to_http_request());
        assert_eq!(o.tz, Ok(chrono_tz::Etc::GMTPlus5), "%2B is a plus, not a space");
        let o = options(&TestRequest::with_uri("/ccp/statusline?format=json").to_http_request());
        assert!(o.json && !o.colour && o.tz == Ok(Tz::UTC));
        let req =
            TestRequest::with_uri("/ccp/statusline").insert_header(("accept", "application/json")).to_http_request();
        assert!(options(&req).json);
        let req = TestRequest::with_uri("/ccp/statusline?format=text")
            .insert_header(("accept", "application/json"))
            .to_http_request();
        assert!(!options(&req).json, "the query wins");
        let o = options(&TestRequest::with_uri("/ccp/statusline?tz=Mars/Olympus").to_http_request());
        assert_eq!(o.tz, Err("Mars/Olympus".to_owned()));
        assert_eq!(decode("a%zz%4"), "a%zz%4", "bad escapes stay as they are");
    }

    #[test]
    fn the_key_comes_from_its_header_or_a_bearer_token_never_the_query() {
        let req =
            TestRequest::with_uri("/ccp/statusline").insert_header((ACCESS_KEY_HEADER, " ak_x ")).to_http_request();
        assert_eq!(presented_key(&req), Some("ak_x"));
        let req =
            TestRequest::with_uri("/ccp/statusline").insert_header(("authorization", "Bearer ak_y")).to_http_request();
        assert_eq!(presented_key(&req), Some("ak_y"));
        let req = TestRequest::with_uri("/ccp/statusline")
            .insert_header(("authorization", "Bearer sk-ant"))
            .to_http_request();
        assert_eq!(presented_key(&req), None, "an Anthropic credential is not an access key");
        let req = TestRequest::with_uri("/ccp/statusline?key=ak_z").to_http_request();
        assert_eq!(presented_key(&req), None);
    }

    #[test]
    fn bedrock_while_routed_there_while_the_circuit_skips_anthropic_or_after_a_failover() {
        use board::{CircuitFacts, RequestFacts};
        use ccp_schemas::events::TripReason;
        let t = |s: i64| chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let request = |at, provider, fallback_reason, bedrock_since: Option<i64>| {
            Some(RequestFacts { at: t(at), provider, fallback_reason, bedrock_since: bedrock_since.map(t) })
        };
        let open = Some(CircuitFacts {
            state: CircuitState::Open,
            at: t(100),
            since: t(100),
            reason: Some(TripReason::UsageLimit),
            retry_at: Some(t(1900)),
        });
        let plan_first = RoutingStrategy::PlanFirst;

        assert_eq!(on_bedrock(plan_first, &KeyFacts::default(), t(0)), None);
        let routed = on_bedrock(RoutingStrategy::BedrockOnly, &KeyFacts::default(), t(0)).unwrap();
        assert_eq!((routed.since, routed.reason.text()), (None, "routing"));

        // Failovers before the circuit opened: the run started with the first.
        let mut f = KeyFacts {
            circuit: open.clone(),
            last_request: request(90, Provider::Bedrock, Some(FallbackReason::RateLimited), Some(60)),
            plan: None,
        };
        let b = on_bedrock(plan_first, &f, t(200)).unwrap();
        assert_eq!((b.since, b.reason.text(), b.circuit), (Some(t(60)), "Plan limit", Some("open")));
        // Past its retry time the circuit alone says nothing; the last request still does, with
        // the circuit's reason for a request it sent to Bedrock.
        f.last_request = request(150, Provider::Bedrock, Some(FallbackReason::CircuitOpen), Some(60));
        let b = on_bedrock(plan_first, &f, t(2000)).unwrap();
        assert_eq!((b.since, b.reason.text(), b.circuit), (Some(t(60)), "Plan limit", None));
        // Anthropic answered after the circuit's last transition (a probe): not on Bedrock.
        f.last_request = request(300, Provider::Anthropic, None, None);
        assert_eq!(on_bedrock(plan_first, &f, t(400)), None);
        f.circuit = None;
        assert_eq!(on_bedrock(plan_first, &f, t(400)), None);
    }

    #[test]
    fn if_none_match_matches_the_tag_weakly_or_a_star() {
        let tag = etag(b"line\n", false);
        assert_ne!(tag, etag(b"line\n", true), "the JSON form has its own tag");
        let with = |v: &str| TestRequest::default().insert_header(("if-none-match", v)).to_http_request();
        assert!(not_modified(&with(&tag), &tag));
        assert!(not_modified(&with(&format!("\"other\", W/{tag}")), &tag));
        assert!(not_modified(&with("*"), &tag));
        assert!(!not_modified(&with("\"sl-0\""), &tag));
        assert!(!not_modified(&TestRequest::default().to_http_request(), &tag));
    }
}
