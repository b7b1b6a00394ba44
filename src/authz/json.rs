//! Reading an API body the way the daemon reads it.
//!
//! The daemon decodes request bodies with Go's `encoding/json` into structs.
//! That decoder matches object keys to fields case-insensitively (with
//! Unicode folding: `ſ` matches `s` and the Kelvin sign matches `k`), lets
//! every matching key assign the field in document order so the last one
//! wins, ignores `null` for booleans, strings and numbers, and decodes a
//! repeated object key *into* what the earlier one left, merging the two.
//! A policy that reads the body with an ordinary case-sensitive,
//! map-building parser sees a different request from the one the daemon
//! runs: `{"Privileged":false,"privileged":true}` looks unprivileged to it.
//!
//! [`JsonValue`] keeps every key of every object, in order, duplicates
//! included, and its lookups follow the daemon's rules.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps objects exactly as sent: every key, in document
/// order, duplicates and case variants included.
///
/// Look fields up with [`all`](Self::all) (every value the daemon may act
/// on) or [`get`](Self::get) (the value it decodes into a scalar field).
///
/// ```
/// use docker_plugin_sdk::authz::JsonValue;
///
/// let body = br#"{"HostConfig":{"Privileged":false,"privileged":true}}"#;
/// let v = JsonValue::parse(body)?;
/// assert_eq!(v.get(&["HostConfig", "Privileged"]), Some(&JsonValue::Bool(true)));
/// # Ok::<(), docker_plugin_sdk::authz::JsonError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<JsonValue>),
    /// An object: its members in document order, duplicates kept.
    Object(Vec<(String, JsonValue)>),
}

/// Why a body could not be read as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("body is not JSON: {reason}")]
pub struct JsonError {
    reason: String,
}

impl JsonValue {
    /// Parses the first JSON value in `bytes`, as the daemon's streaming
    /// decoder does; anything after it is ignored (older daemons act on the
    /// first value alone, newer ones reject the request).
    ///
    /// # Errors
    ///
    /// [`JsonError`] when `bytes` does not start with a JSON value, e.g. an
    /// empty body, a tar stream, or text that is not UTF-8.
    pub fn parse(bytes: &[u8]) -> Result<Self, JsonError> {
        let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<JsonValue>();
        match values.next() {
            Some(Ok(value)) => Ok(value),
            Some(Err(err)) => Err(JsonError {
                reason: err.to_string(),
            }),
            None => Err(JsonError {
                reason: "it is empty".to_owned(),
            }),
        }
    }

    /// Every value found at `path`, in document order: each step follows
    /// every key of every object reached so far that the daemon would match
    /// to that field name.
    ///
    /// Use this for allow and deny checks on objects and arrays: where keys
    /// repeat, the daemon merges what they hold (objects into one, and even
    /// array elements into earlier ones at the same index), so a policy must
    /// accept every candidate, not just the last. An empty path yields the
    /// value itself; a step into anything but an object yields nothing.
    pub fn all(&self, path: &[&str]) -> Vec<&JsonValue> {
        let mut found = vec![self];
        for name in path {
            found = found
                .into_iter()
                .filter_map(JsonValue::members)
                .flatten()
                .filter(|(key, _)| field_matches(key, name))
                .map(|(_, value)| value)
                .collect();
        }
        found
    }

    /// The value the daemon decodes into a scalar field (bool, string,
    /// number) at `path`: the last non-`null` candidate of
    /// [`all`](Self::all), since a later key overwrites an earlier one and
    /// `null` leaves a scalar unchanged.
    ///
    /// For objects and arrays this is only the last candidate; check every
    /// one from [`all`](Self::all) instead.
    pub fn get(&self, path: &[&str]) -> Option<&JsonValue> {
        self.all(path)
            .into_iter()
            .rev()
            .find(|v| !matches!(v, JsonValue::Null))
    }

