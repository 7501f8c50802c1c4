//! The event store side of commands: load an aggregate's own events from its JetStream subject,
//! fold them, decide, and append the decision with `Nats-Expected-Last-Subject-Sequence` so that
//! a concurrent writer makes the append fail instead of both winning. On such a conflict the
//! command is decided again on fresh state (a few times), then answered 409.

use std::net::IpAddr;
use std::time::Duration;

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self};
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::{Actor, Envelope, Event, Namespace};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;

use crate::domain::{Decision, Rejection};
use crate::error::{ApiError, ApiResult};

/// How often a conflicting command is decided again before answering 409.
const ATTEMPTS: usize = 5;
/// Longest wait for an aggregate's history.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Who runs a command, for the events' metadata.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// The admin (or system) issuing it.
    pub actor: Actor,
    /// The HTTP request id.
    pub request_id: String,
    /// The client address.
    pub source: Option<IpAddr>,
    /// The version the client expects the aggregate at (`If-Match`), if it sent one.
    pub if_match: Option<u64>,
}

/// The outcome of a command: the aggregate's state after it, and the admin stream sequence the
/// read model must reach to show it.
#[derive(Debug)]
pub struct Executed<S> {
    /// State after the command.
    pub state: Option<S>,
    /// The last event's stream sequence (of the aggregate, when nothing was appended).
    pub seq: u64,
    /// The events appended (empty: the command changed nothing).
    pub events: Vec<Event>,
}

/// Appends admin events.
#[derive(Clone)]
pub struct EventStore {
    client: async_nats::Client,
    js: jetstream::Context,
    ns: Namespace,
    readers: Option<std::sync::Arc<ccp_runtime::compat::Readers>>,
}

impl EventStore {
    /// A store on the admin stream.
    pub fn new(client: async_nats::Client, ns: Namespace) -> Self {
        Self { js: jetstream::new(client.clone()), client, ns, readers: None }
    }

    /// The same store, holding back events the running `readers` cannot all read yet.
    #[must_use]
    pub fn with_readers(mut self, readers: std::sync::Arc<ccp_runtime::compat::Readers>) -> Self {
        self.readers = Some(readers);
        self
    }

    /// Refuses (503, retryable) an event introduced in a later contract revision than this build
    /// or some running reader reads: during a rolling upgrade it waits for the last older replica.
    fn check_readers(&self, event: &Event) -> ApiResult<()> {
        let needed = ccp_schemas::compat::introduced(event);
        let older = if needed > ccp_schemas::compat::reading() {
            Some(format!("this admin API reads revision {}", ccp_schemas::compat::reading()))
        } else {
            self.readers
                .as_ref()
                .and_then(|r| r.older_than(needed))
                .map(|a| format!("{} {} (revision {}) is still running", a.service, a.version, a.contract))
        };
        let Some(why) = older else { return Ok(()) };
        let mut e = ApiError::new(
            crate::error::ErrorKind::Unavailable,
            format!(
                "`{}` events are new in contract revision {needed} and {why}: finish the rolling upgrade \
                 (README: Upgrading) and try again",
                event.event_type()
            ),
        );
        e.retry_after = Some(5);
        Err(e)
    }

    /// The NATS connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// An aggregate's events (with their time) and the sequence of its last one (0: none).
    pub async fn load(&self, aggregate: &Aggregate) -> ApiResult<(Vec<(Event, DateTime<Utc>)>, u64)> {
        tokio::time::timeout(LOAD_TIMEOUT, self.load_inner(aggregate))
            .await
            .map_err(|_| ApiError::unavailable("the event log", &"timed out reading an aggregate"))?
            .map_err(|e| ApiError::unavailable("the event log", &e))
    }

