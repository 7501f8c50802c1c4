//! What ccpctl prints: with `--json` exactly one JSON document on stdout; otherwise aligned
//! tables and `field: value` lines. Progress, warnings and errors go to stderr.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::client::CliResult;

/// The output mode of a run.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `--json`.
    pub json: bool,
}

impl Out {
    /// Writes one JSON document (pretty-printed) to stdout.
    pub fn document(&self, value: &Value) -> CliResult<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
        writeln!(out)?;
        Ok(())
    }

    /// Writes a line to stdout.
    pub fn line(&self, text: &str) -> CliResult<()> {
        writeln!(std::io::stdout().lock(), "{text}")?;
        Ok(())
    }

    /// Writes an aligned table (two spaces between columns) to stdout.
    pub fn table(&self, headers: &[&str], rows: &[Vec<String>]) -> CliResult<()> {
        let mut out = std::io::stdout().lock();
        for line in table_lines(headers, rows) {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    /// Writes `name: value` lines with the values aligned.
    pub fn fields(&self, pairs: &[(&str, String)]) -> CliResult<()> {
        let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0) + 1;
        let mut out = std::io::stdout().lock();
        for (k, v) in pairs {
            writeln!(out, "{:<width$} {v}", format!("{k}:"))?;
        }
        Ok(())
    }
}

/// A line on stderr (progress, warnings, hints).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn table_lines(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![render(&mut headers.iter().copied())];
    lines.extend(rows.iter().map(|r| render(&mut r.iter().map(String::as_str))));
    lines
}

/// An enum's API name (`active`, `plan_first`): its serde name ([`ccp_schemas::events::label`]).
pub fn label<T: serde::Serialize>(value: &T) -> String {
    match ccp_schemas::events::label(value) {
        "" => "?".to_owned(),
        name => name.to_owned(),
    }
}

/// A time for tables: `2026-01-31 14:05 UTC`.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An optional time (`never`).
pub fn time_or(t: Option<&DateTime<Utc>>, none: &str) -> String {
    t.map_or_else(|| none.to_owned(), time)
}

/// An optional text (`–`).
pub fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("–").to_owned()
}

/// A monthly budget: `$250.00` or `unlimited`.
pub fn budget(limit: Option<&Decimal>) -> String {
    match limit {
        None => "unlimited".to_owned(),
        Some(d) if d.scale() <= 2 => format!("${d:.2}"),
        Some(d) => format!("${d}"),
    }
}

/// Renders any JSON answer for people: scalars as `name: value` lines (nested objects with dotted
/// names), arrays of objects as tables. Names listed in `order` come first, in that order (JSON
/// objects arrive sorted by name); the rest follow. Used for the reports whose shape ccpctl does
/// not fix.
pub fn generic(out: &Out, value: &Value, order: &[&str]) -> CliResult<()> {
    match value {
        Value::Array(items) => array(out, items, order),
        Value::Object(map) => {
            let mut scalars = Vec::new();
            let mut lists = Vec::new();
            for k in ordered(map.keys(), order) {
                match &map[k.as_str()] {
                    Value::Array(items) if items.iter().any(Value::is_object) => lists.push((k, items)),
                    v @ Value::Object(_) => flatten(&k, v, &mut scalars),
                    other => scalars.push((k.clone(), cell(other))),
                }
            }
            let pairs: Vec<(&str, String)> = scalars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            out.fields(&pairs)?;
            for (k, items) in lists {
                out.line("")?;
                out.line(&format!("{k}:"))?;
                array(out, items, order)?;
            }
            Ok(())
        }
        other => out.line(&cell(other)),
    }
}

/// `names` with those in `order` first, in that order.
fn ordered<'a>(names: impl Iterator<Item = &'a String>, order: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.cloned().collect();
    names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(order.len()));
    names
}

fn flatten(prefix: &str, value: &Value, into: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, into);
            }
        }
        other => into.push((prefix.to_owned(), cell(other))),
    }
}

fn array(out: &Out, items: &[Value], order: &[&str]) -> CliResult<()> {
    if items.is_empty() {
        return out.line("(none)");
    }
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for k in map.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    if columns.is_empty() {
        for item in items {
            out.line(&cell(item))?;
        }
        return Ok(());
    }
    let columns = ordered(columns.iter(), order);
    let rows: Vec<Vec<String>> =
        items.iter().map(|item| columns.iter().map(|c| cell(&item[c.as_str()])).collect()).collect();
    let headers: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    out.table(&headers, &rows)
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "–".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if !items.iter().any(|v| v.is_object() || v.is_array()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_characters_not_bytes() {
        let lines = table_lines(&["ID", "NAME"], &[vec!["1".into(), "Zoë".into()], vec!["22".into(), "x".into()]]);
        assert_eq!(lines, ["ID  NAME", "1   Zoë", "22  x"]);
    }

    #[test]
    fn budgets_show_cents_or_exact() {
        assert_eq!(budget(None), "unlimited");
        assert_eq!(budget(Some(&Decimal::new(250, 0))), "$250.00");
        assert_eq!(budget(Some(&Decimal::new(12345, 3))), "$12.345");
    }
}
