//! `ccr-supervisor ctl`: the operator's command-line client of the HTTP API.
//!
//! A blocking client (ureq) on purpose: a CLI does one request at a time, and
//! keeping it free of actix means it never depends on the server's actors.
//! Layout: [`client`] does the HTTP, [`render`] turns API bodies into tables
//! and one-line summaries (pure), [`watch`] renders events and runs the stream loop; [`audit`] pages through
//! the decision ledger (table, or a JSON-lines export that follows the cursor); [`show`]
//! prints one prompt whole (through `ccr_protocol::present`, as the console does);
//! [`resolve`] reads request ids given as a unique prefix; [`cluster`] shows the members of a
//! cluster; [`policy`] and [`health`] the rest.
//! Text a session supplied is printed only through [`sanitize`]: no terminal
//! escape sequence or control character from a session reaches the operator's terminal.
//!
//! Events are parsed by `ccr_protocol::sse`, error bodies by `ccr_protocol::error`.
//!
//! Exit codes: 0 ok, 1 API error or connection failure, 2 usage error.

#![warn(missing_docs)]

pub mod audit;
pub mod bulk;
pub mod client;
pub mod cluster;
pub mod health;
pub mod policy;
pub mod render;
pub mod resolve;
/// Session-written text made safe for a terminal (lives in `ccr-protocol`, shared with the console).
pub use ccr_protocol::sanitize;
pub mod show;
pub mod watch;

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use ccr_protocol::api::{Behavior, RawDecision, SendMessageBody};

use client::{Client, CtlError};

/// Where `--url` points when neither the flag nor `CCR_SUPERVISOR_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8700";

/// Global options of `ccr-supervisor ctl` and the command to run.
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Base URL of the supervisor's operator API.
    #[arg(long, global = true, env = "CCR_SUPERVISOR_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Bearer token for the API (or env CCR_SUPERVISOR_TOKEN); never printed.
    #[arg(
        long,
        global = true,
        env = "CCR_SUPERVISOR_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<Token>,
    /// Print the API's JSON body verbatim instead of a table (`watch`: one event per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM file of the CA that signed the API's certificate, trusted for https:// URLs
    /// instead of the public roots (an API with `[api] tls_cert` of its own CA).
    #[arg(
        long,
        global = true,
        env = "CCR_SUPERVISOR_CA_CERT",
        value_name = "PATH"
    )]
    pub ca_cert: Option<std::path::PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The operator commands.
#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// List every session: state, pending prompts, connection, last error.
    Sessions,
    /// List pending permission prompts, oldest first (all sessions, or one).
    Pending {
        /// Only this session.
        session: Option<String>,
    },
    /// List pending questions that are not permission prompts (MCP elicitations, dialogs).
    Questions {
        /// Only this session.
        session: Option<String>,
    },
    /// Answer a question with its SDK shape, e.g. '{"action":"accept","content":{"key":"OPS"}}',
    /// '{"action":"decline"}', or for a dialog '{"behavior":"completed","result":..}'.
    Answer {
        /// Session id.
        session: String,
        /// Question (request) id.
        request: String,
        /// The answer, a JSON object.
        #[arg(value_name = "JSON")]
        answer: String,
    },
    /// Allow pending prompts (the original input is sent unless --input is given).
    Allow {
        /// Which prompts.
        #[command(flatten)]
        which: Which,
        /// Replacement tool input, a JSON object (one prompt only).
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// Permission rule updates, a JSON array of objects (or one object).
        #[arg(long, value_name = "JSON")]
        permissions: Option<String>,
    },
    /// Deny pending prompts.
    Deny {
        /// Which prompts.
        #[command(flatten)]
        which: Which,
        /// What the model reads as the tool result (default "Denied by operator").
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
        /// Also stop the whole turn.
        #[arg(long)]
        interrupt: bool,
    },
    /// Interrupt the session's running turn.
    Interrupt {
        /// Session id.
        session: String,
        /// Also cancel the user messages still queued in the session.
        #[arg(long)]
        cancel_queued: bool,
    },
    /// Send a user message to a session.
    Send {
        /// Session id.
        session: String,
        /// The message text.
        text: String,
    },
    /// Show one pending prompt whole: the command, the diff of an edit, the file to write,
    /// suggestions, the session's reason (REQUEST may be a unique prefix).
    Show {
        /// Session id.
        session: String,
        /// Request id, or a prefix of it that only one pending prompt has.
        request: String,
    },
    /// List the prompts pending now, then follow the live event stream (all sessions, or
    /// one) until Ctrl-C or the server closes it.
    Watch {
        /// Only this session.
        session: Option<String>,
        /// Resume after this event sequence number.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Only prompts and questions and what becomes of them (answers, deliveries, cancels).
        #[arg(long)]
        prompts_only: bool,
    },
    /// Show the policy: deadlines, and the rules in order with how often each matched.
    Policy,
    /// What the policy would do with a prompt for TOOL (nothing is asked or answered).
    Evaluate {
        /// The tool, e.g. Bash.
        tool: String,
        /// The tool input, a JSON object (default `{}`).
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// As if from this session (its labels count for rule selectors).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
    },
    /// Is the supervisor ready (`GET /readyz`, no token needed)? Exit 0 when ready, 1 otherwise.
    Health,
    /// Search the decision ledger: one page as a table (newest first), or `--export jsonl` of every row.
    Audit(audit::AuditArgs),
    /// Show the cluster: each live member, its session count, lease ages, heartbeat and state.
    Cluster,
}

