//! Requests an instance forwards to a session's owner on a console sign-in's behalf: the
//! sign-in lives in the memory of the instance that made it, so the owner learns who the
//! caller is from the credential the forwarding instance signs with the cluster's key.

use ccr_sim::SimEvent;
use serde_json::json;

use super::{owned_by, settled, Cluster};
use crate::common::{APPROVER_TOKEN, VIEWER_TOKEN};
use crate::support;

/// A client with no credential of its own (a browser's, before it signs in).
fn browser() -> awc::Client {
    awc::Client::builder()
        .disable_timeout()
        .disable_redirects()
        .finish()
}

/// Sign in to instance `api`'s console with `token`: the `ccr_console` cookie's value.
async fn sign_in(api: &str, token: &str) -> String {
    let line = support::console_sign_in(&browser(), api, token).await;
    line.strip_prefix("ccr_console=")
        .and_then(|r| r.split(';').next())
        .expect("ccr_console cookie")
        .to_owned()
}

/// `POST api path` as the console does it: the cookie and the console's own origin.
async fn post_as_console(
    api: &str,
    path: &str,
    cookie: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut resp = browser()
        .post(format!("{api}{path}"))
        .insert_header(("cookie", format!("ccr_console={cookie}")))
        .insert_header(("origin", api))
        .send_json(&body)
        .await
        .expect("POST");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

/// The cluster's forwarding key, as the instances stored it.
fn cluster_key(c: &Cluster) -> Vec<u8> {
    let hex = c.sql("SELECT encode(key, 'hex') FROM ccr_cluster_keys WHERE name = 'forward'");
    assert_eq!(hex.len(), 1, "one key: {hex:?}");
    hex::decode(&hex[0]).expect("hex")
}

/// A console signed in on an instance that does not run a session interrupts it, sends it
/// a message and follows its SDK messages live, through the owner; with the role it
/// signed in with, no more (a viewer's interrupt is 403).
#[actix_rt::test]
async fn a_console_on_a_non_owner_interrupts_messages_and_follows_the_owner_s_session() {
    let Some((c, _, owners)) = settled(2, 4).await else {
        return;
    };
    let session = owned_by(&owners, "inst-0");
    let api = c.api(1);
    let cookie = sign_in(&api, APPROVER_TOKEN).await;
    let mut sim_events = c.sim.subscribe();

    let follower = awc::Client::builder()
        .disable_timeout()
        .add_default_header(("cookie", format!("ccr_console={cookie}")))
        .finish();
    let mut stream =
        support::open_sse_with(&follower, &api, &format!("session_id={session}")).await;
    assert!(c.sim.push(
        &session,
        json!({"type": "assistant", "marker": "to-the-console"})
    ));
    let mut seen = vec![];
    stream
        .wait_for(&mut seen, |e| {
            e.event == "sdk_message" && e.data["message"]["marker"] == "to-the-console"
        })
        .await;

    let path = format!("/v1/sessions/{session}/messages");
    let (status, body) = post_as_console(&api, &path, &cookie, json!({"content": "hello"})).await;
    assert_eq!(status, 200, "the owner's answer: {body}");
    let posted = support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Posted { session: s, .. } if *s == session),
    )
    .await;
    let SimEvent::Posted { body: posted, .. } = posted else {
        unreachable!()
    };
    assert_eq!(posted["events"][0]["uuid"], body["uuid"], "{posted}");

    let path = format!("/v1/sessions/{session}/interrupt");
    let (status, body) = post_as_console(&api, &path, &cookie, json!({})).await;
    assert_eq!(status, 200, "the owner's answer: {body}");
    support::wait_sim(&mut sim_events, |e| {
        matches!(e, SimEvent::Received { session: s, frame } if *s == session
            && frame["request"]["subtype"] == "interrupt")
    })
    .await;

    let viewer = sign_in(&api, VIEWER_TOKEN).await;
    let (status, body) = post_as_console(&api, &path, &viewer, json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
}

