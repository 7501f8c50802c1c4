//! The reference proxies measured beside the proxy, in front of the same upstream: nginx as a
//! plain reverse proxy — one process (`master_process off`), one worker, keep-alive to the
//! upstream, no buffering of the answer, the setup the figures for nginx describe — so a
//! report shows what the cheapest well-known proxy adds on this machine; and `ccp-bench-floor`,
//! the framework floor (see its source). Not targets, information.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use ccp_tests::Service;

use crate::proxy_process::spawn;

/// The `worker_connections` of `ccp_tests::balancer::nginx_config`.
const NGINX_WORKER_CONNECTIONS: usize = 4096;

/// A running reference and its scratch directory, if any; dropping it stops the process and
/// removes the directory and the log.
pub struct Reference {
    /// The process and its log.
    pub service: Service,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: Option<PathBuf>,
}

impl Reference {
    /// Waits until `GET <url><ready_path>` answers; else stops the process and fails with `log`.
    async fn ready(mut self, ready_path: &str, what: &str, log: impl FnOnce(&Self) -> String) -> anyhow::Result<Self> {
        let ready = ccp_tests::wait_http_ok(&format!("{}{ready_path}", self.url), Duration::from_secs(10)).await;
        if let Err(e) = ready {
            let log = log(&self);
            let _ = self.service.terminate(Duration::from_secs(5));
            bail!("{what} did not start: {e}\n{log}");
        }
        Ok(self)
    }

    /// The process whose CPU and memory are measured.
    pub fn pid(&self) -> u32 {
        self.service.child.id()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.service.terminate(Duration::from_secs(5));
        let _ = std::fs::remove_file(&self.service.log);
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `nginx` from `PATH` (or `/usr/sbin`, where Debian puts it), if installed.
pub fn find_nginx() -> Option<PathBuf> {
    ccp_tests::balancer::find_nginx()
}

/// Starts nginx (`bin`) in front of `upstream_url` (`http://host:port`), its worker allowed at
/// least `connections` connections (clients and upstream together), and waits until it answers.
pub async fn start_nginx(bin: &Path, upstream_url: &str, connections: usize, pin: bool) -> anyhow::Result<Reference> {
    let upstream = upstream_url.strip_prefix("http://").context("the upstream URL is not http://")?;
    let dir = std::env::temp_dir().join(format!("ccp-bench-nginx-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let listen = format!("127.0.0.1:{}", ccp_tests::free_port());
    let conf = dir.join("nginx.conf");
    let mut config = ccp_tests::balancer::nginx_config(&dir, &listen, &[upstream]);
    if connections > NGINX_WORKER_CONNECTIONS {
        let (from, to) = (NGINX_WORKER_CONNECTIONS, connections);
        config = config.replace(&format!("worker_connections {from};"), &format!("worker_connections {to};"));
    }
    std::fs::write(&conf, config).context("write nginx.conf")?;
    let (prefix, conf_arg, err_log) =
        (dir.display().to_string(), conf.display().to_string(), dir.join("error.log").display().to_string());
    let service = match spawn(bin, &["-p", &prefix, "-c", &conf_arg, "-e", &err_log], &[], pin) {
        Ok(service) => service,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).with_context(|| format!("start {}", bin.display()));
        }
    };
    let nginx = Reference { service, url: format!("http://{listen}"), dir: Some(dir) };
    nginx
        .ready("/nginx-ready", "nginx", |n| {
            n.dir.as_ref().and_then(|d| std::fs::read_to_string(d.join("error.log")).ok()).unwrap_or_default()
        })
        .await
}

/// `ccp-bench-floor` beside this executable (cargo builds them into one directory).
pub fn find_floor() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("ccp-bench-floor");
    candidate.is_file().then_some(candidate)
}

/// Starts `ccp-bench-floor` (`bin`) in front of `upstream_url` with `workers` workers and waits
/// until it answers.
pub async fn start_floor(bin: &Path, upstream_url: &str, workers: usize, pin: bool) -> anyhow::Result<Reference> {
    let listen = format!("127.0.0.1:{}", ccp_tests::free_port());
    let workers = workers.to_string();
    let service =
        spawn(bin, &[&listen, upstream_url, &workers], &[], pin).with_context(|| format!("start {}", bin.display()))?;
    let floor = Reference { service, url: format!("http://{listen}"), dir: None };
    floor.ready("/floor-ready", "ccp-bench-floor", |f| f.service.log_text()).await
}
