//! Break-glass: `ccp-admin recover`, run on a server with the deployment's configuration, gives
//! an admin account back when nobody can log in (every admin disabled, passwords lost, single
//! sign-on down). It reads a username and a new password (stdin lines, or prompts on a
//! terminal) and appends, as the system actor `ccp-admin recover on <host>`, the events that make
//! the account usable: created if it does not exist, else its password set (its sessions end),
//! enabled and given the `admin` role. It needs what the admin API itself needs — NATS
//! credentials and the secrets — so it opens nothing an attacker without server access could
//! use; there is no HTTP way to do this. Every event is in the audit log.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::Context as _;
use ccp_runtime::config::Settings;
use ccp_runtime::streams::{self, StreamPolicy};
use ccp_runtime::telemetry;
use ccp_schemas::events::AdminRole;
use ccp_schemas::secrets::SecretString;
use ccp_schemas::subjects::Aggregate;
use ccp_schemas::Actor;

use crate::auth::{check_new_password, hash_password};
use crate::domain::{decide_admin, AdminCommand, AdminState};
use crate::routes::admins::admin_id_for;
use crate::store::{CommandMeta, EventStore};

fn read_line(prompt: &str, secret: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        if secret {
            rpassword::prompt_password(prompt)?
        } else {
            eprint!("{prompt}");
            std::io::stderr().flush()?;
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            line
        }
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line
    };
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Runs `ccp-admin recover`; an error is also said on stderr, to the person at the terminal.
#[allow(clippy::print_stderr)]
pub async fn recover(settings: Settings) -> anyhow::Result<()> {
    let result = recover_account(settings).await;
    if let Err(e) = &result {
        eprintln!("ccp-admin recover: {e:#}");
    }
    result
}

#[allow(clippy::print_stderr)]
async fn recover_account(settings: Settings) -> anyhow::Result<()> {
    let username = read_line("Admin username to recover (created if missing): ", false)?.trim().to_owned();
    let username =
        crate::routes::check_username("username", &username).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let password = read_line("New password: ", true)?;
    if std::io::stdin().is_terminal() && read_line("Again: ", true)? != password {
        anyhow::bail!("the two passwords differ");
    }
    check_new_password("password", &password, &username).map_err(|e| anyhow::anyhow!("password: {}", e.message))?;

    let client = telemetry::connect_nats(&settings.nats, "ccp-admin recover").await?;
    let ns = settings.nats.namespace()?;
    let js = async_nats::jetstream::new(client.clone());
    streams::ensure(&js, &ns, &StreamPolicy::from(&settings.nats)).await?;
    let store = EventStore::new(client, ns.clone());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "this server".to_owned() } else { host };
    let meta = CommandMeta {
        actor: Actor::System { component: format!("ccp-admin recover on {host}") },
        request_id: format!("recover_{}", ulid::Ulid::new()),
        source: None,
        if_match: None,
    };

    // The admin's id: the one its username has, or the existing account of that name.
    let existing = find_admin(&store, &username).await?;
    let admin_id = existing.unwrap_or_else(|| admin_id_for(&ns, &username));
    let password_hash =
        hash_password(SecretString::new(password)).await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let now = chrono::Utc::now();
    let commands = if existing.is_some() {
        vec![
            AdminCommand::ChangePassword { password_hash, now },
            AdminCommand::Enable,
            // A team lead is unscoped first: only an unscoped admin's role is raised.
            AdminCommand::SetTeamScope(None),
            AdminCommand::SetRole(AdminRole::Admin),
        ]
    } else {
        vec![AdminCommand::Create { username: username.clone(), password_hash, role: AdminRole::Admin }]
    };
    let mut last = 0;
    for command in commands {
        let executed = store
            .execute(Aggregate::Admin(admin_id), &meta, AdminState::apply, |s| {
                decide_admin(s, admin_id, command.clone())
            })
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        last = executed.seq;
    }
    eprintln!(
        "ccp-admin recover: `{username}` ({admin_id}) can log in with the new password, as an enabled admin; \
         recorded in the admin stream (up to sequence {last}) and so in the audit log"
    );
    Ok(())
}

/// The id of the admin account named `username`, read from the admin stream.
async fn find_admin(store: &EventStore, username: &str) -> anyhow::Result<Option<ccp_schemas::ids::AdminId>> {
    let view = crate::view::View::new();
    // The whole stream, not a snapshot: recovery trusts nothing but the events.
    view.start(store.client().clone(), store.namespace().clone(), ccp_runtime::snapshot::SnapshotPolicy::NONE)
        .await
        .context("reading the admin accounts")?;
    let found = view.read().admin_by_name(username).map(|a| a.admin_id);
    Ok(found)
}
