//! The platform engineer's dashboard: a single page of plain HTML, CSS and JavaScript (no build
//! step, no libraries, nothing fetched from elsewhere) compiled into the binary and served at `/`
//! and `/dashboard/…`; and the developer's self-service page at `/me` (`me.html`, `me.js`), which
//! reads `/v1/self` with the access key the developer pastes (kept in the page's memory only).
//! The assets are public; everything they show comes from the REST API, authenticated by the
//! HttpOnly session cookie (plus the CSRF header on changes) or, on `/me`, the access key.
//!
//! *Invariant:* these routes are not part of the API (absent from `/openapi.json`), and every
//! answer carries a strict Content-Security-Policy (`'self'` only, no inline script or style),
//! so a value rendered by the page can never run as code.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};

use crate::error::{ApiError, ErrorKind};

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str) -> Self {
        Self { body, content_type, etag: OnceLock::new() }
    }

    /// A strong ETag of the bytes, computed once.
    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            use sha2::Digest as _;
            format!("\"{}\"", hex::encode(&sha2::Sha256::digest(self.body)[..12]))
        })
    }
}

static INDEX: Asset = Asset::new(include_bytes!("../dashboard/index.html"), "text/html; charset=utf-8");
static APP_JS: Asset = Asset::new(include_bytes!("../dashboard/app.js"), "text/javascript; charset=utf-8");
static APP_CSS: Asset = Asset::new(include_bytes!("../dashboard/app.css"), "text/css; charset=utf-8");
static ICON: Asset = Asset::new(include_bytes!("../dashboard/icon.svg"), "image/svg+xml");
/// The developer's self-service page (authenticated by their access key, see `/v1/self`).
static ME: Asset = Asset::new(include_bytes!("../dashboard/me.html"), "text/html; charset=utf-8");
static ME_JS: Asset = Asset::new(include_bytes!("../dashboard/me.js"), "text/javascript; charset=utf-8");

/// The page may load its own script, style sheet, icon and API answers, and nothing else; it
/// may not be framed, submit forms elsewhere or change its base URL.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// Mounts the dashboard's routes (outside `/v1`, without authentication).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in ["/", "/dashboard", "/dashboard/", "/dashboard/index.html"] {
        cfg.service(asset_resource(path, &INDEX));
    }
    cfg.service(asset_resource("/dashboard/app.js", &APP_JS))
        .service(asset_resource("/dashboard/app.css", &APP_CSS))
        .service(asset_resource("/dashboard/icon.svg", &ICON))
        .service(asset_resource("/me", &ME))
        .service(asset_resource("/dashboard/me.js", &ME_JS));
}

fn asset_resource(path: &str, asset: &'static Asset) -> actix_web::Resource {
    web::resource(path)
        .route(web::get().to(move |req: HttpRequest| async move { serve(&req, asset) }))
        .route(web::head().to(move |req: HttpRequest| async move { serve(&req, asset) }))
        .default_service(web::to(method_not_allowed))
}

/// The asset, or 304 when the client's copy (`If-None-Match`) is current.
fn serve(req: &HttpRequest, asset: &'static Asset) -> HttpResponse {
    let etag = asset.etag();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim().trim_start_matches("W/") == etag));
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::ETAG, etag.to_owned()))
        // Always revalidated (cheap with the ETag), so a new binary's page is used at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
        .insert_header(("cross-origin-resource-policy", "same-origin"))
        .insert_header(("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"));
    if fresh {
        return response.finish();
    }
    // For HEAD, actix sends the headers of this body (its length included) without the body.
    response.insert_header((header::CONTENT_TYPE, asset.content_type)).body(asset.body)
}

/// Static files are read-only: 405 in the API's error shape, with `Allow`.
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut response = ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{} is not allowed on {}; allowed: GET, HEAD", req.method(), req.path()),
    )
    .error_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_have_distinct_etags_and_no_inline_code() {
        let tags: Vec<&str> = [&INDEX, &APP_JS, &APP_CSS, &ICON, &ME, &ME_JS].into_iter().map(Asset::etag).collect();
        for (i, tag) in tags.iter().enumerate() {
            assert!(tag.len() > 10, "{tag}");
            assert!(!tags[i + 1..].contains(tag), "duplicate ETag {tag}");
        }
        for (page, script) in [(&INDEX, "/dashboard/app.js"), (&ME, "/dashboard/me.js")] {
            let html = String::from_utf8_lossy(page.body);
            // The CSP forbids inline script and style: the page must not need them.
            assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains("<style"));
            let handlers = html.split(" on").skip(1).filter(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert_eq!(handlers.count(), 0, "no inline event handlers");
            assert!(!html.contains("javascript:"));
            assert!(html.contains(script) && html.contains("/dashboard/app.css"));
        }
        let me = String::from_utf8_lossy(ME_JS.body);
        assert!(!me.contains("localStorage") && !me.contains("sessionStorage") && !me.contains("innerHTML"));
    }
}
