//! Configuration errors a person can act on: each names the key, where its value came from (an
//! environment variable or the file), the value given, and what is accepted (the values of an
//! enum, or an example). The `config` crate's own errors name the key at best.

use std::path::Path;

/// What a key accepts, for the keys whose errors would otherwise say too little.
const ACCEPTED: &[(&str, &str)] = &[
    ("budgets.enforce", "`bedrock` (an exhausted budget stops Bedrock requests) or `all` (every request)"),
    ("log.format", "`auto` (JSON unless on a terminal), `text` or `json`"),
    ("secrets.master_key_provider", "`local` or `kms`"),
    ("bedrock.family_fallback", "a table of family (`opus`, `sonnet`, `haiku`) = catalogue model id"),
];

/// The example of a kind of value, from the `config`/serde message.
fn example_of(message: &str) -> Option<&'static str> {
    if message.contains("socket address") {
        Some("an address and port, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`")
    } else if message.contains("expected an integer") || message.contains("expected u") {
        Some("a whole number, e.g. `4`")
    } else if message.contains("expected a boolean") {
        Some("`true` or `false`")
    } else if message.contains("is not a decimal") || message.contains("Decimal") {
        Some("a decimal number as a string, e.g. `\"2.50\"`")
    } else {
        None
    }
}

/// The environment variable that sets `key` (`proxy.listen` → `CCP__PROXY__LISTEN`).
pub fn env_var_of(key: &str) -> String {
    format!("CCP__{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// Where `key`'s value came from, and the value (secrets are not shown).
pub fn source_of(key: &str, path: Option<&Path>, env: &config::Map<String, String>) -> (String, Option<String>) {
    let var = env_var_of(key);
    let secret = key.starts_with("secrets.") || key.contains("password") || key.contains("token");
    let shown = |v: String| if secret { None } else { Some(v) };
    if let Some(v) = env.get(&var) {
        return (format!("environment variable {var}"), shown(v.clone()));
    }
    if let Some(path) = path {
        let value =
            std::fs::read_to_string(path).ok().and_then(|text| text.parse::<toml::Table>().ok()).and_then(|table| {
                let mut node = toml::Value::Table(table);
                for part in key.split('.') {
                    node = node.get(part)?.clone();
                }
                Some(match node {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                })
            });
        if let Some(v) = value {
            return (format!("{}", path.display()), shown(v));
        }
    }
    ("the defaults".into(), None)
}

/// The key a `config` error is about (`… for key `proxy.listen``).
fn key_in(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("for key `")?;
    Some(rest.split('`').next()?.trim_end_matches([']', '[']))
}

/// A `config` loading error, explained; `None` when it names no key (a syntax error of the file,
/// an unknown key: those messages say enough).
pub fn explain(error: &config::ConfigError, path: Option<&Path>, env: &config::Map<String, String>) -> Option<String> {
    let message = error.to_string();
    if message.contains("unknown field `models`") && message.contains("for key `bedrock`") {
        return Some(
            "bedrock.models was replaced by the model catalogue: remove [bedrock.models] and set Bedrock targets \
             with `ccpctl models set MODEL --family F --bedrock SCOPE=MODEL_ID` (or PUT /v1/models/{model}); \
             the shipped catalogue already maps the current Claude models"
                .into(),
        );
    }
    let key = key_in(&message)?;
    let (source, value) = source_of(key, path, env);
    let what = message.split(" for key `").next().unwrap_or(&message);
    // serde names the Rust enum (`enum BudgetEnforcement does not have variant constructor x`).
    let what = if what.contains("does not have variant constructor") || what.contains("unknown variant") {
        "not one of the accepted values".to_owned()
    } else {
        what.to_owned()
    };
    let accepted = ACCEPTED
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, a)| *a)
        .or_else(|| example_of(&message))
        .map(|a| format!("; accepted: {a}"))
        .unwrap_or_default();
    let value = value.map(|v| format!(" = `{}`", v.chars().take(80).collect::<String>())).unwrap_or_default();
    Some(format!("{key}{value} (from {source}) is invalid: {what}{accepted}"))
}

