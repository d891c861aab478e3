//! A viewer sees prompts but has no control, and a forged POST from its page is refused.

use serde_json::json;

use crate::common::{Sess, VIEWER_TOKEN};
use crate::support::{Browser, DESKTOP};
use crate::{barrier, done, row, start};

/// Controls only an approver (or admin) gets.
const CONTROLS: [&str; 9] = [
    "button.allow",
    "button.deny",
    "input.select",
    "input#select-all",
    "button#bulk-allow",
    "button#bulk-deny",
    "button#allow",
    "button#edit",
    "button#deny",
];

#[actix_rt::test]
async fn a_viewer_cannot_answer() {
    let Some((turn, mut h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    h.prompt("s1", "v1", "Bash", json!({"command":"npm test"}))
        .await;
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(VIEWER_TOKEN).await;
    b.find("body[data-role=viewer]").await;
    // The inbox shows the prompt, with no control.
    b.find(&row("v1")).await;
    for css in CONTROLS {
        assert_eq!(b.visible(css).await, 0, "inbox: a viewer sees no `{css}`");
    }
    // The prompt page too.
    b.goto("/ui/prompts/s1/v1").await;
    b.find("#prompt[data-session=s1][data-request=v1]").await;
    assert!(b.text("#prompt").await.contains("npm test"));
    for css in CONTROLS
        .iter()
        .chain(&["textarea#edited-input", "button#allow-edited"])
    {
        assert_eq!(
            b.visible(css).await,
            0,
            "prompt page: a viewer sees no `{css}`"
        );
    }
    // The session page: no interrupt, no message form.
    b.goto("/ui/sessions/s1").await;
    b.find("#session[data-session=s1]").await;
    for css in ["button#interrupt", "form#send-message", "button#send"] {
        assert_eq!(
            b.visible(css).await,
            0,
            "session page: a viewer sees no `{css}`"
        );
    }
    // A forged answer from the viewer's signed-in page (same origin, its cookie): 403.
    let forged = b
        .js_async(
            "fetch('/v1/sessions/s1/permissions/v1', {method: 'POST', credentials: 'same-origin',\
               headers: {'content-type': 'application/json'}, body: JSON.stringify({behavior: 'allow'})})\
             .then(async r => done({status: r.status, body: await r.text()}))\
             .catch(e => done({error: String(e)}));",
        )
        .await;
    assert_eq!(forged["status"], 403, "{forged}");
    let body: serde_json::Value =
        serde_json::from_str(forged["body"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(body["error"]["code"], "forbidden", "{forged}");
    barrier(&mut h, "s1").await;
    assert!(
        h.answers("s1", "v1").is_empty(),
        "nothing reached the session"
    );
    let (_, pending) = h.get("/v1/permissions").await;
    assert_eq!(pending["permissions"][0]["request_id"], "v1", "{pending}");
    b.close().await;
    h.shutdown().await;
    done("a_viewer_cannot_answer", started);
}
