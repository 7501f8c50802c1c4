//! The finance statement (`GET /v1/statements`): a month's usage and cost per team, user and
//! provider in the budget time zone, with what each amount means and how sure it is. One
//! definition shared by the handler, the usage store that fills it ([`crate::usage`]), the
//! OpenAPI document and `ccpctl statement`.

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The body format of a statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatementFormat {
    /// [`Statement`] as JSON.
    #[default]
    Json,
    /// One CSV line per team, user and provider ([`StatementLine`]'s fields), with a header line.
    Csv,
}

/// Query of `GET /v1/statements`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// The month, `YYYY-MM`, in the budget time zone; default: the last complete month.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}$")]
    pub month: Option<String>,
    /// Only the requests made in this team (`team_…`).
    #[param(pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub team_id: Option<String>,
    /// `json` (default) or `csv`.
    #[param(inline)]
    pub format: Option<StatementFormat>,
}

/// What an amount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostBasis {
    /// Bedrock: what the organisation's AWS account pays (at the catalogue's Bedrock prices).
    OrganisationSpend,
    /// Anthropic: answered on the developer's own plan or key; the list-price value of it, not
    /// an invoice of the organisation's.
    PlanValue,
    /// Answered by the proxy itself (refused or failed before a provider): no cost.
    None,
}

/// How exact an amount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostStatus {
    /// Every request priced from the provider's own usage figures.
    Exact,
    /// Priced, but some requests' output tokens are estimates (their streams ended before the
    /// provider's final count): `estimated_requests`.
    Estimated,
    /// Some requests used a model without a price: their cost is unknown and not in `cost_usd`
    /// (`unpriced_requests`, `unpriced_tokens`).
    PartlyUnpriced,
}

impl CostStatus {
    /// The status of an amount with these counts (unpriced outranks estimated).
    pub const fn of(unpriced_requests: u64, estimated_requests: u64) -> Self {
        if unpriced_requests > 0 {
            Self::PartlyUnpriced
        } else if estimated_requests > 0 {
            Self::Estimated
        } else {
            Self::Exact
        }
    }
}

/// One team, user and provider of the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatementLine {
    /// The team the requests were made in (`""`: none).
    pub team_id: String,
    /// Its name (`""`: no team).
    pub team_name: String,
    /// The user (`""`: requests refused before an access key was recognised).
    pub user_id: String,
    /// Their name now.
    pub user_name: String,
    /// Their e-mail now (`""`: none).
    pub user_email: String,
    /// `anthropic`, `bedrock` or `none`.
    pub provider: String,
    /// What `cost_usd` is.
    pub cost_basis: CostBasis,
    /// How exact `cost_usd` is.
    pub cost_status: CostStatus,
    /// Requests.
    pub requests: u64,
    /// Requests Bedrock answered instead of Anthropic.
    pub fallbacks: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Tokens written to the prompt cache.
    pub cache_creation_tokens: u64,
    /// Cost in USD, exact to the nano-dollar (the sum of the requests' costs; unpriced requests
    /// not included).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "12.345")]
    pub cost_usd: Decimal,
    /// Requests whose output tokens are estimates.
    pub estimated_requests: u64,
    /// Requests of a model without a price (their cost is unknown, not 0).
    pub unpriced_requests: u64,
    /// The tokens of those requests.
    pub unpriced_tokens: u64,
}

/// Sums over some lines, split by what the amounts mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatementTotals {
    /// Bedrock: what the organisation pays.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "120.5")]
    pub organisation_spend_usd: Decimal,
    /// Anthropic: list-price value of the developers' own plans and keys.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "310.25")]
    pub plan_value_usd: Decimal,
    /// Both together: what `GET /v1/usage` shows as `cost_usd` for the month (and what budgets
    /// count).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "430.75")]
    pub cost_usd: Decimal,
    /// How exact the amounts are.
    pub cost_status: CostStatus,
    /// Requests.
    pub requests: u64,
    /// Requests whose output tokens are estimates.
    pub estimated_requests: u64,
    /// Requests of a model without a price.
    pub unpriced_requests: u64,
    /// Their tokens.
    pub unpriced_tokens: u64,
}

/// One team's sums (team `""`: the requests of users in no team).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatementTeam {
    /// `team_…`, or `""`.
    pub team_id: String,
    /// Its name.
    pub team_name: String,
    /// Its sums.
    #[serde(flatten)]
    pub totals: StatementTotals,
}

/// `GET /v1/statements`: a month's statement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Statement {
    /// `YYYY-MM`.
    pub month: String,
    /// The budget time zone the month is taken in.
    pub time_zone: String,
    /// Start of the month (inclusive).
    #[schema(value_type = String, example = "2026-11-01T00:00:00+01:00")]
    pub from: DateTime<FixedOffset>,
    /// End of the month (exclusive).
    #[schema(value_type = String, example = "2026-12-01T00:00:00+01:00")]
    pub to: DateTime<FixedOffset>,
    /// Whether the month is over (a statement of the current month grows until it is).
    pub complete: bool,
    /// The team asked for (`null`: every team and the users in none).
    pub team_id: Option<String>,
    /// Per team, user and provider; by team name, user name, provider.
    pub lines: Vec<StatementLine>,
    /// Per team.
    pub teams: Vec<StatementTeam>,
    /// Everything.
    pub totals: StatementTotals,
}
