//! Claude Code permission-rule patterns (`Bash(npm run test:*)`, `Read(src/**)`,
//! `WebFetch(domain:example.com)`, `mcp__server`): parsing and matching.
//!
//! Matching has two modes. An allow rule must be *sure* ([`Mode::Allow`]): every
//! command of a compound line must match, paths it cannot place do not match.
//! Deny and ask rules match whenever they *might* apply ([`Mode::Restrict`]):
//! any command of the line, any place the path could be, the whole tool family.

use globset::{GlobBuilder, GlobMatcher};
use serde_json::Value;

use super::shell;

/// Tools whose rule argument is a gitignore-style glob on the path input.
const PATH_TOOLS: [&str; 7] = [
    "Read",
    "Edit",
    "Write",
    "MultiEdit",
    "NotebookEdit",
    "Glob",
    "Grep",
];

/// Why a tool pattern is malformed; reported as a config error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Nothing but whitespace.
    #[error("must not be empty")]
    Empty,
    /// `Bash(npm test`, `Bash)`, `Bash(a)(b)`.
    #[error("unbalanced parentheses in {0:?}")]
    Unbalanced(String),
    /// A tool name with characters Claude Code never uses.
    #[error("invalid tool name {0:?} (letters, digits, _ and - only)")]
    ToolName(String),
    /// `Bash()`: empty parentheses.
    #[error("{0}() has an empty argument; write {0} alone to match every use")]
    EmptyArgument(String),
    /// An argument on a tool that takes none (`Task(x)`, `mcp__s__t(x)`).
    #[error("{0} takes no argument in parentheses (only Bash, WebFetch and the file tools do)")]
    NoArgument(String),
    /// A Bash argument with `*` anywhere but a trailing `:*`.
    #[error("invalid Bash pattern {0:?}: `*` is only supported as a trailing `:*` (prefix match)")]
    BashWildcard(String),
    /// A path glob that does not compile or cannot be placed.
    #[error("invalid path pattern {pattern:?}: {reason}")]
    Glob {
        /// The argument as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A WebFetch argument that is not `domain:<host>`.
    #[error("WebFetch takes domain:<host name>, got {0:?}")]
    Domain(String),
}

/// How sure a match must be: allow rules fail closed, deny/ask rules fail open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// For allow rules: match only when certain.
    Allow,
    /// For deny and ask rules: match whenever the rule might apply.
    Restrict,
}

/// One parsed tool pattern; keeps the text it was written as.
#[derive(Debug, Clone)]
pub struct ToolPattern {
    text: String,
    tool: String,
    arg: Arg,
}

#[derive(Debug, Clone)]
enum Arg {
    /// Every use of the tool.
    Any,
    /// `mcp__server`: every tool of that MCP server.
    McpServer,
    /// `Bash(cmd)`: exactly this command.
    Exact(String),
    /// `Bash(cmd:*)`: this command, optionally followed by arguments.
    Prefix(String),
    /// `Read(glob)`: the path input matches the glob.
    Path { glob: GlobMatcher, absolute: bool },
    /// `WebFetch(domain:d)`: the URL's host is `d` or a subdomain of it.
    Domain(String),
}

