#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The read-only query endpoints against a real `ccp-admin` on real NATS and ClickHouse: usage
//! events are published to the log and projected by the real projector code into a fresh
//! database, admin commands go through the API and reach the audit log the same way; the
//! answers are checked number by number (per bucket, group and time zone).

mod common;

use std::time::Duration;

use ccp_projector::analytics::{Audit, Projection, Requests};
use ccp_schemas::events::{Endpoint, ErrorClass, Event, FallbackReason, Provider, RequestCompleted, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::secrets::access_key::AccessKey;
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::{completed, wait_rollups};
use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Timelike as _, Utc};
use chrono_tz::Tz;
use common::AdminApi;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// An admin API with the analytics tables and the projector's ClickHouse projections.
struct Stack {
    api: AdminApi,
    requests: Projection<Requests>,
    audit: Projection<Audit>,
    ch: clickhouse::Client,
}

impl Stack {
    async fn start(label: &str, extra: &[(&str, &str)]) -> Self {
        let api = AdminApi::start_with(label, extra).await;
        ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
        let ch = ccp_runtime::migrate::server_client(&api.settings.clickhouse)
            .unwrap()
            .with_database(&api.settings.clickhouse.database);
        let flush = Duration::from_millis(100);
        let requests = Projection::<Requests>::open(&api.log.js, &api.log.ns, ch.clone(), 1000, flush).await.unwrap();
        let audit = Projection::<Audit>::open(&api.log.js, &api.log.ns, ch.clone(), 1000, flush).await.unwrap();
        Self { api, requests, audit, ch }
    }

    /// Appends a usage event as the proxy would.
    async fn publish(&self, r: &Req) {
        self.publish_event(r.event(), "replica-1", r.at).await;
    }

    /// Appends `event` as proxy `replica` would, occurred at `at`; the envelope's id.
    async fn publish_event(&self, event: RequestCompleted, replica: &str, at: DateTime<Utc>) -> String {
        let mut envelope = Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: replica.into() });
        envelope.occurred_at = at;
        self.api.log.publish(&envelope).await;
        envelope.id.to_string()
    }

    /// Projects everything in the log so far, then waits until the rollups show every request.
    async fn project(&mut self) {
        while self.requests.process_next_batch().await.unwrap().received > 0 {}
        while self.audit.process_next_batch().await.unwrap().received > 0 {}
        let raw: u64 = self.ch.query("SELECT count() FROM requests").fetch_one().await.unwrap();
        wait_rollups(&self.api.settings.clickhouse.database, raw).await;
    }

    async fn get(&self, path: &str) -> Value {
        let a = self.api.get(path).await;
        assert_eq!(a.status, 200, "GET {path}: {}\n{}", a.text, self.api.service.log_text());
        a.body
    }

    async fn finish(self) {
        let db = self.api.settings.clickhouse.database.clone();
        ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
        self.api.finish().await;
    }
}

/// A request through the proxy, with token counts derived from `n`.
#[derive(Debug, Clone)]
struct Req {
    at: DateTime<Utc>,
    user: String,
    key: String,
    requested: &'static str,
    response: Option<&'static str>,
    provider: Provider,
    fallback: bool,
    error: bool,
    n: u64,
    cost_nanos: u64,
    team: Option<String>,
    unpriced: bool,
    estimated: bool,
}

impl Req {
    fn new(at: &str, user: &str, key: &str, n: u64, cost_nanos: u64) -> Self {
        Self {
            at: utc(at),
            user: user.to_owned(),
            key: key.to_owned(),
            requested: "claude-sonnet-4-5",
            response: Some("claude-sonnet-4-5-20250929"),
            provider: Provider::Anthropic,
            fallback: false,
            error: false,
            n,
            cost_nanos,
            team: None,
            unpriced: false,
            estimated: false,
        }
    }

    fn in_team(mut self, team: &str) -> Self {
        self.team = Some(team.to_owned());
        self
    }

    fn haiku(mut self) -> Self {
        self.requested = "claude-haiku-4-5";
        self.response = None;
        self
    }

    fn bedrock(mut self) -> Self {
        self.provider = Provider::Bedrock;
        self.fallback = true;
        self
    }

    fn event(&self) -> RequestCompleted {
        RequestCompleted {
            provider: self.provider,
            requested_model: Some(self.requested.into()),
            response_model: self.response.map(Into::into),
            fallback: self.fallback,
            fallback_reason: self.fallback.then_some(FallbackReason::RateLimited),
            status: if self.error { 502 } else { 200 },
            error_class: self.error.then_some(ErrorClass::UpstreamServerError),
            usage: TokenUsage {
                input_tokens: self.n * 100,
                output_tokens: self.n * 10,
                cache_read_input_tokens: self.n * 1000,
                cache_creation_input_tokens: self.n * 5,
            },
            cost_usd: (!self.unpriced).then(|| Decimal::new(i64::try_from(self.cost_nanos).unwrap(), 9)),
            unpriced: self.unpriced,
            usage_estimated: self.estimated,
            team_id: self.team.as_deref().map(|t| t.parse().unwrap()),
            latency_ms: 1200,
            ttfb_ms: Some(300),
            ..completed(self.user.parse::<UserId>().unwrap(), self.key.parse::<AccessKeyId>().unwrap())
        }
    }

