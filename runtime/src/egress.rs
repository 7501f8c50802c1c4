//! The one place that decides how an outbound connection leaves the machine — directly or
//! through the corporate HTTPS proxy (an HTTP CONNECT tunnel, with `Proxy-Authorization: Basic`
//! when the proxy URL carries credentials) — and which CAs it trusts (the public roots and
//! `egress.ca_file`). Every outbound client is built from an [`Egress`]: the proxy's Anthropic
//! and Bedrock-listing client (awc, through [`EgressProxy::connect`]), the Bedrock Runtime and KMS
//! clients (the AWS SDK's, [`Egress::smithy_http_client`]) and the projector's webhooks and the
//! admin API's listing check (reqwest, [`Egress::reqwest_builder`]).
//!
//! The proxy is used for `https://` destinations only (`HTTPS_PROXY` semantics); `http://`
//! destinations (local fakes, plain-HTTP webhooks) are always reached directly. The bypass list
//! is matched by one implementation for every client (hyper-util's, the one reqwest and the AWS
//! SDK use), so a host bypasses the proxy for all of them or for none.
//!
//! Errors name the connection (the proxy, the destination) and the cause; none shows the proxy
//! password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ccp_schemas::secrets::SecretString;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::config::{EgressSettings, ProxyUrl};
use crate::tls::{self, TlsFileError};

/// The bypass entries that keep loopback direct unless `egress.proxy_loopback` is on.
const LOOPBACK: &str = "localhost,127.0.0.0/8,::1";
/// Largest CONNECT answer head read from a proxy.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// Why egress settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The proxy URL is not one this build can use.
    #[error("{source_name} = `{shown}` is not a usable proxy URL: {why} (expected http://[user:password@]host:port)")]
    ProxyUrl {
        /// Where the URL came from (`egress.proxy_url`, `HTTPS_PROXY`, `https_proxy`).
        source_name: &'static str,
        /// The URL, password redacted.
        shown: String,
        /// What is wrong.
        why: String,
    },
    /// The extra CA bundle cannot be used (the message is the cause's: no source, said once).
    #[error("egress.ca_file: {0}")]
    Ca(TlsFileError),
    /// An HTTP client library refused the configuration.
    #[error("building the outbound HTTP client: {0}")]
    Client(String),
}

impl From<TlsFileError> for EgressError {
    fn from(e: TlsFileError) -> Self {
        Self::Ca(e)
    }
}

/// The HTTPS proxy outbound connections go through.
#[derive(Clone)]
pub struct EgressProxy {
    /// As configured, with its credentials (handed to the AWS SDK and reqwest, never shown).
    #[cfg_attr(not(any(feature = "bedrock", feature = "kms", feature = "reqwest")), allow(dead_code))]
    url: SecretString,
    /// `http://host:port`, what logs and errors show.
    shown: String,
    /// Where it came from.
    source_name: &'static str,
    host: String,
    port: u16,
    /// `Basic …` when the URL carries credentials.
    authorization: Option<SecretString>,
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("proxy", &self.shown)
            .field("from", &self.source_name)
            .field("credentials", &self.authorization.is_some())
            .finish()
    }
}

impl fmt::Display for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress proxy {} (from {})", self.shown, self.source_name)
    }
}

/// How outbound connections leave: the proxy (if any) and what bypasses it, and the CAs trusted.
#[derive(Clone)]
pub struct Egress {
    proxy: Option<EgressProxy>,
    /// The bypass list as configured (or from the environment).
    no_proxy: String,
    /// The bypass list in force (with the loopback entries unless `proxy_loopback`).
    bypass: String,
    matcher: Option<Arc<hyper_util::client::proxy::matcher::Matcher>>,
    ca_file: Option<PathBuf>,
    /// The certificates of `ca_file` (for the clients that take them one by one).
    #[cfg_attr(not(any(feature = "bedrock", feature = "kms", feature = "reqwest")), allow(dead_code))]
    extra_ca: Vec<CertificateDer<'static>>,
    tls: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress")
            .field("proxy", &self.proxy)
            .field("no_proxy", &self.bypass)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// From the settings, the process environment filling in what they leave unset.
    pub fn from_settings(settings: &EgressSettings) -> Result<Self, EgressError> {
        Self::resolve(settings, |name| std::env::var(name).ok())
    }

