//! The platform engineer's dashboard: a single page of plain HTML, CSS and JavaScript modules (no
//! build step, no libraries, nothing fetched from elsewhere) compiled into the binary and served at
//! `/` and `/dashboard/…`; and the developer's self-service page at `/me` (`me.html`, `me.js`),
//! which reads `/v1/self` with the access key the developer pastes (kept in the page's memory only).
//! The scripts are native ES modules: `app.js` and `me.js` start the two pages, `js/admin/` holds
//! one module per dashboard page or concern, `js/shared/` the helpers both pages import.
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
    /// Its path in `admin-api/dashboard/`.
    file: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(file: &'static str, body: &'static [u8], content_type: &'static str) -> Self {
        Self { file, body, content_type, etag: OnceLock::new() }
    }

    /// A strong ETag of the bytes, computed once.
    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            use sha2::Digest as _;
            format!("\"{}\"", hex::encode(&sha2::Sha256::digest(self.body)[..12]))
        })
    }
}

/// `asset!("path", content type)`: the file at that path in `admin-api/dashboard/`, embedded.
macro_rules! asset {
    ($file:literal, $content_type:expr) => {
        Asset::new($file, include_bytes!(concat!("../dashboard/", $file)), $content_type)
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The dashboard, served at `/`, `/dashboard`, `/dashboard/` and `/dashboard/index.html`.
static INDEX: Asset = asset!("index.html", HTML);
/// The developer's self-service page (authenticated by their access key, see `/v1/self`), at `/me`.
static ME: Asset = asset!("me.html", HTML);

/// `files! { "path" => content type, … }`: `static FILES`, the files served at `/dashboard/<file>`.
macro_rules! files {
    ($($file:literal => $content_type:expr,)*) => {
        static FILES: [Asset; [$($file),*].len()] = [$(asset!($file, $content_type)),*];
    };
}

// Every other file, served at `/dashboard/<file>`: one line each. A test fails if a `.js` file of
// the directory is missing here (a module the browser could not load).
files! {
    "app.css" => "text/css; charset=utf-8",
    "icon.svg" => "image/svg+xml",
    // The two pages' entry points.
    "app.js" => JS,
    "me.js" => JS,
    // Helpers both pages import.
    "js/shared/dom.js" => JS,
    "js/shared/format.js" => JS,
    "js/shared/widgets.js" => JS,
    // The dashboard: its state, API client, page pieces, router, and one module per page.
    "js/admin/state.js" => JS,
    "js/admin/labels.js" => JS,
    "js/admin/time.js" => JS,
    "js/admin/api.js" => JS,
    "js/admin/ui.js" => JS,
    "js/admin/dialogs.js" => JS,
    "js/admin/charts.js" => JS,
    "js/admin/router.js" => JS,
    "js/admin/session.js" => JS,
    "js/admin/overview.js" => JS,
    "js/admin/teams.js" => JS,
    "js/admin/users.js" => JS,
    "js/admin/user.js" => JS,
    "js/admin/keys.js" => JS,
    "js/admin/usage.js" => JS,
    "js/admin/csv.js" => JS,
    "js/admin/audit.js" => JS,
    "js/admin/requests.js" => JS,
    "js/admin/circuits.js" => JS,
    "js/admin/admins.js" => JS,
    "js/admin/models.js" => JS,
}

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
    cfg.service(asset_resource("/me", &ME));
    for asset in &FILES {
        cfg.service(asset_resource(&format!("/dashboard/{}", asset.file), asset));
    }
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
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn text(asset: &Asset) -> &str {
        std::str::from_utf8(asset.body).unwrap()
    }

    fn file(name: &str) -> &'static Asset {
        FILES.iter().find(|a| a.file == name).unwrap_or_else(|| panic!("{name} is not served"))
    }

    /// The files a script imports (`from '…'`, `import '…'`, `import('…')`), as paths in the
    /// directory, resolved against the script's own.
    fn imports(script: &Asset) -> Vec<String> {
        let source = text(script);
        let mut found = Vec::new();
        for marker in ["from '", "from \"", "import '", "import \"", "import('", "import(\""] {
            let quote = &marker[marker.len() - 1..];
            for (at, _) in source.match_indices(marker) {
                let rest = &source[at + marker.len()..];
                let Some(end) = rest.find(quote) else { continue };
                let spec = &rest[..end];
                assert!(
                    spec.starts_with("./") || spec.starts_with("../"),
                    "{}: import {spec:?} is not relative",
                    script.file
                );
                let mut parts: Vec<&str> = script.file.split('/').collect();
                parts.pop();
                for part in spec.split('/') {
                    match part {
                        "." => {}
                        ".." => assert!(parts.pop().is_some(), "{}: {spec} leaves the directory", script.file),
                        _ => parts.push(part),
                    }
                }
                found.push(parts.join("/"));
            }
        }
        found
    }

    /// Every `.js` file under `dir`, as a path relative to `root`.
    fn scripts_on_disk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scripts_on_disk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "js") {
                let relative = path.strip_prefix(root).unwrap().to_str().unwrap().replace('\\', "/");
                out.insert(relative);
            }
        }
    }

    #[test]
    fn assets_have_distinct_etags_and_no_inline_code() {
        let tags: Vec<&str> = [&INDEX, &ME].into_iter().chain(&FILES).map(Asset::etag).collect();
        for (i, tag) in tags.iter().enumerate() {
            assert!(tag.len() > 10, "{tag}");
            assert!(!tags[i + 1..].contains(tag), "duplicate ETag {tag}");
        }
        for (page, script) in [(&INDEX, "app.js"), (&ME, "me.js")] {
            let html = text(page);
            // The CSP forbids inline script and style: the page must not need them.
            assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains("<style"));
            let handlers = html.split(" on").skip(1).filter(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert_eq!(handlers.count(), 0, "no inline event handlers");
            assert!(!html.contains("javascript:"));
            // One script, a module (its imports are loaded from the same origin).
            assert_eq!(html.matches("<script").count(), 1, "{}", page.file);
            assert!(html.contains(&format!(r#"<script type="module" src="/dashboard/{script}"></script>"#)));
            assert!(html.contains("/dashboard/app.css"));
        }
    }

    #[test]
    fn every_script_of_the_directory_is_served_and_every_import_resolves() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
        let mut on_disk = BTreeSet::new();
        scripts_on_disk(&root, &root, &mut on_disk);
        let served: BTreeSet<String> =
            FILES.iter().filter(|a| a.content_type == JS).map(|a| a.file.to_owned()).collect();
        assert!(on_disk.len() > 2, "{on_disk:?}");
        let missing: Vec<&String> = on_disk.difference(&served).collect();
        assert!(missing.is_empty(), "not served (add each to `files!` in admin-api/src/dashboard.rs): {missing:?}");
        for script in FILES.iter().filter(|a| a.content_type == JS) {
            assert!(script.file.ends_with(".js"), "{}", script.file);
            for import in imports(script) {
                assert_eq!(file(&import).content_type, JS, "{} imports {import}", script.file);
            }
        }
    }

    #[test]
    fn pages_build_text_nodes_and_me_keeps_nothing() {
        for script in FILES.iter().filter(|a| a.content_type == JS) {
            let source = text(script);
            for html_sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
                assert!(!source.contains(html_sink), "{} uses {html_sink}", script.file);
            }
        }
        // /me and every module it loads: the access key is never stored.
        let mut seen = BTreeSet::new();
        let mut queue = vec!["me.js".to_owned()];
        while let Some(name) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let script = file(&name);
            let source = text(script);
            assert!(!source.contains("localStorage") && !source.contains("sessionStorage"), "{name} (loaded by /me)");
            assert!(!source.contains("document.cookie"), "{name} (loaded by /me)");
            queue.extend(imports(script));
        }
        assert!(seen.len() > 1, "/me imports the shared helpers: {seen:?}");
        assert!(
            seen.iter().all(|s| !s.starts_with("js/admin/")),
            "/me loads none of the dashboard's own modules: {seen:?}"
        );
    }
}
