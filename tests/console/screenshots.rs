//! Screenshots to look at: the inbox, a prompt with a diff, a session transcript
//! (`target/console-screenshots/{inbox,prompt-diff,transcript}.png`).

use ccr_sim::Script;
use serde_json::json;

use crate::common::{Sess, APPROVER_TOKEN};
use crate::support::{Browser, DESKTOP};
use crate::{done, row, start, wait_answer};

#[actix_rt::test]
async fn screenshots_of_inbox_diff_and_transcript() {
    // s1 plays a realistic turn (text, a tool use and its prompt `t1`, then its result).
    let turn_script = Script::one_turn(
        "run the tests",
        "Bash",
        json!({"command":"cargo test --workspace","description":"Run every test"}),
        Some("t1"),
    );
    let Some((turn, mut h, started)) =
        start(vec![Sess::new("s1").script(turn_script), Sess::new("s2")]).await
    else {
        return;
    };
    h.prompt(
        "s2",
        "d1",
        "Edit",
        json!({"file_path":"/srv/app/src/lib.rs",
               "old_string":"fn greet(name: &str) -> String {\n    format!(\"Hello {name}\")\n}",
               "new_string":"/// Greets `name`.\nfn greet(name: &str) -> String {\n    format!(\"Hello, {name}!\")\n}"}),
    )
    .await;
    h.prompt(
        "s2",
        "w1",
        "Write",
        json!({"file_path":"/srv/app/NOTES.md","content":"# Notes\n\nShip on Monday.\n"}),
    )
    .await;
    h.prompt(
        "s2",
        "f1",
        "WebFetch",
        json!({"url":"https://docs.rs/actix","prompt":"Summarise the actor model"}),
    )
    .await;
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    for id in ["t1", "d1", "w1", "f1"] {
        b.find(&row(id)).await;
    }
    b.screenshot("inbox").await;
    // The Edit prompt shows a diff: deleted, inserted and context lines.
    b.click(&format!("{} a.open", row("d1"))).await;
    b.find("#prompt[data-request=d1] .diff").await;
    b.find("#prompt .diff .diff-del").await;
    b.find("#prompt .diff .diff-ins").await;
    assert!(b.text("#prompt .diff .diff-ins").await.contains("Greets"));
    b.screenshot("prompt-diff").await;
    // The Write and WebFetch prompts show content and JSON.
    b.goto("/ui/prompts/s2/w1").await;
    assert!(b
        .text("#prompt pre.content")
        .await
        .contains("Ship on Monday."));
    b.goto("/ui/prompts/s2/f1").await;
    assert!(b.text("#prompt pre.json").await.contains("docs.rs/actix"));
    // s1's transcript: allow its prompt so the turn finishes, then look at the session page.
    b.goto("/ui/sessions/s1").await;
    b.find("#session[data-session=s1] #transcript .msg-assistant")
        .await;
    b.find("#transcript .msg-tool-use").await;
    b.find(&format!("#session {}", row("t1"))).await;
    let (status, r) = h.decide("s1", "t1", json!({"behavior":"allow"})).await;
    assert_eq!(status, 200, "{r}");
    wait_answer(&mut h, "s1", "t1").await;
    b.find("#transcript .msg-tool-result").await;
    b.find("#transcript .msg-result").await;
    assert!(b.text("#transcript").await.contains("Done. Anything else?"));
    // Tall enough for the whole turn, scrolled to the transcript.
    b.resize((DESKTOP.0, 1400)).await;
    b.js("document.querySelector('#transcript').scrollIntoView(); return null")
        .await;
    b.screenshot("transcript").await;
    // The sessions list.
    b.goto("/ui/sessions").await;
    b.find("#sessions .session-row[data-session=s1] .state")
        .await;
    b.find("#sessions .session-row[data-session=s2] .pending")
        .await;
    b.close().await;
    h.shutdown().await;
    done("screenshots_of_inbox_diff_and_transcript", started);
}
