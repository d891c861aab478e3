//! One load-mode connection: a reader task, a writer task, and the response
//! body stream that hands their frames to actix-http.
//!
//! Frames go through a small bounded channel that the body stream drains only
//! when actix-http has room to write, so a slow peer slows the writer down
//! instead of growing a buffer. Both tasks run on the worker thread that
//! accepted the connection; the prompts are booked in the session's `Book` (shared by
//! all its connections, behind a lock that is only ever contended across a reconnect).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Message};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{Stream, StreamExt};
use rand::Rng;
use serde_json::Value;
use tokio::sync::mpsc;

use super::load::{LoadMode, LoadShared};
use super::load_book::Answer;
use super::load_frames::{prompt_frames, prompt_id, SdkTemplates};

/// Frames queued per connection before the writer waits for the socket.
const QUEUE: usize = 16;

/// What the tasks hand to the body stream.
enum Out {
    /// An SDK frame of session `index` (counted as delivered when written).
    Sdk(Bytes),
    /// Any other frame.
    Other(Bytes),
    /// End the connection (after flushing what is queued).
    End,
}

fn encode(msg: Message) -> Bytes {
    let mut buf = BytesMut::new();
    // Encoding a well-formed server message cannot fail.
    let _ = Codec::new().encode(msg, &mut buf);
    buf.freeze()
}

fn text(s: String) -> Bytes {
    encode(Message::Text(ByteString::from(s)))
}

fn close_frame(code: u16) -> Bytes {
    encode(Message::Close(Some(CloseReason {
        code: CloseCode::from(code),
        description: None,
    })))
}

/// Decrements the live counts (all, and its session's when it has one) when the
/// connection's body is dropped.
struct LiveGuard(web::Data<LoadShared>, Option<usize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Some(i) = self.1 {
            self.0.live_per_session[i].fetch_sub(1, Ordering::SeqCst);
        }
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The response body: frames from the channel, then a hang-up.
struct Body {
    rx: mpsc::Receiver<Out>,
    shared: web::Data<LoadShared>,
    index: usize,
    ending: bool,
    done: bool,
    _live: LiveGuard,
}

impl Stream for Body {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.ending {
            // An error (not a clean end) makes actix-http drop the TCP connection,
            // as a real server does after its close frame.
            self.done = true;
            let err = actix_web::error::ErrorInternalServerError("sim: hang up");
            return Poll::Ready(Some(Err(err)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Out::Sdk(b))) => {
                self.shared.delivered[self.index].fetch_add(1, Ordering::Relaxed);
                self.shared.sdk_delivered.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Out::Other(b))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(Some(Out::End)) | Poll::Ready(None) => {
                // Let the dispatcher flush the close frame before the hang-up.
                self.ending = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `GET /v1/sessions/ws/{id}/subscribe` in load mode.
pub(crate) async fn subscribe(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    shared: web::Data<LoadShared>,
) -> Result<HttpResponse, actix_web::Error> {
    shared.record_attempt();
    let session = path.into_inner();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut response = actix_web_actors::ws::handshake(&req)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let index = shared.index(&session);
    let reject = match (index, bearer == Some(shared.opts.token.as_str())) {
        (None, _) => Some(4001),
        (Some(_), false) => Some(4003),
        _ => None,
    };
    shared.live.fetch_add(1, Ordering::SeqCst);
    let counted = index.filter(|_| reject.is_none());
    if let Some(i) = counted {
        if shared.live_per_session[i].fetch_add(1, Ordering::SeqCst) > 0 {
            shared.doubled.fetch_add(1, Ordering::Relaxed);
        }
        shared.accepted_per_session[i].fetch_add(1, Ordering::SeqCst);
    }
    let body = Body {
        rx,
        shared: shared.clone(),
        index: index.unwrap_or(0),
        ending: false,
        done: false,
        _live: LiveGuard(shared.clone(), counted),
    };
    if let Some(code) = reject {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        // The body counts as live until it ends; it ends at once.
        let _ = tx.try_send(Out::Other(close_frame(code)));
        let _ = tx.try_send(Out::End);
        return Ok(response.streaming(body));
    }
    let index = index.expect("accepted sessions have an index");
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    shared.accepted_since_mark.fetch_add(1, Ordering::SeqCst);
    actix_rt::spawn(read(
        payload,
        tx.clone(),
        shared.clone().into_inner(),
        index,
    ));
    actix_rt::spawn(write(tx, shared.into_inner(), session, index));
    Ok(response.streaming(body))
}

/// Decode client frames: pongs, close echo, and answers to our prompts.
async fn read(
    mut payload: web::Payload,
    tx: mpsc::Sender<Out>,
    shared: std::sync::Arc<LoadShared>,
    index: usize,
) {
    let mut codec = Codec::new().max_size(16 << 20);
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else { break };
        buf.extend_from_slice(&chunk);
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    let _ = tx.send(Out::End).await;
                    return;
                }
            };
            match frame {
                Frame::Ping(p) => {
                    let _ = tx.send(Out::Other(encode(Message::Pong(p)))).await;
                }
                Frame::Close(reason) => {
                    let _ = tx.send(Out::Other(encode(Message::Close(reason)))).await;
                    let _ = tx.send(Out::End).await;
                    return;
                }
                Frame::Text(t) => {
                    if let Some(reply) = initialize_reply(&t, &shared, index) {
                        let _ = tx
                            .send(Out::Other(encode(Message::Text(reply.into()))))
                            .await;
                    } else {
                        on_answer(&t, &shared, index);
                    }
                }
                _ => {}
            }
        }
    }
    let _ = tx.send(Out::End).await;
}

