//! Given/when/then tests of every decision: the given events are folded with the aggregate's
//! own `apply` (at fixed, increasing times), the command is decided, and the exact events (or
//! the exact rejection) are asserted. This is their framework and the fixtures more than one
//! aggregate's tests use; each aggregate's file holds its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ccp_schemas::events::*;
use ccp_schemas::ids::{AccessKeyId, AdminId, ApiTokenId, TeamId, UserId};
use ccp_schemas::secrets::access_key::{AccessKey, KeyHash, KeyPepper, KeyPrefix};
use ccp_schemas::secrets::SecretString;
use chrono::{DateTime, TimeZone, Utc};
use ulid::Ulid;

use super::{Decision, Rejection};

pub(super) const USER: UserId = UserId::from_ulid(Ulid(1));
pub(super) const KEY: AccessKeyId = AccessKeyId::from_ulid(Ulid(2));
pub(super) const ADMIN: AdminId = AdminId::from_ulid(Ulid(3));
pub(super) const TOKEN: ApiTokenId = ApiTokenId::from_ulid(Ulid(4));
pub(super) const TEAM: TeamId = TeamId::from_ulid(Ulid(5));

// ---- the framework ------------------------------------------------------------------------------

pub(super) fn at(i: usize) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600, 0).unwrap() + chrono::Duration::minutes(i64::try_from(i).unwrap())
}

/// Folds `given` with `apply`, the i-th event at `at(i)`.
pub(super) fn fold<S>(apply: fn(&mut Option<S>, &Event, DateTime<Utc>), given: &[Event]) -> Option<S> {
    let mut state = None;
    for (i, event) in given.iter().enumerate() {
        apply(&mut state, event, at(i));
    }
    state
}

#[track_caller]
pub(super) fn then_not_found(decision: Decision) {
    assert!(matches!(decision, Err(Rejection::NotFound(_))), "expected NotFound, got {decision:?}");
}

#[track_caller]
pub(super) fn then_conflict(decision: Decision) {
    assert!(matches!(decision, Err(Rejection::Conflict(_))), "expected Conflict, got {decision:?}");
}

#[track_caller]
pub(super) fn then_nothing(decision: Decision) {
    assert_eq!(decision, Ok(vec![]));
}

// ---- fixtures shared by the aggregates' tests ---------------------------------------------------

pub(super) fn dana() -> UserCreated {
    UserCreated {
        user_id: USER,
        name: "dana".into(),
        description: Some("platform team".into()),
        email: Some("dana@example.com".into()),
        status: UserStatus::Active,
    }
}

pub(super) fn created() -> Event {
    Event::UserCreated(dana())
}

pub(super) fn deactivated() -> Event {
    Event::UserDeactivated(UserDeactivated { user_id: USER, reason: None })
}

pub(super) fn reactivated() -> Event {
    Event::UserReactivated(UserReactivated { user_id: USER })
}

pub(super) fn pepper() -> KeyPepper {
    KeyPepper::new(&SecretString::new("p".repeat(32))).unwrap()
}

/// A fresh secret's hash and prefix.
pub(super) fn secret() -> (KeyHash, KeyPrefix) {
    let key = AccessKey::generate().unwrap();
    (key.hash(&pepper()), key.display_prefix())
}

pub(super) fn issued(key_hash: KeyHash, key_prefix: KeyPrefix) -> Event {
    Event::AccessKeyIssued(AccessKeyIssued {
        key_id: KEY,
        user_id: USER,
        name: Some("laptop".into()),
        key_hash,
        key_prefix,
        bedrock: BedrockSettings::default(),
    })
}
