//! Access-token sources, read afresh at every connect attempt (tokens rotate).

use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Only ever from the config file, never from the API.
    Command(String),
    /// `token_file` of a session added over the API: read only while the file, every
    /// symlink and `..` resolved, is a regular file inside one of `dirs` (checked at
    /// every read, see [`open_confined`]).
    ConfinedFile {
        /// The path as given.
        path: PathBuf,
        /// `[api] runtime_token_dirs`.
        dirs: Arc<[PathBuf]>,
    },
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Literal(_) => f.write_str("Literal(<redacted>)"),
            TokenSource::Env(var) => write!(f, "Env({var:?})"),
            TokenSource::File(path) => write!(f, "File({path:?})"),
            TokenSource::Command(_) => f.write_str("Command(<redacted>)"),
            TokenSource::ConfinedFile { path, .. } => write!(f, "ConfinedFile({path:?})"),
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
            TokenSource::ConfinedFile { path, dirs } => {
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

/// Largest runtime token file read: tokens are short, and this bounds a wrong file.
const MAX_CONFINED_BYTES: u64 = 64 * 1024;

/// Why [`open_confined`] refused a file. Never says anything about its content.
#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    /// The file, resolved, is not inside any of the directories.
    #[error("not inside any of [api] runtime_token_dirs")]
    Outside,
    /// Not a regular file (a directory, FIFO, device, ...).
    #[error("not a regular file")]
    NotRegular,
    /// Larger than a token can be.
    #[error("larger than {MAX_CONFINED_BYTES} bytes")]
    TooLarge,
    /// Missing, unreadable, or a symlink swapped in while it was opened.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Open `path` for reading only if it is a regular file inside one of `dirs`, with
/// every symlink and `..` of both resolved: the check runs on the resolved path
/// before opening (nothing outside is ever opened, not even a device) and again on
/// the file actually opened (a symlink swapped in meanwhile is caught). A directory
/// that resolves to `/` counts as none.
pub fn open_confined(path: &Path, dirs: &[PathBuf]) -> Result<File, ConfinedError> {
    use std::os::unix::fs::OpenOptionsExt;
    let roots: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .filter(|d| d.parent().is_some())
        .collect();
    let inside = |p: &Path| roots.iter().any(|root| p.starts_with(root));
    let real = path.canonicalize()?;
    if !inside(&real) {
        return Err(ConfinedError::Outside);
    }
    // O_NOFOLLOW: the resolved path has no symlink left unless one was swapped in;
    // O_NONBLOCK: a FIFO put there cannot block the opening thread.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&real)?;
    if !file.metadata()?.is_file() {
        return Err(ConfinedError::NotRegular);
    }
    if !inside(&opened_path(&file).unwrap_or(real)) {
        return Err(ConfinedError::Outside);
    }
    Ok(file)
}

/// Where an open file really is, from the kernel (Linux); `None` elsewhere.
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

/// The content of a [`TokenSource::ConfinedFile`], at most [`MAX_CONFINED_BYTES`].
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

    #[actix_rt::test]
    async fn confined_files_are_read_only_inside_their_directories() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("tokens");
        std::fs::create_dir(&dir).unwrap();
        let dirs: Arc<[PathBuf]> = Arc::from(vec![dir.clone()]);
        let src = |name: &str| TokenSource::ConfinedFile {
            path: dir.join(name),
            dirs: dirs.clone(),
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
        // A directory that resolves to the root confines nothing.
        std::os::unix::fs::symlink("/", base.path().join("root")).unwrap();
        let e = open_confined(&base.path().join("out"), &[base.path().join("root")]);
        assert!(matches!(e, Err(ConfinedError::Outside)), "{e:?}");
        assert_eq!(
            format!("{:?}", src("tok")),
            format!("ConfinedFile({:?})", dir.join("tok"))
        );
    }
}
