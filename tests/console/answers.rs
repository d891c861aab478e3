//! Answers given from the page reach the session exactly once, byte for byte what the API
//! sends for the same decision.

use serde_json::{json, Value};

use crate::common::{allow_frame, Sess, APPROVER_TOKEN};
use crate::support::{Browser, DESKTOP};
use crate::{
    api_decide, assert_same_bytes_once, barrier, done, raw_answers, row, start, wait_answer,
};

/// An input whose bytes are easy to get wrong: escapes, non-ASCII, an emoji, markup, a float
/// that needs all 17 digits.
fn tricky_input() -> Value {
    json!({
        "command": "echo \"héllo\" 'wörld' 😀 \\n\t<b>&amp;</b> | tee /tmp/x",
        "timeout": 120000,
        "ratio": 1.0000000000000002,
        "description": "Print a greeting"
    })
}

/// Allow from an inbox row and from the prompt page.
#[actix_rt::test]
async fn allow_from_the_page_reaches_the_session_once_with_the_exact_bytes() {
    let Some((turn, mut h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    for id in ["ui-row", "ui-page", "api-twin"] {
        h.prompt("s1", id, "Bash", tricky_input()).await;
    }
    api_decide(&h, "s1", "api-twin", json!({"behavior":"allow"})).await;
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    // From the inbox row.
    b.click(&format!("{} button.allow", row("ui-row"))).await;
    b.until(
        "the allowed row to leave the inbox",
        "!document.querySelector('.prompt-row[data-request=\"ui-row\"]')",
    )
    .await;
    assert_eq!(
        wait_answer(&mut h, "s1", "ui-row").await,
        allow_frame("ui-row", tricky_input())
    );
    assert_same_bytes_once(&mut h, "s1", "ui-row", "api-twin").await;
    // From the prompt page, reached through the row's link.
    b.click(&format!("{} a.open", row("ui-page"))).await;
    b.find("#prompt[data-session=s1][data-request=ui-page]")
        .await;
    assert_eq!(b.path().await, "/ui/prompts/s1/ui-page");
    assert!(b.text("#prompt pre.command").await.contains("héllo"));
    b.click("button#allow").await;
    b.until(
        "the answer status",
        "(document.querySelector('#answer-status')?.textContent || '').includes('allowed')",
    )
    .await;
    assert_eq!(
        wait_answer(&mut h, "s1", "ui-page").await,
        allow_frame("ui-page", tricky_input())
    );
    assert_same_bytes_once(&mut h, "s1", "ui-page", "api-twin").await;
    b.close().await;
    h.shutdown().await;
    done(
        "allow_from_the_page_reaches_the_session_once_with_the_exact_bytes",
        started,
    );
}

/// Edit the input on the prompt page: invalid JSON sends nothing; valid JSON is sent as
/// `updatedInput`, exactly as the API sends it.
#[actix_rt::test]
async fn edited_allow() {
    let Some((turn, mut h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let input = json!({"command":"npm test","description":"Run the tests"});
    let edited = json!({"command":"npm test -- --ci","description":"Run the tests, CI mode"});
    for id in ["ui-edit", "api-edit"] {
        h.prompt("s1", id, "Bash", input.clone()).await;
    }
    api_decide(
        &h,
        "s1",
        "api-edit",
        json!({"behavior":"allow","updated_input":edited}),
    )
    .await;
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    b.goto("/ui/prompts/s1/ui-edit").await;
    b.find("#prompt[data-request=ui-edit]").await;
    b.click("button#edit").await;
    let area = b.find("textarea#edited-input").await;
    let prefilled = area.prop("value").await.expect("value").unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<Value>(&prefilled).ok(),
        Some(input.clone()),
        "prefilled with the input: {prefilled}"
    );
    assert!(prefilled.contains('\n'), "pretty-printed: {prefilled}");
    // Invalid JSON: an error on the page, nothing sent.
    area.clear().await.expect("clear");
    area.send_keys("{\"command\": \"npm test -- --ci\",")
        .await
        .expect("type");
    b.click("button#allow-edited").await;
    b.find("#edit-error").await;
    assert_eq!(b.visible("#edit-error").await, 1);
    barrier(&mut h, "s1").await;
    assert!(
        h.answers("s1", "ui-edit").is_empty(),
        "invalid JSON sent nothing"
    );
    let (_, pending) = h.get("/v1/permissions").await;
    assert!(
        pending["permissions"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["request_id"] == "ui-edit")),
        "still pending: {pending}"
    );
    // Valid JSON: sent as typed.
    area.clear().await.expect("clear");
    area.send_keys(&serde_json::to_string_pretty(&edited).unwrap())
        .await
        .expect("type");
    b.click("button#allow-edited").await;
    b.until(
        "the answer status",
        "(document.querySelector('#answer-status')?.textContent || '').includes('allowed')",
    )
    .await;
    let frame = wait_answer(&mut h, "s1", "ui-edit").await;
    assert_eq!(frame["response"]["response"]["behavior"], "allow");
    assert_eq!(frame["response"]["response"]["updatedInput"], edited);
    assert_same_bytes_once(&mut h, "s1", "ui-edit", "api-edit").await;
    b.close().await;
    h.shutdown().await;
    done("edited_allow", started);
}

/// Deny with a message from an inbox row (the dialog), and with interrupt from the prompt page.
#[actix_rt::test]
async fn deny_with_message() {
    let Some((turn, mut h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let input = json!({"command":"rm -rf build/"});
    for id in ["ui-deny", "api-deny", "ui-stop", "api-stop", "ui-cancel"] {
        h.prompt("s1", id, "Bash", input.clone()).await;
    }
    let message = "not on a Friday — use \"make clean\" <b>instead</b>";
    api_decide(
        &h,
        "s1",
        "api-deny",
        json!({"behavior":"deny","message":message}),
    )
    .await;
    api_decide(
        &h,
        "s1",
        "api-stop",
        json!({"behavior":"deny","message":"stop here","interrupt":true}),
    )
    .await;
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    // Cancel in the dialog sends nothing.
    b.click(&format!("{} button.deny", row("ui-cancel"))).await;
    b.find("dialog#deny-dialog[open]").await;
    b.click("button#deny-cancel").await;
    b.until(
        "the dialog to close",
        "!document.querySelector('dialog#deny-dialog').open",
    )
    .await;
    // Deny with a message from the row.
    b.click(&format!("{} button.deny", row("ui-deny"))).await;
    b.find("dialog#deny-dialog[open]").await;
    b.type_into("textarea#deny-message", message).await;
    b.click("button#deny-confirm").await;
    b.until(
        "the denied row to leave the inbox",
        "!document.querySelector('.prompt-row[data-request=\"ui-deny\"]')",
    )
    .await;
    assert_eq!(
        wait_answer(&mut h, "s1", "ui-deny").await,
        json!({"type":"control_response","response":{"subtype":"success","request_id":"ui-deny",
            "response":{"behavior":"deny","message":message,"toolUseID":"toolu_ui-deny",
            "decisionClassification":"user_reject"}}})
    );
    assert_same_bytes_once(&mut h, "s1", "ui-deny", "api-deny").await;
    // Deny with a message and interrupt from the prompt page.
    b.goto("/ui/prompts/s1/ui-stop").await;
    b.find("#prompt[data-request=ui-stop]").await;
    b.click("button#deny").await;
    b.find("dialog#deny-dialog[open]").await;
    b.type_into("textarea#deny-message", "stop here").await;
    b.click("input#deny-interrupt[type=checkbox]").await;
    b.click("button#deny-confirm").await;
    b.until(
        "the answer status",
        "(document.querySelector('#answer-status')?.textContent || '').includes('denied')",
    )
    .await;
    let frame = wait_answer(&mut h, "s1", "ui-stop").await;
    assert_eq!(frame["response"]["response"]["interrupt"], true, "{frame}");
    assert_same_bytes_once(&mut h, "s1", "ui-stop", "api-stop").await;
    assert!(
        h.answers("s1", "ui-cancel").is_empty(),
        "cancel sent nothing"
    );
    b.close().await;
    h.shutdown().await;
    done("deny_with_message", started);
}

/// The deny dialog opened for a second prompt while the first one's deny is still in flight:
/// the first finishing leaves the second's dialog whole, and confirming it denies the second.
#[actix_rt::test]
async fn deny_opened_while_another_deny_is_in_flight() {
    let Some((turn, mut h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let input = json!({"command":"rm -rf build/"});
    for id in ["deny-a", "deny-b"] {
        h.prompt("s1", id, "Bash", input.clone()).await;
    }
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    b.find(&row("deny-b")).await;
    // The page's deny of deny-a waits for `releaseA()` before it is sent. `aSettled` turns
    // true when the page has handled its answer: `settled` removes the row and then asks
    // the lists to refresh, in the same turn that ends the confirmation.
    b.js(r##"
        const real = window.fetch;
        let release;
        const held = new Promise((r) => { release = r; });
        window.releaseA = release;
        window.aAnswered = false;
        window.aSettled = false;
        window.fetch = async (url, init) => {
          if (!String(url).includes("/permissions/deny-a")) return real(url, init);
          await held;
          const resp = await real(url, init);
          window.aAnswered = true;
          return resp;
        };
        document.querySelector("#inbox").addEventListener("refresh", () => {
          if (window.aAnswered && !document.querySelector('.prompt-row[data-request="deny-a"]')) {
            window.aSettled = true;
          }
        });
        return true;
    "##)
        .await;
    b.click(&format!("{} button.deny", row("deny-a"))).await;
    b.find("dialog#deny-dialog[open]").await;
    b.type_into("textarea#deny-message", "not a").await;
    b.click("button#deny-confirm").await;
    b.until(
        "the dialog to close",
        "!document.querySelector('dialog#deny-dialog').open",
    )
    .await;
    // deny-a is in flight: open the dialog for deny-b, then let deny-a finish.
    b.click(&format!("{} button.deny", row("deny-b"))).await;
    b.find("dialog#deny-dialog[open]").await;
    b.type_into("textarea#deny-message", "not b either").await;
    b.js("window.releaseA(); return true").await;
    b.until("the page to handle deny-a's answer", "window.aSettled")
        .await;
    assert_eq!(
        b.js("return document.querySelector('dialog#deny-dialog').open")
            .await,
        true,
        "deny-b's dialog stays open"
    );
    b.click("button#deny-confirm").await;
    b.until(
        "deny-b's row to leave the inbox",
        "!document.querySelector('.prompt-row[data-request=\"deny-b\"]')",
    )
    .await;
    let a = wait_answer(&mut h, "s1", "deny-a").await;
    assert_eq!(a["response"]["response"]["message"], "not a", "{a}");
    let frame = wait_answer(&mut h, "s1", "deny-b").await;
    assert_eq!(frame["response"]["response"]["behavior"], "deny", "{frame}");
    assert_eq!(
        frame["response"]["response"]["message"], "not b either",
        "{frame}"
    );
    barrier(&mut h, "s1").await;
    assert_eq!(h.answers("s1", "deny-a").len(), 1);
    assert_eq!(h.answers("s1", "deny-b").len(), 1);
    b.close().await;
    h.shutdown().await;
    done("deny_opened_while_another_deny_is_in_flight", started);
}

/// An edited allow sends the editor's text as it is: an integer JavaScript cannot hold
/// exactly (above 2^53) reaches the session unchanged when the operator did not touch it.
#[actix_rt::test]
async fn edited_allow_keeps_integers_above_2_pow_53() {
    let Some((turn, mut h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let input: Value = serde_json::from_str(
        r#"{"command":"kill 1","id":9007199254740993,"max":18446744073709551615,"min":-9223372036854775807}"#,
    )
    .expect("json");
    h.prompt("s1", "big-ints", "Bash", input.clone()).await;
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    b.goto("/ui/prompts/s1/big-ints").await;
    b.find("#prompt[data-request=big-ints]").await;
    b.click("button#edit").await;
    b.find("textarea#edited-input").await;
    b.click("button#allow-edited").await;
    b.until(
        "the answer status",
        "(document.querySelector('#answer-status')?.textContent || '').includes('allowed')",
    )
    .await;
    let frame = wait_answer(&mut h, "s1", "big-ints").await;
    let sent = &frame["response"]["response"]["updatedInput"];
    assert_eq!(sent["id"].as_u64(), Some(9_007_199_254_740_993), "{frame}");
    assert_eq!(sent["max"].as_u64(), Some(u64::MAX), "{frame}");
    assert_eq!(
        sent["min"].as_i64(),
        Some(-9_223_372_036_854_775_807),
        "{frame}"
    );
    assert_eq!(sent, &input);
    barrier(&mut h, "s1").await;
    let raw = raw_answers(&h, "s1", "big-ints");
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert!(raw[0].contains("\"id\":9007199254740993"), "{}", raw[0]);
    b.close().await;
    h.shutdown().await;
    done("edited_allow_keeps_integers_above_2_pow_53", started);
}
