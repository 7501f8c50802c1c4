//! `ccp-fake-anthropic [--listen ADDR]`: the fake Anthropic Messages API
//! ([`ccp_tests::fake_anthropic`]) as a process, for local runs and scripted tests.
//!
//! Listens on `ADDR` (default `127.0.0.1:8090`; port 0 picks a free one), writes one line
//! `ccp-fake-anthropic listening on http://ADDR` to stderr once it accepts connections, and
//! exits on SIGTERM or SIGINT. Scenarios are scripted with the `x-fake-*` request headers or
//! through `POST /_fake/enqueue`; `GET /_fake/requests` lists what it received.

use std::net::SocketAddr;
use std::process::ExitCode;

use ccp_tests::fake_anthropic::FakeAnthropic;

const USAGE: &str = "usage: ccp-fake-anthropic [--listen ADDR] [--version]   (default 127.0.0.1:8090)";

#[allow(clippy::print_stdout)] // --version
fn main() -> ExitCode {
    let mut listen = String::from("127.0.0.1:8090");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" | "-l" => match args.next() {
                Some(v) => listen = v,
                None => {
                    eprintln!("--listen needs an address\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("{}", ccp_runtime::telemetry::version_line("ccp-fake-anthropic"));
                return ExitCode::SUCCESS;
            }
            other => match other.strip_prefix("--listen=") {
                Some(v) => listen = v.to_owned(),
                None => {
                    eprintln!("unknown argument {other:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("--listen {listen:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let served = FakeAnthropic::serve(addr, |bound| {
        eprintln!("ccp-fake-anthropic listening on http://{bound}");
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccp-fake-anthropic: {e}");
            ExitCode::FAILURE
        }
    }
}
