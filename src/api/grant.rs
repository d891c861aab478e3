//! The credential of a request one instance forwards to a session's owner on a caller's
//! behalf (`x-ccr-forwarded-auth`, pure): the caller's name and role as the forwarding
//! instance authenticated them, when, and an HMAC-SHA256 under the cluster's key of those
//! and of the request's method, path and query and the `x-ccr-forwarded-by` instance.
//!
//! It stands in for the caller's own credential, which the owner may not know: a console
//! sign-in lives in the memory of the instance that made it. The owner accepts it only on
//! the routes that are forwarded ([`forwardable`]), for that one request line, and within
//! [`CLOCK_WINDOW`] of its own clock.

use std::time::Duration;

use actix_web::http::Method;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::auth::Principal;
use crate::config::Role;

/// The header a forwarded request's credential travels in.
pub const FORWARDED_AUTH: &str = "x-ccr-forwarded-auth";

/// How far a credential's time may be from the owner's clock, either way: the owner may
/// take 30 s to answer, and the instances' clocks may differ a little.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(300);

/// The format's version, the value's first field.
const VERSION: &str = "v1";

/// Why a forwarded credential is refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Not `v1.<ms>.<role>.<hex name>.<hex mac>`.
    Malformed,
    /// Its MAC is not the cluster key's for this request.
    Signature,
    /// Made too long ago, or too far ahead of this instance's clock.
    Clock,
    /// Presented on a route that is never forwarded.
    Route,
}

impl GrantError {
    /// The reason given in the 401 answer.
    pub fn reason(self) -> &'static str {
        match self {
            GrantError::Malformed => "malformed forwarded credential",
            GrantError::Signature => {
                "forwarded credential not signed with this cluster's key for this request"
            }
            GrantError::Clock => {
                "forwarded credential outside the 5-minute clock window (are the instances' clocks in sync?)"
            }
            GrantError::Route => "a forwarded credential is not accepted on this route",
        }
    }
}

/// This machine's clock in Unix milliseconds, as credentials carry it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether `method` on `target` (a path, with or without its query) is a request an
/// instance forwards to a session's owner: a session's interrupt, its messages (sent or
/// read) and the event stream.
pub fn forwardable(method: &Method, target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "v1", "events"] => method == Method::GET,
        ["", "v1", "sessions", id, "interrupt"] => !id.is_empty() && method == Method::POST,
        ["", "v1", "sessions", id, "messages"] => {
            !id.is_empty() && (method == Method::POST || method == Method::GET)
        }
        _ => false,
    }
}

/// The MAC of a credential's `head` (its fields before the MAC) for this request.
fn mac(key: &[u8], head: &str, by: &str, method: &Method, target: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    // Each field but the last is free of '\n' (a header value cannot hold one, the head is
    // digits, words, hex and dots), so the input is unambiguous.
    for part in [head, "\n", by, "\n", method.as_str(), "\n", target] {
        mac.update(part.as_bytes());
    }
    mac
}

/// The credential for forwarding `method target` on `who`'s behalf, from instance `by`, at
/// `now_ms` (Unix milliseconds).
pub fn sign(
    key: &[u8],
    who: &Principal,
    by: &str,
    method: &Method,
    target: &str,
    now_ms: u64,
) -> String {
    let head = format!(
        "{VERSION}.{now_ms}.{}.{}",
        who.role,
        hex::encode(who.name.as_bytes())
    );
    let tag = mac(key, &head, by, method, target).finalize().into_bytes();
    format!("{head}.{}", hex::encode(tag))
}

