//! The one way to follow a stream of the event log.
//!
//! A [`Follower`] reads one stream (or a subject filter of it) through an ordered push consumer
//! from a [`Start`], and then for ever: when NATS goes away it reconnects with a growing back-off
//! (100 ms doubling to 5 s; back to 100 ms after a message, or when the connection that failed
//! had lasted longer than the back-off) and resumes after the last message it
//! handed out, so its user never sees an error, a gap or a repeat. Each message comes with its
//! stream sequence and whether the follower has *caught up* (it is the last message there was
//! when the follower first connected, or nothing is pending after it). [`Follower::next`] may be
//! dropped at any point (a `select!` whose other branch was ready): a back-off being waited out
//! and a connection being made are kept in the follower and taken up by the next call.
//! The ordered consumer underneath remakes itself when the connection comes back, from the
//! stream's start if it has delivered nothing yet; the follower takes a message at or before
//! where it should resume for that, and reconnects from there instead.
//!
//! What an event this build cannot read means is decided once, by the follower's [`OnNewer`]
//! policy, in [`Follower::decode`]:
//!
//! | policy | an event written by a newer version (newer `schema_version` or unknown type) | used by |
//! |---|---|---|
//! | [`OnNewer::Halt`] | nothing after it is applied; the follower retries it (every 5 s) until the binary is upgraded | the proxy's key table (it refuses every request meanwhile), the admin API's view (it refuses commands) |
//! | [`OnNewer::Quarantine`] | the event's aggregate (its subject: one user, one key) is quarantined: neither it nor any later event of that aggregate is applied; the user sees it once to close what it holds | the projector's KV state (it deletes the aggregate's entries) |
//! | [`OnNewer::Skip`] | logged, counted, not applied | circuit breakers, budgets' month read, alert rules: state that is advisory or has another source |
//!
//! A malformed event (not an envelope at all) is logged, counted and skipped under every policy:
//! no writer of this system produces one, and stopping on it would let anyone with publish
//! rights on the stream stop the system.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy};
use ccp_schemas::events::DecodeError;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use futures_util::StreamExt as _;

/// Where a follower starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From sequence 1.
    All,
    /// The last message of each subject, then everything after.
    LastPerSubject,
    /// After this sequence (0: from the start).
    After(u64),
    /// From the first message at or after this time.
    Since(chrono::DateTime<chrono::Utc>),
}

/// What a follower does with an event written by a newer version of the software.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNewer {
    /// Apply nothing from it on; retry it until the binary is upgraded (fail closed, whole state).
    Halt,
    /// Stop applying the event's aggregate (fail closed, that aggregate only); go on with others.
    Quarantine,
    /// Log and count it; go on (state that does not gate access).
    Skip,
}

/// One message of the stream.
#[derive(Debug)]
pub struct Delivery {
    /// Its stream sequence.
    pub seq: u64,
    /// Whether the follower has caught up with the stream with this message.
    pub caught_up: bool,
    /// The message itself (subject, headers, payload).
    pub message: jetstream::Message,
}

impl Delivery {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str())
    }
}

/// What the follower yields.
#[derive(Debug)]
pub enum Next {
    /// A message to handle.
    Message(Box<Delivery>),
    /// There was nothing to read when the follower (re)connected: it has caught up.
    CaughtUp,
}

/// What a message means to its user, under the follower's policy.
#[derive(Debug)]
pub enum Decoded {
    /// An event to apply.
    Apply(Box<Envelope>),
    /// Nothing to apply (malformed, a skipped newer event, or a quarantined aggregate's).
    Skip,
    /// The aggregate with this subject is quarantined from now on: close what is held for it.
    Quarantine(String),
    /// Stop: the follower will deliver this message again after its back-off.
    Halt(DecodeError),
}

