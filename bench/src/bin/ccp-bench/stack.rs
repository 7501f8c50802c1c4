//! The proxy under measurement and its three keys: a plain one, one whose user has a monthly
//! budget and which has a Bedrock key (budget and breaker checks), and one more of those for the
//! failover requests.

use ccp_bench::proxy_process::{self, ProxyProcess};
use ccp_runtime::config::Settings;
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_tests::events::Log;

use crate::Options;
use crate::{BEDROCK_KEY, BUDGET_USD, CIRCUIT_FAILURE_THRESHOLD, DEFAULT_BEDROCK_MODEL};

/// The proxy child process and the keys it serves.
pub struct Stack {
    pub proxy: ProxyProcess,
    /// A plain key: no budget, no Bedrock key (the passthrough baseline).
    pub key: String,
    /// A key whose user has a monthly budget and which has a Bedrock key (passthrough "+checks").
    pub checked_key: String,
    /// The same setup, another user: the failover requests (its breaker counts their 429s).
    pub failover_key: String,
}

impl Stack {
    /// Starts the proxy in front of `upstream` and gives it the keys, once it accepts them.
    pub async fn start(
        opts: &Options,
        settings: &Settings,
        upstream: &ccp_bench::upstream::Upstream,
        log: &Log,
    ) -> anyhow::Result<Self> {
        let env = [
            ("CCP__PROXY__BEDROCK_ENDPOINT_URL", upstream.bedrock_url()),
            ("CCP__PROXY__CIRCUIT_FAILURE_THRESHOLD", CIRCUIT_FAILURE_THRESHOLD.to_string()),
            ("CCP__BUDGETS__ENFORCE", opts.budget_enforce.clone()),
        ];
        let proxy =
            ProxyProcess::start(&opts.proxy_bin, settings, &upstream.url(), opts.workers, &env, opts.pin).await?;
        let keys = async {
            let (_, _, key) = log.user_with_key("bench").await;
            let master = proxy_process::master_key(settings)?;
            let (checked, _) = bedrock_user(log, "bench-checked", &master).await?;
            let (failover, seq) = bedrock_user(log, "bench-failover", &master).await?;
            proxy.wait_applied(seq).await?;
            let keys = [key.expose().to_owned(), checked, failover];
            for key in &keys {
                proxy.wait_accepted(key).await?;
            }
            anyhow::Ok(keys)
        };
        match keys.await {
            Ok([key, checked_key, failover_key]) => Ok(Self { proxy, key, checked_key, failover_key }),
            Err(e) => Err(proxy.fail(e)),
        }
    }
}

/// A user with a monthly budget and one key with a Bedrock key (and a default Bedrock model);
/// returns the key and the admin stream sequence of the last event.
async fn bedrock_user(log: &Log, name: &str, master: &LocalMasterKey) -> anyhow::Result<(String, u64)> {
    let (user_id, key_id, key) = log.user_with_key(name).await;
    log.register_bedrock_key(user_id, key_id, master, BEDROCK_KEY).await;
    log.set_bedrock_settings(user_id, key_id, None, Some(DEFAULT_BEDROCK_MODEL)).await;
    let seq = proxy_process::set_budget(log, user_id, BUDGET_USD).await?;
    Ok((key.expose().to_owned(), seq))
}
