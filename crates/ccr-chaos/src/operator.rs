//! Random operators: poll `GET /v1/permissions` and answer over the real HTTP
//! API (allow, deny, edited allow; sometimes both operators at once on one
//! prompt), recording every response. In a cluster each poll and each answer
//! goes to a random running instance (any instance lists every pending prompt
//! and accepts an answer; the first decision wins). Also the ledger read at the
//! end (a single supervisor's, through its API).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::records::{AnswerKey, ApiResult, Attempt, LedgerRow, EDIT_FIELD};
use super::run::rng_for;

/// Longest wait for one API call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running supervisor process the operators may talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `http://127.0.0.1:PORT` of its API.
    pub api: String,
    /// Its pid.
    pub pid: u32,
    /// Its cluster instance id (empty for a single supervisor).
    pub instance: String,
}

/// The supervisors, one slot per instance (`None` while it is down or restarting).
pub type Current = Rc<RefCell<Vec<Option<Target>>>>;

/// One of the running supervisors, chosen with `rng` when there are several (no draw
/// for one, so a single supervisor's run draws what it always drew).
pub fn pick(current: &Current, rng: &mut StdRng) -> Option<Target> {
    let up: Vec<Target> = current.borrow().iter().flatten().cloned().collect();
    match up.len() {
        0 => None,
        1 => up.into_iter().next(),
        n => up.into_iter().nth(rng.gen_range(0..n)),
    }
}

/// What the operators share: the target, the phase, the record.
#[derive(Clone)]
pub struct Desk {
    /// Where to send requests.
    pub current: Current,
    /// Every attempt so far.
    pub attempts: Rc<RefCell<Vec<Attempt>>>,
    /// Chance to answer a listed prompt on each poll (raised for the drain).
    pub answer_chance: Rc<Cell<f64>>,
    /// Chance that an answer is raced by the other operator.
    pub race_chance: f64,
    /// Operators stop polling once set.
    pub stop: Rc<Cell<bool>>,
    /// Answers sent and not yet answered.
    pub in_flight: Rc<Cell<usize>>,
    /// Prompts some answer is in flight for (not answered again meanwhile).
    busy: Rc<RefCell<HashSet<(String, String)>>>,
    nonce: Rc<Cell<u64>>,
}

impl Desk {
    /// A desk aiming at `current`.
    pub fn new(current: Current, answer_chance: f64, race_chance: f64) -> Self {
        Desk {
            current,
            attempts: Rc::default(),
            answer_chance: Rc::new(Cell::new(answer_chance)),
            race_chance,
            stop: Rc::default(),
            in_flight: Rc::default(),
            busy: Rc::default(),
            nonce: Rc::default(),
        }
    }
}

/// An HTTP client sending `token`.
pub fn client(token: &str) -> awc::Client {
    awc::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .add_default_header(("authorization", format!("Bearer {token}")))
        .finish()
}

/// A pending prompt as listed.
struct Listed {
    session: String,
    request_id: String,
    input: Value,
}

async fn list_pending(http: &awc::Client, api: &str) -> anyhow::Result<Vec<Listed>> {
    let mut resp = http
        .get(format!("{api}/v1/permissions"))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET /v1/permissions: {e}"))?;
    let body: Value = resp
        .json()
        .limit(64 << 20)
        .await
        .context("GET /v1/permissions body")?;
    let Some(list) = body["permissions"].as_array() else {
        bail!("GET /v1/permissions: {body}");
    };
    Ok(list
        .iter()
        .filter_map(|p| {
            Some(Listed {
                session: p["session_id"].as_str()?.to_owned(),
                request_id: p["request_id"].as_str()?.to_owned(),
                input: p["input"].clone(),
            })
        })
        .collect())
}

/// A random answer by `op` (attempt number `nonce`) to a prompt with `input`.
pub fn choose(rng: &mut StdRng, op: &str, nonce: u64, input: &Value) -> (Value, AnswerKey) {
    match rng.gen_range(0..10) {
        0..=3 => (
            json!({"behavior": "allow"}),
            AnswerKey::Allow(input.clone()),
        ),
        4..=6 => {
            let mut edited = input.clone();
            if let Value::Object(map) = &mut edited {
                map.insert(EDIT_FIELD.into(), Value::String(format!("{op}#{nonce}")));
            }
            let body = json!({"behavior": "allow", "updated_input": edited});
            (body, AnswerKey::Allow(edited))
        }
        _ => {
            let message = format!("{op}#{nonce}: not now");
            let body = json!({"behavior": "deny", "message": message});
            (body, AnswerKey::Deny(message))
        }
    }
}

