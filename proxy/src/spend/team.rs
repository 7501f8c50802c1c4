//! Team spend: a thin layer over [`super::Spend`]'s per-user totals. A team's month is counted
//! under a key of its own (the team's ULID as a `UserId`: ULIDs are drawn fresh for every id, so
//! it names no user), to which each request adds its cost when its user is in the team *at the
//! time of the request* (the event's `team_id`). So a user who moves mid-month leaves their
//! earlier spend with the team that incurred it, and the shared tally, the reservations and the
//! budget checks work for teams exactly as for users — the rebuild of the tally from the request
//! stream (`month_read.rs`) counts each event under its `team_id` too.

use ccp_schemas::ids::{TeamId, UserId};

/// The key a team's spend and reservations are counted under.
pub fn team_key(team: TeamId) -> UserId {
    UserId::from_ulid(team.ulid())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{TimeZone, Utc};
    use rust_decimal::Decimal;

    use super::*;
    use crate::spend::Spend;

    /// Spend is attributed to the team the request was made in: moving a user leaves it there.
    #[test]
    fn team_spend_stays_with_the_team_that_incurred_it() {
        let spend = Spend::new(chrono_tz::UTC);
        let (a, b) = (TeamId::new(), TeamId::new());
        let user = UserId::new();
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        // Two requests in team a, then the user moves to b and makes one more.
        spend.add(user, d("1.25"), at);
        spend.add(team_key(a), d("1.25"), at);
        spend.add(user, d("2"), at);
        spend.add(team_key(a), d("2"), at);
        spend.add(user, d("0.5"), at);
        spend.add(team_key(b), d("0.5"), at);
        assert_eq!(spend.spent(team_key(a), at), d("3.25"));
        assert_eq!(spend.spent(team_key(b), at), d("0.5"));
        assert_eq!(spend.spent(user, at), d("3.75"), "the user's own month is all of it");
        assert_ne!(team_key(a), user);
    }
}