    /// From the settings, `env` filling in what they leave unset: the proxy from `HTTPS_PROXY`
    /// then `https_proxy`, the bypass list from `NO_PROXY` then `no_proxy` (the first that is
    /// set and not empty; a setting, even empty, wins over the environment).
    pub fn resolve(settings: &EgressSettings, env: impl Fn(&str) -> Option<String>) -> Result<Self, EgressError> {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let (source_name, url) = match &settings.proxy_url {
            Some(url) => ("egress.proxy_url", url.expose().trim().to_owned()),
            None => {
                first(["HTTPS_PROXY", "https_proxy"]).map_or(("", String::new()), |(n, v)| (n, v.trim().to_owned()))
            }
        };
        let proxy = if url.is_empty() { None } else { Some(parse_proxy(&url, source_name)?) };
        let no_proxy = match &settings.no_proxy {
            Some(list) => list.trim().to_owned(),
            None => first(["NO_PROXY", "no_proxy"]).map(|(_, v)| v.trim().to_owned()).unwrap_or_default(),
        };
        let bypass = match (settings.proxy_loopback, no_proxy.is_empty()) {
            (true, _) => no_proxy.clone(),
            (false, true) => LOOPBACK.to_owned(),
            (false, false) => format!("{no_proxy},{LOOPBACK}"),
        };
        let matcher = proxy.as_ref().map(|p| {
            Arc::new(
                hyper_util::client::proxy::matcher::Matcher::builder()
                    .https(p.shown.clone())
                    .no(bypass.clone())
                    .build(),
            )
        });
        let extra_ca = match &settings.ca_file {
            Some(path) => tls::certificates(path, "CA bundle")?,
            None => Vec::new(),
        };
        // The same file through the same checks as every other CA bundle (and its errors).
        let roots = tls::root_store(settings.ca_file.as_deref(), true)?;
        let tls = tls::client_config(roots, None)?;
        Ok(Self { proxy, no_proxy, bypass, matcher, ca_file: settings.ca_file.clone(), extra_ca, tls })
    }

    /// The proxy configured, if any.
    pub fn proxy(&self) -> Option<&EgressProxy> {
        self.proxy.as_ref()
    }

    /// The proxy a connection to `https://host:port` goes through (`None`: directly).
    pub fn proxy_for(&self, host: &str, port: u16) -> Option<&EgressProxy> {
        let (proxy, matcher) = (self.proxy.as_ref()?, self.matcher.as_ref()?);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let uri = http::Uri::builder().scheme("https").authority(authority).path_and_query("/").build().ok()?;
        matcher.intercept(&uri).map(|_| proxy)
    }

    /// The extra CA bundle, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// A rustls client configuration trusting the public roots and the extra CA bundle, offering
    /// `alpn` (e.g. `h2`, `http/1.1`).
    pub fn tls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut config = (*self.tls).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// One line for the start-up log: the proxy (no credentials), the bypass list, the CA file.
    pub fn describe(&self) -> String {
        let proxy = match &self.proxy {
            Some(p) => format!("through {p}{}", if p.authorization.is_some() { " with credentials" } else { "" }),
            None => "direct (no egress proxy)".to_owned(),
        };
        let ca = self
            .ca_file
            .as_ref()
            .map_or("public roots only".to_owned(), |p| format!("public roots and {}", p.display()));
        let bypass = match (&self.proxy, self.bypass.is_empty()) {
            (None, _) => String::new(),
            (Some(_), true) => "; bypassed for: nothing".to_owned(),
            (Some(_), false) => format!("; bypassed for: {}", self.bypass),
        };
        format!("outbound HTTPS: {proxy}{bypass}; trusting {ca}")
    }

