//! The secret scan run after the suite (`ccp-secret-scan`): every log file the tests and the
//! services they started wrote, and every message of every stream and KV bucket on the test NATS
//! server, searched for plaintext secrets — access keys (`ak_` + 43 base64url characters),
//! admin session and API tokens (`ccps_…`, `ccpt_…`), Bedrock API keys (`ABSK…`), AWS access
//! key ids and secret keys, and the literal passwords and configuration secrets the tests use.
//!
//! A finding names where it is (file and line, or stream, sequence and subject) and shows the
//! secret only redacted: the display prefix the system itself shows for access keys
//! (`ak_` + 6), four characters for the others, a label for the literals.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt as _, TryStreamExt as _};

/// What kind of secret was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `ak_` + 43 base64url characters that decode to 32 bytes.
    AccessKey,
    /// An admin session token (`ccps_` + 43).
    SessionToken,
    /// An admin API token (`ccpt_` + 43).
    ApiToken,
    /// A Bedrock API key (`ABSK` + base64).
    BedrockApiKey,
    /// An AWS access key id (`AKIA`/`ASIA` + 16).
    AwsAccessKeyId,
    /// A 40-character AWS secret access key after the word "secret".
    AwsSecretKey,
    /// One of the literal secrets the suite uses (passwords, pepper, master key).
    Literal,
}

/// One secret found at `offset` of the scanned bytes, shown only as `redacted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Byte offset in the scanned text.
    pub offset: usize,
    /// The kind.
    pub kind: Kind,
    /// A redacted form, safe to print.
    pub redacted: String,
}

