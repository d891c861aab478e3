//! Blocking HTTP access to the operator API, and the CLI's error type.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use ccr_protocol::error::{Code, ErrorBody};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

use super::Token;

/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Connect timeout for every request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request timeout for ordinary calls; longer than the server's own
/// interrupt and send timeouts so those arrive as API errors, not as ours.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Percent-encode one path segment (session and request ids are free-form).
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Why a `ctl` command failed; [`CtlError::exit_code`] maps it to the process status.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad arguments that clap cannot check (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The API answered with a non-2xx status (exit 1).
    #[error("{code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable code from the error body (`http_<status>` when there is none).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The API could not be reached or the connection broke (exit 1).
    #[error("cannot reach {url}: {detail}")]
    Connect {
        /// The URL asked for (never contains the token).
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The API answered something the client cannot read (exit 1).
    #[error("{0}")]
    Protocol(String),
    /// Some items of a bulk answer were not answered; each one's error was printed (exit 1).
    #[error("{failed} of {total} prompts were not answered")]
    NotAllAnswered {
        /// Items not answered.
        failed: usize,
        /// Items sent.
        total: usize,
    },
    /// `health`: the supervisor answered that it is not ready (exit 1); the reasons were printed.
    #[error("not ready")]
    NotReady,
    /// Writing the output failed for another reason than a closed pipe (exit 1).
    #[error("cannot write the output: {0}")]
    Output(String),
}

impl CtlError {
    /// 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Read a non-2xx answer: the server's [`ErrorBody`], or the raw text.
    pub fn from_response(status: u16, body: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => CtlError::Api {
                status,
                code: error.code,
                message: error.message,
            },
            Err(_) => {
                let text = body.trim();
                CtlError::Api {
                    status,
                    code: format!("http_{status}"),
                    message: if text.is_empty() {
                        "no error body".into()
                    } else {
                        super::render::truncate(text, 200)
                    },
                }
            }
        }
    }

    /// The API error code, when the server sent one this build knows.
    pub fn api_code(&self) -> Option<Code> {
        match self {
            CtlError::Api { code, .. } => Code::from_name(code),
            _ => None,
        }
    }
}

/// A client for one API base URL, with the optional bearer token.
pub struct Client {
    base: String,
    token: Option<Token>,
    agent: Agent,
    tls: TlsConfig,
}

