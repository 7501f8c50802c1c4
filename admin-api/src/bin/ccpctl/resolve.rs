//! Users and keys as people name them, and names beside ids in what ccpctl prints. Everything
//! here goes through the API's own list endpoints (`GET /v1/users`, `GET /v1/users/{id}/keys`,
//! `GET /v1/keys/{id}`, `GET /v1/admins`); the server knows nothing of names given for ids.
//!
//! - A USER is a user id (`usr_…`, sent as it is), or a user's exact name (names are unique,
//!   case aside) or e-mail (case aside; several users may share one).
//! - A KEY is a key id (`key_…`, sent as it is), a key's label, its display prefix (`ak_…`,
//!   or the start of it), `USER/LABEL` (or `USER/PREFIX`), or a USER who has exactly one key
//!   that is not revoked.
//!
//! A name that fits several is refused with every candidate listed; a name that fits none says
//! what was searched. A whole access key given as a name is refused without being repeated.

use std::collections::{BTreeSet, HashMap};

use ccp_admin_api::api::{Admin, Key, Page, User};
use ccp_schemas::secrets::access_key::DISPLAY_PREFIX_LEN;
use ccp_schemas::state::KeyStatus;
use futures_util::{stream, StreamExt as _};

use crate::client::{CliError, CliResult, Client};

/// Users per `GET /v1/users` page (the API's maximum).
const PAGE: usize = 500;
/// Requests in flight at once when many keys or users are read one by one.
const PARALLEL: usize = 8;
/// Up to this many users are read one by one for their names; more, and the list is read.
const FEW_USERS: usize = 20;
/// Partial matches shown when nothing matched exactly.
const SUGGESTIONS: usize = 10;

/// Whether `given` is an id with this prefix (`usr_` + a 26-character ULID).
pub fn is_id(given: &str, prefix: &str) -> bool {
    given.strip_prefix(prefix).is_some_and(|rest| rest.len() == 26 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Every user whose name, e-mail or description contains `search` (every user for `None`).
pub async fn users(client: &Client, search: Option<&str>) -> CliResult<Vec<User>> {
    let mut all: Vec<User> = Vec::new();
    loop {
        let mut query = vec![("limit", PAGE.to_string()), ("offset", all.len().to_string())];
        if let Some(s) = search {
            query.push(("search", s.to_owned()));
        }
        let page: Page<User> = client.get_query(&["v1", "users"], &query).await?.parse()?;
        let got = page.items.len();
        all.extend(page.items);
        if got == 0 || all.len() >= page.total {
            return Ok(all);
        }
    }
}

/// A user's keys.
pub async fn keys_of(client: &Client, user_id: &str) -> CliResult<Vec<Key>> {
    client.get(&["v1", "users", user_id, "keys"]).await?.parse()
}

/// Every key of every one of `users`, with its owner, in the order of `users`.
pub async fn all_keys(client: &Client, users: &[User]) -> CliResult<Vec<(Key, User)>> {
    let lists: Vec<CliResult<(usize, Vec<Key>)>> = stream::iter(users.iter().enumerate())
        .map(|(i, u)| async move { keys_of(client, &u.user_id).await.map(|keys| (i, keys)) })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut by_user: Vec<Vec<Key>> = vec![Vec::new(); users.len()];
    for list in lists {
        let (i, keys) = list?;
        by_user[i] = keys;
    }
    Ok(by_user.into_iter().zip(users).flat_map(|(keys, u)| keys.into_iter().map(move |k| (k, u.clone()))).collect())
}

/// The users `given` names exactly: the one with exactly that name, else those whose name or
/// e-mail equals it case aside.
fn named<'a>(users: &'a [User], given: &str) -> Vec<&'a User> {
    if let Some(u) = users.iter().find(|u| u.name == given) {
        return vec![u];
    }
    let lower = given.to_lowercase();
    users
        .iter()
        .filter(|u| u.name.to_lowercase() == lower || u.email.as_deref().is_some_and(|e| e.to_lowercase() == lower))
        .collect()
}

