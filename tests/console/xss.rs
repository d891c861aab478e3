//! Hostile tool inputs render as inert text: no element, no link, no script run.

use serde_json::{json, Value};

use crate::common::{Sess, APPROVER_TOKEN};
use crate::support::{Browser, DESKTOP};
use crate::{done, row, start};

/// Each payload, if it ever ran, leaves a mark in `window.__xss` and in `localStorage`
/// (which outlives navigations between the pages checked).
const SCRIPT: &str = "<script>window.__xss=2;localStorage.setItem('xss','script')</script>";
const IMG: &str = "<img src=x onerror=\"window.__xss=1;localStorage.setItem('xss','img')\">";
const LINK: &str = "javascript:window.__xss=3;localStorage.setItem('xss','link')";
const ANCHOR: &str =
    "<a href=\"javascript:window.__xss=4;localStorage.setItem('xss','anchor')\">click</a>";

fn prompts() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "x-bash",
            "Bash",
            json!({"command": format!("echo {SCRIPT} {IMG} {ANCHOR}"), "description": IMG}),
        ),
        (
            "x-fetch",
            "WebFetch",
            json!({"url": LINK, "prompt": format!("{SCRIPT}{IMG}")}),
        ),
        (
            "x-edit",
            "Edit",
            json!({"file_path": format!("/tmp/{IMG}.html"), "old_string": format!("<p>{SCRIPT}</p>"),
                   "new_string": format!("<p>{IMG}\n{ANCHOR}</p>")}),
        ),
        (
            "x-write",
            "Write",
            json!({"file_path": "/tmp/x.html", "content": format!("{SCRIPT}\n{IMG}\n{ANCHOR}")}),
        ),
    ]
}

/// The DOM under `scope` holds no element or link any payload could have made, and no
/// payload ran.
async fn assert_inert(b: &Browser, scope: &str, what: &str) {
    let found = b
        .js_with(
            "const s = document.querySelector(arguments[0]);\
             return {\
               scripts: s.querySelectorAll('script').length,\
               imgs: s.querySelectorAll('img').length,\
               handlers: [...s.querySelectorAll('*')].filter(e => [...e.attributes]\
                 .some(a => a.name.startsWith('on'))).length,\
               js_links: [...document.querySelectorAll('[href],[src],[action],[formaction]')]\
                 .filter(e => /^\\s*javascript:/i.test(e.getAttribute('href') || e.getAttribute('src')\
                   || e.getAttribute('action') || e.getAttribute('formaction') || '')).length,\
               xss: window.__xss === undefined ? null : window.__xss,\
               stored: localStorage.getItem('xss'),\
             };",
            vec![json!(scope)],
        )
        .await;
    assert_eq!(
        found,
        json!({"scripts":0,"imgs":0,"handlers":0,"js_links":0,"xss":null,"stored":null}),
        "{what}: a payload became markup or ran"
    );
}

#[actix_rt::test]
async fn hostile_inputs_render_inert() {
    let Some((turn, h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    for (id, tool, input) in prompts() {
        h.prompt("s1", id, tool, input).await;
    }
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    b.js("localStorage.removeItem('xss'); return null").await;
    for (id, _, _) in prompts() {
        b.find(&row(id)).await;
    }
    // The payload is shown as text.
    let summary = b.text(&format!("{} .summary", row("x-bash"))).await;
    assert!(summary.contains("<script>"), "shown as text: {summary}");
    assert_inert(&b, "#inbox", "inbox").await;
    for (id, _, _) in prompts() {
        b.goto(&format!("/ui/prompts/s1/{id}")).await;
        b.find(&format!("#prompt[data-request={id}]")).await;
        let text = b.text("#prompt").await;
        assert!(
            text.contains("<script>") || text.contains("javascript:"),
            "{id}: the payload is shown as text: {text}"
        );
        assert_inert(&b, "#prompt", id).await;
    }
    // The diff of the Edit prompt is made of text lines too.
    b.goto("/ui/prompts/s1/x-edit").await;
    b.find("#prompt .diff .diff-ins").await;
    assert!(b.text("#prompt .diff").await.contains("onerror="));
    assert_inert(&b, "#prompt", "x-edit diff").await;
    // The session page lists them too; back at the inbox, still nothing ran.
    b.goto("/ui/sessions/s1").await;
    b.find(&format!("#session {}", row("x-bash"))).await;
    assert_inert(&b, "#session", "session page").await;
    b.goto("/").await;
    b.find(&row("x-bash")).await;
    assert_inert(&b, "body", "inbox again").await;
    b.close().await;
    h.shutdown().await;
    done("hostile_inputs_render_inert", started);
}