/// Events not applied, by cause, summed over every follower of the process (for `/metrics`).
#[derive(Debug, Default)]
pub struct SkipCounts {
    /// Malformed events skipped.
    pub malformed: AtomicU64,
    /// Newer events skipped (policy [`OnNewer::Skip`]) or quarantined.
    pub newer: AtomicU64,
    /// Times a follower halted on a newer event.
    pub halted: AtomicU64,
}

/// The process's [`SkipCounts`].
pub static SKIPPED: SkipCounts =
    SkipCounts { malformed: AtomicU64::new(0), newer: AtomicU64::new(0), halted: AtomicU64::new(0) };

impl SkipCounts {
    /// Appends `<service>_events_not_applied_total{cause="malformed|newer|halted"}` in the
    /// Prometheus text format, or OpenMetrics' (where a counter family is named without `_total`).
    pub fn render(&self, service: &str, openmetrics: bool, out: &mut String) {
        use std::fmt::Write as _;
        let name = format!("{service}_events_not_applied_total");
        let family = if openmetrics { &name[..name.len() - "_total".len()] } else { &name };
        let _ = writeln!(
            out,
            "# HELP {family} Events a stream follower did not apply: malformed, of a newer version (skipped or \
             quarantined), or halted on (retried until this service is upgraded).\n# TYPE {family} counter"
        );
        for (cause, count) in [("malformed", &self.malformed), ("newer", &self.newer), ("halted", &self.halted)] {
            let _ = writeln!(out, "{name}{{cause=\"{cause}\"}} {}", count.load(Ordering::Relaxed));
        }
    }
}

/// A consumer being created: held by the follower, so that a dropped [`Follower::next`] leaves
/// it to the next call rather than starting over.
type Connecting = Pin<Box<dyn Future<Output = anyhow::Result<Connected>> + Send>>;

/// A consumer created for the follower.
struct Connected {
    /// The stream's last sequence when it was created.
    head: u64,
    messages: jetstream::consumer::push::Ordered,
    /// Nothing was pending for it.
    nothing: bool,
    /// The stream sequence its first message comes after.
    before: u64,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A follower of one stream: see the module documentation.
pub struct Follower {
    name: &'static str,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    filter: String,
    start: Start,
    on_newer: OnNewer,
    messages: Option<jetstream::consumer::push::Ordered>,
    /// The consumer being created, while `messages` is `None`.
    connecting: Option<Connecting>,
    /// The last sequence handed out (resume after it).
    last: u64,
    /// The sequence the current consumer was made to deliver after: a message at or before it
    /// (or `last`) is a replay, not the next message.
    floor: u64,
    /// The stream's last sequence when first connected (caught up at or after it).
    head: Option<u64>,
    backoff: Duration,
    /// Resume from this sequence instead (a halted message is delivered again).
    rewind: Option<u64>,
    /// Do not reconnect before this (the back-off after a failure or a rewind).
    not_before: Option<tokio::time::Instant>,
    /// When the current consumer was made.
    connected_at: Option<tokio::time::Instant>,
    quarantined: HashSet<String>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .field("last", &self.last)
            .finish()
    }
}

impl Follower {
    /// A follower of the whole `kind` stream of `ns`, named `name` in its log lines.
    pub fn new(name: &'static str, client: async_nats::Client, ns: &Namespace, kind: StreamKind) -> Self {
        Self {
            name,
            js: jetstream::new(client.clone()),
            client,
            stream: ns.stream(kind),
            filter: ns.stream_subjects(kind),
            start: Start::All,
            on_newer: OnNewer::Skip,
            messages: None,
            connecting: None,
            last: 0,
            floor: 0,
            head: None,
            backoff: FIRST_BACKOFF,
            rewind: None,
            not_before: None,
            connected_at: None,
            quarantined: HashSet::new(),
        }
    }

    /// Starts at `start` instead of sequence 1.
    pub fn start(mut self, start: Start) -> Self {
        if let Start::After(seq) = start {
            self.last = seq;
        }
        self.start = start;
        self
    }

