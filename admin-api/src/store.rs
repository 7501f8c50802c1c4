//! The event store side of commands: load an aggregate's own events from its JetStream subject,
//! fold them, decide, and append the decision with `Nats-Expected-Last-Subject-Sequence` so that
//! a concurrent writer makes the append fail instead of both winning. On such a conflict the
//! command is decided again on fresh state (a few times), then answered 409. An append whose
//! acknowledgement is lost is sent again as the same message (deduplicated by `Nats-Msg-Id`)
//! until the stream answers, so a 503 never hides an applied change.

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
/// How long an append whose acknowledgement was lost keeps asking whether it was stored.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(12);

/// Where one appended event went.
enum Appended {
    /// Stored at this stream sequence.
    At(u64),
    /// Another writer came first; this event was not stored.
    Conflict,
}

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
        let (envelopes, last) = self.read_subject(&self.ns.subject(aggregate), 1).await?;
        Ok((envelopes.into_iter().map(|(_, e)| (e.event, e.occurred_at)).collect(), last))
    }

    /// The events on `subject` from stream sequence `from` to the subject's last, each with its
    /// sequence, and that last sequence (0: the subject has none).
    async fn read_subject(&self, subject: &str, from: u64) -> anyhow::Result<(Vec<(u64, Envelope)>, u64)> {
        let stream = self.js.get_stream(self.ns.stream(StreamKind::Admin)).await?;
        let last = match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => m.sequence,
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e.into()),
        };
        if last < from {
            return Ok((Vec::new(), last));
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
                filter_subject: subject.to_owned(),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut envelopes = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            let seq = message.info().map_err(|e| anyhow::anyhow!("message without info: {e}"))?.stream_sequence;
            envelopes.push((seq, Envelope::decode(&message.payload)?));
            if seq >= last {
                break;
            }
        }
        Ok((envelopes, last))
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
    /// sequence, each following one the previous. `None`: another writer came first. Once one
    /// event is stored, a failure of a later one is answered as of unknown outcome: the command
    /// is partly applied, and running it again under the same key would repeat that part.
    async fn append(&self, aggregate: &Aggregate, envelopes: &[Envelope], mut expected: u64) -> ApiResult<Option<u64>> {
        let subject = self.ns.subject(aggregate);
        for (i, envelope) in envelopes.iter().enumerate() {
            match self.append_one(&subject, envelope, expected, false).await {
                Ok(Appended::At(seq)) => expected = seq,
                Ok(Appended::Conflict) if i == 0 => return Ok(None),
                Err(e) if i == 0 => return Err(e),
                Ok(Appended::Conflict) | Err(_) => {
                    tracing::error!(%subject, stored = i, of = envelopes.len(), "a command was partly appended");
                    return Err(ApiError::outcome_unknown("the event log"));
                }
            }
        }
        Ok(Some(expected))
    }

    /// Appends one event after `expected`. An acknowledgement that does not come (a node restarts,
    /// the stream elects a leader) leaves it unknown whether the event was stored, so the same
    /// event is sent again — same `Nats-Msg-Id`, which the stream deduplicates — until the stream
    /// answers or [`CONFIRM_TIMEOUT`] passes (each attempt is bounded by it too); a refusal of the
    /// expected sequence after such a loss is checked against the subject, where the event may
    /// already be. Answering a plain 503 after a lost acknowledgement would let a client's retry
    /// apply the command twice. Failures that prove nothing was stored (no stream leader to
    /// answer, the client's own limits) are retried as well but end in a plain 503.
    /// `maybe_stored`: an earlier attempt of this very event may have been stored (tests start there).
    async fn append_one(
        &self,
        subject: &str,
        envelope: &Envelope,
        expected: u64,
        mut maybe_stored: bool,
    ) -> ApiResult<Appended> {
        let payload: bytes::Bytes = envelope.encode().map_err(|e| ApiError::internal(&e))?.into();
        let id = envelope.id.to_string();
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        let mut pause = Duration::from_millis(100);
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
            let attempt = async {
                match self.js.publish_with_headers(subject.to_owned(), headers, payload.clone()).await {
                    // Sent: an answer that does not come leaves the outcome open.
                    Ok(ack) => ack.await.map_err(|e| (Some(e.kind()), e.to_string())),
                    // Not sent (the client's own limits or connection).
                    Err(e) if matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded) => {
                        Err((Some(PublishErrorKind::MaxPayloadExceeded), e.to_string()))
                    }
                    Err(e) => Err((None, e.to_string())),
                }
            };
            let ack = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(ack) => ack,
                Err(_) => Err((Some(PublishErrorKind::TimedOut), "no acknowledgement in time".to_owned())),
            };
            match ack {
                Ok(ack) => return Ok(Appended::At(ack.sequence)),
                Err((Some(PublishErrorKind::WrongLastSequence), _)) if !maybe_stored => return Ok(Appended::Conflict),
                Err((Some(PublishErrorKind::WrongLastSequence), _)) => {
                    match tokio::time::timeout_at(deadline, self.find_after(subject, expected, &id)).await {
                        Ok(Ok(Some(seq))) => return Ok(Appended::At(seq)),
                        Ok(Ok(None)) => return Ok(Appended::Conflict),
                        Ok(Err(e)) => {
                            tracing::warn!(%subject, error = %e, "looking for an unacknowledged event failed")
                        }
                        Err(_) => tracing::warn!(%subject, "looking for an unacknowledged event timed out"),
                    }
                }
                Err((Some(PublishErrorKind::MaxPayloadExceeded), e)) => return Err(ApiError::internal(&e)),
                Err((Some(kind @ (PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe)), e)) => {
                    tracing::warn!(%subject, ?kind, error = %e, "an append was not acknowledged; sending it again");
                    maybe_stored = true;
                }
                // No stream leader answered, or the stream refused: not stored; perhaps later.
                Err((_, e)) => tracing::warn!(%subject, error = %e, "an append was refused; trying again"),
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(if maybe_stored {
                    ApiError::outcome_unknown("the event log")
                } else {
                    ApiError::unavailable("the event log", &"the event log did not take the event in time")
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// The stream sequence of event `id` on `subject` after sequence `after`, if it is there.
    async fn find_after(&self, subject: &str, after: u64, id: &str) -> anyhow::Result<Option<u64>> {
        let (envelopes, _) = self.read_subject(subject, after + 1).await?;
        Ok(envelopes.into_iter().find(|(_, e)| e.id.to_string() == id).map(|(seq, _)| seq))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use ccp_schemas::events::UserReactivated;
    use ccp_schemas::ids::UserId;

    /// A store on a fresh namespace of the test NATS server, and one user's subject.
    async fn store(label: &str) -> (EventStore, Aggregate, jetstream::Context) {
        let settings = ccp_tests::test_settings(label);
        let ns = ccp_tests::namespace(&settings);
        let client = ccp_tests::nats().await;
        let js = jetstream::new(client.clone());
        ccp_runtime::streams::ensure(&js, &ns, &(&settings.nats).into()).await.unwrap();
        let user = UserId::from_ulid(ulid::Ulid::new());
        let event = Event::UserReactivated(UserReactivated { user_id: user });
        (EventStore::new(client, ns), event.aggregate(), js)
    }

    fn envelope(aggregate: &Aggregate) -> Envelope {
        let Aggregate::User(user_id) = aggregate else { panic!("a user aggregate") };
        Envelope::new(
            Event::UserReactivated(UserReactivated { user_id: *user_id }),
            Actor::System { component: "test".into() },
        )
    }

    /// Stores `envelope` as a first attempt whose acknowledgement was then lost would have.
    async fn stored_unacknowledged(
        js: &jetstream::Context,
        store: &EventStore,
        envelope: &Envelope,
        expected: u64,
    ) -> u64 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.id.to_string().as_str());
        headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
        let subject = store.ns.subject(&envelope.event.aggregate());
        js.publish_with_headers(subject, headers, envelope.encode().unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence
    }

    #[tokio::test]
    async fn an_event_stored_before_its_acknowledgement_was_lost_is_not_stored_again() {
        let (store, aggregate, js) = store("store-lost-ack").await;
        let subject = store.ns.subject(&aggregate);
        let first = envelope(&aggregate);
        let seq = stored_unacknowledged(&js, &store, &first, 0).await;

        // Sent again after the loss: the stream's deduplication answers with the first copy.
        let again = store.append_one(&subject, &first, 0, true).await.unwrap();
        assert!(matches!(again, Appended::At(s) if s == seq), "expected the first copy's sequence {seq}");

        // Another writer came after the first copy: answered with the first copy, whether the
        // stream's deduplication or the refused expectation (then the subject is read) comes first.
        let other = envelope(&aggregate);
        let other_seq = stored_unacknowledged(&js, &store, &other, seq).await;
        let found = store.append_one(&subject, &first, 0, true).await.unwrap();
        assert!(matches!(found, Appended::At(s) if s == seq), "expected {seq} (the other writer is at {other_seq})");
        assert_eq!(store.find_after(&subject, seq, &other.id.to_string()).await.unwrap(), Some(other_seq));
        assert_eq!(store.load(&aggregate).await.unwrap().0.len(), 2, "two events on the subject, each once");

        // The stream's deduplication did not catch the first copy (stored without its id, as
        // after a window that passed) and others came after it: found by reading the subject.
        let lost = envelope(&aggregate);
        let before = store.load(&aggregate).await.unwrap().1;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", before.to_string().as_str());
        let lost_seq = js
            .publish_with_headers(subject.clone(), headers, lost.encode().unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence;
        let after = stored_unacknowledged(&js, &store, &envelope(&aggregate), lost_seq).await;
        let found = store.append_one(&subject, &lost, before, true).await.unwrap();
        assert!(matches!(found, Appended::At(s) if s == lost_seq), "expected {lost_seq} (the last is {after})");
        assert_eq!(store.load(&aggregate).await.unwrap().0.len(), 4, "the lost event is not stored twice");
        let seq = lost_seq;

        // An event that was never stored, behind another writer: a plain conflict (decide again).
        let never = envelope(&aggregate);
        assert!(matches!(store.append_one(&subject, &never, seq, true).await.unwrap(), Appended::Conflict));
        assert!(matches!(store.append_one(&subject, &never, seq, false).await.unwrap(), Appended::Conflict));
        assert_eq!(store.find_after(&subject, 0, &never.id.to_string()).await.unwrap(), None);
        assert_eq!(store.load(&aggregate).await.unwrap().0.len(), 4, "the refused event is not stored");
        ccp_tests::delete_namespace(&js, &store.ns).await;
    }
}
