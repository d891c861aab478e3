//! Access-token sources, read afresh at every connect attempt (tokens rotate).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where a session's access token comes from. `Debug` never prints a literal token.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `token = "..."` in config.
    Literal(Secret),
    /// `token_env = "VAR"`.
    Env(String),
    /// `token_file = "path"`; surrounding whitespace is trimmed.
    File(PathBuf),
    /// `token_command = "..."`, run with `sh -c`; stdout (trimmed) is the token.
    Command(String),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Literal(_) => f.write_str("Literal(<redacted>)"),
            TokenSource::Env(var) => write!(f, "Env({var:?})"),
            TokenSource::File(path) => write!(f, "File({path:?})"),
            TokenSource::Command(_) => f.write_str("Command(<redacted>)"),
        }
    }
}

/// A secret string whose `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a token could not be read. Messages never contain the token itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// `token_env` names a variable that is not set or not unicode.
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// `token_file` could not be read.
    #[error("cannot read token file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// `token_command` failed, timed out, or printed nothing.
    #[error("token command failed: {0}")]
    Command(String),
    /// The source yielded an empty token.
    #[error("token is empty")]
    Empty,
}

impl TokenSource {
    /// Read the current token. Runs `token_command` with a timeout.
    pub async fn fetch(&self, command_timeout: Duration) -> Result<Secret, TokenError> {
        let raw = match self {
            TokenSource::Literal(s) => s.expose().to_owned(),
            TokenSource::Env(var) => {
                std::env::var(var).map_err(|_| TokenError::EnvMissing(var.clone()))?
            }
            TokenSource::File(path) => {
                // Token files are tiny; a blocking read is cheaper than a thread hop.
                std::fs::read_to_string(path).map_err(|e| TokenError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            TokenSource::Command(cmd) => run_command(cmd, command_timeout).await?,
        };
        let token = raw.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Secret::new(token))
    }
}

async fn run_command(cmd: &str, timeout: Duration) -> Result<String, TokenError> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, child)
        .await
        .map_err(|_| TokenError::Command(format!("timed out after {timeout:?}")))?
        .map_err(|e| TokenError::Command(format!("cannot start: {e}")))?;
    if !output.status.success() {
        // stderr may be useful but could echo the token; report only the status.
        return Err(TokenError::Command(format!(
            "exited with {}",
            output.status
        )));
    }
    String::from_utf8(output.stdout).map_err(|_| TokenError::Command("stdout is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn debug_never_shows_literal() {
        let src = TokenSource::Literal(Secret::new("sk-very-secret"));
        assert!(!format!("{src:?}").contains("sk-very-secret"));
        let cmd = TokenSource::Command("echo sk-very-secret".into());
        assert!(!format!("{cmd:?}").contains("sk-very-secret"));
        assert!(!format!("{}", Secret::new("sk-very-secret")).contains("sk-very"));
    }

    #[actix_rt::test]
    async fn every_source_is_read_and_trimmed() {
        assert_eq!(
            TokenSource::Literal(Secret::new(" a "))
                .fetch(T)
                .await
                .unwrap()
                .expose(),
            "a"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "file-token\n").unwrap();
        let src = TokenSource::File(path.clone());
        assert_eq!(src.fetch(T).await.unwrap().expose(), "file-token");
        std::fs::write(&path, "rotated\n").unwrap();
        assert_eq!(src.fetch(T).await.unwrap().expose(), "rotated");
        let cmd = TokenSource::Command("printf cmd-token".into());
        assert_eq!(cmd.fetch(T).await.unwrap().expose(), "cmd-token");
        let path_var = TokenSource::Env("PATH".into());
        assert!(path_var.fetch(T).await.is_ok());
    }

    #[actix_rt::test]
    async fn failures_are_typed_and_secret_free() {
        let e = TokenSource::Env("CCR_SUPERVISOR_TEST_UNSET_VAR".into())
            .fetch(T)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            TokenError::EnvMissing("CCR_SUPERVISOR_TEST_UNSET_VAR".into())
        );
        let e = TokenSource::Command("echo secret-out; exit 3".into())
            .fetch(T)
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("secret-out"));
        let e = TokenSource::Command("sleep 5".into())
            .fetch(Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("timed out"));
        let e = TokenSource::File("/nonexistent/tok".into())
            .fetch(T)
            .await
            .unwrap_err();
        assert!(matches!(e, TokenError::File { .. }));
        let e = TokenSource::Literal(Secret::new("  "))
            .fetch(T)
            .await
            .unwrap_err();
        assert_eq!(e, TokenError::Empty);
    }
}