/// Poll and answer until the desk says stop. `me` and `other` are (name, client).
///
/// Every decision about one prompt draws from a generator named by the seed,
/// this operator, the prompt and how often this operator has looked at it, so
/// the same seed treats the same prompt the same way whatever the timing.
pub async fn operate(
    desk: Desk,
    me: (String, Rc<awc::Client>),
    other: (String, Rc<awc::Client>),
    seed: u64,
) {
    let mut looks: HashMap<(String, String), u32> = HashMap::new();
    let mut polls: u64 = 0;
    while !desk.stop.get() {
        polls += 1;
        let mut rng = rng_for(seed, &[me.0.as_bytes(), &polls.to_le_bytes()]);
        let pause = rng.gen_range(80..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let mut via = rng_for(seed, &[me.0.as_bytes(), b"poll-via", &polls.to_le_bytes()]);
        let Some(target) = pick(&desk.current, &mut via) else {
            continue;
        };
        let Ok(listed) = list_pending(&me.1, &target.api).await else {
            continue;
        };
        // Only what is listed now is remembered: bounded by the pending prompts.
        let mut seen = HashMap::with_capacity(listed.len());
        for p in listed {
            let id = (p.session.clone(), p.request_id.clone());
            let look = looks.get(&id).copied().unwrap_or(0) + 1;
            seen.insert(id.clone(), look);
            let mut rng = rng_for(
                seed,
                &[
                    me.0.as_bytes(),
                    id.0.as_bytes(),
                    id.1.as_bytes(),
                    &look.to_le_bytes(),
                ],
            );
            let answer = rng.gen_bool(desk.answer_chance.get().clamp(0.0, 1.0));
            let racing = rng.gen_bool(desk.race_chance.clamp(0.0, 1.0));
            if !answer || desk.busy.borrow().contains(&id) {
                continue;
            }
            desk.busy.borrow_mut().insert(id.clone());
            let pending = Rc::new(Cell::new(if racing { 2 } else { 1 }));
            for who in [&me, &other].into_iter().take(if racing { 2 } else { 1 }) {
                let nonce = desk.nonce.get() + 1;
                desk.nonce.set(nonce);
                let (body, key) = choose(&mut rng, &who.0, nonce, &p.input);
                // Through the instance polled, or (in a cluster) any other running one.
                let mut via = rng_for(
                    seed,
                    &[
                        who.0.as_bytes(),
                        b"answer-via",
                        id.0.as_bytes(),
                        id.1.as_bytes(),
                        &look.to_le_bytes(),
                    ],
                );
                let to = pick(&desk.current, &mut via).unwrap_or_else(|| target.clone());
                let post = post_answer(
                    desk.clone(),
                    who.clone(),
                    (to, (target.pid, target.instance.clone())),
                    id.clone(),
                    body,
                    key,
                    pending.clone(),
                );
                desk.in_flight.set(desk.in_flight.get() + 1);
                actix_rt::spawn(post);
            }
        }
        looks = seen;
    }
}

async fn post_answer(
    desk: Desk,
    (operator, http): (String, Rc<awc::Client>),
    (to, listed_by): (Target, (u32, String)),
    (session, request_id): (String, String),
    body: Value,
    answer: AnswerKey,
    pending: Rc<Cell<u32>>,
) {
    let url = format!("{}/v1/sessions/{session}/permissions/{request_id}", to.api);
    let sent_at = Instant::now();
    let result = match http.post(url).send_json(&body).await {
        Err(e) => ApiResult::Failed(e.to_string()),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if status == 200 {
                ApiResult::Accepted {
                    delivery: body["delivery"].as_str().unwrap_or("?").to_owned(),
                }
            } else {
                ApiResult::Refused {
                    status,
                    code: body["error"]["code"].as_str().unwrap_or("").to_owned(),
                }
            }
        }
    };
    desk.attempts.borrow_mut().push(Attempt {
        operator,
        session: session.clone(),
        request_id: request_id.clone(),
        answer,
        pid: to.pid,
        instance: to.instance,
        listed_by,
        sent_at,
        done_at: Instant::now(),
        result,
    });
    pending.set(pending.get() - 1);
    if pending.get() == 0 {
        desk.busy.borrow_mut().remove(&(session, request_id));
    }
    desk.in_flight.set(desk.in_flight.get() - 1);
}

/// Every ledger row, through `GET /v1/audit` (1000 a page, following the cursor).
pub async fn fetch_ledger(http: &awc::Client, api: &str) -> anyhow::Result<Vec<LedgerRow>> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{api}/v1/audit?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let mut resp = http
            .get(&url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GET /v1/audit: {e}"))?;
        let status = resp.status().as_u16();
        let body: Value = resp
            .json()
            .limit(256 << 20)
            .await
            .context("GET /v1/audit body")?;
        if status != 200 {
            bail!("GET /v1/audit: {status} {body}");
        }
        for row in body["rows"].as_array().into_iter().flatten() {
            match LedgerRow::from_api(row) {
                Some(r) => rows.push(r),
                None => bail!("GET /v1/audit: unreadable row {row}"),
            }
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn answers_carry_their_operator_and_attempt_and_match_their_key() {
        let mut rng = StdRng::seed_from_u64(7);
        let input = json!({"command": "ls"});
        let mut kinds = HashSet::new();
        for nonce in 1..200 {
            let (body, key) = choose(&mut rng, "op-a", nonce, &input);
            kinds.insert(key.describe().split('(').next().unwrap().to_owned());
            let edited = body.get("updated_input").cloned();
            match (&key, body["behavior"].as_str()) {
                (AnswerKey::Allow(i), Some("allow")) => {
                    assert_eq!(i, edited.as_ref().unwrap_or(&input));
                    if let Some(e) = edited {
                        assert_eq!(e[EDIT_FIELD], format!("op-a#{nonce}"));
                    }
                }
                (AnswerKey::Deny(m), Some("deny")) => {
                    assert_eq!(body["message"], *m);
                    assert!(m.starts_with(&format!("op-a#{nonce}:")));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(kinds.len(), 2, "{kinds:?}");
    }
}
