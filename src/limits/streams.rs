//! Caps on live event-stream readers (`GET /v1/events`, SSE and WebSocket):
//! in total (`[api] max_stream_subscribers`) and per operator token
//! (`[api] max_stream_subscribers_per_token`). Each reader holds a descriptor
//! and a share of an API worker; without a cap, 19,800 readers holding any
//! viewer token took every descriptor and the whole API went down.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Why a new reader was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamCapError {
    /// Every stream allowed in total is open.
    #[error(
        "too many event streams: all {max} are open ([api] max_stream_subscribers); retry later"
    )]
    Total {
        /// The total cap.
        max: usize,
    },
    /// This token has its share open.
    #[error("too many event streams for token {token:?}: all {max} of its streams are open ([api] max_stream_subscribers_per_token); close one first")]
    PerToken {
        /// The token's name (not its secret).
        token: String,
        /// The per-token cap.
        max: usize,
    },
}

/// The counts behind the caps (pure).
#[derive(Debug, Default)]
pub struct StreamCounts {
    total: usize,
    by_token: HashMap<Arc<str>, usize>,
}

impl StreamCounts {
    /// Count one more reader of `token`, unless a cap is reached.
    pub fn enter(
        &mut self,
        token: &Arc<str>,
        max_total: usize,
        max_per_token: usize,
    ) -> Result<(), StreamCapError> {
        if self.total >= max_total {
            return Err(StreamCapError::Total { max: max_total });
        }
        let mine = self.by_token.get(token).copied().unwrap_or(0);
        if mine >= max_per_token {
            return Err(StreamCapError::PerToken {
                token: token.to_string(),
                max: max_per_token,
            });
        }
        self.total += 1;
        *self.by_token.entry(token.clone()).or_insert(0) += 1;
        Ok(())
    }

    /// One reader of `token` ended.
    pub fn leave(&mut self, token: &Arc<str>) {
        if let Some(n) = self.by_token.get_mut(token) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.by_token.remove(token);
            }
        }
    }

    /// Readers now (all tokens).
    pub fn total(&self) -> usize {
        self.total
    }
}

/// The shared caps; [`StreamCaps::enter`] hands out a permit per reader.
#[derive(Debug)]
pub struct StreamCaps {
    max_total: usize,
    max_per_token: usize,
    counts: Mutex<StreamCounts>,
}

/// One counted reader; dropping it (when the stream ends) frees its place.
#[derive(Debug)]
pub struct StreamPermit {
    caps: Arc<StreamCaps>,
    token: Arc<str>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.caps.counts.lock().leave(&self.token);
    }
}

impl StreamCaps {
    /// At most `max_total` readers, and `max_per_token` per token.
    pub fn new(max_total: usize, max_per_token: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_token,
            counts: Mutex::new(StreamCounts::default()),
        })
    }

    /// A permit for one more reader of `token` (the token's configured name).
    pub fn enter(self: &Arc<Self>, token: Arc<str>) -> Result<StreamPermit, StreamCapError> {
        self.counts
            .lock()
            .enter(&token, self.max_total, self.max_per_token)?;
        Ok(StreamPermit {
            caps: self.clone(),
            token,
        })
    }

    /// Readers now.
    pub fn open(&self) -> usize {
        self.counts.lock().total()
    }

    /// The total cap.
    pub fn max_total(&self) -> usize {
        self.max_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stop_at_each_cap_and_free_on_leave() {
        let (a, b): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        let mut c = StreamCounts::default();
        c.enter(&a, 3, 2).unwrap();
        c.enter(&a, 3, 2).unwrap();
        let err = c.enter(&a, 3, 2).unwrap_err();
        assert_eq!(
            err,
            StreamCapError::PerToken {
                token: "alice".into(),
                max: 2
            }
        );
        assert!(err.to_string().contains("max_stream_subscribers_per_token"));
        c.enter(&b, 3, 2).unwrap();
        let err = c.enter(&b, 3, 2).unwrap_err();
        assert_eq!(err, StreamCapError::Total { max: 3 });
        assert!(err.to_string().contains("max_stream_subscribers)"));
        c.leave(&a);
        assert_eq!(c.total(), 2);
        c.enter(&b, 3, 2).unwrap();
        c.leave(&b);
        c.leave(&b);
        c.leave(&a);
        assert_eq!(c.total(), 0);
        assert!(c.by_token.is_empty(), "no entry outlives its readers");
        c.leave(&a); // an unknown token changes nothing
        assert_eq!(c.total(), 0);
    }

    #[test]
    fn permits_free_their_place_when_dropped() {
        let caps = StreamCaps::new(2, 1);
        let first = caps.enter("v".into()).unwrap();
        assert!(caps.enter("v".into()).is_err());
        let _other = caps.enter("w".into()).unwrap();
        assert!(matches!(
            caps.enter("x".into()),
            Err(StreamCapError::Total { max: 2 })
        ));
        assert_eq!(caps.open(), 2);
        drop(first);
        assert_eq!(caps.open(), 1);
        assert!(caps.enter("v".into()).is_ok());
        assert_eq!(caps.max_total(), 2);
    }
}
