//! The credential of a request one instance forwards to a session's owner on a caller's
//! behalf (`x-ccr-forwarded-auth`): the caller's name and role as the forwarding instance
//! authenticated them, when, the SHA-256 of the body, and an HMAC-SHA256 under the
//! cluster's key of those and of the request's method, path and query, the
//! `x-ccr-forwarded-by` instance and the instance it is forwarded to.
//!
//! It stands in for the caller's own credential, which the owner may not know: a console
//! sign-in lives in the memory of the instance that made it. The owner accepts it only on
//! the routes that are forwarded ([`forwardable`]), for that one request line and body,
//! and within [`CLOCK_WINDOW`] of its own clock.

use std::time::Duration;

use actix_web::http::Method;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

use super::auth::Principal;
use crate::config::Role;

/// The header a forwarded request's credential travels in.
pub const FORWARDED_AUTH: &str = "x-ccr-forwarded-auth";

/// How far a credential's time may be from the owner's clock, either way: it is checked
/// when the request arrives, and the instances' clocks may differ a little.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(60);

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
    /// Signed for another request body than the one that came.
    Body,
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
                "forwarded credential outside the 1-minute clock window (are the instances' clocks in sync?)"
            }
            GrantError::Route => "a forwarded credential is not accepted on this route",
            GrantError::Body => "forwarded credential signed for another request body",
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
/// read) and one session's event stream (never the stream of all sessions).
pub fn forwardable(method: &Method, target: &str) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let one_session = query.split('&').any(|pair| {
        pair.strip_prefix("session_id=")
            .is_some_and(|id| !id.is_empty())
    });
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "v1", "events"] => method == Method::GET && one_session,
        ["", "v1", "sessions", id, "interrupt"] => !id.is_empty() && method == Method::POST,
        ["", "v1", "sessions", id, "messages"] => {
            !id.is_empty() && (method == Method::POST || method == Method::GET)
        }
        _ => false,
    }
}

/// The request a credential is made for: what the owner's MAC binds it to.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The forwarding instance (`x-ccr-forwarded-by`).
    pub by: &'a str,
    /// The instance it is forwarded to (the session's owner).
    pub to: &'a str,
    /// The request's method.
    pub method: &'a Method,
    /// Its path and query.
    pub target: &'a str,
}

/// The SHA-256 of the body a forwarded credential was signed for. Left in the request's
/// extensions when one is accepted; a handler that reads a body checks it ([`check_body`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedBody(pub [u8; 32]);

impl SignedBody {
    /// The digest of `body`.
    pub fn of(body: &[u8]) -> SignedBody {
        SignedBody(Sha256::digest(body).into())
    }
}

/// The MAC of a credential's `head` (its fields before the MAC) for `request`.
fn mac(key: &[u8], head: &str, request: Forwarded<'_>) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    // Each field but the last is free of '\n' (a header value cannot hold one, the head is
    // digits, words, hex and dots), so the input is unambiguous.
    let Forwarded {
        by,
        to,
        method,
        target,
    } = request;
    for part in [
        head,
        "\n",
        by,
        "\n",
        to,
        "\n",
        method.as_str(),
        "\n",
        target,
    ] {
        mac.update(part.as_bytes());
    }
    mac
}

/// The credential for forwarding `request` with `body` on `who`'s behalf at `now_ms` (Unix
/// milliseconds).
pub fn sign(
    key: &[u8],
    who: &Principal,
    request: Forwarded<'_>,
    body: &[u8],
    now_ms: u64,
) -> String {
    let head = format!(
        "{VERSION}.{now_ms}.{}.{}.{}",
        who.role,
        hex::encode(who.name.as_bytes()),
        hex::encode(SignedBody::of(body).0)
    );
    let tag = mac(key, &head, request).finalize().into_bytes();
    format!("{head}.{}", hex::encode(tag))
}

