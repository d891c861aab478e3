//! [`ClusterApi`]: what the operator API asks of the cluster — its status
//! (`GET /v1/cluster`) and, in [`super::sessions`], changes to the session set — on a
//! connection of its own, run on the lease thread's runtime.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ccr_protocol::reply::ClusterStatus;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::sessions::SetShared;
use super::{status, Cmd};
use crate::ledger::pg::{connect, describe, PgTarget};

/// How long an API request waits for the database.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the API needs of the cluster (`GET /v1/cluster`, changes to the session set);
/// cloneable, and it does not keep the lease loop running.
#[derive(Clone)]
pub struct ClusterApi {
    pub(super) shared: Arc<ApiShared>,
}

pub(super) struct ApiShared {
    pub(super) runtime: Handle,
    pub(super) target: Arc<PgTarget>,
    pub(super) me: String,
    pub(super) period: Duration,
    /// A connection of the status queries' (and session-set changes') own, made on first use.
    pub(super) client: tokio::sync::Mutex<Option<Client>>,
    /// The loop's commands (a reload's new config).
    pub(super) cmds: mpsc::UnboundedSender<Cmd>,
    /// What the loop shares about the session set.
    pub(super) set: Arc<SetShared>,
}

impl ClusterApi {
    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.shared.me
    }

    /// `[cluster] lease_period`: the longest a lease of a dead owner stays valid.
    pub fn lease_period(&self) -> Duration {
        self.shared.period
    }

    /// The live members (heard from within three lease periods) and the valid leases each
    /// holds, read from the database on the lease thread's runtime.
    pub fn status(&self) -> impl Future<Output = Result<ClusterStatus, String>> + Send + 'static {
        let shared = self.shared.clone();
        let task = self
            .shared
            .runtime
            .spawn(async move { shared.status().await });
        async move {
            task.await
                .map_err(|_| "the cluster's lease thread has stopped".to_owned())?
        }
    }
}

impl ApiShared {
    async fn status(&self) -> Result<ClusterStatus, String> {
        let (me, period) = (self.me.clone(), self.period);
        self.with_client(move |client| {
            Box::pin(async move { status::read(client, &me, period).await })
        })
        .await
    }

    /// Run `op` on the API's own connection (made when needed), within [`STATUS_TIMEOUT`];
    /// a connection that did not answer in time is dropped.
    pub(super) async fn with_client<T>(
        &self,
        op: impl for<'c> FnOnce(
            &'c mut Client,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
        >,
    ) -> Result<T, String> {
        let mut slot = self.client.lock().await;
        let run = async {
            if slot.as_ref().is_none_or(Client::is_closed) {
                *slot = Some(connect(&self.target).await?);
            }
            let client = slot.as_mut().ok_or("no connection")?;
            op(client).await.map_err(|e| describe(&e))
        };
        match tokio::time::timeout(STATUS_TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => {
                *slot = None;
                Err("the database did not answer in time".into())
            }
        }
    }
}