impl ToolPattern {
    /// Parse Claude Code permission-rule syntax.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(RuleError::Empty);
        }
        let (tool, arg) = split_parens(text)?;
        if let Some(server) = tool.strip_suffix("__*").filter(|t| is_mcp_server(t)) {
            return Self::build(text, server, None);
        }
        let valid = tool.starts_with(|c: char| c.is_ascii_alphabetic())
            && tool
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(RuleError::ToolName(tool.to_owned()));
        }
        Self::build(text, tool, arg)
    }

    fn build(text: &str, tool: &str, arg: Option<&str>) -> Result<Self, RuleError> {
        let arg = match arg.map(str::trim) {
            None if is_mcp_server(tool) => Arg::McpServer,
            None => Arg::Any,
            Some("") => return Err(RuleError::EmptyArgument(tool.to_owned())),
            Some(a) if tool == "Bash" => bash_arg(a)?,
            Some(a) if tool == "WebFetch" => domain_arg(a)?,
            Some(a) if PATH_TOOLS.contains(&tool) => path_arg(a)?,
            Some(_) => return Err(RuleError::NoArgument(tool.to_owned())),
        };
        Ok(Self {
            text: text.to_owned(),
            tool: tool.to_owned(),
            arg,
        })
    }

    /// The pattern as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a prompt for `tool` with `input` is covered, as sure as `mode` requires.
    pub(crate) fn matches(&self, tool: &str, input: &Value, mode: Mode) -> bool {
        if !self.tool_matches(tool, mode) {
            return false;
        }
        let field = |key: &str| input.get(key).and_then(Value::as_str);
        match &self.arg {
            Arg::Any | Arg::McpServer => true,
            Arg::Exact(want) | Arg::Prefix(want) => match field("command") {
                Some(cmd) => self.command_matches(cmd, want, mode),
                None => mode == Mode::Restrict,
            },
            Arg::Path { glob, absolute } => {
                let path = field("file_path")
                    .or_else(|| field("notebook_path"))
                    .or_else(|| field("path"));
                match path {
                    Some(p) => path_matches(glob, *absolute, p, mode),
                    // Grep/Glob without a path search the whole working directory.
                    None => mode == Mode::Restrict,
                }
            }
            Arg::Domain(domain) => {
                let host = field("url")
                    .and_then(|u| url::Url::parse(u).ok())
                    .and_then(|u| u.host_str().map(|h| h.trim_end_matches('.').to_owned()));
                match host {
                    Some(h) => h == *domain || h.ends_with(&format!(".{domain}")),
                    None => mode == Mode::Restrict,
                }
            }
        }
    }

    fn tool_matches(&self, tool: &str, mode: Mode) -> bool {
        if matches!(self.arg, Arg::McpServer) {
            return tool
                .strip_prefix(self.tool.as_str())
                .is_some_and(|rest| rest.len() > 2 && rest.starts_with("__"));
        }
        // Claude Code applies Read rules to every reading tool and Edit rules to
        // every editing tool; we do so only where it makes a rule stricter.
        let family: &[&str] = match (mode, self.tool.as_str()) {
            (Mode::Restrict, "Read") => &["Glob", "Grep"],
            (Mode::Restrict, "Edit") => &["Write", "MultiEdit", "NotebookEdit"],
            _ => &[],
        };
        tool == self.tool || family.contains(&tool)
    }

    fn command_matches(&self, cmd: &str, want: &str, mode: Mode) -> bool {
        let prefix = matches!(self.arg, Arg::Prefix(_));
        let hit = |text: &str, want: &str| {
            text == want
                || (prefix
                    && text
                        .strip_prefix(want)
                        .is_some_and(|rest| rest.starts_with(char::is_whitespace)))
        };
        match mode {
            Mode::Allow => match shell::split(cmd) {
                Some(parts) if !parts.is_empty() => {
                    parts.iter().all(|p| !p.writes && hit(&p.text, want))
                }
                _ => false,
            },
            Mode::Restrict => {
                let wants = shell::variants(want);
                let parts = match shell::split(cmd) {
                    Some(parts) => parts.into_iter().map(|p| p.text).collect(),
                    None => shell::split_loose(cmd),
                };
                std::iter::once(cmd.to_owned()).chain(parts).any(|p| {
                    let readings = shell::variants(&p);
                    readings
                        .iter()
                        .any(|r| wants.iter().any(|w| !w.is_empty() && hit(r, w)))
                })
            }
        }
    }
}

