//! Many event-stream readers attached to the supervisor during a run (`roundtrip
//! --readers N`), on a thread of their own: draining thousands of streams must
//! not delay the harness's own answers, whose latency is what is measured.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use anyhow::{anyhow, bail};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::http::{self, open_events};

/// Streams opened at once while attaching.
const OPEN_BATCH: usize = 256;

/// What the readers saw.
#[derive(Debug, Default)]
pub struct ReaderStats {
    /// Streams that answered 200.
    pub attached: AtomicUsize,
    /// Streams refused or failed to open.
    pub refused: AtomicUsize,
    /// Streams that ended (dropped by the server, e.g. as `slow_reader`) during the run.
    pub ended: AtomicUsize,
    /// Bytes received over all streams.
    pub bytes: AtomicU64,
}

/// The readers' thread and their counters.
pub struct Readers {
    arbiter: Arbiter,
    /// Shared counters.
    pub stats: Arc<ReaderStats>,
}

impl Readers {
    /// Open `n` SSE readers of `GET {api}/v1/events` on a new thread; returns
    /// once each one answered (200 or not). Each reader then counts what it
    /// receives until the stream ends.
    pub async fn attach(api: &str, n: usize, timeout: Duration) -> anyhow::Result<Self> {
        let stats = Arc::new(ReaderStats::default());
        let arbiter = Arbiter::new();
        let (done_tx, done_rx) = oneshot::channel();
        let (api, st) = (api.to_owned(), stats.clone());
        // The closure is sent to the thread; the future it spawns there stays there (awc is !Send).
        let spawned = arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                let client = http::client();
                let mut left = n;
                while left > 0 {
                    let batch = left.min(OPEN_BATCH);
                    left -= batch;
                    let opened = futures_util::future::join_all(
                        (0..batch).map(|_| open_events(&client, &api)),
                    )
                    .await;
                    for r in opened {
                        let Ok(Some(mut body)) = r else {
                            st.refused.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        st.attached.fetch_add(1, Ordering::Relaxed);
                        let st = st.clone();
                        actix_rt::spawn(async move {
                            while let Some(Ok(chunk)) = body.next().await {
                                st.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            }
                            st.ended.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                }
                let _ = done_tx.send(());
            });
        });
        if !spawned {
            bail!("cannot start the readers' thread");
        }
        tokio::time::timeout(timeout, done_rx)
            .await
            .map_err(|_| anyhow!("{n} readers not attached within {timeout:?}"))?
            .map_err(|_| anyhow!("the readers' thread stopped"))?;
        Ok(Self { arbiter, stats })
    }

    /// The counters as JSON.
    pub fn figures(&self) -> Value {
        let s = &self.stats;
        json!({
            "attached": s.attached.load(Ordering::Relaxed),
            "refused": s.refused.load(Ordering::Relaxed),
            "ended_during_run": s.ended.load(Ordering::Relaxed),
            "bytes_received": s.bytes.load(Ordering::Relaxed),
        })
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.arbiter.stop();
    }
}
