//! `[api] request_body_timeout`: a request body must arrive in full within this long
//! once its head is in, however slowly it trickles.
//!
//! actix-web times out only the request head (`client_request_timeout`); a client
//! with a valid token could otherwise hold a request open forever by stalling its
//! body. A middleware wraps every request payload in a [`Deadline`] stream that
//! fails with [`BodyTimedOut`] once the limit has passed; the JSON extractor's
//! error handler turns that into 408 `request_timeout`, and actix-http closes the
//! connection because the body was never read to its end. Bodiless requests and
//! upgrades (an event-stream WebSocket's payload lives as long as the socket) are
//! left alone.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::HttpMessage as _;
use futures_util::{Stream, StreamExt};
use tokio::time::Sleep;

use super::{ApiError, ApiState};

/// The error inside the `PayloadError::Io` a [`Deadline`] yields when time is up.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in full within {} ([api] request_body_timeout)", humantime::format_duration(*.0))]
pub struct BodyTimedOut(pub Duration);

/// A request payload that fails with [`BodyTimedOut`] once its deadline has passed.
pub struct Deadline {
    inner: Payload,
    timer: Pin<Box<Sleep>>,
    limit: Duration,
    done: bool,
}

impl Deadline {
    /// Wrap `inner`; the clock starts now.
    pub fn new(inner: Payload, limit: Duration) -> Self {
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep(limit)),
            limit,
            done: false,
        }
    }
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Bytes already received are delivered; the deadline counts only while waiting.
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    self.done = true;
                    let e = io::Error::new(io::ErrorKind::TimedOut, BodyTimedOut(self.limit));
                    Poll::Ready(Some(Err(PayloadError::Io(e))))
                }
            },
        }
    }
}

/// The [`BodyTimedOut`] inside a payload error, if that is what it is.
pub fn timed_out(e: &PayloadError) -> Option<&BodyTimedOut> {
    match e {
        PayloadError::Io(io) => io.get_ref()?.downcast_ref::<BodyTimedOut>(),
        _ => None,
    }
}

/// The API error for a JSON body that could not be read.
pub fn json_error(err: JsonPayloadError) -> ApiError {
    match &err {
        JsonPayloadError::Payload(p) => match timed_out(p) {
            Some(t) => ApiError::RequestTimeout(t.to_string()),
            None => ApiError::InvalidBody(err.to_string()),
        },
        _ => ApiError::InvalidBody(err.to_string()),
    }
}

/// Middleware (`actix_web::middleware::from_fn`): put every request body that has one
/// under `[api] request_body_timeout`, read from the app's [`ApiState`].
pub async fn limit_body_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limit = req
        .app_data::<web::Data<ApiState>>()
        .map(|s| s.request_body_timeout);
    if let Some(limit) = limit {
        if !req.head().upgrade() {
            match req.take_payload() {
                Payload::None => {}
                payload => {
                    let stream: actix_http::BoxedPayloadStream =
                        Box::pin(Deadline::new(payload, limit));
                    req.set_payload(Payload::from(stream));
                }
            }
        }
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_complete_body_passes_and_a_stalled_one_times_out() {
        let done = Deadline::new(Payload::from(Bytes::from_static(b"{}")), Duration::ZERO);
        let got: Vec<_> = done.collect().await;
        assert!(matches!(&got[..], [Ok(b)] if b == "{}"), "{got:?}");

        let (mut tx, rx) = actix_http::h1::Payload::create(false);
        tx.feed_data(Bytes::from_static(b"{\"a"));
        let mut slow = Deadline::new(Payload::from(rx), Duration::from_millis(20));
        assert_eq!(slow.next().await.unwrap().unwrap(), "{\"a");
        let err = slow.next().await.unwrap().unwrap_err();
        let t = timed_out(&err).expect("our timeout");
        assert_eq!(t.0, Duration::from_millis(20));
        assert!(t.to_string().contains("20ms"), "{t}");
        assert!(slow.next().await.is_none(), "ends after the error");
        drop(tx);

        assert!(timed_out(&PayloadError::Incomplete(None)).is_none());
        let other = JsonPayloadError::Payload(PayloadError::Overflow);
        assert_eq!(json_error(other).code().name(), "invalid_body");
        let late = JsonPayloadError::Payload(err);
        assert_eq!(json_error(late).code().name(), "request_timeout");
    }
}
