//! Writing admin events and reading usage events straight from JetStream, for tests of services
//! that consume or produce them (before the admin API exists, or to check what it wrote); usage
//! events to seed the analytics tables with, and waits for their projection into ClickHouse.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy};
use ccp_schemas::events::{
    AccessKeyIssued, AccessKeyRevoked, AccessKeyRotated, BedrockApiKeyRegistered, BedrockSettings,
    BedrockSettingsChanged, Endpoint, Event, Provider, RequestCompleted, RoutingStrategy, RoutingStrategySet,
    TokenUsage, UserCreated, UserDeactivated, UserReactivated, UserStatus,
};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::secrets::access_key::{AccessKey, KeyPepper};
use ccp_schemas::secrets::envelope::{BedrockApiKey, LocalMasterKey, SealedSecret};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Actor, Envelope, Namespace};
use futures_util::StreamExt as _;

/// A handle on one test namespace's event log.
#[derive(Clone)]
pub struct Log {
    /// JetStream.
    pub js: jetstream::Context,
    /// The namespace.
    pub ns: Namespace,
    /// The pepper keys are hashed with.
    pub pepper: KeyPepper,
}

impl Log {
    /// A log for `settings` (streams are created if missing), on `settings.nats.url`.
    pub async fn new(settings: &ccp_runtime::config::Settings) -> Self {
        let servers: Vec<&str> = settings.nats.url.split(',').map(str::trim).collect();
        let client = async_nats::connect(servers).await.unwrap_or_else(|e| {
            panic!("NATS at {} is not reachable ({e}); run scripts/stack.sh start", settings.nats.url)
        });
        let js = jetstream::new(client);
        let ns = crate::namespace(settings);
        let policy = ccp_runtime::streams::StreamPolicy::from(&settings.nats);
        ccp_runtime::streams::ensure(&js, &ns, &policy).await.expect("streams");
        let pepper = KeyPepper::new(&settings.secrets.access_key_pepper).expect("pepper");
        Self { js, ns, pepper }
    }

    /// Appends an event (as the system), returning its stream sequence.
    pub async fn append(&self, event: Event) -> u64 {
        self.publish(&Envelope::new(event, Actor::System { component: "test".into() })).await
    }

