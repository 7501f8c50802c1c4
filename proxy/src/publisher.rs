//! Publishes events to JetStream off the request path. Handlers hand events to an
//! [`EventSink`] (never blocks); one task publishes them with `Nats-Msg-Id` = event id. When
//! NATS cannot take them, they go to the durable [`Spool`] and are replayed, oldest first, once
//! NATS answers again; while the spool is not empty, new events queue behind it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use ccp_schemas::{Envelope, Namespace};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::spool::{Record, Spool};

/// Events gathered into one batch, and published per round trip when replaying the spool.
const WINDOW: usize = 256;
/// Events published per round trip while the publisher keeps up (its batch is not full). NATS
/// takes each window in one read and stores it in one run; on a machine it shares with the
/// proxy, a run of 100–256 events (1.5–2.5 ms here) held requests whose thread was queued behind
/// it: the proxy's added p99 at concurrency 1 fell by about a quarter (2.0 → 1.5 ms on a slow
/// day; with no events published at all, 1.4 ms) with windows of 16 (`ccp-bench`,
/// docs/benchmarks.md). A full batch (the publisher fell behind: a far NATS, heavy load) and a
/// replay of the spool go out in full windows, where throughput is what counts.
const LIVE_WINDOW: usize = 16;
/// How long the publisher lets events gather after the first one of a batch arrives. While it
/// waits, handlers queue events without waking it, so a busy proxy pays one wake-up, one write
/// and one read of acknowledgements per batch instead of per request; events reach the stream
/// this much later (usage is visible in ClickHouse within about a second anyway; budgets and the
/// spend tally do not wait for events). Each batch also costs NATS a burst of work on the cores
/// the requests use: at 5 ms (200 batches a second at concurrency 1) the proxy's added p99 was
/// +0.6 ms, at 50 ms +0.2–0.3 ms, the median unchanged (`ccp-bench`, docs/benchmarks.md).
const LINGER: Duration = Duration::from_millis(50);
/// How often a non-empty spool retries NATS.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Where handlers put events. Cloneable; sending never blocks or fails the request.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Envelope>,
}

impl EventSink {
    /// Queues an event for publishing.
    pub fn emit(&self, envelope: Envelope) {
        if let Err(e) = self.tx.send(envelope) {
            // Only after shutdown began: nothing can publish it any more.
            tracing::error!(event_id = %e.0.id, "event emitted after the publisher stopped");
        }
    }
}

/// The publishing task's state.
pub struct Publisher {
    rx: mpsc::UnboundedReceiver<Envelope>,
    client: async_nats::Client,
    js: jetstream::Context,
    ns: Namespace,
    spool: Spool,
    metrics: Arc<Metrics>,
}

/// A sink and the publisher that drains it.
pub fn channel(
    client: async_nats::Client,
    ns: Namespace,
    spool: Spool,
    metrics: Arc<Metrics>,
) -> (EventSink, Publisher) {
    let (tx, rx) = mpsc::unbounded_channel();
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(3)).build(client.clone());
    metrics.spool_depth.set(spool.len() as i64);
    (EventSink { tx }, Publisher { rx, client, js, ns, spool, metrics })
}