/// The literal secrets of the test suite: a leak of any of them is a finding wherever it is.
/// (Label, value.) Values shorter than 12 characters are not searched for (too common).
pub const SUITE_LITERALS: &[(&str, &str)] = &[
    ("the tests' admin password", "correct horse battery staple"),
    ("the CLI tests' admin password", "a long enough admin password"),
    ("the tests' access-key pepper", "test-pepper-test-pepper-test-pepper!"),
    ("the tests' master key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
    ("the alert tests' webhook secret", "whsec-test-secret"),
    ("the alert tests' webhook URL token", "s3cr3t-path-token"),
];

/// The detectors, with the literal secrets to look for.
#[derive(Debug, Clone)]
pub struct Detector {
    literals: Vec<(String, Vec<u8>)>,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new(SUITE_LITERALS.iter().map(|(label, value)| ((*label).to_owned(), (*value).to_owned())))
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

/// The length of the run of bytes from `from` that satisfy `f`.
fn run(bytes: &[u8], from: usize, f: impl Fn(u8) -> bool) -> usize {
    bytes.get(from..).map_or(0, |rest| rest.iter().take_while(|b| f(**b)).count())
}

fn head(bytes: &[u8], at: usize, n: usize) -> String {
    let end = (at + n).min(bytes.len());
    format!("{}…", String::from_utf8_lossy(&bytes[at..end]))
}

impl Detector {
    /// Detectors for the patterns and these (label, value) literals.
    pub fn new(literals: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            literals: literals
                .into_iter()
                .filter(|(_, value)| value.len() >= 12)
                .map(|(label, value)| (label, value.into_bytes()))
                .collect(),
        }
    }

    /// Every secret in `bytes`.
    pub fn scan(&self, bytes: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut i = 0;
        // Every token starts with `a`, `c` or `A`: jump from one to the next.
        while let Some(at) = bytes.get(i..).and_then(|rest| rest.iter().position(|b| matches!(b, b'a' | b'c' | b'A'))) {
            i += at;
            let before = if i == 0 { b' ' } else { bytes[i - 1] };
            let found = if is_b64url(before) { None } else { self.token_at(bytes, i, before) };
            match found {
                Some((kind, len, shown)) => {
                    hits.push(Hit { offset: i, kind, redacted: head(bytes, i, shown) });
                    i += len;
                }
                None => i += 1,
            }
        }
        self.aws_secrets(bytes, &mut hits);
        for (label, value) in &self.literals {
            let mut from = 0;
            while let Some(at) = find(&bytes[from..], value) {
                hits.push(Hit { offset: from + at, kind: Kind::Literal, redacted: format!("<{label}>") });
                from += at + value.len();
            }
        }
        hits.sort_by_key(|h| h.offset);
        hits
    }

    /// A prefixed token starting at `i` after the byte `before`: (kind, length, characters
    /// shown).
    fn token_at(&self, bytes: &[u8], i: usize, before: u8) -> Option<(Kind, usize, usize)> {
        // Inside a standard base64 blob (a sealed secret), `ABSK…` and `AKIA…` are chance.
        let in_base64 = before == b'+' || before == b'/';
        let rest = &bytes[i..];
        let exact = |prefix: &[u8], n: usize| rest.starts_with(prefix) && run(bytes, i + prefix.len(), is_b64url) == n;
        if exact(b"ak_", 43) {
            let candidate = std::str::from_utf8(&rest[..46]).unwrap_or_default();
            // Only a canonical encoding of 32 bytes is a key the proxy would accept.
            return ccp_schemas::secrets::access_key::AccessKey::parse(candidate).is_ok().then_some((
                Kind::AccessKey,
                46,
                ccp_schemas::secrets::access_key::DISPLAY_PREFIX_LEN,
            ));
        }
        if exact(b"ccps_", 43) {
            return Some((Kind::SessionToken, 48, 5 + 4));
        }
        if exact(b"ccpt_", 43) {
            return Some((Kind::ApiToken, 48, 5 + 4));
        }
        if in_base64 {
            return None;
        }
        if rest.starts_with(b"ABSK") {
            let n = run(bytes, i + 4, is_b64);
            return (n >= 16).then_some((Kind::BedrockApiKey, 4 + n, 4));
        }
        if rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA") {
            let n = run(bytes, i + 4, |b| b.is_ascii_uppercase() || b.is_ascii_digit());
            return (n == 16 && !rest.get(20).copied().is_some_and(is_b64url)).then_some((Kind::AwsAccessKeyId, 20, 4));
        }
        None
    }

    /// 40 characters of mixed-case base64 shortly after the word "secret": an AWS secret key.
    fn aws_secrets(&self, bytes: &[u8], hits: &mut Vec<Hit>) {
        let mut from = 0;
        while let Some(at) = find_ignore_case(&bytes[from..], b"secret") {
            from += at + 6;
            // The rest of the name, then `=` or `:`, then quotes or blanks: `_access_key": "`.
            let window = &bytes[from..(from + 24).min(bytes.len())];
            let Some(sep) = window.iter().position(|b| *b == b'=' || *b == b':') else { continue };
            let mut j = from + sep + 1;
            j += run(bytes, j, |b| matches!(b, b' ' | b'"' | b'\'' | b'\t'));
            let n = run(bytes, j, |b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+');
            let value = &bytes[j..j + n];
            let mixed = value.iter().any(u8::is_ascii_uppercase)
                && value.iter().any(u8::is_ascii_lowercase)
                && value.iter().any(u8::is_ascii_digit);
            if n == 40 && mixed {
                hits.push(Hit { offset: j, kind: Kind::AwsSecretKey, redacted: head(bytes, j, 4) });
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(at) = haystack.get(from..)?.iter().position(|&b| b == first) {
        let start = from + at;
        if haystack.get(start..start + needle.len()) == Some(needle) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle.first()?.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = haystack.get(from..)?.iter().position(|b| b.to_ascii_lowercase() == first) {
        let start = from + at;
        if haystack.get(start..start + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle)) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

/// A secret and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `path:line` or `stream NAME seq N (subject S)`.
    pub location: String,
    /// What was found.
    pub kind: Kind,
    /// The redacted secret.
    pub redacted: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?} {}", self.location, self.kind, self.redacted)
    }
}

/// Files larger than this are scanned in their first this many bytes only.
const MAX_FILE_BYTES: u64 = 512 << 20;

/// Scans one file; findings are located by line.
pub fn scan_file(detector: &Detector, path: &Path) -> std::io::Result<Vec<Finding>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
    let hits = detector.scan(&bytes);
    let mut line = 1;
    let mut counted = 0;
    Ok(hits
        .into_iter()
        .map(|hit| {
            line += bytes[counted..hit.offset].iter().filter(|&&b| b == b'\n').count();
            counted = hit.offset;
            Finding { location: format!("{}:{line}", path.display()), kind: hit.kind, redacted: hit.redacted }
        })
        .collect())
}

/// The files under `roots` (recursively) modified at or after `since`.
pub fn log_files(roots: &[PathBuf], since: Option<SystemTime>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending: Vec<PathBuf> = roots.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() && since.is_none_or(|s| meta.modified().is_ok_and(|m| m >= s)) {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Where the suite's logs are: `target/test-logs` (service processes), `target/nextest` (test
/// output, with the JUnit report that keeps every test's output), `.local/logs` (`scripts/run`),
/// and in the temporary directory the service logs and event spools of older checkouts
/// (`ccp-*.log`, `ccp-*spool*`).
pub fn default_log_roots(checkout: &Path) -> Vec<PathBuf> {
    let mut roots = vec![
        crate::target_dir().join("test-logs"),
        crate::target_dir().join("nextest"),
        checkout.join(".local").join("logs"),
    ];
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("ccp-") && (name.ends_with(".log") || name.contains("spool")) {
                roots.push(entry.path());
            }
        }
    }
    roots
}

/// What a NATS scan covered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NatsCoverage {
    /// Streams read (KV buckets are streams `KV_<bucket>`).
    pub streams: usize,
    /// Messages read.
    pub messages: u64,
    /// Bytes of payload read.
    pub bytes: u64,
    /// Streams that disappeared while being read (deleted by a running test).
    pub vanished: usize,
}

/// How long one stream may go without delivering its next message before the scan gives up on
/// it (an error, never a pass).
const STREAM_IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Reads every message of every stream whose name contains `filter`, ignoring case (all with
/// `""`).
pub async fn scan_nats(
    detector: &Detector,
    js: &async_nats::jetstream::Context,
    filter: &str,
    concurrency: usize,
) -> anyhow::Result<(Vec<Finding>, NatsCoverage)> {
    let names: Vec<String> = js.stream_names().try_collect().await?;
    let filter = filter.to_ascii_lowercase();
    let names: Vec<String> = names.into_iter().filter(|n| n.to_ascii_lowercase().contains(&filter)).collect();
    let results: Vec<anyhow::Result<Option<StreamScan>>> = futures_util::stream::iter(names)
        .map(|name| async move { scan_stream(detector, js, &name).await })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut findings = Vec::new();
    let mut coverage = NatsCoverage::default();
    for result in results {
        match result? {
            Some((found, messages, bytes)) => {
                findings.extend(found);
                coverage.streams += 1;
                coverage.messages += messages;
                coverage.bytes += bytes;
            }
            None => coverage.vanished += 1,
        }
    }
    findings.sort_by(|a, b| a.location.cmp(&b.location));
    Ok((findings, coverage))
}

/// One stream's findings, messages and payload bytes.
type StreamScan = (Vec<Finding>, u64, u64);

/// One stream: `None` if it no longer exists.
async fn scan_stream(
    detector: &Detector,
    js: &async_nats::jetstream::Context,
    name: &str,
) -> anyhow::Result<Option<StreamScan>> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    let Ok(mut stream) = js.get_stream(name).await else { return Ok(None) };
    let Ok(info) = stream.info().await else { return Ok(None) };
    let (total, last) = (info.state.messages, info.state.last_sequence);
    if total == 0 {
        return Ok(Some((Vec::new(), 0, 0)));
    }
    let consumer = match stream
        .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
    {
        Ok(c) => c,
        Err(_) if js.get_stream(name).await.is_err() => return Ok(None),
        Err(e) => anyhow::bail!("stream {name}: cannot read it: {e}"),
    };
    let mut messages = consumer.messages().await?;
    let (mut seen, mut bytes, mut findings) = (0u64, 0u64, Vec::new());
    loop {
        let next = tokio::time::timeout(STREAM_IDLE_LIMIT, messages.next()).await;
        let message = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(_)) | None) | Err(_) if js.get_stream(name).await.is_err() => return Ok(None),
            Ok(Some(Err(e))) => anyhow::bail!("stream {name}: reading failed after {seen} messages: {e}"),
            Ok(None) | Err(_) => anyhow::bail!("stream {name}: no message after {seen} of {total}"),
        };
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(last);
        seen += 1;
        bytes += message.payload.len() as u64;
        let located = |hit: Hit| Finding {
            location: format!("stream {name} seq {seq} (subject {})", message.subject),
            kind: hit.kind,
            redacted: hit.redacted,
        };
        findings.extend(detector.scan(message.subject.as_bytes()).into_iter().map(located));
        if let Some(headers) = &message.headers {
            for (header, values) in headers.iter() {
                for value in values {
                    let text = format!("{header}: {value}");
                    findings.extend(detector.scan(text.as_bytes()).into_iter().map(located));
                }
            }
        }
        findings.extend(detector.scan(&message.payload).into_iter().map(located));
        if seq >= last || seen >= total {
            break;
        }
    }
    Ok(Some((findings, seen, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ak_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn kinds(text: &str) -> Vec<Kind> {
        Detector::default().scan(text.as_bytes()).into_iter().map(|h| h.kind).collect()
    }

    #[test]
    fn access_keys_are_found_wherever_they_are_and_shown_by_prefix_only() {
        for text in [
            format!("GET /ak/{KEY}/v1/messages"),
            format!("{{\"access_key\":\"{KEY}\"}}"),
            format!("x-ccp-access-key: {KEY}\n"),
            KEY.to_owned(),
        ] {
            let hits = Detector::default().scan(text.as_bytes());
            assert_eq!(hits.len(), 1, "{text}");
            assert_eq!(hits[0].kind, Kind::AccessKey);
            assert_eq!(hits[0].redacted, "ak_AAECAw…");
            assert!(!hits[0].redacted.contains(&KEY[9..]));
        }
    }

    #[test]
    fn hashes_prefixes_and_look_alikes_are_not_flagged() {
        let hash = "3f".repeat(32);
        for text in [
            format!("key_hash {hash} key_prefix ak_AAECAw masked ak_AAECAw…"),
            format!("ak_{hash}"),
            // 43 characters but not a canonical encoding of 32 bytes (spare bits set).
            format!("{}B", &KEY[..45]),
            format!("break_{}", &KEY[3..]),
            format!("xak_{}", &KEY[3..]),
            format!("{KEY}x"),
            "hint ABSK…x9Q= and ABSKshort and AKIAEXAMPLE".to_owned(),
            "ccps_short ccpt_".to_owned(),
            "secret: 0123456789abcdef0123456789abcdef01234567".to_owned(),
        ] {
            assert_eq!(kinds(&text), vec![], "{text}");
        }
    }

    #[test]
    fn every_kind_is_found() {
        let token = &KEY[3..];
        let text = format!(
            "a ccps_{token} b ccpt_{token} c Bearer ABSKQmVkcm9ja0FQSUtleS10ZXN0LWtleQ== d AKIAIOSFODNN7EXAMPLE \
             e aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY f correct horse battery staple"
        );
        assert_eq!(
            kinds(&text),
            vec![
                Kind::SessionToken,
                Kind::ApiToken,
                Kind::BedrockApiKey,
                Kind::AwsAccessKeyId,
                Kind::AwsSecretKey,
                Kind::Literal
            ]
        );
        let shown: Vec<String> = Detector::default().scan(text.as_bytes()).into_iter().map(|h| h.redacted).collect();
        assert_eq!(
            shown,
            ["ccps_AAEC…", "ccpt_AAEC…", "ABSK…", "AKIA…", "wJal…", "<the tests' admin password>"].map(String::from)
        );
    }

    #[test]
    fn files_are_located_by_line() {
        let dir = std::env::temp_dir().join(crate::unique_name("scanfile"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("service.log");
        std::fs::write(&path, format!("line one\nline two\nauthenticated {KEY}\n")).unwrap();
        let found = scan_file(&Detector::default(), &path).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].location, format!("{}:3", path.display()));
        assert!(!found[0].to_string().contains(&KEY[9..]), "{}", found[0]);
        assert_eq!(log_files(std::slice::from_ref(&dir), None), vec![path.clone()]);
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert!(log_files(std::slice::from_ref(&dir), Some(later)).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
