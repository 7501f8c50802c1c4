//! `[compat]`: rehearsing a rolling upgrade (see `ccp_schemas::compat`).

use serde::{Deserialize, Serialize};

/// Compatibility between releases running side by side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompatSettings {
    /// Behave as a build of this older contract revision: read (and announce) only its event
    /// types. For rehearsing a rolling upgrade in staging; unset in production.
    pub emulate_contract: Option<u16>,
}
