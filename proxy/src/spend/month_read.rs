//! The month before this replica started, read once from the request stream.

use std::sync::Arc;
use std::time::Duration;

use ccp_runtime::follow::{Decoded, Delivery, Follower, Next, Start};
use ccp_schemas::events::Event;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use chrono::Utc;
use rust_decimal::Decimal;
use ulid::Ulid;

use super::{Month, Spend};

impl Spend {
    /// Reads the request stream from the start of the current month up to its last event when
    /// this is called (retrying until that is done), then marks the tally ready once the shared
    /// tally's watch has caught up (or after 30 s without it). Later events
    /// are not read: every replica's costs since reach the shared tally, and other replicas'
    /// Plan-limit states their own bucket ([`crate::rate_limits`]), without this replica
    /// receiving its own events back.
    pub async fn read_month(self: Arc<Self>, client: async_nats::Client, ns: Namespace) {
        let start = Month::of(Utc::now(), self.tz).start(self.tz);
        // A request event of a newer version is skipped (counted, logged): its cost also reaches
        // the shared tally from the replica that wrote it.
        let mut follower = Follower::new("proxy budgets (month to date)", client, &ns, StreamKind::Requests)
            .start(Start::Since(start));
        loop {
            match follower.next().await {
                Next::CaughtUp => break,
                Next::Message(delivery) => {
                    self.count(&mut follower, &delivery);
                    if delivery.caught_up {
                        break;
                    }
                }
            }
        }
        drop(follower);
        self.mark_month_read();
        tracing::info!("month to date read from the request stream");
        // Other replicas' costs since come through the shared tally: ready once it has caught up,
        // or after 30 s without it (budgets then count the month before this replica started and
        // its own requests until the tally catches up: better than refusing every developer).
        let waiting = std::time::Instant::now();
        while !self.shared.get().is_some_and(|t| t.is_live()) {
            if waiting.elapsed() > Duration::from_secs(30) {
                tracing::warn!(
                    "the shared spend tally has not caught up in 30 s; serving anyway — until it does, budgets \
                     do not see other replicas' costs since this replica started"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Counts one event read from the request stream (unless it is this replica's own).
    fn count(&self, follower: &mut Follower, delivery: &Delivery) {
        let own =
            delivery.header("Nats-Msg-Id").and_then(|id| id.parse::<Ulid>().ok()).is_some_and(|id| self.returned(id));
        if own {
            return;
        }
        let Decoded::Apply(envelope) = follower.decode(delivery) else { return };
        let Envelope { event: Event::RequestCompleted(r), occurred_at, .. } = *envelope else { return };
        if let Some(user) = r.user_id {
            if let Some(cost) = r.cost_usd.filter(|c| *c > Decimal::ZERO) {
                self.add(user, cost, occurred_at);
            }
        }
        if let (Some(table), Some(key), Some(state)) = (self.rate_limits.get(), r.key_id, r.rate_limit) {
            table.merge(key, state);
        }
    }
}
