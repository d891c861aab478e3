//! Operator authentication and roles: bearer tokens checked against SHA-256
//! digests in constant time, and extractors that make each handler's required
//! role part of its signature (`Viewer`, `Approver`, `Admin`). A browser signed in to
//! the console presents its cookie instead ([`super::cookie`]), and a request another
//! instance of the cluster forwards here carries its signed credential
//! ([`super::grant`]).

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage as _, HttpRequest};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{cookie, grant, ApiError, ApiState};
use crate::config::{ApiConfig, ApiTokenSource, Role};

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's configured name (recorded as who decided).
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
}

struct Known {
    digest: [u8; 32],
    principal: Principal,
}

/// Checks bearer tokens. Holds digests only, never a token. The tokens are replaced
/// whole by a reload ([`Authenticator::replace_tokens`]); `enabled` is fixed at start.
pub struct Authenticator {
    enabled: bool,
    tokens: parking_lot::RwLock<Arc<Vec<Known>>>,
}

/// Why the configured tokens could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// `token_env` names an unset variable.
    #[error("api token {name:?}: environment variable {var} is not set")]
    EnvMissing {
        /// Token name.
        name: String,
        /// Variable.
        var: String,
    },
    /// `token_file` is unreadable.
    #[error("api token {name:?}: cannot read {path}: {reason}")]
    File {
        /// Token name.
        name: String,
        /// File.
        path: String,
        /// OS error.
        reason: String,
    },
    /// The secret is empty.
    #[error("api token {0:?}: the token is empty")]
    Empty(String),
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    /// Resolve every configured token (reading `token_env` / `token_file` now).
    pub fn from_config(cfg: &ApiConfig) -> Result<Self, AuthSetupError> {
        let mut tokens = Vec::with_capacity(cfg.tokens.len());
        for spec in &cfg.tokens {
            let digest = match &spec.source {
                ApiTokenSource::Sha256(d) => *d,
                ApiTokenSource::Env(var) => {
                    let v = std::env::var(var).map_err(|_| AuthSetupError::EnvMissing {
                        name: spec.name.clone(),
                        var: var.clone(),
                    })?;
                    secret_digest(&spec.name, &v)?
                }
                ApiTokenSource::File(path) => {
                    let v = std::fs::read_to_string(path).map_err(|e| AuthSetupError::File {
                        name: spec.name.clone(),
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    secret_digest(&spec.name, &v)?
                }
            };
            tokens.push(Known {
                digest,
                principal: Principal {
                    name: Arc::from(spec.name.as_str()),
                    role: spec.role,
                },
            });
        }
        Ok(Self {
            enabled: cfg.auth_enabled,
            tokens: parking_lot::RwLock::new(Arc::new(tokens)),
        })
    }

    /// How `next`'s tokens differ from these, by name: a token whose role or secret
    /// differs is `changed`. Names only, never a secret or digest.
    pub fn changes(&self, next: &Authenticator) -> ccr_protocol::reply::NameChanges {
        let old = self.tokens.read().clone();
        let new = next.tokens.read().clone();
        let key = |k: &Known| (k.principal.role, k.digest);
        crate::util::name_changes(
            old.iter().map(|k| (&*k.principal.name, key(k))),
            new.iter().map(|k| (&*k.principal.name, key(k))),
        )
    }

    /// Take `next`'s tokens (a reload); whether auth is enabled stays as it was at start.
    pub fn replace_tokens(&self, next: Authenticator) {
        let tokens = next.tokens.into_inner();
        *self.tokens.write() = tokens;
    }

    /// True unless `[api] auth = "disabled"`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Authenticate a request's `Authorization` header (401 on failure).
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        if !self.enabled {
            return Ok(Principal {
                name: Arc::from("anonymous"),
                role: Role::Admin,
            });
        }
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized("missing bearer token"))?;
        self.check(presented)
    }

    /// Who `token` belongs to (the console's sign-in posts it once); 401 for an unknown one.
    pub fn check(&self, token: &str) -> Result<Principal, ApiError> {
        let digest = sha256(token.trim());
        // Compare against every digest without stopping early.
        let tokens = self.tokens.read().clone();
        let mut found: Option<&Principal> = None;
        for known in tokens.iter() {
            if bool::from(known.digest.ct_eq(&digest)) {
                found = Some(&known.principal);
            }
        }
        found
            .cloned()
            .ok_or(ApiError::Unauthorized("invalid bearer token"))
    }
}

