//! The user aggregate: commands on a developer's account (profile, status, budget, routing,
//! team).

use ccp_schemas::events::*;
use ccp_schemas::ids::{TeamId, UserId};
use ccp_schemas::state::UserState;
use rust_decimal::Decimal;

use super::{Decision, Rejection};

/// Commands on a user.
#[derive(Debug, Clone)]
pub enum UserCommand {
    /// Create the user (with an optional budget and routing strategy).
    Create {
        /// The new id.
        user_id: UserId,
        /// Display name (unique among users).
        name: String,
        /// Free text about the user.
        description: Option<String>,
        /// Contact address.
        email: Option<String>,
        /// Active (keys work) or inactive.
        status: UserStatus,
        /// Monthly budget.
        monthly_limit_usd: Option<Decimal>,
        /// Routing strategy; `None` keeps the default (`plan_first`).
        routing: Option<RoutingStrategy>,
    },
    /// Change descriptive fields (`Some("")` clears description/email).
    Update {
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
        /// New email.
        email: Option<String>,
    },
    /// Stop every key of the user.
    Deactivate {
        /// Why, for the audit log.
        reason: Option<String>,
    },
    /// Let the user's keys work again.
    Reactivate,
    /// Set or clear the monthly budget.
    SetBudget(Option<Decimal>),
    /// Set the routing strategy (from then on it overrides the team's default).
    SetRouting(RoutingStrategy),
    /// Join a team, move to another or leave (`None`). The route checks that the team exists.
    SetTeam(Option<TeamId>),
}

