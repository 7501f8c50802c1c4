//! `models`: the model catalogue — list, get, set (with Bedrock targets and prices), remove.

use serde_json::{json, Value};

use crate::cli::ModelsCommand;
use crate::client::{CliError, CliResult, Client};
use crate::output::Out;

/// Runs a `models` subcommand.
pub async fn run(client: &Client, command: ModelsCommand, out: Out) -> CliResult<()> {
    match command {
        ModelsCommand::List => {
            let answer = client.get(&["v1", "models"]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let rows: Vec<Vec<String>> =
                answer.body["models"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(row).collect();
            out.table(&["MODEL", "FAMILY", "ALIASES", "BEDROCK", "PRICE_IN/OUT"], &rows)?;
            let unpriced = rows.iter().filter(|r| r[4] == "unpriced").count();
            out.line(&format!(
                "catalogue version {}, price list version {}{}",
                answer.body["version"],
                answer.body["pricing_version"],
                if unpriced > 0 {
                    format!("; {unpriced} unpriced (their requests have no cost until a price is set: ccpctl models set MODEL --price …)")
                } else {
                    String::new()
                }
            ))
        }
        ModelsCommand::Get { model } => {
            let answer = client.get(&["v1", "models", &model]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            crate::output::generic(&out, &answer.body, &["id", "family", "aliases", "priced", "bedrock", "prices"])
        }
        ModelsCommand::Set { model, family, aliases, bedrock, prices } => {
            let targets = bedrock
                .iter()
                .map(|t| {
                    let (scope, id) = t.split_once('=').ok_or_else(|| {
                        CliError::Usage(format!("--bedrock `{t}`: expected SCOPE=MODEL_ID, e.g. global=global.anthropic.claude-opus-5-5-v1:0"))
                    })?;
                    Ok(json!({"scope": scope, "model_id": id}))
                })
                .collect::<CliResult<Vec<Value>>>()?;
            let mut body = json!({"family": family, "aliases": aliases, "bedrock": targets});
            if !prices.is_empty() {
                body["prices"] = Value::Array(prices.iter().map(|p| parse_price(p)).collect::<CliResult<_>>()?);
            }
            let answer = client.put(&["v1", "models", &model], &body, None).await?;
            if out.json {
                return out.document(&answer.body);
            }
            out.table(&["MODEL", "FAMILY", "ALIASES", "BEDROCK", "PRICE_IN/OUT"], &[row(&answer.body)])
        }
        ModelsCommand::Remove { model } => {
            let answer = client.delete(&["v1", "models", &model]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            out.line(&format!("removed {model} from the catalogue (requests for it still go to Anthropic)"))
        }
    }
}

fn row(m: &Value) -> Vec<String> {
    let list = |v: &Value, f: &dyn Fn(&Value) -> String| {
        let items: Vec<String> = v.as_array().map(Vec::as_slice).unwrap_or_default().iter().map(f).collect();
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let price = |p: &Value| {
        let scope = match (p["provider"].as_str(), p["region"].as_str()) {
            (Some(provider), Some(region)) => format!("{provider}@{region}: "),
            (Some(provider), None) => format!("{provider}: "),
            (None, Some(region)) => format!("{region}: "),
            (None, None) => String::new(),
        };
        format!("{scope}${}/${}", text(&p["input_per_mtok"]), text(&p["output_per_mtok"]))
    };
    let prices = list(&m["prices"], &price);
    vec![
        text(&m["id"]),
        text(&m["family"]),
        list(&m["aliases"], &text),
        list(&m["bedrock"], &|t| format!("{}={}", text(&t["scope"]), text(&t["model_id"]))),
        if prices == "-" { "unpriced".to_owned() } else { prices },
    ]
}

/// `[PROVIDER[@REGION]:]INPUT/OUTPUT/CACHE_WRITE/CACHE_READ` (USD per million tokens).
pub fn parse_price(spec: &str) -> CliResult<Value> {
    let usage = || {
        CliError::Usage(format!(
            "--price `{spec}`: expected [PROVIDER[@REGION]:]INPUT/OUTPUT/CACHE_WRITE/CACHE_READ in USD per million tokens, \
             e.g. 5/25/6.25/0.50 or bedrock@eu-central-1:5.5/27.5/6.875/0.55"
        ))
    };
    let (scope, amounts) = match spec.rsplit_once(':') {
        Some((scope, amounts)) => (Some(scope), amounts),
        None => (None, spec),
    };
    let parts: Vec<&str> = amounts.split('/').map(str::trim).collect();
    let [input, output, write, read] = parts[..] else { return Err(usage()) };
    let mut price = json!({
        "input_per_mtok": input, "output_per_mtok": output,
        "cache_write_per_mtok": write, "cache_read_per_mtok": read,
    });
    if let Some(scope) = scope {
        let (provider, region) = match scope.split_once('@') {
            Some((p, r)) => (p, Some(r)),
            None => (scope, None),
        };
        if !matches!(provider, "anthropic" | "bedrock" | "") {
            return Err(usage());
        }
        if !provider.is_empty() {
            price["provider"] = json!(provider);
        }
        if let Some(r) = region {
            price["region"] = json!(r);
        }
    }
    Ok(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_parsed_with_their_scope() {
        assert_eq!(
            parse_price("5/25/6.25/0.50").unwrap(),
            json!({"input_per_mtok": "5", "output_per_mtok": "25", "cache_write_per_mtok": "6.25", "cache_read_per_mtok": "0.50"})
        );
        let p = parse_price("bedrock@eu-central-1:5.5/27.5/6.875/0.55").unwrap();
        assert_eq!((p["provider"].as_str(), p["region"].as_str()), (Some("bedrock"), Some("eu-central-1")));
        assert!(parse_price("5/25").is_err());
        assert!(parse_price("azure:1/1/1/1").is_err());
    }
}
