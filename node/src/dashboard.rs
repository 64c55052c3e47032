//! The web dashboard every node serves at `/`: plain HTML, CSS and JavaScript embedded in the
//! binary, with no build step and no outside requests. The page reads the same JSON API as the
//! CLI and the TUI (`distributeai-api`) and stays live through `GET /api/v1/events`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const STYLE_CSS: &str = include_str!("dashboard/style.css");
const APP_JS: &str = include_str!("dashboard/app.js");

/// The page's routes: `/`, `/style.css` and `/app.js`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { page(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
}

fn page(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The page is served by the node it shows; nothing else may be loaded or framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                 base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
