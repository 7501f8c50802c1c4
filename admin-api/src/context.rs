//! Per-request context: a request id (`x-request-id` on every response and in every error body
//! and event), the client address, and the authenticated admin, as one extractor for handlers.

use std::future::{ready, Ready};
use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use ccp_schemas::ids::RequestId;
use ccp_schemas::Actor;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::CommandMeta;

tokio::task_local! {
    /// The current request's id, for error bodies built without the request at hand.
    pub static REQUEST_ID: String;
}

/// The request id of the request being handled, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[derive(Clone)]
struct RequestIdExt(String);

/// Middleware: assigns the request id and sets `x-request-id` on the response.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = RequestId::new().to_string();
    req.extensions_mut().insert(RequestIdExt(id.clone()));
    let mut response = REQUEST_ID.scope(id.clone(), next.call(req)).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

/// What a handler knows about its request.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The request id.
    pub request_id: String,
    /// The client address: the peer, or whom a trusted proxy forwarded for ([`ClientAddress`]).
    pub source: Option<IpAddr>,
    /// The admin, on authenticated routes.
    pub identity: Option<Identity>,
    /// `If-Match`: the aggregate version (an earlier answer's `ETag`) the command expects.
    pub if_match: Option<u64>,
}

impl Ctx {
    /// The authenticated admin (routes behind [`crate::auth::require_auth`] always have one).
    pub fn admin(&self) -> Result<&Identity, ApiError> {
        self.identity.as_ref().ok_or_else(|| ApiError::unauthenticated("authentication required"))
    }

    /// Event metadata for a command run by this request.
    pub fn meta(&self) -> CommandMeta {
        let actor = match &self.identity {
            Some(i) => Actor::Admin { admin_id: i.admin_id, username: i.username.clone() },
            None => Actor::Anonymous,
        };
        CommandMeta { actor, request_id: self.request_id.clone(), source: self.source, if_match: self.if_match }
    }
}

impl FromRequest for Ctx {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let if_match = match req.headers().get("if-match") {
            None => None,
            Some(v) => match v
                .to_str()
                .ok()
                .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(version) => Some(version),
                None => return ready(Err(ApiError::invalid("if-match", "must be an ETag of this API, e.g. \"42\""))),
            },
        };
        let extensions = req.extensions();
        let request_id = extensions.get::<RequestIdExt>().map_or_else(|| RequestId::new().to_string(), |r| r.0.clone());
        ready(Ok(Self {
            request_id,
            source: {
                let peer = req.peer_addr().map(|a| a.ip());
                match req.app_data::<actix_web::web::Data<ClientAddress>>() {
                    Some(rule) => rule.resolve(peer, req.headers()),
                    None => peer,
                }
            },
            identity: extensions.get::<Identity>().cloned(),
            if_match,
        }))
    }
}

/// Which peers may say who the client is (`admin.trusted_proxies`: addresses or CIDR ranges),
/// and the rule that reads it: a request from a trusted peer has its client taken from
/// `Forwarded` (`for=`) or else `X-Forwarded-For`, reading from the right and skipping trusted
/// proxies — the first address a trusted proxy did not add itself. From any other peer, or with
/// no usable header, the client is the peer: a header anyone can send never chooses the address
/// throttling counts.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress {
    trusted: Vec<(IpAddr, u8)>,
}

/// A `trusted_proxies` entry that is neither an address nor a CIDR range.
#[derive(Debug, thiserror::Error)]
#[error("admin.trusted_proxies: `{0}` is not an IP address or a CIDR range such as 10.0.0.0/8")]
pub struct BadTrustedProxy(String);

impl ClientAddress {
    /// Parses `admin.trusted_proxies`.
    pub fn new(entries: &[String]) -> Result<Self, BadTrustedProxy> {
        let trusted = entries
            .iter()
            .map(|entry| {
                let bad = || BadTrustedProxy(entry.chars().take(64).collect());
                let (addr, len) = entry.trim().split_once('/').map_or((entry.trim(), None), |(a, l)| (a, Some(l)));
                let addr: IpAddr = addr.parse().map_err(|_| bad())?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let len = match len {
                    None => max,
                    Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(bad)?,
                };
                Ok((addr, len))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { trusted })
    }

    fn is_trusted(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.trusted.iter().any(|(net, len)| match (canonical(*net), addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *len),
            _ => false,
        })
    }

    /// The client of a request from `peer` with these headers.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &actix_web::http::header::HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = match headers.get("forwarded").and_then(|v| v.to_str().ok()) {
            Some(value) => value
                .split(',')
                .filter_map(|element| {
                    element.split(';').find_map(|pair| {
                        let (k, v) = pair.trim().split_once('=')?;
                        k.trim().eq_ignore_ascii_case("for").then(|| parse_node(v.trim()))?
                    })
                })
                .collect(),
            None => headers
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| parse_node(a.trim()))
                .collect(),
        };
        let client = forwarded.iter().rev().find(|a| !self.is_trusted(**a)).or(forwarded.first()).copied();
        Some(client.unwrap_or(peer))
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let (bytes, bits) = (usize::from(len / 8), len % 8);
    a[..bytes] == b[..bytes] && (bits == 0 || (a[bytes] ^ b[bytes]) >> (8 - bits) == 0)
}

/// A `for=` node or an `X-Forwarded-For` entry: `192.0.2.1`, `"[2001:db8::1]:4711"`,
/// `192.0.2.1:4711`; `unknown` and obfuscated identifiers are not addresses.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok()).map(canonical);
    }
    node.parse()
        .ok()
        .or_else(|| node.rsplit_once(':').and_then(|(a, _)| a.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4))
        .map(canonical)
}

#[cfg(test)]
mod client_address_tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn only_a_trusted_peer_says_who_the_client_is() {
        let rule = ClientAddress::new(&["10.0.0.0/8".into(), "2001:db8::1".into()]).unwrap();
        let spoof = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(rule.resolve(ip("198.51.100.7"), &spoof), ip("198.51.100.7"), "an untrusted peer is the client");
        assert_eq!(rule.resolve(ip("10.1.2.3"), &spoof), ip("203.0.113.9"));
        assert_eq!(rule.resolve(ip("::ffff:10.1.2.3"), &spoof), ip("203.0.113.9"), "IPv4-mapped peers");
        // The client cannot choose by prepending: the rightmost untrusted entry wins.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.9.9.9")]);
        assert_eq!(rule.resolve(ip("10.1.2.3"), &chain), ip("203.0.113.9"));
        let forwarded = headers(&[("forwarded", r#"for=1.1.1.1, for="[2001:db8::77]:4711";proto=https"#)]);
        assert_eq!(rule.resolve(ip("2001:db8::1"), &forwarded), ip("2001:db8::77"));
        let garbage = headers(&[("x-forwarded-for", "unknown, _hidden")]);
        assert_eq!(rule.resolve(ip("10.1.2.3"), &garbage), ip("10.1.2.3"), "no address: the peer");
        assert_eq!(ClientAddress::default().resolve(ip("10.1.2.3"), &spoof), ip("10.1.2.3"), "nothing trusted");
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["10.0.0.0/33", "proxy.internal", "10.0.0.0/x", "::1/129"] {
            let e = ClientAddress::new(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("CIDR"), "{e}");
        }
        assert!(ClientAddress::new(&["0.0.0.0/0".into(), "::/0".into()]).is_ok());
    }
}
