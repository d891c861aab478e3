//! The route table: every route of the operator API with its method, path, the role it
//! needs and the error codes it may answer.
//!
//! [`super::configure`] mounts exactly these routes ([`mount`]), and the OpenAPI document
//! ([`super::openapi`]) is checked against the same table: a route registered here that
//! the document lacks, or a documented one registered nowhere, fails its tests.

use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder, Route};
use ccr_protocol::error::Code;

use super::ApiError;
use crate::config::Role;

/// One route: a method on a path pattern, served by one handler.
pub struct Endpoint {
    /// The HTTP method.
    pub method: Method,
    /// The path pattern, `{name}` for a segment (the same syntax in actix and OpenAPI).
    pub path: &'static str,
    /// The role it needs; `None`: no token.
    pub role: Option<Role>,
    /// What it may answer besides success, beyond 401 / 403 (implied by `role`).
    pub errors: &'static [Code],
    route: Route,
}

/// The endpoint serving `method path` with `handler`.
pub(super) fn endpoint<F, Args>(
    method: Method,
    path: &'static str,
    role: Option<Role>,
    errors: &'static [Code],
    handler: F,
) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    Endpoint {
        route: web::method(method.clone()).to(handler),
        method,
        path,
        role,
        errors,
    }
}

/// Every route of the API, in the order they are matched.
pub fn endpoints() -> Vec<Endpoint> {
    let mut all = super::routes::endpoints();
    all.extend(super::admin::endpoints());
    all.extend(super::cluster::endpoints());
    all.extend(super::health::endpoints());
    all.extend(super::openapi::endpoints());
    all
}

/// Mount `endpoints`: one resource per path, in first-seen order, answering a method it
/// does not serve with the JSON 405 `method_not_allowed`.
pub(super) fn mount(cfg: &mut web::ServiceConfig, endpoints: Vec<Endpoint>) {
    let mut paths: Vec<(&'static str, Vec<Route>)> = Vec::new();
    for e in endpoints {
        match paths.iter_mut().find(|(p, _)| *p == e.path) {
            Some((_, routes)) => routes.push(e.route),
            None => paths.push((e.path, vec![e.route])),
        }
    }
    for (path, routes) in paths {
        let resource = routes
            .into_iter()
            .fold(web::resource(path), |r, route| r.route(route))
            .default_service(
                web::route().to(|| async { Err::<HttpResponse, _>(ApiError::MethodNotAllowed) }),
            );
        cfg.service(resource);
    }
}
