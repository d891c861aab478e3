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
    fn redact_removes_secret() {
        assert_eq!(
            redact("bad header Bearer sk-1".into(), "sk-1"),
            "bad header Bearer <redacted>"
        );
        assert_eq!(redact("fine".into(), ""), "fine");
    }
}
