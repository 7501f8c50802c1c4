//! The model catalogue as state: the shipped entries (version 0) with the catalogue events
//! applied on top, the one name matcher every service uses, and the checks a catalogue command
//! must pass. Pure code: no I/O.
//!
//! Matching never picks an older model: a name matches an entry exactly, as the entry's id (or
//! an alias) followed by a `-YYYYMMDD` date, or not at all. `claude-opus-4` never matches
//! `claude-opus-4-8`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::events::{BedrockTarget, CatalogueEntry, Event, ModelFamily};

/// The catalogue in force: entries by id, and the index of every name they answer to.
/// Serialized (for a service's snapshot) as its version, entries, removed ids and index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(from = "CatalogueParts")]
pub struct Catalogue {
    /// How many catalogue events were applied (0: the shipped catalogue).
    version: u64,
    entries: BTreeMap<String, Arc<CatalogueEntry>>,
    /// Ids an admin removed (a later release's shipped entry of that id stays removed).
    removed: BTreeSet<String>,
    /// Every id and alias → the entry's id.
    names: HashMap<String, String>,
}

impl Default for Catalogue {
    fn default() -> Self {
        Self::shipped()
    }
}

/// How a name matched an entry.
pub fn name_matches(name: &str, id: &str) -> bool {
    name == id || strip_date(name) == Some(id)
}

/// `name` without a trailing `-YYYYMMDD` (eight digits), if it has one.
pub fn strip_date(name: &str) -> Option<&str> {
    let (base, date) = name.rsplit_once('-')?;
    (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) && !base.is_empty()).then_some(base)
}

/// The family a model name belongs to, from its `opus`/`sonnet`/`haiku` part
/// (`claude-opus-5-5`, `claude-3-7-sonnet-20250219`).
pub fn family_of(name: &str) -> Option<ModelFamily> {
    name.split(['-', '.', ':']).find_map(|part| match part {
        "opus" => Some(ModelFamily::Opus),
        "sonnet" => Some(ModelFamily::Sonnet),
        "haiku" => Some(ModelFamily::Haiku),
        _ => None,
    })
}

/// The version numbers in a model id, in order, without its date (`claude-opus-4-8` → `[4, 8]`,
/// `claude-3-5-haiku-20241022` → `[3, 5]`): how "newest of a family" is decided.
pub fn version_of(id: &str) -> Vec<u32> {
    let base = strip_date(id).unwrap_or(id);
    base.split('-').filter_map(|p| if p.len() <= 3 { p.parse().ok() } else { None }).collect()
}

/// The Claude model name inside a Bedrock model id, inference-profile id or ARN
/// (`us.anthropic.claude-opus-4-1-20250805-v1:0` → `claude-opus-4-1-20250805`,
/// `arn:aws:bedrock:…:inference-profile/global.anthropic.claude-opus-5-5-v1:0` →
/// `claude-opus-5-5`); `None` for non-Anthropic ids.
pub fn claude_name_in_bedrock_id(model_id: &str) -> Option<&str> {
    let id = model_id.rsplit('/').next().unwrap_or(model_id);
    let (_, rest) = id.split_once("anthropic.")?;
    let rest = rest.split(':').next().unwrap_or(rest);
    let name = match rest.rsplit_once("-v") {
        Some((name, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => rest,
    };
    name.starts_with("claude-").then_some(name)
}

/// Whether `s` is an AWS region name (`us-east-1`, `eu-central-2`, `us-gov-west-1`,
/// `ap-southeast-4`): it goes into endpoint host names, so nothing else may pass.
pub fn is_aws_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let letters = |p: &str| !p.is_empty() && p.len() <= 12 && p.bytes().all(|b| b.is_ascii_lowercase());
    let number = |p: &str| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [geo, area, n] => geo.len() == 2 && letters(geo) && letters(area) && number(n),
        [geo, partition, area, n] => geo.len() == 2 && letters(geo) && letters(partition) && letters(area) && number(n),
        _ => false,
    }
}

