//! The access log: one line per request (method, route pattern, status, latency, token
//! name, request id), and the `X-Request-Id` header, honoured when the caller sends one
//! and returned on every response.
//!
//! The line names the route's pattern (`/v1/sessions/{id}`), never the query string, so a
//! secret a client put in a query never reaches the log. Its target is
//! `ccr_supervisor::access`: `RUST_LOG=info,ccr_supervisor::access=warn` silences it.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage as _;

/// The header that carries a request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The log target of access lines.
pub const TARGET: &str = "ccr_supervisor::access";

/// The name of the token (or console sign-in) a request was authenticated as, left in the
/// request's extensions by [`super::identify`] for the access log.
#[derive(Debug, Clone)]
pub struct Caller(pub std::sync::Arc<str>);

/// A caller's `X-Request-Id` if it is usable as a log field (1..=128 characters of
/// letters, digits and `-_.:/+=`), so a client cannot forge log structure with it.
pub fn usable_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
}

/// Middleware: take or make the request id, run the request, log it, return the id.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| usable_id(v))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let method = req.method().clone();
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    // The route and caller are looked up only when the line is going to be written.
    if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "(no route)".to_owned());
        let caller = res
            .request()
            .extensions()
            .get::<Caller>()
            .map_or_else(|| "-".to_owned(), |c| c.0.to_string());
        let status = res.status().as_u16();
        tracing::info!(
            target: TARGET,
            method = %method,
            route = %route,
            status,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            token = %caller,
            http_request_id = %id,
            "{method} {route} {status}"
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_taken_from_the_caller() {
        for ok in ["abc", "0f5e-11", "trace:1/2+3=", &"x".repeat(128)] {
            assert!(usable_id(ok), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\nb", "{}", &"x".repeat(129), "é"] {
            assert!(!usable_id(bad), "{bad:?}");
        }
    }
}
