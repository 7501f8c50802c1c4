//! `ccp-secret-scan [--logs PATH ...] [--no-default-logs] [--since UNIX_SECONDS] [--nats URL]
//! [--no-nats] [--streams SUBSTRING] [--literal VALUE ...]`: searches the suite's log files and
//! every message of every stream and KV bucket on the test NATS server for plaintext secrets
//! ([`ccp_tests::secret_scan`]). Prints each finding's location with the secret redacted and
//! exits 1 if there is any, 2 on a usage or connection error, 0 when clean.
//!
//! Defaults: the log directories of [`ccp_tests::secret_scan::default_log_roots`] (files
//! modified since `--since`, all without it) and the NATS server of `CCP_TEST_NATS_URL`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use ccp_tests::secret_scan::{default_log_roots, log_files, scan_file, scan_nats, Detector, SUITE_LITERALS};

const USAGE: &str = "usage: ccp-secret-scan [--logs PATH ...] [--no-default-logs] [--since UNIX_SECONDS] \
[--nats URL] [--no-nats] [--streams SUBSTRING] [--literal VALUE ...]";

struct Args {
    logs: Vec<PathBuf>,
    default_logs: bool,
    since: Option<SystemTime>,
    nats: Option<String>,
    streams: String,
    literals: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        logs: Vec::new(),
        default_logs: true,
        since: None,
        nats: Some(ccp_tests::nats_url()),
        streams: String::new(),
        literals: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--logs" => args.logs.push(PathBuf::from(value("--logs")?)),
            "--no-default-logs" => args.default_logs = false,
            "--since" => {
                let secs: u64 = value("--since")?.parse().map_err(|_| "--since takes Unix seconds".to_owned())?;
                args.since = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
            }
            "--nats" => args.nats = Some(value("--nats")?),
            "--no-nats" => args.nats = None,
            "--streams" => args.streams = value("--streams")?,
            "--literal" => args.literals.push(value("--literal")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    let detector = Detector::new(
        SUITE_LITERALS
            .iter()
            .map(|(label, value)| ((*label).to_owned(), (*value).to_owned()))
            .chain(args.literals.iter().enumerate().map(|(i, v)| (format!("--literal #{}", i + 1), v.clone()))),
    );
    let started = Instant::now();
    let mut findings = Vec::new();

    let mut roots = args.logs.clone();
    if args.default_logs {
        let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        roots.extend(default_log_roots(&checkout));
    }
    let files = log_files(&roots, args.since);
    let mut log_bytes = 0u64;
    for file in &files {
        log_bytes += std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        match scan_file(&detector, file) {
            Ok(found) => findings.extend(found),
            Err(e) => eprintln!("warning: cannot read {}: {e}", file.display()),
        }
    }
    eprintln!(
        "ccp-secret-scan: {} log files ({:.1} MB) in {:.1} s",
        files.len(),
        log_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    if let Some(url) = &args.nats {
        let nats_started = Instant::now();
        let client = match async_nats::connect(url.as_str()).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ccp-secret-scan: NATS at {url} is not reachable: {e}");
                return ExitCode::from(2);
            }
        };
        let js = async_nats::jetstream::new(client);
        match scan_nats(&detector, &js, &args.streams, 16).await {
            Ok((found, coverage)) => {
                findings.extend(found);
                eprintln!(
                    "ccp-secret-scan: {} streams and KV buckets, {} messages ({:.1} MB) in {:.1} s{}",
                    coverage.streams,
                    coverage.messages,
                    coverage.bytes as f64 / 1e6,
                    nats_started.elapsed().as_secs_f64(),
                    if coverage.vanished > 0 {
                        format!(" ({} deleted while scanning)", coverage.vanished)
                    } else {
                        String::new()
                    }
                );
            }
            Err(e) => {
                eprintln!("ccp-secret-scan: scanning NATS failed: {e:#}");
                return ExitCode::from(2);
            }
        }
    }

    if findings.is_empty() {
        eprintln!("ccp-secret-scan: no plaintext secret found ({:.1} s)", started.elapsed().as_secs_f64());
        return ExitCode::SUCCESS;
    }
    for finding in &findings {
        eprintln!("SECRET {finding}");
    }
    eprintln!("ccp-secret-scan: {} plaintext secrets found (shown redacted)", findings.len());
    ExitCode::from(1)
}