/// The cross-region inference-profile geography of an AWS region (`eu-central-1` → `eu`).
pub fn geography_of(region: &str) -> Option<&'static str> {
    let geo = if region.starts_with("us-gov-") {
        "us-gov"
    } else if region.starts_with("us-") {
        "us"
    } else if region.starts_with("eu-") {
        "eu"
    } else if region.starts_with("ap-northeast-1") || region.starts_with("ap-northeast-3") {
        "jp"
    } else if region.starts_with("ap-southeast-2") || region.starts_with("ap-southeast-4") {
        "au"
    } else if region.starts_with("ap-") {
        "apac"
    } else if region.starts_with("ca-") {
        "ca"
    } else {
        return None;
    };
    Some(geo)
}

/// The target of `targets` for a key in `region`: the region itself, else its geography
/// (`us`, `eu`, …; Japan and Australia also fall back to `apac`), else `global`, else `*`.
pub fn target_for<'a>(targets: &'a [BedrockTarget], region: &str) -> Option<&'a BedrockTarget> {
    let geo = geography_of(region);
    let apac = matches!(geo, Some("jp" | "au")).then_some("apac");
    [Some(region), geo, apac, Some("global"), Some("*")]
        .into_iter()
        .flatten()
        .find_map(|scope| targets.iter().find(|t| t.scope == scope))
}

/// What a catalogue is serialized as. The index of names is kept as it is: which entry owns a
/// contested name depends on the order of the events that built it.
#[derive(serde::Deserialize)]
struct CatalogueParts {
    version: u64,
    entries: Vec<CatalogueEntry>,
    removed: BTreeSet<String>,
    names: HashMap<String, String>,
}

impl From<CatalogueParts> for Catalogue {
    fn from(parts: CatalogueParts) -> Self {
        Self {
            version: parts.version,
            entries: parts.entries.into_iter().map(|e| (e.id.clone(), Arc::new(e))).collect(),
            removed: parts.removed,
            names: parts.names,
        }
    }
}

impl serde::Serialize for Catalogue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        struct Entries<'a>(&'a BTreeMap<String, Arc<CatalogueEntry>>);
        impl serde::Serialize for Entries<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.values().map(AsRef::as_ref))
            }
        }
        let mut parts = serializer.serialize_struct("Catalogue", 4)?;
        parts.serialize_field("version", &self.version)?;
        parts.serialize_field("entries", &Entries(&self.entries))?;
        parts.serialize_field("removed", &self.removed)?;
        parts.serialize_field("names", &self.names)?;
        parts.end()
    }
}

impl Catalogue {
    /// The catalogue this release ships (version 0).
    pub fn shipped() -> Self {
        let mut catalogue =
            Self { version: 0, entries: BTreeMap::new(), removed: BTreeSet::new(), names: HashMap::new() };
        for entry in shipped() {
            catalogue.insert(entry);
        }
        catalogue
    }

    /// Catalogue events applied so far (0: as shipped).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Applies a catalogue event (others are ignored); `true` if it was one.
    pub fn apply(&mut self, event: &Event) -> bool {
        match event {
            Event::ModelCatalogued(e) => {
                self.remove(&e.entry.id);
                self.removed.remove(&e.entry.id);
                self.insert(e.entry.clone());
            }
            Event::ModelRemoved(e) => {
                self.remove(&e.model);
                self.removed.insert(e.model.clone());
            }
            _ => return false,
        }
        self.version += 1;
        true
    }

    fn insert(&mut self, entry: CatalogueEntry) {
        for name in std::iter::once(&entry.id).chain(&entry.aliases) {
            self.names.insert(name.clone(), entry.id.clone());
        }
        self.entries.insert(entry.id.clone(), Arc::new(entry));
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.entries.remove(id) {
            for name in std::iter::once(&old.id).chain(&old.aliases) {
                self.names.remove(name);
            }
        }
    }

