//! `teams …`, and TEAM arguments: a team id (`team_…`, sent as it is) or a team's exact name
//! (names are unique, case aside), looked up in `GET /v1/teams`.

use ccp_admin_api::api::usage::TeamBudget;
use ccp_admin_api::api::{CreateTeam, SetBudget, SetTeamRouting, Team, TeamDetail, UpdateTeam};

use crate::cli::TeamsCommand;
use crate::client::{CliError, CliResult, Client};
use crate::output::{self, Out};
use crate::resolve;
use crate::to_json;

/// The team id a TEAM argument names.
pub async fn team_id(client: &Client, given: &str) -> CliResult<String> {
    let given = given.trim();
    if given.is_empty() {
        return Err(CliError::Usage("the team is blank".into()));
    }
    if resolve::is_id(given, "team_") {
        return Ok(given.to_owned());
    }
    let teams: Vec<Team> = client.get(&["v1", "teams"]).await?.parse()?;
    if let Some(t) =
        teams.iter().find(|t| t.name == given).or_else(|| teams.iter().find(|t| t.name.eq_ignore_ascii_case(given)))
    {
        return Ok(t.team_id.clone());
    }
    let names: Vec<String> = teams.iter().map(|t| format!("  {}  {}", t.team_id, t.name)).collect();
    let known =
        if names.is_empty() { " (there are no teams)".to_owned() } else { format!("; teams:\n{}", names.join("\n")) };
    Err(CliError::Lookup(format!("no team is named \"{given}\" (a team id starts with team_){known}")))
}

/// Runs a `teams` subcommand.
pub async fn run(client: &Client, command: TeamsCommand, out: Out) -> CliResult<()> {
    match command {
        TeamsCommand::List => {
            let answer = client.get(&["v1", "teams"]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let teams: Vec<Team> = answer.parse()?;
            if teams.is_empty() {
                return out.line("no teams (create one: ccpctl teams create NAME)");
            }
            let rows: Vec<Vec<String>> = teams
                .iter()
                .map(|t| {
                    vec![
                        t.team_id.clone(),
                        t.name.clone(),
                        output::budget(t.monthly_limit_usd.as_ref()),
                        routing(t),
                        t.members.to_string(),
                    ]
                })
                .collect();
            out.table(&["TEAM_ID", "NAME", "BUDGET", "ROUTING_DEFAULT", "MEMBERS"], &rows)
        }
        TeamsCommand::Get { team } => {
            let team_id = team_id(client, &team).await?;
            let answer = client.get(&["v1", "teams", &team_id]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let detail: TeamDetail = answer.parse()?;
            out.fields(&fields(&detail.team))?;
            out.line("")?;
            if detail.users.is_empty() {
                return out.line(&format!("no members (add one: ccpctl users team USER {})", detail.team.team_id));
            }
            let rows: Vec<Vec<String>> = detail
                .users
                .iter()
                .map(|u| {
                    vec![
                        u.user_id.clone(),
                        u.name.clone(),
                        output::label(&u.status),
                        output::budget(u.monthly_limit_usd.as_ref()),
                        output::label(&u.effective_routing),
                    ]
                })
                .collect();
            out.table(&["USER_ID", "NAME", "STATUS", "OWN_BUDGET", "ROUTING"], &rows)
        }
        TeamsCommand::Create { name, description, budget, routing } => {
            let body = to_json(&CreateTeam {
                name,
                description,
                monthly_limit_usd: budget,
                routing: routing.map(Into::into),
            })?;
            let answer = client.post(&["v1", "teams"], Some(&body)).await?;
            show(&answer, out, |t| format!("created team {} ({})", t.name, t.team_id))
        }
        TeamsCommand::Update { team, name, description } => {
            if name.is_none() && description.is_none() {
                return Err(CliError::Usage("nothing to change: give --name and/or --description".into()));
            }
            let team_id = team_id(client, &team).await?;
            let body = to_json(&UpdateTeam { name, description })?;
            let answer = client.patch(&["v1", "teams", &team_id], &body).await?;
            show(&answer, out, |t| format!("updated team {} ({})", t.name, t.team_id))
        }
        TeamsCommand::Delete { team } => {
            let team_id = team_id(client, &team).await?;
            client.delete(&["v1", "teams", &team_id]).await?;
            if out.json {
                return out.document(&serde_json::json!({ "deleted": team_id }));
            }
            out.line(&format!("deleted team {team_id}"))
        }
        TeamsCommand::Budget { team, limit: None } => {
            let team_id = team_id(client, &team).await?;
            let answer = client.get(&["v1", "teams", &team_id, "budget"]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let b: TeamBudget = answer.parse()?;
            let m = &b.month;
            out.fields(&[
                ("team", format!("{} ({})", b.name, b.team_id)),
                ("month", format!("{} ({})", m.month, m.time_zone)),
                ("budget", output::budget(m.limit_usd.as_ref())),
                ("spent", output::budget(Some(&m.spent_usd))),
                ("remaining", m.remaining_usd.as_ref().map_or_else(|| "–".to_owned(), |r| output::budget(Some(r)))),
                ("exhausted", if m.exhausted { "yes: members' requests are refused" } else { "no" }.to_owned()),
                ("resets", m.reset_at.to_rfc3339()),
            ])
        }
        TeamsCommand::Budget { team, limit: Some(limit) } => {
            let team_id = team_id(client, &team).await?;
            let body = to_json(&SetBudget { monthly_limit_usd: limit.0 })?;
            let answer = client.put(&["v1", "teams", &team_id, "budget"], &body, None).await?;
            show(&answer, out, |t| {
                let per = if t.monthly_limit_usd.is_some() { " per month" } else { "" };
                format!(
                    "budget of team {} ({}): {}{per}",
                    t.name,
                    t.team_id,
                    output::budget(t.monthly_limit_usd.as_ref())
                )
            })
        }
        TeamsCommand::Routing { team, strategy } => {
            let team_id = team_id(client, &team).await?;
            let body = to_json(&SetTeamRouting { strategy: strategy.0 })?;
            let answer = client.put(&["v1", "teams", &team_id, "routing"], &body, None).await?;
            show(&answer, out, |t| format!("routing default of team {} ({}): {}", t.name, t.team_id, routing(t)))
        }
    }
}

fn routing(t: &Team) -> String {
    t.routing.as_ref().map_or_else(|| "none".to_owned(), output::label)
}

fn show(answer: &crate::client::Answer, out: Out, line: impl Fn(&Team) -> String) -> CliResult<()> {
    if out.json {
        return out.document(&answer.body);
    }
    out.line(&line(&answer.parse::<Team>()?))
}

fn fields(t: &Team) -> Vec<(&'static str, String)> {
    vec![
        ("team_id", t.team_id.clone()),
        ("name", t.name.clone()),
        ("description", output::or_dash(t.description.as_deref())),
        ("budget", output::budget(t.monthly_limit_usd.as_ref())),
        ("routing default", routing(t)),
        ("members", t.members.to_string()),
        ("created", output::time(&t.created_at)),
        ("updated", output::time(&t.updated_at)),
    ]
}