/// Checks that a URL setting is an absolute URL with one of `schemes`, naming the key, its
/// source and an example.
pub fn check_url(
    key: &str,
    url: &str,
    schemes: &[&str],
    example: &str,
    path: Option<&Path>,
    env: &config::Map<String, String>,
) -> Result<(), String> {
    let ok = schemes.iter().any(|s| {
        url.strip_prefix(s)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|host| !host.is_empty() && !host.starts_with('/') && !host.contains(char::is_whitespace))
    });
    if ok {
        return Ok(());
    }
    let (source, _) = source_of(key, path, env);
    Err(format!(
        "{key} = `{}` (from {source}) is not a URL: write {}://host[:port], e.g. `{example}`",
        url.chars().take(80).collect::<String>(),
        schemes.join("|")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BudgetEnforcement, LogFormat, MasterKeyProvider, Settings};

    fn load_env(pairs: &[(&str, &str)]) -> String {
        let env = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        match Settings::load_from(None, env) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_accepted_values_listed_are_the_enums_values() {
        for v in ["bedrock", "all"] {
            assert!(serde_json::from_value::<BudgetEnforcement>(v.into()).is_ok(), "{v}");
        }
        for v in ["auto", "text", "json"] {
            assert!(serde_json::from_value::<LogFormat>(v.into()).is_ok(), "{v}");
        }
        for v in ["local", "kms"] {
            assert!(serde_json::from_value::<MasterKeyProvider>(v.into()).is_ok(), "{v}");
        }
    }

    #[test]
    fn each_kind_of_wrong_value_is_named_with_its_source_and_what_is_accepted() {
        let cases: [(&str, &str, &[&str]); 7] = [
            (
                "CCP__BUDGETS__ENFORCE",
                "everything",
                &["budgets.enforce = `everything`", "environment variable CCP__BUDGETS__ENFORCE", "`bedrock`", "`all`"],
            ),
            ("CCP__PROXY__WORKERS", "many", &["proxy.workers = `many`", "CCP__PROXY__WORKERS", "a whole number"]),
            (
                "CCP__PROXY__LISTEN",
                "localhost",
                &["proxy.listen = `localhost`", "CCP__PROXY__LISTEN", "127.0.0.1:8080"],
            ),
            (
                "CCP__PROXY__ANTHROPIC_BASE_URL",
                "api.anthropic.com",
                &["proxy.anthropic_base_url = `api.anthropic.com`", "is not a URL", "https://api.anthropic.com"],
            ),
            ("CCP__BEDROCK__LISTING_REFRESH_SECS", "1h", &["bedrock.listing_refresh_secs = `1h`", "a whole number"]),
            (
                "CCP__BUDGETS__TIME_ZONE",
                "Mars/Base",
                &["budgets.time_zone", "Mars/Base", "CCP__BUDGETS__TIME_ZONE", "Europe/Berlin"],
            ),
            (
                "CCP__LOG__FORMAT",
                "xml",
                &["log.format = `xml`", "`auto` (JSON unless on a terminal), `text` or `json`"],
            ),
        ];
        for (var, value, needles) in cases {
            let message = load_env(&[(var, value)]);
            for needle in needles {
                assert!(message.contains(needle), "{var}={value}: `{message}` lacks `{needle}`");
            }
        }
    }

    #[test]
    fn a_config_with_the_former_model_table_is_told_where_it_went() {
        let dir = std::env::temp_dir().join(format!("ccp-explain-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.toml");
        std::fs::write(
            &path,
            "[bedrock.models]\n\"claude-opus-4-5\" = \"global.anthropic.claude-opus-4-5-20251101-v1:0\"\n",
        )
        .unwrap();
        let message = Settings::load_from(Some(&path), Vec::new()).unwrap_err().to_string();
        assert!(
            message.contains("replaced by the model catalogue") && message.contains("ccpctl models set"),
            "{message}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_value_from_the_file_names_the_file_and_a_secret_is_not_shown() {
        let dir = std::env::temp_dir().join(format!("ccp-explain-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ccp.toml");
        std::fs::write(&path, "[budgets]\nenforce = \"sometimes\"\n").unwrap();
        let message = Settings::load_from(Some(&path), Vec::new()).unwrap_err().to_string();
        assert!(message.contains("budgets.enforce = `sometimes`"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        let env: config::Map<String, String> =
            [("CCP__SECRETS__ACCESS_KEY_PEPPER".to_owned(), "hunter2".to_owned())].into_iter().collect();
        let (source, value) = source_of("secrets.access_key_pepper", None, &env);
        assert_eq!((source.as_str(), value), ("environment variable CCP__SECRETS__ACCESS_KEY_PEPPER", None));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