    async fn load_inner(&self, aggregate: &Aggregate) -> anyhow::Result<(Vec<(Event, DateTime<Utc>)>, u64)> {
        let subject = self.ns.subject(aggregate);
        let stream = self.js.get_stream(self.ns.stream(StreamKind::Admin)).await?;
        let last = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => m.sequence,
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e.into()),
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                deliver_policy: DeliverPolicy::All,
                filter_subject: subject,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut events = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            let seq = message.info().map_err(|e| anyhow::anyhow!("message without info: {e}"))?.stream_sequence;
            let envelope = Envelope::decode(&message.payload)?;
            events.push((envelope.event, envelope.occurred_at));
            if seq >= last {
                break;
            }
        }
        Ok((events, last))
    }

    /// Runs a command: load, fold with `apply`, `decide`, append with the concurrency check;
    /// on conflict again from fresh state.
    pub async fn execute<S>(
        &self,
        aggregate: Aggregate,
        meta: &CommandMeta,
        apply: fn(&mut Option<S>, &Event, DateTime<Utc>),
        mut decide: impl FnMut(Option<&S>) -> Decision,
    ) -> ApiResult<Executed<S>> {
        for _ in 0..ATTEMPTS {
            let (history, last) = self.load(&aggregate).await?;
            if let Some(expected) = meta.if_match.filter(|v| *v != last) {
                return Err(ApiError::conflict(format!(
                    "the resource is at version {last}, not {expected} (If-Match); reload it and try again"
                ))
                .field("if-match"));
            }
            let mut state = None;
            for (event, at) in &history {
                apply(&mut state, event, *at);
            }
            let events = decide(state.as_ref()).map_err(|r| match r {
                Rejection::NotFound(m) => ApiError::not_found(m),
                Rejection::Conflict(m) => ApiError::conflict(m),
            })?;
            if events.is_empty() {
                return Ok(Executed { state, seq: last, events });
            }
            for event in &events {
                self.check_readers(event)?;
            }
            let envelopes: Vec<Envelope> = events
                .into_iter()
                .map(|event| {
                    Envelope::new(event, meta.actor.clone())
                        .correlated(meta.request_id.clone())
                        .from_source(meta.source)
                })
                .collect();
            match self.append(&aggregate, &envelopes, last).await? {
                Some(seq) => {
                    for envelope in &envelopes {
                        apply(&mut state, &envelope.event, envelope.occurred_at);
                    }
                    let events = envelopes.into_iter().map(|e| e.event).collect();
                    return Ok(Executed { state, seq, events });
                }
                None => {
                    tracing::info!(subject = %self.ns.subject(&aggregate), "concurrent change; deciding again");
                }
            }
        }
        Err(ApiError::conflict("the resource was changed concurrently; reload it and try again"))
    }

    /// Appends events to one aggregate, the first expecting `expected` as the subject's last
    /// sequence, each following one the previous. `None`: another writer came first.
    async fn append(&self, aggregate: &Aggregate, envelopes: &[Envelope], mut expected: u64) -> ApiResult<Option<u64>> {
        let subject = self.ns.subject(aggregate);
        for (i, envelope) in envelopes.iter().enumerate() {
            let payload = envelope.encode().map_err(|e| ApiError::internal(&e))?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", envelope.id.to_string().as_str());
            headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
            let ack = match self.js.publish_with_headers(subject.clone(), headers, payload.into()).await {
                Ok(ack) => ack.await,
                Err(e) => return Err(ApiError::unavailable("the event log", &e)),
            };
            match ack {
                Ok(ack) => expected = ack.sequence,
                Err(e) if i == 0 && matches!(e.kind(), PublishErrorKind::WrongLastSequence) => return Ok(None),
                Err(e) => return Err(ApiError::unavailable("the event log", &e)),
            }
        }
        Ok(Some(expected))
    }

    /// Appends one event without a concurrency check (logins: an append-only record).
    pub async fn record(&self, event: Event, meta: &CommandMeta) -> ApiResult<u64> {
        self.check_readers(&event)?;
        let envelope =
            Envelope::new(event, meta.actor.clone()).correlated(meta.request_id.clone()).from_source(meta.source);
        let subject = envelope.subject(&self.ns);
        let payload = envelope.encode().map_err(|e| ApiError::internal(&e))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.id.to_string().as_str());
        let ack = self
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| ApiError::unavailable("the event log", &e))?
            .await
            .map_err(|e| ApiError::unavailable("the event log", &e))?;
        Ok(ack.sequence)
    }

    /// An aggregate's last event in stream `kind` and its stream sequence (`None`: no events).
    /// For aggregates whose last event is their whole state (circuits, the price list).
    pub async fn last_event(&self, kind: StreamKind, aggregate: &Aggregate) -> ApiResult<Option<(Envelope, u64)>> {
        let subject = self.ns.subject(aggregate);
        let read = async {
            let stream = self.js.get_stream(self.ns.stream(kind)).await?;
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => Ok::<_, anyhow::Error>(Some((m.payload, m.sequence))),
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        let found = tokio::time::timeout(LOAD_TIMEOUT, read)
            .await
            .map_err(|_| ApiError::unavailable("the event log", &"timed out reading an aggregate"))?
            .map_err(|e| ApiError::unavailable("the event log", &e))?;
        match found {
            None => Ok(None),
            Some((payload, seq)) => {
                let envelope = Envelope::decode(&payload)
                    .map_err(|e| ApiError::internal(&format!("event {seq} on {subject} is undecodable: {e}")))?;
                Ok(Some((envelope, seq)))
            }
        }
    }

    /// Appends one event to its aggregate if the aggregate's subject is still at `expected`
    /// (0: no events yet), with this command's metadata. `None`: another writer came first.
    pub async fn append_after(
        &self,
        event: Event,
        meta: &CommandMeta,
        expected: u64,
    ) -> ApiResult<Option<(Envelope, u64)>> {
        let aggregate = event.aggregate();
        let envelope =
            Envelope::new(event, meta.actor.clone()).correlated(meta.request_id.clone()).from_source(meta.source);
        let appended = self.append(&aggregate, std::slice::from_ref(&envelope), expected).await?;
        Ok(appended.map(|seq| (envelope, seq)))
    }

    /// The last event of every subject in stream `kind`, with its stream sequence, oldest first.
    /// Undecodable events are logged and left out.
    pub async fn last_per_subject(&self, kind: StreamKind) -> ApiResult<Vec<(Envelope, u64)>> {
        tokio::time::timeout(LOAD_TIMEOUT, self.last_per_subject_inner(kind))
            .await
            .map_err(|_| ApiError::unavailable("the event log", &"timed out reading a stream"))?
            .map_err(|e| ApiError::unavailable("the event log", &e))
    }

    async fn last_per_subject_inner(&self, kind: StreamKind) -> anyhow::Result<Vec<(Envelope, u64)>> {
        let stream = self.js.get_stream(self.ns.stream(kind)).await?;
        if stream.get_info().await?.state.messages == 0 {
            return Ok(Vec::new());
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                filter_subject: self.ns.stream_subjects(kind),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut out = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            let info = message.info().map_err(|e| anyhow::anyhow!("message without info: {e}"))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            match Envelope::decode(&message.payload) {
                Ok(envelope) => out.push((envelope, seq)),
                Err(e) => tracing::error!(seq, error = %e, "skipping an undecodable event"),
            }
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }
}
