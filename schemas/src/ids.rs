//! Typed, prefixed identifiers (`usr_…`, `key_…`): ULIDs that say what they name.
//!
//! They are safe as NATS subject tokens and as ClickHouse strings, and a user id can never be
//! passed where a key id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}` followed by a 26-character ULID)")]
pub struct IdError {
    kind: &'static str,
    prefix: &'static str,
    value: String,
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The textual prefix, including the underscore.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Ulid::new())
            }

            /// Wraps an existing ULID.
            pub const fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }

            /// The ULID inside.
            pub const fn ulid(self) -> Ulid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.strip_prefix($prefix)
                    .and_then(|rest| Ulid::from_string(rest).ok())
                    .map(Self)
                    .ok_or_else(|| IdError {
                        kind: $kind,
                        prefix: $prefix,
                        value: s.chars().take(64).collect(),
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A developer (a person who uses Claude Code through the proxy).
    UserId, "usr_", "user"
);
prefixed_id!(
    /// An access key: the credential in a developer's `ANTHROPIC_BASE_URL`.
    AccessKeyId, "key_", "access key"
);
prefixed_id!(
    /// One request through the proxy; also the `x-ccp-request-id` header value.
    RequestId, "req_", "request"
);
prefixed_id!(
    /// An admin account of the admin API.
    AdminId, "adm_", "admin"
);
prefixed_id!(
    /// A long-lived API token of an admin, for automation.
    ApiTokenId, "tok_", "API token"
);
prefixed_id!(
    /// A team: users who share a monthly budget and a routing default.
    TeamId, "team_", "team"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_json() {
        let id = UserId::new();
        let text = id.to_string();
        assert!(text.starts_with("usr_"));
        assert_eq!(text.len(), 30);
        assert_eq!(text.parse::<UserId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(serde_json::from_str::<UserId>(&json).ok(), Some(id));
    }

    #[test]
    fn refuses_the_wrong_kind_of_id() {
        let key = AccessKeyId::new().to_string();
        let err = key.parse::<UserId>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not a valid user id")));
        assert!("usr_notaulid".parse::<UserId>().is_err());
    }
}
