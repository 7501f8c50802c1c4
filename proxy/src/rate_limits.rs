//! The latest rate-limit state Anthropic reported per access key (its `anthropic-ratelimit-*`
//! response headers, and `retry-after` on a 429), kept in memory and copied into every usage
//! event of that key — also of requests Bedrock answered, so the developer sees why.
//!
//! Cheap on the hot path: a response without such headers costs one scan of its header names
//! and no allocation; a key without a snapshot costs one read-locked lookup per event.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix_web::http::header::HeaderMap;
use ccp_schemas::events::{is_rate_limit_header, RateLimitState};
use ccp_schemas::ids::AccessKeyId;
use chrono::Utc;

/// Per key, the newest snapshot this replica has seen (from Anthropic's answers to it, and from
/// other replicas' usage events).
#[derive(Debug, Default)]
pub struct RateLimits {
    latest: RwLock<HashMap<AccessKeyId, Arc<RateLimitState>>>,
}

impl RateLimits {
    /// Notes the rate-limit headers of an Anthropic answer for `key`, if it has any.
    pub fn observe(&self, key: AccessKeyId, status: u16, headers: &HeaderMap) {
        let relevant = headers.keys().any(|n| is_rate_limit_header(n.as_str()))
            || (status == 429 && headers.contains_key("retry-after"));
        if !relevant {
            return;
        }
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        if let Some(state) = RateLimitState::from_headers(pairs, status, Utc::now()) {
            self.merge(key, state);
        }
    }

    /// Keeps `state` unless a newer one is known.
    pub fn merge(&self, key: AccessKeyId, state: RateLimitState) {
        let mut map = self.latest.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(&key) {
            Some(known) if known.observed_at > state.observed_at => {}
            _ => {
                map.insert(key, Arc::new(state));
            }
        }
    }

    /// The newest snapshot of `key`, if any.
    pub fn latest(&self, key: &AccessKeyId) -> Option<RateLimitState> {
        let map = self.latest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).map(|s| RateLimitState::clone(s))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn the_newest_snapshot_per_key_wins_and_answers_without_headers_change_nothing() {
        let limits = RateLimits::default();
        let (a, b) = (AccessKeyId::new(), AccessKeyId::new());
        limits.observe(a, 200, &headers(&[("content-type", "text/event-stream")]));
        assert!(limits.latest(&a).is_none());
        limits.observe(a, 200, &headers(&[("anthropic-ratelimit-unified-5h-utilization", "0.25")]));
        limits.observe(a, 200, &headers(&[("content-type", "application/json")]));
        let first = limits.latest(&a).unwrap();
        assert_eq!(first.unified.as_ref().unwrap().five_hour.as_ref().unwrap().utilization, Some(0.25));
        assert!(limits.latest(&b).is_none(), "another key's state is its own");
        limits.observe(a, 429, &headers(&[("retry-after", "30")]));
        assert_eq!(limits.latest(&a).unwrap().retry_after_secs, Some(30));
        let mut older = first;
        older.observed_at -= chrono::Duration::seconds(10);
        older.status = 201;
        limits.merge(a, older);
        assert_eq!(limits.latest(&a).unwrap().status, 429, "an older snapshot does not replace a newer one");
    }
}
