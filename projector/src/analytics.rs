//! The analytics projection: events → ClickHouse rows (`requests`, `audit_log`,
//! `circuit_transitions`), in batches, exactly once.
//!
//! Exactly once: each batch is one `INSERT` (one block, written atomically) whose rows carry their
//! stream sequence, and a table's progress *is* `max(stream_seq)` of its rows — stored with the
//! data. Messages come from a durable pull consumer, re-created at the table's progress on every
//! start so delivery is in order from there, one batch in flight, acknowledged after the insert;
//! redelivered messages at or below the progress are skipped. Undecodable events are terminated
//! (`AckKind::Term`), counted and logged with their sequence. One projector process is active
//! per deployment (the consumer is its lease).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy, AckKind};
use ccp_schemas::events::{Actor, Event, RateLimitState, RequestCompleted};
use ccp_schemas::pricing::to_nanos;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::Serialize;

/// One `requests` row (column names as in migrations 0001, 0003 and 0004).
#[derive(Debug, Clone, Serialize, clickhouse::Row)]
pub struct RequestRow {
    event_id: String,
    stream_seq: u64,
    request_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    occurred_at: DateTime<Utc>,
    occurred_at_ms: u64,
    user_id: String,
    key_id: String,
    key_prefix: String,
    endpoint: String,
    provider: String,
    requested_model: String,
    response_model: String,
    bedrock_model_id: String,
    region: String,
    fallback: u8,
    fallback_reason: String,
    status: u16,
    error_class: String,
    stream: u8,
    incomplete: u8,
    stop_reason: String,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    cost_nanos: u64,
    pricing_version: u32,
    latency_ms: u64,
    ttfb_ms: u64,
    session_id: String,
    client_version: String,
    replica: String,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    rl_observed_at: Option<DateTime<Utc>>,
    rl_status: u16,
    rl_retry_after_secs: Option<u64>,
    plan_status: String,
    plan_claim: String,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    plan_reset: Option<DateTime<Utc>>,
    plan_5h_utilization: Option<f64>,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    plan_5h_reset: Option<DateTime<Utc>>,
    plan_7d_utilization: Option<f64>,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    plan_7d_reset: Option<DateTime<Utc>>,
    plan_overage_status: String,
    api_requests_remaining: Option<u64>,
    api_tokens_remaining: Option<u64>,
    rate_limit_json: String,
    unpriced: u8,
    unpriced_tokens: u64,
    usage_estimated: u8,
    priced_model: String,
    bedrock_resolution: String,
    model_substituted: u8,
}

/// A serde enum's snake_case name (the events' own spelling).
pub(crate) fn label<T: Serialize>(value: &T) -> String {
    ccp_schemas::events::label(value).to_owned()
}