    /// Reads only subjects matching `filter`.
    pub fn filter(mut self, filter: String) -> Self {
        self.filter = filter;
        self
    }

    /// Decides newer events by `policy` (default [`OnNewer::Skip`]).
    pub fn on_newer(mut self, policy: OnNewer) -> Self {
        self.on_newer = policy;
        self
    }

    /// The last sequence handed out.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The next message (or that there is none to catch up with); reconnects as long as it takes.
    pub async fn next(&mut self) -> Next {
        loop {
            if self.messages.is_none() {
                if self.connecting.is_none() {
                    if let Some(at) = self.not_before {
                        // Cancel-safe: a cancelled wait is taken up again by the next call.
                        tokio::time::sleep_until(at).await;
                        self.not_before = None;
                    }
                    self.connecting = Some(self.connect());
                }
                let Some(connecting) = self.connecting.as_mut() else { continue };
                // Cancel-safe: the connection being made stays in `self.connecting`.
                let connected = connecting.await;
                self.connecting = None;
                match connected {
                    Ok(c) => {
                        self.rewind = None;
                        self.connected_at = Some(tokio::time::Instant::now());
                        self.head.get_or_insert(c.head);
                        self.floor = c.before;
                        self.messages = Some(c.messages);
                        if c.nothing {
                            return Next::CaughtUp;
                        }
                    }
                    Err(e) => {
                        self.fail(&e);
                        continue;
                    }
                }
            }
            let Some(messages) = self.messages.as_mut() else { continue };
            let received = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    self.fail(&anyhow::anyhow!(e));
                    continue;
                }
                None => {
                    self.fail(&anyhow::anyhow!("the subscription ended"));
                    continue;
                }
            };
            let Ok(info) = received.info() else {
                self.fail(&anyhow::anyhow!("a message without JetStream info"));
                continue;
            };
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq <= self.last.max(self.floor) {
                // async-nats's ordered consumer remakes its consumer by itself when the connection
                // comes back (or it sees a gap): from after the last message it delivered, and
                // from the stream's start when it has delivered none. A follower that started
                // after a snapshot or at a time, or reconnected, and was idle since, would hand
                // out the stream again from 1 (a revoked key's issue applied once more, a past
                // month's requests counted in this one's budget). Resume where it should instead.
                self.fail(&anyhow::anyhow!(
                    "its consumer was remade from the stream's start (sequence {seq} after {})",
                    self.last.max(self.floor)
                ));
                continue;
            }
            self.last = seq;
            self.backoff = FIRST_BACKOFF;
            let caught_up = pending == 0 || self.head.is_some_and(|head| seq >= head);
            return Next::Message(Box::new(Delivery { seq, caught_up, message: received }));
        }
    }

    /// Delivers the messages again from `seq` on, after the back-off (when handling `seq` failed).
    pub fn rewind(&mut self, seq: u64) {
        self.rewind = Some(seq);
        self.connecting = None;
        self.back_off();
    }

    /// Drops the subscription; the next connection waits out the back-off (at the top of
    /// [`Follower::next`], where a call dropped while waiting leaves the wait to the next call),
    /// and the one after that twice as long.
    fn back_off(&mut self) {
        self.messages = None;
        self.connected_at = None;
        self.not_before = Some(tokio::time::Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Delivers the whole stream again from sequence 1, after the back-off, as a first read:
    /// "caught up" is reckoned against the stream's end when it reconnects, not when it first
    /// connected (a fold that failed and starts over).
    pub fn restart(&mut self) {
        self.head = None;
        self.rewind(1);
    }

    /// Decodes a delivery under the follower's policy (see the module documentation).
    pub fn decode(&mut self, delivery: &Delivery) -> Decoded {
        let subject = delivery.message.subject.as_str();
        if self.quarantined.contains(subject) {
            SKIPPED.newer.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                follower = self.name,
                seq = delivery.seq,
                subject,
                "event of a quarantined aggregate not applied"
            );
            return Decoded::Skip;
        }
        match Envelope::decode(&delivery.message.payload) {
            Ok(envelope) => Decoded::Apply(Box::new(envelope)),
            Err(e) if e.is_newer() => match self.on_newer {
                OnNewer::Skip => {
                    SKIPPED.newer.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(follower = self.name, seq = delivery.seq, error = %e, "event of a newer version skipped; upgrade this service");
                    Decoded::Skip
                }
                OnNewer::Quarantine => {
                    SKIPPED.newer.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(follower = self.name, seq = delivery.seq, subject, error = %e, "event of a newer version: its aggregate is quarantined until this service is upgraded");
                    self.quarantined.insert(subject.to_owned());
                    Decoded::Quarantine(subject.to_owned())
                }
                OnNewer::Halt => {
                    SKIPPED.halted.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(follower = self.name, seq = delivery.seq, error = %e, "event of a newer version: nothing more is applied until this service is upgraded");
                    self.backoff = MAX_BACKOFF;
                    self.rewind(delivery.seq);
                    Decoded::Halt(e)
                }
            },
            Err(e) => {
                SKIPPED.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(follower = self.name, seq = delivery.seq, error = %e, "malformed event skipped");
                Decoded::Skip
            }
        }
    }

    /// Starts creating a consumer that delivers from where the follower resumes.
    fn connect(&mut self) -> Connecting {
        let first = self.head.is_none();
        // A rewind is kept until a consumer is made: one that failed is asked for again.
        let deliver_policy = match (self.rewind, first || self.last == 0, self.start) {
            (Some(seq), _, _) => {
                self.last = seq.saturating_sub(1);
                Ok(DeliverPolicy::ByStartSequence { start_sequence: seq.max(1) })
            }
            (None, true, Start::All) => Ok(DeliverPolicy::All),
            (None, true, Start::LastPerSubject) => Ok(DeliverPolicy::LastPerSubject),
            (None, true, Start::Since(at)) => time::OffsetDateTime::from_unix_timestamp(at.timestamp())
                .map(|start_time| DeliverPolicy::ByStartTime { start_time })
                .map_err(anyhow::Error::from),
            (None, _, _) => Ok(DeliverPolicy::ByStartSequence { start_sequence: self.last + 1 }),
        };
        let (js, stream, filter, inbox) =
            (self.js.clone(), self.stream.clone(), self.filter.clone(), self.client.new_inbox());
        Box::pin(async move {
            let deliver_policy = deliver_policy?;
            let mut stream = js.get_stream(&stream).await?;
            let head = stream.info().await?.state.last_sequence;
            let consumer = stream
                .create_consumer(OrderedConfig {
                    deliver_subject: inbox,
                    deliver_policy,
                    filter_subject: filter,
                    ..Default::default()
                })
                .await?;
            let info = consumer.cached_info();
            let (nothing, before) = (info.num_pending == 0, info.delivered.stream_sequence);
            let messages = consumer.messages().await?;
            Ok(Connected { head, messages, nothing, before })
        })
    }

    /// Logs `error` and backs off ([`Follower::back_off`]): from the first back-off again when
    /// the connection that failed had lasted longer than the back-off (an idle follower whose
    /// connection drops now and then — each drop a failure, see [`Follower::next`] — is not
    /// left waiting ever longer to reconnect).
    fn fail(&mut self, error: &anyhow::Error) {
        if self.connected_at.is_some_and(|at| at.elapsed() > self.backoff) {
            self.backoff = FIRST_BACKOFF;
        }
        tracing::warn!(
            follower = self.name,
            stream = %self.stream,
            error = %format!("{error:#}"),
            retry_in_ms = self.backoff.as_millis() as u64,
            "following the stream failed; resuming after sequence {}",
            self.last
        );
        self.back_off();
    }
}
