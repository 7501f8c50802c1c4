//! Circuit-breaker transitions of one access key (subject `<prefix>.circuit.<key_id>`). Every
//! proxy replica applies them, so a key trips once for the whole fleet.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::AccessKeyId;

/// What kind of Anthropic failures tripped the breaker (the last one seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripReason {
    /// 429.
    RateLimited,
    /// 529.
    Overloaded,
    /// Another 5xx.
    ServerError,
    /// Connection refused/reset before headers.
    ConnectError,
    /// No headers within the timeout.
    Timeout,
    /// The subscription's usage limit was reached.
    UsageLimit,
    /// The half-open probe failed.
    ProbeFailed,
}

/// Why a circuit closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseCause {
    /// The half-open probe to Anthropic succeeded.
    ProbeSucceeded,
    /// An admin reset it.
    ManualReset,
}

/// Anthropic is skipped for this key until `retry_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitOpened {
    /// The key.
    pub key_id: AccessKeyId,
    /// The failure that tripped it.
    pub reason: TripReason,
    /// Failures counted in the window.
    pub failures: u32,
    /// When a probe may be sent (half-open).
    pub retry_at: DateTime<Utc>,
}

/// The next request for this key probes Anthropic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitHalfOpened {
    /// The key.
    pub key_id: AccessKeyId,
}

/// Anthropic is used again for this key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitClosed {
    /// The key.
    pub key_id: AccessKeyId,
    /// What closed it: a successful probe or an admin's reset.
    pub cause: CloseCause,
}
