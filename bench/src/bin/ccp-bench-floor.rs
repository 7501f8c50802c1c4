//! The framework floor: an actix-web server that forwards with awc, set up as the proxy is (the
//! same worker count, TCP_NODELAY, the proxy's pooled upstream client, its path split and
//! upstream request (URL, query, header filter), the body read whole — bounded by the proxy's default limit — before forwarding, the
//! answer streamed back with its headers and, when the upstream sent one, its Content-Length)
//! and doing nothing else — no access key check, no JSON check, no usage tap, no event, no
//! metrics. `ccp-bench` measures it in the same rounds as the proxy: what it costs is what any
//! proxy built on this stack costs; the rest is the proxy's own work. A reference, not a product.
//!
//!   ccp-bench-floor LISTEN UPSTREAM_URL [WORKERS]
//!
//! `POST /ak/{key}/v1/...` and `/v1/...` go to `UPSTREAM_URL/v1/...` (query kept);
//! `GET /floor-ready` answers 204.

// A command-line tool: its usage errors go to stderr.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::BytesMut;
use ccp_proxy::{anthropic_client, proxied_path, relay_answer, upstream_request, ProxiedPath};
use futures_util::StreamExt as _;

/// The proxy's default `proxy.max_body_bytes`.
const MAX_BODY: usize = 32 * 1024 * 1024;

struct Upstream {
    client: awc::Client,
    base: String,
}

fn content_length(headers: &actix_web::http::header::HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

async fn pass(req: HttpRequest, mut payload: web::Payload, upstream: web::Data<Upstream>) -> HttpResponse {
    let tail = match proxied_path(req.path()) {
        Some(ProxiedPath::KeyInPath { tail, .. } | ProxiedPath::KeyInHeader { tail }) => tail,
        None => return HttpResponse::NotFound().finish(),
    };
    let declared = content_length(req.headers()).and_then(|n| usize::try_from(n).ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return HttpResponse::PayloadTooLarge().finish();
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) if body.len() + chunk.len() <= MAX_BODY => body.extend_from_slice(&chunk),
            Ok(_) => return HttpResponse::PayloadTooLarge().finish(),
            Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
        }
    }
    let out = upstream_request(&upstream.client, &upstream.base, tail, &req);
    match out.send_body(body.freeze()).await {
        Ok(response) => relay_answer(response, |body| body),
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(base)) = (args.next(), args.next()) else {
        eprintln!("usage: ccp-bench-floor LISTEN UPSTREAM_URL [WORKERS]");
        std::process::exit(2);
    };
    let workers = match args.next().map(|w| w.parse::<usize>()) {
        None => 1,
        Some(Ok(w)) if w > 0 => w,
        Some(_) => {
            eprintln!("ccp-bench-floor: WORKERS must be a positive number");
            std::process::exit(2);
        }
    };
    let base = base.trim_end_matches('/').to_owned();
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(Upstream {
                    client: anthropic_client(Duration::from_secs(600), Duration::from_secs(10)),
                    base: base.clone(),
                }))
                .route("/floor-ready", web::get().to(HttpResponse::NoContent))
                .default_service(web::to(pass))
        })
        .workers(workers)
        .disable_signals()
        .tcp_nodelay(true)
        .bind(listen)?
        .run()
        .await
    })
}
