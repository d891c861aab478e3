//! Forwarding to a session's owner, in a cluster: an interrupt or a user message posted to
//! an instance that does not run the session goes to the instance that does (its
//! `[cluster] advertise_url`, from the members table), with the caller's own credentials,
//! and the owner's answer comes back as is. A forwarded request is never forwarded again.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{ApiError, ApiState};

/// The header a forwarded request carries (the forwarding instance's id).
pub(super) const FORWARDED: &str = "x-ccr-forwarded-by";

/// How long the owner may take (an interrupt waits for the session's acknowledgement).
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// When clustered and `session` is run by another instance, the owner's answer to this
/// request; `None` when it is to be served here (not clustered, owned here, or already
/// forwarded once).
pub(super) async fn to_owner(
    state: &ApiState,
    req: &HttpRequest,
    session: &str,
    body: web::Bytes,
) -> Result<Option<HttpResponse>, ApiError> {
    let Some(pg) = state.ledger.as_ref().and_then(|l| l.postgres()) else {
        return Ok(None);
    };
    if req.headers().contains_key(FORWARDED) {
        return Ok(None);
    }
    let owner = pg
        .owner_of(session)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot find the session's owner: {e}")))?;
    let me = pg.instance_id().to_owned();
    let (owner, url) = match owner {
        None => return Err(ApiError::NotConnected(session.to_owned())),
        Some((owner, _)) if owner == me => return Ok(None),
        Some((owner, Some(url))) => (owner, url),
        Some((owner, None)) => {
            return Err(ApiError::Unavailable(format!(
                "session {session} runs on instance {owner}, which has no [cluster] advertise_url to forward to"
            )))
        }
    };
    let target = format!(
        "{}{}",
        url.trim_end_matches('/'),
        req.uri()
            .path_and_query()
            .map_or(req.path(), |p| p.as_str())
    );
    let client = awc::Client::builder().timeout(FORWARD_TIMEOUT).finish();
    let mut out = client
        .request(req.method().clone(), &target)
        .insert_header((FORWARDED, me));
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::COOKIE] {
        if let Some(v) = req.headers().get(&name) {
            out = out.insert_header((name, v.clone()));
        }
    }
    let mut resp = out.send_body(body).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "session {session}'s owner {owner} did not answer: {e}"
        ))
    })?;
    let bytes = resp.body().limit(1 << 20).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "session {session}'s owner {owner} answered badly: {e}"
        ))
    })?;
    let mut answer = HttpResponse::build(resp.status());
    if let Some(ct) = resp.headers().get(header::CONTENT_TYPE) {
        answer.insert_header((header::CONTENT_TYPE, ct.clone()));
    }
    Ok(Some(answer.body(bytes)))
}
