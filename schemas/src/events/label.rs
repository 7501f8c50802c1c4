//! Labels of enums (metrics, ClickHouse columns, headers, subject tokens) derived from their
//! serde names, so that a label is never spelled a second time by hand.

use serde::ser::{self, Impossible, Serialize};

/// The serde name of a unit enum variant (`ErrorClass::BadRequest` → `"bad_request"`), read
/// straight from its `Serialize` implementation: no allocation, no table to keep in step.
/// `""` for a value that is not a unit variant (a struct, a number, a variant with fields).
pub fn label<T: Serialize + ?Sized>(value: &T) -> &'static str {
    value.serialize(VariantName).unwrap_or("")
}

/// A serializer that accepts only a unit variant and answers its name.
struct VariantName;

/// Not a unit variant.
#[derive(Debug)]
struct NotAUnitVariant;

impl std::fmt::Display for NotAUnitVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a unit variant")
    }
}

impl std::error::Error for NotAUnitVariant {}

impl ser::Error for NotAUnitVariant {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Self
    }
}

type Refused = Result<&'static str, NotAUnitVariant>;

/// Serializer methods that refuse whatever they are given.
macro_rules! refuse {
    ($($name:ident($($arg:ty),*) -> $answer:ty;)*) => {
        $(fn $name(self, $(_: $arg),*) -> $answer {
            Err(NotAUnitVariant)
        })*
    };
}

impl ser::Serializer for VariantName {
    type Ok = &'static str;
    type Error = NotAUnitVariant;
    type SerializeSeq = Impossible<&'static str, NotAUnitVariant>;
    type SerializeTuple = Impossible<&'static str, NotAUnitVariant>;
    type SerializeTupleStruct = Impossible<&'static str, NotAUnitVariant>;
    type SerializeTupleVariant = Impossible<&'static str, NotAUnitVariant>;
    type SerializeMap = Impossible<&'static str, NotAUnitVariant>;
    type SerializeStruct = Impossible<&'static str, NotAUnitVariant>;
    type SerializeStructVariant = Impossible<&'static str, NotAUnitVariant>;

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Refused {
        Ok(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Refused {
        value.serialize(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Refused {
        Err(NotAUnitVariant)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Refused {
        Err(NotAUnitVariant)
    }

    refuse! {
        serialize_bool(bool) -> Refused; serialize_i8(i8) -> Refused; serialize_i16(i16) -> Refused;
        serialize_i32(i32) -> Refused; serialize_i64(i64) -> Refused; serialize_u8(u8) -> Refused;
        serialize_u16(u16) -> Refused; serialize_u32(u32) -> Refused; serialize_u64(u64) -> Refused;
        serialize_f32(f32) -> Refused; serialize_f64(f64) -> Refused; serialize_char(char) -> Refused;
        serialize_str(&str) -> Refused; serialize_bytes(&[u8]) -> Refused; serialize_none() -> Refused;
        serialize_unit() -> Refused; serialize_unit_struct(&'static str) -> Refused;
        serialize_seq(Option<usize>) -> Result<Self::SerializeSeq, NotAUnitVariant>;
        serialize_tuple(usize) -> Result<Self::SerializeTuple, NotAUnitVariant>;
        serialize_tuple_struct(&'static str, usize) -> Result<Self::SerializeTupleStruct, NotAUnitVariant>;
        serialize_tuple_variant(&'static str, u32, &'static str, usize)
            -> Result<Self::SerializeTupleVariant, NotAUnitVariant>;
        serialize_map(Option<usize>) -> Result<Self::SerializeMap, NotAUnitVariant>;
        serialize_struct(&'static str, usize) -> Result<Self::SerializeStruct, NotAUnitVariant>;
        serialize_struct_variant(&'static str, u32, &'static str, usize)
            -> Result<Self::SerializeStructVariant, NotAUnitVariant>;
    }
}

#[cfg(test)]
mod tests {
    use serde::de::{self, DeserializeOwned, IntoDeserializer as _};

    use super::*;
    use crate::events::*;

    /// The serde names of every variant of `T`, as its `Deserialize` implementation lists them.
    fn variants<T: DeserializeOwned>() -> &'static [&'static str] {
        struct Names(Option<&'static [&'static str]>);
        impl<'de> de::Deserializer<'de> for &mut Names {
            type Error = de::value::Error;
            fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not an enum"))
            }
            fn deserialize_enum<V: de::Visitor<'de>>(
                self,
                _: &'static str,
                variants: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                self.0 = Some(variants);
                Err(de::Error::custom("only the names were wanted"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
            }
        }
        let mut names = Names(None);
        let _ = T::deserialize(&mut names);
        names.0.unwrap()
    }

    /// Every variant's label is its serde name (each name read back as the variant, serialized
    /// again, and labelled).
    fn every_label_is_the_serde_name<T: Serialize + DeserializeOwned>() {
        let names = variants::<T>();
        assert!(!names.is_empty(), "{}", std::any::type_name::<T>());
        for name in names {
            let value = T::deserialize((*name).into_deserializer() as de::value::StrDeserializer<'_, de::value::Error>)
                .unwrap();
            assert_eq!(serde_json::to_value(&value).unwrap(), serde_json::json!(name));
            assert_eq!(label(&value), *name);
        }
    }

    /// Checks every type named.
    macro_rules! every_label_is_the_serde_name {
        ($($t:ty),*) => { $(every_label_is_the_serde_name::<$t>();)* };
    }

    #[test]
    fn every_label_of_every_event_enum_is_its_serde_name() {
        every_label_is_the_serde_name! {
            Provider, Endpoint, FallbackReason, TargetSource, ErrorClass, BedrockReadiness, CheckCause, LoginMethod,
            LoginFailure, AlertRule, AlertSeverity, ModelFamily, TripReason, CloseCause, UserStatus, RoutingStrategy
        }
        assert_eq!(AlertRule::ALL.len(), variants::<AlertRule>().len(), "AlertRule::ALL lists every rule");
        assert_eq!(ModelFamily::ALL.len(), variants::<ModelFamily>().len(), "ModelFamily::ALL lists every family");
        let as_str =
            [Provider::None.as_str(), TargetSource::KeyDefault.as_str(), BedrockReadiness::KeyRefused.as_str()];
        assert_eq!(as_str, ["none", "key_default", "key_refused"]);
        assert_eq!(
            [AlertRule::BedrockKeyNotReady.as_str(), ModelFamily::Haiku.as_str()],
            ["bedrock_key_not_ready", "haiku"]
        );
    }

    #[test]
    fn anything_else_has_no_label() {
        assert_eq!(label(&1), "");
        assert_eq!(label("text"), "");
        assert_eq!(label(&Some(Provider::Bedrock)), "");
        assert_eq!(label(&Actor::Anonymous), "", "a tagged enum's variant is a map");
    }
}