fn user_line(u: &User) -> String {
    let email = u.email.as_deref().map(|e| format!(" <{e}>")).unwrap_or_default();
    format!("  {}  {}{email}  ({})", u.user_id, u.name, crate::output::label(&u.status))
}

fn key_line(k: &Key, owner: Option<&User>) -> String {
    let label = k.name.as_deref().map(|n| format!("\"{n}\"")).unwrap_or_else(|| "(no label)".into());
    let owner = owner.map_or_else(
        || k.user_id.clone(),
        |u| {
            let email = u.email.as_deref().map(|e| format!(" <{e}>")).unwrap_or_default();
            format!("{}{email} ({})", u.name, u.user_id)
        },
    );
    format!("  {}  {label}  {}  {}  of {owner}", k.key_id, k.masked, crate::output::label(&k.status))
}

fn ambiguous_users(given: &str, users: &[&User]) -> CliError {
    let lines: Vec<String> = users.iter().map(|u| user_line(u)).collect();
    CliError::Lookup(format!(
        "\"{given}\" fits {} users; give the id of the one you mean:\n{}",
        users.len(),
        lines.join("\n")
    ))
}

fn no_user(given: &str, partial: &[User]) -> CliError {
    let mut message = format!("no user has the name or e-mail \"{given}\" (a user id starts with usr_)");
    if !partial.is_empty() {
        message.push_str("; users whose name, e-mail or description contains it:\n");
        let lines: Vec<String> = partial.iter().take(SUGGESTIONS).map(user_line).collect();
        message.push_str(&lines.join("\n"));
        if partial.len() > SUGGESTIONS {
            message.push_str(&format!("\n  … and {} more (ccpctl users list --search …)", partial.len() - SUGGESTIONS));
        }
    }
    CliError::Lookup(message)
}

fn blank(what: &str) -> CliError {
    CliError::Usage(format!("the {what} is blank"))
}

/// The user id a USER argument names.
pub async fn user_id(client: &Client, given: &str) -> CliResult<String> {
    Ok(user(client, given).await?.0)
}

/// The user id a USER argument names, and the user when it had to be looked up.
pub async fn user(client: &Client, given: &str) -> CliResult<(String, Option<User>)> {
    let given = given.trim();
    if given.is_empty() {
        return Err(blank("user"));
    }
    if is_id(given, "usr_") {
        return Ok((given.to_owned(), None));
    }
    let found = users(client, Some(given)).await?;
    let hits = named(&found, given);
    match hits.as_slice() {
        [one] => Ok((one.user_id.clone(), Some((*one).clone()))),
        [] => Err(no_user(given, &found)),
        many => Err(ambiguous_users(given, many)),
    }
}

/// Whether `part` is a key's label (case aside) or the start of its display prefix.
fn fits_key(k: &Key, part: &str) -> bool {
    let prefix = part.trim_end_matches('…');
    k.name.as_deref().is_some_and(|n| n.to_lowercase() == part.to_lowercase())
        || (prefix.starts_with("ak_") && k.prefix.starts_with(prefix))
}

/// What a KEY argument fits.
struct KeySearch {
    /// The keys it names, with their owners.
    hits: Vec<(Key, User)>,
    /// Users it names (their keys that are not revoked are among `hits`).
    owners: Vec<User>,
    /// How many users' keys were searched.
    searched: usize,
}

/// Refuses what looks like a whole access key (a secret), without repeating it.
fn refuse_secret(given: &str) -> CliResult<()> {
    let token = given.trim_end_matches('…');
    if token.starts_with("ak_") && token.chars().count() > DISPLAY_PREFIX_LEN {
        return Err(CliError::Usage(format!(
            "that looks like a whole access key (not repeated here: it is a secret); give its first \
             {DISPLAY_PREFIX_LEN} characters (the prefix `ccpctl keys list` shows) or the key id"
        )));
    }
    Ok(())
}

