//! The command line. Secrets (passwords, Bedrock API keys, tokens) are deliberately not flags:
//! they are read from stdin or a no-echo prompt (see `input`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rust_decimal::Decimal;

use ccp_schemas::events::{RoutingStrategy, UserStatus};

/// ccpctl: manage ClaudeCodeProxy users, access keys, Bedrock keys and admins over the admin API.
#[derive(Debug, Parser)]
#[command(
    name = "ccpctl",
    version = ccp_runtime::telemetry::VERSION_LINE,
    after_help = "Admin API URL, first found: --url; CCPCTL_URL; the URL of the session saved by `ccpctl login` \
                  (not when CCPCTL_TOKEN is set); http:// + CCP__ADMIN__LISTEN, the admin address scripts/run \
                  starts the API on; http://127.0.0.1:8081 (scripts/run's default).\n\
                  Credentials: CCPCTL_TOKEN (an API token or session token), else the session saved by \
                  `ccpctl login` in $CCPCTL_CONFIG_DIR, $XDG_CONFIG_HOME/ccpctl or ~/.config/ccpctl.\n\
                  USER arguments take a user id (usr_…) or a user's exact name or e-mail; KEY arguments a key \
                  id (key_…), its label, its prefix (ak_…), USER/LABEL, or a user who has one key. A name that \
                  fits several is refused with the candidates listed.\n\
                  Secrets are never arguments: they are read from stdin or a prompt.\n\
                  Shell completion: `ccpctl completions bash|zsh|fish` prints the script.\n\
                  Exit status: 0 ok, 1 the API refused or failed, 2 usage error, 3 server unreachable."
)]
pub struct Cli {
    /// Admin API URL [default: the saved session's URL, else http:// + CCP__ADMIN__LISTEN, else
    /// http://127.0.0.1:8081]
    #[arg(long, global = true, env = "CCPCTL_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Print the API's JSON (one document on stdout) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in (the password is read from stdin, or a prompt on a terminal; or --sso) and save the session
    Login {
        /// Admin username (prompted for when omitted)
        #[arg(long, conflicts_with = "sso")]
        username: Option<String>,
        /// Sign in with the organisation's identity provider in a browser (single sign-on)
        #[arg(long)]
        sso: bool,
        /// With --sso: print the sign-in URL instead of opening a browser
        #[arg(long, requires = "sso")]
        no_browser: bool,
    },
    /// End the saved session and delete it
    Logout,
    /// Show who the credentials belong to
    Whoami,
    /// Users: list, get, create, update, deactivate, reactivate, budget, routing, team
    #[command(subcommand)]
    Users(UsersCommand),
    /// Teams: list, get, create, update, delete, budget, routing default
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Access keys: list, get, issue, revoke, rotate, Bedrock settings
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Register or remove the Bedrock API key of an access key
    #[command(subcommand)]
    BedrockKey(BedrockKeyCommand),
    /// Your API tokens for automation: list, issue, revoke
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Admin accounts: list, create, role, password, disable, enable, sessions, tokens
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Change your own password (current, then new: prompts, or two lines of stdin); every
    /// session of yours ends
    Passwd,
    /// End every session of yours, on every device
    SignOutEverywhere,
    /// Create a user, issue their key (and register a Bedrock key); print their setup line
    Onboard(OnboardArgs),
    /// Usage and cost, grouped and bucketed
    Usage(UsageArgs),
    /// A month's statement for finance: cost per team, user and provider in the budget time zone
    ///
    /// Bedrock amounts are the organisation's spend; Anthropic amounts the list-price value of the
    /// developers' own plans. Estimated and unpriced usage are flagged per line. `--csv` prints the
    /// lines as CSV (redirect it to a file).
    Statement(StatementArgs),
    /// A user's budget: limit, spend this month, remaining
    Budget {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
    },
    /// One proxied request by its id
    Request {
        /// `req_…`
        request_id: String,
    },
    /// The audit log of admin actions
    Audit(AuditArgs),
    /// An access key's Anthropic circuit breaker (--reset closes it)
    Circuit {
        /// The access key: `key_…`, its label, its prefix `ak_…`, USER/LABEL, or a user with one key
        #[arg(value_name = "KEY")]
        key_id: String,
        /// Close the circuit now (send the key to Anthropic again)
        #[arg(long)]
        reset: bool,
    },
    /// Every access key whose circuit is open or half-open, with its owner
    Circuits,
    /// Failed sign-ins counted per name and window (admin logins, self-service access keys)
    SignInFailures {
        /// Windows ending at or after this time, RFC 3339 (default: the last 24 hours)
        #[arg(long)]
        from: Option<String>,
        /// Only `admin_login`, `self_service` or `sso`
        #[arg(long, value_parser = ["admin_login", "self_service", "sso"])]
        kind: Option<String>,
        /// Most records shown, newest kept (1–1000)
        #[arg(long)]
        limit: Option<u32>,
    },
    /// The price list used for costs: show (the default), set
    Pricing {
        #[command(subcommand)]
        command: Option<PricingCommand>,
    },
    /// The model catalogue: list, get, set (Bedrock targets, prices), remove
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Your own usage, budget and Plan limits, by your access key (for developers; no admin login)
    ///
    /// The access key is read from stdin, else from CCP_ACCESS_KEY, the x-ccp-access-key header in
    /// ANTHROPIC_CUSTOM_HEADERS or ANTHROPIC_BASE_URL's /ak/<key> (as Claude Code has it), else a
    /// no-echo prompt; never from an argument.
    #[command(name = "self")]
    SelfUsage(SelfArgs),
    /// Which admin API operation each command calls
    Endpoints,
    /// Print the shell completion script for bash, zsh or fish
    ///
    /// e.g. `ccpctl completions bash > ~/.local/share/bash-completion/completions/ccpctl`,
    /// `ccpctl completions zsh > "${fpath[1]}/_ccpctl"` or
    /// `ccpctl completions fish > ~/.config/fish/completions/ccpctl.fish`.
    Completions {
        /// bash, zsh or fish
        #[arg(value_enum)]
        shell: ShellArg,
    },
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum PricingCommand {
    /// The price list in force (what `ccpctl pricing` shows)
    Show,
    /// Replace the whole price list (models without an entry become unpriced)
    Set {
        /// An entry MODEL=[PROVIDER[@REGION]:]IN/OUT/CACHE_WRITE/CACHE_READ in USD per million
        /// tokens, e.g. claude-sonnet-4-5=3/15/3.75/0.30 (repeatable)
        #[arg(long = "price", value_name = "MODEL=PRICE", required_unless_present = "file")]
        prices: Vec<String>,
        /// The list as JSON (`-`: stdin): what `ccpctl pricing --json` prints, `{"models": […]}` or
        /// an array of entries
        #[arg(long, value_name = "PATH", conflicts_with = "prices")]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SelfArgs {
    /// IANA time zone of "today" and "this month" [default: the budget time zone]
    #[arg(long)]
    pub tz: Option<String>,
    /// How many recent requests to list (1–100, default 20)
    #[arg(long)]
    pub recent: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every catalogued model with its Bedrock targets and prices (unpriced ones marked)
    List,
    /// One model, by its id, an alias or a dated name
    Get {
        /// e.g. claude-opus-5-5
        model: String,
    },
    /// Add a model or replace its entry (every proxy routes by it within a second)
    Set {
        /// The Anthropic model id, e.g. claude-opus-5-5
        model: String,
        /// opus, sonnet or haiku
        #[arg(long, value_parser = ["opus", "sonnet", "haiku"])]
        family: String,
        /// Another name it answers to (repeatable)
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        /// A Bedrock target SCOPE=MODEL_ID, scope a region, us/eu/apac/…, global or * (repeatable)
        #[arg(long, value_name = "SCOPE=MODEL_ID")]
        bedrock: Vec<String>,
        /// A price [PROVIDER[@REGION]:]IN/OUT/CACHE_WRITE/CACHE_READ in USD per million tokens
        /// (repeatable); replaces the model's prices
        #[arg(long = "price", value_name = "PRICE")]
        prices: Vec<String>,
    },
    /// Remove a model from the catalogue (its requests still go to Anthropic)
    Remove {
        /// The model id
        model: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users (sorted by name)
    List {
        /// Substring of name, email or description
        #[arg(long)]
        search: Option<String>,
        /// Only users with this status
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only members of this team (`team_…` or its exact name), or `none`
        #[arg(long, value_name = "TEAM|none")]
        team: Option<String>,
        /// Page size (1–500, default 50)
        #[arg(long)]
        limit: Option<usize>,
        /// Users to skip
        #[arg(long)]
        offset: Option<usize>,
    },
    /// A user with their keys
    Get {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
    },
    /// Create a user
    Create {
        /// Display name (unique)
        name: String,
        /// Contact address
        #[arg(long)]
        email: Option<String>,
        /// Free text
        #[arg(long)]
        description: Option<String>,
        /// Monthly budget in USD (e.g. 250 or 99.50); unlimited when omitted
        #[arg(long, value_name = "USD", value_parser = parse_usd)]
        budget: Option<Decimal>,
        /// Routing strategy (default plan_first)
        #[arg(long, value_enum)]
        routing: Option<RoutingArg>,
    },
    /// Change a user's name, email or description ("" clears email or description)
    Update {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// New email
        #[arg(long)]
        email: Option<String>,
        /// New description
        #[arg(long)]
        description: Option<String>,
    },
    /// Deactivate a user: all their keys are refused at once
    Deactivate {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
        /// Why (for the audit log)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reactivate a user
    Reactivate {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
    },
    /// Set a user's monthly budget
    Budget {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
        /// USD amount, or `unlimited`
        #[arg(value_name = "USD|unlimited", value_parser = parse_limit)]
        limit: Limit,
    },
    /// Set a user's routing strategy
    Routing {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
        /// How their requests are routed
        #[arg(value_enum)]
        strategy: RoutingArg,
    },
    /// Put a user in a team, move them to another, or take them out (`none`); spend already
    /// incurred stays with the team it was incurred in
    Team {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
        /// The team: `team_…` or its exact name, or `none`
        #[arg(value_name = "TEAM|none")]
        team: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// List teams (sorted by name) with their budgets, routing defaults and member counts
    List,
    /// A team with its members
    Get {
        /// The team: `team_…` or its exact name
        #[arg(value_name = "TEAM")]
        team: String,
    },
    /// Create a team
    Create {
        /// Display name (unique among teams)
        name: String,
        /// Free text
        #[arg(long)]
        description: Option<String>,
        /// Monthly budget of the members together, in USD; unlimited when omitted
        #[arg(long, value_name = "USD", value_parser = parse_usd)]
        budget: Option<Decimal>,
        /// Routing default of members without a strategy of their own
        #[arg(long, value_enum)]
        routing: Option<RoutingArg>,
    },
    /// Change a team's name or description ("" clears the description)
    Update {
        /// The team: `team_…` or its exact name
        #[arg(value_name = "TEAM")]
        team: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// New description
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a team (refused while it has members)
    Delete {
        /// The team: `team_…` or its exact name
        #[arg(value_name = "TEAM")]
        team: String,
    },
    /// Show a team's spend this month against its budget (the members' spend together), or set it
    Budget {
        /// The team: `team_…` or its exact name
        #[arg(value_name = "TEAM")]
        team: String,
        /// USD amount, or `unlimited`; none: show this month's spend
        #[arg(value_name = "USD|unlimited", value_parser = parse_limit)]
        limit: Option<Limit>,
    },
    /// Set or clear (`none`) a team's routing default
    Routing {
        /// The team: `team_…` or its exact name
        #[arg(value_name = "TEAM")]
        team: String,
        /// plan_first, bedrock_only, plan_only, or none
        #[arg(value_name = "STRATEGY|none", value_parser = parse_team_routing)]
        strategy: TeamRouting,
    },
}

/// A team's routing default: a strategy or `None` (no default).
#[derive(Debug, Clone, Copy)]
pub struct TeamRouting(pub Option<RoutingStrategy>);

fn parse_team_routing(raw: &str) -> Result<TeamRouting, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(TeamRouting(None)),
        other => RoutingArg::from_str(other, true)
            .map(|r| TeamRouting(Some(r.into())))
            .map_err(|_| format!("`{raw}` is not plan_first, bedrock_only, plan_only or none")),
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// A user's access keys, or every user's (never the keys themselves)
    List {
        /// The user: `usr_…`, or their exact name or e-mail [default: every user]
        #[arg(value_name = "USER")]
        user_id: Option<String>,
    },
    /// One access key
    Get {
        /// The access key: `key_…`, its label, its prefix `ak_…`, USER/LABEL, or a user with one key
        #[arg(value_name = "KEY")]
        key_id: String,
    },
    /// Issue an access key (shown once)
    Issue {
        /// The user: `usr_…`, or their exact name or e-mail
        #[arg(value_name = "USER")]
        user_id: String,
        #[command(flatten)]
        key: KeyOptions,
    },
    /// Revoke an access key for good
    Revoke {
        /// The access key: `key_…`, its label, its prefix `ak_…`, USER/LABEL, or a user with one key
        #[arg(value_name = "KEY")]
        key_id: String,
        /// Why (for the audit log)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Replace a key's secret (the new key is shown once; the old one stops working)
    Rotate {
        /// The access key: `key_…`, its label, its prefix `ak_…`, USER/LABEL, or a user with one key
        #[arg(value_name = "KEY")]
        key_id: String,
    },
    /// Set a key's Bedrock region and default model (unchanged when omitted; "" clears)
    Bedrock {
        /// The access key: `key_…`, its label, its prefix `ak_…`, USER/LABEL, or a user with one key
        #[arg(value_name = "KEY")]
        key_id: String,
        /// Bedrock region, e.g. us-east-1
        #[arg(long)]
        region: Option<String>,
        /// Bedrock model id used when the requested model maps to nothing
        #[arg(long)]
        default_model: Option<String>,
    },
    /// Check now whether the key's Bedrock API key can take a failover (free calls: CountTokens
    /// on the models it would fail over to, and the model listing)
    Check {
        /// The access key: `key_…`, its label, its prefix `ak_…`, USER/LABEL, or a user with one key
        #[arg(value_name = "KEY")]
        key_id: String,
    },
}

/// Options of a new access key.
#[derive(Debug, Clone, Args)]
pub struct KeyOptions {
    /// Label, e.g. laptop
    #[arg(long)]
    pub name: Option<String>,
    /// Bedrock region, e.g. us-east-1
    #[arg(long)]
    pub region: Option<String>,
    /// Bedrock model id used when the requested model maps to nothing
    #[arg(long)]
    pub default_model: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BedrockKeyCommand {
    /// Register or replace it (read from stdin, or a no-echo prompt on a terminal)
    Set {
        /// The access key: `key_…`, its label, its prefix `ak_…`, USER/LABEL, or a user with one key
        #[arg(value_name = "KEY")]
        key_id: String,
    },
    /// Remove it (the key no longer fails over to Bedrock)
    Remove {
        /// The access key: `key_…`, its label, its prefix `ak_…`, USER/LABEL, or a user with one key
        #[arg(value_name = "KEY")]
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Your API tokens
    List,
    /// Issue an API token (shown once)
    Issue {
        /// Label, e.g. ci
        name: String,
        /// The most the token may do: viewer, operator or admin (at most your own role; default:
        /// whatever you may do)
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: Option<String>,
    },
    /// Revoke one of your API tokens
    Revoke {
        /// `tok_…`
        token_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Every admin account
    List,
    /// Create an admin (password from stdin, or a prompt on a terminal)
    Create {
        /// Login name
        username: String,
        /// What the admin may do: viewer (read-only), operator (users, keys, budgets, routing,
        /// circuits, models) or admin (everything)
        #[arg(long, default_value = "admin", value_parser = ["viewer", "operator", "admin"])]
        role: String,
    },
    /// Set another admin's password (from stdin or a prompt); their sessions end
    Password {
        /// The admin: `adm_…` or their username
        #[arg(value_name = "ADMIN")]
        admin: String,
    },
    /// Disable an admin: their password, sessions and API tokens stop working at once
    Disable {
        /// The admin: `adm_…` or their username
        #[arg(value_name = "ADMIN")]
        admin: String,
        /// Why (for the audit log)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enable a disabled admin
    Enable {
        /// The admin: `adm_…` or their username
        #[arg(value_name = "ADMIN")]
        admin: String,
    },
    /// End every session of an admin
    SignOut {
        /// The admin: `adm_…` or their username
        #[arg(value_name = "ADMIN")]
        admin: String,
    },
    /// An admin's open sessions (--end SESSION ends one)
    Sessions {
        /// The admin: `adm_…` or their username
        #[arg(value_name = "ADMIN")]
        admin: String,
        /// End this session (`ses_…`)
        #[arg(long, value_name = "SESSION")]
        end: Option<String>,
    },
    /// An admin's API tokens (--revoke TOKEN revokes one)
    Tokens {
        /// The admin: `adm_…` or their username
        #[arg(value_name = "ADMIN")]
        admin: String,
        /// Revoke this token (`tok_…`)
        #[arg(long, value_name = "TOKEN")]
        revoke: Option<String>,
    },
    /// Change an admin's role
    Role {
        /// The admin: `adm_…` or their username
        #[arg(value_name = "ADMIN")]
        admin: String,
        /// viewer, operator or admin
        #[arg(value_parser = ["viewer", "operator", "admin"])]
        role: String,
    },
    /// Scope a viewer to one team (a team lead: sees only that team, its budget, members and
    /// usage), or --clear the scope
    #[command(group = clap::ArgGroup::new("scope").required(true).args(["team", "clear"]))]
    Scope {
        /// The admin: `adm_…` or their username
        #[arg(value_name = "ADMIN")]
        admin: String,
        /// The team: `team_…` or its name
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
        /// Unscope the admin (an ordinary viewer again)
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Args)]
pub struct OnboardArgs {
    /// The user's display name
    pub name: String,
    /// Contact address
    #[arg(long)]
    pub email: Option<String>,
    /// Monthly budget in USD; unlimited when omitted
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub budget: Option<Decimal>,
    /// Label of the access key, e.g. laptop
    #[arg(long)]
    pub key_name: Option<String>,
    /// Bedrock region of the key, e.g. us-east-1
    #[arg(long)]
    pub region: Option<String>,
    /// Bedrock model id used when the requested model maps to nothing
    #[arg(long)]
    pub default_model: Option<String>,
    /// Also register the user's Bedrock API key, read from stdin (a no-echo prompt on a terminal)
    #[arg(long)]
    pub bedrock_key_stdin: bool,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// A named range: today, yesterday, last_24h, last_7d, last_30d, this_month, last_month
    /// [default: last_24h]
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub preset: Option<String>,
    /// Start (inclusive), RFC 3339, e.g. 2026-11-01T00:00:00Z
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive), RFC 3339 [default: now]
    #[arg(long)]
    pub to: Option<String>,
    /// Row width: minute, hour, day, week, month
    #[arg(long)]
    pub bucket: Option<String>,
    /// Comma-separated dimensions: user,key,model,provider,team (the team at request time)
    #[arg(long, value_name = "DIMS")]
    pub group_by: Option<String>,
    /// Only requests made in this team (`team_…` or its exact name)
    #[arg(long, value_name = "TEAM")]
    pub team: Option<String>,
    /// Only this user (`usr_…`, or their exact name or e-mail)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only this key (`key_…`, its label, its prefix `ak_…` or USER/LABEL)
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Only anthropic or only bedrock
    #[arg(long)]
    pub provider: Option<String>,
    /// Only this model
    #[arg(long)]
    pub model: Option<String>,
    /// IANA time zone of presets and buckets, e.g. Europe/Berlin [default: the budget time zone]
    #[arg(long)]
    pub tz: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatementArgs {
    /// The month, YYYY-MM, in the budget time zone [default: the last complete month]
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Only requests made in this team (`team_…` or its exact name)
    #[arg(long, value_name = "TEAM")]
    pub team: Option<String>,
    /// Print the lines as CSV (a header line, then one line per team, user and provider)
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only actions by this admin (username or `adm_…`)
    #[arg(long)]
    pub actor: Option<String>,
    /// Only actions on this user, key or admin (`usr_…`, `key_…`, `adm_…`, or a user's name or
    /// e-mail, a key's label or an admin's username; a user includes their keys)
    #[arg(long)]
    pub target: Option<String>,
    /// Only this event type, e.g. user_deactivated
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Start (inclusive), RFC 3339
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive), RFC 3339
    #[arg(long)]
    pub to: Option<String>,
    /// Page size (1–500, default 50)
    #[arg(long)]
    pub limit: Option<usize>,
    /// Entries to skip
    #[arg(long)]
    pub offset: Option<usize>,
}

/// `--status`.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum StatusArg {
    Active,
    Inactive,
}

impl From<StatusArg> for UserStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Active => Self::Active,
            StatusArg::Inactive => Self::Inactive,
        }
    }
}

/// A routing strategy.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum RoutingArg {
    /// Anthropic first, Bedrock on rate limits and failures
    PlanFirst,
    /// Always Bedrock
    BedrockOnly,
    /// Never Bedrock
    PlanOnly,
}

impl From<RoutingArg> for RoutingStrategy {
    fn from(r: RoutingArg) -> Self {
        match r {
            RoutingArg::PlanFirst => Self::PlanFirst,
            RoutingArg::BedrockOnly => Self::BedrockOnly,
            RoutingArg::PlanOnly => Self::PlanOnly,
        }
    }
}

/// A monthly limit: an amount, or `None` for unlimited.
#[derive(Debug, Clone, Copy)]
pub struct Limit(pub Option<Decimal>);

/// A USD amount: `250`, `99.50`, `$250`.
pub fn parse_usd(raw: &str) -> Result<Decimal, String> {
    let s = raw.trim();
    let s = s.strip_prefix('$').unwrap_or(s);
    s.parse::<Decimal>().map_err(|_| format!("`{raw}` is not a USD amount (e.g. 250 or 99.50)"))
}

fn parse_limit(raw: &str) -> Result<Limit, String> {
    if matches!(raw.trim().to_ascii_lowercase().as_str(), "unlimited" | "none") {
        return Ok(Limit(None));
    }
    parse_usd(raw).map(|d| Limit(Some(d))).map_err(|_| format!("`{raw}` is neither a USD amount nor `unlimited`"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn budgets_parse() {
        assert_eq!(parse_usd("$99.50").unwrap(), Decimal::new(9950, 2));
        assert!(parse_limit("Unlimited").unwrap().0.is_none());
        assert!(parse_limit("lots").is_err());
    }
}
