//! Subject, stream, bucket and consumer names, all under one configurable prefix so that several
//! deployments (or parallel tests) share a NATS server without seeing each other.

use crate::events::AlertRule;
use crate::ids::{AccessKeyId, AdminId, TeamId, UserId};

/// What an event is about; decides its subject. Serialized only inside a service's snapshot
/// (the admin API's versions of aggregates); subjects are built by [`Namespace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Aggregate {
    /// A user (profile, status, budget, routing).
    User(UserId),
    /// An access key and its Bedrock API key.
    AccessKey(AccessKeyId),
    /// A team (name, budget, routing default). Membership is the user's (`user_team_set`).
    Team(TeamId),
    /// The price list (one aggregate).
    Pricing,
    /// The model catalogue (one aggregate).
    Catalogue,
    /// Admin logins.
    AdminAuth,
    /// An admin account and its API tokens.
    Admin(AdminId),
    /// Usage of one key (`None`: refused before a key was known).
    Request(Option<AccessKeyId>),
    /// The circuit breaker of one key.
    Circuit(AccessKeyId),
    /// Alerts of one rule (admin stream: kept for ever, in the audit log).
    Alert(AlertRule),
    /// Counted failed sign-ins (security stream: kept for `nats.security_max_age_days`).
    SignInFailures,
}

/// Why a prefix is unusable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("nats.prefix `{0}` must be 1–32 characters of a-z, 0-9 and _, starting with a letter")]
pub struct BadPrefix(String);

/// All names of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
    upper: String,
}

/// The three streams of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Admin events (users, keys, Bedrock keys, pricing, logins): kept for ever.
    Admin,
    /// Usage events: kept for `nats.request_max_age`.
    Requests,
    /// Circuit transitions: kept for `nats.request_max_age`.
    Circuit,
    /// Security records (counted failed sign-ins): kept for `nats.security_max_age_days`.
    Security,
}

impl StreamKind {
    /// Every stream.
    pub const ALL: [Self; 4] = [Self::Admin, Self::Requests, Self::Circuit, Self::Security];

    fn suffix(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Requests => "request",
            Self::Circuit => "circuit",
            Self::Security => "security",
        }
    }
}

/// The KV buckets the projector writes and the proxy / admin API read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `user_id` → user state (status, budget, routing).
    Users,
    /// `key_id` → access key state (incl. sealed Bedrock key and settings).
    AccessKeys,
    /// key hash (hex) → key id: the proxy's lookup by presented key.
    KeyHashes,
    /// `key_id` → circuit state.
    Circuits,
}

impl Bucket {
    /// Every bucket.
    pub const ALL: [Self; 4] = [Self::Users, Self::AccessKeys, Self::KeyHashes, Self::Circuits];

    fn suffix(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::AccessKeys => "access_keys",
            Self::KeyHashes => "key_hashes",
            Self::Circuits => "circuits",
        }
    }
}

impl Namespace {
    /// The default prefix.
    pub const DEFAULT_PREFIX: &'static str = "ccp";

