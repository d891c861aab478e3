//! The server-side WebSocket actor: one per upgrade attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, AsyncContext, Handler, Message, StreamHandler};
use actix_web_actors::ws;
use bytes::Bytes;
use serde_json::Value;

use super::runner;
use super::socket::{ReadGate, SocketId};
use super::state::{Admission, Shared};
use super::{SimEvent, REPLACED_CLOSE_CODE};

/// Something to do on the socket, sent by the handle or the script runner.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub(crate) enum Out {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
    /// Close with this code, then stop.
    Close(u16),
    /// Stop without a close frame (the TCP connection just ends).
    Drop,
    /// Send a close frame, then stop when the client answers it or after `grace`.
    Shutdown {
        /// Close code.
        code: u16,
        /// Longest wait for the client's close reply.
        grace: Duration,
    },
    /// Abort the TCP connection with a reset (RST, no close frame, unread data discarded).
    Reset,
    /// Stop reading the socket for this long (a slow reader: the client's frames
    /// and pings wait in the buffers; the simulator keeps writing).
    PauseReading(Duration),
}

/// One WebSocket connection of a session.
pub(crate) struct WsConn {
    shared: Arc<Shared>,
    session: String,
    admission: Admission,
    attached: bool,
    /// A close frame went out; nothing else may be sent.
    closing: bool,
    last_seen: Instant,
    /// Pauses reading the client's frames ([`Out::PauseReading`]).
    gate: Arc<ReadGate>,
    /// The TCP socket, for [`Out::Reset`].
    socket: Option<SocketId>,
    /// Bumped by every pause, so that only the latest one's timer resumes reading.
    pauses: u64,
}

impl WsConn {
    /// A connection already admitted or rejected by [`Shared::admit`], reading
    /// through `gate`, on TCP socket `socket` when known.
    pub(crate) fn new(
        shared: Arc<Shared>,
        session: String,
        admission: Admission,
        gate: Arc<ReadGate>,
        socket: Option<SocketId>,
    ) -> Self {
        WsConn {
            shared,
            session,
            admission,
            attached: false,
            closing: false,
            last_seen: Instant::now(),
            gate,
            socket,
            pauses: 0,
        }
    }

    fn on_frame(&mut self, raw: String, frame: Value, ctx: &mut ws::WebsocketContext<Self>) {
        let conn = match self.admission {
            Admission::Accept(conn) => conn,
            Admission::Reject(_) => return,
        };
        for reply in self.shared.on_client_frame(&self.session, conn, raw, frame) {
            ctx.text(reply.to_string());
        }
    }
}

fn close(ctx: &mut ws::WebsocketContext<WsConn>, code: u16) {
    ctx.close(Some(ws::CloseReason {
        code: ws::CloseCode::from(code),
        description: None,
    }));
    ctx.stop();
}

impl Actor for WsConn {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let conn_id = match self.admission {
            Admission::Reject(code) => {
                tracing::debug!(session = %self.session, code, "sim rejects connection");
                return close(ctx, code);
            }
            Admission::Accept(conn_id) => conn_id,
        };
        let Some(attached) = self.shared.attach(&self.session, conn_id, ctx.address()) else {
            // Removed between admission and start: same answer as for an unknown id.
            self.shared.emit(SimEvent::Rejected {
                session: self.session.clone(),
                code: 4001,
            });
            return close(ctx, 4001);
        };
        self.attached = true;
        tracing::debug!(session = %self.session, conn_id, replay = attached.replay.len(), "sim connection live");
        if let Some(old) = attached.replaced {
            old.do_send(Out::Close(REPLACED_CLOSE_CODE));
        }
        for frame in attached.replay {
            ctx.text(frame);
        }
        let fut = runner::run(
            self.shared.clone(),
            self.session.clone(),
            conn_id,
            ctx.address(),
        );
        ctx.spawn(actix::fut::wrap_future(fut));
        let idle = self.shared.idle_timeout;
        let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        ctx.run_interval(every, move |act, ctx| {
            if act.last_seen.elapsed() > idle {
                tracing::debug!(session = %act.session, "sim closes idle connection");
                close(ctx, 1001);
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let (true, Admission::Accept(conn_id)) = (self.attached, self.admission) {
            self.shared.detach(&self.session, conn_id);
        }
    }
}

impl Handler<Out> for WsConn {
    type Result = ();

    fn handle(&mut self, msg: Out, ctx: &mut Self::Context) {
        if self.closing {
            return;
        }
        match msg {
            Out::Text(t) => ctx.text(t),
            Out::Binary(b) => ctx.binary(b),
            Out::Close(code) => close(ctx, code),
            // No close frame: the response stream ends and the socket is dropped.
            Out::Drop => ctx.stop(),
            Out::Reset => {
                if !self.socket.is_some_and(|s| s.abort()) {
                    tracing::debug!(session = %self.session, "sim cannot reset; dropping instead");
                }
                ctx.stop();
            }
            Out::PauseReading(d) => {
                self.pauses += 1;
                let pause = self.pauses;
                self.gate.set_paused(true);
                ctx.run_later(d, move |act, _| {
                    if act.pauses == pause {
                        act.gate.set_paused(false);
                    }
                });
            }
            Out::Shutdown { code, grace } => {
                // Waiting for the reply proves the close frame reached the client,
                // so the server can then drop connections without losing it.
                self.closing = true;
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::from(code),
                    description: None,
                }));
                ctx.run_later(grace, |_, ctx| ctx.stop());
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsConn {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match item {
            Ok(msg) => msg,
            Err(err) => {
                tracing::debug!(session = %self.session, %err, "sim socket protocol error");
                return ctx.stop();
            }
        };
        self.last_seen = Instant::now();
        if !self.attached {
            return;
        }
        let deaf = || self.shared.read(&self.session, |e| e.deaf).unwrap_or(false);
        match msg {
            ws::Message::Text(_) | ws::Message::Binary(_) if deaf() => {}
            ws::Message::Text(text) => {
                let frame =
                    serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.to_string()));
                self.on_frame(text.to_string(), frame, ctx);
            }
            ws::Message::Binary(b) => {
                let placeholder = format!("<binary {} bytes>", b.len());
                self.on_frame(placeholder.clone(), Value::String(placeholder), ctx);
            }
            ws::Message::Ping(payload) => {
                let paused = self
                    .shared
                    .read(&self.session, |e| e.paused)
                    .unwrap_or(false);
                if !paused {
                    ctx.pong(&payload);
                }
            }
            ws::Message::Close(reason) => {
                if !self.closing {
                    ctx.close(reason);
                }
                ctx.stop();
            }
            ws::Message::Pong(_) | ws::Message::Continuation(_) | ws::Message::Nop => {}
        }
    }
}
