//! What every benchmark command does alike: its command line, its exit codes, its
//! single-threaded runtime, pinning itself to CPU 0, raising its open-file limit, and progress
//! lines on stderr.

use std::future::Future;
use std::process::{ExitCode, Termination};
use std::time::Instant;

use anyhow::{bail, Context as _};

/// Runs command `name`: `parse` reads its options (`Ok(None)`: the help was printed, exit 0; an
/// error, exit 2); when `pin` says so for them, this process goes to CPU 0 (`taskset`); then
/// `run` runs on a single-threaded runtime, the client on this thread alone (an error: exit 1).
pub fn main<O, F, T>(
    name: &str,
    parse: impl FnOnce() -> anyhow::Result<Option<O>>,
    pin: impl FnOnce(&O) -> bool,
    run: impl FnOnce(O) -> F,
) -> ExitCode
where
    F: Future<Output = anyhow::Result<T>>,
    T: Termination,
{
    let opts = match parse() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    if pin(&opts) {
        if let Err(e) = pin_self("0") {
            eprintln!("{name}: cannot pin to CPU 0: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(outcome) => outcome.report(),
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A value taken from the command line: the argument after the option.
pub type Value<'a> = &'a mut dyn FnMut() -> anyhow::Result<String>;

/// What an option parser answers for an argument it does not know.
#[derive(Debug)]
pub struct Unknown;

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unknown argument")
    }
}

impl std::error::Error for Unknown {}

/// Reads the command line into `opts` (the defaults): `-h`/`--help` prints `usage` and
/// `-V`/`--version` the version line, and both give `Ok(None)`; every other argument goes to
/// `option(opts, arg, value)`, which takes the option's value with `value()` and fails with
/// [`Unknown`] for an argument it does not know (an error naming it, with `usage`).
#[allow(clippy::print_stdout)] // the help or version asked for
pub fn parse_args<O>(
    usage: &str,
    mut opts: O,
    mut option: impl FnMut(&mut O, &str, Value<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Option<O>> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{usage}");
            return Ok(None);
        }
        if arg == "-V" || arg == "--version" {
            let argv0 = std::env::args().next().unwrap_or_default();
            let name = std::path::Path::new(&argv0).file_name().map(|n| n.to_string_lossy().into_owned());
            println!("{}", ccp_runtime::telemetry::version_line(name.as_deref().unwrap_or("ccp-bench")));
            return Ok(None);
        }
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match option(&mut opts, &arg, &mut value) {
            Err(e) if e.is::<Unknown>() => bail!("unknown argument {arg}\n\n{usage}"),
            other => other?,
        }
    }
    Ok(Some(opts))
}

/// Restricts this process (every thread, and those it starts later) to `cpus`.
pub fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("run taskset")?;
    if !status.success() {
        bail!("taskset failed: {status}");
    }
    Ok(())
}

/// Raises this process's soft limit on open files to the hard one (`prlimit`: no `unsafe`
/// here), so that it — and the processes it starts later, which inherit it — can hold many
/// connections; returns the soft limit now.
pub fn raise_nofile() -> anyhow::Result<u64> {
    let me = std::process::id();
    let (soft, hard) = crate::procfs::nofile_limit(me)?;
    if soft >= hard {
        return Ok(soft);
    }
    let hard_arg = if hard == u64::MAX { "unlimited".to_owned() } else { hard.to_string() };
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &me.to_string(), &format!("--nofile={hard_arg}:{hard_arg}")])
        .status()
        .context("run prlimit")?;
    if !status.success() {
        bail!("prlimit failed: {status}");
    }
    Ok(crate::procfs::nofile_limit(me)?.0)
}

/// Progress lines on stderr, with the time since start.
pub struct Progress(Instant);

impl Progress {
    /// Counts from now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// One line: `[  12.3s] msg`.
    pub fn say(&self, msg: impl std::fmt::Display) {
        eprintln!("[{:>6.1}s] {msg}", self.0.elapsed().as_secs_f64());
    }
}
