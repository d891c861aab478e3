//! At phone width (390 px) the inbox fits without horizontal scrolling and its answer
//! actions work.

use serde_json::json;

use crate::common::{allow_frame, Sess, APPROVER_TOKEN};
use crate::support::{Browser, PHONE};
use crate::{done, row, start, wait_answer};

/// Nothing sticks out sideways: the page does not scroll horizontally.
async fn assert_no_horizontal_scroll(b: &Browser, what: &str) {
    let dims = b
        .js("return {scroll: document.documentElement.scrollWidth, \
             body: document.body.scrollWidth, inner: window.innerWidth}")
        .await;
    assert_eq!(
        dims["inner"], PHONE.0,
        "{what}: the viewport is phone-wide: {dims}"
    );
    if dims["scroll"].as_u64() > dims["inner"].as_u64()
        || dims["body"].as_u64() > dims["inner"].as_u64()
    {
        // Name the outermost elements that stick out, for the failure message.
        let culprits = b
            .js("const w = window.innerWidth;\
                 const out = e => e.getBoundingClientRect().right > w + 0.5;\
                 return [...document.querySelectorAll('body *')]\
                   .filter(e => out(e) && !out(e.parentElement))\
                   .slice(0, 10)\
                   .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')\
                     + [...e.classList].map(c => '.' + c).join('')\
                     + ' (right ' + Math.round(e.getBoundingClientRect().right) + ' px, '\
                     + getComputedStyle(e).width + ' wide)');")
            .await;
        panic!("{what}: the page scrolls sideways: {dims}; sticking out: {culprits}");
    }
}

/// The element at `css` lies inside the viewport's width.
async fn assert_within_width(b: &Browser, css: &str) {
    let r = b
        .js_with(
            "const r = document.querySelector(arguments[0]).getBoundingClientRect();\
             return {left: r.left, right: r.right, width: r.width, inner: window.innerWidth};",
            vec![json!(css)],
        )
        .await;
    let (left, right, width, inner) = (
        r["left"].as_f64().unwrap_or(-1.0),
        r["right"].as_f64().unwrap_or(f64::MAX),
        r["width"].as_f64().unwrap_or(0.0),
        r["inner"].as_f64().unwrap_or(0.0),
    );
    assert!(
        left >= 0.0 && right <= inner && width > 0.0,
        "`{css}` is not within the {inner} px width: {r}"
    );
}

#[actix_rt::test]
async fn phone_width_inbox_answers_without_horizontal_scrolling() {
    let Some((turn, mut h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    // A long unbroken command and a long path: the usual way a row grows too wide.
    let long = format!("curl -fsSL https://example.invalid/{}", "a".repeat(300));
    h.prompt("s1", "ph-allow", "Bash", json!({"command": long}))
        .await;
    h.prompt(
        "s1",
        "ph-deny",
        "Edit",
        json!({"file_path": format!("/srv/{}/main.rs", "deeply/nested".repeat(20)),
               "old_string":"a","new_string":"b"}),
    )
    .await;
    let b = Browser::open(&turn, &h.api, PHONE).await;
    b.sign_in(APPROVER_TOKEN).await;
    for id in ["ph-allow", "ph-deny"] {
        b.find(&row(id)).await;
    }
    b.screenshot("inbox-phone").await;
    assert_no_horizontal_scroll(&b, "inbox").await;
    for id in ["ph-allow", "ph-deny"] {
        for control in ["button.allow", "button.deny"] {
            assert_within_width(&b, &format!("{} {control}", row(id))).await;
        }
    }
    // The prompt page of the long command fits too.
    b.goto("/ui/prompts/s1/ph-allow").await;
    b.find("#prompt[data-request=ph-allow]").await;
    assert_no_horizontal_scroll(&b, "prompt page").await;
    for control in ["button#allow", "button#deny"] {
        assert_within_width(&b, control).await;
    }
    // Allow from the inbox.
    b.goto("/").await;
    b.click(&format!("{} button.allow", row("ph-allow"))).await;
    assert_eq!(
        wait_answer(&mut h, "s1", "ph-allow").await,
        allow_frame("ph-allow", json!({"command": long}))
    );
    // Deny from the inbox: the dialog fits too.
    b.click(&format!("{} button.deny", row("ph-deny"))).await;
    b.find("dialog#deny-dialog[open]").await;
    assert_no_horizontal_scroll(&b, "deny dialog").await;
    for control in [
        "dialog#deny-dialog",
        "textarea#deny-message",
        "button#deny-confirm",
    ] {
        assert_within_width(&b, control).await;
    }
    b.type_into("textarea#deny-message", "too wide a change")
        .await;
    b.click("button#deny-confirm").await;
    let frame = wait_answer(&mut h, "s1", "ph-deny").await;
    assert_eq!(frame["response"]["response"]["behavior"], "deny", "{frame}");
    assert_eq!(
        frame["response"]["response"]["message"], "too wide a change",
        "{frame}"
    );
    b.until(
        "both rows to leave",
        "document.querySelectorAll('#inbox .prompt-row').length === 0",
    )
    .await;
    assert_no_horizontal_scroll(&b, "empty inbox").await;
    b.close().await;
    h.shutdown().await;
    done(
        "phone_width_inbox_answers_without_horizontal_scrolling",
        started,
    );
}