    /// An HTTP client for the AWS SDK (Bedrock Runtime, KMS): rustls (ring), the platform's roots
    /// as before plus the extra CA bundle, and the proxy for the hosts it does not bypass.
    #[cfg(any(feature = "bedrock", feature = "kms"))]
    pub fn smithy_http_client(&self) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, EgressError> {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
        let mut trust = TrustStore::default();
        for der in &self.extra_ca {
            trust = trust.with_pem_certificate(pem(der));
        }
        let context =
            TlsContext::builder().with_trust_store(trust).build().map_err(|e| EgressError::Client(e.to_string()))?;
        let Some(proxy) = &self.proxy else {
            return Ok(aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .tls_context(context)
                .build_https());
        };
        let config = aws_smithy_http_client::proxy::ProxyConfig::https(proxy.url.expose())
            .map_err(|e| EgressError::Client(format!("{proxy}: {e}")))?
            .no_proxy(&self.bypass);
        Ok(aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
            let mut builder = aws_smithy_http_client::Connector::builder();
            builder.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            builder
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .tls_context(context.clone())
                .proxy_config(config.clone())
                .build()
        }))
    }

    /// A reqwest client builder trusting the extra CA bundle and using the proxy (and nothing
    /// from the environment: this is the one decision).
    #[cfg(feature = "reqwest")]
    pub fn reqwest_builder(&self) -> Result<reqwest::ClientBuilder, EgressError> {
        let mut builder = reqwest::Client::builder().no_proxy();
        for der in &self.extra_ca {
            let cert = reqwest::Certificate::from_der(der).map_err(|e| EgressError::Client(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        if let Some(proxy) = &self.proxy {
            let p = reqwest::Proxy::https(proxy.url.expose())
                .map_err(|_| EgressError::Client(format!("{proxy} is not a URL reqwest accepts")))?
                .no_proxy(reqwest::NoProxy::from_string(&self.bypass));
            builder = builder.proxy(p);
        }
        Ok(builder)
    }

    /// `key` connecting as this says (a KMS master key's client; a local key is unchanged).
    pub fn master_key(
        &self,
        key: Option<ccp_schemas::secrets::envelope::ConfiguredMasterKey>,
    ) -> Result<Option<ccp_schemas::secrets::envelope::ConfiguredMasterKey>, EgressError> {
        #[cfg(feature = "kms")]
        if let Some(ccp_schemas::secrets::envelope::ConfiguredMasterKey::Kms(kms)) = key {
            let kms = kms.with_http_client(self.smithy_http_client()?);
            return Ok(Some(ccp_schemas::secrets::envelope::ConfiguredMasterKey::Kms(kms)));
        }
        Ok(key)
    }

    /// The bypass list as configured (without the loopback entries).
    pub fn no_proxy(&self) -> &str {
        &self.no_proxy
    }
}

/// PEM text of one certificate (the AWS SDK's trust store takes PEM).
#[cfg(any(feature = "bedrock", feature = "kms"))]
fn pem(der: &CertificateDer<'_>) -> Vec<u8> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

fn parse_proxy(url: &str, source_name: &'static str) -> Result<EgressProxy, EgressError> {
    let shown = ProxyUrl::new(url).redacted();
    let bad = |why: &str| EgressError::ProxyUrl { source_name, shown: shown.clone(), why: why.to_owned() };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(bad(&format!(
            "only http:// proxies are supported (the tunnel to the proxy is plain HTTP CONNECT; what goes through it stays TLS), not {}://",
            scheme.chars().take(16).collect::<String>()
        )));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if rest.len() > authority.len() && !matches!(&rest[authority.len()..], "/" | "") {
        return Err(bad("a proxy URL has no path, query or fragment"));
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport).ok_or_else(|| bad("no host, or a port that is not a number"))?;
    let authorization = match userinfo {
        None => None,
        Some(userinfo) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let (user, password) = (percent_decode(user).ok_or_else(|| bad("bad %-escape in the user name"))?, {
                percent_decode(password).ok_or_else(|| bad("bad %-escape in the password"))?
            });
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Some(SecretString::new(format!("Basic {token}")))
        }
    };
    Ok(EgressProxy {
        url: SecretString::new(url),
        shown: format!("http://{}", bracket(&host, port)),
        source_name,
        host,
        port,
        authorization,
    })
}

/// `host[:port]` or `[v6][:port]`; port 80 when absent.
fn split_host_port(hostport: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
        None => 80,
    };
    Some((host.to_owned(), port))
}

fn bracket(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl EgressProxy {
    /// `http://host:port` (no credentials).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A TCP connection to `host:port` tunnelled through the proxy (HTTP CONNECT), ready for the
    /// TLS handshake with `host`. The error names the proxy, the destination and the cause.
    pub async fn connect(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let target = bracket(host.trim_start_matches('[').trim_end_matches(']'), port);
        let fail = |why: String| std::io::Error::other(format!("{self} could not open a tunnel to {target}: {why}"));
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail(format!("the proxy cannot be reached ({e})")))?;
        let _ = stream.set_nodelay(true);
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.authorization {
            request.push_str("Proxy-Authorization: ");
            request.push_str(auth.expose());
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| fail(format!("sending CONNECT failed ({e})")))?;
        drop(request);
        // Read the answer head only: nothing follows it before the client speaks (TLS).
        let mut head = Vec::with_capacity(512);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_CONNECT_HEAD {
                return Err(fail("the proxy's answer to CONNECT is too long to be HTTP".into()));
            }
            match stream.read(&mut byte).await {
                Ok(0) => return Err(fail("the proxy closed the connection without answering CONNECT".into())),
                Ok(_) => head.push(byte[0]),
                Err(e) => return Err(fail(format!("reading the proxy's answer failed ({e})"))),
            }
        }
        let status_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let status_line: String =
            String::from_utf8_lossy(status_line).trim().chars().filter(|c| !c.is_control()).take(120).collect();
        let mut parts = status_line.splitn(3, ' ');
        let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        if !version.starts_with("HTTP/1.") {
            return Err(fail(format!("the proxy did not answer CONNECT in HTTP (`{status_line}`)")));
        }
        match code.parse::<u16>() {
            Ok(200..=299) => Ok(stream),
            Ok(407) if self.authorization.is_some() => {
                Err(fail(format!("the proxy refused the credentials in {} (`{status_line}`)", self.source_name)))
            }
            Ok(407) => Err(fail(format!(
                "the proxy wants credentials (`{status_line}`): give them in {} as http://user:password@host:port",
                self.source_name
            ))),
            Ok(_) => Err(fail(format!("the proxy refused CONNECT (`{status_line}`)"))),
            Err(_) => Err(fail(format!("the proxy did not answer CONNECT in HTTP (`{status_line}`)"))),
        }
    }
}

