//! The `circuit_transitions` table: every transition of every key's breaker.

use ccp_runtime::tables::CircuitRow;
use ccp_schemas::events::{Actor, Event};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Envelope;
use chrono::{DateTime, Utc};

use super::{label, TableSpec};

/// `circuit_transitions`: every transition of every key's breaker.
pub struct Circuits;

impl TableSpec for Circuits {
    type Row = CircuitRow;
    const NAME: &'static str = "circuits";
    const TABLE: &'static str = "circuit_transitions";
    const STREAM: StreamKind = StreamKind::Circuit;
    type State = ();

    fn row(_: &mut (), seq: u64, envelope: &Envelope) -> Option<CircuitRow> {
        let (key_id, state, reason, failures, retry_at) = match &envelope.event {
            Event::CircuitOpened(e) => (e.key_id, "open", label(&e.reason), e.failures, e.retry_at),
            Event::CircuitHalfOpened(e) => (e.key_id, "half_open", String::new(), 0, DateTime::<Utc>::UNIX_EPOCH),
            Event::CircuitClosed(e) => (e.key_id, "closed", label(&e.cause), 0, DateTime::<Utc>::UNIX_EPOCH),
            _ => return None,
        };
        Some(CircuitRow {
            event_id: envelope.id.to_string(),
            stream_seq: seq,
            occurred_at: envelope.occurred_at,
            key_id: key_id.to_string(),
            state: state.to_owned(),
            reason,
            failures,
            retry_at,
            replica: match &envelope.actor {
                Actor::Proxy { replica } => replica.clone(),
                _ => String::new(),
            },
        })
    }

    fn seq(row: &CircuitRow) -> u64 {
        row.stream_seq
    }
}
