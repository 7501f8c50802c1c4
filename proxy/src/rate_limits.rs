//! The latest rate-limit state Anthropic reported per access key (its `anthropic-ratelimit-*`
//! response headers, and `retry-after` on a 429), kept in memory and copied into every usage
//! event of that key — also of requests Bedrock answered, so the developer sees why.
//!
//! Cheap on the hot path: a response without such headers costs one scan of its header names
//! and no allocation; a key without a snapshot costs one read-locked lookup per event.
//!
//! Replicas share what they see through a KV bucket (`<prefix>_rate_limits`, key id → newest
//! state as JSON): each replica puts the keys whose state it renewed, at most once a second per
//! key, and watches the bucket ([`RateLimits::share`]), so a replica that never asked Anthropic
//! for a key still reports the key's state — also one that just started: it loads the newest
//! state per key from the bucket, not from the request stream ([`RateLimits::is_loaded`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use async_nats::jetstream::{self, kv};
use ccp_schemas::events::{is_rate_limit_header, RateLimitState};
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::Namespace;
use chrono::Utc;
use futures_util::StreamExt as _;

/// How often renewed states are put into the shared bucket.
const SHARE_EVERY: Duration = Duration::from_secs(1);

/// Per key, the newest snapshot this replica has seen (from Anthropic's answers to it, and from
/// other replicas through the shared bucket or the events read at start).
#[derive(Debug, Default)]
pub struct RateLimits {
    latest: RwLock<HashMap<AccessKeyId, Arc<RateLimitState>>>,
    /// Keys whose state this replica renewed from an answer and has not put yet.
    renewed: Mutex<HashSet<AccessKeyId>>,
    /// The watch has delivered every state the bucket held when it started, once.
    loaded: std::sync::atomic::AtomicBool,
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
            if self.merge(key, state) {
                self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key);
            }
        }
    }

    /// Keeps `state` unless a newer one is known; whether it was kept.
    pub fn merge(&self, key: AccessKeyId, state: RateLimitState) -> bool {
        let mut map = self.latest.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(&key) {
            Some(known) if known.observed_at > state.observed_at => false,
            _ => {
                map.insert(key, Arc::new(state));
                true
            }
        }
    }

    /// Shares states with the other replicas through the `<prefix>_rate_limits` bucket, for
    /// ever: puts the states this replica renewed (every [`SHARE_EVERY`]) and merges every
    /// state the bucket receives. Re-opens the bucket after a failure.
    pub async fn share(self: Arc<Self>, js: jetstream::Context, ns: Namespace, nats_replicas: usize) {
        loop {
            let result = async {
                let kv = open_bucket(&js, &ns, nats_replicas).await?;
                tokio::select! {
                    r = self.watch(&kv) => r,
                    r = self.put_renewed(&kv) => r,
                }
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "sharing rate-limit states failed; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Whether the states the shared bucket held at start have been loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn watch(&self, kv: &kv::Store) -> anyhow::Result<()> {
        let mut updates = kv.watch_with_history(">").await?;
        if kv.status().await?.values() == 0 {
            self.loaded.store(true, std::sync::atomic::Ordering::Release);
        }
        while let Some(entry) = updates.next().await {
            let entry = entry?;
            if entry.delta == 0 {
                self.loaded.store(true, std::sync::atomic::Ordering::Release);
            }
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let key = entry.key.parse::<AccessKeyId>();
            let state = serde_json::from_slice::<RateLimitState>(&entry.value);
            match (key, state) {
                (Ok(key), Ok(state)) => {
                    self.merge(key, state);
                }
                _ => tracing::debug!(key = %entry.key, "ignoring an unreadable shared rate-limit state"),
            }
        }
        anyhow::bail!("the watch ended")
    }

    async fn put_renewed(&self, kv: &kv::Store) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(SHARE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A key leaves the set only once its state is stored: a failed put or a cancelled
            // round leaves it for the next.
            let renewed: Vec<AccessKeyId> =
                self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().copied().collect();
            for key in renewed {
                let Some(state) = self.latest(&key) else { continue };
                kv.put(key.to_string(), serde_json::to_vec(&state)?.into()).await?;
                let mut renewed = self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if self.latest(&key).is_some_and(|now| now.observed_at == state.observed_at) {
                    renewed.remove(&key);
                }
            }
        }
    }

    /// The newest snapshot of `key`, if any.
    pub fn latest(&self, key: &AccessKeyId) -> Option<RateLimitState> {
        let map = self.latest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).map(|s| RateLimitState::clone(s))
    }
}

/// Opens (or creates) the shared bucket on `nats_replicas` NATS replicas.
pub async fn open_bucket(js: &jetstream::Context, ns: &Namespace, nats_replicas: usize) -> anyhow::Result<kv::Store> {
    ccp_runtime::streams::own_bucket(
        js,
        format!("{}_rate_limits", ns.prefix()),
        // Anthropic's longest window is a week; older states describe nothing current.
        Duration::from_secs(8 * 86_400),
        "ClaudeCodeProxy newest Anthropic rate-limit state per access key",
        nats_replicas,
    )
    .await
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