/// Who a forwarded credential `value` says the caller is, if it was made under `key` for
/// this request (`method target`, forwarded by `by`) within [`CLOCK_WINDOW`] of `now_ms`.
pub fn verify(
    key: &[u8],
    value: &str,
    by: &str,
    method: &Method,
    target: &str,
    now_ms: u64,
) -> Result<Principal, GrantError> {
    if !forwardable(method, target) {
        return Err(GrantError::Route);
    }
    let (head, tag) = value.rsplit_once('.').ok_or(GrantError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| GrantError::Malformed)?;
    let fields: Vec<&str> = head.split('.').collect();
    let [VERSION, issued, role, name] = fields.as_slice() else {
        return Err(GrantError::Malformed);
    };
    let issued: u64 = issued.parse().map_err(|_| GrantError::Malformed)?;
    let role = match *role {
        "viewer" => Role::Viewer,
        "approver" => Role::Approver,
        "admin" => Role::Admin,
        _ => return Err(GrantError::Malformed),
    };
    let name = hex::decode(name)
        .ok()
        .and_then(|n| String::from_utf8(n).ok())
        .ok_or(GrantError::Malformed)?;
    mac(key, head, by, method, target)
        .verify_slice(&tag)
        .map_err(|_| GrantError::Signature)?;
    if now_ms.abs_diff(issued) > CLOCK_WINDOW.as_millis() as u64 {
        return Err(GrantError::Clock);
    }
    Ok(Principal {
        name: name.into(),
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = &[7; 32];
    const NOW: u64 = 1_796_000_000_000;
    const TARGET: &str = "/v1/sessions/s-1/interrupt";

    fn alice() -> Principal {
        Principal {
            name: "alice.ops@example".into(),
            role: Role::Approver,
        }
    }

    fn signed() -> String {
        sign(KEY, &alice(), "inst-0", &Method::POST, TARGET, NOW)
    }

    #[test]
    fn a_credential_names_the_caller_and_its_role_for_its_own_request_only() {
        let who =
            verify(KEY, &signed(), "inst-0", &Method::POST, TARGET, NOW + 1_000).expect("accepted");
        assert_eq!(
            (&*who.name, who.role),
            ("alice.ops@example", Role::Approver)
        );
        let other_key = [8; 32];
        for (key, by, method, target) in [
            (&other_key[..], "inst-0", Method::POST, TARGET),
            (KEY, "inst-1", Method::POST, TARGET),
            (KEY, "inst-0", Method::POST, "/v1/sessions/s-2/interrupt"),
            (KEY, "inst-0", Method::POST, "/v1/sessions/s-1/messages"),
            (
                KEY,
                "inst-0",
                Method::POST,
                "/v1/sessions/s-1/interrupt?x=1",
            ),
        ] {
            assert_eq!(
                verify(key, &signed(), by, &method, target, NOW),
                Err(GrantError::Signature),
                "{by} {method} {target}"
            );
        }
    }

    #[test]
    fn a_raised_role_or_another_name_breaks_the_signature() {
        let good = signed();
        let (head, tag) = good.rsplit_once('.').unwrap();
        let admin = head.replace(".approver.", ".admin.");
        let bob = format!(
            "{}.{}",
            head.rsplit_once('.').unwrap().0,
            hex::encode("bob")
        );
        for forged in [admin, bob] {
            assert_eq!(
                verify(
                    KEY,
                    &format!("{forged}.{tag}"),
                    "inst-0",
                    &Method::POST,
                    TARGET,
                    NOW
                ),
                Err(GrantError::Signature),
                "{forged}"
            );
        }
    }

    #[test]
    fn a_credential_outside_the_clock_window_is_refused() {
        let window = CLOCK_WINDOW.as_millis() as u64;
        for now in [NOW + window, NOW - window] {
            assert!(verify(KEY, &signed(), "inst-0", &Method::POST, TARGET, now).is_ok());
        }
        for now in [NOW + window + 1, NOW - window - 1] {
            assert_eq!(
                verify(KEY, &signed(), "inst-0", &Method::POST, TARGET, now),
                Err(GrantError::Clock)
            );
        }
    }

    #[test]
    fn malformed_credentials_are_refused_before_any_mac() {
        let good = signed();
        for bad in [
            "",
            "v1",
            "v1.1.admin.616c696365",
            "v2.1796000000000.approver.616c696365.00",
            "v1.soon.approver.616c696365.00",
            "v1.1796000000000.root.616c696365.00",
            "v1.1796000000000.approver.zz.00",
            "v1.1796000000000.approver.616c696365.not-hex",
            "v1.1796000000000.approver.616c696365.extra.00",
        ] {
            assert_eq!(
                verify(KEY, bad, "inst-0", &Method::POST, TARGET, NOW),
                Err(GrantError::Malformed),
                "{bad:?}"
            );
        }
        assert!(verify(KEY, &good, "inst-0", &Method::POST, TARGET, NOW).is_ok());
    }

    #[test]
    fn only_the_forwarded_routes_take_a_credential() {
        for (method, target) in [
            (Method::GET, "/v1/events"),
            (Method::GET, "/v1/events?session_id=s-1&after=3"),
            (Method::POST, "/v1/sessions/s-1/interrupt"),
            (Method::POST, "/v1/sessions/s-1/messages"),
            (Method::GET, "/v1/sessions/s-1/messages?limit=5"),
        ] {
            assert!(forwardable(&method, target), "{method} {target}");
        }
        for (method, target) in [
            (Method::POST, "/v1/events"),
            (Method::GET, "/v1/sessions/s-1/interrupt"),
            (Method::DELETE, "/v1/sessions/s-1/messages"),
            (Method::POST, "/v1/sessions//interrupt"),
            (Method::POST, "/v1/sessions/s-1/permissions/r-1/decision"),
            (Method::POST, "/v1/sessions"),
            (Method::GET, "/v1/admin/config"),
            (Method::POST, "/v1/sessions/s-1/interrupt/x"),
        ] {
            assert!(!forwardable(&method, target), "{method} {target}");
        }
        let admin = Principal {
            name: "root".into(),
            role: Role::Admin,
        };
        let path = "/v1/policy";
        let forged = sign(KEY, &admin, "inst-0", &Method::PUT, path, NOW);
        assert_eq!(
            verify(KEY, &forged, "inst-0", &Method::PUT, path, NOW),
            Err(GrantError::Route),
            "even a well-signed credential opens no other route"
        );
    }
}