/// The owner takes a forwarded credential only as the cluster's key signed it, for the
/// request it was signed for, and only on a route that is forwarded: even a well-signed
/// admin credential opens nothing else.
#[actix_rt::test]
async fn an_owner_takes_a_forwarded_credential_only_as_signed_and_only_where_forwarded() {
    use ccr_supervisor::api::auth::Principal;
    use ccr_supervisor::api::grant;
    use ccr_supervisor::config::Role;

    let Some((c, _, owners)) = settled(2, 2).await else {
        return;
    };
    let session = owned_by(&owners, "inst-0");
    let owner = c.api(0);
    let key = cluster_key(&c);
    let admin = Principal {
        name: "forged".into(),
        role: Role::Admin,
    };
    // Every request here is a POST of `{}`.
    let send = |path: String, credential: String| {
        let owner = owner.clone();
        async move {
            let mut resp = browser()
                .post(format!("{owner}{path}"))
                .insert_header(("x-ccr-forwarded-by", "inst-1"))
                .insert_header(("x-ccr-forwarded-auth", credential))
                .content_type("application/json")
                .send_body("{}")
                .await
                .expect("request");
            let bytes = resp.body().await.expect("body");
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            (resp.status().as_u16(), body)
        }
    };
    let post = awc::http::Method::POST;
    let sign_for = |to: &str, key: &[u8], who: &Principal, path: &str, body: &str, at: u64| {
        let request = grant::Forwarded {
            by: "inst-1",
            to,
            method: &post,
            target: path,
        };
        grant::sign(key, who, request, body.as_bytes(), at)
    };
    let sign = |key: &[u8], who: &Principal, path: &str, body: &str, at: u64| {
        sign_for("inst-0", key, who, path, body, at)
    };
    let interrupt = format!("/v1/sessions/{session}/interrupt");
    let now = grant::now_ms();

    let good = sign(&key, &admin, &interrupt, "{}", now);
    let (status, body) = send(interrupt.clone(), good).await;
    assert_eq!(status, 200, "a credential of the cluster's key: {body}");

    let viewer = Principal {
        name: "watcher".into(),
        role: Role::Viewer,
    };
    let as_viewer = sign(&key, &viewer, &interrupt, "{}", now);
    let (status, body) = send(interrupt.clone(), as_viewer.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "the role signed, no more: {body}"
    );
    // A forwarding instance also passes a token's Authorization on (for an owner of an
    // older build); the credential is what counts.
    let mut resp = browser()
        .post(format!("{owner}{interrupt}"))
        .insert_header(("x-ccr-forwarded-by", "inst-1"))
        .insert_header(("x-ccr-forwarded-auth", as_viewer))
        .insert_header(("authorization", format!("Bearer {}", support::ADMIN_TOKEN)))
        .content_type("application/json")
        .send_body("{}")
        .await
        .expect("request");
    let _ = resp.body().await;
    assert_eq!(
        resp.status().as_u16(),
        403,
        "judged by the credential alone"
    );

    let refused = [
        (
            "another key",
            interrupt.clone(),
            sign(&[0; 32], &admin, &interrupt, "{}", now),
        ),
        (
            "another request's",
            interrupt.clone(),
            sign(&key, &admin, "/v1/sessions/other/interrupt", "{}", now),
        ),
        (
            "another instance's",
            interrupt.clone(),
            sign_for("inst-2", &key, &admin, &interrupt, "{}", now),
        ),
        (
            "another body's",
            interrupt.clone(),
            sign(&key, &admin, &interrupt, r#"{"cancel_queued":true}"#, now),
        ),
        (
            "an hour old",
            interrupt.clone(),
            sign(&key, &admin, &interrupt, "{}", now - 3_600_000),
        ),
        (
            "a route that is never forwarded",
            "/v1/sessions".to_owned(),
            sign(&key, &admin, "/v1/sessions", "{}", now),
        ),
    ];
    for (what, path, credential) in refused {
        let (status, body) = send(path, credential).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{what}: {body}"
        );
    }
}

/// The next text message of a WebSocket reader, as JSON; `None` when the socket closes.
async fn next_text<S>(ws: &mut S) -> Option<serde_json::Value>
where
    S: futures_util::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>> + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match ws.next().await {
            Some(Ok(awc::ws::Frame::Text(t))) => {
                return Some(serde_json::from_slice(&t).expect("JSON"))
            }
            Some(Ok(awc::ws::Frame::Close(_))) | None => return None,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("WebSocket broke: {e}"),
        }
    }
}

/// One session's WebSocket stream asked of an instance that does not run the session is
/// its owner's, relayed: its SDK messages arrive, with the owner's `seq`, and the socket
/// closes when the owner stops running the session (here: it shuts down and hands it
/// over), so that the reader reconnects and finds the new owner.
#[actix_rt::test]
async fn a_session_s_websocket_asked_of_a_non_owner_is_relayed_from_its_owner() {
    let Some((mut c, _, owners)) = settled(2, 4).await else {
        return;
    };
    let session = owned_by(&owners, "inst-0");
    let query = format!("session_id={session}");
    let (resp, mut relayed) = awc::Client::new()
        .ws(format!("{}/v1/events?{query}", c.api(1)))
        .bearer_auth(support::ADMIN_TOKEN)
        .connect()
        .await
        .expect("a WebSocket from the non-owner");
    assert_eq!(resp.status().as_u16(), 101);
    let direct_client = awc::Client::builder()
        .disable_timeout()
        .add_default_header(("authorization", format!("Bearer {}", support::ADMIN_TOKEN)))
        .finish();
    let mut direct = support::open_sse_with(&direct_client, &c.api(0), &query).await;
    assert!(c.sim.push(
        &session,
        json!({"type": "assistant", "marker": "over-the-socket"})
    ));
    let got = tokio::time::timeout(support::WAIT, async {
        loop {
            let e = next_text(&mut relayed)
                .await
                .expect("the socket stays open");
            if e["message"]["marker"] == "over-the-socket" {
                break e;
            }
        }
    })
    .await
    .expect("the relayed SDK message");
    let mut seen = vec![];
    let want = direct
        .wait_for(&mut seen, |e| {
            e.data["message"]["marker"] == "over-the-socket"
        })
        .await;
    assert_eq!(got["session_id"], session.as_str());
    assert_eq!(got["seq"].as_u64(), want.id, "the owner's seq: {got}");

    let owner = c.instances[0].take().expect("inst-0");
    owner.signal(libc::SIGTERM);
    let closed = tokio::time::timeout(super::SETTLE, async {
        while next_text(&mut relayed).await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the relayed socket closed with the owner's stream"
    );
    drop(owner);
}
