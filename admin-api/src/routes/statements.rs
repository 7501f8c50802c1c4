//! The finance statement: `GET /v1/statements?month=YYYY-MM[&team_id=…][&format=csv]`, a month in
//! the budget time zone per team, user and provider, as JSON or as a CSV download. The handler
//! binds HTTP to the usage store ([`crate::usage`]) and gives it today's names from the view.

use actix_web::{web, HttpResponse};
use ccp_schemas::ids::TeamId;

use super::{parse_id, AppState};
use crate::api::statement::{Statement, StatementFormat, StatementQuery};
use crate::error::{ApiResult, ErrorBody};
use crate::query::Query;
use crate::usage::{statement_csv, Names, UsageStore};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/statements", web::get().to(statement));
}

/// A month's usage and cost per team (at request time), user and provider, in the budget time
/// zone: Bedrock amounts are the organisation's spend, Anthropic amounts the list-price value of
/// the developers' own plans; estimated and unpriced usage are counted and flagged. Totals equal
/// `GET /v1/usage` for the same month. `format=csv`: the lines as a CSV file.
#[utoipa::path(get, path = "/v1/statements", tag = "usage", params(StatementQuery),
    responses((status = 200, body = Statement, content_type = "application/json"),
              (status = 200, description = "`format=csv`: the lines, with a header line", body = String, content_type = "text/csv"),
              (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn statement(state: web::Data<AppState>, query: Query<StatementQuery>) -> ApiResult<HttpResponse> {
    let q = query.0;
    let team_id: Option<TeamId> = q.team_id.as_deref().map(|v| parse_id("team_id", v)).transpose()?;
    let names = {
        let model = state.view.read();
        let dir = &model.directory;
        Names {
            teams: dir.teams().map(|t| (t.team_id.to_string(), t.name.clone())).collect(),
            users: dir
                .users()
                .map(|u| (u.user_id.to_string(), (u.name.clone(), u.email.clone().unwrap_or_default())))
                .collect(),
        }
    };
    let statement =
        UsageStore::new(&state.clickhouse, &state.settings).statement(q.month.as_deref(), team_id, &names).await?;
    Ok(match q.format.unwrap_or_default() {
        StatementFormat::Json => HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(statement),
        StatementFormat::Csv => {
            let file = match &statement.team_id {
                Some(team) => format!("ccp-statement-{}-{team}.csv", statement.month),
                None => format!("ccp-statement-{}.csv", statement.month),
            };
            HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .insert_header(("content-disposition", format!("attachment; filename=\"{file}\"")))
                .insert_header(("cache-control", "no-store"))
                .body(statement_csv(&statement))
        }
    })
}