/// Decides a user command.
pub fn decide_user(state: Option<&UserState>, user_id: UserId, command: UserCommand) -> Decision {
    let Some(user) = state else {
        return match command {
            UserCommand::Create { user_id, name, description, email, status, monthly_limit_usd, routing } => {
                let mut events = vec![Event::UserCreated(UserCreated { user_id, name, description, email, status })];
                if monthly_limit_usd.is_some() {
                    events.push(Event::BudgetSet(BudgetSet { user_id, monthly_limit_usd }));
                }
                if let Some(strategy) = routing.filter(|r| *r != RoutingStrategy::default()) {
                    events.push(Event::RoutingStrategySet(RoutingStrategySet { user_id, strategy }));
                }
                Ok(events)
            }
            _ => Err(Rejection::NotFound(format!("no user {user_id}"))),
        };
    };
    Ok(match command {
        UserCommand::Create { .. } => return Err(Rejection::Conflict(format!("user {user_id} already exists"))),
        UserCommand::Update { name, description, email } => {
            let name = name.filter(|n| *n != user.name);
            let description = description
                .filter(|d| Some(d) != user.description.as_ref() && !(d.is_empty() && user.description.is_none()));
            let email = email.filter(|m| Some(m) != user.email.as_ref() && !(m.is_empty() && user.email.is_none()));
            if name.is_none() && description.is_none() && email.is_none() {
                vec![]
            } else {
                vec![Event::UserUpdated(UserUpdated { user_id, name, description, email })]
            }
        }
        UserCommand::Deactivate { reason } => match user.status {
            UserStatus::Active => vec![Event::UserDeactivated(UserDeactivated { user_id, reason })],
            UserStatus::Inactive => vec![],
        },
        UserCommand::Reactivate => match user.status {
            UserStatus::Inactive => vec![Event::UserReactivated(UserReactivated { user_id })],
            UserStatus::Active => vec![],
        },
        UserCommand::SetBudget(limit) if limit == user.monthly_limit_usd => vec![],
        UserCommand::SetBudget(monthly_limit_usd) => vec![Event::BudgetSet(BudgetSet { user_id, monthly_limit_usd })],
        UserCommand::SetRouting(strategy) if strategy == user.routing && user.routing_set => vec![],
        UserCommand::SetRouting(strategy) => vec![Event::RoutingStrategySet(RoutingStrategySet { user_id, strategy })],
        UserCommand::SetTeam(team_id) if team_id == user.team_id => vec![],
        UserCommand::SetTeam(team_id) => vec![Event::UserTeamSet(UserTeamSet { user_id, team_id })],
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::testing::*;

    /// Given the user's events, when `command`: the decision.
    fn user(given: Vec<Event>, when: UserCommand) -> Decision {
        decide_user(fold(UserState::apply, &given).as_ref(), USER, when)
    }

    // ---- fixtures ---------------------------------------------------------------------------

    fn usd(cents: i64) -> Decimal {
        Decimal::new(cents, 2)
    }

    fn created_bare() -> Event {
        Event::UserCreated(UserCreated { description: None, email: None, ..dana() })
    }

    fn create(monthly_limit_usd: Option<Decimal>, routing: Option<RoutingStrategy>) -> UserCommand {
        let d = dana();
        UserCommand::Create {
            user_id: d.user_id,
            name: d.name,
            description: d.description,
            email: d.email,
            status: d.status,
            monthly_limit_usd,
            routing,
        }
    }

    fn budget(monthly_limit_usd: Option<Decimal>) -> Event {
        Event::BudgetSet(BudgetSet { user_id: USER, monthly_limit_usd })
    }

    fn routing(strategy: RoutingStrategy) -> Event {
        Event::RoutingStrategySet(RoutingStrategySet { user_id: USER, strategy })
    }

    fn updated(name: Option<&str>, description: Option<&str>, email: Option<&str>) -> Event {
        Event::UserUpdated(UserUpdated {
            user_id: USER,
            name: name.map(Into::into),
            description: description.map(Into::into),
            email: email.map(Into::into),
        })
    }

    fn update(name: Option<&str>, description: Option<&str>, email: Option<&str>) -> UserCommand {
        UserCommand::Update {
            name: name.map(Into::into),
            description: description.map(Into::into),
            email: email.map(Into::into),
        }
    }

    // ---- users ------------------------------------------------------------------------------

    #[test]
    fn user_create_without_budget_or_routing_records_only_the_creation() {
        assert_eq!(user(vec![], create(None, None)), Ok(vec![created()]));
    }

    #[test]
    fn user_create_with_budget_and_routing_records_them_after_the_creation() {
        assert_eq!(
            user(vec![], create(Some(usd(12_550)), Some(RoutingStrategy::BedrockOnly))),
            Ok(vec![created(), budget(Some(usd(12_550))), routing(RoutingStrategy::BedrockOnly)])
        );
    }

    #[test]
    fn user_create_with_the_default_routing_adds_no_routing_event() {
        assert_eq!(user(vec![], create(None, Some(RoutingStrategy::PlanFirst))), Ok(vec![created()]));
        assert_eq!(
            user(vec![], create(Some(usd(100)), Some(RoutingStrategy::default()))),
            Ok(vec![created(), budget(Some(usd(100)))])
        );
    }

    #[test]
    fn user_create_inactive_records_the_status() {
        let command = UserCommand::Create {
            user_id: USER,
            name: "dana".into(),
            description: None,
            email: None,
            status: UserStatus::Inactive,
            monthly_limit_usd: None,
            routing: None,
        };
        assert_eq!(
            user(vec![], command),
            Ok(vec![Event::UserCreated(UserCreated {
                description: None,
                email: None,
                status: UserStatus::Inactive,
                ..dana()
            })])
        );
    }

    #[test]
    fn user_create_twice_conflicts() {
        then_conflict(user(vec![created()], create(None, None)));
        then_conflict(user(vec![created(), deactivated()], create(Some(usd(1)), None)));
    }

    #[test]
    fn every_user_command_on_a_missing_user_is_not_found() {
        for command in [
            update(Some("erin"), None, None),
            update(None, None, None),
            UserCommand::Deactivate { reason: Some("left".into()) },
            UserCommand::Reactivate,
            UserCommand::SetBudget(Some(usd(100))),
            UserCommand::SetBudget(None),
            UserCommand::SetRouting(RoutingStrategy::PlanOnly),
            UserCommand::SetRouting(RoutingStrategy::PlanFirst),
            UserCommand::SetTeam(Some(TEAM)),
            UserCommand::SetTeam(None),
        ] {
            then_not_found(user(vec![], command));
        }
    }

    #[test]
    fn user_events_of_another_aggregate_do_not_create_the_user() {
        let (hash, prefix) = secret();
        then_not_found(user(vec![issued(hash, prefix)], UserCommand::Reactivate));
    }

    #[test]
    fn user_update_records_only_the_changed_fields() {
        assert_eq!(
            user(vec![created()], update(Some("erin"), Some("platform team"), Some("erin@example.com"))),
            Ok(vec![updated(Some("erin"), None, Some("erin@example.com"))])
        );
        assert_eq!(
            user(vec![created()], update(Some("dana"), Some("data team"), None)),
            Ok(vec![updated(None, Some("data team"), None)])
        );
        assert_eq!(
            user(vec![created_bare()], update(None, Some("new"), Some("d@example.com"))),
            Ok(vec![updated(None, Some("new"), Some("d@example.com"))])
        );
    }

    #[test]
    fn user_update_that_changes_nothing_records_nothing() {
        then_nothing(user(vec![created()], update(None, None, None)));
        then_nothing(user(vec![created()], update(Some("dana"), Some("platform team"), Some("dana@example.com"))));
        then_nothing(user(
            vec![created(), updated(Some("erin"), None, None)],
            update(Some("erin"), None, Some("dana@example.com")),
        ));
    }

    #[test]
    fn user_update_with_an_empty_string_clears_description_and_email_only_when_set() {
        assert_eq!(
            user(vec![created()], update(None, Some(""), Some(""))),
            Ok(vec![updated(None, Some(""), Some(""))])
        );
        then_nothing(user(vec![created_bare()], update(None, Some(""), Some(""))));
        assert_eq!(
            user(vec![created_bare()], update(Some("erin"), Some(""), Some(""))),
            Ok(vec![updated(Some("erin"), None, None)])
        );
        // Once cleared, clearing again is a no-op.
        then_nothing(user(vec![created(), updated(None, Some(""), Some(""))], update(None, Some(""), Some(""))));
    }

    #[test]
    fn user_update_clearing_folds_to_unset_fields() {
        let state = fold(UserState::apply, &[created(), updated(None, Some(""), None)]).unwrap();
        assert_eq!(state.description, None);
        assert_eq!(state.email.as_deref(), Some("dana@example.com"));
        assert_eq!(state.updated_at, at(1));
        assert_eq!(state.created_at, at(0));
    }

    #[test]
    fn user_deactivate_records_the_reason_and_a_repeat_records_nothing() {
        assert_eq!(
            user(vec![created()], UserCommand::Deactivate { reason: Some("left the company".into()) }),
            Ok(vec![Event::UserDeactivated(UserDeactivated {
                user_id: USER,
                reason: Some("left the company".into())
            })])
        );
        then_nothing(user(vec![created(), deactivated()], UserCommand::Deactivate { reason: Some("again".into()) }));
    }

    #[test]
    fn user_created_inactive_needs_no_deactivation() {
        let inactive = Event::UserCreated(UserCreated { status: UserStatus::Inactive, ..dana() });
        then_nothing(user(vec![inactive.clone()], UserCommand::Deactivate { reason: None }));
        assert_eq!(user(vec![inactive], UserCommand::Reactivate), Ok(vec![reactivated()]));
    }

    #[test]
    fn user_reactivate_records_the_event_and_a_repeat_records_nothing() {
        assert_eq!(user(vec![created(), deactivated()], UserCommand::Reactivate), Ok(vec![reactivated()]));
        then_nothing(user(vec![created(), deactivated(), reactivated()], UserCommand::Reactivate));
        then_nothing(user(vec![created()], UserCommand::Reactivate));
    }

    #[test]
    fn user_deactivate_after_reactivation_records_again() {
        assert_eq!(
            user(vec![created(), deactivated(), reactivated()], UserCommand::Deactivate { reason: None }),
            Ok(vec![deactivated()])
        );
    }

    #[test]
    fn user_budget_is_set_changed_and_cleared() {
        assert_eq!(user(vec![created()], UserCommand::SetBudget(Some(usd(5_000)))), Ok(vec![budget(Some(usd(5_000)))]));
        assert_eq!(
            user(vec![created(), budget(Some(usd(5_000)))], UserCommand::SetBudget(Some(usd(7_500)))),
            Ok(vec![budget(Some(usd(7_500)))])
        );
        assert_eq!(
            user(vec![created(), budget(Some(usd(5_000)))], UserCommand::SetBudget(None)),
            Ok(vec![budget(None)])
        );
    }

    #[test]
    fn user_budget_that_changes_nothing_records_nothing() {
        then_nothing(user(vec![created()], UserCommand::SetBudget(None)));
        then_nothing(user(vec![created(), budget(Some(usd(5_000)))], UserCommand::SetBudget(Some(usd(5_000)))));
        // The same amount at another scale is the same budget.
        then_nothing(user(
            vec![created(), budget(Some(Decimal::new(50, 0)))],
            UserCommand::SetBudget(Some(Decimal::new(50_000, 3))),
        ));
        then_nothing(user(vec![created(), budget(Some(usd(5_000))), budget(None)], UserCommand::SetBudget(None)));
    }

    #[test]
    fn user_routing_is_set_and_a_repeat_records_nothing() {
        assert_eq!(
            user(vec![created()], UserCommand::SetRouting(RoutingStrategy::PlanOnly)),
            Ok(vec![routing(RoutingStrategy::PlanOnly)])
        );
        // Setting the default on purpose records it: from then on it overrides a team's default.
        assert_eq!(
            user(vec![created()], UserCommand::SetRouting(RoutingStrategy::PlanFirst)),
            Ok(vec![routing(RoutingStrategy::PlanFirst)])
        );
        then_nothing(user(
            vec![created(), routing(RoutingStrategy::PlanFirst)],
            UserCommand::SetRouting(RoutingStrategy::PlanFirst),
        ));
        then_nothing(user(
            vec![created(), routing(RoutingStrategy::BedrockOnly)],
            UserCommand::SetRouting(RoutingStrategy::BedrockOnly),
        ));
        assert_eq!(
            user(
                vec![created(), routing(RoutingStrategy::BedrockOnly)],
                UserCommand::SetRouting(RoutingStrategy::PlanFirst)
            ),
            Ok(vec![routing(RoutingStrategy::PlanFirst)])
        );
    }

    #[test]
    fn user_commands_other_than_reactivate_still_apply_to_an_inactive_user() {
        let given = vec![created(), deactivated()];
        assert_eq!(user(given.clone(), UserCommand::SetBudget(Some(usd(1)))), Ok(vec![budget(Some(usd(1)))]));
        assert_eq!(
            user(given.clone(), UserCommand::SetRouting(RoutingStrategy::PlanOnly)),
            Ok(vec![routing(RoutingStrategy::PlanOnly)])
        );
        assert_eq!(user(given, update(Some("erin"), None, None)), Ok(vec![updated(Some("erin"), None, None)]));
    }

    fn team_set(team_id: Option<TeamId>) -> Event {
        Event::UserTeamSet(UserTeamSet { user_id: USER, team_id })
    }

    #[test]
    fn user_joins_moves_and_leaves_a_team_and_repeats_record_nothing() {
        let other = TeamId::from_ulid(ulid::Ulid(99));
        assert_eq!(user(vec![created()], UserCommand::SetTeam(Some(TEAM))), Ok(vec![team_set(Some(TEAM))]));
        then_nothing(user(vec![created(), team_set(Some(TEAM))], UserCommand::SetTeam(Some(TEAM))));
        assert_eq!(
            user(vec![created(), team_set(Some(TEAM))], UserCommand::SetTeam(Some(other))),
            Ok(vec![team_set(Some(other))]),
            "one event moves them: a user is in at most one team"
        );
        assert_eq!(user(vec![created(), team_set(Some(TEAM))], UserCommand::SetTeam(None)), Ok(vec![team_set(None)]));
        then_nothing(user(vec![created()], UserCommand::SetTeam(None)));
        let state = fold(UserState::apply, &[created(), team_set(Some(TEAM)), team_set(Some(other))]).unwrap();
        assert_eq!(state.team_id, Some(other));
    }

    // ---- properties of user command sequences -----------------------------------------------

    /// What the commands so far say the user is (timestamps aside).
    #[derive(Debug, Clone, PartialEq)]
    struct Model {
        name: String,
        description: Option<String>,
        email: Option<String>,
        status: UserStatus,
        monthly_limit_usd: Option<Decimal>,
        routing: RoutingStrategy,
        routing_set: bool,
        team_id: Option<TeamId>,
    }

    impl Model {
        fn of(state: &UserState) -> Self {
            Self {
                name: state.name.clone(),
                description: state.description.clone(),
                email: state.email.clone(),
                status: state.status,
                monthly_limit_usd: state.monthly_limit_usd,
                routing: state.routing,
                routing_set: state.routing_set,
                team_id: state.team_id,
            }
        }

        /// The model after `command`, computed without the decision code.
        fn after(model: Option<&Self>, command: &UserCommand) -> Option<Self> {
            let cleared = |v: &String| (!v.is_empty()).then(|| v.clone());
            match (model, command) {
                (None, UserCommand::Create { name, description, email, status, monthly_limit_usd, routing, .. }) => {
                    Some(Self {
                        name: name.clone(),
                        description: description.clone(),
                        email: email.clone(),
                        status: *status,
                        monthly_limit_usd: *monthly_limit_usd,
                        routing: routing.unwrap_or_default(),
                        routing_set: routing.is_some_and(|r| r != RoutingStrategy::default()),
                        team_id: None,
                    })
                }
                (None, _) => None,
                (Some(m), command) => {
                    let mut m = m.clone();
                    match command {
                        UserCommand::Create { .. } => {}
                        UserCommand::Update { name, description, email } => {
                            if let Some(n) = name {
                                m.name.clone_from(n);
                            }
                            if let Some(d) = description {
                                m.description = cleared(d);
                            }
                            if let Some(e) = email {
                                m.email = cleared(e);
                            }
                        }
                        UserCommand::Deactivate { .. } => m.status = UserStatus::Inactive,
                        UserCommand::Reactivate => m.status = UserStatus::Active,
                        UserCommand::SetBudget(limit) => m.monthly_limit_usd = *limit,
                        UserCommand::SetRouting(strategy) => {
                            m.routing = *strategy;
                            m.routing_set = true;
                        }
                        UserCommand::SetTeam(team_id) => m.team_id = *team_id,
                    }
                    Some(m)
                }
            }
        }
    }

    fn small_text(values: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
        proptest::option::of(proptest::sample::select(values).prop_map(String::from))
    }

    fn any_status() -> impl Strategy<Value = UserStatus> {
        prop_oneof![Just(UserStatus::Active), Just(UserStatus::Inactive)]
    }

    fn any_routing() -> impl Strategy<Value = RoutingStrategy> {
        prop_oneof![
            Just(RoutingStrategy::PlanFirst),
            Just(RoutingStrategy::BedrockOnly),
            Just(RoutingStrategy::PlanOnly)
        ]
    }

    /// Few distinct values, so that repeats and no-ops are common; 50 and 50.000 are one budget.
    fn any_budget() -> impl Strategy<Value = Option<Decimal>> {
        proptest::option::of(proptest::sample::select(vec![
            Decimal::new(50, 0),
            Decimal::new(50_000, 3),
            Decimal::new(12_550, 2),
            Decimal::ZERO,
        ]))
    }

    fn any_user_command() -> impl Strategy<Value = UserCommand> {
        prop_oneof![
            1 => (small_text(&["dana", "erin"]), small_text(&["", "x"]), small_text(&["", "a@example.com"]), any_status(),
                  any_budget(), proptest::option::of(any_routing()))
                .prop_map(|(name, description, email, status, monthly_limit_usd, routing)| UserCommand::Create {
                    user_id: USER,
                    name: name.unwrap_or_else(|| "dana".into()),
                    description: description.filter(|d| !d.is_empty()),
                    email: email.filter(|e| !e.is_empty()),
                    status,
                    monthly_limit_usd,
                    routing,
                }),
            3 => (small_text(&["dana", "erin"]), small_text(&["", "x", "y"]), small_text(&["", "a@example.com"]))
                .prop_map(|(name, description, email)| UserCommand::Update { name, description, email }),
            3 => small_text(&["left", "on leave"]).prop_map(|reason| UserCommand::Deactivate { reason }),
            3 => Just(UserCommand::Reactivate),
            3 => any_budget().prop_map(UserCommand::SetBudget),
            3 => any_routing().prop_map(UserCommand::SetRouting),
            2 => proptest::option::of(proptest::sample::select(vec![TEAM, TeamId::from_ulid(ulid::Ulid(98))]))
                .prop_map(UserCommand::SetTeam),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Folding the decided events of any command sequence gives the state the commands
        /// describe; a command decides events exactly when it changes that state; and deciding
        /// a (non-create) command again right after it decides nothing.
        #[test]
        fn user_decisions_fold_to_the_state_the_commands_describe(
            commands in proptest::collection::vec(any_user_command(), 1..40),
        ) {
            let mut log: Vec<Event> = Vec::new();
            let mut model: Option<Model> = None;
            for command in commands {
                let state = fold(UserState::apply, &log);
                let decision = decide_user(state.as_ref(), USER, command.clone());
                let expected = Model::after(model.as_ref(), &command);
                match (&model, &command, decision) {
                    (None, UserCommand::Create { .. }, Ok(events)) => {
                        prop_assert!(matches!(events.first(), Some(Event::UserCreated(_))));
                        log.extend(events);
                    }
                    (None, _, decision) => {
                        prop_assert!(matches!(decision, Err(Rejection::NotFound(_))), "{decision:?}");
                    }
                    (Some(_), UserCommand::Create { .. }, decision) => {
                        prop_assert!(matches!(decision, Err(Rejection::Conflict(_))), "{decision:?}");
                    }
                    (Some(before), _, Ok(events)) => {
                        prop_assert_eq!(events.is_empty(), Some(before) == expected.as_ref(), "{:?}", events);
                        prop_assert!(events.len() <= 1);
                        log.extend(events);
                        let state = fold(UserState::apply, &log);
                        let again = decide_user(state.as_ref(), USER, command.clone());
                        prop_assert_eq!(again, Ok(vec![]), "repeating {:?}", command);
                    }
                    (Some(_), _, Err(rejection)) => {
                        return Err(TestCaseError::fail(format!("{command:?} refused: {rejection:?}")));
                    }
                }
                model = expected;
                let state = fold(UserState::apply, &log);
                prop_assert_eq!(state.as_ref().map(Model::of), model.clone());
                if let Some(state) = state {
                    prop_assert_eq!(state.user_id, USER);
                    // Every event of the user is stamped once, in order.
                    prop_assert_eq!(state.updated_at, at(log.len() - 1));
                }
            }
        }
    }
}
