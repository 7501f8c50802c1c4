//! Which builds can read which events: the contract revision.
//!
//! Every release that adds an event type, or a new schema version of one, raises [`CONTRACT`]
//! and records here the revision that introduced it ([`introduced`]). A service announces the
//! revision it reads (`ccp_runtime::compat`); a writer appends an event only when every running
//! reader's revision is at least the event's — during a rolling upgrade, the commands that would
//! write a new kind of event wait (refused with a retryable error) until the last older reader
//! is gone, instead of older readers meeting events they cannot read and failing closed.
//!
//! | revision | introduced |
//! |---|---|
//! | 1 | every event type up to 2026-12 |
//! | 2 | `admin_sso_linked` (single sign-on); `team_created`, `team_updated`, `team_budget_set`, `team_routing_set`, `team_deleted`, `user_team_set` (teams) |
//! | 3 | `admin_team_scope_set` (team leads: an admin scoped to one team) |

use std::sync::atomic::{AtomicU16, Ordering};

use crate::events::Event;

/// The contract revision this build reads and writes.
pub const CONTRACT: u16 = 3;

/// The contract revision that introduced this event (its type at its current schema version).
pub const fn introduced(event: &Event) -> u16 {
    match event {
        Event::AdminSsoLinked(_)
        | Event::TeamCreated(_)
        | Event::TeamUpdated(_)
        | Event::TeamBudgetSet(_)
        | Event::TeamRoutingSet(_)
        | Event::TeamDeleted(_)
        | Event::UserTeamSet(_) => 2,
        Event::AdminTeamScopeSet(_) => 3,
        _ => 1,
    }
}

static READING: AtomicU16 = AtomicU16::new(CONTRACT);

/// The revision this process reads: [`CONTRACT`], unless [`emulate`] lowered it.
pub fn reading() -> u16 {
    READING.load(Ordering::Relaxed)
}

/// Makes this process behave as a build of an older revision: [`crate::Envelope::decode`] treats
/// events introduced after `revision` as written by a newer version (for rehearsing a rolling
/// upgrade, setting `compat.emulate_contract`). Clamped to 1..=[`CONTRACT`].
pub fn emulate(revision: u16) {
    READING.store(revision.clamp(1, CONTRACT), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_introduced_revision_is_at_most_the_current_one() {
        for name in crate::events::EVENT_TYPES {
            let sample =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/events/v1/{name}.json"));
            let envelope = crate::Envelope::decode(&std::fs::read(&sample).unwrap()).unwrap();
            assert!((1..=CONTRACT).contains(&introduced(&envelope.event)), "{name}");
        }
    }
}