    /// Publishes an envelope to its subject with `Nats-Msg-Id` = its id, as the services do;
    /// returns its stream sequence.
    pub async fn publish(&self, envelope: &Envelope) -> u64 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.id.to_string().as_str());
        let ack = self
            .js
            .publish_with_headers(envelope.subject(&self.ns), headers, envelope.encode().expect("encode").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        ack.sequence
    }

    /// Creates an active user.
    pub async fn create_user(&self, name: &str) -> UserId {
        let user_id = UserId::new();
        self.append(Event::UserCreated(UserCreated {
            user_id,
            name: name.into(),
            description: None,
            email: None,
            status: UserStatus::Active,
        }))
        .await;
        user_id
    }

    /// Issues a key to `user_id`; returns its id and the plaintext key.
    pub async fn issue_key(&self, user_id: UserId) -> (AccessKeyId, AccessKey) {
        let (key_id, key, _) = self.issue_key_at(user_id).await;
        (key_id, key)
    }

    /// Issues a key to `user_id`; returns its id, the plaintext key and the issue's sequence
    /// (what a service must have applied before it accepts the key).
    pub async fn issue_key_at(&self, user_id: UserId) -> (AccessKeyId, AccessKey, u64) {
        let key = AccessKey::generate().expect("key");
        let key_id = AccessKeyId::new();
        let seq = self
            .append(Event::AccessKeyIssued(AccessKeyIssued {
                key_id,
                user_id,
                name: None,
                key_hash: key.hash(&self.pepper),
                key_prefix: key.display_prefix(),
                bedrock: BedrockSettings::default(),
            }))
            .await;
        (key_id, key, seq)
    }

    /// A user with one key.
    pub async fn user_with_key(&self, name: &str) -> (UserId, AccessKeyId, AccessKey) {
        let (user_id, key_id, key, _) = self.user_with_key_at(name).await;
        (user_id, key_id, key)
    }

    /// A user with one key, and the sequence of the key's issue.
    pub async fn user_with_key_at(&self, name: &str) -> (UserId, AccessKeyId, AccessKey, u64) {
        let user_id = self.create_user(name).await;
        let (key_id, key, seq) = self.issue_key_at(user_id).await;
        (user_id, key_id, key, seq)
    }

    /// Revokes a key.
    pub async fn revoke(&self, user_id: UserId, key_id: AccessKeyId) -> u64 {
        self.append(Event::AccessKeyRevoked(AccessKeyRevoked { key_id, user_id, reason: None })).await
    }

    /// Rotates a key; returns the new secret.
    pub async fn rotate(&self, user_id: UserId, key_id: AccessKeyId, old: &AccessKey) -> AccessKey {
        let new = AccessKey::generate().expect("key");
        self.append(Event::AccessKeyRotated(AccessKeyRotated {
            key_id,
            user_id,
            key_hash: new.hash(&self.pepper),
            key_prefix: new.display_prefix(),
            previous_key_hash: old.hash(&self.pepper),
        }))
        .await;
        new
    }

    /// Deactivates a user.
    pub async fn deactivate(&self, user_id: UserId) -> u64 {
        self.append(Event::UserDeactivated(UserDeactivated { user_id, reason: None })).await
    }

    /// Reactivates a user.
    pub async fn reactivate(&self, user_id: UserId) -> u64 {
        self.append(Event::UserReactivated(UserReactivated { user_id })).await
    }

    /// Sets a user's routing strategy.
    pub async fn set_routing(&self, user_id: UserId, strategy: RoutingStrategy) -> u64 {
        self.append(Event::RoutingStrategySet(RoutingStrategySet { user_id, strategy })).await
    }

    /// Registers `bedrock_key` for an access key, sealed under `master`.
    pub async fn register_bedrock_key(
        &self,
        user_id: UserId,
        key_id: AccessKeyId,
        master: &LocalMasterKey,
        bedrock_key: &str,
    ) -> u64 {
        let plain = BedrockApiKey::new(bedrock_key).expect("bedrock key");
        let sealed = SealedSecret::seal(master, &plain, &key_id.to_string()).await.expect("seal");
        self.append(Event::BedrockApiKeyRegistered(BedrockApiKeyRegistered {
            key_id,
            user_id,
            sealed,
            hint: plain.hint(),
        }))
        .await
    }

    /// Sets an access key's Bedrock region and default model.
    pub async fn set_bedrock_settings(
        &self,
        user_id: UserId,
        key_id: AccessKeyId,
        region: Option<&str>,
        default_model: Option<&str>,
    ) -> u64 {
        self.append(Event::BedrockSettingsChanged(BedrockSettingsChanged {
            key_id,
            user_id,
            bedrock: BedrockSettings {
                region: region.map(str::to_owned),
                default_model: default_model.map(str::to_owned),
            },
        }))
        .await
    }

    /// Every envelope in a stream so far (with its sequence).
    pub async fn read_all(&self, kind: StreamKind) -> Vec<(u64, Envelope)> {
        let mut stream = self.js.get_stream(self.ns.stream(kind)).await.expect("stream");
        let last = stream.info().await.expect("info").state.last_sequence;
        let mut out = Vec::new();
        if last == 0 {
            return out;
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.js.client().new_inbox(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            out.push((seq, Envelope::decode(&msg.payload).expect("decodable event")));
            if seq >= last {
                break;
            }
        }
        out
    }

    /// Every usage event so far.
    pub async fn requests(&self) -> Vec<RequestCompleted> {
        self.read_all(StreamKind::Requests)
            .await
            .into_iter()
            .filter_map(|(_, e)| match e.event {
                Event::RequestCompleted(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Waits (up to `timeout`) for the usage event of `request_id`.
    pub async fn wait_request(&self, request_id: &str, timeout: Duration) -> RequestCompleted {
        let id: RequestId = request_id.parse().expect("request id");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.requests().await.into_iter().find(|r| r.request_id == id) {
                return r;
            }
            assert!(Instant::now() < deadline, "no usage event for {request_id} within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A usage event: a successful streamed Messages request of `user`'s `key` answered by Anthropic
/// (`claude-sonnet-4-5`, `end_turn`), with no tokens, no cost and no timings. Tests change what
/// they need: `RequestCompleted { usage, cost_usd, ..completed(user, key) }`.
pub fn completed(user: UserId, key: AccessKeyId) -> RequestCompleted {
    RequestCompleted {
        request_id: RequestId::new(),
        key_id: Some(key),
        user_id: Some(user),
        team_id: None,
        key_prefix: None,
        endpoint: Endpoint::Messages,
        provider: Provider::Anthropic,
        requested_model: Some("claude-sonnet-4-5".into()),
        response_model: Some("claude-sonnet-4-5".into()),
        bedrock_model_id: None,
        region: None,
        fallback: false,
        fallback_reason: None,
        status: 200,
        error_class: None,
        stream: true,
        incomplete: false,
        stop_reason: Some("end_turn".into()),
        usage: TokenUsage::default(),
        cost_usd: Some(Default::default()),
        unpriced: false,
        priced_model: None,
        usage_estimated: false,
        bedrock_resolution: None,
        model_substituted: false,
        pricing_version: Some(0),
        latency_ms: 0,
        ttfb_ms: None,
        session_id: None,
        client_version: None,
        rate_limit: None,
    }
}

/// The rows of `db.requests` once it has `n` or more, or when `timeout` has passed (0 while the
/// table does not exist). The caller asserts it is `n`.
pub async fn wait_requests(db: &str, n: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let rows: u64 =
            crate::clickhouse().query(&format!("SELECT count() FROM {db}.requests")).fetch_one().await.unwrap_or(0);
        if rows >= n || Instant::now() >= deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 30 s) until each rollup of `db` (minute, hour, day) counts `n` requests: ClickHouse
/// makes the raw rows of an INSERT visible before its materialized views have written theirs.
/// Fails at once when one counts more.
pub async fn wait_rollups(db: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for table in ["usage_minute", "usage_hour", "usage_day"] {
        loop {
            let rolled: u64 = crate::clickhouse()
                .query(&format!("SELECT sum(requests) FROM {db}.{table}"))
                .fetch_one()
                .await
                .unwrap_or(0);
            if rolled == n {
                break;
            }
            assert!(rolled < n && Instant::now() < deadline, "{db}.{table} shows {rolled} of {n} requests");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
