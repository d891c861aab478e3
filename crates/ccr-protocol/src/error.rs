//! The operator API's error codes, one row per code with its HTTP status, and the error body.
//!
//! The server answers every error as `{"error":{"code":..,"message":..}}`; clients (`ctl`)
//! match the [`Code`], never the message text.

use serde::{Deserialize, Serialize};

/// Defines [`Code`] from one table: variant, stable name, HTTP status.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $status:literal;)*) => {
        /// A stable, machine-readable API error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as it appears in the JSON body (`invalid_body`, ...).
            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The HTTP status the server answers with.
            pub fn status(self) -> u16 {
                match self { $(Code::$variant => $status,)* }
            }

            /// The code of a name from a JSON body; `None` for a code this build does not know.
            pub fn from_name(name: &str) -> Option<Code> {
                match name { $($name => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    /// The JSON body is malformed or invalid (unknown fields included).
    InvalidBody = "invalid_body", 400;
    /// A query parameter is invalid.
    InvalidQuery = "invalid_query", 400;
    /// The config file a reload read is invalid; nothing was changed (every problem in the message).
    InvalidConfig = "invalid_config", 400;
    /// Missing or invalid bearer token.
    Unauthorized = "unauthorized", 401;
    /// The token's role is not enough.
    Forbidden = "forbidden", 403;
    /// A state-changing request signed in by the console cookie came from another origin.
    CrossOrigin = "cross_origin", 403;
    /// No such session.
    UnknownSession = "unknown_session", 404;
    /// No such prompt in that session.
    UnknownPrompt = "unknown_prompt", 404;
    /// No such route.
    NotFound = "not_found", 404;
    /// A cluster route on an instance that is not in a cluster (`[ledger] backend` is not `postgres`).
    ClusterOff = "cluster_off", 404;
    /// The route exists, the method does not.
    MethodNotAllowed = "method_not_allowed", 405;
    /// The event stream needs a WebSocket upgrade or `Accept: text/event-stream`.
    NotAcceptable = "not_acceptable", 406;
    /// The request body did not arrive in full within `[api] request_body_timeout`.
    RequestTimeout = "request_timeout", 408;
    /// The prompt was already answered.
    AlreadyAnswered = "already_answered", 409;
    /// The prompt was cancelled by the session.
    PromptCancelled = "prompt_cancelled", 409;
    /// A dialog of a kind this supervisor does not render (never answered).
    NotAnswerable = "not_answerable", 409;
    /// The session is viewer-only.
    ViewerOnly = "viewer_only", 409;
    /// A session with this id already exists.
    SessionExists = "session_exists", 409;
    /// The session has no live connection right now.
    SessionNotConnected = "session_not_connected", 409;
    /// The session answered with an error.
    SessionError = "session_error", 502;
    /// The CCR endpoint failed.
    UpstreamError = "upstream_error", 502;
    /// An internal actor is not available (shutting down).
    Unavailable = "unavailable", 503;
    /// The decision ledger cannot record an answer now; nothing was sent: retry later.
    LedgerUnavailable = "ledger_unavailable", 503;
    /// The event-stream reader caps are reached.
    TooManyStreams = "too_many_streams", 503;
    /// The session or endpoint did not answer in time.
    Timeout = "timeout", 504;
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Every error response's body: `{"error":{"code":..,"message":..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The code and the human-readable message of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// The code's name, kept as text so a code from a newer server still reads.
    pub code: String,
    /// What went wrong, for a person (empty when a server sent none).
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// The body for `code` with `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.name().to_owned(),
                message: message.into(),
            },
        }
    }

    /// The code, when this build knows it.
    pub fn code(&self) -> Option<Code> {
        Code::from_name(&self.error.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &c in Code::ALL {
            assert!(seen.insert(c.name()), "duplicate name {}", c.name());
            assert_eq!(Code::from_name(c.name()), Some(c));
            assert!((400..600).contains(&c.status()), "{c:?}");
        }
        assert_eq!(Code::from_name("no_such_code"), None);
    }

    /// The table in docs/api.md lists exactly these codes with these statuses.
    #[test]
    fn the_documented_table_is_this_table() {
        let doc = include_str!("../../../docs/api.md");
        let documented: std::collections::BTreeSet<(u16, String)> = doc
            .lines()
            .filter_map(|l| {
                let mut cells = l.split('|').map(str::trim).skip(1);
                let status = cells.next()?.parse().ok()?;
                let code = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((status, code.to_owned()))
            })
            .collect();
        let table: std::collections::BTreeSet<(u16, String)> = Code::ALL
            .iter()
            .map(|c| (c.status(), c.name().to_owned()))
            .collect();
        assert_eq!(
            documented, table,
            "docs/api.md's error table and error.rs differ"
        );
    }

    #[test]
    fn body_reads_back_and_keeps_unknown_codes() {
        let body = ErrorBody::new(Code::AlreadyAnswered, "prompt r1 was already answered");
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            text,
            r#"{"error":{"code":"already_answered","message":"prompt r1 was already answered"}}"#
        );
        let back: ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(back.code(), Some(Code::AlreadyAnswered));
        let newer: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"brand_new","message":"m"}}"#).unwrap();
        assert_eq!(newer.code(), None);
        assert_eq!(newer.error.code, "brand_new");
    }
}
