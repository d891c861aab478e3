//! Sign-in and sign-out: an operator token, posted once in a form body, becomes an
//! HttpOnly, SameSite=Strict cookie (Secure over TLS) that lasts `[console]
//! session_lifetime`. The token is never put in a URL, a log line or a page.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;
use serde::Deserialize;
use tracing::info;

use super::{layout, PageError};
use crate::api::cookie::{self, COOKIE};
use crate::api::{identify, ApiError, ApiState};

/// The sign-in form's one field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInForm {
    token: String,
}

impl std::fmt::Debug for SignInForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInForm { token: <redacted> }")
    }
}

fn form_page(error: Option<&str>) -> HttpResponse {
    let body = html! {
        h1 { "ccr-supervisor" }
        p { "Sign in with your operator token." }
        form #sign-in method="post" action="/ui/sign-in" {
            label for="token" { "Operator token" }
            input #token type="password" name="token" autocomplete="current-password"
                required autofocus;
            button #sign-in-submit type="submit" { "Sign in" }
        }
        @if let Some(e) = error { p #sign-in-error .error role="alert" { (e) } }
    };
    let status = if error.is_some() {
        actix_web::http::StatusCode::UNAUTHORIZED
    } else {
        actix_web::http::StatusCode::OK
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(layout::bare("Sign in", body).into_string())
}

fn see_other(to: &str) -> actix_web::HttpResponseBuilder {
    let mut resp = HttpResponse::SeeOther();
    resp.insert_header((header::LOCATION, to));
    resp
}

/// Whether the browser reached us over TLS (the API serves TLS itself, or, per
/// `Forwarded` / `X-Forwarded-Proto`, through a proxy), or `[console] public_url` is https.
fn over_tls(req: &HttpRequest, state: &ApiState) -> bool {
    state.tls
        || req.connection_info().scheme() == "https"
        || state
            .public_origin
            .as_deref()
            .is_some_and(|o| o.starts_with("https://"))
}

/// `GET /ui/sign-in`: the form, or the inbox for someone already signed in.
pub async fn form(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    if identify(&req, &state).is_ok() {
        return see_other("/").finish();
    }
    form_page(None)
}

/// `POST /ui/sign-in`: check the token, set the cookie, go to the inbox.
pub async fn submit(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: web::Form<SignInForm>,
) -> Result<HttpResponse, PageError> {
    cookie::check_origin(&req, state.public_origin.as_deref())?;
    if !state.auth.enabled() {
        return Ok(see_other("/").finish());
    }
    let principal = match state.auth.check(&body.token) {
        Ok(p) => p,
        Err(ApiError::Unauthorized(_)) => {
            info!(target: "ccr_supervisor::console", "console sign-in refused: unknown token");
            return Ok(form_page(Some("That token is not valid.")));
        }
        Err(other) => return Err(other.into()),
    };
    info!(target: "ccr_supervisor::console", who = %principal.name, role = %principal.role, "console sign-in");
    let value = state.console.sign_in(principal.clone());
    // A reload may have removed or changed the token between the check and the sign-in
    // (it signs out what it changed, but this sign-in was not in the store yet).
    let still = state.auth.check(&body.token).ok();
    if still.is_none_or(|p| p.name != principal.name || p.role != principal.role) {
        state.console.sign_out(&value);
        return Ok(form_page(Some("That token is not valid.")));
    }
    let lifetime = time::Duration::seconds(
        i64::try_from(state.console.lifetime().as_secs()).unwrap_or(i64::MAX),
    );
    let cookie = Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_tls(&req, &state))
        .max_age(lifetime)
        .finish();
    Ok(see_other("/").cookie(cookie).finish())
}

/// `POST /ui/sign-out`: forget the cookie on the server and in the browser.
pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, PageError> {
    cookie::check_origin(&req, state.public_origin.as_deref())?;
    if let Some(value) = cookie::presented(&req) {
        state.console.sign_out(&value);
    }
    let mut gone = Cookie::build(COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    gone.make_removal();
    Ok(see_other("/ui/sign-in").cookie(gone).finish())
}

/// Errors of the sign-in form body (not urlencoded, too large, unknown fields).
pub fn form_config() -> web::FormConfig {
    web::FormConfig::default()
        .limit(4096)
        .error_handler(|err, _| PageError::Api(ApiError::InvalidBody(err.to_string())).into())
}
