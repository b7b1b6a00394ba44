//! Serde helpers for the daemon's Go-flavoured JSON, shared by the volume,
//! network and IPAM wire types.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// A value the daemon sends as a string where `""` means "none": addresses,
/// pools, MAC addresses. `null` and a missing key mean "none" too.
pub(crate) mod empty_as_none {
    use super::*;

    pub(crate) fn serialize<T: Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    pub(crate) fn deserialize<'de, T, D>(de: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        match Option::<String>::deserialize(de)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|e| D::Error::custom(format!("invalid value {s:?}: {e}"))),
        }
    }
}

/// A value sent as a string that must parse, with the bad text in the error.
pub(crate) mod text {
    use super::*;

    pub(crate) fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, T, D>(de: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(de)?;
        s.parse()
            .map_err(|e| D::Error::custom(format!("invalid value {s:?}: {e}")))
    }
}

/// Go encodes a nil map or slice as `null`; read it as empty.
pub(crate) fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// Whether a `bool` is false, for leaving false flags out of answers.
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}
