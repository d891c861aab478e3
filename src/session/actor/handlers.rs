//! The session actor's message handlers: deliver an answer, report status, close,
//! interrupt, send a user message.

use super::*;

impl Handler<Deliver> for SessionActor {
    type Result = bool;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> bool {
        let _span = info_span!("deliver", request_id = %msg.request_id).entered();
        match self.conn.as_mut() {
            Some(live) if live.id == msg.conn => {
                let ok = live
                    .sink
                    .write(WsMessage::Text(ByteString::from(&*msg.frame)))
                    .is_ok();
                debug!(ok, "permission answer written");
                ok
            }
            _ => false,
        }
    }
}

impl Handler<GetStatus> for SessionActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.current_status())
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
        let ccr = self.shared.ccr.clone();
        let url = events_url(&self.shared.base_url, &self.spec.id);
        let token_source = TokenSource::from_spec(&self.spec.token);
        let session_id = self.spec.id.clone();
        let client = self.client.clone();
        let post = async move {
            let token = token_source.fetch(ccr.token_command_timeout).await?;
            let uuid = uuid::Uuid::new_v4().to_string();
            let body = ccr_protocol::user_message_events(&uuid, &session_id, &msg.content);
            let mut resp = client
                .post(url)
                .bearer_auth(token.expose())
                .insert_header(("anthropic-version", ccr.anthropic_version.as_str()))
                .insert_header(("anthropic-beta", ccr.anthropic_beta.as_str()))
                .insert_header(("x-organization-uuid", ccr.organization_uuid.as_str()))
                .content_type("application/json")
                .timeout(ccr.send_timeout)
                .send_body(body)
                .await
                .map_err(|e| match e {
                    awc::error::SendRequestError::Timeout => {
                        SessionError::Timeout(ccr.send_timeout)
                    }
                    other => SessionError::Request(redact(other.to_string(), token.expose())),
                })?;
            let status = resp.status().as_u16();
            if status == 200 || status == 201 {
                info!(%uuid, "user message sent");
                return Ok(SentMessage { uuid, status });
            }
            let body = resp.body().limit(4096).await.unwrap_or_default();
            let body = redact(String::from_utf8_lossy(&body).into_owned(), token.expose());
            Err(SessionError::Upstream { status, body })
        };
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