/// The prompts an `allow` / `deny` answers: `SESSION REQUEST`, `SESSION/REQUEST` pairs,
/// or every pending one.
#[derive(Args, Debug)]
pub struct Which {
    /// `SESSION REQUEST` (one prompt), or `SESSION/REQUEST` pairs (several, one request).
    #[arg(
        value_name = "SESSION/REQUEST",
        required_unless_present = "all_pending",
        conflicts_with = "all_pending"
    )]
    pub targets: Vec<String>,
    /// Every pending prompt (see --session, --tool), answered in one request per 1000.
    #[arg(long)]
    pub all_pending: bool,
    /// With --all-pending: only this session's prompts.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// With --all-pending: only prompts for this tool (exact name, e.g. Bash).
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
}

/// An API bearer token. Its `Debug` is redacted so it never reaches a log or panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl FromStr for Token {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Token(s.to_owned()))
    }
}

/// Run one `ctl` command; prints `error: ...` on stderr and maps failures to exit codes.
pub fn run(args: CtlArgs) -> ExitCode {
    match execute(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", sanitize::clean(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

fn execute(args: &CtlArgs) -> Result<(), CtlError> {
    let mut client = Client::new(&args.url, args.token.clone());
    if let Some(ca) = &args.ca_cert {
        client = client.with_ca_cert(ca)?;
    }
    let json = args.json;
    match &args.command {
        CtlCommand::Sessions => {
            let body = client.get("/v1/sessions", &[])?;
            print_body(json, &body, render::sessions_table).map(drop)
        }
        CtlCommand::Pending { session } => {
            let query: Vec<(&str, &str)> =
                session.iter().map(|s| ("session_id", s.as_str())).collect();
            let body = client.get("/v1/permissions", &query)?;
            print_body(json, &body, render::pending_table).map(drop)
        }
        CtlCommand::Questions { session } => {
            let query: Vec<(&str, &str)> =
                session.iter().map(|s| ("session_id", s.as_str())).collect();
            let body = client.get("/v1/questions", &query)?;
            print_body(json, &body, render::questions_table).map(drop)
        }
        CtlCommand::Answer {
            session,
            request,
            answer,
        } => {
            let body: Value = serde_json::from_str(answer)
                .map_err(|e| CtlError::Usage(format!("the answer is not JSON: {e}")))?;
            let (request, receipt) = with_prefix(&client, session, request, |request| {
                let path = format!(
                    "/v1/sessions/{}/questions/{}",
                    client::segment(session),
                    client::segment(request)
                );
                client.post(&path, Some(&body))
            })?;
            print_body(json, &receipt, |v| render::decision(&request, v)).map(drop)
        }
        CtlCommand::Allow {
            which,
            input,
            permissions,
        } => {
            let body = allow_body(input.as_deref(), permissions.as_deref())?;
            decide(&client, json, which, &body)
        }
        CtlCommand::Deny {
            which,
            message,
            interrupt,
        } => {
            let body = deny_body(message.as_deref(), *interrupt);
            decide(&client, json, which, &body)
        }
        CtlCommand::Interrupt {
            session,
            cancel_queued,
        } => {
            let path = format!("/v1/sessions/{}/interrupt", client::segment(session));
            let req = cancel_queued.then(|| json!({ "cancel_queued": true }));
            let body = client.post(&path, req.as_ref())?;
            print_body(json, &body, |v| render::interrupted(session, v)).map(drop)
        }
        CtlCommand::Send { session, text } => {
            let path = format!("/v1/sessions/{}/messages", client::segment(session));
            let message = SendMessageBody {
                content: Value::String(text.clone()),
            };
            let body = client.post(&path, Some(&message))?;
            print_body(json, &body, |v| render::sent(session, v)).map(drop)
        }
        CtlCommand::Show { session, request } => {
            let hint = watch::AnswerHint::new(&args.url, DEFAULT_URL);
            show::run(&client, session, request, json, &hint)
        }
        CtlCommand::Watch {
            session,
            after,
            prompts_only,
        } => {
            let answer = watch::AnswerHint::new(&args.url, DEFAULT_URL);
            let opts = watch::Options {
                session: session.as_deref(),
                after: *after,
                json,
                prompts_only: *prompts_only,
            };
            watch::run(&client, &opts, &answer)
        }
        CtlCommand::Policy => {
            let body = client.get("/v1/policy", &[])?;
            print_body(json, &body, policy::policy_table).map(drop)
        }
        CtlCommand::Evaluate {
            tool,
            input,
            session,
        } => {
            let req = policy::evaluate_body(tool, input.as_deref(), session.as_deref())?;
            let body = client.post("/v1/policy/evaluate", Some(&req))?;
            print_body(json, &body, policy::evaluation).map(drop)
        }
        CtlCommand::Health => health::run(&client, json),
        CtlCommand::Cluster => {
            let body = client.get("/v1/cluster", &[])?;
            print_body(json, &body, cluster::cluster_table).map(drop)
        }
        CtlCommand::Audit(audit) => {
            let hint = watch::AnswerHint::new(&args.url, DEFAULT_URL);
            audit::run(&client, audit, json, hint.prefix())
        }
    }
}

/// Build the allow body, rejecting bad `--input` / `--permissions` JSON as a usage error.
pub fn allow_body(input: Option<&str>, permissions: Option<&str>) -> Result<RawDecision, CtlError> {
    let updated_input = match input {
        None => None,
        Some(raw) => {
            let v: Value = serde_json::from_str(raw)
                .map_err(|e| CtlError::Usage(format!("--input is not valid JSON: {e}")))?;
            if !v.is_object() {
                return Err(CtlError::Usage("--input must be a JSON object".into()));
            }
            Some(v)
        }
    };
    let updated_permissions = match permissions {
        None => None,
        Some(raw) => {
            let v: Value = serde_json::from_str(raw)
                .map_err(|e| CtlError::Usage(format!("--permissions is not valid JSON: {e}")))?;
            Some(match v {
                Value::Array(items) if items.iter().all(Value::is_object) => items,
                obj @ Value::Object(_) => vec![obj],
                _ => {
                    return Err(CtlError::Usage(
                        "--permissions must be a JSON array of objects (or one object)".into(),
                    ))
                }
            })
        }
    };
    Ok(RawDecision {
        behavior: Behavior::Allow,
        updated_input,
        updated_permissions,
        message: None,
        interrupt: None,
    })
}

/// The deny body: the message (the server's default when absent) and whether to stop the turn.
pub fn deny_body(message: Option<&str>, interrupt: bool) -> RawDecision {
    RawDecision {
        behavior: Behavior::Deny,
        updated_input: None,
        updated_permissions: None,
        message: message.map(str::to_owned),
        interrupt: Some(interrupt),
    }
}

/// Answer the prompts `which` names with `body`: one through the single route, several
/// (or `--all-pending`) through `POST /v1/decisions`.
fn decide(client: &Client, json: bool, which: &Which, body: &RawDecision) -> Result<(), CtlError> {
    if !which.all_pending && (which.session.is_some() || which.tool.is_some()) {
        return Err(CtlError::Usage(
            "--session and --tool select among --all-pending".into(),
        ));
    }
    let one = match &*which.targets {
        [] => None,
        targets => match bulk::targets(targets)? {
            bulk::Targets::One(session, request) => Some((session, request)),
            bulk::Targets::Many(pairs) => return answer_many(client, json, &pairs, body),
        },
    };
    if let Some((session, request)) = one {
        return send_decision(client, json, &session, &request, body);
    }
    if body.updated_input.is_some() {
        return Err(one_input_only());
    }
    let pairs = bulk::pending(client, which.session.as_deref(), which.tool.as_deref())?;
    if pairs.is_empty() {
        if json {
            println!("{}", json!({ "results": [] }));
        } else {
            eprintln!("nothing pending");
        }
        return Ok(());
    }
    // Ids read from the server: exact, nothing to resolve.
    bulk::answer(client, json, &pairs, body, &[])
}

fn answer_many(
    client: &Client,
    json: bool,
    pairs: &[(String, String)],
    body: &RawDecision,
) -> Result<(), CtlError> {
    if body.updated_input.is_some() {
        return Err(one_input_only());
    }
    let prefixes = bulk::prefixes(client, pairs)?;
    bulk::answer(client, json, pairs, body, &prefixes)
}

fn one_input_only() -> CtlError {
    CtlError::Usage("--input edits one prompt's input: give one SESSION REQUEST".into())
}

fn send_decision(
    client: &Client,
    json: bool,
    session: &str,
    request: &str,
    body: &RawDecision,
) -> Result<(), CtlError> {
    let (request, answer) = with_prefix(client, session, request, |request| {
        let path = format!(
            "/v1/sessions/{}/permissions/{}",
            client::segment(session),
            client::segment(request)
        );
        client.post(&path, Some(body))
    })?;
    print_body(json, &answer, |v| render::decision(&request, v)).map(drop)
}

/// Call `send` with `request` as given; when the server does not know it (`unknown_prompt`)
/// and it begins exactly one pending id of `session`, again with that id. Returns the id
/// used and the answer. An exact id thus always wins (an answered one still gets 409).
fn with_prefix(
    client: &Client,
    session: &str,
    request: &str,
    send: impl Fn(&str) -> Result<String, CtlError>,
) -> Result<(String, String), CtlError> {
    match send(request) {
        Err(e) if e.api_code() == Some(ccr_protocol::error::Code::UnknownPrompt) => {
            match resolve::after_unknown(client, session, request)? {
                Some(full) => Ok((full.clone(), send(&full)?)),
                None => Err(e),
            }
        }
        other => other.map(|answer| (request.to_owned(), answer)),
    }
}

/// Print the body as JSON (`--json`, terminal-unsafe characters `\u`-escaped) or through
/// `human`, which gets the typed body read after every string of the JSON was sanitized;
/// returns that body (`None` with `--json`, which prints the server's bytes unread).
fn print_body<T: DeserializeOwned>(
    json: bool,
    body: &str,
    human: impl FnOnce(&T) -> String,
) -> Result<Option<T>, CtlError> {
    let (text, typed) = if json {
        (sanitize::escape_json(body.trim_end()).into_owned(), None)
    } else {
        let v: Value = serde_json::from_str(body)
            .map_err(|e| CtlError::Protocol(format!("the API answered with invalid JSON: {e}")))?;
        let typed: T = serde_json::from_value(sanitize::clean_value(&v)).map_err(|e| {
            CtlError::Protocol(format!("the API answered with an unexpected body: {e}"))
        })?;
        (human(&typed).trim_end().to_owned(), Some(typed))
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = writeln!(out, "{text}");
    Ok(typed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_body_shapes() {
        let wire = |b: &RawDecision| serde_json::to_value(b).unwrap();
        assert_eq!(
            wire(&allow_body(None, None).unwrap()),
            json!({"behavior":"allow"})
        );
        let b = allow_body(Some(r#"{"command":"ls"}"#), Some(r#"{"type":"addRules"}"#)).unwrap();
        assert_eq!(
            wire(&b),
            json!({"behavior":"allow","updated_input":{"command":"ls"},
                "updated_permissions":[{"type":"addRules"}]})
        );
        assert_eq!(
            wire(&deny_body(Some("no"), true)),
            json!({"behavior":"deny","message":"no","interrupt":true})
        );
        assert_eq!(
            wire(&deny_body(None, false)),
            json!({"behavior":"deny","interrupt":false})
        );
        for (input, perms) in [
            (Some("{bad"), None),
            (Some("[1]"), None),
            (None, Some("nope")),
            (None, Some("[1,2]")),
        ] {
            let e = allow_body(input, perms).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }

    #[test]
    fn token_debug_is_redacted() {
        let t: Token = "s3cret".parse().unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        assert_eq!(t.expose(), "s3cret");
    }
}