/// `host:port` of a URL (no scheme, credentials or path), to name a connection in a message.
pub fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, host)| host)
}

/// A failed outbound connection to `host` explained: the cause as the client library gave it,
/// and what to check when it is an untrusted certificate.
pub fn explain_connect_failure(host: &str, cause: &str, egress_ca: Option<&Path>) -> String {
    let untrusted = ["UnknownIssuer", "invalid peer certificate", "certificate verify failed"];
    let hint = if untrusted.iter().any(|u| cause.contains(u)) {
        match egress_ca {
            Some(path) => format!(
                "; the certificate {host} presented is not signed by a public CA nor by {}",
                path.display()
            ),
            None => format!(
                "; the certificate {host} presented is not signed by a public CA (behind a TLS-inspecting proxy or with a private endpoint, set egress.ca_file to its CA bundle)"
            ),
        }
    } else {
        String::new()
    };
    format!("{host}: {cause}{hint}")
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_authority_of_a_url() {
        assert_eq!(super::authority("https://api.anthropic.com"), "api.anthropic.com");
        assert_eq!(super::authority("https://u:p@localhost:8443/base"), "localhost:8443");
        assert_eq!(super::authority("http://127.0.0.1:1"), "127.0.0.1:1");
    }
    use super::*;

    fn settings(proxy: Option<&str>, no_proxy: Option<&str>) -> EgressSettings {
        EgressSettings {
            proxy_url: proxy.map(ProxyUrl::new),
            no_proxy: no_proxy.map(str::to_owned),
            ..EgressSettings::default()
        }
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn settings_win_over_the_environment_and_upper_case_over_lower() {
        let e = [("HTTPS_PROXY", "http://upper:3128"), ("https_proxy", "http://lower:3128"), ("NO_PROXY", "a.example")];
        let egress = Egress::resolve(&settings(None, None), env(&e)).unwrap();
        assert_eq!(egress.proxy().map(EgressProxy::shown), Some("http://upper:3128"));
        assert_eq!(egress.no_proxy(), "a.example");
        let egress = Egress::resolve(&settings(None, None), env(&e[1..])).unwrap();
        assert_eq!(egress.proxy().map(EgressProxy::shown), Some("http://lower:3128"));
        let egress = Egress::resolve(&settings(Some("http://set:8080"), Some("")), env(&e)).unwrap();
        assert_eq!(egress.proxy().map(EgressProxy::shown), Some("http://set:8080"));
        assert_eq!(egress.no_proxy(), "");
        // Empty: no proxy, whatever the environment says.
        let egress = Egress::resolve(&settings(Some(""), None), env(&e)).unwrap();
        assert!(egress.proxy().is_none() && egress.proxy_for("api.anthropic.com", 443).is_none());
        assert!(Egress::resolve(&settings(None, None), env(&[])).unwrap().proxy().is_none());
    }

    #[test]
    fn the_bypass_list_matches_hosts_domains_addresses_and_keeps_loopback_direct() {
        let egress = Egress::resolve(
            &settings(Some("http://proxy:3128"), Some("internal.corp, .svc,10.0.0.0/8,192.0.2.7")),
            env(&[]),
        )
        .unwrap();
        let proxied = |host: &str| egress.proxy_for(host, 443).is_some();
        for host in
            ["api.anthropic.com", "bedrock-runtime.us-east-1.amazonaws.com", "corp", "xinternal.corp", "11.0.0.1"]
        {
            assert!(proxied(host), "{host} should go through the proxy");
        }
        for host in [
            "internal.corp",
            "a.internal.corp",
            "x.svc",
            "10.1.2.3",
            "192.0.2.7",
            "localhost",
            "a.localhost",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "[::1]",
        ] {
            assert!(!proxied(host), "{host} should be direct");
        }
        let everything = Egress::resolve(&settings(Some("http://proxy:3128"), Some("*")), env(&[])).unwrap();
        assert!(everything.proxy_for("api.anthropic.com", 443).is_none());
        let loopback_too = Egress::resolve(
            &EgressSettings { proxy_loopback: true, ..settings(Some("http://proxy:3128"), None) },
            env(&[]),
        )
        .unwrap();
        assert!(loopback_too.proxy_for("localhost", 443).is_some());
        assert!(loopback_too.proxy_for("127.0.0.1", 443).is_some());
    }

    #[test]
    fn credentials_become_basic_authorization_and_are_never_shown() {
        let egress =
            Egress::resolve(&settings(Some("http://al%40ice:pa%3Ass@proxy.corp:3128/"), None), env(&[])).unwrap();
        let proxy = egress.proxy().unwrap();
        // base64("al@ice:pa:ss")
        assert_eq!(proxy.authorization.as_ref().map(SecretString::expose), Some("Basic YWxAaWNlOnBhOnNz"));
        let shown = format!("{proxy} {proxy:?} {egress:?} {}", egress.describe());
        assert!(!shown.contains("pa%3Ass") && !shown.contains("pa:ss") && !shown.contains("YWxA"), "{shown}");
        assert!(shown.contains("http://proxy.corp:3128") && shown.contains("with credentials"), "{shown}");
    }

    #[test]
    fn unusable_proxy_urls_are_refused_naming_the_source_without_the_password() {
        for (url, why) in [
            ("https://u:topsecret@proxy:3128", "only http://"),
            ("socks5://proxy:1080", "only http://"),
            ("proxy:3128", "no scheme"),
            ("http://u:topsecret@:3128", "no host"),
            ("http://proxy:port", "not a number"),
            ("http://proxy:3128/path", "no path"),
        ] {
            let err = Egress::resolve(&settings(None, None), env(&[("HTTPS_PROXY", url)])).unwrap_err().to_string();
            assert!(err.contains("HTTPS_PROXY") && err.contains(why), "{url}: {err}");
            assert!(!err.contains("topsecret"), "{err}");
        }
        let err = Egress::resolve(&settings(Some("ftp://x"), None), env(&[])).unwrap_err().to_string();
        assert!(err.contains("egress.proxy_url"), "{err}");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let s = EgressSettings { ca_file: Some("/nonexistent/corp-ca.pem".into()), ..EgressSettings::default() };
        let err = Egress::resolve(&s, env(&[])).unwrap_err().to_string();
        assert!(err.contains("egress.ca_file") && err.contains("/nonexistent/corp-ca.pem"), "{err}");
    }

    #[tokio::test]
    async fn a_tunnel_is_opened_and_a_refusal_is_explained() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in ["HTTP/1.1 200 Connection established\r\n\r\n", "HTTP/1.1 403 Forbidden by policy\r\n\r\n"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(answer.as_bytes()).await.unwrap();
                if answer.contains("200") {
                    s.write_all(b"tunnelled").await.unwrap();
                }
            }
            seen
        });
        let egress =
            Egress::resolve(&settings(Some(&format!("http://bob:pw@127.0.0.1:{port}")), None), env(&[])).unwrap();
        let proxy = egress.proxy().unwrap();
        let mut stream = proxy.connect("api.anthropic.com", 443).await.unwrap();
        let mut got = [0u8; 9];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"tunnelled");
        let err = proxy.connect("api.anthropic.com", 443).await.unwrap_err().to_string();
        assert!(err.contains(&format!("egress proxy http://127.0.0.1:{port}")), "{err}");
        assert!(err.contains("api.anthropic.com:443") && err.contains("403 Forbidden by policy"), "{err}");
        assert!(!err.contains("pw"), "{err}");
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("CONNECT api.anthropic.com:443 HTTP/1.1\r\n"), "{}", seen[0]);
        assert!(seen[0].contains("Proxy-Authorization: Basic Ym9iOnB3\r\n"), "{}", seen[0]);
    }

    #[test]
    fn an_untrusted_certificate_is_explained() {
        let text = explain_connect_failure("localhost:8443", "invalid peer certificate: UnknownIssuer", None);
        assert!(
            text.starts_with("localhost:8443: invalid peer certificate") && text.contains("egress.ca_file"),
            "{text}"
        );
        assert_eq!(explain_connect_failure("h:1", "Connection refused", None), "h:1: Connection refused");
    }
}
