//! What the usage modules' unit tests share: instants and time zones written as text.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// An RFC 3339 instant.
pub(super) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// An IANA time zone.
pub(super) fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}
