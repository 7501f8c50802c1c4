//! One run: the upstream, the proxy and the references started, the phases measured, everything
//! stopped and cleaned up, then the table printed and the JSON written.

use std::time::Duration;

use anyhow::Context as _;
use ccp_bench::cli::Progress;
use ccp_bench::proxy_process;
use ccp_bench::upstream::Upstream;
use ccp_tests::events::Log;

use crate::measure::measure;
use crate::reference::References;
use crate::stack::Stack;
use crate::Options;

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let progress = Progress::start();
    proxy_process::check_nats().await?;
    let upstream = Upstream::start()?;
    progress.say(format!("upstream listening on {}, fake Bedrock on {}", upstream.url(), upstream.bedrock_url()));

    let settings = proxy_process::settings("bench", "bench")?;
    let log = Log::new(&settings).await;
    progress.say(format!("NATS {}, prefix {} (streams created)", settings.nats.url, settings.nats.prefix));

    let result = match Stack::start(&opts, &settings, &upstream, &log).await {
        Ok(stack) => {
            let references = References::start(&opts, &upstream.url(), &progress).await;
            let outcome = tokio::select! {
                r = measure(&opts, &stack, &references, &upstream, &progress) => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            };
            drop(references);
            progress.say("stopping the proxy");
            stack.proxy.stop(outcome.is_ok(), Duration::from_secs(20), &progress);
            outcome
        }
        Err(e) => Err(e),
    };
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
    progress.say(format!("deleted the streams and buckets of prefix {}", settings.nats.prefix));
    drop(upstream);
    let report = result?;
    report.print(&mut std::io::stdout())?;
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&opts.out, serde_json::to_vec_pretty(&report.to_json())?)
        .with_context(|| format!("write {}", opts.out.display()))?;
    progress.say(format!("results written to {}", opts.out.display()));
    Ok(())
}
