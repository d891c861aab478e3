//! Where a session's access token comes from, as configured ([`TokenSpec`]), and the
//! rule a token file named at run time must pass ([`open_confined`]).
//!
//! This is data and the one check both sides share: reading a token (running a
//! command, reading a file at every connect) is the session's business, which builds
//! its `session::token::TokenSource` from a [`TokenSpec`].

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a session's access token comes from. `Debug` never prints a literal token or a command.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSpec {
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
    /// symlink and `..` resolved, is a regular file inside one of `dirs` (checked when
    /// the session is added and at every read, see [`open_confined`]).
    ConfinedFile {
        /// The path as given.
        path: PathBuf,
        /// `[api] runtime_token_dirs`.
        dirs: Arc<[PathBuf]>,
    },
    /// A session added at run time on another instance of a cluster whose token source
    /// this instance may not read (its `[api] runtime_token_sources` or
    /// `runtime_token_dirs` do not allow it): never read; every connect fails with the
    /// reason, shown as the session's last error.
    Refused(String),
}

impl fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSpec::Literal(_) => f.write_str("Literal(<redacted>)"),
            TokenSpec::Env(var) => write!(f, "Env({var:?})"),
            TokenSpec::File(path) => write!(f, "File({path:?})"),
            TokenSpec::Command(_) => f.write_str("Command(<redacted>)"),
            TokenSpec::ConfinedFile { path, .. } => write!(f, "ConfinedFile({path:?})"),
            TokenSpec::Refused(why) => write!(f, "Refused({why:?})"),
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

/// Largest runtime token file read: tokens are short, and this bounds a wrong file.
pub const MAX_CONFINED_BYTES: u64 = 64 * 1024;

/// Why [`open_confined`] (or a read of what it opened) refused a file. Never says
/// anything about its content.
#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    /// The file, resolved, is not inside any of the directories.
    #[error("not inside any of [api] runtime_token_dirs")]
    Outside,
    /// Not a regular file (a directory, FIFO, device, ...).
    #[error("not a regular file")]
    NotRegular,
    /// Larger than a token can be ([`MAX_CONFINED_BYTES`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_literal_token_or_a_command() {
        let literal = TokenSpec::Literal(Secret::new("sk-very-secret"));
        assert_eq!(format!("{literal:?}"), "Literal(<redacted>)");
        let cmd = TokenSpec::Command("echo sk-very-secret".into());
        assert_eq!(format!("{cmd:?}"), "Command(<redacted>)");
        assert!(!format!("{}", Secret::new("sk-very-secret")).contains("sk-very"));
        let env = TokenSpec::Env("CCR_TOKEN".into());
        assert_eq!(format!("{env:?}"), "Env(\"CCR_TOKEN\")");
    }

    #[test]
    fn a_directory_that_resolves_to_the_root_confines_nothing() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("out"), "sk-outside").unwrap();
        std::os::unix::fs::symlink("/", base.path().join("root")).unwrap();
        let e = open_confined(&base.path().join("out"), &[base.path().join("root")]);
        assert!(matches!(e, Err(ConfinedError::Outside)), "{e:?}");
    }
}
