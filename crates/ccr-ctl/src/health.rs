//! `ctl health`: `GET /readyz` (no token needed), exit 0 when ready, 1 when not or unreachable.

use std::io::Write;

use ccr_protocol::reply::ReadyState;

use super::client::{Client, CtlError};
use super::sanitize;

/// The text for a `/readyz` answer: `ready`, or `not ready` and one reason a line.
pub fn readiness(state: &ReadyState) -> String {
    if state.ready {
        return "ready".into();
    }
    let mut out = String::from("not ready");
    for r in &state.reasons {
        out.push_str("\n  - ");
        out.push_str(&sanitize::clean(r));
    }
    out
}

/// Ask `/readyz`; print the answer (or, with `--json`, its body); fail when not ready.
pub fn run(client: &Client, json: bool) -> Result<(), CtlError> {
    let (status, body) = client.get_any("/readyz")?;
    let state: ReadyState = match serde_json::from_str(&body) {
        Ok(s) => s,
        Err(_) if !(200..300).contains(&status) => {
            return Err(CtlError::from_response(status, &body))
        }
        Err(e) => {
            return Err(CtlError::Protocol(format!(
                "the API answered with an unexpected body: {e}"
            )))
        }
    };
    let text = if json {
        sanitize::escape_json(body.trim_end()).into_owned()
    } else {
        readiness(&state)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = writeln!(out, "{text}");
    if state.ready && (200..300).contains(&status) {
        Ok(())
    } else {
        Err(CtlError::NotReady)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_not_ready() {
        let ok = ReadyState {
            ready: true,
            reasons: vec![],
        };
        assert_eq!(readiness(&ok), "ready");
        let not = ReadyState {
            ready: false,
            reasons: vec!["the ledger is not writable".into(), "x\u{1b}[2Jy".into()],
        };
        assert_eq!(
            readiness(&not),
            "not ready\n  - the ledger is not writable\n  - xy"
        );
    }
}