    fn model(&self) -> &'static str {
        self.response.unwrap_or(self.requested)
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Nano-dollars as the API writes USD.
fn usd(nanos: u64) -> String {
    Decimal::from_i128_with_scale(i128::from(nanos), 9).normalize().to_string()
}

/// The counts of some requests, as the API answers them.
fn counts(reqs: &[&Req]) -> serde_json::Map<String, Value> {
    let sum = |f: &dyn Fn(&Req) -> u64| reqs.iter().map(|r| f(r)).sum::<u64>();
    let value = json!({
        "requests": reqs.len(),
        "errors": sum(&|r| u64::from(r.error)),
        "fallbacks": sum(&|r| u64::from(r.fallback)),
        "input_tokens": sum(&|r| r.n * 100),
        "output_tokens": sum(&|r| r.n * 10),
        "cache_read_tokens": sum(&|r| r.n * 1000),
        "cache_creation_tokens": sum(&|r| r.n * 5),
        "cost_usd": usd(sum(&|r| r.cost_nanos)),
        "unpriced_requests": 0,
        "unpriced_tokens": 0,
        "estimated_requests": 0,
    });
    value.as_object().unwrap().clone()
}

/// An expected row: bucket start, grouped dimensions, and the requests in it.
fn row(bucket_start: &str, dims: &[(&str, &str)], reqs: &[&Req]) -> Value {
    let mut m = counts(reqs);
    m.insert("bucket_start".into(), json!(bucket_start));
    for (k, v) in dims {
        m.insert((*k).into(), json!(v));
    }
    Value::Object(m)
}

fn assert_rows(answer: &Value, expected: &[Value], what: &str) {
    let rows = answer["rows"].as_array().unwrap_or_else(|| panic!("{what}: no rows in {answer}"));
    assert_eq!(rows.len(), expected.len(), "{what}: {}", serde_json::to_string_pretty(rows).unwrap());
    for (got, want) in rows.iter().zip(expected) {
        assert_eq!(got, want, "{what}");
    }
}

/// Six requests around Berlin's switch to summer time (2025-03-30 01:00 UTC) and one in April.
struct History {
    a: String,
    b: String,
    k1: String,
    k2: String,
    reqs: Vec<Req>,
}

async fn history(stack: &Stack) -> History {
    let a = stack.api.create_user("Ada").await;
    let b = stack.api.create_user("Bob").await;
    let (k1, _) = stack.api.issue_key(&a).await;
    let (k2, _) = stack.api.issue_key(&b).await;
    let mut e4 = Req::new("2025-03-30T12:00:00Z", &a, &k1, 4, 4_000_000);
    e4.error = true;
    let mut e6 = Req::new("2025-04-02T10:00:00Z", &a, &k1, 6, 1_000_000_000);
    e6.requested = "claude-opus-4-5";
    e6.response = Some("claude-opus-4-5-20251101");
    let reqs = vec![
        Req::new("2025-03-29T22:30:00Z", &a, &k1, 1, 1_500_000),
        Req::new("2025-03-29T23:15:00Z", &a, &k1, 2, 2_000_000).bedrock(),
        Req::new("2025-03-30T00:10:00Z", &b, &k2, 3, 300_000).haiku(),
        e4,
        Req::new("2025-03-31T01:00:00Z", &b, &k2, 5, 123_456_789).haiku().bedrock(),
        e6,
    ];
    for r in &reqs {
        stack.publish(r).await;
    }
    History { a, b, k1, k2, reqs }
}

#[tokio::test]
async fn usage_is_summed_per_bucket_and_group_in_the_time_zone() {
    let mut stack = Stack::start("qusage", &[]).await;
    let h = history(&stack).await;
    stack.project().await;
    let e: Vec<&Req> = h.reqs.iter().collect();
    let (e1, e2, e3, e4, e5, e6) = (e[0], e[1], e[2], e[3], e[4], e[5]);

    // UTC days, read from the day rollup.
    let q = stack.get("/v1/usage?tz=UTC&from=2025-03-29T00:00:00Z&to=2025-04-01T00:00:00Z").await;
    assert_eq!(q["bucket"], "day", "more than two days: day buckets");
    assert_eq!(q["tz"], "UTC");
    assert_eq!(q["group_by"], json!([]));
    assert_eq!(utc(q["from"].as_str().unwrap()), utc("2025-03-29T00:00:00Z"));
    assert_eq!(utc(q["to"].as_str().unwrap()), utc("2025-04-01T00:00:00Z"));
    assert_rows(
        &q,
        &[
            row("2025-03-29T00:00:00Z", &[], &[e1, e2]),
            row("2025-03-30T00:00:00Z", &[], &[e3, e4]),
            row("2025-03-31T00:00:00Z", &[], &[e5]),
        ],
        "UTC days",
    );
    assert_eq!(Value::Object(counts(&[e1, e2, e3, e4, e5])), q["totals"]);
    assert_eq!(q["totals"]["cost_usd"], "0.131256789");
    assert_eq!(q["totals"]["errors"], 1);
    assert_eq!(q["totals"]["fallbacks"], 2);

    // Berlin days (from the hour rollup): the 30th has 23 hours and starts at 23:00 UTC, the
    // 31st at 22:00 UTC.
    let q =
        stack.get("/v1/usage?tz=Europe/Berlin&from=2025-03-29T00:00:00%2B01:00&to=2025-04-01T00:00:00%2B02:00").await;
    assert_eq!(q["tz"], "Europe/Berlin");
    assert_eq!(q["from"], "2025-03-29T00:00:00+01:00");
    assert_eq!(q["to"], "2025-04-01T00:00:00+02:00");
    assert_rows(
        &q,
        &[
            row("2025-03-29T00:00:00+01:00", &[], &[e1]),
            row("2025-03-30T00:00:00+01:00", &[], &[e2, e3, e4]),
            row("2025-03-31T00:00:00+02:00", &[], &[e5]),
        ],
        "Berlin days",
    );

    // Kolkata days start at 18:30 UTC: off every rollup's grid, so from the raw rows.
    let q = stack
        .get("/v1/usage?tz=Asia/Kolkata&bucket=day&from=2025-03-29T00:00:00%2B05:30&to=2025-04-01T00:00:00%2B05:30")
        .await;
    assert_rows(
        &q,
        &[row("2025-03-30T00:00:00+05:30", &[], &[e1, e2, e3, e4]), row("2025-03-31T00:00:00+05:30", &[], &[e5])],
        "Kolkata days",
    );
    assert_eq!(utc(q["rows"][0]["bucket_start"].as_str().unwrap()), utc("2025-03-29T18:30:00Z"));

    // Weeks start on Monday (24 and 31 March 2025).
    let q = stack.get("/v1/usage?tz=UTC&bucket=week&from=2025-03-24T00:00:00Z&to=2025-04-07T00:00:00Z").await;
    assert_rows(
        &q,
        &[row("2025-03-24T00:00:00Z", &[], &[e1, e2, e3, e4]), row("2025-03-31T00:00:00Z", &[], &[e5, e6])],
        "weeks",
    );

    // Months, grouped by user and model (the reported model, else the requested one).
    let q = stack
        .get("/v1/usage?tz=UTC&bucket=month&group_by=user,model&from=2025-03-01T00:00:00Z&to=2025-05-01T00:00:00Z")
        .await;
    assert_eq!(q["group_by"], json!(["user", "model"]));
    let mut march = vec![
        row("2025-03-01T00:00:00Z", &[("user_id", &h.a), ("model", e1.model())], &[e1, e2, e4]),
        row("2025-03-01T00:00:00Z", &[("user_id", &h.b), ("model", "claude-haiku-4-5")], &[e3, e5]),
    ];
    march.sort_by_key(|r| r["user_id"].as_str().unwrap().to_owned());
    march.push(row("2025-04-01T00:00:00Z", &[("user_id", &h.a), ("model", "claude-opus-4-5-20251101")], &[e6]));
    assert_rows(&q, &march, "months by user and model");
    assert_eq!(q["totals"]["cost_usd"], "1.131256789");

    // Hours by provider, with filters.
    let q = stack.get("/v1/usage?tz=UTC&group_by=provider&from=2025-03-29T22:00:00Z&to=2025-03-30T01:00:00Z").await;
    assert_eq!(q["bucket"], "hour", "up to two days: hour buckets");
    assert_rows(
        &q,
        &[
            row("2025-03-29T22:00:00Z", &[("provider", "anthropic")], &[e1]),
            row("2025-03-29T23:00:00Z", &[("provider", "bedrock")], &[e2]),
            row("2025-03-30T00:00:00Z", &[("provider", "anthropic")], &[e3]),
        ],
        "hours by provider",
    );
    let range = "tz=UTC&bucket=day&from=2025-03-29T00:00:00Z&to=2025-04-03T00:00:00Z";
    let q = stack.get(&format!("/v1/usage?{range}&user_id={}", h.a)).await;
    assert_eq!(q["totals"], Value::Object(counts(&[e1, e2, e4, e6])), "user filter");
    let q = stack.get(&format!("/v1/usage?{range}&key_id={}&group_by=key", h.k2)).await;
    assert_rows(
        &q,
        &[
            row("2025-03-30T00:00:00Z", &[("key_id", &h.k2)], &[e3]),
            row("2025-03-31T00:00:00Z", &[("key_id", &h.k2)], &[e5]),
        ],
        "key filter",
    );
    let q = stack.get(&format!("/v1/usage?{range}&provider=bedrock")).await;
    assert_eq!(q["totals"], Value::Object(counts(&[e2, e5])), "provider filter");
    let q = stack.get(&format!("/v1/usage?{range}&model=claude-haiku-4-5&group_by=user")).await;
    assert_eq!(q["totals"], Value::Object(counts(&[e3, e5])), "model filter (requested model)");
    let q =
        stack.get(&format!("/v1/usage?{range}&model=claude-sonnet-4-5-20250929&user_id={}&key_id={}", h.a, h.k1)).await;
    assert_eq!(q["totals"], Value::Object(counts(&[e1, e2, e4])), "model filter (reported model)");
    let q = stack.get(&format!("/v1/usage?{range}&user_id={}", UserId::new())).await;
    assert_eq!(q["rows"], json!([]));
    assert_eq!(q["totals"], Value::Object(counts(&[])));

    // A range off the hour grid is exact: 22:45–00:30 holds e2 and e3, not e1 at 22:30.
    let q = stack.get("/v1/usage?tz=UTC&from=2025-03-29T22:45:00Z&to=2025-03-30T00:30:00Z").await;
    assert_rows(
        &q,
        &[row("2025-03-29T23:00:00Z", &[], &[e2]), row("2025-03-30T00:00:00Z", &[], &[e3])],
        "unaligned range",
    );
    // The same instants however the bounds are written, and the same totals from every table.
    let q = stack.get("/v1/usage?tz=UTC&from=2025-03-29T23:45:00%2B01:00&to=2025-03-30T06:00:00%2B05:30").await;
    assert_eq!(q["totals"], Value::Object(counts(&[e2, e3])));
    let all = Value::Object(counts(&[e1, e2, e3, e4, e5, e6]));
    for bucket in ["month", "week", "day", "hour"] {
        let q = stack
            .get(&format!("/v1/usage?tz=UTC&bucket={bucket}&from=2025-03-01T00:00:00Z&to=2025-05-01T00:00:00Z"))
            .await;
        assert_eq!(q["totals"], all, "{bucket}");
        let q = stack
            .get(&format!(
                "/v1/usage?tz=Asia/Kolkata&bucket={bucket}&from=2025-03-01T00:00:00Z&to=2025-05-01T00:00:00Z"
            ))
            .await;
        assert_eq!(q["totals"], all, "{bucket} in Kolkata");
    }
    stack.finish().await;
}

/// What a preset should be at `now` in `tz` (for the zones used here, which keep one offset).
fn expected_preset(preset: &str, tz: Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let local = now.with_timezone(&tz);
    let at =
        |d: NaiveDate, h: u32| tz.from_local_datetime(&d.and_hms_opt(h, 0, 0).unwrap()).unwrap().with_timezone(&Utc);
    let today = local.date_naive();
    let days = |n: i64| today + chrono::Duration::days(n);
    let first = |year: i32, month: u32| {
        if month == 0 {
            NaiveDate::from_ymd_opt(year - 1, 12, 1)
        } else if month == 13 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, month, 1)
        }
        .unwrap()
    };
    match preset {
        "today" => (at(today, 0), at(days(1), 0)),
        "yesterday" => (at(days(-1), 0), at(today, 0)),
        "last_24h" => {
            let end = at(today, local.hour()) + chrono::Duration::hours(1);
            (end - chrono::Duration::hours(24), end)
        }
        "last_7d" => (at(days(-6), 0), at(days(1), 0)),
        "last_30d" => (at(days(-29), 0), at(days(1), 0)),
        "this_month" => (at(first(local.year(), local.month()), 0), at(first(local.year(), local.month() + 1), 0)),
        "last_month" => (at(first(local.year(), local.month() - 1), 0), at(first(local.year(), local.month()), 0)),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn presets_cover_whole_local_periods_and_recent_minutes() {
    let mut stack = Stack::start("qpresets", &[]).await;
    let user = stack.api.create_user("Cy").await;
    let (key, _) = stack.api.issue_key(&user).await;
    let now = Utc::now();
    let minute = DateTime::<Utc>::from_timestamp(now.timestamp() / 60 * 60, 0).unwrap();
    let ago = |minutes: i64| (minute - chrono::Duration::minutes(minutes)).to_rfc3339();
    let reqs = [
        Req::new(&ago(1), &user, &key, 1, 1_000),
        Req::new(&ago(3 * 60), &user, &key, 2, 20_000),
        Req::new(&ago(2 * 24 * 60), &user, &key, 3, 300_000),
        Req::new(&ago(10 * 24 * 60), &user, &key, 4, 4_000_000),
        Req::new(&ago(45 * 24 * 60), &user, &key, 5, 50_000_000),
    ];
    for r in &reqs {
        stack.publish(r).await;
    }
    stack.project().await;

    for tz_name in ["UTC", "Asia/Kolkata"] {
        let tz: Tz = tz_name.parse().unwrap();
        for preset in ["today", "yesterday", "last_24h", "last_7d", "last_30d", "this_month", "last_month"] {
            let before = Utc::now();
            let q = stack.get(&format!("/v1/usage?preset={preset}&tz={tz_name}")).await;
            let after = Utc::now();
            let (from, to) = (utc(q["from"].as_str().unwrap()), utc(q["to"].as_str().unwrap()));
            assert!(
                (from, to) == expected_preset(preset, tz, before) || (from, to) == expected_preset(preset, tz, after),
                "{preset} in {tz_name}: {from}..{to}"
            );
            let offset = if tz_name == "UTC" { "Z" } else { "+05:30" };
            assert!(q["from"].as_str().unwrap().ends_with(offset), "{preset}: {}", q["from"]);
            let bucket = if to - from <= chrono::Duration::days(2) { "hour" } else { "day" };
            assert_eq!(q["bucket"], bucket, "{preset}");
            let inside: Vec<&Req> = reqs.iter().filter(|r| r.at >= from && r.at < to).collect();
            assert_eq!(q["totals"], Value::Object(counts(&inside)), "{preset} in {tz_name}");
        }
    }

    // Minute buckets of the last 24 hours, from the minute rollup.
    let q = stack.get("/v1/usage?preset=last_24h&tz=UTC&bucket=minute").await;
    let start = |r: &Req| r.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_rows(&q, &[row(&start(&reqs[1]), &[], &[&reqs[1]]), row(&start(&reqs[0]), &[], &[&reqs[0]])], "minutes");
    // Kolkata days of the last week, grouped by key (minute rollup: days start at :30).
    let q = stack.get("/v1/usage?preset=last_7d&tz=Asia/Kolkata&group_by=key").await;
    let ist: Tz = "Asia/Kolkata".parse().unwrap();
    let day_start = |r: &Req| {
        let d = r.at.with_timezone(&ist).date_naive().and_hms_opt(0, 0, 0).unwrap();
        ist.from_local_datetime(&d).unwrap().fixed_offset().to_rfc3339()
    };
    let mut expected = vec![row(&day_start(&reqs[2]), &[("key_id", &key)], &[&reqs[2]])];
    if day_start(&reqs[0]) == day_start(&reqs[1]) {
        expected.push(row(&day_start(&reqs[0]), &[("key_id", &key)], &[&reqs[1], &reqs[0]]));
    } else {
        expected.push(row(&day_start(&reqs[1]), &[("key_id", &key)], &[&reqs[1]]));
        expected.push(row(&day_start(&reqs[0]), &[("key_id", &key)], &[&reqs[0]]));
    }
    assert_rows(&q, &expected, "Kolkata days of the last week");
    // `from` alone runs to now; no range at all is the last 24 hours.
    let q = stack.get(&format!("/v1/usage?from={}&tz=UTC", ago(90).replace('+', "%2B"))).await;
    assert_eq!(q["totals"], Value::Object(counts(&[&reqs[0]])));
    assert!(utc(q["to"].as_str().unwrap()) > now);
    let q = stack.get("/v1/usage?tz=UTC").await;
    assert_eq!(q["bucket"], "hour");
    assert_eq!(q["totals"], Value::Object(counts(&[&reqs[0], &reqs[1]])));
    stack.finish().await;
}

/// The first instant of the month `months` after the one `now` is in, in `tz`.
fn month_start(tz: Tz, now: DateTime<Utc>, months: i32) -> DateTime<Utc> {
    let local = now.with_timezone(&tz);
    let index = local.year() * 12 + i32::try_from(local.month0()).unwrap() + months;
    let d = NaiveDate::from_ymd_opt(index.div_euclid(12), u32::try_from(index.rem_euclid(12)).unwrap() + 1, 1).unwrap();
    tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap()).earliest().unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn budgets_count_this_month_in_the_budget_time_zone() {
    let mut stack = Stack::start("qbudget", &[("CCP__BUDGETS__TIME_ZONE", "Europe/Berlin")]).await;
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let created = stack.api.post("/v1/users", json!({"name": "Limited", "monthly_limit_usd": "0.01"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let limited = created.body["user_id"].as_str().unwrap().to_owned();
    let unlimited = stack.api.create_user("Unlimited").await;
    let zero = stack.api.post("/v1/users", json!({"name": "Zero", "monthly_limit_usd": "0"})).await;
    let zero = zero.body["user_id"].as_str().unwrap().to_owned();
    let (k1, _) = stack.api.issue_key(&limited).await;
    let (k2, _) = stack.api.issue_key(&unlimited).await;

    let now = Utc::now();
    let start = month_start(berlin, now, 0);
    let at = |secs: i64| (start + chrono::Duration::seconds(secs)).to_rfc3339();
    stack.publish(&Req::new(&at(1), &limited, &k1, 1, 6_000_000)).await;
    stack.publish(&Req::new(&at(-1), &limited, &k1, 1, 50_000_000)).await; // last month
    stack.publish(&Req::new(&at(2), &unlimited, &k2, 1, 7_000_000)).await;
    stack.project().await;

    let next = month_start(berlin, now, 1).with_timezone(&berlin).fixed_offset().to_rfc3339();
    let month = format!("{:04}-{:02}", now.with_timezone(&berlin).year(), now.with_timezone(&berlin).month());
    let b = stack.get(&format!("/v1/users/{limited}/budget")).await;
    assert_eq!(
        b,
        json!({"user_id": limited, "month": month, "time_zone": "Europe/Berlin", "limit_usd": "0.01",
               "spent_usd": "0.006", "remaining_usd": "0.004", "reset_at": next, "exhausted": false})
    );
    assert_eq!(utc(b["reset_at"].as_str().unwrap()), month_start(berlin, now, 1));

    stack.publish(&Req::new(&at(3), &limited, &k1, 1, 5_000_000)).await;
    stack.project().await;
    let b = stack.get(&format!("/v1/users/{limited}/budget")).await;
    assert_eq!((&b["spent_usd"], &b["remaining_usd"], &b["exhausted"]), (&json!("0.011"), &json!("0"), &json!(true)));

    let b = stack.get(&format!("/v1/users/{unlimited}/budget")).await;
    assert_eq!((&b["limit_usd"], &b["spent_usd"], &b["remaining_usd"]), (&Value::Null, &json!("0.007"), &Value::Null));
    assert_eq!(b["exhausted"], false);
    let b = stack.get(&format!("/v1/users/{zero}/budget")).await;
    assert_eq!((&b["limit_usd"], &b["spent_usd"], &b["remaining_usd"]), (&json!("0"), &json!("0"), &json!("0")));
    assert_eq!(b["exhausted"], true, "a zero budget is used up");

    let missing = stack.api.get(&format!("/v1/users/{}/budget", UserId::new())).await;
    assert_eq!((missing.status, missing.error_type()), (404, "not_found"), "{}", missing.text);
    let bad = stack.api.get("/v1/users/usr_nope/budget").await;
    assert_eq!((bad.status, bad.body["error"]["field"].as_str()), (400, Some("user_id")), "{}", bad.text);

    // The budget time zone is also the default of usage queries.
    let q = stack.get("/v1/usage?preset=this_month").await;
    assert_eq!(q["tz"], "Europe/Berlin");
    assert_eq!(utc(q["from"].as_str().unwrap()), start);
    let mine: Vec<Req> = vec![
        Req::new(&at(1), &limited, &k1, 1, 6_000_000),
        Req::new(&at(2), &unlimited, &k2, 1, 7_000_000),
        Req::new(&at(3), &limited, &k1, 1, 5_000_000),
    ];
    assert_eq!(q["totals"], Value::Object(counts(&mine.iter().collect::<Vec<_>>())));
    stack.finish().await;
}

#[tokio::test]
async fn requests_are_looked_up_by_id() {
    let mut stack = Stack::start("qrequests", &[]).await;
    let user = stack.api.create_user("Dee").await;
    let (key, _) = stack.api.issue_key(&user).await;
    let request_id = RequestId::new();
    let prefix = AccessKey::generate().unwrap().display_prefix();
    let occurred_at = DateTime::<Utc>::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let completed = RequestCompleted {
        request_id,
        key_id: Some(key.parse().unwrap()),
        user_id: Some(user.parse().unwrap()),
        team_id: None,
        key_prefix: Some(prefix.clone()),
        endpoint: Endpoint::Messages,
        provider: Provider::Bedrock,
        requested_model: Some("claude-sonnet-4-5".into()),
        response_model: Some("claude-sonnet-4-5-20250929".into()),
        bedrock_model_id: Some("global.anthropic.claude-sonnet-4-5-20250929-v1:0".into()),
        region: Some("eu-central-1".into()),
        fallback: true,
        fallback_reason: Some(FallbackReason::Overloaded),
        status: 200,
        error_class: Some(ErrorClass::ClientDisconnected),
        stream: true,
        incomplete: true,
        stop_reason: None,
        usage: TokenUsage {
            input_tokens: 12,
            output_tokens: 34,
            cache_read_input_tokens: 56_000,
            cache_creation_input_tokens: 789,
        },
        cost_usd: Some(Decimal::new(12_345_678, 9)),
        pricing_version: Some(3),
        unpriced: false,
        priced_model: Some("claude-sonnet-4-5".into()),
        usage_estimated: true,
        bedrock_resolution: Some(ccp_schemas::events::TargetSource::Catalogue),
        model_substituted: false,
        latency_ms: 4567,
        ttfb_ms: Some(890),
        session_id: Some("7c1c6a0e-session".into()),
        client_version: Some("claude-cli/2.1.332".into()),
        rate_limit: None,
    };
    let event_id = stack.publish_event(completed.clone(), "replica-7", occurred_at).await;
    // A request whose id was minted 20 days before it was recorded (found by the wider search,
    // 35 days either way), and one minted far from its time (a clock years off: not looked for,
    // so that no lookup reads the whole table).
    let old = RequestCompleted { request_id: RequestId::new(), fallback_reason: None, ..completed.clone() };
    let old_at = occurred_at - chrono::Duration::days(20);
    stack.publish_event(old.clone(), "replica-7", old_at).await;
    let far = RequestCompleted { request_id: RequestId::new(), ..completed.clone() };
    stack.publish_event(far.clone(), "replica-7", utc("2024-02-29T12:00:00Z")).await;
    stack.project().await;

    let r = stack.get(&format!("/v1/requests/{request_id}")).await;
    assert_eq!(
        r,
        json!({
            "request_id": request_id.to_string(), "occurred_at": occurred_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "user_id": user, "key_id": key, "key_prefix": prefix.as_str(), "endpoint": "messages",
            "provider": "bedrock", "fallback": true, "fallback_reason": "overloaded",
            "error_class": "client_disconnected", "status": 200, "stream": true, "incomplete": true,
            "stop_reason": null, "requested_model": "claude-sonnet-4-5",
            "response_model": "claude-sonnet-4-5-20250929",
            "bedrock_model_id": "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "region": "eu-central-1",
            "input_tokens": 12, "output_tokens": 34, "cache_read_tokens": 56000, "cache_creation_tokens": 789,
            "cost_usd": "0.012345678", "pricing_version": 3, "latency_ms": 4567, "ttfb_ms": 890,
            "session_id": "7c1c6a0e-session", "client_version": "claude-cli/2.1.332", "replica": "replica-7",
            "event_id": event_id, "unpriced": false, "priced_model": "claude-sonnet-4-5", "usage_estimated": true,
            "bedrock_resolution": "catalogue", "model_substituted": false,
        })
    );
    let r = stack.get(&format!("/v1/requests/{}", old.request_id)).await;
    assert_eq!(r["occurred_at"], old_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    assert_eq!(r["fallback_reason"], Value::Null);
    let far = stack.api.get(&format!("/v1/requests/{}", far.request_id)).await;
    assert_eq!((far.status, far.error_type()), (404, "not_found"), "{}", far.text);

    let missing = stack.api.get(&format!("/v1/requests/{}", RequestId::new())).await;
    assert_eq!((missing.status, missing.error_type()), (404, "not_found"), "{}", missing.text);
    for bad in ["req_123", "usr_01JDQ7ABCDEFGHJKMNPQRSTVWX", "%27%20OR%201%3D1"] {
        let a = stack.api.get(&format!("/v1/requests/{bad}")).await;
        assert_eq!((a.status, a.body["error"]["field"].as_str()), (400, Some("request_id")), "{bad}: {}", a.text);
    }

    // Keys' last use, for the key listings.
    let last = ccp_admin_api::usage::last_used(&stack.ch, &[key.clone(), AccessKeyId::new().to_string()]).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[&key], occurred_at);
    assert!(ccp_admin_api::usage::last_used(&stack.ch, &[]).await.is_empty());
    let nowhere = ccp_tests::clickhouse().with_database("t_no_such_database");
    assert!(ccp_admin_api::usage::last_used(&nowhere, &[key]).await.is_empty(), "errors: empty");
    stack.finish().await;
}

#[tokio::test]
async fn the_audit_log_is_filtered_by_actor_target_and_type() {
    let mut stack = Stack::start("qaudit", &[]).await;
    let me = stack.get("/v1/auth/me").await;
    let admin_id = me["admin_id"].as_str().unwrap().to_owned();
    let created_x = stack.api.post("/v1/users", json!({"name": "Xena"})).await;
    let x = created_x.body["user_id"].as_str().unwrap().to_owned();
    let budget = stack.api.put(&format!("/v1/users/{x}/budget"), json!({"monthly_limit_usd": "12.5"})).await;
    assert_eq!(budget.status, 200, "{}", budget.text);
    let (key, _) = stack.api.issue_key(&x).await;
    let created_y = stack.api.post("/v1/users", json!({"name": "Yuri"})).await;
    let y = created_y.body["user_id"].as_str().unwrap().to_owned();
    stack.project().await;

    let all = stack.get("/v1/audit").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(all["total"].as_u64().unwrap() as usize, items.len());
    assert_eq!((all["offset"].as_u64(), all["limit"].as_u64()), (Some(0), Some(50)));
    let times: Vec<DateTime<Utc>> = items.iter().map(|i| utc(i["occurred_at"].as_str().unwrap())).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    assert_eq!(items[0]["target_id"], y.as_str(), "the last command comes first");

    let created = stack.get("/v1/audit?type=user_created").await;
    assert_eq!(created["total"], 2);
    let newest = &created["items"][0];
    assert_eq!(newest["event_type"], "user_created");
    assert_eq!(newest["actor_kind"], "admin");
    assert_eq!(newest["actor_id"], admin_id.as_str());
    assert_eq!(newest["actor_name"], common::ADMIN_USER);
    assert_eq!(newest["target_kind"], "user");
    assert_eq!(newest["target_id"], y.as_str());
    assert_eq!(newest["user_id"], y.as_str());
    assert_eq!(newest["key_id"], Value::Null);
    assert_eq!(newest["source"], "127.0.0.1");
    assert_eq!(newest["request_id"], created_y.header("x-request-id").unwrap(), "the command's request id");
    assert_eq!(newest["details"]["name"], "Yuri", "details are the payload object");
    assert!(newest["event_id"].as_str().is_some_and(|e| e.len() == 26));

    let about_x = stack.get(&format!("/v1/audit?target={x}")).await;
    let types: Vec<&str> =
        about_x["items"].as_array().unwrap().iter().map(|i| i["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["access_key_issued", "budget_set", "user_created"], "the user's events, their keys' too");
    assert_eq!(about_x["items"][1]["details"]["monthly_limit_usd"], "12.5");
    assert_eq!(about_x["items"][1]["request_id"], budget.header("x-request-id").unwrap());
    let about_key = stack.get(&format!("/v1/audit?target={key}")).await;
    assert_eq!(about_key["total"], 1);
    assert_eq!(about_key["items"][0]["target_kind"], "access_key");
    assert_eq!(about_key["items"][0]["user_id"], x.as_str());
    assert!(about_key["items"][0]["details"].get("key_hash").is_none(), "no hashes in the audit log");
    let both = stack.get(&format!("/v1/audit?target={x}&type=budget_set")).await;
    assert_eq!(both["total"], 1);

    let by_name = stack.get(&format!("/v1/audit?actor={}", common::ADMIN_USER)).await;
    let by_id = stack.get(&format!("/v1/audit?actor={admin_id}")).await;
    assert!(by_name["total"].as_u64().unwrap() >= 4, "the 4 commands at least: {by_name}");
    assert_eq!(by_name["total"], by_id["total"]);
    assert!(by_name["items"].as_array().unwrap().iter().all(|i| i["actor_id"] == admin_id.as_str()));
    let nobody = stack.get("/v1/audit?actor=nobody").await;
    assert_eq!((nobody["total"].as_u64(), nobody["items"].as_array().map(Vec::len)), (Some(0), Some(0)));

    let second = stack.get("/v1/audit?type=user_created&limit=1&offset=1").await;
    assert_eq!(
        (second["total"].as_u64(), second["limit"].as_u64(), second["offset"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["target_id"], x.as_str());
    let past = stack.get("/v1/audit?type=user_created&offset=2").await;
    assert_eq!((past["total"].as_u64(), past["items"].as_array().map(Vec::len)), (Some(2), Some(0)));

    let first = utc(created["items"][1]["occurred_at"].as_str().unwrap());
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    let window = stack
        .get(&format!("/v1/audit?type=user_created&from={}&to={later}", first.to_rfc3339().replace('+', "%2B")))
        .await;
    assert_eq!(window["total"], 2);
    let future = stack.get(&format!("/v1/audit?from={later}")).await;
    assert_eq!(future["total"], 0);
    let before = stack.get(&format!("/v1/audit?type=user_created&to={}", first.to_rfc3339().replace('+', "%2B"))).await;
    assert_eq!(before["total"], 0, "`to` is exclusive");
    stack.finish().await;
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter_and_a_missing_database_is_503() {
    // No migrations: every check must happen before ClickHouse is asked.
    let api = AdminApi::start("qbadparams").await;
    let other_id = format!("/v1/usage?key_id={}", UserId::new());
    let cases = [
        ("/v1/usage?bogus=1", "bogus"),
        ("/v1/usage?tz=Mars/Olympus_Mons", "tz"),
        ("/v1/usage?tz=", "tz"),
        ("/v1/usage?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z", "to"),
        ("/v1/usage?from=2025-01-01T00:00:00Z&to=2025-01-01T00:00:00Z", "to"),
        ("/v1/usage?from=2024-01-01T00:00:00Z&to=2025-02-05T00:00:00Z", "to"),
        ("/v1/usage?from=yesterday", "from"),
        ("/v1/usage?from=2025-01-01T00:00:00+01:00", "from"),
        ("/v1/usage?to=2025-01-01T00:00:00Z", "from"),
        ("/v1/usage?from=2025-01-01T00:00:00Z&to=soon", "to"),
        ("/v1/usage?preset=today&from=2025-01-01T00:00:00Z", "preset"),
        ("/v1/usage?preset=fortnight", "preset"),
        ("/v1/usage?bucket=fortnight", "bucket"),
        ("/v1/usage?bucket=minute&preset=last_7d", "bucket"),
        ("/v1/usage?group_by=user,cost_centre", "group_by"),
        ("/v1/usage?team_id=team_nope", "team_id"),
        ("/v1/statements?month=2026-13", "month"),
        ("/v1/statements?month=11-2026", "month"),
        ("/v1/statements?month=2099-01", "month"),
        ("/v1/statements?team_id=team_nope", "team_id"),
        ("/v1/statements?format=xml", "format"),
        ("/v1/statements?colour=red", "colour"),
        ("/v1/teams/team_x/budget", "team_id"),
        ("/v1/usage?user_id=bob", "user_id"),
        (other_id.as_str(), "key_id"),
        ("/v1/usage?provider=openai", "provider"),
        ("/v1/usage?provider=none", "provider"),
        ("/v1/usage?model=", "model"),
        ("/v1/audit?limit=0", "limit"),
        ("/v1/audit?limit=501", "limit"),
        ("/v1/audit?limit=ten", "limit"),
        ("/v1/audit?offset=-1", "offset"),
        ("/v1/audit?type=User%20Created", "type"),
        ("/v1/audit?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z", "to"),
        ("/v1/audit?actor=", "actor"),
        ("/v1/audit?since=2025-01-01", "since"),
        ("/v1/users/usr_x/budget", "user_id"),
        ("/v1/requests/nope", "request_id"),
    ];
    for (path, field) in cases {
        let a = api.get(path).await;
        assert_eq!(a.status, 400, "{path}: {}", a.text);
        assert_eq!(a.error_type(), "invalid_request", "{path}");
        assert_eq!(a.body["error"]["field"].as_str(), Some(field), "{path}: {}", a.text);
        assert!(a.body["request_id"].as_str().is_some(), "{path}");
    }
    let anonymous = api.send(reqwest::Method::GET, "/v1/usage", None, None).await;
    assert_eq!(anonymous.status, 401);

    // Valid questions while the analytics database does not exist: 503, never 500.
    let request = format!("/v1/requests/{}", RequestId::new());
    for path in ["/v1/usage?preset=today", "/v1/audit", request.as_str(), "/v1/statements?month=2026-01"] {
        let a = api.get(path).await;
        assert_eq!((a.status, a.error_type()), (503, "unavailable"), "{path}: {}", a.text);
        assert!(!a.text.contains("t_qbadparams"), "no internals: {}", a.text);
    }

    // The OpenAPI document lists the routes (the budget GET beside the budget PUT).
    let doc = api.send(reqwest::Method::GET, "/openapi.json", None, None).await;
    let paths = &doc.body["paths"];
    for p in ["/v1/usage", "/v1/audit", "/v1/requests/{request_id}"] {
        assert!(paths[p]["get"]["tags"] == json!(["usage"]), "{p}: {}", paths[p]);
    }
    let budget = &paths["/v1/users/{user_id}/budget"];
    assert!(budget["get"].is_object() && budget["put"].is_object(), "{budget}");
    let params: Vec<&str> = paths["/v1/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"type") && params.contains(&"actor"), "{params:?}");
    api.finish().await;
}

/// Nano-dollars of some requests.
fn nanos(reqs: &[&Req]) -> u64 {
    reqs.iter().filter(|r| !r.unpriced).map(|r| r.cost_nanos).sum()
}

#[tokio::test]
async fn teams_usage_budgets_and_the_finance_statement_keep_spend_where_it_was_incurred() {
    let mut stack = Stack::start("qteams", &[("CCP__BUDGETS__TIME_ZONE", "Europe/Berlin")]).await;
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let mut teams = Vec::new();
    for (name, limit) in [("Platform", Some("0.05")), ("Data", None)] {
        let a = stack.api.post("/v1/teams", json!({"name": name, "monthly_limit_usd": limit})).await;
        assert_eq!(a.status, 201, "{}", a.text);
        teams.push(a.body["team_id"].as_str().unwrap().to_owned());
    }
    let (platform, data) = (teams[0].clone(), teams[1].clone());
    let ann = stack.api.create_user("Ann").await;
    let bob = stack.api.create_user("Bob").await;
    // A name a spreadsheet would run as a formula, with a comma and quotes.
    let cy = stack.api.create_user("=Cy, \"the\" tester").await;
    let (ka, ann_key) = stack.api.issue_key(&ann).await;
    let (kb, _) = stack.api.issue_key(&bob).await;
    let (kc, cy_key) = stack.api.issue_key(&cy).await;
    for (user, team) in [(&ann, &data), (&bob, &data)] {
        let a = stack.api.put(&format!("/v1/users/{user}/team"), json!({ "team_id": team })).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }

    // Last month: Ann worked in Platform (one request of a model without a price), then moved
    // to Data; Bob's Bedrock requests include one with estimated output; Cy is in no team.
    let now = Utc::now();
    let (last, this) = (month_start(berlin, now, -1), month_start(berlin, now, 0));
    let at = |base: DateTime<Utc>, secs: i64| (base + chrono::Duration::seconds(secs)).to_rfc3339();
    let mut r5 = Req::new(&at(last, 7_200), &ann, &ka, 2, 0).in_team(&platform);
    r5.unpriced = true;
    let mut r6 = Req::new(&at(last, 400_000), &bob, &kb, 3, 9_000_001).bedrock().in_team(&data);
    r6.estimated = true;
    let before = Req::new(&at(last, -1), &bob, &kb, 1, 77_000_000).in_team(&data);
    let month = [
        Req::new(&at(last, 3_600), &ann, &ka, 1, 1_500_000).in_team(&platform),
        r5,
        Req::new(&at(last, 2 * 86_400), &ann, &ka, 1, 2_000_000).bedrock().in_team(&data),
        Req::new(&at(last, 3 * 86_400), &bob, &kb, 5, 123_456_789).bedrock().in_team(&data),
        r6,
        Req::new(&at(last, 4 * 86_400), &cy, &kc, 1, 300_000),
    ];
    let current = vec![
        Req::new(&at(this, 1), &ann, &ka, 1, 7_000_000).in_team(&data),
        Req::new(&at(this, 2), &bob, &kb, 1, 40_000_000).bedrock().in_team(&data),
    ];
    for r in month.iter().chain(&current).chain([&before]) {
        stack.publish(r).await;
    }
    stack.project().await;
    let label = last.with_timezone(&berlin).format("%Y-%m").to_string();
    let range = format!("from={}&to={}", last.to_rfc3339().replace('+', "%2B"), this.to_rfc3339().replace('+', "%2B"));
    let of = |pick: &dyn Fn(&Req) -> bool| month.iter().filter(|r| pick(r)).collect::<Vec<_>>();
    let in_team = |t: &str| of(&|r: &Req| r.team.as_deref() == Some(t));

    // Usage by team (at request time): Ann's spend is split where it was incurred.
    let by_team = stack.get(&format!("/v1/usage?{range}&bucket=month&group_by=team")).await;
    let start = last.with_timezone(&berlin).fixed_offset().to_rfc3339();
    let mut expected = [
        (String::new(), of(&|r: &Req| r.team.is_none())),
        (data.clone(), in_team(&data)),
        (platform.clone(), in_team(&platform)),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let rows: Vec<Value> = expected
        .iter()
        .map(|(t, reqs)| {
            let mut row = row(&start, &[("team_id", t)], reqs);
            let m = row.as_object_mut().unwrap();
            m.insert("cost_usd".into(), json!(usd(nanos(reqs))));
            m.insert("unpriced_requests".into(), json!(reqs.iter().filter(|r| r.unpriced).count()));
            m.insert(
                "unpriced_tokens".into(),
                json!(reqs.iter().filter(|r| r.unpriced).map(|r| r.n * 1115).sum::<u64>()),
            );
            m.insert("estimated_requests".into(), json!(reqs.iter().filter(|r| r.estimated).count()));
            row
        })
        .collect();
    assert_rows(&by_team, &rows, "group_by=team");
    let everyone = stack.get(&format!("/v1/usage?{range}&bucket=month")).await;
    assert_eq!(everyone["totals"], by_team["totals"], "grouping by team loses nothing");
    let platform_users = stack.get(&format!("/v1/usage?{range}&bucket=month&group_by=user&team_id={platform}")).await;
    let rows = platform_users["rows"].as_array().unwrap();
    assert_eq!((rows.len(), rows[0]["user_id"].as_str()), (1, Some(ann.as_str())), "{platform_users}");
    assert_eq!(rows[0]["requests"], 2);
    assert_eq!(rows[0]["cost_usd"], usd(1_500_000));
    // A time zone whose days do not fall on the team rollups' hours reads the raw rows: same sums.
    let kolkata = stack.get(&format!("/v1/usage?{range}&bucket=month&group_by=team&tz=Asia/Kolkata")).await;
    assert_eq!(kolkata["totals"], everyone["totals"]);

    // Team budgets this month: Data has both current requests (whoever is in it now), Platform none.
    let b = stack.get(&format!("/v1/teams/{data}/budget")).await;
    assert_eq!(
        (b["name"].as_str(), b["spent_usd"].as_str(), &b["limit_usd"]),
        (Some("Data"), Some("0.047"), &Value::Null)
    );
    assert_eq!((b["time_zone"].as_str(), b["exhausted"].as_bool()), (Some("Europe/Berlin"), Some(false)));
    let b = stack.get(&format!("/v1/teams/{platform}/budget")).await;
    assert_eq!(
        (b["limit_usd"].as_str(), b["spent_usd"].as_str(), b["remaining_usd"].as_str()),
        (Some("0.05"), Some("0"), Some("0.05"))
    );
    let missing = stack.api.get(&format!("/v1/teams/{}/budget", ccp_schemas::ids::TeamId::new())).await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    let bad = stack.api.get("/v1/teams/team_nope/budget").await;
    assert_eq!((bad.status, bad.body["error"]["field"].as_str()), (400, Some("team_id")), "{}", bad.text);

    // A developer sees their team's budget beside their own; one in no team sees none.
    let url = format!("{}/v1/self", stack.api.url);
    let me = |key: String| {
        let request = reqwest::Client::new().get(&url).header("x-ccp-access-key", key);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let ann_self = me(ann_key).await;
    assert_eq!(
        (ann_self["team_budget"]["team_id"].as_str(), ann_self["team_budget"]["spent_usd"].as_str()),
        (Some(data.as_str()), Some("0.047")),
        "{ann_self}"
    );
    assert_eq!(me(cy_key).await["team_budget"], Value::Null);

    // The statement: per team, user and provider; totals are the usage API's to the nano-dollar.
    let s = stack.get(&format!("/v1/statements?month={label}")).await;
    assert_eq!(
        (s["month"].as_str(), s["time_zone"].as_str(), s["complete"].as_bool()),
        (Some(label.as_str()), Some("Europe/Berlin"), Some(true))
    );
    assert_eq!(stack.get("/v1/statements").await["month"], s["month"], "the last complete month by default");
    let t = &s["totals"];
    assert_eq!(t["cost_usd"], everyone["totals"]["cost_usd"]);
    assert_eq!(t["requests"], everyone["totals"]["requests"]);
    let bedrock = of(&|r: &Req| r.provider == Provider::Bedrock);
    let anthropic = of(&|r: &Req| r.provider == Provider::Anthropic);
    assert_eq!(t["organisation_spend_usd"], usd(nanos(&bedrock)));
    assert_eq!(t["plan_value_usd"], usd(nanos(&anthropic)));
    assert_eq!((t["unpriced_requests"].as_u64(), t["estimated_requests"].as_u64()), (Some(1), Some(1)));
    assert_eq!(t["cost_status"], "partly_unpriced");
    let lines = s["lines"].as_array().unwrap();
    let summary: Vec<(String, String, String, String, String)> = lines
        .iter()
        .map(|l| {
            let f = |k: &str| l[k].as_str().unwrap().to_owned();
            (f("team_name"), f("user_name"), f("provider"), f("cost_basis"), f("cost_status"))
        })
        .collect();
    let owned = |v: [&str; 5]| (v[0].to_owned(), v[1].to_owned(), v[2].to_owned(), v[3].to_owned(), v[4].to_owned());
    assert_eq!(
        summary,
        vec![
            owned(["", "=Cy, \"the\" tester", "anthropic", "plan_value", "exact"]),
            owned(["Data", "Ann", "bedrock", "organisation_spend", "exact"]),
            owned(["Data", "Bob", "bedrock", "organisation_spend", "estimated"]),
            owned(["Platform", "Ann", "anthropic", "plan_value", "partly_unpriced"]),
        ],
        "{s}"
    );
    let bob_line = &lines[2];
    assert_eq!(
        (bob_line["requests"].as_u64(), bob_line["cost_usd"].as_str()),
        (Some(2), Some(usd(123_456_789 + 9_000_001).as_str()))
    );
    let teams = s["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 3);
    assert_eq!(
        (teams[1]["team_name"].as_str(), teams[1]["organisation_spend_usd"].as_str()),
        (Some("Data"), Some(usd(nanos(&in_team(&data))).as_str()))
    );
    let sum: Decimal = lines.iter().map(|l| l["cost_usd"].as_str().unwrap().parse::<Decimal>().unwrap()).sum();
    assert_eq!(sum.normalize().to_string(), t["cost_usd"].as_str().unwrap(), "the lines add up to the total");

    // One team's statement: its lines only, and the usage API's figure for the team.
    let p = stack.get(&format!("/v1/statements?month={label}&team_id={platform}")).await;
    assert_eq!(p["lines"].as_array().unwrap().len(), 1);
    assert_eq!(p["team_id"].as_str(), Some(platform.as_str()));
    let pu = stack.get(&format!("/v1/usage?{range}&bucket=month&team_id={platform}")).await;
    assert_eq!(p["totals"]["cost_usd"], pu["totals"]["cost_usd"]);

    // CSV: a download, one line per statement line, formulas defused, amounts as in JSON.
    let csv = stack.api.get(&format!("/v1/statements?month={label}&format=csv")).await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    let disposition = csv.headers["content-disposition"].to_str().unwrap();
    assert_eq!(disposition, format!("attachment; filename=\"ccp-statement-{label}.csv\""));
    let csv_lines: Vec<&str> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(csv_lines.len(), 1 + lines.len(), "{}", csv.text);
    assert!(csv_lines[0].starts_with(
        "month,time_zone,team_id,team_name,user_id,user_name,user_email,provider,cost_basis,cost_status,"
    ));
    assert!(csv_lines[1].contains(",\"'=Cy, \"\"the\"\" tester\","), "{}", csv_lines[1]);
    assert!(csv_lines[3].contains(",bedrock,organisation_spend,estimated,2,2,"), "{}", csv_lines[3]);
    assert!(csv_lines[3].ends_with(&format!(",{},1,0,0", usd(123_456_789 + 9_000_001))), "{}", csv_lines[3]);

    stack.finish().await;
}
