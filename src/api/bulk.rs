//! `POST /v1/decisions` (approver): many answers in one request, each answered on its own.
//!
//! Every item goes to the registry as the single route's [`Decide`], so each gets exactly
//! the single route's checks, status and error code. At most [`IN_FLIGHT`] items wait on
//! the registry at once. Items naming the same prompt go in successive rounds: the second
//! is sent only after the first was answered, so the registry (not this batch) says that it
//! was already answered.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use futures_util::stream::{self, StreamExt};

use super::auth::Approver;
use super::{ApiError, ApiState};
use crate::registry::Decide;
use ccr_protocol::api::{AnswerBody, BulkAnswer, BulkDecisions};
use ccr_protocol::error::ErrorDetail;
use ccr_protocol::reply::{BulkResult, BulkResults};

/// Most items of one batch waiting on the registry at once.
const IN_FLIGHT: usize = 32;

/// Answer several permission prompts at once (1 to 1000), each on its own.
///
/// Each item names its prompt beside the single answer's fields. A body error in any item
/// refuses the whole request (400, nothing answered); otherwise 200 with one result per
/// item, in order: the status, receipt or error (`unknown_session`, `unknown_prompt`,
/// `already_answered`, `prompt_cancelled`, `ledger_unavailable`, `unavailable`) the single
/// route would give. A prompt named twice is answered once: the repeat is 409
/// `already_answered`.
#[utoipa::path(post, path = "/v1/decisions", tag = "prompts", request_body = BulkDecisions,
    responses((status = 200, description = "One result per item, in order", body = BulkResults)))]
pub async fn answer_many(
    Approver(who): Approver,
    state: web::Data<ApiState>,
    body: web::Json<BulkDecisions>,
) -> Result<HttpResponse, ApiError> {
    let items = body
        .into_inner()
        .validate()
        .map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    let results = answer_all(&state, items, &who.name).await;
    Ok(HttpResponse::Ok().json(BulkResults { results }))
}

/// Each item's round: 0 for the first item naming its prompt, 1 for the second, ...
fn rounds(items: &[BulkAnswer]) -> Vec<usize> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(items.len());
    items
        .iter()
        .map(|i| {
            let n = seen
                .entry((i.session_id.as_str(), i.request_id.as_str()))
                .or_default();
            *n += 1;
            *n - 1
        })
        .collect()
}

async fn answer_all(state: &ApiState, items: Vec<BulkAnswer>, who: &str) -> Vec<BulkResult> {
    let round_of = rounds(&items);
    let last_round = round_of.iter().copied().max().unwrap_or(0);
    let mut by_round: Vec<Vec<(usize, BulkAnswer)>> = vec![Vec::new(); last_round + 1];
    for (index, item) in items.into_iter().enumerate() {
        by_round[round_of[index]].push((index, item));
    }
    let mut results: Vec<Option<BulkResult>> = vec![None; round_of.len()];
    for round in by_round {
        let answered: Vec<(usize, BulkResult)> = stream::iter(round)
            .map(|(index, item)| async move { (index, answer_one(state, item, who).await) })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (index, result) in answered {
            results[index] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every item is in one round"))
        .collect()
}

/// One item, exactly as `POST /v1/sessions/{id}/permissions/{request_id}` answers it.
async fn answer_one(state: &ApiState, item: BulkAnswer, who: &str) -> BulkResult {
    let BulkAnswer {
        session_id,
        request_id,
        body,
    } = item;
    let decided = state
        .registry
        .send(Decide {
            session_id: Arc::from(session_id.as_str()),
            request_id: request_id.clone(),
            body: AnswerBody::Permission(body),
            decided_by: who.to_owned(),
        })
        .await
        .map_err(ApiError::from)
        .and_then(|r| r.map_err(ApiError::from));
    let (status, receipt, error) = match decided {
        Ok(receipt) => (200, Some(receipt), None),
        Err(e) => {
            let code = e.code();
            let detail = ErrorDetail {
                code: code.name().to_owned(),
                message: e.to_string(),
            };
            (code.status(), None, Some(detail))
        }
    };
    BulkResult {
        session_id,
        request_id,
        status,
        receipt,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccr_protocol::api::DecisionBody;

    fn item(s: &str, r: &str) -> BulkAnswer {
        BulkAnswer {
            session_id: s.into(),
            request_id: r.into(),
            body: DecisionBody::Deny {
                message: None,
                interrupt: None,
            },
        }
    }

    #[test]
    fn a_repeated_prompt_waits_for_the_round_after_its_previous_mention() {
        let items = [
            item("s1", "r1"),
            item("s1", "r2"),
            item("s1", "r1"),
            item("s2", "r1"),
            item("s1", "r1"),
            item("s1", "r2"),
        ];
        assert_eq!(rounds(&items), vec![0, 0, 1, 0, 2, 1]);
    }
}
