//! Signing in and out: the cookie, its flags, and that signing out kills it server-side.

use crate::common::{Sess, APPROVER_TOKEN};
use crate::support::{Browser, DESKTOP};
use crate::{done, start};

/// The console's session cookie.
const COOKIE: &str = "ccr_console";

#[actix_rt::test]
async fn sign_in() {
    let Some((turn, h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    // Not signed in: `/` sends the browser to the sign-in page.
    b.goto("/").await;
    b.find("form#sign-in").await;
    assert_eq!(b.path().await, "/ui/sign-in");
    // A bad token: an error on the page (a 401), no cookie.
    b.type_into("input#token[name=token][type=password]", "not-a-token")
        .await;
    b.click("button#sign-in-submit").await;
    b.find("#sign-in-error").await;
    assert_eq!(b.visible("#sign-in-error").await, 1);
    assert!(
        b.c.get_named_cookie(COOKIE).await.is_err(),
        "no cookie after a bad token"
    );
    // (From the page's origin: a sign-in POST from elsewhere is refused before the token.)
    let resp = awc::Client::new()
        .post(format!("{}/ui/sign-in", h.api))
        .insert_header(("origin", h.api.as_str()))
        .send_form(&[("token", "not-a-token")])
        .await
        .expect("POST /ui/sign-in");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = awc::Client::new()
        .post(format!("{}/ui/sign-in", h.api))
        .send_form(&[("token", APPROVER_TOKEN)])
        .await
        .expect("POST /ui/sign-in");
    assert_eq!(
        resp.status().as_u16(),
        403,
        "a sign-in without the page's Origin is refused, even with a good token"
    );
    // The right token: the inbox, with the role on <body>, and the nav.
    b.sign_in(APPROVER_TOKEN).await;
    b.find("body[data-role=approver]").await;
    b.find("#inbox").await;
    assert_eq!(b.path().await, "/");
    for id in ["nav-inbox", "nav-sessions", "nav-audit", "nav-policy"] {
        b.find(&format!("nav a#{id}")).await;
    }
    b.find("form#sign-out button#sign-out-submit").await;
    // The cookie: HttpOnly (scripts cannot read it), SameSite=Strict, whole site.
    let cookie =
        b.c.get_named_cookie(COOKIE)
            .await
            .expect("the console cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict"),
        "{cookie:?}"
    );
    assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
    let from_js = b.js("return document.cookie").await;
    assert!(
        !from_js.as_str().unwrap_or_default().contains(COOKIE),
        "HttpOnly: {from_js}"
    );
    b.close().await;
    h.shutdown().await;
    done("sign_in", started);
}

#[actix_rt::test]
async fn sign_out_invalidates_the_cookie() {
    let Some((turn, h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    let value =
        b.c.get_named_cookie(COOKIE)
            .await
            .expect("the console cookie")
            .value()
            .to_owned();
    let http = awc::Client::builder().disable_redirects().finish();
    let with_cookie = |path: &str| {
        http.get(format!("{}{path}", h.api))
            .insert_header(("cookie", format!("{COOKIE}={value}")))
    };
    // The cookie works on its own, from outside the browser...
    let resp = with_cookie("/v1/permissions").send().await.expect("GET");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "the cookie authenticates the API"
    );
    // ...but a state change it authenticates needs the page's Origin.
    let mut resp = http
        .post(format!("{}/v1/sessions/s1/interrupt", h.api))
        .insert_header(("cookie", format!("{COOKIE}={value}")))
        .insert_header(("origin", "http://evil.example"))
        .send()
        .await
        .expect("POST");
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(
        (resp.status().as_u16(), body["error"]["code"].as_str()),
        (403, Some("cross_origin")),
        "{body}"
    );
    b.click("form#sign-out button#sign-out-submit").await;
    b.find("form#sign-in").await;
    assert_eq!(b.path().await, "/ui/sign-in");
    assert!(
        b.c.get_named_cookie(COOKIE).await.is_err(),
        "the browser's cookie is cleared"
    );
    // The old value is dead server-side, not only cleared in this browser.
    let resp = with_cookie("/v1/permissions").send().await.expect("GET");
    assert_eq!(
        resp.status().as_u16(),
        401,
        "a signed-out cookie is refused"
    );
    let resp = with_cookie("/").send().await.expect("GET /");
    assert_eq!(
        resp.status().as_u16(),
        303,
        "the console sends it to sign in"
    );
    // And the browser, going back, is asked to sign in again.
    b.goto("/").await;
    b.find("form#sign-in").await;
    assert_eq!(b.path().await, "/ui/sign-in");
    b.close().await;
    h.shutdown().await;
    done("sign_out_invalidates_the_cookie", started);
}
