//! Timestamps on the wire: RFC 3339 UTC with millisecond precision.

use std::time::SystemTime;

/// RFC 3339 UTC timestamp with millisecond precision (`2026-11-24T01:02:03.456Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parse an RFC 3339 timestamp as the API writes it (and the looser forms
/// `humantime::parse_rfc3339_weak` accepts).
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, humantime::TimestampError> {
    humantime::parse_rfc3339_weak(s.trim())
}

/// Serde helper: `Option<SystemTime>` as an RFC 3339 string or null.
pub mod opt_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse_rfc3339(&s).map_err(serde::de::Error::custom))
            .transpose()
    }

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }
}

/// Serde helper: `SystemTime` as an RFC 3339 string.
pub mod as_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_482_123_456);
        assert_eq!(rfc3339(t), "2026-11-24T01:02:03.456Z");
        assert_eq!(parse_rfc3339("2026-11-24T01:02:03.456Z").unwrap(), t);
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
