//! How the services reach the outside world: an HTTP proxy for outbound HTTPS (HTTP CONNECT,
//! optionally with credentials), the hosts that bypass it, and an extra CA bundle trusted by every
//! outbound client (Anthropic, Bedrock, KMS, webhooks). Turned into clients by
//! [`crate::egress::Egress`].

use std::fmt;
use std::path::PathBuf;

use ccp_schemas::secrets::SecretString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Outbound connections of every service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// HTTP proxy for outbound HTTPS, `http://[user:password@]host:port` (CONNECT tunnels; the
    /// traffic inside stays end-to-end TLS). Unset: `HTTPS_PROXY`, else `https_proxy`, from the
    /// environment. Empty: no proxy, whatever the environment says. Printed with the password
    /// redacted.
    pub proxy_url: Option<ProxyUrl>,
    /// Hosts reached directly, comma-separated: `*`, host or domain names (`example.com` and
    /// `.example.com` both match the domain and its subdomains), IP addresses or CIDR ranges.
    /// Unset: `NO_PROXY`, else `no_proxy`, from the environment.
    pub no_proxy: Option<String>,
    /// Send loopback destinations (`localhost`, `*.localhost`, 127.0.0.0/8, `::1`) through the
    /// proxy too. Off: they are always reached directly, so local fakes keep working when a
    /// developer's environment sets `HTTPS_PROXY`.
    pub proxy_loopback: bool,
    /// PEM bundle of extra CA certificates trusted by every outbound HTTPS client, besides the
    /// public roots (a TLS-inspecting corporate proxy, private endpoints).
    pub ca_file: Option<PathBuf>,
}

/// A proxy URL, which may carry a password: `Debug` and `Serialize` show it as
/// `http://user:<redacted>@host:port`.
#[derive(Clone, Default)]
pub struct ProxyUrl(SecretString);

impl ProxyUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::new(url))
    }

    /// The URL with its credentials. Call only where it is used, never to log or format it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with any password replaced by `<redacted>` (and nothing else of the URL hidden).
    pub fn redacted(&self) -> String {
        redact_userinfo(self.0.expose())
    }
}

/// `scheme://user:password@rest` → `scheme://user:<redacted>@rest`; a URL without a password
/// is returned as is.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    let user = rest[..at].split_once(':').map_or(&rest[..at], |(user, _)| user);
    let sep = if scheme.is_empty() { "" } else { "://" };
    let password = if rest[..at].contains(':') { ":<redacted>" } else { "" };
    format!("{scheme}{sep}{user}{password}{}", &rest[at..])
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl Serialize for ProxyUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for ProxyUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn passwords_never_print_and_the_rest_does() {
        assert_eq!(redact_userinfo("http://u:s3cr%40t@proxy:3128"), "http://u:<redacted>@proxy:3128");
        assert_eq!(redact_userinfo("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(redact_userinfo("http://user@proxy:3128/"), "http://user@proxy:3128/");
        assert_eq!(redact_userinfo("u:pw@proxy:3128"), "u:<redacted>@proxy:3128");
        let env = vec![
            ("CCP__EGRESS__PROXY_URL".to_owned(), "http://alice:hunter2pw@proxy.corp:3128".to_owned()),
            ("CCP__EGRESS__NO_PROXY".to_owned(), ".corp,10.0.0.0/8".to_owned()),
        ];
        let s = Settings::load_from(None, env).unwrap();
        assert_eq!(s.egress.proxy_url.as_ref().map(ProxyUrl::expose), Some("http://alice:hunter2pw@proxy.corp:3128"));
        let shown = format!("{}{:?}", s.to_redacted_toml(), s);
        assert!(!shown.contains("hunter2pw"), "{shown}");
        assert!(shown.contains("http://alice:<redacted>@proxy.corp:3128"), "{shown}");
        assert_eq!(s.egress.no_proxy.as_deref(), Some(".corp,10.0.0.0/8"));
        assert!(!s.egress.proxy_loopback && s.egress.ca_file.is_none());
    }
}