impl RequestRow {
    fn new(seq: u64, envelope: &Envelope, r: &RequestCompleted) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            event_id: envelope.id.to_string(),
            stream_seq: seq,
            request_id: r.request_id.to_string(),
            occurred_at: envelope.occurred_at,
            occurred_at_ms: u64::try_from(envelope.occurred_at.timestamp_millis()).unwrap_or(0),
            user_id: r.user_id.map(|u| u.to_string()).unwrap_or_default(),
            key_id: r.key_id.map(|k| k.to_string()).unwrap_or_default(),
            key_prefix: r.key_prefix.as_ref().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            endpoint: label(&r.endpoint),
            provider: r.provider.as_str().to_owned(),
            requested_model: text(&r.requested_model),
            response_model: text(&r.response_model),
            bedrock_model_id: text(&r.bedrock_model_id),
            region: text(&r.region),
            fallback: u8::from(r.fallback),
            fallback_reason: r.fallback_reason.as_ref().map(label).unwrap_or_default(),
            status: r.status,
            error_class: r.error_class.as_ref().map(label).unwrap_or_default(),
            stream: u8::from(r.stream),
            incomplete: u8::from(r.incomplete),
            stop_reason: text(&r.stop_reason),
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
            cache_read_tokens: r.usage.cache_read_input_tokens,
            cache_creation_tokens: r.usage.cache_creation_input_tokens,
            // An unknown cost is 0 here and flagged `unpriced` (`cost_nanos_or_null` is NULL).
            cost_nanos: r.cost_usd.map_or(0, to_nanos),
            pricing_version: r.pricing_version.unwrap_or(0),
            latency_ms: r.latency_ms,
            ttfb_ms: r.ttfb_ms.unwrap_or(0),
            session_id: text(&r.session_id),
            client_version: text(&r.client_version),
            replica: match &envelope.actor {
                Actor::Proxy { replica } => replica.clone(),
                _ => String::new(),
            },
            rl_observed_at: None,
            rl_status: 0,
            rl_retry_after_secs: None,
            plan_status: String::new(),
            plan_claim: String::new(),
            plan_reset: None,
            plan_5h_utilization: None,
            plan_5h_reset: None,
            plan_7d_utilization: None,
            plan_7d_reset: None,
            plan_overage_status: String::new(),
            api_requests_remaining: None,
            api_tokens_remaining: None,
            rate_limit_json: String::new(),
            unpriced: u8::from(r.unpriced),
            unpriced_tokens: if r.unpriced {
                r.usage.input_tokens
                    + r.usage.output_tokens
                    + r.usage.cache_read_input_tokens
                    + r.usage.cache_creation_input_tokens
            } else {
                0
            },
            usage_estimated: u8::from(r.usage_estimated),
            priced_model: text(&r.priced_model),
            bedrock_resolution: r.bedrock_resolution.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            model_substituted: u8::from(r.model_substituted),
        }
        .with_rate_limit(r.rate_limit.as_ref())
    }

    /// The Plan-limit columns (migration 0003) from the event's rate-limit state.
    fn with_rate_limit(mut self, state: Option<&RateLimitState>) -> Self {
        let Some(state) = state else { return self };
        self.rl_observed_at = Some(state.observed_at);
        self.rl_status = state.status;
        self.rl_retry_after_secs = state.retry_after_secs;
        if let Some(u) = &state.unified {
            self.plan_status = u.status.clone().unwrap_or_default();
            self.plan_claim = u.representative_claim.clone().unwrap_or_default();
            self.plan_reset = u.reset;
            self.plan_5h_utilization = u.five_hour.as_ref().and_then(|w| w.utilization);
            self.plan_5h_reset = u.five_hour.as_ref().and_then(|w| w.reset);
            self.plan_7d_utilization = u.seven_day.as_ref().and_then(|w| w.utilization);
            self.plan_7d_reset = u.seven_day.as_ref().and_then(|w| w.reset);
            self.plan_overage_status = u.overage.as_ref().and_then(|w| w.status.clone()).unwrap_or_default();
        }
        self.api_requests_remaining = state.requests.and_then(|l| l.remaining);
        self.api_tokens_remaining = state.tokens.and_then(|l| l.remaining);
        self.rate_limit_json = serde_json::to_string(state).unwrap_or_default();
        self
    }
}

/// Counters of one projection (for `/metrics` and logs).
#[derive(Debug, Default)]
pub struct Stats {
    /// Rows written.
    pub projected: AtomicU64,
    /// Redelivered events skipped (already in ClickHouse).
    pub skipped: AtomicU64,
    /// Undecodable events terminated.
    pub terminated: AtomicU64,
    /// Last stream sequence written.
    pub last_seq: AtomicU64,
    /// Events in the stream after `last_seq` (lag), as of the last batch.
    pub lag: AtomicU64,
}

/// What a call of [`Projection::process_next_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Messages received.
    pub received: usize,
    /// Rows inserted.
    pub inserted: usize,
}

/// How one table is fed: which stream, which table, and the row of an event (if any).
pub trait TableSpec: Send + 'static {
    /// The row type (column names = field names).
    type Row: for<'a> clickhouse::Row<Value<'a> = Self::Row> + clickhouse::RowWrite + Serialize + Send + Sync + 'static;
    /// Projection name (metrics, consumer name).
    const NAME: &'static str;
    /// The table.
    const TABLE: &'static str;
    /// The stream it reads.
    const STREAM: StreamKind;
    /// The row of an event, or `None` for events this table does not keep.
    fn row(seq: u64, envelope: &Envelope) -> Option<Self::Row>;
    /// The row's stream sequence.
    fn seq(row: &Self::Row) -> u64;
}

