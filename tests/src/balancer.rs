//! nginx as a local HTTP load balancer (round robin, streaming, keep-alive) in front of one or
//! more upstreams: the proxy replicas of a test, or the benchmark's reference in front of the fake
//! upstream. Debian's `nginx-light` (`scripts/install-clients.sh` installs it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Service;

/// `nginx` from `PATH` (or `/usr/sbin`, where Debian puts it), if installed.
pub fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]).map(|dir| dir.join("nginx")).find(|c| c.is_file())
}

/// An nginx configuration serving `listen`, balancing over `upstreams` (`host:port`), with its
/// files under `dir`; `/nginx-ready` answers 204.
pub fn nginx_config(dir: &Path, listen: &str, upstreams: &[&str]) -> String {
    let d = dir.display();
    let servers: String = upstreams.iter().map(|u| format!("server {u}; ")).collect();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 32m;
    client_body_buffer_size 1m;
    upstream backends {{ {servers}keepalive 128; }}
    server {{
        listen {listen};
        location = /nginx-ready {{ return 204; }}
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
        }}
    }}
}}
"
    )
}

/// A running nginx balancing over some upstreams; stopped (and its files removed) when dropped.
pub struct Balancer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    service: Service,
    dir: PathBuf,
}

impl Balancer {
    /// Starts nginx in front of `upstreams` (`http://host:port` URLs) and waits until it answers.
    pub async fn start(upstreams: &[&str]) -> Self {
        let bin = find_nginx().unwrap_or_else(|| panic!("nginx is missing: run scripts/install-clients.sh"));
        let dir = std::env::temp_dir().join(format!("ccp-balancer-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let listen = format!("127.0.0.1:{}", crate::free_port());
        let hosts: Vec<&str> = upstreams.iter().map(|u| u.trim_start_matches("http://")).collect();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_config(&dir, &listen, &hosts)).unwrap_or_else(|e| panic!("write nginx.conf: {e}"));
        let err_log = dir.join("error.log").display().to_string();
        let args =
            ["-p", &dir.display().to_string(), "-c", &conf.display().to_string(), "-e", &err_log].map(String::from);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let service = Service::spawn(&bin, &args, &[]).unwrap_or_else(|e| panic!("start nginx: {e}"));
        let url = format!("http://{listen}");
        if let Err(e) = crate::wait_http_ok(&format!("{url}/nginx-ready"), Duration::from_secs(15)).await {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx did not start: {e}\n{log}");
        }
        Self { url, service, dir }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.service.terminate(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