    /// Every entry, by id.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<CatalogueEntry>> {
        self.entries.values()
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<CatalogueEntry>> {
        self.entries.get(id)
    }

    /// The entry a requested model name means: an id or alias exactly, or one followed by a
    /// `-YYYYMMDD` date. Never an older model of a similar name.
    pub fn lookup(&self, name: &str) -> Option<&Arc<CatalogueEntry>> {
        let id = self.names.get(name).or_else(|| strip_date(name).and_then(|base| self.names.get(base)))?;
        self.entries.get(id)
    }

    /// The newest entry of `family` (by [`version_of`] its id) that has a Bedrock target for
    /// `region`, and that target.
    pub fn newest_with_target(
        &self,
        family: ModelFamily,
        region: &str,
    ) -> Option<(&Arc<CatalogueEntry>, &BedrockTarget)> {
        self.entries
            .values()
            .filter(|e| e.family == family)
            .filter_map(|e| target_for(&e.bedrock, region).map(|t| (e, t)))
            .max_by(|a, b| version_of(&a.0.id).cmp(&version_of(&b.0.id)).then_with(|| a.0.id.cmp(&b.0.id)))
    }

    /// The entry a Bedrock model id belongs to: one that names it as a target, else the one the
    /// Claude name inside the id matches.
    pub fn by_bedrock_id(&self, model_id: &str) -> Option<&Arc<CatalogueEntry>> {
        self.entries
            .values()
            .find(|e| e.bedrock.iter().any(|t| t.model_id == model_id))
            .or_else(|| claude_name_in_bedrock_id(model_id).and_then(|name| self.lookup(name)))
    }

    /// Checks an entry before it is catalogued (replacing the entry of the same id, if any).
    pub fn check(&self, entry: &CatalogueEntry) -> Result<(), CatalogueError> {
        check_model_name(&entry.id).map_err(|why| CatalogueError::invalid("id", why))?;
        if entry.aliases.len() > MAX_ALIASES {
            return Err(CatalogueError::invalid("aliases", format!("at most {MAX_ALIASES} aliases")));
        }
        let mut seen = BTreeSet::from([entry.id.as_str()]);
        for (i, alias) in entry.aliases.iter().enumerate() {
            let field = format!("aliases[{i}]");
            check_model_name(alias).map_err(|why| CatalogueError::invalid(&field, why))?;
            if !seen.insert(alias.as_str()) {
                return Err(CatalogueError::invalid(&field, format!("`{alias}` is named twice")));
            }
        }
        for (i, name) in std::iter::once(&entry.id).chain(&entry.aliases).enumerate() {
            let owner = self.names.get(name).filter(|owner| **owner != entry.id);
            if let Some(owner) = owner {
                let field = if i == 0 { "id".to_owned() } else { format!("aliases[{}]", i - 1) };
                return Err(CatalogueError::conflict(
                    &field,
                    format!("`{name}` already names catalogued model `{owner}`"),
                ));
            }
        }
        if entry.bedrock.len() > MAX_TARGETS {
            return Err(CatalogueError::invalid("bedrock", format!("at most {MAX_TARGETS} targets")));
        }
        let mut scopes = BTreeSet::new();
        for (i, target) in entry.bedrock.iter().enumerate() {
            check_scope(&target.scope).map_err(|why| CatalogueError::invalid(&format!("bedrock[{i}].scope"), why))?;
            if !scopes.insert(target.scope.as_str()) {
                return Err(CatalogueError::invalid(
                    &format!("bedrock[{i}].scope"),
                    format!("scope `{}` has two targets", target.scope),
                ));
            }
            check_bedrock_id(&target.model_id)
                .map_err(|why| CatalogueError::invalid(&format!("bedrock[{i}].model_id"), why))?;
        }
        Ok(())
    }
}

/// Most aliases per entry.
pub const MAX_ALIASES: usize = 16;
/// Most Bedrock targets per entry.
pub const MAX_TARGETS: usize = 32;

