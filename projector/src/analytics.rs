//! The analytics projection: events → ClickHouse rows (`requests`, `audit_log`,
//! `circuit_transitions`, and the dimensions `users`, `teams` and `keys`), in batches, exactly once.
//!
//! Exactly once: each batch is one `INSERT` (one block, written atomically) whose rows carry their
//! stream sequence, and a table's progress *is* `max(stream_seq)` of its rows — stored with the
//! data. Messages come from a durable pull consumer, re-created at the table's progress on every
//! start so delivery is in order from there, one batch in flight, acknowledged after the insert;
//! redelivered messages at or below the progress are skipped. Undecodable events are terminated
//! (`AckKind::Term`), counted and logged with their sequence. One projector process is active
//! per deployment (the consumer is its lease).
//!
//! This file is the writer, the same for every table ([`Projection`] over a [`TableSpec`]); each
//! table's mapping of an event to its row is in its own file: `requests.rs` ([`Requests`]),
//! `audit.rs` ([`Audit`], which leaves secrets out of `details`), `circuits.rs` ([`Circuits`]),
//! and the dimensions `users.rs` ([`Users`]), `teams.rs` ([`Teams`]) and `keys.rs` ([`Keys`]). The row types are in
//! [`ccp_runtime::tables`], shared with the admin API.
//!
//! A dimension's row is the entity's whole state after the event, so its mapping needs the state
//! before: [`TableSpec::State`], loaded from the table itself when the projection opens (the
//! newest row of each entity, `FINAL`, which is exactly the state at the table's progress, since
//! every insert is one block) and updated as rows are made. A table of facts has `()`.

mod audit;
mod circuits;
mod keys;
mod requests;
mod teams;
mod users;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy, AckKind};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use chrono::Utc;
use futures_util::StreamExt as _;
use serde::Serialize;

pub use self::audit::Audit;
pub use self::circuits::Circuits;
pub use self::keys::Keys;
pub use self::requests::Requests;
pub use self::teams::Teams;
pub use self::users::Users;

/// A serde enum's snake_case name (the events' own spelling).
pub(crate) fn label<T: Serialize>(value: &T) -> String {
    ccp_schemas::events::label(value).to_owned()
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
    /// What a row depends on besides its event: a dimension's current rows; `()` for facts.
    type State: Default + Send + Sync + 'static;
    /// The row of an event, or `None` for events this table does not keep; `state` is the
    /// state before the event, and afterwards the state after it.
    fn row(state: &mut Self::State, seq: u64, envelope: &Envelope) -> Option<Self::Row>;
    /// The row's stream sequence.
    fn seq(row: &Self::Row) -> u64;
    /// The state at the table's progress, read from the table when the projection opens (by
    /// default: none).
    fn load(clickhouse: &clickhouse::Client) -> impl std::future::Future<Output = anyhow::Result<Self::State>> + Send {
        let _ = clickhouse;
        std::future::ready(Ok(Self::State::default()))
    }
}

