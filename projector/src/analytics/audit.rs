//! The `audit_log` table: every event of the admin stream, with its actor and target, and its
//! payload without secrets or hashes.

use ccp_runtime::tables::AuditRow;
use ccp_schemas::events::{Actor, Event};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Envelope;

use super::TableSpec;

/// The model a catalogue event concerns (the audit log's target id).
fn catalogued_model(event: &Event) -> String {
    match event {
        Event::ModelCatalogued(e) => e.entry.id.clone(),
        Event::ModelRemoved(e) => e.model.clone(),
        _ => String::new(),
    }
}

/// Payload fields never copied into the audit log.
const AUDIT_OMITTED: &[&str] = &["sealed", "key_hash", "previous_key_hash", "password_hash", "token_hash"];

/// The row of an admin event at stream sequence `seq`.
fn audit_row(seq: u64, envelope: &Envelope) -> AuditRow {
    let (actor_kind, actor_id, actor_name) = match &envelope.actor {
        Actor::Admin { admin_id, username } => ("admin", admin_id.to_string(), username.clone()),
        Actor::Anonymous => ("anonymous", String::new(), String::new()),
        Actor::Proxy { replica } => ("proxy", replica.clone(), String::new()),
        Actor::System { component } => ("system", component.clone(), String::new()),
    };
    let event = &envelope.event;
    let (target_kind, target_id) = match event.aggregate() {
        ccp_schemas::subjects::Aggregate::User(id) => ("user", id.to_string()),
        ccp_schemas::subjects::Aggregate::AccessKey(id) => ("access_key", id.to_string()),
        ccp_schemas::subjects::Aggregate::Team(id) => ("team", id.to_string()),
        ccp_schemas::subjects::Aggregate::Pricing => ("pricing", String::new()),
        ccp_schemas::subjects::Aggregate::Catalogue => ("model", catalogued_model(event)),
        ccp_schemas::subjects::Aggregate::AdminAuth => ("admin", login_username(event)),
        ccp_schemas::subjects::Aggregate::Admin(id) => ("admin", id.to_string()),
        ccp_schemas::subjects::Aggregate::Circuit(id) => ("circuit", id.to_string()),
        ccp_schemas::subjects::Aggregate::Request(id) => ("request", id.map(|k| k.to_string()).unwrap_or_default()),
        ccp_schemas::subjects::Aggregate::Alert(rule) => ("alert", rule.as_str().to_owned()),
        // On the security stream, which the audit projection does not read.
        ccp_schemas::subjects::Aggregate::SignInFailures => ("sign_in", String::new()),
    };
    let mut details = serde_json::to_value(event).ok().and_then(|v| v.get("payload").cloned()).unwrap_or_default();
    if let Some(map) = details.as_object_mut() {
        for field in AUDIT_OMITTED {
            map.remove(*field);
        }
    }
    AuditRow {
        event_id: envelope.id.to_string(),
        stream_seq: seq,
        occurred_at: envelope.occurred_at,
        event_type: event.event_type().to_owned(),
        actor_kind: actor_kind.to_owned(),
        actor_id,
        actor_name,
        target_kind: target_kind.to_owned(),
        target_id,
        user_id: event.user_id().map(|u| u.to_string()).unwrap_or_default(),
        key_id: event.key_id().map(|k| k.to_string()).unwrap_or_default(),
        source: envelope.source.map(|s| s.to_string()).unwrap_or_default(),
        correlation_id: envelope.correlation_id.clone().unwrap_or_default(),
        details: details.to_string(),
    }
}

fn login_username(event: &Event) -> String {
    match event {
        Event::AdminLoginSucceeded(e) => e.username.clone(),
        Event::AdminLoginFailed(e) => e.username.clone(),
        _ => String::new(),
    }
}

/// `audit_log`: every event of the admin stream.
pub struct Audit;

impl TableSpec for Audit {
    type Row = AuditRow;
    const NAME: &'static str = "audit";
    const TABLE: &'static str = "audit_log";
    const STREAM: StreamKind = StreamKind::Admin;
    type State = ();

    fn row(_: &mut (), seq: u64, envelope: &Envelope) -> Option<AuditRow> {
        Some(audit_row(seq, envelope))
    }

    fn seq(row: &AuditRow) -> u64 {
        row.stream_seq
    }
}