async fn search_keys(client: &Client, given: &str) -> CliResult<KeySearch> {
    // USER/LABEL (or USER/PREFIX): one user's keys. A label may itself hold a `/`, so when the
    // part before it names no user, the whole is searched as below.
    if let Some((owner, part)) = given.rsplit_once('/') {
        let (owner, part) = (owner.trim(), part.trim());
        if !owner.is_empty() && !part.is_empty() {
            let found = users(client, Some(owner)).await?;
            let owners = named(&found, owner);
            if owners.len() > 1 {
                return Err(ambiguous_users(owner, &owners));
            }
            if let [user] = owners.as_slice() {
                let keys = keys_of(client, &user.user_id).await?;
                let hits: Vec<(Key, User)> =
                    keys.into_iter().filter(|k| fits_key(k, part)).map(|k| (k, (*user).clone())).collect();
                return Ok(KeySearch { hits, owners: vec![(*user).clone()], searched: 1 });
            }
        }
    }
    let every = users(client, None).await?;
    let owners: Vec<User> = named(&every, given).into_iter().cloned().collect();
    let keys = all_keys(client, &every).await?;
    let hits = keys
        .into_iter()
        .filter(|(k, _)| {
            fits_key(k, given) || (k.status == KeyStatus::Active && owners.iter().any(|o| o.user_id == k.user_id))
        })
        .collect();
    Ok(KeySearch { hits, owners, searched: every.len() })
}

fn key_failure(given: &str, search: &KeySearch) -> CliError {
    if search.hits.len() > 1 {
        let lines: Vec<String> = search.hits.iter().map(|(k, u)| key_line(k, Some(u))).collect();
        return CliError::Lookup(format!(
            "\"{given}\" fits {} access keys; give the key id (or USER/LABEL):\n{}",
            search.hits.len(),
            lines.join("\n")
        ));
    }
    if let [owner] = search.owners.as_slice() {
        let what =
            if given.contains('/') { "no key with that label or prefix" } else { "no access key that is not revoked" };
        return CliError::Lookup(format!(
            "{} ({}) has {what} (ccpctl keys list {})",
            owner.name, owner.user_id, owner.user_id
        ));
    }
    let users = if search.searched == 1 { "1 user".to_owned() } else { format!("{} users", search.searched) };
    CliError::Lookup(format!(
        "no access key has the label or prefix \"{given}\", and no user of that name or e-mail has one \
         (searched the keys of {users}; a key id starts with key_, a prefix with ak_; USER/LABEL picks a user's key)"
    ))
}

/// The key id a KEY argument names.
pub async fn key_id(client: &Client, given: &str) -> CliResult<String> {
    let given = given.trim();
    if given.is_empty() {
        return Err(blank("key"));
    }
    if is_id(given, "key_") {
        return Ok(given.to_owned());
    }
    refuse_secret(given)?;
    let search = search_keys(client, given).await?;
    match search.hits.as_slice() {
        [(key, _)] => Ok(key.key_id.clone()),
        _ => Err(key_failure(given, &search)),
    }
}

/// The id an audit `--target` names: a user, an admin (by username) or an access key.
pub async fn audit_target(client: &Client, given: &str) -> CliResult<String> {
    let given = given.trim();
    if given.is_empty() || ["usr_", "key_", "adm_"].iter().any(|p| is_id(given, p)) {
        return Ok(given.to_owned());
    }
    refuse_secret(given)?;
    let found = users(client, Some(given)).await?;
    let users = named(&found, given);
    let admins: Vec<Admin> = client.get(&["v1", "admins"]).await?.parse()?;
    let lower = given.to_lowercase();
    let admins: Vec<&Admin> = admins.iter().filter(|a| a.username.to_lowercase() == lower).collect();
    match (users.as_slice(), admins.as_slice()) {
        ([user], []) => return Ok(user.user_id.clone()),
        ([], [admin]) => return Ok(admin.admin_id.clone()),
        ([], []) => {}
        _ => {
            let mut lines: Vec<String> = users.iter().map(|u| user_line(u)).collect();
            lines.extend(admins.iter().map(|a| format!("  {}  admin {}", a.admin_id, a.username)));
            return Err(CliError::Lookup(format!(
                "\"{given}\" fits {} users and admins; give the id of the one you mean:\n{}",
                lines.len(),
                lines.join("\n")
            )));
        }
    }
    let search = search_keys(client, given).await?;
    match search.hits.as_slice() {
        [(key, _)] => Ok(key.key_id.clone()),
        [] if search.owners.is_empty() => Err(CliError::Lookup(format!(
            "nothing is named \"{given}\": no user (name or e-mail), admin (username) or access key (label or \
             prefix) (ids start with usr_, adm_ or key_)"
        ))),
        _ => Err(key_failure(given, &search)),
    }
}

