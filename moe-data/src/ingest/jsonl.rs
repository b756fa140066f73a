//! Pulls one string field out of a JSON object line without building the
//! whole object: other fields are skipped with `IgnoredAny`.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// Why a line gave no text.
#[derive(Debug, PartialEq, Eq)]
pub enum FieldError {
    /// Not JSON, or not an object.
    NotJson(String),
    /// The field is absent or not a string.
    Missing,
}

/// The value of `field` in the JSON object `line`.
pub fn extract_field(line: &str, field: &str) -> Result<String, FieldError> {
    let mut de = serde_json::Deserializer::from_str(line);
    let found = FieldSeed { field }
        .deserialize(&mut de)
        .map_err(|e| classify(e, line))?;
    de.end().map_err(|e| FieldError::NotJson(e.to_string()))?;
    found.ok_or(FieldError::Missing)
}

/// serde_json reports a non-string field value as a type error; that is a
/// missing-field case for the user, everything else is malformed JSON.
fn classify(e: serde_json::Error, _line: &str) -> FieldError {
    if e.to_string().starts_with(WRONG_TYPE) {
        FieldError::Missing
    } else {
        FieldError::NotJson(e.to_string())
    }
}

const WRONG_TYPE: &str = "moe-data: field is not a string";

struct FieldSeed<'a> {
    field: &'a str,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field && found.is_none() {
                match map.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(s) => found = Some(s),
                    _ => return Err(serde::de::Error::custom(WRONG_TYPE)),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_and_classifies() {
        let f = |l: &str| extract_field(l, "text");
        assert_eq!(f(r#"{"id":1,"text":"a\nb é","x":[1,{"y":2}]}"#), Ok("a\nb é".into()));
        assert_eq!(f(r#"{"id":1}"#), Err(FieldError::Missing));
        assert_eq!(f(r#"{"text":3}"#), Err(FieldError::Missing));
        assert!(matches!(f(r#"{"text":"a""#), Err(FieldError::NotJson(_))));
        assert!(matches!(f(r#"[1,2]"#), Err(FieldError::NotJson(_))));
        assert!(matches!(f(r#"{"text":"a"} x"#), Err(FieldError::NotJson(_))));
        assert!(matches!(f("hello"), Err(FieldError::NotJson(_))));
    }
}
