//! The ops listener every service may open beside its own: `/health`, `/ready` and `/metrics`
//! for probes and scrapers, on an address that is not the service's public one.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The ops listener.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    /// Address of `/health`, `/ready` and `/metrics` (e.g. `0.0.0.0:9090` in a pod). Unset: no ops
    /// listener, and every service serves them on its own listen address as before. Set: the
    /// proxy and the admin API no longer serve `/metrics` on their public port (`/health` and
    /// `/ready` stay there for load balancers). One file configures every service, so on one host
    /// give each service its own (`CCP__OPS__LISTEN` per process).
    pub listen: Option<SocketAddr>,
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn unset_by_default_and_an_address_from_the_environment() {
        assert!(Settings::load_from(None, Vec::new()).unwrap().ops.listen.is_none());
        let env = vec![("CCP__OPS__LISTEN".to_owned(), "0.0.0.0:9090".to_owned())];
        let s = Settings::load_from(None, env).unwrap();
        assert_eq!(s.ops.listen, Some(([0, 0, 0, 0], 9090).into()));
        let env = vec![("CCP__OPS__LISTEN".to_owned(), "localhost".to_owned())];
        let err = Settings::load_from(None, env).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }
}
