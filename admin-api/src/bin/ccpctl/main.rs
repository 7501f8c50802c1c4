//! `ccpctl`: the command line for platform engineers, over the admin REST API. It reuses the
//! API's request and response types (`ccp_admin_api::api`) and keeps no state but the session
//! file `login` writes.

mod accounts;
mod auth;
mod cli;
mod client;
mod developer;
mod input;
mod keys;
mod models;
mod onboard;
mod operations;
mod output;
mod reports;
mod resolve;
mod session;
mod teams;
mod users;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command, PricingCommand, ShellArg};
use crate::client::{CliError, CliResult, Client};
use crate::output::{note, Out};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            note(&format!("error: cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("error: {e}"));
            if let Some(hint) = e.hint() {
                note(&format!("hint: {hint}"));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Exits 2 with clap's message, except that a stray positional argument is not echoed: it may
/// be a secret someone tried to pass on the command line.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
            if !arg.starts_with('-') {
                note("error: unexpected argument (not repeated here in case it is a secret: ccpctl reads secrets only from stdin or a prompt)");
                note("\nFor more information, try '--help'.");
                std::process::exit(2);
            }
        }
    }
    e.exit()
}

/// `ccpctl … | head` closes stdout early; that is not an error.
fn is_broken_pipe(e: &CliError) -> bool {
    matches!(e, CliError::Other(err) if err
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// A request body as JSON.
pub fn to_json<T: serde::Serialize>(body: &T) -> CliResult<serde_json::Value> {
    serde_json::to_value(body).map_err(|e| CliError::Other(anyhow::anyhow!("cannot encode the request: {e}")))
}

async fn run(cli: Cli) -> CliResult<()> {
    let out = Out { json: cli.json };
    let command = match cli.command {
        Command::Login { sso: true, no_browser, .. } => {
            return auth::login_sso(&session::login_url(cli.url.as_deref())?, no_browser, out).await
        }
        Command::Login { username, .. } => {
            return auth::login(&session::login_url(cli.url.as_deref())?, username, out).await
        }
        Command::Logout => return auth::logout(out).await,
        Command::Completions { shell } => return completions(shell),
        Command::Endpoints => return endpoints(out),
        other => other,
    };
    let target = session::resolve(cli.url.as_deref())?;
    let client = Client::new(&target.url, target.token, target.no_token_reason)?;
    match command {
        Command::Login { .. } | Command::Logout | Command::Completions { .. } | Command::Endpoints => Ok(()),
        Command::Whoami => auth::whoami(&client, out).await,
        Command::Users(c) => users::run(&client, c, out).await,
        Command::Teams(c) => teams::run(&client, c, out).await,
        Command::Keys(c) => keys::run(&client, c, out).await,
        Command::BedrockKey(c) => keys::bedrock_key(&client, c, out).await,
        Command::Tokens(c) => auth::tokens(&client, c, out).await,
        Command::Admins(c) => auth::admins(&client, c, out).await,
        Command::Passwd => accounts::passwd(&client, out).await,
        Command::SignOutEverywhere => accounts::sign_out_everywhere(&client, out).await,
        Command::Onboard(args) => onboard::run(&client, args, out).await,
        Command::Usage(args) => reports::usage(&client, args, out).await,
        Command::Statement(args) => reports::statement(&client, args, out).await,
        Command::Budget { user_id } => reports::budget(&client, &user_id, out).await,
        Command::Request { request_id } => reports::request(&client, &request_id, out).await,
        Command::Audit(args) => reports::audit(&client, args, out).await,
        Command::Circuit { key_id, reset } => reports::circuit(&client, &key_id, reset, out).await,
        Command::Circuits => reports::circuits(&client, out).await,
        Command::SignInFailures { from, kind, limit } => {
            reports::sign_in_failures(&client, from, kind, limit, out).await
        }
        Command::Pricing { command: None | Some(PricingCommand::Show) } => reports::pricing(&client, out).await,
        Command::Pricing { command: Some(PricingCommand::Set { prices, file }) } => {
            reports::set_pricing(&client, &prices, file.as_deref(), out).await
        }
        Command::Models(c) => models::run(&client, c, out).await,
        Command::SelfUsage(args) => developer::run(&client, args, out).await,
    }
}

/// `completions SHELL`: the script on stdout.
fn completions(shell: ShellArg) -> CliResult<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "ccpctl", &mut script);
    use std::io::Write as _;
    std::io::stdout().lock().write_all(&script)?;
    Ok(())
}

/// `endpoints`: which API operation each command calls ([`operations::OPERATIONS`]).
fn endpoints(out: Out) -> CliResult<()> {
    if out.json {
        let rows: Vec<serde_json::Value> = operations::OPERATIONS
            .iter()
            .map(|(method, path, command)| serde_json::json!({"method": method, "path": path, "command": format!("ccpctl {command}")}))
            .collect();
        return out.document(&serde_json::Value::Array(rows));
    }
    let rows: Vec<Vec<String>> = operations::OPERATIONS
        .iter()
        .map(|(method, path, command)| vec![(*method).to_owned(), (*path).to_owned(), format!("ccpctl {command}")])
        .collect();
    out.table(&["METHOD", "PATH", "COMMAND"], &rows)
}
