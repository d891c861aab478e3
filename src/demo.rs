//! The embedded CCR simulator of demo mode (`[sim] embedded`), present with the `demo` feature.

use crate::config::Config;

#[cfg(feature = "demo")]
pub use with_sim::*;
#[cfg(not(feature = "demo"))]
pub use without_sim::*;

#[cfg(feature = "demo")]
mod with_sim {
    use anyhow::Context;
    use ccr_sim::{Script, SimBuilder};
    use tracing::info;

    use super::Config;
    use crate::session::token::TokenSource;

    /// The simulator the service runs in demo mode.
    pub type EmbeddedSim = ccr_sim::SimHandle;

    /// Start the embedded simulator with one demo script per configured session.
    pub async fn start(config: &Config) -> anyhow::Result<EmbeddedSim> {
        let mut builder = SimBuilder::new().bind(config.sim.bind);
        if config.ledger.enabled {
            // The demo's sessions outlive a restart like real CCR sessions: they keep waiting on
            // their prompts (stored beside the ledger), so a restored prompt is one they wait on.
            if let Some(dir) = config.ledger.path.parent() {
                // A SQLite ledger makes its directory; with PostgreSQL nothing else does.
                if let Err(e) = std::fs::create_dir_all(dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot make the demo simulator's state directory");
                }
                builder = builder.persist(dir.join("demo-sim.json"));
            }
        }
        for spec in &config.sessions {
            // The simulator plays the server side: it expects whatever token the session will send.
            let token = TokenSource::from_spec(&spec.token)
                .fetch(config.ccr.token_command_timeout)
                .await
                .with_context(|| format!("embedded simulator: token of session {}", spec.id))?;
            builder = builder.session(
                &spec.id,
                token.expose(),
                Script::demo(config.sim.turn_pause),
            );
        }
        let sim = builder
            .start()
            .await
            .with_context(|| format!("cannot start embedded simulator on {}", config.sim.bind))?;
        info!(base_url = %sim.base_url(), "embedded CCR simulator running");
        Ok(sim)
    }
}

#[cfg(not(feature = "demo"))]
mod without_sim {
    use super::Config;

    /// Built without the `demo` feature there is no simulator to embed.
    pub enum EmbeddedSim {}

    impl EmbeddedSim {
        /// Unreachable: no value exists.
        pub fn base_url(&self) -> String {
            match *self {}
        }

        /// Unreachable: no value exists.
        pub async fn stop(&self) {
            match *self {}
        }
    }

    /// `[sim] embedded = true` needs the `demo` feature.
    pub async fn start(_config: &Config) -> anyhow::Result<EmbeddedSim> {
        anyhow::bail!(
            "[sim] embedded = true, but this binary was built without the `demo` feature \
             (build with default features, or set [sim] embedded = false)"
        )
    }
}
