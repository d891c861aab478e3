//! The session actor's message handlers: deliver an answer, report status, close,
//! interrupt, send a user message.

use super::*;
use crate::session::send::post_user_message;

impl Handler<Deliver> for SessionActor {
    type Result = MessageResult<Deliver>;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> Self::Result {
        let _span = info_span!("deliver", request_id = %msg.request_id).entered();
        // In a cluster, only while this instance holds the session's lease: one paused past
        // it finds the deadline gone when it wakes, before its lease loop says so.
        if !self.lease_held() {
            warn!("lease not held now: the answer is not written (it waits for the lease's renewal, or for the next owner)");
            return MessageResult(WriteOutcome::LeaseLapsed);
        }
        MessageResult(match self.conn.as_mut() {
            Some(live) if live.id == msg.conn => {
                let ok = live
                    .sink
                    .write(WsMessage::Text(ByteString::from(&*msg.frame)))
                    .is_ok();
                debug!(ok, "permission answer written");
                if ok {
                    WriteOutcome::Written
                } else {
                    WriteOutcome::NotWritten
                }
            }
            _ => WriteOutcome::NotWritten,
        })
    }
}

impl Handler<GetStatus> for SessionActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.current_status())
    }
}

impl Handler<LeaseRenewed> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: LeaseRenewed, ctx: &mut Context<Self>) {
        self.lease_maybe_renewed(ctx);
    }
}

impl Handler<AbandonSession> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: AbandonSession, ctx: &mut Context<Self>) {
        self.closing = true;
        if self.conn.take().is_some() {
            info!("lease lost: dropping the connection without sending anything");
        }
        self.set_state(SessionState::Disconnected);
        ctx.stop();
    }
}

impl Handler<CloseSession> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: CloseSession, ctx: &mut Context<Self>) {
        self.closing = true;
        match self.conn.as_mut() {
            Some(live) => {
                info!("closing connection (1000)");
                let _ = live.sink.write(WsMessage::Close(Some(CloseReason {
                    code: CloseCode::Normal,
                    description: None,
                })));
                // Wait for the server's close to finish the stream, but not forever.
                let grace = self.shared.ccr.pong_timeout;
                ctx.run_later(grace, |act, ctx| {
                    if act.conn.is_some() {
                        act.on_ended(Ended::Closed { code: Some(1000) }, None, ctx);
                    }
                });
            }
            None => {
                self.set_state(SessionState::Disconnected);
                ctx.stop();
            }
        }
    }
}

impl Handler<InterruptSession> for SessionActor {
    type Result = ResponseActFuture<Self, Result<InterruptAnswer, SessionError>>;

    fn handle(&mut self, msg: InterruptSession, ctx: &mut Context<Self>) -> Self::Result {
        if self.spec.viewer_only {
            return Box::pin(actix::fut::ready(Err(SessionError::ViewerOnly)));
        }
        if !self.lease_held() {
            return Box::pin(actix::fut::ready(Err(SessionError::LeaseNotHeld)));
        }
        if self.conn.is_none() {
            return Box::pin(actix::fut::ready(Err(SessionError::NotConnected)));
        }
        let (request_id, frame, rx) = self.router.interrupt(msg.cancel_queued, Instant::now());
        if !self.write(frame) {
            self.router.forget(&request_id);
            return Box::pin(actix::fut::ready(Err(SessionError::NotConnected)));
        }
        info!(%request_id, cancel_queued = msg.cancel_queued, "interrupt sent");
        self.arm_watchdog(ctx);
        let timeout = self.shared.ccr.interrupt_timeout;
        Box::pin(
            tokio::time::timeout(timeout, rx)
                .into_actor(self)
                .map(move |res, act, _| {
                    act.router.forget(&request_id);
                    match res {
                        Err(_) => Err(SessionError::Timeout(timeout)),
                        Ok(Err(_)) => Err(SessionError::ConnectionLost),
                        Ok(Ok(Err(message))) => Err(SessionError::Rejected(message)),
                        Ok(Ok(Ok(response))) => Ok(InterruptAnswer::new(request_id, response)),
                    }
                }),
        )
    }
}

impl Handler<SendUserMessage> for SessionActor {
    type Result = ResponseActFuture<Self, Result<SentMessage, SessionError>>;

    fn handle(&mut self, msg: SendUserMessage, _: &mut Context<Self>) -> Self::Result {
        if self.spec.viewer_only {
            return Box::pin(actix::fut::ready(Err(SessionError::ViewerOnly)));
        }
        if !self.lease_held() {
            return Box::pin(actix::fut::ready(Err(SessionError::LeaseNotHeld)));
        }
        let mut ccr = self.shared.ccr.clone();
        if let Some(org) = &self.spec.organization_uuid {
            ccr.organization_uuid = org.clone();
        }
        let post = post_user_message(
            self.client(),
            ccr,
            events_url(self.spec.base_url(&self.shared.base_url), &self.spec.id),
            TokenSource::from_spec(&self.spec.token),
            self.spec.id.clone(),
            msg.content,
        );
        Box::pin(post.into_actor(self).map(|res, act, ctx| {
            if res.is_ok() {
                // The session should now say something (the echo, at least).
                act.router.sent(Instant::now());
                act.arm_watchdog(ctx);
            }
            res
        }))
    }
}

#[cfg(feature = "test-hooks")]
impl Handler<InjectPanic> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        panic!("injected panic (test-hooks feature)");
    }
}