    /// Validates a prefix.
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = (1..=32).contains(&prefix.len())
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(BadPrefix(prefix.chars().take(40).collect()));
        }
        Ok(Self { prefix: prefix.to_owned(), upper: prefix.to_ascii_uppercase() })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject of an aggregate's events.
    pub fn subject(&self, aggregate: &Aggregate) -> String {
        let p = &self.prefix;
        match aggregate {
            Aggregate::User(id) => format!("{p}.admin.user.{id}"),
            Aggregate::AccessKey(id) => format!("{p}.admin.access_key.{id}"),
            Aggregate::Team(id) => format!("{p}.admin.team.{id}"),
            Aggregate::Pricing => format!("{p}.admin.pricing"),
            Aggregate::Catalogue => format!("{p}.admin.catalogue"),
            Aggregate::AdminAuth => format!("{p}.admin.auth"),
            Aggregate::Admin(id) => format!("{p}.admin.account.{id}"),
            Aggregate::Request(Some(id)) => format!("{p}.request.{id}"),
            Aggregate::Request(None) => format!("{p}.request.unauthenticated"),
            Aggregate::Circuit(id) => format!("{p}.circuit.{id}"),
            Aggregate::Alert(rule) => format!("{p}.admin.alert.{}", rule.as_str()),
            Aggregate::SignInFailures => format!("{p}.security.sign_in_failures"),
        }
    }

    /// The user or access key whose subject this is (`None` for any other subject): what a
    /// reader quarantines when it cannot read one of its events.
    pub fn owner_of(&self, subject: &str) -> Option<Aggregate> {
        let rest = subject.strip_prefix(self.prefix.as_str())?.strip_prefix(".admin.")?;
        if let Some(id) = rest.strip_prefix("user.") {
            return id.parse().ok().map(Aggregate::User);
        }
        rest.strip_prefix("access_key.")?.parse().ok().map(Aggregate::AccessKey)
    }

    /// The stream's name (`CCP_ADMIN`, …).
    pub fn stream(&self, kind: StreamKind) -> String {
        format!("{}_{}", self.upper, kind.suffix().to_ascii_uppercase())
    }

    /// The subjects a stream captures (`ccp.admin.>`, …).
    pub fn stream_subjects(&self, kind: StreamKind) -> String {
        format!("{}.{}.>", self.prefix, kind.suffix())
    }

    /// A KV bucket's name (`ccp_users`, …).
    pub fn bucket(&self, bucket: Bucket) -> String {
        format!("{}_{}", self.prefix, bucket.suffix())
    }

    /// The subjects of every alert (`ccp.admin.alert.>`).
    pub fn alert_subjects(&self) -> String {
        format!("{}.admin.alert.>", self.prefix)
    }

    /// A durable consumer's name for a component (`ccp_projector_state`, …).
    pub fn consumer(&self, component: &str) -> String {
        format!("{}_{}", self.prefix, component)
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self { prefix: Self::DEFAULT_PREFIX.to_owned(), upper: Self::DEFAULT_PREFIX.to_ascii_uppercase() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let ns = Namespace::new("t1").unwrap();
        let key = AccessKeyId::new();
        assert_eq!(ns.subject(&Aggregate::Circuit(key)), format!("t1.circuit.{key}"));
        assert_eq!(ns.stream(StreamKind::Requests), "T1_REQUEST");
        assert_eq!(ns.stream_subjects(StreamKind::Admin), "t1.admin.>");
        assert_eq!(ns.bucket(Bucket::KeyHashes), "t1_key_hashes");
        assert_eq!(ns.subject(&Aggregate::Alert(AlertRule::BudgetThreshold)), "t1.admin.alert.budget_threshold");
        assert_eq!(ns.alert_subjects(), "t1.admin.alert.>");
    }

    #[test]
    fn the_owner_of_a_subject_is_its_user_or_key_only() {
        let ns = Namespace::new("t1").unwrap();
        let (user, key) = (Aggregate::User(UserId::new()), Aggregate::AccessKey(AccessKeyId::new()));
        assert_eq!(ns.owner_of(&ns.subject(&user)), Some(user));
        assert_eq!(ns.owner_of(&ns.subject(&key)), Some(key));
        assert_eq!(ns.owner_of(&ns.subject(&Aggregate::Pricing)), None);
        assert_eq!(ns.owner_of(&Namespace::new("t2").unwrap().subject(&user)), None, "another deployment's");
        assert_eq!(ns.owner_of("t1.admin.user.not-an-id"), None);
    }

    #[test]
    fn every_subject_is_inside_exactly_one_stream() {
        let ns = Namespace::default();
        let key = AccessKeyId::new();
        let all = [
            Aggregate::User(UserId::new()),
            Aggregate::AccessKey(key),
            Aggregate::Team(crate::ids::TeamId::new()),
            Aggregate::Pricing,
            Aggregate::Catalogue,
            Aggregate::AdminAuth,
            Aggregate::Admin(crate::ids::AdminId::new()),
            Aggregate::Request(Some(key)),
            Aggregate::Request(None),
            Aggregate::Circuit(key),
            Aggregate::Alert(AlertRule::CircuitOpen),
            Aggregate::SignInFailures,
        ];
        for agg in all {
            let subject = ns.subject(&agg);
            let n = StreamKind::ALL
                .iter()
                .filter(|k| subject.starts_with(ns.stream_subjects(**k).trim_end_matches('>')))
                .count();
            assert_eq!(n, 1, "{subject}");
        }
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for p in ["", "Ccp", "c.p", "c>p", "1ccp", "c p", &"a".repeat(33)] {
            assert!(Namespace::new(p).is_err(), "{p}");
        }
    }
}
