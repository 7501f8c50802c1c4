//! `ccp-fake-bedrock [--listen ADDR] [--accept-key KEY ...]`: the fake Amazon Bedrock Runtime
//! ([`ccp_tests::fake_bedrock`]) as a process, for local runs and scripted tests.
//!
//! Listens on `ADDR` (default `127.0.0.1:8091`; port 0 picks a free one) and accepts the
//! bearer keys given with `--accept-key` (repeatable; `--accept-key A B` takes every argument up
//! to the next option) or, without any, the comma-separated keys of `CCP_FAKE_BEDROCK_KEYS`;
//! with none at all it accepts any key. Writes one line `ccp-fake-bedrock listening on
//! http://ADDR (…)` to stderr once it accepts connections (the keys are never printed), and
//! exits on SIGTERM or SIGINT. Scenarios are scripted through `POST /_fake/enqueue`;
//! `GET /_fake/requests` lists what it received.

use std::net::SocketAddr;
use std::process::ExitCode;

use ccp_tests::fake_bedrock::FakeBedrock;

const USAGE: &str = "usage: ccp-fake-bedrock [--listen ADDR] [--version] [--accept-key KEY ...]   \
(default 127.0.0.1:8091; keys also from CCP_FAKE_BEDROCK_KEYS=k1,k2; none: any key)";

#[allow(clippy::print_stdout)] // --version
fn main() -> ExitCode {
    let mut listen = String::from("127.0.0.1:8091");
    let mut keys: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1).peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" | "-l" => match args.next() {
                Some(v) => listen = v,
                None => {
                    eprintln!("--listen needs an address\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--accept-key" | "-k" => {
                let before = keys.len();
                while let Some(k) = args.next_if(|a| !a.starts_with('-')) {
                    keys.push(k);
                }
                if keys.len() == before {
                    eprintln!("--accept-key needs a key\n{USAGE}");
                    return ExitCode::from(2);
                }
            }
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("{}", ccp_runtime::telemetry::version_line("ccp-fake-bedrock"));
                return ExitCode::SUCCESS;
            }
            other => {
                if let Some(v) = other.strip_prefix("--listen=") {
                    listen = v.to_owned();
                } else if let Some(k) = other.strip_prefix("--accept-key=") {
                    keys.push(k.to_owned());
                } else {
                    eprintln!("unknown argument {other:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    if keys.is_empty() {
        if let Ok(v) = std::env::var("CCP_FAKE_BEDROCK_KEYS") {
            keys = v.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
        }
    }
    if keys.iter().any(|k| k.trim().is_empty()) {
        eprintln!("an accepted key is empty\n{USAGE}");
        return ExitCode::from(2);
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("--listen {listen:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let accepting = match keys.len() {
        0 => "any key".to_owned(),
        1 => "1 key".to_owned(),
        n => format!("{n} keys"),
    };
    let served = FakeBedrock::serve(addr, &key_refs, |bound| {
        eprintln!("ccp-fake-bedrock listening on http://{bound} (accepting {accepting})");
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccp-fake-bedrock: {e}");
            ExitCode::FAILURE
        }
    }
}
