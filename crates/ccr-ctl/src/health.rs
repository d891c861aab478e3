//! `ctl health`: is the service ready? `GET /readyz` (no token), for container health
//! checks and scripts: exit 0 when ready, 1 when not ready (the reasons printed) or
//! when the API cannot be reached.

use ccr_protocol::reply::ReadyState;

use crate::client::{Client, CtlError};

/// Ask `/readyz` and print the verdict (`--json`: the body as sent).
pub fn run(client: &Client, json: bool) -> Result<(), CtlError> {
    let (status, body) = client.get_with_status("/readyz")?;
    let line = verdict(status, &body)?;
    println!("{}", if json { body.trim_end() } else { line.as_str() });
    Ok(())
}

/// `ready` for a 200 `{"ready":true}`; [`CtlError::NotReady`] with the reasons for a 503
/// `{"ready":false,..}`; anything else is not an answer of `/readyz`. Pure.
pub fn verdict(status: u16, body: &str) -> Result<String, CtlError> {
    let state: ReadyState = serde_json::from_str(body).map_err(|_| {
        if (200..300).contains(&status) {
            CtlError::Protocol(format!(
                "GET /readyz answered {status} with an unexpected body"
            ))
        } else {
            CtlError::from_response(status, body)
        }
    })?;
    if state.ready && status == 200 {
        return Ok("ready".into());
    }
    let reasons = if state.reasons.is_empty() {
        format!("GET /readyz answered {status}")
    } else {
        crate::sanitize::clean(&state.reasons.join("; ")).into_owned()
    };
    Err(CtlError::NotReady(reasons))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_not_ready_and_other_answers() {
        assert_eq!(
            verdict(200, r#"{"ready":true,"reasons":[]}"#).unwrap(),
            "ready"
        );
        let not = verdict(
            503,
            r#"{"ready":false,"reasons":["the ledger is not writable","x"]}"#,
        )
        .unwrap_err();
        assert_eq!(not.to_string(), "not ready: the ledger is not writable; x");
        assert_eq!(not.exit_code(), 1);
        let other =
            verdict(401, r#"{"error":{"code":"unauthorized","message":"no"}}"#).unwrap_err();
        assert_eq!(other.to_string(), "unauthorized: no");
        assert!(matches!(verdict(200, "<html>"), Err(CtlError::Protocol(_))));
    }
}
