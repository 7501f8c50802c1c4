//! JetStream stream and KV bucket definitions as code, and an idempotent `ensure` that creates
//! them or brings their managed settings in line (every service calls it at start).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::config::NatsSettings;
use ccp_schemas::subjects::{Bucket, Namespace, StreamKind};

/// How the streams are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPolicy {
    /// Replicas of every stream and bucket.
    pub replicas: usize,
    /// Age limit of usage and circuit events.
    pub request_max_age: Duration,
    /// Deduplication window of `Nats-Msg-Id`.
    pub duplicate_window: Duration,
    /// Age limit of security records (counted failed sign-ins).
    pub security_max_age: Duration,
}

impl From<&NatsSettings> for StreamPolicy {
    fn from(s: &NatsSettings) -> Self {
        Self {
            replicas: s.replicas.max(1),
            request_max_age: Duration::from_secs(s.request_max_age_days.saturating_mul(86_400)),
            duplicate_window: Duration::from_secs(s.duplicate_window_secs.max(1)),
            security_max_age: Duration::from_secs(s.security_max_age_days.max(1).saturating_mul(86_400)),
        }
    }
}

/// The desired configuration of one stream.
pub fn stream_config(ns: &Namespace, kind: StreamKind, policy: &StreamPolicy) -> stream::Config {
    let (description, max_age, forever) = match kind {
        StreamKind::Admin => ("ClaudeCodeProxy admin events (kept for ever)", Duration::ZERO, true),
        StreamKind::Requests => ("ClaudeCodeProxy usage events", policy.request_max_age, false),
        StreamKind::Circuit => ("ClaudeCodeProxy circuit transitions", policy.request_max_age, false),
        StreamKind::Security => {
            ("ClaudeCodeProxy security records (counted failed sign-ins)", policy.security_max_age, false)
        }
    };
    stream::Config {
        name: ns.stream(kind),
        description: Some(description.to_owned()),
        subjects: vec![ns.stream_subjects(kind)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age,
        num_replicas: policy.replicas,
        duplicate_window: policy.duplicate_window,
        deny_delete: forever,
        deny_purge: forever,
        allow_direct: true,
        ..Default::default()
    }
}

/// The desired configuration of one KV bucket.
pub fn bucket_config(ns: &Namespace, bucket: Bucket, policy: &StreamPolicy) -> kv::Config {
    kv::Config {
        bucket: ns.bucket(bucket),
        description: format!("ClaudeCodeProxy state projection: {}", ns.bucket(bucket)),
        history: 1,
        num_replicas: policy.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// What `ensure` did to one stream or bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist.
    Created,
    /// It existed with other managed settings.
    Updated,
    /// It existed as defined.
    Unchanged,
}

/// Per name, what `ensure` did.
pub type EnsureReport = Vec<(String, Outcome)>;

fn differs(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects != want.subjects
        || have.max_age != want.max_age
        || have.num_replicas.max(1) != want.num_replicas.max(1)
        || have.duplicate_window != want.duplicate_window
        || have.deny_delete != want.deny_delete
        || have.deny_purge != want.deny_purge
        || have.description != want.description
}

/// Creates every stream and bucket, or updates the settings this code manages. Idempotent.
pub async fn ensure(js: &jetstream::Context, ns: &Namespace, policy: &StreamPolicy) -> anyhow::Result<EnsureReport> {
    let mut report = Vec::new();
    for kind in StreamKind::ALL {
        let want = stream_config(ns, kind, policy);
        let outcome = match js.get_stream(&want.name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| anyhow::anyhow!("reading stream {}: {e}", want.name))?;
                if differs(&info.config, &want) {
                    js.update_stream(&want).await.map_err(|e| anyhow::anyhow!("updating stream {}: {e}", want.name))?;
                    Outcome::Updated
                } else {
                    Outcome::Unchanged
                }
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                js.create_stream(&want).await.map_err(|e| anyhow::anyhow!("creating stream {}: {e}", want.name))?;
                Outcome::Created
            }
            Err(e) => return Err(anyhow::anyhow!("looking up stream {}: {e}", want.name)),
        };
        report.push((want.name, outcome));
    }
    for bucket in Bucket::ALL {
        let want = bucket_config(ns, bucket, policy);
        let name = want.bucket.clone();
        let existed = js.get_key_value(&name).await.is_ok();
        js.create_or_update_key_value(want).await.map_err(|e| anyhow::anyhow!("creating bucket {name}: {e}"))?;
        report.push((name, if existed { Outcome::Unchanged } else { Outcome::Created }));
    }
    Ok(report)
}

/// Opens (or creates) one of a service's own KV buckets (not the projector's state buckets):
/// one value per key, kept for `max_age`, on `replicas` replicas (`nats.replicas`, as the
/// streams; an existing bucket on another number is changed to it, as [`ensure`] changes the
/// streams).
pub async fn own_bucket(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
    description: &str,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    let replicas = replicas.max(1);
    if let Ok(store) = js.get_key_value(&name).await {
        if let Ok(mut stream) = js.get_stream(format!("KV_{name}")).await {
            if let Ok(info) = stream.info().await {
                if info.config.num_replicas.max(1) != replicas {
                    let config = stream::Config { num_replicas: replicas, ..info.config.clone() };
                    if let Err(e) = js.update_stream(&config).await {
                        tracing::warn!(bucket = %name, replicas, error = %e, "cannot change the bucket's replicas");
                    }
                }
            }
        }
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        description: description.to_owned(),
        max_age,
        history: 1,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot create KV bucket {name}: {e}"))
}
