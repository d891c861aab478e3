//! Sessions added at run time in a cluster (`POST` / `DELETE /v1/sessions`), and reloads:
//! two instances on one PostgreSQL, as in the parent module.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ccr_sim::SimEvent;
use serde_json::{json, Value};

use super::{all_connected, answer_via, ask, ids, listed, load, Cluster, Pg, SETTLE};
use crate::support;

/// The sessions `api` lists: id → owner.
async fn listed_sessions(http: &awc::Client, api: &str) -> BTreeMap<String, Value> {
    let (status, body) = support::get(http, &format!("{api}/v1/sessions")).await;
    assert_eq!(status, 200, "{body}");
    body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                s["owner"].clone(),
            )
        })
        .collect()
}

/// Poll `api`'s session list until `done` holds for it (bounded by [`SETTLE`]).
async fn sessions_until(
    http: &awc::Client,
    api: &str,
    what: &str,
    done: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let listed = listed_sessions(http, api).await;
        if done(&listed) {
            return listed;
        }
        assert!(Instant::now() < deadline, "{what}: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A session added with `POST /v1/sessions` on one instance is the cluster's: connected by
/// exactly one instance and listed with its owner by the other; its prompt, answered
/// through the instance that does not own it, reaches the simulator once; a second `POST`
/// of its id is 409 on either instance. After a `kill -9` of its owner the survivor takes
/// it over; a `DELETE` through the other instance (restarted) cancels its pending prompt
/// and closes it on its owner, and nobody connects it again. A session removed just after
/// its owner was killed has its pending prompt cancelled by the removing instance.
#[actix_rt::test]
async fn a_session_added_at_run_time_is_run_by_one_instance_taken_over_and_removed_everywhere() {
    let Some(pg) = ccr_pgtest::require() else {
        return;
    };
    const RT: &str = "rt_added";
    const NEXT: &str = "rt_next";
    let env = vec![
        ("CCR_TEST_RT_TOKEN".to_owned(), support::session_token(RT)),
        (
            "CCR_TEST_NEXT_TOKEN".to_owned(),
            support::session_token(NEXT),
        ),
    ];
    let configured = ids(2);
    let mut c = Cluster::start_with_env(Pg::Shared(pg), 2, &configured, "", vec![env; 2]).await;
    c.until("configured sessions owned", |o| o.len() == 2).await;
    c.sim
        .add_session(RT, &support::session_token(RT), ccr_sim::Script::empty());
    let http = support::http();
    let mut sim_events = c.sim.subscribe();

    let body = json!({"id": RT, "labels": ["added"], "token_env": "CCR_TEST_RT_TOKEN"});
    let (status, added) =
        support::post(&http, &format!("{}/v1/sessions", c.api(0)), body.clone()).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["id"], RT, "{added}");
    for i in [0, 1] {
        let (status, again) =
            support::post(&http, &format!("{}/v1/sessions", c.api(i)), body.clone()).await;
        assert_eq!(
            (status, &again["error"]["code"]),
            (409, &json!("session_exists")),
            "inst-{i}: {again}"
        );
    }
    let owners = c
        .until("the added session owned", |o| o.contains_key(RT))
        .await;
    all_connected(&c.sim, &[RT.to_owned()]).await;
    let owner = owners[RT].clone();
    let (mine, other) = if owner == "inst-0" { (0, 1) } else { (1, 0) };
    let list = sessions_until(&http, &c.api(other), "listed with its owner", |l| {
        l.get(RT) == Some(&json!(owner))
    })
    .await;
    assert_eq!(list.len(), 3, "{list:?}");
    let (status, cluster) = support::get(&http, &format!("{}/v1/cluster", c.api(other))).await;
    assert_eq!(status, 200, "{cluster}");
    let held_by: Vec<&str> = cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| {
            m["sessions"]
                .as_array()
                .is_some_and(|s| s.iter().any(|l| l["session_id"] == RT))
        })
        .map(|m| m["instance_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(held_by, [owner.as_str()], "{cluster}");
    assert_eq!(c.sim.connections(RT), 1, "connected by one instance, once");

    // A prompt of it, answered through the instance that does not run it: once.
    ask(&c.sim, RT, "rt-prompt").await;
    assert_eq!(
        listed(&http, &c.api(other), "rt-prompt").await,
        json!(owner)
    );
    answer_via(&c, other, &mut sim_events, (RT, "rt-prompt")).await;
    ask(&c.sim, RT, "rt-barrier").await;
    listed(&http, &c.api(mine), "rt-barrier").await;
    answer_via(&c, mine, &mut sim_events, (RT, "rt-barrier")).await;
    assert_eq!(support::answers(&c.sim, RT, "rt-prompt").len(), 1);

    // kill -9 of its owner: the survivor takes it over.
    let mut killed = c.instances[mine].take().expect("owner");
    killed.signal(libc::SIGKILL);
    killed.wait_exit(support::WAIT).await;
    let survivor = format!("inst-{other}");
    c.until("taken over by the survivor", |o| {
        o.get(RT) == Some(&survivor)
    })
    .await;
    all_connected(&c.sim, &[RT.to_owned()]).await;

    // Removed through the restarted instance, which does not own it: closed by its owner.
    c.instances[mine] = Some(c.spawn(mine).await);
    sessions_until(
        &http,
        &c.api(mine),
        "the restarted instance knows it",
        |l| l.get(RT) == Some(&json!(survivor)),
    )
    .await;
    // A prompt pending as it is removed: denied for the session, as a single instance's
    // DELETE does.
    ask(&c.sim, RT, "rt-pending").await;
    listed(&http, &c.api(mine), "rt-pending").await;
    let before = c.sim.connections(RT);
    let (status, removed) =
        support::delete(&http, &format!("{}/v1/sessions/{RT}", c.api(mine))).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed, json!({"removed": RT}));
    assert!(!c.owners().contains_key(RT), "no owner once answered");
    assert!(!c.sim.is_connected(RT), "closed by its owner");
    let stderr = c.instances[other].as_ref().expect("survivor").stderr_now();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(RT) && l.contains("closing connection (1000)")),
        "closed with 1000 by its owner:\n{stderr}"
    );
    assert_eq!(
        c.sql(&format!(
            "SELECT outcome, decided_by FROM ccr_prompts WHERE session_id = '{RT}' AND request_id = 'rt-pending'"
        )),
        ["denied|session_removed"]
    );
    for i in [0, 1] {
        sessions_until(&http, &c.api(i), "gone from every list", |l| {
            !l.contains_key(RT)
        })
        .await;
    }
    let (status, again) =
        support::delete(&http, &format!("{}/v1/sessions/{RT}", c.api(other))).await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (404, &json!("unknown_session")),
        "{again}"
    );
    // A barrier: a session added after it is connected, and RT was not connected again.
    c.sim.add_session(
        NEXT,
        &support::session_token(NEXT),
        ccr_sim::Script::empty(),
    );
    let body = json!({"id": NEXT, "token_env": "CCR_TEST_NEXT_TOKEN"});
    let (status, added) =
        support::post(&http, &format!("{}/v1/sessions", c.api(other)), body).await;
    assert_eq!(status, 201, "{added}");
    c.until("the next one owned", |o| o.contains_key(NEXT))
        .await;
    all_connected(&c.sim, &[NEXT.to_owned()]).await;
    assert!(!c.sim.is_connected(RT));
    assert_eq!(c.sim.connections(RT), before, "nobody connected it again");

    // Removed right after its owner died, a prompt pending: denied all the same, by the
    // instance that took the DELETE, with the deny the session gets should it be added back.
    let owners = c.owners();
    let dead = if owners[NEXT] == "inst-0" { 0 } else { 1 };
    ask(&c.sim, NEXT, "next-pending").await;
    listed(&http, &c.api(1 - dead), "next-pending").await;
    let mut killed = c.instances[dead].take().expect("owner");
    killed.signal(libc::SIGKILL);
    killed.wait_exit(support::WAIT).await;
    let url = format!("{}/v1/sessions/{NEXT}", c.api(1 - dead));
    let (status, removed) = support::delete(&http, &url).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(
        c.sql(&format!(
            "SELECT outcome, decided_by, answer LIKE '%\"behavior\":\"deny\"%' FROM ccr_prompts WHERE session_id = '{NEXT}' AND request_id = 'next-pending'"
        )),
        ["denied|session_removed|t"]
    );
    assert!(!c.owners().contains_key(NEXT), "nobody took it over");
}