/// The token of an `Authorization` value using the `Bearer` scheme, whose name is
/// case-insensitive (RFC 7235 §2.1): `Bearer x`, `bearer x` and `BEARER x` all give `x`.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches([' ', '\t']);
    (!token.is_empty()).then_some(token)
}

fn secret_digest(name: &str, raw: &str) -> Result<[u8; 32], AuthSetupError> {
    let token = raw.trim();
    if token.is_empty() {
        return Err(AuthSetupError::Empty(name.to_owned()));
    }
    Ok(sha256(token))
}

/// Who makes `req`: the bearer token when the request has an `Authorization` header,
/// otherwise the console's sign-in cookie.
///
/// Ambient credentials (the cookie, or none at all when `[api] auth = "disabled"`) are
/// held to the console's own origin: a state-changing request must carry its `Origin`,
/// and any request that carries another `Origin` (a WebSocket upgrade from another
/// port's page, which neither CORS nor SameSite stops) is refused, 403 `cross_origin`.
pub fn identify(req: &HttpRequest, state: &ApiState) -> Result<Principal, ApiError> {
    let who = authenticate(req, state)?;
    req.extensions_mut()
        .insert(super::access::Caller(who.name.clone()));
    Ok(who)
}

fn authenticate(req: &HttpRequest, state: &ApiState) -> Result<Principal, ApiError> {
    if let Some(value) = req.headers().get(grant::FORWARDED_AUTH) {
        return forwarded(req, state, value);
    }
    if req.headers().contains_key(header::AUTHORIZATION) {
        return state.auth.authenticate(req);
    }
    let public = state.public_origin.as_deref();
    if !state.auth.enabled() {
        // No credential at all: any page the operator's browser opens could call us.
        if req.headers().contains_key(header::ORIGIN) {
            cookie::check_origin(req, public)?;
        }
        return state.auth.authenticate(req);
    }
    let Some(cookie) = cookie::presented(req) else {
        return state.auth.authenticate(req);
    };
    let principal = state
        .console
        .principal(&cookie)
        .ok_or(ApiError::Unauthorized("sign-in expired or signed out"))?;
    if cookie::changes_state(req.method()) || req.headers().contains_key(header::ORIGIN) {
        cookie::check_origin(req, public)?;
    }
    Ok(principal)
}

/// Who another instance of the cluster forwarded `req` for, as its credential `value`
/// says (401 when it is not this cluster's, for this request, or out of time).
fn forwarded(
    req: &HttpRequest,
    state: &ApiState,
    value: &header::HeaderValue,
) -> Result<Principal, ApiError> {
    let pg = state.postgres().ok_or(ApiError::Unauthorized(
        "a forwarded credential is accepted only by an instance of a cluster",
    ))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized(grant::GrantError::Malformed.reason()))?;
    let by = req
        .headers()
        .get(super::forward::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let request = grant::Forwarded {
        by,
        to: pg.instance_id(),
        method: req.method(),
        target: super::path_and_query(req),
    };
    let (who, body) = grant::verify(pg.cluster_key().bytes(), value, request, grant::now_ms())
        .map_err(|e| ApiError::Unauthorized(e.reason()))?;
    // The handler that reads the body checks it against this.
    req.extensions_mut().insert(body);
    Ok(who)
}

/// The principal making `req`, if it holds at least `role` (401 / 403 otherwise).
pub(super) fn require(req: &HttpRequest, role: Role) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<ApiState>>()
        .ok_or(ApiError::Unavailable("api state missing".into()))?;
    let principal = identify(req, state)?;
    if principal.role < role {
        return Err(ApiError::Forbidden {
            required: role,
            name: principal.name.to_string(),
        });
    }
    Ok(principal)
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                ready(require(req, $role).map($name))
            }
        }
    };
}