/// One ClickHouse table fed from one stream, exactly once.
pub struct Projection<T: TableSpec> {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    /// Its stream, to bind the consumer anew.
    stream: jetstream::stream::Stream,
    name: String,
    /// The consumer must be bound anew at the progress before the next fetch: a fetch or an
    /// acknowledgement failed, or delivery skipped a sequence (a consumer leader change on a
    /// cluster can lose a delivered batch in flight, and with `AckPolicy::All` the next
    /// acknowledgement would then cover it without it ever being projected).
    rebind: bool,
    /// The sequence the next delivery must have (`None` right after binding).
    next_seq: Option<u64>,
    clickhouse: clickhouse::Client,
    /// Prefix of this projection's insert query ids (see [`wait_for_orphaned_inserts`]).
    tag: String,
    batch_size: usize,
    flush_interval: Duration,
    /// Progress, from `max(stream_seq)` of the table.
    last_seq: u64,
    /// What the rows depend on besides their events (see [`TableSpec::State`]).
    state: T::State,
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
        let state = T::load(&clickhouse).await?;
        let stream = js.get_stream(ns.stream(T::STREAM)).await?;
        let name = ns.consumer(&format!("{role}_{}", T::NAME));
        let consumer = Self::bind(&stream, &name, batch_size, last_seq).await?;
        let stats = Arc::new(Stats::default());
        stats.last_seq.store(last_seq, Ordering::Relaxed);
        tracing::info!(last_seq, consumer = %name, table = T::TABLE, "projection resumes");
        Ok(Self {
            consumer,
            stream,
            name,
            rebind: false,
            next_seq: None,
            clickhouse,
            tag,
            batch_size: batch_size.max(1),
            flush_interval,
            last_seq,
            state,
            pending: None,
            stats,
        })
    }

    /// (Re-)creates the durable consumer at the table's progress `last_seq`, on every start and
    /// after a failed fetch: events are then delivered strictly in order from there, so
    /// `max(stream_seq)` stays an exact watermark (a surviving consumer could redeliver a dead
    /// run's batch after newer ones, or have lost one in flight).
    async fn bind(
        stream: &jetstream::stream::Stream,
        name: &str,
        batch_size: usize,
        last_seq: u64,
    ) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
        let _ = stream.delete_consumer(name).await;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name.to_owned()),
                description: Some(format!("ClickHouse projection into {}", T::TABLE)),
                deliver_policy: if last_seq == 0 {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::ByStartSequence { start_sequence: last_seq + 1 }
                },
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: i64::try_from(batch_size).unwrap_or(i64::MAX),
                // The whole stream: every sequence is delivered (a gap means a lost delivery).
                filter_subject: stream.cached_info().config.subjects.first().cloned().unwrap_or_default(),
                ..Default::default()
            })
            .await?;
        Ok(consumer)
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
        if self.rebind {
            self.consumer = Self::bind(&self.stream, &self.name, self.batch_size, self.last_seq).await?;
            // A dropped fetch may have folded events into the state whose rows were never
            // written; they come again, so the state goes back to what the table holds.
            self.state = T::load(&self.clickhouse).await?;
            (self.rebind, self.next_seq) = (false, None);
            tracing::info!(last_seq = self.last_seq, table = T::TABLE, "projection consumer bound anew");
        }
        // A failed fetch drops what it received (unacknowledged): bound anew, it comes again.
        self.rebind = true;
        let mut messages =
            self.consumer.batch().max_messages(self.batch_size).expires(self.flush_interval).messages().await?;
        let mut rows = Vec::new();
        let mut last: Option<jetstream::Message> = None;
        let mut received = 0;
        let mut gap = None;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetching events: {e}"))?;
            received += 1;
            let info = message.info().map_err(|e| anyhow::anyhow!("message without JetStream info: {e}"))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            self.stats.lag.store(pending, Ordering::Relaxed);
            match self.next_seq {
                Some(next) if seq > next => {
                    // Neither projected nor acknowledged: from `next` on, it all comes again.
                    gap = Some((next, seq));
                    break;
                }
                Some(next) if seq < next => continue, // delivered twice in this binding
                _ => self.next_seq = Some(seq + 1),
            }
            if seq <= self.last_seq {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            } else {
                match Envelope::decode(&message.payload) {
                    Ok(envelope) => rows.extend(T::row(&mut self.state, seq, &envelope)),
                    Err(e) => {
                        tracing::error!(seq, error = %e, table = T::TABLE, "terminating undecodable event");
                        self.stats.terminated.fetch_add(1, Ordering::Relaxed);
                        message.ack_with(AckKind::Term).await.map_err(|e| anyhow::anyhow!("term: {e}"))?;
                    }
                }
            }
            last = Some(message);
        }
        self.rebind = false;
        let inserted = rows.len();
        self.write(rows, last).await?;
        if let Some((expected, got)) = gap {
            tracing::warn!(expected, got, table = T::TABLE, "delivery skipped events; binding the consumer anew");
            self.rebind = true;
        }
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
            if let Err(e) = message.ack().await {
                // Projected already; bound anew, the consumer need not wait for a redelivery.
                self.rebind = true;
                return Err(anyhow::anyhow!("ack: {e}"));
            }
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