/// A session added at run time whose lease the lease loop takes before the supervisor has
/// heard of the session (a busy supervisor; forced here by a test hook) is adopted, then
/// started: its prompt, answered on the instance that runs it, is written at once and
/// reaches the session. (It used to start without being adopted: the registry took it for
/// another instance's, recorded the answer for that owner, `queued`, and nobody wrote it.)
#[actix_rt::test]
async fn a_session_claimed_before_its_supervisor_heard_of_it_is_adopted_and_answered() {
    let Some(pg) = ccr_pgtest::require() else {
        return;
    };
    const RT: &str = "rt_early";
    let env = vec![
        ("CCR_TEST_RT_TOKEN".to_owned(), support::session_token(RT)),
        ("CCR_TEST_HOOK_SET_AFTER_CLAIM".to_owned(), "1".to_owned()),
    ];
    let c = Cluster::start_with_env(Pg::Shared(pg), 1, &ids(1), "", vec![env]).await;
    c.until("the configured session owned", |o| o.len() == 1)
        .await;
    c.sim
        .add_session(RT, &support::session_token(RT), ccr_sim::Script::empty());
    let http = support::http();
    let mut sim_events = c.sim.subscribe();
    let body = json!({"id": RT, "token_env": "CCR_TEST_RT_TOKEN"});
    let (status, added) = support::post(&http, &format!("{}/v1/sessions", c.api(0)), body).await;
    assert_eq!(status, 201, "{added}");
    c.until("the added session owned", |o| o.contains_key(RT))
        .await;
    ask(&c.sim, RT, "early").await;
    listed(&http, &c.api(0), "early").await;
    let instance = c.instances[0].as_ref().expect("running");
    assert!(
        instance
            .stderr_now()
            .lines()
            .any(|l| l.contains("test hook") && l.contains(RT)),
        "the set was handled after the claim:\n{}",
        instance.stderr_now()
    );
    let url = format!("{}/v1/sessions/{RT}/permissions/early", c.api(0));
    let (status, receipt) = support::post(&http, &url, json!({"behavior": "allow"})).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(
        receipt["delivery"], "sent",
        "written by the instance that runs it: {receipt}"
    );
    support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "early"),
    )
    .await;
    assert_eq!(support::answers(&c.sim, RT, "early").len(), 1);
}

