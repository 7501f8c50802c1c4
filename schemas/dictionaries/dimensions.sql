-- Dictionaries over the `users`, `teams` and `keys` dimensions, for ClickHouse 20.1 and later (DDL
-- dictionaries, which ClickHouse 18.16 has not. There, join the tables, or define the same
-- dictionaries in the server's XML configuration, see docs/ANALYTICS.md). Not a migration:
-- run by hand (`{db}` replaced by the database), by a user the dictionary source may read as.
-- The source reads the tables with FINAL, so each id has its newest row, reloaded every 30–60 s.
-- Use: dictGet('ccp.users_dict', 'name', tuple(user_id)), dictGet('ccp.teams_dict', 'name',
-- tuple(team_id)) (a deleted team keeps its name, `deleted` = 1).

CREATE DICTIONARY IF NOT EXISTS {db}.users_dict
(
    user_id        String,
    name           String,
    email          String,
    team_id        String,
    status         String
)
PRIMARY KEY user_id
SOURCE(CLICKHOUSE(QUERY 'SELECT user_id, name, email, team_id, status FROM {db}.users FINAL'))
LAYOUT(COMPLEX_KEY_HASHED())
LIFETIME(MIN 30 MAX 60);

CREATE DICTIONARY IF NOT EXISTS {db}.teams_dict
(
    team_id String,
    name    String,
    deleted UInt8
)
PRIMARY KEY team_id
SOURCE(CLICKHOUSE(QUERY 'SELECT team_id, name, toUInt8(isNotNull(deleted_at)) AS deleted FROM {db}.teams FINAL'))
LAYOUT(COMPLEX_KEY_HASHED())
LIFETIME(MIN 30 MAX 60);

CREATE DICTIONARY IF NOT EXISTS {db}.keys_dict
(
    key_id     String,
    user_id    String,
    name       String,
    key_prefix String,
    status     String
)
PRIMARY KEY key_id
SOURCE(CLICKHOUSE(QUERY 'SELECT key_id, user_id, name, key_prefix, status FROM {db}.keys FINAL'))
LAYOUT(COMPLEX_KEY_HASHED())
LIFETIME(MIN 30 MAX 60);