/// Why a catalogue command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CatalogueError {
    /// The offending field (`id`, `aliases[2]`, `bedrock[0].model_id`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// Whether it collides with another entry (409) rather than being invalid itself (422).
    pub conflict: bool,
}

impl CatalogueError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into(), conflict: false }
    }

    fn conflict(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into(), conflict: true }
    }
}

/// A model name: 1–64 characters of `a-z`, `0-9`, `-`, `.`, starting with a letter.
pub fn check_model_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a model name (1–64 of a-z, 0-9, `-`, `.`, starting with a letter)",
            name.chars().take(64).collect::<String>()
        ))
    }
}

fn check_scope(scope: &str) -> Result<(), String> {
    const GEOGRAPHIES: &[&str] = &["global", "*", "us", "eu", "apac", "jp", "au", "ca", "us-gov"];
    let region = scope.split('-').count() >= 3
        && scope.len() <= 32
        && scope.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && scope.ends_with(|c: char| c.is_ascii_digit());
    if GEOGRAPHIES.contains(&scope) || region {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a scope: an AWS region (eu-central-1), a geography ({}) or `global` / `*`",
            scope.chars().take(32).collect::<String>(),
            GEOGRAPHIES[2..].join(", ")
        ))
    }
}

/// A Bedrock model id or inference-profile id for an Anthropic model (`anthropic.claude-…-v1:0`,
/// with an optional geography prefix), or an ARN of a foundation model, inference profile or
/// application inference profile.
pub fn check_bedrock_id(model_id: &str) -> Result<(), String> {
    let printable = model_id.len() <= 2048 && model_id.bytes().all(|b| b.is_ascii_graphic());
    let arn = model_id.starts_with("arn:aws")
        && model_id.split(':').count() >= 6
        && ["foundation-model/", "inference-profile/", "application-inference-profile/"]
            .iter()
            .any(|kind| model_id.contains(kind));
    let id = claude_name_in_bedrock_id(model_id).is_some() && !model_id.contains('/');
    if printable && (arn || id) {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Bedrock model or inference-profile id for a Claude model (e.g. \
             `global.anthropic.claude-sonnet-4-5-20250929-v1:0`) or such an ARN",
            model_id.chars().take(80).collect::<String>()
        ))
    }
}

