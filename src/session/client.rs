//! The per-thread awc client and the CCR endpoint URLs.
//!
//! `awc::Client` is `!Send`: each session arbiter thread builds one and shares
//! it with every session on that thread. The connector's default pool limit
//! (100) would cap open sockets, so it is lifted; HTTP/1.1 is forced because
//! WebSocket upgrades fail over HTTP/2. Its TCP connector is ours ([`Dialer`]): the
//! `connect()` call on the connect thread, from `[ccr] source_addresses` in turn.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use awc::http::uri::Authority;
use awc::http::Uri;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::connector::Dialer;

/// Characters escaped in path segments and query values.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What a thread's client is built for: the connect timeout and the source addresses.
type ClientKey = (Duration, Arc<[IpAddr]>);

thread_local! {
    static CLIENT: RefCell<Option<(ClientKey, awc::Client)>> = const { RefCell::new(None) };
    /// The authority (host and port) this thread's sessions last connected to, shared by
    /// their connections ([`subscribe_uri`]).
    static AUTHORITY: RefCell<Option<Authority>> = const { RefCell::new(None) };
}

/// Install the rustls crypto provider once per process (needed before the first TLS connector).
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The awc client of the current thread, built on first use (and again when the
/// settings differ, as they may in tests).
pub fn thread_client(connect_timeout: Duration, sources: &Arc<[IpAddr]>) -> awc::Client {
    CLIENT.with(|cell| {
        let mut slot = cell.borrow_mut();
        match &*slot {
            Some(((t, s), client)) if *t == connect_timeout && s == sources => client.clone(),
            _ => {
                install_crypto_provider();
                let connector = awc::Connector::new()
                    .connector(Dialer::new(sources.clone()))
                    .limit(0)
                    .timeout(connect_timeout)
                    .max_http_version(awc::http::Version::HTTP_11);
                let client = awc::Client::builder()
                    .connector(connector)
                    .max_http_version(awc::http::Version::HTTP_11)
                    .timeout(connect_timeout)
                    .finish();
                *slot = Some(((connect_timeout, sources.clone()), client.clone()));
                client
            }
        }
    })
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// `{base}/v1/sessions/ws/{id}/subscribe?organization_uuid=..`, with `http`→`ws`, `https`→`wss`.
pub fn subscribe_url(base: &str, session_id: &str, org_uuid: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!(
        "{ws_base}/v1/sessions/ws/{}/subscribe?organization_uuid={}",
        encode(session_id),
        encode(org_uuid)
    )
}

/// `url` (a [`subscribe_url`]) as the `Uri` to connect to, its authority shared with this
/// thread's other sessions that connect to the same host and port.
///
/// awc keeps a connection's authority (its pool key) for as long as the socket lives, and a
/// `Uri` parsed from a string shares one allocation among all of its parts: each idle
/// session kept its whole URL alive (180 bytes in the benchmark) for the authority alone.
pub fn subscribe_uri(url: &str) -> Result<Uri, String> {
    let invalid = |e: &dyn std::fmt::Display| format!("invalid URL {url}: {e}");
    let mut parts = Uri::try_from(url).map_err(|e| invalid(&e))?.into_parts();
    if let Some(parsed) = parts.authority.take() {
        parts.authority = Some(AUTHORITY.with_borrow_mut(|cached| match cached {
            Some(shared) if shared.as_str() == parsed.as_str() => shared.clone(),
            _ => {
                // Its own allocation, of the authority's size.
                let own = Authority::try_from(parsed.as_str()).unwrap_or(parsed);
                *cached = Some(own.clone());
                own
            }
        }));
    }
    Uri::from_parts(parts).map_err(|e| invalid(&e))
}

/// `{base}/v1/sessions/{id}/events`.
pub fn events_url(base: &str, session_id: &str) -> String {
    format!(
        "{}/v1/sessions/{}/events",
        base.trim_end_matches('/'),
        encode(session_id)
    )
}

/// Remove every occurrence of `secret` from an error message.
pub fn redact(message: String, secret: &str) -> String {
    if secret.is_empty() || !message.contains(secret) {
        message
    } else {
        message.replace(secret, "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_protocol() {
        assert_eq!(
            subscribe_url("https://api.example.com/", "sess_1", "org-1"),
            "wss://api.example.com/v1/sessions/ws/sess_1/subscribe?organization_uuid=org-1"
        );
        assert_eq!(
            subscribe_url("http://127.0.0.1:9", "a b/c", "o&x=1"),
            "ws://127.0.0.1:9/v1/sessions/ws/a%20b%2Fc/subscribe?organization_uuid=o%26x%3D1"
        );
        assert_eq!(
            events_url("http://h:1/", "s"),
            "http://h:1/v1/sessions/s/events"
        );
    }

    #[test]
    fn a_subscribe_uri_shares_its_authority_not_the_url_s_allocation() {
        let url = |id| subscribe_url("http://127.0.0.1:9", id, "org-1");
        let (a, b) = (url("a"), url("b"));
        let (ua, ub) = (subscribe_uri(&a).unwrap(), subscribe_uri(&b).unwrap());
        assert_eq!(ua.to_string(), a);
        assert_eq!(ub.to_string(), b);
        let at = |u: &Uri| u.authority().unwrap().as_str().as_ptr();
        assert_eq!(at(&ua), at(&ub), "one authority for the thread's sessions");
        // Parsed from one string, the authority would sit right before the path and query
        // in that string's buffer ("127.0.0.1:9" is 11 bytes).
        for u in [&ua, &ub] {
            let path = u.path_and_query().unwrap().as_str().as_ptr();
            assert_ne!(at(u), path.wrapping_sub(11), "not in the URL's own buffer");
        }
        let other = subscribe_uri(&subscribe_url("http://127.0.0.2:9", "a", "o")).unwrap();
        assert_eq!(other.authority().unwrap().as_str(), "127.0.0.2:9");
        assert_ne!(at(&other), at(&ua));
        assert!(subscribe_uri("ws://bad host/x")
            .unwrap_err()
            .starts_with("invalid URL"));
    }

    #[test]
    fn redact_removes_secret() {
        assert_eq!(
            redact("bad header Bearer sk-1".into(), "sk-1"),
            "bad header Bearer <redacted>"
        );
        assert_eq!(redact("fine".into(), ""), "fine");
    }
}