/// Names of users and keys for tables; whatever cannot be read shows as its id alone.
#[derive(Debug, Default)]
pub struct Names {
    users: HashMap<String, User>,
    keys: HashMap<String, Key>,
}

impl Names {
    /// Names from users and keys already at hand.
    pub fn of(users: impl IntoIterator<Item = User>, keys: impl IntoIterator<Item = Key>) -> Self {
        Self {
            users: users.into_iter().map(|u| (u.user_id.clone(), u)).collect(),
            keys: keys.into_iter().map(|k| (k.key_id.clone(), k)).collect(),
        }
    }

    /// The names of these users and keys (and of the keys' owners), read from the API: each key
    /// on its own, users on their own when few, else the whole user list. Best effort: a name
    /// that cannot be read is left out (the tables then show "?").
    pub async fn load<'a>(
        client: &Client,
        user_ids: impl IntoIterator<Item = &'a str>,
        key_ids: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let key_ids: BTreeSet<&str> = key_ids.into_iter().filter(|id| is_id(id, "key_")).collect();
        let keys: Vec<Key> = stream::iter(key_ids)
            .map(|id| async move { client.get(&["v1", "keys", id]).await.ok()?.parse::<Key>().ok() })
            .buffer_unordered(PARALLEL)
            .filter_map(|k| async move { k })
            .collect()
            .await;
        let mut wanted: BTreeSet<String> =
            user_ids.into_iter().filter(|id| is_id(id, "usr_")).map(str::to_owned).collect();
        wanted.extend(keys.iter().map(|k| k.user_id.clone()));
        let users: Vec<User> = if wanted.len() <= FEW_USERS {
            stream::iter(wanted)
                .map(|id| async move {
                    let detail = client.get(&["v1", "users", &id]).await.ok()?;
                    detail.parse::<User>().ok()
                })
                .buffer_unordered(PARALLEL)
                .filter_map(|u| async move { u })
                .collect()
                .await
        } else {
            users(client, None).await.unwrap_or_default()
        };
        Self::of(users, keys)
    }

    /// A user's name (`?` when unknown).
    pub fn user(&self, user_id: &str) -> String {
        self.users.get(user_id).map_or_else(|| "?".to_owned(), |u| u.name.clone())
    }

    /// A key as `OWNER/LABEL` (or `OWNER/PREFIX` without a label): what `KEY` arguments accept.
    pub fn key(&self, key_id: &str) -> String {
        let Some(k) = self.keys.get(key_id) else { return "?".to_owned() };
        let owner = self.users.get(&k.user_id).map_or(k.user_id.as_str(), |u| u.name.as_str());
        format!("{owner}/{}", k.name.as_deref().unwrap_or(&k.prefix))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_recognised_by_prefix_and_length() {
        assert!(is_id("usr_01JDQ7ABCDEFGHJKMNPQRSTVWX", "usr_"));
        assert!(!is_id("usr_01JDQ7ABCDEFGHJKMNPQRSTVW", "usr_"), "too short: a name");
        assert!(!is_id("key_01JDQ7ABCDEFGHJKMNPQRSTVWX", "usr_"));
        assert!(!is_id("Dana Scully", "usr_"));
    }

    #[test]
    fn whole_access_keys_are_refused_without_being_repeated() {
        let secret = "ak_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let e = refuse_secret(secret).unwrap_err();
        assert!(!e.to_string().contains(secret) && !e.to_string().contains("ak_abc"), "{e}");
        assert!(refuse_secret("ak_abcdef").is_ok());
        assert!(refuse_secret("ak_abcdef…").is_ok());
        assert!(refuse_secret("laptop").is_ok());
    }
}
