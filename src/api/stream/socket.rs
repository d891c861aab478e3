//! The WebSocket transport of the event stream: an actor per reader.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;

use super::Item;

/// WebSocket reader of the event stream, with its own ping/pong heartbeat
/// (actix-web-actors has no IO timeout of its own).
pub(super) struct EventSocket {
    pub(super) heartbeat: Duration,
    pub(super) last_pong: Instant,
}

impl Actor for EventSocket {
    type Context = ws::WebsocketContext<Self>;
}

impl EventSocket {
    /// A heartbeat: ping the reader, or stop if it has not answered two of them.
    pub(super) fn beat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.last_pong.elapsed() > self.heartbeat * 2 {
            ctx.stop();
            return;
        }
        ctx.ping(b"");
    }
}

impl StreamHandler<Item> for EventSocket {
    fn handle(&mut self, item: Item, ctx: &mut Self::Context) {
        match item {
            Item::Event(env) => ctx.text(env.json()),
            Item::Lagged(json) => ctx.text(json),
            Item::Heartbeat => self.beat(ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // Shutdown, or dropped after `lagged`: close cleanly.
        ctx.close(Some(ws::CloseCode::Away.into()));
        ctx.stop();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for EventSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match msg {
            Ok(ws::Message::Ping(p)) => {
                self.last_pong = Instant::now();
                ctx.pong(&p);
            }
            Ok(ws::Message::Pong(_)) => self.last_pong = Instant::now(),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {} // readers do not send anything meaningful
            Err(_) => ctx.stop(),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
