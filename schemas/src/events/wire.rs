//! `Deserialize` for [`Envelope`], written out so that the payload is read straight into its
//! event type.
//!
//! The derived form (a `#[serde(flatten)]` of the adjacently tagged [`Event`]) first collects the
//! whole envelope into serde's intermediate `Content` tree and then walks it again; for a usage
//! event that was most of a replay's CPU. Here the envelope's fields are read in one pass, and
//! once `type` is known the `payload` value is handed to [`Event`]'s own (tag first, so
//! unbuffered) deserializer. Writers put `type` before `payload`; a payload that comes first is
//! still accepted, buffered as a JSON value. Unknown fields are ignored, as before.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use ulid::Ulid;

use super::{Actor, Envelope, Event};

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Id,
    SchemaVersion,
    OccurredAt,
    Actor,
    CorrelationId,
    Source,
    Type,
    Payload,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut id: Option<Ulid> = None;
        let mut schema_version: Option<u16> = None;
        let mut occurred_at: Option<DateTime<Utc>> = None;
        let mut actor: Option<Actor> = None;
        let mut correlation_id: Option<Option<String>> = None;
        let mut source: Option<Option<IpAddr>> = None;
        let mut event_type: Option<String> = None;
        let mut event: Option<Event> = None;
        let mut early_payload: Option<serde_json::Value> = None;

        fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
            if slot.replace(value).is_some() {
                return Err(E::duplicate_field(name));
            }
            Ok(())
        }

        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Id => once(&mut id, "id", map.next_value()?)?,
                Field::SchemaVersion => once(&mut schema_version, "schema_version", map.next_value()?)?,
                Field::OccurredAt => once(&mut occurred_at, "occurred_at", map.next_value()?)?,
                Field::Actor => once(&mut actor, "actor", map.next_value()?)?,
                Field::CorrelationId => once(&mut correlation_id, "correlation_id", map.next_value()?)?,
                Field::Source => once(&mut source, "source", map.next_value()?)?,
                Field::Type => {
                    once(&mut event_type, "type", map.next_value::<String>()?)?;
                }
                Field::Payload => {
                    if event.is_some() || early_payload.is_some() {
                        return Err(de::Error::duplicate_field("payload"));
                    }
                    match &event_type {
                        Some(tag) => event = Some(map.next_value_seed(PayloadOf { tag })?),
                        None => early_payload = Some(map.next_value()?),
                    }
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }

        let tag = event_type.ok_or_else(|| de::Error::missing_field("type"))?;
        let event = match (event, early_payload) {
            (Some(event), _) => event,
            (None, Some(payload)) => PayloadOf { tag: &tag }.deserialize(payload).map_err(de::Error::custom)?,
            (None, None) => return Err(de::Error::missing_field("payload")),
        };
        Ok(Envelope {
            id: id.ok_or_else(|| de::Error::missing_field("id"))?,
            schema_version: schema_version.ok_or_else(|| de::Error::missing_field("schema_version"))?,
            occurred_at: occurred_at.ok_or_else(|| de::Error::missing_field("occurred_at"))?,
            actor: actor.ok_or_else(|| de::Error::missing_field("actor"))?,
            correlation_id: correlation_id.flatten(),
            source: source.flatten(),
            event,
        })
    }
}

/// Reads a payload as the event of type `tag`, by presenting `{"type": tag, "payload": …}` to
/// [`Event`]'s derived deserializer without copying the payload.
struct PayloadOf<'t> {
    tag: &'t str,
}

impl<'de> DeserializeSeed<'de> for PayloadOf<'_> {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, payload: D) -> Result<Event, D::Error> {
        Event::deserialize(MapAccessDeserializer::new(TagThenPayload { tag: Some(self.tag), payload: Some(payload) }))
    }
}

struct TagThenPayload<'t, D> {
    tag: Option<&'t str>,
    payload: Option<D>,
}

impl<'de, D: Deserializer<'de>> MapAccess<'de> for TagThenPayload<'_, D> {
    type Error = D::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, D::Error> {
        let key = if self.tag.is_some() {
            "type"
        } else if self.payload.is_some() {
            "payload"
        } else {
            return Ok(None);
        };
        seed.deserialize(IntoDeserializer::<D::Error>::into_deserializer(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, D::Error> {
        if let Some(tag) = self.tag.take() {
            return seed.deserialize(StrDeserializer::<D::Error>::new(tag));
        }
        match self.payload.take() {
            Some(payload) => seed.deserialize(payload),
            None => Err(de::Error::custom("no value left")),
        }
    }
}
