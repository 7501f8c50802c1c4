//! The team aggregate: a team's name, monthly budget, routing default and deletion.
//!
//! Membership is not decided here: it is a field of each user (`UserCommand::SetTeam`), so "at
//! most one team per user" is kept by the user aggregate. Deleting a team is decided with its
//! member count as the read model has it (`TeamCommand::Delete`), a different aggregate's state:
//! a user added to the team in the instant it is deleted names a team that no longer exists, and
//! every reader treats that as no team (`Directory::team_of`). Its team leads (admins scoped to
//! it) are counted the same way: a team with leads is not deleted either.

use ccp_schemas::events::*;
use ccp_schemas::ids::TeamId;
use ccp_schemas::state::TeamState;
use rust_decimal::Decimal;

use super::{Decision, Rejection};

/// Commands on a team.
#[derive(Debug, Clone)]
pub enum TeamCommand {
    /// Create the team (with an optional budget and routing default).
    Create {
        /// Display name (unique among teams).
        name: String,
        /// Free text.
        description: Option<String>,
        /// Monthly budget of the members together.
        monthly_limit_usd: Option<Decimal>,
        /// Routing default of members without a strategy of their own.
        routing: Option<RoutingStrategy>,
    },
    /// Change descriptive fields (`Some("")` clears the description).
    Update {
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// Set or clear the monthly budget.
    SetBudget(Option<Decimal>),
    /// Set or clear the routing default.
    SetRouting(Option<RoutingStrategy>),
    /// Delete the team; refused while it has members or team leads (admins scoped to it).
    Delete {
        /// Its members now, as the read model has them.
        members: usize,
        /// The admins scoped to it now (team leads), as the read model has them.
        leads: usize,
    },
}

/// Decides a team command.
pub fn decide_team(state: Option<&TeamState>, team_id: TeamId, command: TeamCommand) -> Decision {
    let live = state.filter(|t| !t.deleted);
    let Some(team) = live else {
        return match (state, command) {
            (None, TeamCommand::Create { name, description, monthly_limit_usd, routing }) => {
                let mut events = vec![Event::TeamCreated(TeamCreated { team_id, name, description })];
                if monthly_limit_usd.is_some() {
                    events.push(Event::TeamBudgetSet(TeamBudgetSet { team_id, monthly_limit_usd }));
                }
                if routing.is_some() {
                    events.push(Event::TeamRoutingSet(TeamRoutingSet { team_id, strategy: routing }));
                }
                Ok(events)
            }
            (Some(_), TeamCommand::Create { .. }) => Err(Rejection::Conflict(format!("team {team_id} was deleted"))),
            // Deleting a deleted team changes nothing.
            (Some(_), TeamCommand::Delete { .. }) => Ok(vec![]),
            _ => Err(Rejection::NotFound(format!("no team {team_id}"))),
        };
    };
    Ok(match command {
        TeamCommand::Create { .. } => return Err(Rejection::Conflict(format!("team {team_id} already exists"))),
        TeamCommand::Update { name, description } => {
            let name = name.filter(|n| *n != team.name);
            let description = description
                .filter(|d| Some(d) != team.description.as_ref() && !(d.is_empty() && team.description.is_none()));
            if name.is_none() && description.is_none() {
                vec![]
            } else {
                vec![Event::TeamUpdated(TeamUpdated { team_id, name, description })]
            }
        }
        TeamCommand::SetBudget(limit) if limit == team.monthly_limit_usd => vec![],
        TeamCommand::SetBudget(monthly_limit_usd) => {
            vec![Event::TeamBudgetSet(TeamBudgetSet { team_id, monthly_limit_usd })]
        }
        TeamCommand::SetRouting(strategy) if strategy == team.routing => vec![],
        TeamCommand::SetRouting(strategy) => vec![Event::TeamRoutingSet(TeamRoutingSet { team_id, strategy })],
        TeamCommand::Delete { members, .. } if members > 0 => {
            return Err(Rejection::Conflict(format!(
                "team `{}` has {members} member(s); move them to another team or none first",
                team.name
            )))
        }
        TeamCommand::Delete { leads, .. } if leads > 0 => {
            return Err(Rejection::Conflict(format!(
                "team `{}` has {leads} team lead(s) (admins scoped to it); clear their team scope first",
                team.name
            )))
        }
        TeamCommand::Delete { .. } => vec![Event::TeamDeleted(TeamDeleted { team_id })],
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::testing::*;

    fn team(given: Vec<Event>, when: TeamCommand) -> Decision {
        decide_team(fold(TeamState::apply, &given).as_ref(), TEAM, when)
    }

    fn usd(cents: i64) -> Decimal {
        Decimal::new(cents, 2)
    }

    fn created() -> Event {
        Event::TeamCreated(TeamCreated { team_id: TEAM, name: "data".into(), description: None })
    }

    fn create(monthly_limit_usd: Option<Decimal>, routing: Option<RoutingStrategy>) -> TeamCommand {
        TeamCommand::Create { name: "data".into(), description: None, monthly_limit_usd, routing }
    }

    fn budget(monthly_limit_usd: Option<Decimal>) -> Event {
        Event::TeamBudgetSet(TeamBudgetSet { team_id: TEAM, monthly_limit_usd })
    }

    fn routing(strategy: Option<RoutingStrategy>) -> Event {
        Event::TeamRoutingSet(TeamRoutingSet { team_id: TEAM, strategy })
    }

    fn deleted() -> Event {
        Event::TeamDeleted(TeamDeleted { team_id: TEAM })
    }

    #[test]
    fn team_create_records_the_creation_then_budget_and_routing() {
        assert_eq!(team(vec![], create(None, None)), Ok(vec![created()]));
        assert_eq!(
            team(vec![], create(Some(usd(200_000)), Some(RoutingStrategy::PlanOnly))),
            Ok(vec![created(), budget(Some(usd(200_000))), routing(Some(RoutingStrategy::PlanOnly))])
        );
        then_conflict(team(vec![created()], create(None, None)));
        then_conflict(team(vec![created(), deleted()], create(None, None)));
    }

    #[test]
    fn every_team_command_on_a_missing_or_deleted_team_is_not_found() {
        for given in [vec![], vec![created(), deleted()]] {
            for command in [
                TeamCommand::Update { name: Some("x".into()), description: None },
                TeamCommand::SetBudget(Some(usd(1))),
                TeamCommand::SetRouting(None),
            ] {
                then_not_found(team(given.clone(), command));
            }
        }
        then_not_found(team(vec![], TeamCommand::Delete { members: 0, leads: 0 }));
        then_nothing(team(vec![created(), deleted()], TeamCommand::Delete { members: 0, leads: 0 }));
    }

    #[test]
    fn team_budget_and_routing_change_only_when_different() {
        assert_eq!(team(vec![created()], TeamCommand::SetBudget(Some(usd(500)))), Ok(vec![budget(Some(usd(500)))]));
        then_nothing(team(vec![created(), budget(Some(usd(500)))], TeamCommand::SetBudget(Some(Decimal::new(5, 0)))));
        assert_eq!(team(vec![created(), budget(Some(usd(500)))], TeamCommand::SetBudget(None)), Ok(vec![budget(None)]));
        then_nothing(team(vec![created()], TeamCommand::SetRouting(None)));
        assert_eq!(
            team(vec![created()], TeamCommand::SetRouting(Some(RoutingStrategy::PlanFirst))),
            Ok(vec![routing(Some(RoutingStrategy::PlanFirst))])
        );
        assert_eq!(
            team(vec![created(), routing(Some(RoutingStrategy::BedrockOnly))], TeamCommand::SetRouting(None)),
            Ok(vec![routing(None)])
        );
    }

    #[test]
    fn team_update_records_only_changes() {
        assert_eq!(
            team(vec![created()], TeamCommand::Update { name: Some("data".into()), description: Some("d".into()) }),
            Ok(vec![Event::TeamUpdated(TeamUpdated { team_id: TEAM, name: None, description: Some("d".into()) })])
        );
        then_nothing(team(vec![created()], TeamCommand::Update { name: None, description: Some(String::new()) }));
    }

    #[test]
    fn a_team_with_members_or_team_leads_is_not_deleted() {
        let refused = team(vec![created()], TeamCommand::Delete { members: 2, leads: 0 });
        assert!(matches!(&refused, Err(Rejection::Conflict(m)) if m.contains("2 member")), "{refused:?}");
        let led = team(vec![created()], TeamCommand::Delete { members: 0, leads: 1 });
        assert!(matches!(&led, Err(Rejection::Conflict(m)) if m.contains("1 team lead")), "{led:?}");
        assert_eq!(team(vec![created()], TeamCommand::Delete { members: 0, leads: 0 }), Ok(vec![deleted()]));
    }
}
