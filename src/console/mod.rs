//! The operator console: server-rendered pages at `/` and `/ui/...`, on the API's address.
//!
//! Pages are [maud](https://maud.lambda.xyz) templates: HTML written as Rust, checked by
//! the compiler, every interpolated value escaped. Live updates come from the vendored
//! htmx and its SSE extension (versions and licences in `assets/VENDORED.md`), listening
//! to the public `GET /v1/events`; actions (`assets/console.js`) post to the public API
//! (`/v1/...`), signed in by the console's cookie ([`crate::api::cookie`]). The pages
//! render the API's own reply types through [`crate::api::read`], so what the console
//! shows is what the API answers. Nothing is fetched from elsewhere: the assets are
//! embedded in the binary.

mod assets;
mod audit;
mod inbox;
mod layout;
mod policy;
mod prompt;
mod render;
mod sessions;
mod signin;
mod transcript;

use std::future::{ready, Ready};

use actix_web::http::{header, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse, ResponseError};

use crate::api::{identify, ApiError, ApiState, Principal};
use crate::config::Role;

/// The Content-Security-Policy of every console response: scripts, styles and
/// connections from this origin only (no inline script, no `eval`), never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::CACHE_CONTROL, "no-store"))
}

/// Mount the console's routes (the API's [`ApiState`] must already be app data).
pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .wrap(security_headers())
            .route(web::get().to(inbox::page)),
    )
    .service(
        web::scope("/ui/assets")
            .wrap(
                DefaultHeaders::new()
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::CONTENT_SECURITY_POLICY, CSP)),
            )
            .route("/{name}", web::get().to(assets::serve)),
    )
    .service(
        web::scope("/ui")
            .wrap(security_headers())
            .app_data(signin::form_config())
            .route("/sign-in", web::get().to(signin::form))
            .route("/sign-in", web::post().to(signin::submit))
            .route("/sign-out", web::post().to(signin::sign_out))
            .route("/inbox", web::get().to(inbox::page))
            .route("/inbox/rows", web::get().to(inbox::rows))
            .route("/prompts/{session}/{request}", web::get().to(prompt::page))
            .route(
                "/prompts/{session}/{request}/state",
                web::get().to(prompt::state),
            )
            .route("/sessions", web::get().to(sessions::list))
            .route("/sessions/rows", web::get().to(sessions::rows))
            .route("/sessions/{id}", web::get().to(sessions::page))
            .route(
                "/sessions/{id}/transcript",
                web::get().to(sessions::transcript),
            )
            .route("/sessions/{id}/pending", web::get().to(sessions::pending))
            .route("/audit", web::get().to(audit::page))
            .route("/audit/export.jsonl", web::get().to(audit::export))
            .route("/policy", web::get().to(policy::page)),
    );
}

/// Why a console page is not shown.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Not signed in (or the sign-in ended): go to the sign-in page.
    #[error("not signed in")]
    SignIn,
    /// The API refused or failed; shown as an error page with its status.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::SignIn => StatusCode::SEE_OTHER,
            PageError::Api(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            // htmx follows `HX-Redirect` for a fragment request; a page load follows the 303.
            PageError::SignIn => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/ui/sign-in"))
                .insert_header(("hx-redirect", "/ui/sign-in"))
                .finish(),
            PageError::Api(e) => {
                HttpResponse::build(e.status_code()).body(layout::error_page(e).into_string())
            }
        }
    }
}

/// The signed-in operator of a console page (any role sees every page).
pub struct Operator(pub Principal);

impl Operator {
    /// Whether this operator may answer prompts, interrupt and send messages.
    pub fn can_answer(&self) -> bool {
        self.0.role >= Role::Approver
    }
}

impl FromRequest for Operator {
    type Error = PageError;
    type Future = Ready<Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let who = match req.app_data::<web::Data<ApiState>>() {
            Some(state) => identify(req, state).map_err(|e| match e {
                ApiError::Unauthorized(_) => PageError::SignIn,
                other => PageError::Api(other),
            }),
            None => Err(PageError::Api(ApiError::Unavailable(
                "api state missing".into(),
            ))),
        };
        ready(who.map(Operator))
    }
}

/// Every prompt and question waiting for an answer (of one session, or all), oldest
/// first: what `GET /v1/permissions` and `GET /v1/questions` answer, together.
async fn waiting(
    state: &ApiState,
    session_id: Option<&str>,
) -> Result<Vec<ccr_protocol::reply::PendingPrompt>, ApiError> {
    let session_id = session_id.map(str::to_owned);
    let mut all = crate::api::read::pending(state, session_id.clone(), false).await?;
    all.extend(crate::api::read::pending(state, session_id, true).await?);
    all.sort_by(|a, b| {
        a.received_at
            .cmp(&b.received_at)
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
    Ok(all)
}

/// `s` as one URL path segment (percent-encoded).
pub fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// What a path segment must encode: controls, space, and the characters that would end
/// or change it (`/`, `?`, `#`, `%`, and the quoting ones).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// An HTML response.
fn html(markup: maud::Markup) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

#[cfg(test)]
mod tests;