/// A reload changes the `[[sessions]]` of the instance reloaded: a session new in the file
/// is claimed by that instance alone (the other one's config lacks it) until the other is
/// reloaded too; neither reload removes a session added at run time. A session added
/// with a token no instance has is owned all the same, and shows why as its last error.
#[actix_rt::test]
async fn a_reload_in_a_cluster_changes_that_instance_s_sessions_and_keeps_added_ones() {
    let Some(pg) = ccr_pgtest::require() else {
        return;
    };
    const RT: &str = "rt_kept";
    let env = vec![("CCR_TEST_RT_TOKEN".to_owned(), support::session_token(RT))];
    let c = Cluster::start_with_env(Pg::Shared(pg), 2, &ids(2), "", vec![env; 2]).await;
    c.until("configured sessions owned", |o| o.len() == 2).await;
    let http = support::http();
    c.sim
        .add_session(RT, &support::session_token(RT), ccr_sim::Script::empty());
    let body = json!({"id": RT, "token_env": "CCR_TEST_RT_TOKEN"});
    let (status, added) = support::post(&http, &format!("{}/v1/sessions", c.api(1)), body).await;
    assert_eq!(status, 201, "{added}");
    c.until("3 owned", |o| o.len() == 3).await;

    // A third configured session, in the shared file; inst-0 reloads it first.
    let new = ids(3);
    let ids3: Vec<&str> = new.iter().map(String::as_str).collect();
    c.sim.add_session(
        &new[2],
        &support::session_token(&new[2]),
        ccr_sim::Script::empty(),
    );
    let toml = support::config_toml(
        &c.sim.base_url(),
        &ids3,
        &c.cfg.with_file_name("unused.db"),
        "",
    );
    std::fs::write(&c.cfg, toml).expect("rewrite the config");
    let reload = |i: usize| {
        let http = http.clone();
        let url = format!("{}/v1/admin/reload", c.api(i));
        async move { support::post(&http, &url, json!({})).await }
    };
    let (status, summary) = reload(0).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary["sessions"],
        json!({"added": [new[2]], "removed": [], "changed": []}),
        "the added session is kept: {summary}"
    );
    let owners = c
        .until("the new session owned", |o| o.contains_key(&new[2]))
        .await;
    assert_eq!(
        owners[&new[2]], "inst-0",
        "the only instance whose config has it"
    );
    all_connected(&c.sim, &new).await;
    let (status, summary) = reload(1).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["sessions"]["removed"], json!([]), "{summary}");
    c.until("all four owned, spread over both", |o| {
        o.len() == 4 && load(o).len() == 2
    })
    .await;
    for i in [0, 1] {
        let listed = listed_sessions(&http, &c.api(i)).await;
        assert!(
            listed.contains_key(RT) && listed.contains_key(&new[2]),
            "{listed:?}"
        );
    }

    // A session whose token no instance has: its owner shows why, as for a configured
    // session, and goes on running the others.
    let body = json!({"id": "rt_no_token", "token_env": "CCR_TEST_UNSET_TOKEN"});
    let (status, added) = support::post(&http, &format!("{}/v1/sessions", c.api(0)), body).await;
    assert_eq!(status, 201, "{added}");
    let owners = c.until("owned", |o| o.contains_key("rt_no_token")).await;
    let owner = if owners["rt_no_token"] == "inst-0" {
        0
    } else {
        1
    };
    let deadline = Instant::now() + SETTLE;
    loop {
        let url = format!("{}/v1/sessions/rt_no_token", c.api(owner));
        let (status, body) = support::get(&http, &url).await;
        assert_eq!(status, 200, "{body}");
        let error = body["last_error"].as_str().unwrap_or_default();
        if error.contains("CCR_TEST_UNSET_TOKEN is not set") {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, cluster) = support::get(&http, &format!("{}/v1/cluster", c.api(owner))).await;
    assert_eq!(status, 200, "{cluster}");
    assert_eq!(
        cluster["members"].as_array().map(Vec::len),
        Some(2),
        "{cluster}"
    );
}