impl Publisher {
    /// Runs until `stop` fires (or every sink is dropped), then publishes or spools everything
    /// already queued and returns.
    pub async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let mut batch = Vec::with_capacity(WINDOW);
        let mut stopping = false;
        loop {
            batch.clear();
            let open = if stopping {
                while batch.len() < WINDOW {
                    match self.rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                !batch.is_empty()
            } else {
                tokio::select! {
                    n = self.rx.recv_many(&mut batch, WINDOW) => n > 0,
                    () = tokio::time::sleep(RETRY_EVERY), if !self.spool.is_empty() => true,
                    _ = &mut stop => {
                        stopping = true;
                        true
                    }
                }
            };
            if !stopping && !batch.is_empty() && batch.len() < WINDOW && !self.rx.is_closed() {
                tokio::select! {
                    () = tokio::time::sleep(LINGER) => {}
                    _ = &mut stop => stopping = true,
                }
                while batch.len() < WINDOW {
                    match self.rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
            }
            let records: Vec<Record> = batch.iter().filter_map(|e| self.record(e)).collect();
            self.handle(records).await;
            if !open {
                break;
            }
        }
        if !self.spool.is_empty() {
            tracing::warn!(
                spooled = self.spool.len(),
                "stopping with events in the spool; they are sent at the next start"
            );
        }
        tracing::info!("event publisher stopped");
    }

    fn record(&self, envelope: &Envelope) -> Option<Record> {
        match envelope.encode() {
            Ok(payload) => Some(Record { id: envelope.id.to_string(), subject: envelope.subject(&self.ns), payload }),
            Err(e) => {
                tracing::error!(event_id = %envelope.id, error = %e, "event could not be encoded");
                self.metrics.events_dropped.inc();
                None
            }
        }
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    async fn handle(&mut self, records: Vec<Record>) {
        if self.spool.is_empty() && self.connected() {
            let window = if records.len() < WINDOW { LIVE_WINDOW } else { WINDOW };
            let failed = self.publish(records, window).await;
            if !failed.is_empty() {
                tracing::warn!(events = failed.len(), "NATS did not acknowledge events; spooling them");
            }
            self.spool_records(failed);
        } else {
            self.spool_records(records);
            if self.connected() {
                self.drain().await;
            }
        }
        self.metrics.spool_depth.set(self.spool.len() as i64);
    }

    fn spool_records(&mut self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        match self.spool.append(&records) {
            Ok(()) => {
                self.metrics.events_spooled.inc_by(n);
            }
            Err(e) => {
                tracing::error!(events = n, error = %e, "events lost: the spool refused them");
                self.metrics.events_dropped.inc_by(n);
            }
        }
    }

    /// Publishes in order, `window` at a time pipelined; returns the records from the first one
    /// not acknowledged on, in order. Later windows are not sent once one failed (NATS may be
    /// back by then, and would store them ahead of the failed one, which the spool replays
    /// later); records after the failed one that NATS did store are sent again with the spool
    /// and dropped by its `Nats-Msg-Id` deduplication.
    async fn publish(&self, mut records: Vec<Record>, window: usize) -> Vec<Record> {
        let mut failed_at = None;
        'windows: for (w, chunk) in records.chunks(window).enumerate() {
            if !self.connected() {
                failed_at = Some(w * window);
                break;
            }
            let mut acks = Vec::with_capacity(chunk.len());
            for record in chunk {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", record.id.as_str());
                let sent =
                    self.js.publish_with_headers(record.subject.clone(), headers, record.payload.clone().into()).await;
                acks.push(sent);
            }
            for (i, sent) in acks.into_iter().enumerate() {
                let ok = match sent {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if !ok {
                    failed_at = Some(w * window + i);
                    break 'windows;
                }
                self.metrics.events_published.inc();
            }
        }
        let Some(from) = failed_at else { return Vec::new() };
        records.split_off(from)
    }

    /// Replays the spool oldest first until it is empty or NATS fails again.
    async fn drain(&mut self) {
        while !self.spool.is_empty() && self.connected() {
            let batch = match self.spool.peek(WINDOW) {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    break;
                }
            };
            let n = batch.len();
            let failed = self.publish(batch, WINDOW).await;
            // The acknowledged prefix is consumed even when the rest failed: sent again with a
            // later retry, after the stream's duplicate window, it would be stored twice.
            let done = n - failed.len();
            if done > 0 {
                if let Err(e) = self.spool.consume(done) {
                    tracing::error!(error = %e, "cannot advance the spool");
                    break;
                }
                self.metrics.spool_depth.set(self.spool.len() as i64);
            }
            if !failed.is_empty() {
                tracing::warn!(
                    events = failed.len(),
                    replayed = done,
                    "NATS did not acknowledge spooled events; they stay in the spool"
                );
                break;
            }
        }
        if self.spool.is_empty() {
            tracing::info!("spool drained; publishing directly again");
        }
    }
}