/// Who a forwarded credential `value` says the caller is, and the digest of the body it
/// was signed for, if it was made under `key` for `request` within [`CLOCK_WINDOW`] of
/// `now_ms`. The body is checked where it is read ([`check_body`]).
pub fn verify(
    key: &[u8],
    value: &str,
    request: Forwarded<'_>,
    now_ms: u64,
) -> Result<(Principal, SignedBody), GrantError> {
    if !forwardable(request.method, request.target) {
        return Err(GrantError::Route);
    }
    let (head, tag) = value.rsplit_once('.').ok_or(GrantError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| GrantError::Malformed)?;
    let fields: Vec<&str> = head.split('.').collect();
    let [VERSION, issued, role, name, body] = fields.as_slice() else {
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
    let mut digest = [0u8; 32];
    hex::decode_to_slice(body, &mut digest).map_err(|_| GrantError::Malformed)?;
    mac(key, head, request)
        .verify_slice(&tag)
        .map_err(|_| GrantError::Signature)?;
    if now_ms.abs_diff(issued) > CLOCK_WINDOW.as_millis() as u64 {
        return Err(GrantError::Clock);
    }
    let who = Principal {
        name: name.into(),
        role,
    };
    Ok((who, SignedBody(digest)))
}

/// 401 when `req` came with a forwarded credential signed for another body than `body`
/// (the bytes the handler acts on); any other request passes.
pub fn check_body(req: &actix_web::HttpRequest, body: &[u8]) -> Result<(), super::ApiError> {
    use actix_web::HttpMessage as _;
    match req.extensions().get::<SignedBody>() {
        Some(signed) if *signed != SignedBody::of(body) => {
            Err(super::ApiError::Unauthorized(GrantError::Body.reason()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = &[7; 32];
    const NOW: u64 = 1_796_000_000_000;
    const TARGET: &str = "/v1/sessions/s-1/interrupt";
    const BODY: &[u8] = br#"{"cancel_queued":true}"#;

    fn alice() -> Principal {
        Principal {
            name: "alice.ops@example".into(),
            role: Role::Approver,
        }
    }

    fn request<'a>(by: &'a str, method: &'a Method, target: &'a str) -> Forwarded<'a> {
        Forwarded {
            by,
            to: "inst-9",
            method,
            target,
        }
    }

    fn signed() -> String {
        sign(
            KEY,
            &alice(),
            request("inst-0", &Method::POST, TARGET),
            BODY,
            NOW,
        )
    }

    fn check(
        key: &[u8],
        value: &str,
        by: &str,
        method: &Method,
        target: &str,
        now: u64,
    ) -> Result<Principal, GrantError> {
        verify(key, value, request(by, method, target), now).map(|(who, _)| who)
    }

    #[test]
    fn a_credential_names_the_caller_its_role_and_body_for_its_own_request_only() {
        let (who, body) = verify(
            KEY,
            &signed(),
            request("inst-0", &Method::POST, TARGET),
            NOW + 1_000,
        )
        .expect("accepted");
        assert_eq!(
            (&*who.name, who.role),
            ("alice.ops@example", Role::Approver)
        );
        assert_eq!(body, SignedBody::of(BODY));
        assert_ne!(body, SignedBody::of(b"{}"));
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
                check(key, &signed(), by, &method, target, NOW),
                Err(GrantError::Signature),
                "{by} {method} {target}"
            );
        }
    }

    #[test]
    fn a_raised_role_another_name_or_another_body_breaks_the_signature() {
        let good = signed();
        let (head, tag) = good.rsplit_once('.').unwrap();
        let fields: Vec<&str> = head.split('.').collect();
        let with = |i: usize, v: &str| {
            let mut f = fields.clone();
            f[i] = v;
            format!("{}.{tag}", f.join("."))
        };
        let other_body = hex::encode(SignedBody::of(b"{}").0);
        for forged in [
            with(2, "admin"),
            with(3, &hex::encode("bob")),
            with(4, &other_body),
        ] {
            assert_eq!(
                check(KEY, &forged, "inst-0", &Method::POST, TARGET, NOW),
                Err(GrantError::Signature),
                "{forged}"
            );
        }
    }

    #[test]
    fn a_credential_outside_the_clock_window_is_refused() {
        let window = CLOCK_WINDOW.as_millis() as u64;
        for now in [NOW + window, NOW - window] {
            assert!(check(KEY, &signed(), "inst-0", &Method::POST, TARGET, now).is_ok());
        }
        for now in [NOW + window + 1, NOW - window - 1] {
            assert_eq!(
                check(KEY, &signed(), "inst-0", &Method::POST, TARGET, now),
                Err(GrantError::Clock)
            );
        }
    }

    #[test]
    fn malformed_credentials_are_refused_before_any_mac() {
        let body = hex::encode([0u8; 32]);
        for bad in [
            String::new(),
            "v1".into(),
            "v1.1.admin.616c696365.00".into(),
            format!("v2.1796000000000.approver.616c696365.{body}.00"),
            format!("v1.soon.approver.616c696365.{body}.00"),
            format!("v1.1796000000000.root.616c696365.{body}.00"),
            format!("v1.1796000000000.approver.zz.{body}.00"),
            "v1.1796000000000.approver.616c696365.abcd.00".into(),
            format!("v1.1796000000000.approver.616c696365.{body}.not-hex"),
            format!("v1.1796000000000.approver.616c696365.{body}.extra.00"),
        ] {
            assert_eq!(
                check(KEY, &bad, "inst-0", &Method::POST, TARGET, NOW),
                Err(GrantError::Malformed),
                "{bad:?}"
            );
        }
        assert!(check(KEY, &signed(), "inst-0", &Method::POST, TARGET, NOW).is_ok());
    }

    #[test]
    fn only_the_forwarded_routes_take_a_credential() {
        for (method, target) in [
            (Method::GET, "/v1/events?session_id=s-1"),
            (Method::GET, "/v1/events?after=3&session_id=s-1"),
            (Method::POST, "/v1/sessions/s-1/interrupt"),
            (Method::POST, "/v1/sessions/s-1/messages"),
            (Method::GET, "/v1/sessions/s-1/messages?limit=5"),
        ] {
            assert!(forwardable(&method, target), "{method} {target}");
        }
        for (method, target) in [
            (Method::GET, "/v1/events"),
            (Method::GET, "/v1/events?after=3"),
            (Method::GET, "/v1/events?session_id="),
            (Method::GET, "/v1/events?not_session_id=s-1"),
            (Method::POST, "/v1/events?session_id=s-1"),
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
        let forged = sign(KEY, &admin, request("inst-0", &Method::PUT, path), b"", NOW);
        assert_eq!(
            check(KEY, &forged, "inst-0", &Method::PUT, path, NOW),
            Err(GrantError::Route),
            "even a well-signed credential opens no other route"
        );
    }

    #[test]
    fn a_handler_refuses_a_body_the_credential_was_not_signed_for() {
        use actix_web::HttpMessage as _;
        let plain = actix_web::test::TestRequest::default().to_http_request();
        assert!(check_body(&plain, b"anything").is_ok(), "not forwarded");
        let forwarded = actix_web::test::TestRequest::default().to_http_request();
        forwarded.extensions_mut().insert(SignedBody::of(BODY));
        assert!(check_body(&forwarded, BODY).is_ok());
        assert!(matches!(
            check_body(&forwarded, b"{}"),
            Err(super::super::ApiError::Unauthorized(_))
        ));
    }
}
