//! A replica's start: from the shared tally when it covers the month, else the month read once
//! from the request stream — the rebuild, which also stores what it counted in the tally so that
//! the replicas that start after it need no read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccp_runtime::follow::{Decoded, Delivery, Follower, Next, Start};
use ccp_schemas::events::Event;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Actor, Envelope, Namespace};
use chrono::Utc;
use rust_decimal::Decimal;
use ulid::Ulid;

use super::tally::writer_key;
use super::{Month, SharedTally, Spend};

/// How long a start waits for the shared tally's watch before it reads the month from the
/// stream without it.
const TALLY_WAIT: Duration = Duration::from_secs(30);

/// Per `(<user>.<month>, writer)`, the costs of that writer's events read (nanodollars).
type Settled = HashMap<(String, String), u64>;

impl Spend {
    /// Makes the budgets ready: once the shared tally's watch has caught up, a tally that covers
    /// the month (its [`super::tally::COVERED`] instant is at or before the month's start) is all
    /// there is to read. Otherwise the month is read from the request stream up to its last
    /// event ([`Self::rebuild`]); without a tally within 30 s, so is it, and budgets miss other
    /// replicas' costs since this one started until the tally catches up.
    pub async fn start(self: Arc<Self>, client: async_nats::Client, ns: Namespace) {
        let waiting = Instant::now();
        let tally = loop {
            match self.shared.get() {
                Some(t) if t.is_live() => break Some(t.clone()),
                _ if waiting.elapsed() > TALLY_WAIT => break None,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        let month = Month::of(Utc::now(), self.tz);
        let month_start = month.start(self.tz);
        match tally {
            Some(t) if t.covered_from().is_some_and(|from| from <= month_start) => {
                self.mark_month_read();
                // The Plan-limit states come from their own bucket (advisory: not waited for
                // longer than the tally was).
                while !self.rate_limits.get().is_none_or(|r| r.is_loaded()) && waiting.elapsed() < TALLY_WAIT {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tracing::info!(waited_ms = waiting.elapsed().as_millis(), "month to date from the shared spend tally");
            }
            Some(t) => {
                tracing::warn!(
                    covered_from = ?t.covered_from(),
                    %month_start,
                    "the shared spend tally does not cover this month: rebuilding it from the request stream"
                );
                self.rebuild(client, ns, month, Some(t)).await;
            }
            None => {
                tracing::warn!(
                    "the shared spend tally has not caught up in 30 s; reading the month from the request stream — \
                     until it catches up, budgets do not see other replicas' costs since this replica started"
                );
                self.rebuild(client, ns, month, None).await;
            }
        }
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Reads the request stream from the start of the month `current` up to its last event when this is called
    /// (retrying until that is done) into this replica's tally and its Plan-limit states; then,
    /// with a shared tally, stores there per writer (the replica an event names as its actor) the
    /// costs read, and that the tally covers the month. Costs this replica counts meanwhile are
    /// its own (their events are skipped, undecoded).
    async fn rebuild(
        &self,
        client: async_nats::Client,
        ns: Namespace,
        current: Month,
        tally: Option<Arc<SharedTally>>,
    ) {
        let (started, month_start) = (Instant::now(), current.start(self.tz));
        // A request event of a newer version is skipped (counted, logged): its cost also reaches
        // the shared tally from the replica that wrote it.
        let mut follower = Follower::new("proxy budgets (month to date)", client, &ns, StreamKind::Requests)
            .start(Start::Since(month_start));
        let (mut settled, mut events) = (Settled::new(), 0u64);
        loop {
            match follower.next().await {
                Next::CaughtUp => break,
                Next::Message(delivery) => {
                    events += 1;
                    self.count(&mut follower, &delivery, current, &mut settled);
                    if delivery.caught_up {
                        break;
                    }
                }
            }
        }
        drop(follower);
        self.mark_month_read();
        let read = started.elapsed();
        let Some(tally) = tally else {
            tracing::info!(events, read_ms = read.as_millis(), "month to date read from the request stream");
            return;
        };
        let totals = settled.len();
        let stored = match tally.store_settled(settled).await {
            Ok(raised) => tally.set_covered(month_start).await.map(|()| raised),
            Err(e) => Err(e),
        };
        match stored {
            Ok(raised) => tracing::info!(
                events,
                totals,
                raised,
                read_ms = read.as_millis(),
                total_ms = started.elapsed().as_millis(),
                "shared spend tally rebuilt from the request stream: replicas starting now read no stream"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                events,
                "month to date read from the request stream, but storing it in the shared spend tally failed; \
                 the next replica to start reads it again"
            ),
        }
    }

    /// Counts one event read from the request stream (unless it is this replica's own): in this
    /// replica's tally, and, when of the month `current`, in its writer's rebuilt total — for its
    /// user and for the team it was made in, as the replica that wrote it counted it.
    fn count(&self, follower: &mut Follower, delivery: &Delivery, current: Month, settled: &mut Settled) {
        let own =
            delivery.header("Nats-Msg-Id").and_then(|id| id.parse::<Ulid>().ok()).is_some_and(|id| self.returned(id));
        if own {
            return;
        }
        let Decoded::Apply(envelope) = follower.decode(delivery) else { return };
        let Envelope { event: Event::RequestCompleted(r), occurred_at, actor, .. } = *envelope else { return };
        if let (Some(user), Some(cost)) = (r.user_id, r.cost_usd.filter(|c| *c > Decimal::ZERO)) {
            let month = Month::of(occurred_at, self.tz);
            // The user's month, and the team's the request was made in (`super::team`).
            for key in std::iter::once(user).chain(r.team_id.map(super::team::team_key)) {
                self.add(key, cost, occurred_at);
                if let (true, Actor::Proxy { replica }) = (month == current, &actor) {
                    let total = settled.entry((SharedTally::user_month(key, month), writer_key(replica))).or_default();
                    *total = total.saturating_add(ccp_schemas::pricing::to_nanos(cost));
                }
            }
        }
        if let (Some(table), Some(key), Some(state)) = (self.rate_limits.get(), r.key_id, r.rate_limit) {
            table.merge(key, state);
        }
    }
}
