//! The `users` dimension: each user's current state (name, email, team, status, budget, created
//! and deactivated times), one row per change, from the user events of the admin stream.
//!
//! The fields follow [`ccp_schemas::state::UserState::apply`], the one fold of user events (a
//! unit test holds them together); what that state has no field for is folded here:
//! `deactivated_at`, the budget in nano-dollars.

use std::collections::HashMap;

use ccp_runtime::tables::UserRow;
use ccp_schemas::events::{Event, RoutingStrategy, UserStatus};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Envelope;
use rust_decimal::prelude::ToPrimitive as _;
use rust_decimal::Decimal;

use super::{label, TableSpec};

/// USD → whole nano-dollars (rounded; a budget beyond `u64` nano-dollars saturates).
pub(super) fn nanos(usd: Decimal) -> u64 {
    (usd * Decimal::new(1_000_000_000, 0)).round().to_u64().unwrap_or(if usd.is_sign_negative() { 0 } else { u64::MAX })
}

/// `users`: the newest row per user is their state (ReplacingMergeTree on `stream_seq`).
pub struct Users;

impl TableSpec for Users {
    type Row = UserRow;
    const NAME: &'static str = "users";
    const TABLE: &'static str = "users";
    const STREAM: StreamKind = StreamKind::Admin;
    /// Each user's newest row.
    type State = HashMap<String, UserRow>;

    fn row(state: &mut Self::State, seq: u64, envelope: &Envelope) -> Option<UserRow> {
        let at = envelope.occurred_at;
        let row = match &envelope.event {
            Event::UserCreated(e) => UserRow {
                user_id: e.user_id.to_string(),
                name: e.name.clone(),
                email: e.email.clone().unwrap_or_default(),
                description: e.description.clone().unwrap_or_default(),
                team_id: String::new(),
                status: label(&e.status),
                routing: label(&RoutingStrategy::default()),
                monthly_budget_nanos: None,
                created_at: at,
                updated_at: at,
                deactivated_at: (e.status == UserStatus::Inactive).then_some(at),
                stream_seq: seq,
            },
            event => {
                let mut row = state.get(&event.user_id()?.to_string())?.clone();
                match event {
                    Event::UserUpdated(e) => {
                        if let Some(name) = &e.name {
                            row.name.clone_from(name);
                        }
                        if let Some(d) = &e.description {
                            row.description.clone_from(d);
                        }
                        if let Some(m) = &e.email {
                            row.email.clone_from(m);
                        }
                    }
                    Event::UserDeactivated(_) => {
                        row.status = label(&UserStatus::Inactive);
                        row.deactivated_at = Some(at);
                    }
                    Event::UserReactivated(_) => {
                        row.status = label(&UserStatus::Active);
                        row.deactivated_at = None;
                    }
                    Event::BudgetSet(e) => row.monthly_budget_nanos = e.monthly_limit_usd.map(nanos),
                    Event::RoutingStrategySet(e) => row.routing = label(&e.strategy),
                    Event::UserTeamSet(e) => row.team_id = e.team_id.map(|t| t.to_string()).unwrap_or_default(),
                    _ => return None,
                }
                row.updated_at = at;
                row.stream_seq = seq;
                row
            }
        };
        state.insert(row.user_id.clone(), row.clone());
        Some(row)
    }

    fn seq(row: &UserRow) -> u64 {
        row.stream_seq
    }

    async fn load(clickhouse: &clickhouse::Client) -> anyhow::Result<Self::State> {
        let rows: Vec<UserRow> = clickhouse.query("SELECT ?fields FROM users FINAL").fetch_all().await?;
        Ok(rows.into_iter().map(|r| (r.user_id.clone(), r)).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ccp_schemas::events::{
        BudgetSet, RoutingStrategySet, UserCreated, UserDeactivated, UserReactivated, UserTeamSet, UserUpdated,
    };
    use ccp_schemas::ids::{TeamId, UserId};
    use ccp_schemas::state::UserState;
    use ccp_schemas::Actor;
    use chrono::{DateTime, Duration, Utc};

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_780_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    fn envelope(event: Event, minutes: i64) -> Envelope {
        let mut e = Envelope::new(event, Actor::System { component: "test".into() });
        e.occurred_at = at(minutes);
        e
    }

    #[test]
    fn a_users_row_is_their_state_as_the_one_fold_sees_it() {
        let (user, team) = (UserId::new(), TeamId::new());
        let events = [
            Event::UserCreated(UserCreated {
                user_id: user,
                name: "ann".into(),
                description: None,
                email: Some("ann@example.com".into()),
                status: UserStatus::Active,
            }),
            Event::UserUpdated(UserUpdated {
                user_id: user,
                name: Some("ann b".into()),
                description: Some("platform".into()),
                email: None,
            }),
            Event::BudgetSet(BudgetSet { user_id: user, monthly_limit_usd: Some(Decimal::new(12_550, 2)) }),
            Event::RoutingStrategySet(RoutingStrategySet { user_id: user, strategy: RoutingStrategy::BedrockOnly }),
            Event::UserTeamSet(UserTeamSet { user_id: user, team_id: Some(team) }),
            Event::UserDeactivated(UserDeactivated { user_id: user, reason: None }),
        ];
        let mut dimension = HashMap::new();
        let mut fold: Option<UserState> = None;
        let mut last = None;
        for (i, event) in events.iter().enumerate() {
            let minutes = i64::try_from(i).unwrap();
            let env = envelope(event.clone(), minutes);
            last = Some(Users::row(&mut dimension, 10 + i as u64, &env).unwrap());
            UserState::apply(&mut fold, event, at(minutes));
        }
        let (row, state) = (last.unwrap(), fold.unwrap());
        assert_eq!(row.user_id, state.user_id.to_string());
        assert_eq!(row.name, state.name);
        assert_eq!(row.email, state.email.unwrap_or_default());
        assert_eq!(row.description, state.description.unwrap_or_default());
        assert_eq!(row.status, label(&state.status));
        assert_eq!(row.routing, label(&state.routing));
        assert_eq!(row.team_id, state.team_id.map(|t| t.to_string()).unwrap_or_default());
        assert_eq!(row.monthly_budget_nanos, Some(125_500_000_000));
        assert_eq!((row.created_at, row.updated_at), (state.created_at, state.updated_at));
        assert_eq!(row.deactivated_at, Some(at(5)));
        assert_eq!(row.stream_seq, 15);

        // Reactivated: no deactivation time; leaving the team empties it; an unknown user has no row.
        let env = envelope(Event::UserReactivated(UserReactivated { user_id: user }), 9);
        let row = Users::row(&mut dimension, 20, &env).unwrap();
        assert_eq!((row.status.as_str(), row.deactivated_at), ("active", None));
        let env = envelope(Event::UserTeamSet(UserTeamSet { user_id: user, team_id: None }), 10);
        assert_eq!(Users::row(&mut dimension, 21, &env).unwrap().team_id, "");
        let stranger = envelope(Event::UserReactivated(UserReactivated { user_id: UserId::new() }), 11);
        assert_eq!(Users::row(&mut dimension, 22, &stranger), None);
        assert_eq!(dimension.len(), 1);
    }
}
