//! The console's sign-in: an operator token exchanged once for an opaque session cookie,
//! and the same-origin check every state-changing request signed in by that cookie passes.
//!
//! The cookie value is 32 random bytes (hex). The store keeps only its SHA-256 digest, so
//! neither a memory dump nor `Debug` output holds a usable cookie, and it is bounded by
//! count ([`ConsoleSessions::new`]'s `max`; the oldest sign-in is forgotten first) and by
//! lifetime (a sign-in ends `lifetime` after it began, whatever the activity). Sign-ins
//! live in memory only: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::{header, Method};
use actix_web::HttpRequest;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{ApiError, Principal};
use crate::config::MAX_CONSOLE_SESSION_LIFETIME;

/// Name of the console's session cookie.
pub const COOKIE: &str = "ccr_console";

/// One signed-in browser.
#[derive(Debug, Clone)]
struct SignIn {
    principal: Principal,
    expires: Instant,
}

/// The console's signed-in browsers, keyed by the digest of their cookie.
pub struct ConsoleSessions {
    lifetime: Duration,
    max: usize,
    by_digest: Mutex<HashMap<[u8; 32], SignIn>>,
}

impl std::fmt::Debug for ConsoleSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSessions")
            .field("lifetime", &self.lifetime)
            .field("max", &self.max)
            .field("signed_in", &self.by_digest.lock().len())
            .finish()
    }
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl ConsoleSessions {
    /// A store whose sign-ins last `lifetime` (at most [`MAX_CONSOLE_SESSION_LIFETIME`]), at
    /// most `max` at once (at least one).
    pub fn new(lifetime: Duration, max: usize) -> Arc<Self> {
        Arc::new(Self {
            lifetime: lifetime.min(MAX_CONSOLE_SESSION_LIFETIME),
            max: max.max(1),
            by_digest: Mutex::new(HashMap::new()),
        })
    }

    /// How long a sign-in lasts (the cookie's `Max-Age`).
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Sign `principal` in; the returned value is the cookie, never stored as such.
    pub fn sign_in(&self, principal: Principal) -> String {
        self.sign_in_at(principal, Instant::now())
    }

    fn sign_in_at(&self, principal: Principal, now: Instant) -> String {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let cookie = hex::encode(raw);
        let mut map = self.by_digest.lock();
        map.retain(|_, s| s.expires > now);
        while map.len() >= self.max {
            // Full of live sign-ins: the one that would end first goes.
            let oldest = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        // Never `now + lifetime`: that panics past what an Instant holds. A sign-in whose
        // end cannot be told ends at once (the cookie is refused) rather than never.
        let expires = now.checked_add(self.lifetime).unwrap_or(now);
        map.insert(digest(&cookie), SignIn { principal, expires });
        cookie
    }

    /// Who a cookie signs in, unless it is unknown, signed out or expired.
    pub fn principal(&self, cookie: &str) -> Option<Principal> {
        self.principal_at(cookie, Instant::now())
    }

    fn principal_at(&self, cookie: &str, now: Instant) -> Option<Principal> {
        let key = digest(cookie);
        let mut map = self.by_digest.lock();
        match map.get(&key) {
            Some(s) if s.expires > now => Some(s.principal.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Forget a cookie (sign-out); later requests with it are 401.
    pub fn sign_out(&self, cookie: &str) {
        self.by_digest.lock().remove(&digest(cookie));
    }

    /// Sign out every browser whose principal `keep` refuses (a reload removed its token or
    /// changed its role or secret); how many were signed out.
    pub fn retain(&self, keep: impl Fn(&Principal) -> bool) -> usize {
        let mut map = self.by_digest.lock();
        let before = map.len();
        map.retain(|_, s| keep(&s.principal));
        before - map.len()
    }

    /// Number of live sign-ins (expired ones are dropped first).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        let mut map = self.by_digest.lock();
        map.retain(|_, s| s.expires > now);
        map.len()
    }

    /// True when nobody is signed in.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The console cookie a request carries, if any.
pub fn presented(req: &HttpRequest) -> Option<String> {
    req.cookie(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether `method` can change state (anything but GET, HEAD and OPTIONS).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Cross-site request forgery check for a request authenticated by the cookie: its
/// `Origin` must be this service's own (the scheme and `Host` it was reached at, or
/// `[console] public_url`'s origin). SameSite=Strict already keeps the cookie off
/// cross-site requests; this is the second lock the issue asks for.
pub fn check_origin(req: &HttpRequest, public_origin: Option<&str>) -> Result<(), ApiError> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::CrossOrigin(
            "a request signed in by the console cookie must carry an Origin header",
        ))?;
    let info = req.connection_info();
    let own = format!("{}://{}", info.scheme(), info.host());
    if same_origin(origin, &own) || public_origin.is_some_and(|p| same_origin(origin, p)) {
        Ok(())
    } else {
        Err(ApiError::CrossOrigin(
            "the request came from another origin than the console's",
        ))
    }
}

/// Origins compare as ASCII case-insensitive `scheme://host[:port]`, without a trailing `/`.
fn same_origin(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use actix_web::test::TestRequest;

    fn alice() -> Principal {
        Principal {
            name: Arc::from("alice"),
            role: Role::Approver,
        }
    }

    #[test]
    fn a_cookie_signs_in_until_it_expires_or_signs_out() {
        let store = ConsoleSessions::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let cookie = store.sign_in_at(alice(), t0);
        assert_eq!(cookie.len(), 64);
        assert_eq!(
            store.principal_at(&cookie, t0).map(|p| p.name),
            Some(Arc::from("alice"))
        );
        assert!(store.principal_at("nope", t0).is_none());
        assert!(store
            .principal_at(&cookie, t0 + Duration::from_secs(61))
            .is_none());
        let again = store.sign_in_at(alice(), t0);
        assert_ne!(again, cookie, "every sign-in gets a fresh cookie");
        store.sign_out(&again);
        assert!(store.principal_at(&again, t0).is_none());
    }

    #[test]
    fn a_lifetime_past_what_an_instant_holds_never_panics() {
        let store = ConsoleSessions::new(Duration::MAX, 10);
        let cookie = store.sign_in(alice());
        assert!(store.principal(&cookie).is_some());
    }

    #[test]
    fn the_store_is_bounded_and_forgets_the_oldest() {
        let store = ConsoleSessions::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        let first = store.sign_in_at(alice(), t0);
        let second = store.sign_in_at(alice(), t0 + Duration::from_secs(1));
        let third = store.sign_in_at(alice(), t0 + Duration::from_secs(2));
        let now = t0 + Duration::from_secs(3);
        assert!(store.principal_at(&first, now).is_none());
        assert!(store.principal_at(&second, now).is_some());
        assert!(store.principal_at(&third, now).is_some());
    }

    #[test]
    fn retain_signs_out_the_refused_principals_only() {
        let store = ConsoleSessions::new(Duration::from_secs(60), 10);
        let kept = store.sign_in(alice());
        let bob = Principal {
            name: Arc::from("bob"),
            role: Role::Viewer,
        };
        let gone = store.sign_in(bob);
        assert_eq!(store.retain(|p| &*p.name != "bob"), 1);
        assert!(store.principal(&kept).is_some());
        assert!(store.principal(&gone).is_none());
    }

    #[test]
    fn debug_output_holds_no_cookie() {
        let store = ConsoleSessions::new(Duration::from_secs(60), 2);
        let cookie = store.sign_in(alice());
        let shown = format!("{store:?}");
        assert!(!shown.contains(&cookie), "{shown}");
        assert!(!shown.contains(&hex::encode(digest(&cookie))), "{shown}");
    }

    #[test]
    fn origin_must_be_the_services_own() {
        let req = |origin: Option<&str>| {
            let mut r = TestRequest::post().insert_header(("host", "127.0.0.1:8700"));
            if let Some(o) = origin {
                r = r.insert_header(("origin", o));
            }
            r.to_http_request()
        };
        assert!(check_origin(&req(Some("http://127.0.0.1:8700")), None).is_ok());
        assert!(check_origin(&req(Some("HTTP://127.0.0.1:8700/")), None).is_ok());
        for bad in [
            None,
            Some("http://evil.example"),
            Some("null"),
            Some("http://127.0.0.1:8701"),
            Some("https://127.0.0.1:8700"),
        ] {
            assert!(
                matches!(check_origin(&req(bad), None), Err(ApiError::CrossOrigin(_))),
                "{bad:?}"
            );
        }
        let behind_proxy = req(Some("https://ccr.example.com"));
        assert!(check_origin(&behind_proxy, Some("https://ccr.example.com")).is_ok());
    }

    #[test]
    fn safe_methods_do_not_change_state() {
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        assert!(changes_state(&Method::POST));
        assert!(changes_state(&Method::DELETE));
    }
}
