//! The `teams` dimension: each team's current state (name, description, budget, routing
//! default, created and deleted times), one row per change, from the team events of the admin
//! stream.
//!
//! The fields follow [`ccp_schemas::state::TeamState::apply`], the one fold of team events (a
//! unit test holds them together); what that state has no field for is folded here:
//! `deleted_at`, the budget in nano-dollars. A deleted team keeps its row (with `deleted_at`), so
//! its past spend still has a name.

use std::collections::HashMap;

use ccp_runtime::tables::TeamRow;
use ccp_schemas::events::Event;
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::Envelope;

use super::users::nanos;
use super::{label, TableSpec};

/// `teams`: the newest row per team is its state (ReplacingMergeTree on `stream_seq`).
pub struct Teams;

impl TableSpec for Teams {
    type Row = TeamRow;
    const NAME: &'static str = "teams";
    const TABLE: &'static str = "teams";
    const STREAM: StreamKind = StreamKind::Admin;
    /// Each team's newest row.
    type State = HashMap<String, TeamRow>;

    fn row(state: &mut Self::State, seq: u64, envelope: &Envelope) -> Option<TeamRow> {
        let at = envelope.occurred_at;
        let row = match &envelope.event {
            Event::TeamCreated(e) => {
                // Like the fold: a second `team_created` of a team changes nothing.
                if state.contains_key(&e.team_id.to_string()) {
                    return None;
                }
                TeamRow {
                    team_id: e.team_id.to_string(),
                    name: e.name.clone(),
                    description: e.description.clone().unwrap_or_default(),
                    routing: String::new(),
                    monthly_budget_nanos: None,
                    created_at: at,
                    updated_at: at,
                    deleted_at: None,
                    stream_seq: seq,
                }
            }
            event => {
                let Aggregate::Team(team_id) = event.aggregate() else {
                    return None;
                };
                let mut row = state.get(&team_id.to_string())?.clone();
                match event {
                    Event::TeamUpdated(e) => {
                        if let Some(name) = &e.name {
                            row.name.clone_from(name);
                        }
                        if let Some(d) = &e.description {
                            row.description.clone_from(d);
                        }
                    }
                    Event::TeamBudgetSet(e) => row.monthly_budget_nanos = e.monthly_limit_usd.map(nanos),
                    Event::TeamRoutingSet(e) => row.routing = e.strategy.as_ref().map(label).unwrap_or_default(),
                    Event::TeamDeleted(_) => row.deleted_at = Some(at),
                    _ => return None,
                }
                row.updated_at = at;
                row.stream_seq = seq;
                row
            }
        };
        state.insert(row.team_id.clone(), row.clone());
        Some(row)
    }

    fn seq(row: &TeamRow) -> u64 {
        row.stream_seq
    }

    async fn load(clickhouse: &clickhouse::Client) -> anyhow::Result<Self::State> {
        let rows: Vec<TeamRow> = clickhouse.query("SELECT ?fields FROM teams FINAL").fetch_all().await?;
        Ok(rows.into_iter().map(|r| (r.team_id.clone(), r)).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ccp_schemas::events::{
        RoutingStrategy, TeamBudgetSet, TeamCreated, TeamDeleted, TeamRoutingSet, TeamUpdated, UserTeamSet,
    };
    use ccp_schemas::ids::{TeamId, UserId};
    use ccp_schemas::state::TeamState;
    use ccp_schemas::Actor;
    use chrono::{DateTime, Duration, Utc};
    use rust_decimal::Decimal;

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_780_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    fn envelope(event: Event, minutes: i64) -> Envelope {
        let mut e = Envelope::new(event, Actor::System { component: "test".into() });
        e.occurred_at = at(minutes);
        e
    }

    /// Folds `events` both ways; the last row and the fold's state.
    fn fold(dimension: &mut HashMap<String, TeamRow>, events: &[Event], from: i64) -> (TeamRow, TeamState) {
        let mut state: Option<TeamState> = None;
        let mut last = None;
        for (i, event) in events.iter().enumerate() {
            let minutes = from + i64::try_from(i).unwrap();
            let env = envelope(event.clone(), minutes);
            if let Some(row) = Teams::row(dimension, 10 + u64::try_from(minutes).unwrap(), &env) {
                last = Some(row);
            }
            TeamState::apply(&mut state, event, at(minutes));
        }
        (last.unwrap(), state.unwrap())
    }

    fn assert_same(row: &TeamRow, state: &TeamState) {
        assert_eq!(row.team_id, state.team_id.to_string());
        assert_eq!(row.name, state.name);
        assert_eq!(row.description, state.description.clone().unwrap_or_default());
        assert_eq!(row.routing, state.routing.as_ref().map(label).unwrap_or_default());
        assert_eq!(row.monthly_budget_nanos, state.monthly_limit_usd.map(nanos));
        assert_eq!((row.created_at, row.updated_at), (state.created_at, state.updated_at));
        assert_eq!(row.deleted_at.is_some(), state.deleted);
    }

    #[test]
    fn a_teams_row_is_its_state_as_the_one_fold_sees_it() {
        let team = TeamId::new();
        let events = [
            Event::TeamCreated(TeamCreated {
                team_id: team,
                name: "platform".into(),
                description: Some("infra".into()),
            }),
            Event::TeamUpdated(TeamUpdated { team_id: team, name: Some("platform eng".into()), description: None }),
            Event::TeamBudgetSet(TeamBudgetSet { team_id: team, monthly_limit_usd: Some(Decimal::new(12_550, 2)) }),
            Event::TeamRoutingSet(TeamRoutingSet { team_id: team, strategy: Some(RoutingStrategy::BedrockOnly) }),
            // A user's membership is not a team event; a second creation changes nothing.
            Event::UserTeamSet(UserTeamSet { user_id: UserId::new(), team_id: Some(team) }),
            Event::TeamCreated(TeamCreated { team_id: team, name: "other".into(), description: None }),
        ];
        let mut dimension = HashMap::new();
        let (row, state) = fold(&mut dimension, &events, 0);
        assert_same(&row, &state);
        assert_eq!(row.name, "platform eng");
        assert_eq!(row.description, "infra");
        assert_eq!(row.routing, "bedrock_only");
        assert_eq!(row.monthly_budget_nanos, Some(125_500_000_000));
        assert_eq!(row.deleted_at, None);
        assert_eq!(row.stream_seq, 13);

        // "" clears the description; a cleared budget and routing; deleted: the row stays, dated.
        let mut replay = HashMap::new();
        let more = [
            events[0].clone(),
            Event::TeamUpdated(TeamUpdated { team_id: team, name: None, description: Some(String::new()) }),
            Event::TeamBudgetSet(TeamBudgetSet { team_id: team, monthly_limit_usd: None }),
            Event::TeamRoutingSet(TeamRoutingSet { team_id: team, strategy: None }),
            Event::TeamDeleted(TeamDeleted { team_id: team }),
        ];
        let (row, state) = fold(&mut replay, &more, 20);
        assert_same(&row, &state);
        assert_eq!((row.description.as_str(), row.routing.as_str(), row.monthly_budget_nanos), ("", "", None));
        assert_eq!(row.deleted_at, Some(at(24)));
        assert_eq!(row.stream_seq, 34);

        // An unknown team has no row.
        let stranger = envelope(Event::TeamDeleted(TeamDeleted { team_id: TeamId::new() }), 40);
        assert_eq!(Teams::row(&mut replay, 50, &stranger), None);
        assert_eq!(replay.len(), 1);
    }
}
