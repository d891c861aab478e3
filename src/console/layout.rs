//! The page shell every console page shares: head, navigation, sign-out, and the small
//! pieces rows reuse (labels, flags, ages).

use std::time::{SystemTime, UNIX_EPOCH};

use maud::{html, Markup, DOCTYPE};

use super::assets;
use super::render::{self, Flag};
use super::Operator;
use crate::api::ApiError;

/// htmx settings: no `eval` (the CSP forbids it), no inline `<script>` from swapped
/// content, no injected indicator `<style>`.
const HTMX_CONFIG: &str = r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"historyCacheSize":0}"#;

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The inbox.
    Inbox,
    /// Sessions.
    Sessions,
    /// The ledger.
    Audit,
    /// The policy.
    Policy,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="htmx-config" content=(HTMX_CONFIG);
            title { (title) " · ccr-supervisor" }
            link rel="stylesheet" href=(assets::url("console.css"));
            link rel="icon" href=(assets::url("favicon.svg")) type="image/svg+xml";
            script src=(assets::url("htmx.min.js")) defer {}
            script src=(assets::url("htmx-ext-sse.min.js")) defer {}
            script src=(assets::url("console.js")) defer {}
        }
    }
}

/// A full page for a signed-in operator.
pub fn page(who: &Operator, current: Nav, title: &str, body: Markup) -> Markup {
    let link = |nav: Nav, id: &str, href: &str, text: &str| {
        html! {
            a id=(id) href=(href) aria-current=[(nav == current).then_some("page")] { (text) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-role=(who.0.role.to_string()) {
                header {
                    nav {
                        span.brand { "ccr-supervisor" }
                        (link(Nav::Inbox, "nav-inbox", "/", "Inbox"))
                        (link(Nav::Sessions, "nav-sessions", "/ui/sessions", "Sessions"))
                        (link(Nav::Audit, "nav-audit", "/ui/audit", "Audit"))
                        (link(Nav::Policy, "nav-policy", "/ui/policy", "Policy"))
                    }
                    form #sign-out method="post" action="/ui/sign-out" {
                        span.who { (who.0.name.as_ref()) " · " (who.0.role.to_string()) }
                        button #sign-out-submit type="submit" { "Sign out" }
                    }
                }
                main { (body) }
                div #toast role="status" aria-live="polite" {}
            }
        }
    }
}

/// A page for someone not signed in (the sign-in form, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main.narrow { (body) } }
        }
    }
}

/// The page shown when the API refused or failed a console request.
pub fn error_page(e: &ApiError) -> Markup {
    bare(
        "Error",
        html! {
            h1 { "Something went wrong" }
            p.error { (e.to_string()) }
            p { a href="/" { "Back to the inbox" } }
        },
    )
}

/// A session's labels as chips.
pub fn labels(labels: &[String]) -> Markup {
    html! {
        @for l in labels { span.label { (render::one_line(l, 40)) } }
    }
}

/// A prompt's flags as chips.
pub fn flags(flags: &[Flag]) -> Markup {
    html! {
        @for f in flags { span.flag data-flag=(f.name()) title=(f.name()) { (f.label()) } }
    }
}

/// Milliseconds since the Unix epoch (what `.age[data-since]` counts from).
pub fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// An age that ticks in the browser (`console.js`), rendered correct at load.
pub fn age(since: SystemTime, age_ms: u64) -> Markup {
    html! {
        span.age data-since=(epoch_ms(since)) { (render::age(age_ms)) }
    }
}
