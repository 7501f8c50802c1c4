//! Secrets are read from stdin (the first line) when it is not a terminal, else from a prompt
//! that does not echo. No command takes a secret as an argument: argv is visible to every user
//! of the machine (`ps`) and lands in shell history.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::client::{CliError, CliResult};

/// Whether stdin is a terminal (then prompts are used).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

fn first_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

/// Reads a secret: a no-echo prompt on a terminal, else the first line of stdin. `what` names it
/// in messages (`password`, `Bedrock API key`).
pub fn secret(prompt: &str, what: &str) -> CliResult<String> {
    let value = if interactive() {
        rpassword::prompt_password(prompt)
            .map_err(|e| CliError::Other(anyhow::anyhow!("cannot read the {what}: {e}")))?
    } else {
        first_line().map_err(|e| CliError::Other(anyhow::anyhow!("cannot read the {what} from stdin: {e}")))?
    };
    if value.is_empty() {
        let how = if interactive() { "nothing was entered" } else { "stdin is empty (pipe it in: `… | ccpctl …`)" };
        return Err(CliError::Usage(format!("no {what}: {how}")));
    }
    Ok(value)
}

/// The first line of stdin when it is not a terminal and has one; `None` on a terminal or for
/// empty input (the caller then looks elsewhere).
pub fn piped_line(what: &str) -> CliResult<Option<String>> {
    if interactive() {
        return Ok(None);
    }
    let line = first_line().map_err(|e| CliError::Other(anyhow::anyhow!("cannot read the {what} from stdin: {e}")))?;
    Ok(Some(line.trim().to_owned()).filter(|l| !l.is_empty()))
}

/// Reads a new secret twice on a terminal (to catch typos), once from stdin.
pub fn new_secret(prompt: &str, what: &str) -> CliResult<String> {
    let first = secret(prompt, what)?;
    if interactive() {
        let again = secret("Again: ", what)?;
        if again != first {
            return Err(CliError::Usage(format!("the two {what}s differ")));
        }
    }
    Ok(first)
}

/// Reads a visible value (a username) from a prompt; only on a terminal.
pub fn visible(prompt: &str, flag: &str) -> CliResult<String> {
    if !interactive() {
        return Err(CliError::Usage(format!("{flag} is required when stdin is not a terminal")));
    }
    {
        let mut err = std::io::stderr().lock();
        write!(err, "{prompt}")?;
        err.flush()?;
    }
    let value = first_line()?.trim().to_owned();
    if value.is_empty() {
        return Err(CliError::Usage(format!("nothing was entered for {flag}")));
    }
    Ok(value)
}