role_extractor!(
    /// A caller with at least the `viewer` role.
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// A caller with at least the `approver` role.
    Approver,
    Role::Approver
);
role_extractor!(
    /// A caller with the `admin` role.
    Admin,
    Role::Admin
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiTokenSpec;
    use actix_web::test::TestRequest;

    fn auth() -> Authenticator {
        with_tokens(vec![ApiTokenSpec {
            name: "alice".into(),
            role: Role::Approver,
            source: ApiTokenSource::Sha256(sha256("s3cret")),
        }])
    }

    fn spec(name: &str, role: Role, token: &str) -> ApiTokenSpec {
        ApiTokenSpec {
            name: name.into(),
            role,
            source: ApiTokenSource::Sha256(sha256(token)),
        }
    }

    fn with_tokens(tokens: Vec<ApiTokenSpec>) -> Authenticator {
        let cfg = ApiConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            event_buffer: 1,
            history_events: 1,
            history_bytes: 1024,
            history_total_bytes: 1 << 20,
            stream_heartbeat: std::time::Duration::from_secs(1),
            shutdown_timeout: std::time::Duration::from_secs(1),
            request_body_timeout: std::time::Duration::from_secs(1),
            auth_enabled: true,
            runtime_tokens: Default::default(),
            tokens,
            limits: Default::default(),
            metrics_auth: Default::default(),
            tls: None,
        };
        Authenticator::from_config(&cfg).unwrap()
    }

    #[test]
    fn bearer_tokens_are_checked_by_digest() {
        let a = auth();
        let ok = TestRequest::default()
            .insert_header(("authorization", "Bearer s3cret"))
            .to_http_request();
        let p = a.authenticate(&ok).unwrap();
        assert_eq!((&*p.name, p.role), ("alice", Role::Approver));
        for bad in ["Bearer nope", "s3cret", "Bearer ", "Basic s3cret"] {
            let req = TestRequest::default()
                .insert_header(("authorization", bad))
                .to_http_request();
            assert!(
                matches!(a.authenticate(&req), Err(ApiError::Unauthorized(_))),
                "{bad}"
            );
        }
        let none = TestRequest::default().to_http_request();
        assert!(matches!(
            a.authenticate(&none),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for ok in [
            "Bearer t",
            "bearer t",
            "BEARER t",
            "bEaReR  t ",
            "Bearer\tt",
        ] {
            assert_eq!(bearer_token(ok), Some("t"), "{ok:?}");
        }
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearert",
            "Bearerx t",
            "Basic t",
            "t",
            "",
            " Bearer t",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replaced_tokens_take_effect_and_the_changes_name_no_secret() {
        let a = with_tokens(vec![
            spec("alice", Role::Approver, "s3cret"),
            spec("bob", Role::Viewer, "b0b"),
            spec("carol", Role::Viewer, "car0l"),
        ]);
        let next = with_tokens(vec![
            spec("alice", Role::Approver, "s3cret"),
            spec("bob", Role::Admin, "b0b"),
            spec("carol", Role::Viewer, "rotated"),
            spec("dave", Role::Viewer, "d4ve"),
        ]);
        let c = a.changes(&next);
        assert_eq!(
            (c.added, c.removed, c.changed),
            (
                vec!["dave".to_owned()],
                vec![],
                vec!["bob".to_owned(), "carol".to_owned()]
            )
        );
        a.replace_tokens(next);
        assert_eq!(a.check("b0b").unwrap().role, Role::Admin);
        assert!(a.check("car0l").is_err(), "the old secret is refused");
        assert_eq!(&*a.check("rotated").unwrap().name, "carol");
        assert_eq!(&*a.check("d4ve").unwrap().name, "dave");
        assert!(a.enabled());
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Approver && Role::Approver < Role::Admin);
    }
}