/// One ClickHouse table fed from one stream, exactly once.
pub struct Projection<T: TableSpec> {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    name: String,
    clickhouse: clickhouse::Client,
    /// Prefix of this projection's insert query ids (see [`wait_for_orphaned_inserts`]).
    tag: String,
    batch_size: usize,
    flush_interval: Duration,
    /// Progress, from `max(stream_seq)` of the table.
    last_seq: u64,
    /// A batch whose insert failed (ClickHouse away), retried before fetching more.
    pending: Option<(Vec<T::Row>, Option<jetstream::Message>)>,
    /// Rows projected, skipped and terminated, and the last sequence, for `/metrics`.
    pub stats: Arc<Stats>,
}

impl<T: TableSpec> Projection<T> {
    /// Opens the projection: reads its progress from ClickHouse and binds its durable consumer.
    pub async fn open(
        js: &jetstream::Context,
        ns: &Namespace,
        clickhouse: clickhouse::Client,
        batch_size: usize,
        flush_interval: Duration,
    ) -> anyhow::Result<Self> {
        Self::open_as(js, ns, clickhouse, batch_size, flush_interval, "projector").await
    }

    /// [`Projection::open`] with its own consumer name (`rebuild` uses another one).
    pub async fn open_as(
        js: &jetstream::Context,
        ns: &Namespace,
        clickhouse: clickhouse::Client,
        batch_size: usize,
        flush_interval: Duration,
        role: &str,
    ) -> anyhow::Result<Self> {
        let tag = insert_tag(&clickhouse, T::TABLE);
        wait_for_orphaned_inserts(&clickhouse, &tag).await?;
        let last_seq: u64 = clickhouse.query(&format!("SELECT max(stream_seq) FROM {}", T::TABLE)).fetch_one().await?;
        let stream = js.get_stream(ns.stream(T::STREAM)).await?;
        let name = ns.consumer(&format!("{role}_{}", T::NAME));
        // The consumer is re-created at the table's progress on every start: events are then
        // delivered strictly in order from there, so `max(stream_seq)` stays an exact watermark
        // (a surviving consumer could redeliver a dead run's batch after newer ones).
        let _ = stream.delete_consumer(&name).await;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("ClickHouse projection into {}", T::TABLE)),
                deliver_policy: if last_seq == 0 {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::ByStartSequence { start_sequence: last_seq + 1 }
                },
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: i64::try_from(batch_size).unwrap_or(i64::MAX),
                filter_subject: ns.stream_subjects(T::STREAM),
                ..Default::default()
            })
            .await?;
        let stats = Arc::new(Stats::default());
        stats.last_seq.store(last_seq, Ordering::Relaxed);
        tracing::info!(last_seq, consumer = %name, table = T::TABLE, "projection resumes");
        Ok(Self {
            consumer,
            name,
            clickhouse,
            tag,
            batch_size: batch_size.max(1),
            flush_interval,
            last_seq,
            pending: None,
            stats,
        })
    }

    /// Fetches up to `batch_size` events (waiting at most the flush interval), writes the new
    /// ones in one insert, then acknowledges them. A failed insert is kept and retried first,
    /// without the rows it wrote after all.
    pub async fn process_next_batch(&mut self) -> anyhow::Result<Outcome> {
        if let Some((mut rows, last)) = self.pending.take() {
            // An insert that failed on the client's side may still have committed, wholly or a
            // prefix in stream order (the connection broke after ClickHouse had the rows, or
            // while it was reading them): retry only what is above the table's progress now.
            let progress = match self.progress_after_failed_insert().await {
                Ok(progress) => progress,
                Err(e) => {
                    self.pending = Some((rows, last));
                    return Err(e);
                }
            };
            if progress > self.last_seq {
                self.last_seq = progress;
                self.stats.last_seq.store(progress, Ordering::Relaxed);
            }
            let before = rows.len();
            rows.retain(|row| T::seq(row) > progress);
            self.stats.skipped.fetch_add((before - rows.len()) as u64, Ordering::Relaxed);
            let inserted = rows.len();
            self.write(rows, last).await?;
            return Ok(Outcome { received: 0, inserted });
        }
        let mut messages =
            self.consumer.batch().max_messages(self.batch_size).expires(self.flush_interval).messages().await?;
        let mut rows = Vec::new();
        let mut last: Option<jetstream::Message> = None;
        let mut received = 0;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetching events: {e}"))?;
            received += 1;
            let info = message.info().map_err(|e| anyhow::anyhow!("message without JetStream info: {e}"))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            self.stats.lag.store(pending, Ordering::Relaxed);
            if seq <= self.last_seq {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            } else {
                match Envelope::decode(&message.payload) {
                    Ok(envelope) => rows.extend(T::row(seq, &envelope)),
                    Err(e) => {
                        tracing::error!(seq, error = %e, table = T::TABLE, "terminating undecodable event");
                        self.stats.terminated.fetch_add(1, Ordering::Relaxed);
                        message.ack_with(AckKind::Term).await.map_err(|e| anyhow::anyhow!("term: {e}"))?;
                    }
                }
            }
            last = Some(message);
        }
        let inserted = rows.len();
        self.write(rows, last).await?;
        Ok(Outcome { received, inserted })
    }

    /// Deletes this projection's durable consumer (after a rebuild).
    pub async fn remove_consumer(self, js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<()> {
        js.get_stream(ns.stream(T::STREAM)).await?.delete_consumer(&self.name).await?;
        Ok(())
    }

    /// One insert, then the acknowledgement; on failure the batch is kept for the next call.
    async fn write(&mut self, rows: Vec<T::Row>, last: Option<jetstream::Message>) -> anyhow::Result<()> {
        if let Some(max_seq) = rows.iter().map(T::seq).max() {
            if let Err(e) = self.insert(&rows).await {
                self.pending = Some((rows, last));
                return Err(e);
            }
            self.last_seq = max_seq;
            self.stats.last_seq.store(max_seq, Ordering::Relaxed);
            self.stats.projected.fetch_add(rows.len() as u64, Ordering::Relaxed);
        }
        if let Some(message) = last {
            // AckPolicy::All: acknowledging the last one acknowledges the batch.
            message.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        }
        Ok(())
    }

    /// The table's progress once no insert of this projection is running in ClickHouse any
    /// more (a failed one may still be committing).
    async fn progress_after_failed_insert(&self) -> anyhow::Result<u64> {
        wait_for_orphaned_inserts(&self.clickhouse, &self.tag).await?;
        Ok(self.clickhouse.query(&format!("SELECT max(stream_seq) FROM {}", T::TABLE)).fetch_one().await?)
    }

    async fn insert(&self, rows: &[T::Row]) -> anyhow::Result<()> {
        let query_id = format!("{}{}", self.tag, ulid::Ulid::new());
        let mut insert = self.clickhouse.insert::<T::Row>(T::TABLE).await?.with_setting("query_id", query_id);
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}

/// The query-id prefix of one table's projection inserts: `ccp-projector.<database>.<table>.`.
fn insert_tag(clickhouse: &clickhouse::Client, table: &str) -> String {
    let database = clickhouse.database().unwrap_or("default");
    format!("ccp-projector.{database}.{table}.")
}

/// A projector killed while an insert was on the wire leaves that insert running in ClickHouse:
/// it still commits after the process is gone (ClickHouse takes the closed connection for the
/// end of the body and inserts what arrived, a prefix of the batch in stream order). Reading the
/// progress before it commits would project its rows a second time, so a starting projection
/// first waits until no insert of its own tag has been running for two looks in a row, a moment
/// apart (bounded: a stuck query is reported and then ignored).
async fn wait_for_orphaned_inserts(clickhouse: &clickhouse::Client, tag: &str) -> anyhow::Result<()> {
    const LIMIT: Duration = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let mut quiet_looks = 0;
    loop {
        let running: u64 = clickhouse
            .query("SELECT count() FROM system.processes WHERE startsWith(query_id, ?)")
            .bind(tag)
            .fetch_one()
            .await?;
        if running == 0 {
            quiet_looks += 1;
            if quiet_looks == 2 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        quiet_looks = 0;
        if started.elapsed() > LIMIT {
            tracing::warn!(running, tag, "inserts of an earlier run still running; resuming anyway");
            return Ok(());
        }
        tracing::info!(running, tag, "waiting for an earlier run's insert to finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `requests`: one row per usage event.
pub struct Requests;

impl TableSpec for Requests {
    type Row = RequestRow;
    const NAME: &'static str = "requests";
    const TABLE: &'static str = "requests";
    const STREAM: StreamKind = StreamKind::Requests;

    fn row(seq: u64, envelope: &Envelope) -> Option<RequestRow> {
        match &envelope.event {
            Event::RequestCompleted(r) => Some(RequestRow::new(seq, envelope, r)),
            _ => None,
        }
    }

    fn seq(row: &RequestRow) -> u64 {
        row.stream_seq
    }
}

/// One `audit_log` row: an admin command or login (no secrets: sealed keys and hashes are
/// left out of `details`).
#[derive(Debug, Clone, Serialize, clickhouse::Row)]
pub struct AuditRow {
    event_id: String,
    stream_seq: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    occurred_at: DateTime<Utc>,
    event_type: String,
    actor_kind: String,
    actor_id: String,
    actor_name: String,
    target_kind: String,
    target_id: String,
    user_id: String,
    key_id: String,
    source: String,
    correlation_id: String,
    details: String,
}

/// The model a catalogue event concerns (the audit log's target id).
fn catalogued_model(event: &Event) -> String {
    match event {
        Event::ModelCatalogued(e) => e.entry.id.clone(),
        Event::ModelRemoved(e) => e.model.clone(),
        _ => String::new(),
    }
}

/// Payload fields never copied into the audit log.
const AUDIT_OMITTED: &[&str] = &["sealed", "key_hash", "previous_key_hash", "password_hash", "token_hash"];

impl AuditRow {
    fn new(seq: u64, envelope: &Envelope) -> Self {
        let (actor_kind, actor_id, actor_name) = match &envelope.actor {
            Actor::Admin { admin_id, username } => ("admin", admin_id.to_string(), username.clone()),
            Actor::Anonymous => ("anonymous", String::new(), String::new()),
            Actor::Proxy { replica } => ("proxy", replica.clone(), String::new()),
            Actor::System { component } => ("system", component.clone(), String::new()),
        };
        let event = &envelope.event;
        let (target_kind, target_id) = match event.aggregate() {
            ccp_schemas::subjects::Aggregate::User(id) => ("user", id.to_string()),
            ccp_schemas::subjects::Aggregate::AccessKey(id) => ("access_key", id.to_string()),
            ccp_schemas::subjects::Aggregate::Pricing => ("pricing", String::new()),
            ccp_schemas::subjects::Aggregate::Catalogue => ("model", catalogued_model(event)),
            ccp_schemas::subjects::Aggregate::AdminAuth => ("admin", login_username(event)),
            ccp_schemas::subjects::Aggregate::Admin(id) => ("admin", id.to_string()),
            ccp_schemas::subjects::Aggregate::Circuit(id) => ("circuit", id.to_string()),
            ccp_schemas::subjects::Aggregate::Request(id) => ("request", id.map(|k| k.to_string()).unwrap_or_default()),
            ccp_schemas::subjects::Aggregate::Alert(rule) => ("alert", rule.as_str().to_owned()),
        };
        let mut details = serde_json::to_value(event).ok().and_then(|v| v.get("payload").cloned()).unwrap_or_default();
        if let Some(map) = details.as_object_mut() {
            for field in AUDIT_OMITTED {
                map.remove(*field);
            }
        }
        Self {
            event_id: envelope.id.to_string(),
            stream_seq: seq,
            occurred_at: envelope.occurred_at,
            event_type: event.event_type().to_owned(),
            actor_kind: actor_kind.to_owned(),
            actor_id,
            actor_name,
            target_kind: target_kind.to_owned(),
            target_id,
            user_id: event.user_id().map(|u| u.to_string()).unwrap_or_default(),
            key_id: event.key_id().map(|k| k.to_string()).unwrap_or_default(),
            source: envelope.source.map(|s| s.to_string()).unwrap_or_default(),
            correlation_id: envelope.correlation_id.clone().unwrap_or_default(),
            details: details.to_string(),
        }
    }
}

fn login_username(event: &Event) -> String {
    match event {
        Event::AdminLoginSucceeded(e) => e.username.clone(),
        Event::AdminLoginFailed(e) => e.username.clone(),
        _ => String::new(),
    }
}

/// `audit_log`: every event of the admin stream.
pub struct Audit;

impl TableSpec for Audit {
    type Row = AuditRow;
    const NAME: &'static str = "audit";
    const TABLE: &'static str = "audit_log";
    const STREAM: StreamKind = StreamKind::Admin;

    fn row(seq: u64, envelope: &Envelope) -> Option<AuditRow> {
        Some(AuditRow::new(seq, envelope))
    }

    fn seq(row: &AuditRow) -> u64 {
        row.stream_seq
    }
}

/// One `circuit_transitions` row.
#[derive(Debug, Clone, Serialize, clickhouse::Row)]
pub struct CircuitRow {
    event_id: String,
    stream_seq: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    occurred_at: DateTime<Utc>,
    key_id: String,
    state: String,
    reason: String,
    failures: u32,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    retry_at: DateTime<Utc>,
    replica: String,
}

/// `circuit_transitions`: every transition of every key's breaker.
pub struct Circuits;

impl TableSpec for Circuits {
    type Row = CircuitRow;
    const NAME: &'static str = "circuits";
    const TABLE: &'static str = "circuit_transitions";
    const STREAM: StreamKind = StreamKind::Circuit;

    fn row(seq: u64, envelope: &Envelope) -> Option<CircuitRow> {
        let (key_id, state, reason, failures, retry_at) = match &envelope.event {
            Event::CircuitOpened(e) => (e.key_id, "open", label(&e.reason), e.failures, e.retry_at),
            Event::CircuitHalfOpened(e) => (e.key_id, "half_open", String::new(), 0, DateTime::<Utc>::UNIX_EPOCH),
            Event::CircuitClosed(e) => (e.key_id, "closed", label(&e.cause), 0, DateTime::<Utc>::UNIX_EPOCH),
            _ => return None,
        };
        Some(CircuitRow {
            event_id: envelope.id.to_string(),
            stream_seq: seq,
            occurred_at: envelope.occurred_at,
            key_id: key_id.to_string(),
            state: state.to_owned(),
            reason,
            failures,
            retry_at,
            replica: match &envelope.actor {
                Actor::Proxy { replica } => replica.clone(),
                _ => String::new(),
            },
        })
    }

    fn seq(row: &CircuitRow) -> u64 {
        row.stream_seq
    }
}

/// Drops `usage_minute` partitions (one per day) older than `retention_days`; returns them.
pub async fn expire_minute_partitions(
    clickhouse: &clickhouse::Client,
    retention_days: u32,
) -> anyhow::Result<Vec<String>> {
    let cutoff = (Utc::now() - chrono::Duration::days(i64::from(retention_days))).format("%Y%m%d").to_string();
    let partitions: Vec<String> = clickhouse
        .query(
            "SELECT DISTINCT partition FROM system.parts \
             WHERE database = currentDatabase() AND table = 'usage_minute' AND active ORDER BY partition",
        )
        .fetch_all()
        .await?;
    let mut dropped = Vec::new();
    for p in partitions.into_iter().filter(|p| p.len() == 8 && p.chars().all(|c| c.is_ascii_digit()) && *p < cutoff) {
        clickhouse.query(&format!("ALTER TABLE usage_minute DROP PARTITION {p}")).execute().await?;
        tracing::info!(partition = %p, "expired minute rollups");
        dropped.push(p);
    }
    Ok(dropped)
}