/// `Tool(arg)` -> `("Tool", Some("arg"))`; the first `(` must close at the very end.
fn split_parens(text: &str) -> Result<(&str, Option<&str>), RuleError> {
    let unbalanced = || RuleError::Unbalanced(text.to_owned());
    let Some(open) = text.find('(') else {
        return match text.contains(')') {
            true => Err(unbalanced()),
            false => Ok((text, None)),
        };
    };
    let mut depth = 0usize;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1).ok_or_else(unbalanced)?;
                if depth == 0 && i != text.len() - 1 {
                    return Err(unbalanced());
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(unbalanced());
    }
    Ok((
        text[..open].trim_end(),
        Some(&text[open + 1..text.len() - 1]),
    ))
}

/// `mcp__server` with no tool part.
fn is_mcp_server(tool: &str) -> bool {
    tool.strip_prefix("mcp__")
        .is_some_and(|s| !s.is_empty() && !s.contains("__"))
}

fn bash_arg(arg: &str) -> Result<Arg, RuleError> {
    let (body, prefix) = match arg.strip_suffix(":*") {
        Some(body) => (body.trim(), true),
        None => (arg, false),
    };
    if body.contains('*') {
        return Err(RuleError::BashWildcard(arg.to_owned()));
    }
    if body.is_empty() {
        return Err(RuleError::EmptyArgument("Bash".into()));
    }
    Ok(match prefix {
        true => Arg::Prefix(body.to_owned()),
        false => Arg::Exact(body.to_owned()),
    })
}

fn domain_arg(arg: &str) -> Result<Arg, RuleError> {
    let bad = || RuleError::Domain(arg.to_owned());
    let domain = arg
        .strip_prefix("domain:")
        .ok_or_else(bad)?
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ok = !domain.is_empty()
        && !domain.starts_with(['.', '-'])
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !ok {
        return Err(bad());
    }
    Ok(Arg::Domain(domain))
}

fn path_arg(arg: &str) -> Result<Arg, RuleError> {
    let err = |reason: &str| RuleError::Glob {
        pattern: arg.to_owned(),
        reason: reason.to_owned(),
    };
    if arg.starts_with('~') {
        return Err(err(
            "`~` cannot be expanded (the session's home is unknown); use an absolute path or **/",
        ));
    }
    if arg.split('/').any(|s| s == "..") {
        return Err(err("`..` is not supported; use an absolute path"));
    }
    // Claude Code writes absolute paths as `//abs`; accept that and `/abs`.
    let absolute = arg.starts_with('/');
    let mut glob = match arg.strip_prefix("./").unwrap_or(arg) {
        abs if absolute => format!("/{}", abs.trim_start_matches('/')),
        // gitignore: a pattern without a slash matches at any depth.
        rel if !rel.trim_end_matches('/').contains('/') => format!("**/{rel}"),
        rel => rel.to_owned(),
    };
    // gitignore: a trailing slash means "this directory", i.e. everything in it.
    if glob.ends_with('/') {
        glob.push_str("**");
    }
    let glob = GlobBuilder::new(&glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| err(&e.kind().to_string()))?
        .compile_matcher();
    Ok(Arg::Path { glob, absolute })
}

fn path_matches(glob: &GlobMatcher, absolute: bool, path: &str, mode: Mode) -> bool {
    let segments: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let is_abs = path.starts_with('/');
    let join = |segs: &[&str], abs: bool| {
        let body = segs.join("/");
        if abs {
            format!("/{body}")
        } else {
            body
        }
    };
    match mode {
        // No working directory is known, so relative and absolute never meet.
        Mode::Allow => {
            is_abs == absolute
                && !segments.contains(&"..")
                && glob.is_match(join(&segments, is_abs))
        }
        // The base is unknown: try the path as written (`..` resolved) and every tail of it.
        Mode::Restrict => {
            let mut resolved: Vec<&str> = Vec::new();
            for s in segments {
                match s {
                    ".." => {
                        resolved.pop();
                    }
                    s => resolved.push(s),
                }
            }
            (0..=resolved.len()).any(|k| glob.is_match(join(&resolved[k..], absolute)))
        }
    }
}

#[cfg(test)]
mod tests;
