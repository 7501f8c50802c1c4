//! `users …`.

use ccp_admin_api::api::{CreateUser, Page, Reason, SetBudget, SetRouting, SetTeam, UpdateUser, User, UserDetail};

use crate::cli::UsersCommand;
use crate::client::{CliError, CliResult, Client};
use crate::keys::keys_table;
use crate::output::{self, Out};
use crate::resolve;
use crate::to_json;

/// Runs a `users` subcommand.
pub async fn run(client: &Client, command: UsersCommand, out: Out) -> CliResult<()> {
    match command {
        UsersCommand::List { search, status, team, limit, offset } => {
            let mut query = Vec::new();
            if let Some(t) = team {
                let t = if t == "none" { t } else { crate::teams::team_id(client, &t).await? };
                query.push(("team", t));
            }
            if let Some(s) = search {
                query.push(("search", s));
            }
            if let Some(s) = status {
                query.push(("status", output::label(&ccp_schemas::events::UserStatus::from(s))));
            }
            if let Some(l) = limit {
                query.push(("limit", l.to_string()));
            }
            if let Some(o) = offset {
                query.push(("offset", o.to_string()));
            }
            let answer = client.get_query(&["v1", "users"], &query).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let page: Page<User> = answer.parse()?;
            list(&page, out)
        }
        UsersCommand::Get { user_id } => {
            let user_id = resolve::user_id(client, &user_id).await?;
            let answer = client.get(&["v1", "users", &user_id]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let detail: UserDetail = answer.parse()?;
            out.fields(&user_fields(&detail.user))?;
            out.line("")?;
            if detail.keys.is_empty() {
                return out.line(&format!("no access keys (issue one: ccpctl keys issue {})", detail.user.user_id));
            }
            keys_table(&detail.keys, None, out)
        }
        UsersCommand::Create { name, email, description, budget, routing } => {
            let body = to_json(&CreateUser {
                name,
                description,
                email,
                status: None,
                monthly_limit_usd: budget,
                routing: routing.map(Into::into),
            })?;
            let answer = client.post(&["v1", "users"], Some(&body)).await?;
            show(&answer, out, |u| format!("created user {} ({})", u.name, u.user_id))
        }
        UsersCommand::Update { user_id, name, email, description } => {
            if name.is_none() && email.is_none() && description.is_none() {
                return Err(CliError::Usage("nothing to change: give --name, --email and/or --description".into()));
            }
            let user_id = resolve::user_id(client, &user_id).await?;
            let body = to_json(&UpdateUser { name, description, email })?;
            let answer = client.patch(&["v1", "users", &user_id], &body).await?;
            show(&answer, out, |u| format!("updated user {} ({})", u.name, u.user_id))
        }
        UsersCommand::Deactivate { user_id, reason } => {
            let user_id = resolve::user_id(client, &user_id).await?;
            let body = to_json(&Reason { reason })?;
            let answer = client.post(&["v1", "users", &user_id, "deactivate"], Some(&body)).await?;
            show(&answer, out, |u| {
                format!(
                    "deactivated user {} ({}): their {} active key(s) are refused now",
                    u.name, u.user_id, u.active_keys
                )
            })
        }
        UsersCommand::Reactivate { user_id } => {
            let user_id = resolve::user_id(client, &user_id).await?;
            let answer = client.post(&["v1", "users", &user_id, "reactivate"], None).await?;
            show(&answer, out, |u| format!("reactivated user {} ({})", u.name, u.user_id))
        }
        UsersCommand::Budget { user_id, limit } => {
            let user_id = resolve::user_id(client, &user_id).await?;
            let body = to_json(&SetBudget { monthly_limit_usd: limit.0 })?;
            let answer = client.put(&["v1", "users", &user_id, "budget"], &body, None).await?;
            show(&answer, out, |u| {
                let per = if u.monthly_limit_usd.is_some() { " per month" } else { "" };
                format!("budget of {} ({}): {}{per}", u.name, u.user_id, output::budget(u.monthly_limit_usd.as_ref()))
            })
        }
        UsersCommand::Team { user_id, team } => {
            let user_id = resolve::user_id(client, &user_id).await?;
            let team_id = if team == "none" { None } else { Some(crate::teams::team_id(client, &team).await?) };
            let body = to_json(&SetTeam { team_id })?;
            let answer = client.put(&["v1", "users", &user_id, "team"], &body, None).await?;
            show(&answer, out, |u| match &u.team {
                Some(t) => format!("{} ({}) is in team {t} now", u.name, u.user_id),
                None => format!("{} ({}) is in no team now", u.name, u.user_id),
            })
        }
        UsersCommand::Routing { user_id, strategy } => {
            let user_id = resolve::user_id(client, &user_id).await?;
            let body = to_json(&SetRouting { strategy: strategy.into() })?;
            let answer = client.put(&["v1", "users", &user_id, "routing"], &body, None).await?;
            show(&answer, out, |u| format!("routing of {} ({}): {}", u.name, u.user_id, output::label(&u.routing)))
        }
    }
}

/// Prints a command's answer: the JSON, or one line about the user.
fn show(answer: &crate::client::Answer, out: Out, line: impl Fn(&User) -> String) -> CliResult<()> {
    if out.json {
        return out.document(&answer.body);
    }
    out.line(&line(&answer.parse::<User>()?))
}

fn list(page: &Page<User>, out: Out) -> CliResult<()> {
    if page.items.is_empty() {
        return out.line(&format!("no users (of {} matching)", page.total));
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|u| {
            vec![
                u.user_id.clone(),
                u.name.clone(),
                output::label(&u.status),
                output::budget(u.monthly_limit_usd.as_ref()),
                output::label(&u.effective_routing),
                output::or_dash(u.team.as_deref()),
                u.active_keys.to_string(),
                output::or_dash(u.email.as_deref()),
            ]
        })
        .collect();
    out.table(&["USER_ID", "NAME", "STATUS", "BUDGET", "ROUTING", "TEAM", "KEYS", "EMAIL"], &rows)?;
    let shown_to = page.offset + page.items.len();
    if page.offset > 0 || shown_to < page.total {
        let more = if shown_to < page.total { format!(" (--offset {shown_to} for more)") } else { String::new() };
        let first = page.offset + 1;
        let range = if first == shown_to { first.to_string() } else { format!("{first}–{shown_to}") };
        out.line(&format!("users {range} of {}{more}", page.total))?;
    }
    Ok(())
}

fn user_fields(u: &User) -> Vec<(&'static str, String)> {
    vec![
        ("user_id", u.user_id.clone()),
        ("name", u.name.clone()),
        ("status", output::label(&u.status)),
        ("email", output::or_dash(u.email.as_deref())),
        ("description", output::or_dash(u.description.as_deref())),
        ("budget", output::budget(u.monthly_limit_usd.as_ref())),
        ("routing", routing_line(u)),
        ("team", output::or_dash(u.team.as_deref())),
        ("active keys", u.active_keys.to_string()),
        ("created", output::time(&u.created_at)),
        ("updated", output::time(&u.updated_at)),
    ]
}

/// The routing a user gets, and where it comes from when it is not their own.
fn routing_line(u: &User) -> String {
    let effective = output::label(&u.effective_routing);
    if u.effective_routing == u.routing {
        effective
    } else {
        format!("{effective} (team default; own: {})", output::label(&u.routing))
    }
}
