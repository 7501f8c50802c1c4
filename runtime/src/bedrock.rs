//! The Bedrock Runtime client of the services that call Bedrock — the proxy's failover and the
//! admin API's readiness checks — built one way: TLS by rustls (ring) and the connection as
//! [`Egress`] says (proxy, extra CA), SDK retries off (each caller decides what a failure means:
//! the proxy fails over, a check reports it), and a private endpoint or local fake when one is
//! configured.

use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::Region;
use aws_sdk_bedrockruntime::Client;

use crate::egress::{Egress, EgressError};

/// A client for `endpoint` (`None`: AWS's regional endpoints), in `default_region` unless a call
/// overrides it, with these timeouts and no retries, connecting as `egress` says.
pub fn client(
    endpoint: Option<&str>,
    default_region: &str,
    timeouts: TimeoutConfig,
    egress: &Egress,
) -> Result<Client, EgressError> {
    let mut config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::new(default_region.to_owned()))
        .http_client(egress.smithy_http_client()?)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    if let Some(url) = endpoint {
        config = config.endpoint_url(url);
    }
    Ok(Client::from_conf(config.build()))
}