/// The reply to a client's `initialize`, as a current CLI sends it: the session's
/// unanswered prompts in `pending_permission_requests` (none, unless an earlier
/// connection ended with prompts unanswered); `None` for any other frame.
fn initialize_reply(text: &[u8], shared: &LoadShared, index: usize) -> Option<String> {
    memchr::memmem::find(text, b"\"initialize\"")?;
    let v = serde_json::from_slice::<Value>(text).ok()?;
    if v.pointer("/request/subtype").and_then(Value::as_str) != Some("initialize") {
        return None;
    }
    let id = v.get("request_id")?.as_str()?;
    let pending: Vec<Value> = shared.books[index]
        .lock()
        .pending_frames()
        .into_iter()
        .filter_map(|f| serde_json::from_str(f).ok())
        .collect();
    shared
        .replayed
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
    Some(
        serde_json::json!({"type":"control_response","response":{"subtype":"success",
            "request_id":id,"response":{},"pending_permission_requests":pending,
            "pending_user_dialog_requests":[],"pending_elicitation_requests":[]}})
        .to_string(),
    )
}

fn on_answer(text: &[u8], shared: &LoadShared, index: usize) {
    let Ok(v) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    if v.get("type").and_then(Value::as_str) != Some("control_response") {
        return;
    }
    let Some(id) = v.pointer("/response/request_id").and_then(Value::as_str) else {
        return;
    };
    let answer = shared.books[index].lock().answer(id);
    match answer {
        Answer::First(sent) => {
            shared.record_latency(sent.elapsed());
            shared.answered.fetch_add(1, Ordering::Relaxed);
            shared.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
        Answer::Duplicate => {
            shared.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        Answer::Unknown => {
            shared.unknown_answers.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Generate this session's traffic while running; close on a drop signal.
async fn write(
    tx: mpsc::Sender<Out>,
    shared: std::sync::Arc<LoadShared>,
    session: String,
    index: usize,
) {
    let mut drop_rx = shared.drop_signal.subscribe();
    drop_rx.borrow_and_update();
    let mut running = shared.running.subscribe();
    let templates = match shared.opts.mode {
        LoadMode::Flood => Some(SdkTemplates::new(&session, shared.opts.frame_bytes)),
        _ => None,
    };
    let n = shared.opts.sessions as f64;
    let period = (shared.opts.rate > 0.0).then(|| Duration::from_secs_f64(n / shared.opts.rate));
    loop {
        // Idle until traffic is switched on (always, in idle mode).
        while !*running.borrow_and_update() || shared.opts.mode == LoadMode::Idle {
            tokio::select! {
                _ = drop_rx.changed() => return hang_up(&tx, drop_rx.borrow().1).await,
                _ = tx.closed() => return,
                r = running.changed() => if r.is_err() { return },
            }
        }
        let mut ticker = period.map(|p| {
            let phase = p.mul_f64(rand::thread_rng().gen::<f64>());
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + phase, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        while shared.running_flag.load(Ordering::Relaxed) {
            if let Some(t) = ticker.as_mut() {
                tokio::select! {
                    _ = drop_rx.changed() => return hang_up(&tx, drop_rx.borrow().1).await,
                    _ = running.changed() => continue,
                    _ = t.tick() => {}
                }
            }
            let (first, prompt) = match &templates {
                Some(t) => {
                    let seq = shared.next_seq[index].fetch_add(1, Ordering::Relaxed);
                    shared.sdk_enqueued.fetch_add(1, Ordering::Relaxed);
                    (Out::Sdk(text(t.render(seq))), None)
                }
                None => {
                    let n = shared.next_seq[index].fetch_add(1, Ordering::Relaxed);
                    let id = prompt_id(&session, n);
                    let (assistant, prompt) = prompt_frames(&session, &id, n);
                    (Out::Other(text(assistant)), Some((id, prompt)))
                }
            };
            if !send(&tx, &mut drop_rx, first).await {
                return;
            }
            if let Some((id, frame)) = prompt {
                let out = Out::Other(text(frame.clone()));
                // The clock starts when the prompt is handed to the socket's queue.
                shared.books[index].lock().sent(id, frame, Instant::now());
                shared.prompts_sent.fetch_add(1, Ordering::Relaxed);
                shared.outstanding.fetch_add(1, Ordering::Relaxed);
                if !send(&tx, &mut drop_rx, out).await {
                    return;
                }
            }
        }
    }
}

/// Queue `out`, or hang up on a drop signal; false when the connection is over.
async fn send(
    tx: &mpsc::Sender<Out>,
    drop_rx: &mut tokio::sync::watch::Receiver<(u64, u16)>,
    out: Out,
) -> bool {
    tokio::select! {
        biased;
        _ = drop_rx.changed() => {
            let code = drop_rx.borrow().1;
            hang_up(tx, code).await;
            false
        }
        r = tx.send(out) => r.is_ok(),
    }
}

async fn hang_up(tx: &mpsc::Sender<Out>, code: u16) {
    let _ = tx.send(Out::Other(close_frame(code))).await;
    let _ = tx.send(Out::End).await;
}