/// The catalogue this release ships: the models Claude Code asks for (2.1.332 defaults to
/// `claude-opus-5-5`, 2.1.197 to `claude-opus-4-8`) and their predecessors, with the Bedrock
/// inference profiles known when it was written. Models without a known Bedrock id have no
/// target: a failover finds them through the key's own Bedrock model listing, or falls back to
/// the newest catalogued model of their family (recorded as a substitution).
pub fn shipped() -> Vec<CatalogueEntry> {
    let target = |scope: &str, id: &str| BedrockTarget { scope: scope.into(), model_id: id.into() };
    let entry = |id: &str, family, aliases: &[&str], bedrock: Vec<BedrockTarget>| CatalogueEntry {
        id: id.into(),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        family,
        bedrock,
    };
    use ModelFamily::{Haiku, Opus, Sonnet};
    vec![
        entry("claude-opus-5-5", Opus, &[], vec![]),
        entry("claude-opus-4-8", Opus, &[], vec![]),
        entry(
            "claude-opus-4-5",
            Opus,
            &["claude-opus-4-5-latest"],
            vec![target("global", "global.anthropic.claude-opus-4-5-20251101-v1:0")],
        ),
        entry("claude-opus-4-1", Opus, &[], vec![target("us", "us.anthropic.claude-opus-4-1-20250805-v1:0")]),
        entry(
            "claude-opus-4",
            Opus,
            &["claude-opus-4-0"],
            vec![target("us", "us.anthropic.claude-opus-4-20250514-v1:0")],
        ),
        entry(
            "claude-sonnet-4-5",
            Sonnet,
            &["claude-sonnet-4-5-latest"],
            vec![target("global", "global.anthropic.claude-sonnet-4-5-20250929-v1:0")],
        ),
        entry(
            "claude-sonnet-4",
            Sonnet,
            &["claude-sonnet-4-0"],
            vec![target("global", "global.anthropic.claude-sonnet-4-20250514-v1:0")],
        ),
        entry(
            "claude-3-7-sonnet",
            Sonnet,
            &["claude-3-7-sonnet-latest"],
            vec![target("us", "us.anthropic.claude-3-7-sonnet-20250219-v1:0")],
        ),
        entry(
            "claude-haiku-4-5",
            Haiku,
            &["claude-haiku-4-5-latest"],
            vec![target("global", "global.anthropic.claude-haiku-4-5-20251001-v1:0")],
        ),
        entry(
            "claude-3-5-haiku",
            Haiku,
            &["claude-3-5-haiku-latest"],
            vec![target("us", "us.anthropic.claude-3-5-haiku-20241022-v1:0")],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ModelCatalogued, ModelRemoved};
    use proptest::prelude::*;

    #[test]
    fn names_match_exactly_or_with_a_date_and_never_an_older_model() {
        let c = Catalogue::shipped();
        let id = |name: &str| c.lookup(name).map(|e| e.id.as_str());
        assert_eq!(id("claude-opus-4-8"), Some("claude-opus-4-8"));
        assert_eq!(id("claude-opus-5-5"), Some("claude-opus-5-5"));
        assert_eq!(id("claude-sonnet-4-5-20250929"), Some("claude-sonnet-4-5"));
        assert_eq!(id("claude-opus-4-0"), Some("claude-opus-4"), "an alias");
        assert_eq!(id("claude-opus-4-20250514"), Some("claude-opus-4"));
        assert_eq!(id("claude-3-7-sonnet-latest"), Some("claude-3-7-sonnet"));
        for unknown in [
            "claude-opus-4-9",
            "claude-opus-4-5-1",
            "claude-opus-4-x",
            "claude-opus",
            "gpt-4",
            "",
            "claude-opus-4-5-2025",
        ] {
            assert_eq!(id(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn helpers_read_names_ids_and_regions() {
        assert_eq!(strip_date("claude-opus-4-5-20251101"), Some("claude-opus-4-5"));
        assert_eq!(strip_date("claude-opus-4-5"), None);
        assert_eq!(family_of("claude-3-7-sonnet-20250219"), Some(ModelFamily::Sonnet));
        assert_eq!(family_of("claude-opus-5-5"), Some(ModelFamily::Opus));
        assert_eq!(family_of("claude-mythos-1"), None);
        assert_eq!(version_of("claude-opus-4-8"), vec![4, 8]);
        assert_eq!(version_of("claude-3-5-haiku-20241022"), vec![3, 5]);
        assert!(version_of("claude-opus-5-5") > version_of("claude-opus-4-8"));
        assert!(version_of("claude-opus-4-1") > version_of("claude-opus-4"));
        assert_eq!(
            claude_name_in_bedrock_id("us.anthropic.claude-opus-4-1-20250805-v1:0"),
            Some("claude-opus-4-1-20250805")
        );
        assert_eq!(
            claude_name_in_bedrock_id(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-opus-5-5-v1:0"
            ),
            Some("claude-opus-5-5")
        );
        assert_eq!(claude_name_in_bedrock_id("anthropic.claude-v2"), None);
        assert_eq!(claude_name_in_bedrock_id("amazon.nova-pro-v1:0"), None);
        assert_eq!(geography_of("eu-central-1"), Some("eu"));
        assert_eq!(geography_of("us-gov-west-1"), Some("us-gov"));
        assert_eq!(geography_of("ap-northeast-1"), Some("jp"));
        assert_eq!(geography_of("sa-east-1"), None);
        for region in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-4", "il-central-1"] {
            assert!(is_aws_region(region), "{region}");
        }
        for bad in ["evil.com/", "us-east-1.evil.com", "us_east_1", "", "us-east", "US-EAST-1", "us-east-1/x"] {
            assert!(!is_aws_region(bad), "{bad}");
        }
    }

    #[test]
    fn the_most_specific_scope_wins() {
        let t = |s: &str| BedrockTarget { scope: s.into(), model_id: format!("{s}.anthropic.claude-x-v1:0") };
        let targets = vec![t("*"), t("global"), t("eu"), t("eu-central-1"), t("apac")];
        assert_eq!(target_for(&targets, "eu-central-1").unwrap().scope, "eu-central-1");
        assert_eq!(target_for(&targets, "eu-west-1").unwrap().scope, "eu");
        assert_eq!(target_for(&targets, "us-east-1").unwrap().scope, "global");
        assert_eq!(target_for(&targets, "ap-northeast-1").unwrap().scope, "apac");
        assert_eq!(target_for(&targets[..1], "sa-east-1").unwrap().scope, "*");
        assert!(target_for(&[t("us")], "eu-west-1").is_none());
    }

    #[test]
    fn newest_of_a_family_with_a_target() {
        let c = Catalogue::shipped();
        let (e, t) = c.newest_with_target(ModelFamily::Opus, "us-east-1").unwrap();
        assert_eq!((e.id.as_str(), t.scope.as_str()), ("claude-opus-4-5", "global"));
        let (e, _) = c.newest_with_target(ModelFamily::Haiku, "eu-west-1").unwrap();
        assert_eq!(e.id, "claude-haiku-4-5");
    }

    #[test]
    fn events_change_the_catalogue_and_removals_stick() {
        let mut c = Catalogue::shipped();
        let mut entry = c.get("claude-opus-5-5").unwrap().as_ref().clone();
        entry
            .bedrock
            .push(BedrockTarget { scope: "global".into(), model_id: "global.anthropic.claude-opus-5-5-v1:0".into() });
        entry.aliases.push("opus-latest".into());
        assert!(c.apply(&Event::ModelCatalogued(ModelCatalogued { entry })));
        assert_eq!(c.version(), 1);
        assert_eq!(c.lookup("opus-latest").unwrap().id, "claude-opus-5-5");
        let (e, _) = c.newest_with_target(ModelFamily::Opus, "us-east-1").unwrap();
        assert_eq!(e.id, "claude-opus-5-5");
        assert_eq!(c.by_bedrock_id("global.anthropic.claude-opus-5-5-v1:0").unwrap().id, "claude-opus-5-5");
        assert!(c.apply(&Event::ModelRemoved(ModelRemoved { model: "claude-opus-5-5".into() })));
        assert!(c.lookup("opus-latest").is_none() && c.lookup("claude-opus-5-5").is_none());
        assert_eq!(c.version(), 2);
        assert!(c.removed.contains("claude-opus-5-5"));
    }

    #[test]
    fn a_catalogue_reads_back_as_it_was_saved_with_its_name_index() {
        let mut c = Catalogue::shipped();
        let mut entry = c.get("claude-opus-5-5").unwrap().as_ref().clone();
        entry.aliases.push("opus-latest".into());
        c.apply(&Event::ModelCatalogued(ModelCatalogued { entry }));
        c.apply(&Event::ModelRemoved(ModelRemoved { model: "claude-haiku-4-5".into() }));
        let back: Catalogue = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        // Equality covers the index of names.
        assert_eq!(back, c);
        assert_eq!(back.version(), 2);
        assert_eq!(back.lookup("opus-latest").unwrap().id, "claude-opus-5-5");
        assert!(back.lookup("claude-haiku-4-5").is_none() && back.removed.contains("claude-haiku-4-5"));

        // A name two entries claimed (the fold does not check; commands do) belongs to whom the
        // events left it with, not to whom a rebuild in id order would give it.
        let mut c = Catalogue::shipped();
        let mut first = c.get("claude-sonnet-4-5").unwrap().as_ref().clone();
        first.aliases.push("team-default".into());
        let mut second = c.get("claude-opus-4-1").unwrap().as_ref().clone();
        second.aliases.push("team-default".into());
        c.apply(&Event::ModelCatalogued(ModelCatalogued { entry: second }));
        c.apply(&Event::ModelCatalogued(ModelCatalogued { entry: first }));
        c.apply(&Event::ModelRemoved(ModelRemoved { model: "claude-sonnet-4-5".into() }));
        let back: Catalogue = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(back.lookup("team-default").map(|e| e.id.clone()), c.lookup("team-default").map(|e| e.id.clone()));
        assert_eq!(back, c);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        let c = Catalogue::shipped();
        let base = || CatalogueEntry {
            id: "claude-new-1".into(),
            aliases: vec![],
            family: ModelFamily::Opus,
            bedrock: vec![],
        };
        let with = |f: &dyn Fn(&mut CatalogueEntry)| {
            let mut e = base();
            f(&mut e);
            c.check(&e).unwrap_err()
        };
        assert!(c.check(&base()).is_ok());
        let e = with(&|e| e.aliases = vec!["claude-opus-4-0".into()]);
        assert_eq!((e.field.as_str(), e.conflict), ("aliases[0]", true));
        // Replacing an entry under its own id (with its own aliases) is not a conflict.
        assert!(c.check(&c.get("claude-opus-4").unwrap().as_ref().clone()).is_ok());
        let e = with(&|e| e.id = "claude-opus-4-0".into());
        assert_eq!((e.field.as_str(), e.conflict), ("id", true), "an id that is another entry's alias");
        let e = with(&|e| e.id = "Claude Opus".into());
        assert_eq!((e.field.as_str(), e.conflict), ("id", false));
        let e = with(&|e| e.aliases = vec!["a-1".into(), "a-1".into()]);
        assert_eq!(e.field, "aliases[1]");
        let e = with(&|e| e.bedrock = vec![BedrockTarget { scope: "mars".into(), model_id: "x".into() }]);
        assert_eq!(e.field, "bedrock[0].scope");
        let e = with(&|e| e.bedrock = vec![BedrockTarget { scope: "eu".into(), model_id: "gpt-4".into() }]);
        assert_eq!(e.field, "bedrock[0].model_id");
        let target = BedrockTarget { scope: "eu".into(), model_id: "eu.anthropic.claude-new-1-v1:0".into() };
        let e = with(&|e| e.bedrock = vec![target.clone(), target.clone()]);
        assert_eq!(e.field, "bedrock[1].scope");
    }

    proptest! {
        /// A name matches an entry only as its id or alias, or that plus a date: a longer
        /// version never falls back to a shorter one.
        #[test]
        fn the_matcher_never_downgrades(
            base in "claude-(opus|sonnet|haiku)-[1-9]",
            minor in prop::option::of(1u32..99),
            extra in "(-[0-9]{1,7}|-[a-z]{1,5}|-[0-9]{8}|)",
        ) {
            let id = match minor { Some(m) => format!("{base}-{m}"), None => base.clone() };
            let name = format!("{id}{extra}");
            let matched = name_matches(&name, &id);
            let dated = extra.len() == 9 && extra[1..].bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(matched, extra.is_empty() || dated, "{} vs {}", name, id);
            // The shorter id never matches a longer versioned name.
            if minor.is_some() {
                prop_assert!(!name_matches(&name, &base), "{} matched {}", name, base);
            }
            let mut c = Catalogue::shipped();
            let entry = CatalogueEntry { id: id.clone(), aliases: vec![], family: ModelFamily::Opus, bedrock: vec![] };
            if c.check(&entry).is_ok() {
                c.apply(&Event::ModelCatalogued(ModelCatalogued { entry }));
                let found = c.lookup(&name).map(|e| e.id.clone());
                prop_assert!(found.is_none() || name_matches(&name, found.as_deref().unwrap_or_default()));
            }
        }
    }
}