    /// The members of an object, in order; `None` for other values.
    pub fn members(&self) -> Option<&[(String, JsonValue)]> {
        match self {
            JsonValue::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The elements of an array; `None` for other values.
    pub fn as_array(&self) -> Option<&[JsonValue]> {
        match self {
            JsonValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsonValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            JsonValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, JsonValue::Null)
    }
}

/// Whether an object key sets the struct field `name` when the daemon
/// decodes it: equal under Go's case folding.
///
/// Exact for ASCII names (every Docker API field name is ASCII). Besides
/// ASCII letters, only U+017F (long s) and U+212A (Kelvin sign) fold to an
/// ASCII letter, so they are the only non-ASCII characters that can match.
/// Non-ASCII characters in `name` are compared by their lowercase form.
pub fn field_matches(key: &str, name: &str) -> bool {
    let mut key = key.chars();
    let mut name = name.chars();
    loop {
        match (key.next(), name.next()) {
            (None, None) => return true,
            (Some(k), Some(n)) if fold(k) == fold(n) => {}
            _ => return false,
        }
    }
}

fn fold(c: char) -> char {
    match c {
        '\u{017F}' => 's',
        '\u{212A}' => 'k',
        c if c.is_ascii() => c.to_ascii_lowercase(),
        c => {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        }
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_none<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<JsonValue, D::Error> {
        JsonValue::deserialize(de)
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonValue, E> {
        Ok(JsonValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonValue, E> {
        serde_json::Number::from_f64(v)
            .map(JsonValue::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        // A plain map would drop all but one of each repeated key, which is
        // exactly the information a policy needs.
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, JsonValue>()? {
            members.push((key, value));
        }
        Ok(JsonValue::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> JsonValue {
        JsonValue::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn a_later_case_variant_overrides_an_earlier_exact_key() {
        let v = parse(r#"{"Privileged":false,"privileged":true}"#);
        assert_eq!(v.get(&["Privileged"]), Some(&JsonValue::Bool(true)));
        let v = parse(r#"{"PRIVILEGED":true,"Privileged":false}"#);
        assert_eq!(v.get(&["privileged"]), Some(&JsonValue::Bool(false)));
    }

    #[test]
    fn the_last_duplicate_wins_and_null_leaves_a_scalar_alone() {
        let v = parse(r#"{"Image":"a","Image":"b","image":null}"#);
        assert_eq!(v.get(&["Image"]).and_then(JsonValue::as_str), Some("b"));
        assert_eq!(v.all(&["Image"]).len(), 3);
    }

    #[test]
    fn repeated_objects_are_searched_together_as_the_daemon_merges_them() {
        let v = parse(r#"{"HostConfig":{"Privileged":true},"hostconfig":{"Binds":["/a:/a"]}}"#);
        assert_eq!(
            v.get(&["HostConfig", "Privileged"]),
            Some(&JsonValue::Bool(true))
        );
        assert_eq!(v.all(&["HostConfig", "Binds"]).len(), 1);
    }

    #[test]
    fn unicode_folds_that_reach_ascii_letters_match() {
        // U+017F folds to s and U+212A to k in Go's decoder.
        assert!(field_matches("Bind\u{017F}", "Binds"));
        assert!(field_matches("\u{212A}ernelMemory", "KernelMemory"));
        assert!(field_matches("hostCONFIG", "HostConfig"));
        assert!(!field_matches("Bind", "Binds"));
        assert!(!field_matches("Binds ", "Binds"));
        assert!(!field_matches("B\u{0131}nds", "Binds"));
    }

    #[test]
    fn only_the_first_value_counts() {
        let v = parse(r#"{"Image":"a"} {"Image":"b"}"#);
        assert_eq!(v.get(&["Image"]).and_then(JsonValue::as_str), Some("a"));
    }

    #[test]
    fn non_json_is_an_error_not_an_empty_object() {
        for bad in [&b""[..], b"   ", b"\x1f\x8b\x08", b"ustar", b"{\"a\":"] {
            assert!(JsonValue::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn steps_into_non_objects_find_nothing() {
        let v = parse(r#"{"HostConfig":[{"Privileged":true}],"Image":"x"}"#);
        assert!(v.all(&["HostConfig", "Privileged"]).is_empty());
        assert!(v.all(&["Image", "x"]).is_empty());
        assert_eq!(v.all(&[]).len(), 1);
    }
}
