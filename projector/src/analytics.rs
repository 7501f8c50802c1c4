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
use ccp_schemas::events::{Actor, Event, RequestCompleted};
use ccp_schemas::pricing::to_nanos;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::Serialize;

/// One `requests` row (column names as in migration 0001).
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
}

/// A serde enum's snake_case name (the events' own spelling).
fn label<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
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
            cost_nanos: to_nanos(r.cost_usd),
            pricing_version: r.pricing_version.unwrap_or(0),
            latency_ms: r.latency_ms,
            ttfb_ms: r.ttfb_ms.unwrap_or(0),
            session_id: text(&r.session_id),
            client_version: text(&r.client_version),
            replica: match &envelope.actor {
                Actor::Proxy { replica } => replica.clone(),
                _ => String::new(),
            },
        }
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

/// What a call of [`RequestsProjection::process_next_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Messages received.
    pub received: usize,
    /// Rows inserted.
    pub inserted: usize,
}

/// The `requests` table fed from the request stream.
pub struct RequestsProjection {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    clickhouse: clickhouse::Client,
    batch_size: usize,
    flush_interval: Duration,
    /// Progress, from `max(stream_seq)` of the table.
    last_seq: u64,
    /// A batch whose insert failed (ClickHouse away), retried before fetching more.
    pending: Option<(Vec<RequestRow>, Option<jetstream::Message>)>,
    /// Counters.
    pub stats: Arc<Stats>,
}

impl RequestsProjection {
    /// Opens the projection: reads its progress from ClickHouse and binds its durable consumer.
    pub async fn open(
        js: &jetstream::Context,
        ns: &Namespace,
        clickhouse: clickhouse::Client,
        batch_size: usize,
        flush_interval: Duration,
    ) -> anyhow::Result<Self> {
        let last_seq: u64 = clickhouse.query("SELECT max(stream_seq) FROM requests").fetch_one().await?;
        let stream = js.get_stream(ns.stream(StreamKind::Requests)).await?;
        let name = ns.consumer("projector_requests");
        // The consumer is re-created at the table's progress on every start: events are then
        // delivered strictly in order from there, so `max(stream_seq)` stays an exact watermark
        // (a surviving consumer could redeliver a dead run's batch after newer ones).
        let _ = stream.delete_consumer(&name).await;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name.clone()),
                description: Some("ClickHouse requests projection".into()),
                deliver_policy: if last_seq == 0 {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::ByStartSequence { start_sequence: last_seq + 1 }
                },
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: i64::try_from(batch_size).unwrap_or(i64::MAX),
                filter_subject: ns.stream_subjects(StreamKind::Requests),
                ..Default::default()
            })
            .await?;
        let stats = Arc::new(Stats::default());
        stats.last_seq.store(last_seq, Ordering::Relaxed);
        tracing::info!(last_seq, consumer = %name, "requests projection resumes");
        Ok(Self { consumer, clickhouse, batch_size: batch_size.max(1), flush_interval, last_seq, pending: None, stats })
    }

    /// Fetches up to `batch_size` events (waiting at most the flush interval), writes the new
    /// ones in one insert, then acknowledges them. A failed insert is kept and retried first.
    pub async fn process_next_batch(&mut self) -> anyhow::Result<Outcome> {
        if let Some((rows, last)) = self.pending.take() {
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
                    Ok(envelope) => match &envelope.event {
                        Event::RequestCompleted(r) => rows.push(RequestRow::new(seq, &envelope, r)),
                        other => tracing::debug!(seq, event_type = other.event_type(), "not a usage event"),
                    },
                    Err(e) => {
                        tracing::error!(seq, error = %e, "terminating undecodable usage event");
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

    /// One insert, then the acknowledgement; on failure the batch is kept for the next call.
    async fn write(&mut self, rows: Vec<RequestRow>, last: Option<jetstream::Message>) -> anyhow::Result<()> {
        if let Some(max_seq) = rows.iter().map(|r| r.stream_seq).max() {
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

    async fn insert(&self, rows: &[RequestRow]) -> anyhow::Result<()> {
        let mut insert = self.clickhouse.insert::<RequestRow>("requests").await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}
