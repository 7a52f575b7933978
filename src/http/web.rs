//! The web client, embedded in the binary and served at `/` by token mode's HTTPS listener: the page,
//! its script and its style (`web/` in the repository, no build step), so a player needs only the
//! server's link. It logs in over `/api` and plays over [`crate::protocol::WS_PATH`].
//!
//! Every answer carries a strict Content-Security-Policy ([`CONTENT_SECURITY_POLICY`]: only this
//! server's own script, style and connections; no inline script, no framing, no forms posting
//! elsewhere), `nosniff`, no referrer, and `no-cache` (a new server version's page is fetched anew, so
//! its script and the server's wire version move together).

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's policy: nothing but this origin's script, style and connections (the API and the
/// WebSocket), nothing inline, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");

/// The routes of the web client.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_speaks_this_servers_wire() {
        let version = format!(
            "const PROTOCOL_VERSION = {};",
            crate::protocol::PROTOCOL_VERSION
        );
        assert!(SCRIPT.contains(&version), "web/app.js: {version}");
        assert!(SCRIPT.contains(&format!("\"{}\"", crate::protocol::WS_PATH)));
    }

    #[test]
    fn the_page_has_nothing_inline_for_its_policy_to_refuse() {
        for (file, text) in [("index.html", INDEX), ("style.css", STYLE)] {
            for inline in [
                "<script>",
                "style=",
                " onclick",
                " onload",
                "javascript:",
                "<style",
            ] {
                assert!(!text.contains(inline), "{file} has {inline}");
            }
        }
        assert!(INDEX.contains("<script src=\"/app.js\" defer></script>"));
        assert!(!SCRIPT.contains("innerHTML"), "server text only as text");
        assert!(!SCRIPT.contains("eval("));
    }
}