impl Client {
    /// A client for `base` (trailing `/` ignored).
    pub fn new(base: &str, token: Option<Token>) -> Self {
        let tls = TlsConfig::default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent: agent(Some(REQUEST_TIMEOUT), &tls),
            tls,
        }
    }

    /// Trust the CA certificates of the PEM file at `path` for `https://` URLs, instead
    /// of the built-in public roots (`--ca-cert`: an API with a certificate of its own CA).
    pub fn with_ca_cert(mut self, path: &Path) -> Result<Self, CtlError> {
        let roots = read_ca(path)?;
        self.tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&roots))
            .build();
        self.agent = agent(Some(REQUEST_TIMEOUT), &self.tls);
        Ok(self)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn connect_error(&self, url: &str, e: ureq::Error) -> CtlError {
        let detail = e.to_string();
        CtlError::Connect {
            url: url.to_owned(),
            detail: match certificate_hint(&detail) {
                Some(hint) => format!("{detail} ({hint})"),
                None => detail,
            },
        }
    }

    /// `GET path?query`, returning the body of a 2xx answer.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<String, CtlError> {
        let url = self.url(path);
        let mut req = self.agent.get(&url);
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        let resp = req.call().map_err(|e| self.connect_error(&url, e))?;
        read_body(&url, resp)
    }

    /// `GET path` returning the status and body whatever the status (for `/readyz`, whose
    /// 503 carries the reasons).
    pub fn get_any(&self, path: &str) -> Result<(u16, String), CtlError> {
        let url = self.url(path);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        let mut resp = req.call().map_err(|e| self.connect_error(&url, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| CtlError::Connect {
                url: url.clone(),
                detail: format!("reading the answer: {e}"),
            })?;
        Ok((status, body))
    }

    /// `POST path` with a JSON body (or none), returning the body of a 2xx answer.
    pub fn post<B: Serialize>(&self, path: &str, body: Option<&B>) -> Result<String, CtlError> {
        let url = self.url(path);
        let mut req = self.agent.post(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        let resp = match body {
            Some(b) => {
                let text = serde_json::to_string(b)
                    .map_err(|e| CtlError::Usage(format!("cannot encode the request: {e}")))?;
                req.content_type("application/json").send(text)
            }
            None => req.send_empty(),
        }
        .map_err(|e| self.connect_error(&url, e))?;
        read_body(&url, resp)
    }

    /// Open `GET /v1/events` as a Server-Sent Events stream, read line by line.
    ///
    /// No overall timeout here: the stream is meant to stay open for hours.
    /// `types` is the server's comma-separated `types` filter.
    pub fn events(
        &self,
        session: Option<&str>,
        after: Option<u64>,
        types: Option<&str>,
    ) -> Result<Box<dyn BufRead>, CtlError> {
        let url = self.url("/v1/events");
        let mut req = agent(None, &self.tls)
            .get(&url)
            .header("Accept", "text/event-stream");
        if let Some(s) = session {
            req = req.query("session_id", s);
        }
        if let Some(a) = after {
            req = req.query("after", a.to_string());
        }
        if let Some(t) = types {
            req = req.query("types", t);
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        let resp = req.call().map_err(|e| self.connect_error(&url, e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = read_body(&url, resp).err();
            return Err(body.unwrap_or_else(|| CtlError::from_response(status, "")));
        }
        let reader: Box<dyn Read> = Box::new(resp.into_body().into_reader());
        Ok(Box::new(BufReader::new(reader)))
    }
}

/// The certificates of the PEM file at `path` (at least one), as trust roots.
fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>, CtlError> {
    let bad = |why: String| CtlError::Usage(format!("--ca-cert {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)".into(),
        ));
    }
    Ok(certs)
}

/// What to do about a TLS error that says the server's certificate is not trusted.
pub fn certificate_hint(detail: &str) -> Option<&'static str> {
    let lower = detail.to_ascii_lowercase();
    (lower.contains("certificate") || lower.contains("unknownissuer")).then_some(
        "the server's certificate is not trusted: pass the CA that signed it with --ca-cert \
         or CCR_SUPERVISOR_CA_CERT",
    )
}

/// An agent that reports HTTP error statuses as responses (we read their bodies), with
/// the TLS settings `tls` (`--ca-cert`).
fn agent(timeout: Option<Duration>, tls: &TlsConfig) -> Agent {
    Agent::config_builder()
        .tls_config(tls.clone())
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(timeout)
        .user_agent(concat!("ccr-supervisor-ctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn read_body(url: &str, mut resp: ureq::http::Response<ureq::Body>) -> Result<String, CtlError> {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| CtlError::Connect {
            url: url.to_owned(),
            detail: format!("reading the answer: {e}"),
        })?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(CtlError::from_response(status, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("demo-1"), "demo-1");
        assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn certificate_errors_point_at_ca_cert() {
        assert!(certificate_hint("rustls: invalid peer certificate: UnknownIssuer").is_some());
        assert!(certificate_hint("Connection refused (os error 111)").is_none());
    }

    #[test]
    fn a_ca_file_needs_a_certificate() {
        let dir = std::env::temp_dir().join(format!("ccr-ctl-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let e = Client::new("https://x", None)
            .with_ca_cert(&empty)
            .err()
            .unwrap();
        assert!(e.to_string().contains("no certificate"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let e = Client::new("https://x", None)
            .with_ca_cert(&dir.join("absent.pem"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot read it"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn error_bodies() {
        let e = CtlError::from_response(
            409,
            r#"{"error":{"code":"already_answered","message":"prompt r1 was already answered"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "already_answered: prompt r1 was already answered"
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.api_code(), Some(Code::AlreadyAnswered));
        let e = CtlError::from_response(502, "Bad Gateway");
        assert_eq!(e.api_code(), None);
        assert_eq!(e.to_string(), "http_502: Bad Gateway");
        assert_eq!(
            CtlError::from_response(500, "").to_string(),
            "http_500: no error body"
        );
    }
}
