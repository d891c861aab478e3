//! Access-token sources, read afresh at every connect attempt (tokens rotate).

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{open_confined, ConfinedError, Secret, TokenSpec, MAX_CONFINED_BYTES};

/// Reads the token a session's [`TokenSpec`] names, afresh at every [`fetch`](Self::fetch).
///
/// Built by the session from its configured spec ([`TokenSource::from_spec`]); `Debug`
/// is the spec's, which never prints a literal token or a command.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSource {
    spec: TokenSpec,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.spec.fmt(f)
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
    /// This instance may not read the token source of a session added on another
    /// instance ([`TokenSpec::Refused`]).
    #[error("token source refused on this instance: {0}")]
    Refused(String),
}

impl TokenSource {
    /// The source that reads what `spec` names.
    pub fn from_spec(spec: &TokenSpec) -> Self {
        Self::from(spec.clone())
    }

    /// What it reads.
    pub fn spec(&self) -> &TokenSpec {
        &self.spec
    }

    /// Read the current token. Runs `token_command` with a timeout.
    pub async fn fetch(&self, command_timeout: Duration) -> Result<Secret, TokenError> {
        let raw = match &self.spec {
            TokenSpec::Literal(s) => s.expose().to_owned(),
            TokenSpec::Env(var) => {
                std::env::var(var).map_err(|_| TokenError::EnvMissing(var.clone()))?
            }
            TokenSpec::File(path) => {
                // Token files are tiny; a blocking read is cheaper than a thread hop.
                std::fs::read_to_string(path).map_err(|e| TokenError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            TokenSpec::Command(cmd) => run_command(cmd, command_timeout).await?,
            TokenSpec::Refused(why) => return Err(TokenError::Refused(why.clone())),
            TokenSpec::ConfinedFile { path, dirs } => {
                read_confined(path, dirs).map_err(|e| TokenError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
        };
        let token = raw.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Secret::new(token))
    }
}

impl From<TokenSpec> for TokenSource {
    fn from(spec: TokenSpec) -> Self {
        Self { spec }
    }
}

/// The content of a [`TokenSpec::ConfinedFile`], at most [`MAX_CONFINED_BYTES`].
fn read_confined(path: &Path, dirs: &[PathBuf]) -> Result<String, ConfinedError> {
    let file = open_confined(path, dirs)?;
    let mut raw = String::new();
    file.take(MAX_CONFINED_BYTES + 1).read_to_string(&mut raw)?;
    if raw.len() as u64 > MAX_CONFINED_BYTES {
        return Err(ConfinedError::TooLarge);
    }
    Ok(raw)
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
    use std::sync::Arc;

    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn source(spec: TokenSpec) -> TokenSource {
        TokenSource::from_spec(&spec)
    }

    #[test]
    fn debug_never_shows_literal() {
        let src = source(TokenSpec::Literal(Secret::new("sk-very-secret")));
        assert!(!format!("{src:?}").contains("sk-very-secret"));
        let cmd = source(TokenSpec::Command("echo sk-very-secret".into()));
        assert!(!format!("{cmd:?}").contains("sk-very-secret"));
        assert!(!format!("{}", Secret::new("sk-very-secret")).contains("sk-very"));
    }

    #[actix_rt::test]
    async fn every_spec_variant_builds_a_source_that_reads_it_trimmed() {
        let lit = TokenSpec::Literal(Secret::new(" a "));
        assert_eq!(source(lit.clone()).spec(), &lit);
        assert_eq!(source(lit).fetch(T).await.unwrap().expose(), "a");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "file-token\n").unwrap();
        let src = source(TokenSpec::File(path.clone()));
        assert_eq!(src.fetch(T).await.unwrap().expose(), "file-token");
        std::fs::write(&path, "rotated\n").unwrap();
        assert_eq!(src.fetch(T).await.unwrap().expose(), "rotated");
        let cmd = source(TokenSpec::Command("printf cmd-token".into()));
        assert_eq!(cmd.fetch(T).await.unwrap().expose(), "cmd-token");
        let path_var = source(TokenSpec::Env("PATH".into()));
        assert_eq!(
            path_var.fetch(T).await.unwrap().expose(),
            std::env::var("PATH").unwrap().trim()
        );
        let confined = TokenSpec::ConfinedFile {
            path: path.clone(),
            dirs: Arc::from(vec![dir.path().to_owned()]),
        };
        assert_eq!(source(confined).fetch(T).await.unwrap().expose(), "rotated");
        let outside = TokenSpec::ConfinedFile {
            path,
            dirs: Arc::from(vec![dir.path().join("elsewhere")]),
        };
        assert!(source(outside).fetch(T).await.is_err());
    }

    #[actix_rt::test]
    async fn failures_are_typed_and_secret_free() {
        let e = source(TokenSpec::Env("CCR_SUPERVISOR_TEST_UNSET_VAR".into()))
            .fetch(T)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            TokenError::EnvMissing("CCR_SUPERVISOR_TEST_UNSET_VAR".into())
        );
        let e = source(TokenSpec::Command("echo secret-out; exit 3".into()))
            .fetch(T)
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("secret-out"));
        let e = source(TokenSpec::Command("sleep 5".into()))
            .fetch(Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("timed out"));
        let e = source(TokenSpec::File("/nonexistent/tok".into()))
            .fetch(T)
            .await
            .unwrap_err();
        assert!(matches!(e, TokenError::File { .. }));
        let e = source(TokenSpec::Literal(Secret::new("  ")))
            .fetch(T)
            .await
            .unwrap_err();
        assert_eq!(e, TokenError::Empty);
    }

    #[actix_rt::test]
    async fn confined_files_are_read_only_inside_their_directories() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("tokens");
        std::fs::create_dir(&dir).unwrap();
        let dirs: Arc<[PathBuf]> = Arc::from(vec![dir.clone()]);
        let src = |name: &str| {
            source(TokenSpec::ConfinedFile {
                path: dir.join(name),
                dirs: dirs.clone(),
            })
        };
        std::fs::write(dir.join("tok"), " in-token\n").unwrap();
        assert_eq!(src("tok").fetch(T).await.unwrap().expose(), "in-token");
        std::fs::write(base.path().join("out"), "sk-outside").unwrap();
        std::os::unix::fs::symlink(base.path().join("out"), dir.join("ln")).unwrap();
        std::os::unix::fs::symlink(base.path(), dir.join("up")).unwrap();
        for (name, why) in [
            ("ln", "not inside"),
            ("up/out", "not inside"),
            ("../out", "not inside"),
            ("missing", "No such file"),
        ] {
            let e = src(name).fetch(T).await.unwrap_err();
            assert!(e.to_string().contains(why), "{name}: {e}");
            assert!(!e.to_string().contains("sk-outside"), "{e}");
        }
        // A FIFO neither blocks nor is read; an oversized file is refused.
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = src("fifo").fetch(T).await.unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::write(dir.join("big"), vec![b'a'; 64 * 1024 + 1]).unwrap();
        let e = src("big").fetch(T).await.unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        assert_eq!(
            format!("{:?}", src("tok")),
            format!("ConfinedFile({:?})", dir.join("tok"))
        );
    }
}
