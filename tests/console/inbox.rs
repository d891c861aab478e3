//! The inbox: live rows, and bulk answers.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{allow_frame, Sess, APPROVER_TOKEN};
use crate::support::{Browser, DESKTOP};
use crate::{barrier, done, row, start, wait_answer};

/// A prompt shows in an open inbox within 1 s of the supervisor having it, without a reload.
#[actix_rt::test]
async fn new_prompt_appears_live_within_one_second() {
    let Some((turn, h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    b.find("#inbox").await;
    assert_eq!(b.count(".prompt-row").await, 0, "an empty inbox");
    // A reload would drop this.
    b.js("window.__loaded_once = true; return null").await;
    // The first live row proves the page's stream is up (however long it took to connect)...
    h.prompt("s1", "warm-up", "Bash", json!({"command":"true"}))
        .await;
    b.find(&row("warm-up")).await;
    // ...the second is the one timed: from the supervisor having it to the row in the DOM.
    h.prompt("s1", "live-1", "Bash", json!({"command":"npm test"}))
        .await;
    let t0 = Instant::now();
    b.find_within(&row("live-1"), Duration::from_secs(5)).await;
    let took = t0.elapsed();
    eprintln!("console: a new prompt appeared in the inbox after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(
        b.js("return window.__loaded_once === true").await,
        true,
        "no reload"
    );
    // The row says what it is.
    assert_eq!(
        b.attr(&row("live-1"), "data-session").await.as_deref(),
        Some("s1")
    );
    assert_eq!(
        b.attr(&row("live-1"), "data-tool").await.as_deref(),
        Some("Bash")
    );
    assert!(b
        .text(&format!("{} .summary", row("live-1")))
        .await
        .contains("npm test"));
    assert!(b
        .text(&format!("{} .session", row("live-1")))
        .await
        .contains("s1"));
    b.find(&format!("{} a.open", row("live-1"))).await;
    // Oldest first.
    let order = b
        .js("return [...document.querySelectorAll('#inbox .prompt-row')].map(r => r.dataset.request)")
        .await;
    assert_eq!(order, json!(["warm-up", "live-1"]));
    // An answer given elsewhere (the API) removes the row live too.
    let (status, _) = h.decide("s1", "live-1", json!({"behavior":"allow"})).await;
    assert_eq!(status, 200);
    b.until(
        "the answered row to leave",
        "!document.querySelector('.prompt-row[data-request=\"live-1\"]')",
    )
    .await;
    b.close().await;
    h.shutdown().await;
    done("new_prompt_appears_live_within_one_second", started);
}

/// Select all (under a filter), bulk allow, confirm: 20 prompts answered, each exactly once.
#[actix_rt::test]
async fn bulk_allow_of_twenty_prompts() {
    let Some((turn, mut h, started)) = start(vec![Sess::new("s1")]).await else {
        return;
    };
    let ids: Vec<String> = (1..=20).map(|i| format!("bulk-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        h.prompt("s1", id, "Bash", json!({"command": format!("echo {i}")}))
            .await;
    }
    // Two prompts the filter leaves out: select-all must not take them.
    for id in ["keep-1", "keep-2"] {
        h.prompt("s1", id, "Read", json!({"file_path":"/etc/hosts"}))
            .await;
    }
    let b = Browser::open(&turn, &h.api, DESKTOP).await;
    b.sign_in(APPROVER_TOKEN).await;
    b.until(
        "22 rows",
        "document.querySelectorAll('#inbox .prompt-row').length === 22",
    )
    .await;
    b.type_into("form#filters [name=tool]", "Bash").await;
    b.until(
        "the filter to leave the 20 Bash rows",
        "[...document.querySelectorAll('#inbox .prompt-row')]\
         .filter(r => r.getClientRects().length > 0).length === 20",
    )
    .await;
    b.click("input#select-all").await;
    b.click("button#bulk-allow").await;
    b.find("dialog#bulk-dialog[open]").await;
    assert_eq!(b.text("#bulk-count").await.trim(), "20");
    let t0 = Instant::now();
    b.click("button#bulk-confirm").await;
    b.until(
        "the bulk result",
        "(document.querySelector('#bulk-result')?.textContent || '').includes('20 answered, 0 failed')",
    )
    .await;
    eprintln!("console: bulk allow of 20 answered in {:?}", t0.elapsed());
    for id in &ids {
        wait_answer(&mut h, "s1", id).await;
    }
    barrier(&mut h, "s1").await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            h.answers("s1", id),
            vec![allow_frame(id, json!({"command": format!("echo {i}")}))],
            "{id} answered once, as a plain allow"
        );
    }
    for id in ["keep-1", "keep-2"] {
        assert!(h.answers("s1", id).is_empty(), "{id} was filtered out");
    }
    b.until(
        "the 20 answered rows to leave",
        "[...document.querySelectorAll('#inbox .prompt-row')]\
         .every(r => r.dataset.request.startsWith('keep-'))",
    )
    .await;
    let (_, pending) = h.get("/v1/permissions").await;
    assert_eq!(pending["permissions"].as_array().map(Vec::len), Some(2));
    b.close().await;
    h.shutdown().await;
    done("bulk_allow_of_twenty_prompts", started);
}
