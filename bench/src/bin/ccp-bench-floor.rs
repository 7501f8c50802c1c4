//! The framework floor: an actix-web server that forwards with awc, configured as the proxy is
//! (one worker, TCP_NODELAY, the proxy's pooled upstream client, the body read whole before
//! forwarding, the answer streamed back with its headers) and doing nothing else — no access
//! key, no JSON check, no usage tap, no event, no metrics. `ccp-bench` measures it in the same
//! rounds as the proxy: what it costs is what any proxy built on this stack costs; the rest is
//! the proxy's own work. A reference, not a product.
//!
//!   ccp-bench-floor LISTEN UPSTREAM_URL
//!
//! `POST /ak/{key}/v1/...` and `/v1/...` go to `UPSTREAM_URL/v1/...` (query kept);
//! `GET /floor-ready` answers 204.

use std::time::Duration;

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::BytesMut;
use ccp_proxy::{anthropic_client, forwarded_headers};
use futures_util::StreamExt as _;

struct Upstream {
    client: awc::Client,
    base: String,
}

async fn pass(req: HttpRequest, mut payload: web::Payload, upstream: web::Data<Upstream>) -> HttpResponse {
    let path = req.path();
    let tail = match path.strip_prefix("/ak/").and_then(|p| p.split_once('/')) {
        Some((_, rest)) => rest.strip_prefix("v1/"),
        None => path.strip_prefix("/v1/"),
    };
    let Some(tail) = tail else {
        return HttpResponse::NotFound().finish();
    };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
        }
    }
    let mut url = format!("{}/v1/{tail}", upstream.base);
    if let Some(q) = req.uri().query() {
        url.push('?');
        url.push_str(q);
    }
    let mut out = upstream.client.request(req.method().clone(), url.as_str());
    for (name, value) in forwarded_headers(req.headers()) {
        out = out.append_header((name.clone(), value.clone()));
    }
    match out.send_body(body.freeze()).await {
        Ok(response) => {
            let mut builder = HttpResponse::build(response.status());
            for (name, value) in forwarded_headers(response.headers()) {
                builder.append_header((name.clone(), value.clone()));
            }
            builder.streaming(response)
        }
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(base)) = (args.next(), args.next()) else {
        eprintln!("usage: ccp-bench-floor LISTEN UPSTREAM_URL");
        std::process::exit(2);
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
        .workers(1)
        .disable_signals()
        .tcp_nodelay(true)
        .bind(listen)?
        .run()
        .await
    })
}
