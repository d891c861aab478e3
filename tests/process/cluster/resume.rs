//! Resuming an event stream on another instance than the one that gave the resume point
//! (a load balancer sent the reconnect elsewhere): each run numbers its events apart from
//! every other's, so the instance asked knows the point is not its own, says so, and
//! replays everything it retained; nothing it published meanwhile is skipped.

use super::{ask, settled};
use crate::support::{self, SseNext};

#[actix_rt::test]
async fn a_resume_point_from_another_instance_replays_what_this_one_kept_with_a_notice() {
    let Some((c, sessions, _)) = settled(2, 2).await else {
        return;
    };
    let sse = awc::Client::builder()
        .disable_timeout()
        .add_default_header(("authorization", format!("Bearer {}", support::ADMIN_TOKEN)))
        .finish();
    // A resume point of inst-0's stream.
    let mut on_0 = support::open_sse_with(&sse, &c.api(0), "after=0").await;
    let point = loop {
        match on_0.next(support::WAIT).await {
            SseNext::Event(e) if e.id.is_some() => break e.id.expect("id"),
            SseNext::Event(_) => {}
            other => panic!("inst-0's stream: {other:?}"),
        }
    };
    drop(on_0);

    // While the reader is away, a prompt is published on inst-1's stream.
    let mut live_1 = support::open_sse_with(&sse, &c.api(1), "").await;
    ask(&c.sim, &sessions[0], "while-away").await;
    let mut seen = vec![];
    live_1
        .wait_for(&mut seen, |e| support::is_requested(e, "while-away"))
        .await;

    // The reader comes back to inst-1 with inst-0's point.
    let mut resumed = support::open_sse_with(&sse, &c.api(1), &format!("after={point}")).await;
    let first = match resumed.next(support::WAIT).await {
        SseNext::Event(e) => e,
        other => panic!("resumed stream: {other:?}"),
    };
    assert_eq!(
        (first.event.as_str(), first.data["reason"].as_str()),
        ("lagged", Some("resume_point_unknown")),
        "{first:?}"
    );
    assert!(first.id.is_none(), "a notice moves no resume point");
    let mut replay = vec![];
    let prompt = resumed
        .wait_for(&mut replay, |e| support::is_requested(e, "while-away"))
        .await;
    assert_eq!(
        replay.first().and_then(|e| e.id),
        first.data["resume_from"].as_u64(),
        "the replay starts where the notice says"
    );
    assert!(prompt.id.is_some_and(|id| id != point));
}
