//! The session set of the lease loop against a real PostgreSQL: a session stored through
//! one member is told to every member's supervisor and owned by one; a removal through
//! another member is handed over by its owner and known nowhere after; a configured
//! session removed stays out until a reload lists it.

use super::*;

/// The ids of the last session set `node` told its supervisor.
fn last_set(node: &Node) -> Option<Vec<Arc<str>>> {
    node.log.all().into_iter().rev().find_map(|t| match t {
        Told::Set(ids) => Some(ids),
        _ => None,
    })
}

/// Until every node's last set contains (`true`) or lacks (`false`) `session`.
async fn every_set(nodes: &[&Node], session: &str, contains: bool) {
    eventually(Duration::from_secs(10), || async {
        for n in nodes {
            let has = last_set(n).is_some_and(|ids| ids.iter().any(|s| &**s == session));
            if has != contains {
                return Err(format!("{}'s set: {:?}", n.id, last_set(n)));
            }
        }
        Ok(())
    })
    .await;
}

fn runtime_spec(id: &str) -> crate::config::SessionSpec {
    crate::config::SessionSpec {
        labels: vec!["rt".into()],
        ..(*spec(id)).clone()
    }
}

/// Who holds a valid lease of `session`, if anyone.
async fn holder(admin: &Client, session: &str) -> Option<String> {
    table(admin).await.remove(session).map(|(owner, _)| owner)
}

#[actix_rt::test]
async fn a_stored_session_is_known_everywhere_owned_once_and_removed_everywhere() {
    let Some((url, admin)) = database("member_stored").await else {
        return;
    };
    let config = sessions(4);
    let [a, b] = ["a", "b"].map(|id| Node::start(&url, id, &config, PERIOD));
    wait_settled(&admin, &[&a, &b], &config, Duration::from_secs(10)).await;
    let watch = OneHolder::watch(&[&a, &b], &[Arc::from("rt_1")]);

    let api = a.member().api();
    assert!(api.add_session(&runtime_spec("rt_1"), "ops").await.unwrap());
    // Told its own supervisor before answering: a message sent after it finds it there.
    a.recorder.send(Flush).await.unwrap();
    let has = last_set(&a).is_some_and(|ids| ids.iter().any(|s| &**s == "rt_1"));
    assert!(has, "{:?}", last_set(&a));
    let again = b.member().api().add_session(&runtime_spec("rt_1"), "ops");
    assert!(!again.await.unwrap(), "stored once");
    every_set(&[&a, &b], "rt_1", true).await;
    let mut all = config.clone();
    all.push(Arc::from("rt_1"));
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(10)).await;
    let row = admin
        .query_one(
            "SELECT spec, added_by, added_on, removed_at IS NULL FROM ccr_sessions WHERE session_id = 'rt_1'",
            &[],
        )
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(row.get(0)).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"id": "rt_1", "labels": ["rt"], "token_env": "CCR_TEST_UNUSED"}),
        "references only"
    );
    assert_eq!((row.get::<_, &str>(1), row.get::<_, &str>(2)), ("ops", "a"));
    let owner = holder(&admin, "rt_1").await.expect("owned");
    let owner = if owner == "a" { &a } else { &b };

    // Removed through b: known nowhere, handed over (1000) by its owner, owned by nobody.
    let removed = b
        .member()
        .api()
        .remove_session("rt_1", "ops")
        .await
        .unwrap();
    assert_eq!(removed, Some(true), "it was held");
    let again = b
        .member()
        .api()
        .remove_session("rt_1", "ops")
        .await
        .unwrap();
    assert_eq!(again, None);
    every_set(&[&a, &b], "rt_1", false).await;
    eventually(Duration::from_secs(5), || async {
        match owner.log.disowned().contains(&(Arc::from("rt_1"), false)) {
            true => Ok(()),
            false => Err(format!("{} did not hand rt_1 over", owner.id)),
        }
    })
    .await;
    assert_eq!(holder(&admin, "rt_1").await, None);
    // A barrier: another stored session placed and owned by the rounds after the removal,
    // which claimed nothing of rt_1.
    assert!(api.add_session(&runtime_spec("rt_2"), "ops").await.unwrap());
    let mut all = config.clone();
    all.push(Arc::from("rt_2"));
    wait_settled(&admin, &[&a, &b], &all, Duration::from_secs(10)).await;
    assert_eq!(holder(&admin, "rt_1").await, None, "nobody took it back");
    watch.check();
    assert_epochs_owned_once(&[&a, &b]);
}

#[actix_rt::test]
async fn a_configured_session_removed_stays_out_until_a_reload_lists_it() {
    let Some((url, admin)) = database("member_removed").await else {
        return;
    };
    let config = sessions(4);
    let [a, b] = ["a", "b"].map(|id| Node::start(&url, id, &config, PERIOD));
    wait_settled(&admin, &[&a, &b], &config, Duration::from_secs(10)).await;
    let gone: Arc<str> = config[0].clone();
    let removed = a.member().api().remove_session(&gone, "ops").await.unwrap();
    assert_eq!(removed, Some(true), "it was held");
    every_set(&[&a, &b], &gone, false).await;
    wait_settled(&admin, &[&a, &b], &config[1..], Duration::from_secs(10)).await;
    let marks = admin
        .query(
            "SELECT session_id FROM ccr_sessions WHERE spec IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(marks.len(), 1, "a removal mark");

    // b's reload lists it: the mark goes, and both members plan over it again.
    let specs = config.iter().map(|s| spec(s)).collect();
    b.member().api().configure(specs).await.expect("configured");
    let left = admin
        .query("SELECT 1 FROM ccr_sessions", &[])
        .await
        .unwrap();
    assert!(left.is_empty(), "the mark is deleted");
    every_set(&[&a, &b], &gone, true).await;
    wait_settled(&admin, &[&a, &b], &config, Duration::from_secs(10)).await;
    assert_epochs_owned_once(&[&a, &b]);
}

#[actix_rt::test]
async fn a_reload_the_database_does_not_answer_gives_up_after_two_periods() {
    let Some((url, mut admin)) = database("member_reload_stuck").await else {
        return;
    };
    let config = sessions(2);
    let a = Node::start(&url, "a", &config, PERIOD);
    wait_settled(&admin, &[&a], &config, Duration::from_secs(10)).await;
    // The reload's first statement waits on this lock past two lease periods (the test's
    // statement timeout, 5 s, is longer): as a partition would, without any error.
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE ccr_sessions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let specs = config.iter().map(|s| spec(s)).collect();
    let answer = a.member().api().configure(specs).await;
    let error = answer.expect_err("the reload gives up");
    assert!(
        error.contains("did not answer within"),
        "cut by the loop, not by the statement timeout: {error}"
    );
    lock.rollback().await.unwrap();
    // The loop goes on: the sessions stay held, and a reload now succeeds.
    wait_settled(&admin, &[&a], &config, Duration::from_secs(10)).await;
    let specs = config.iter().map(|s| spec(s)).collect();
    a.member().api().configure(specs).await.expect("configured");
}
