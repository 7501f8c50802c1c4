//! The OpenID Connect relying party behind single sign-on: the provider's discovery document and
//! signing keys (fetched when first needed, keys again when an unknown `kid` appears), the
//! authorization URL with PKCE (S256), the code exchange, and the ID token's checks — signature
//! (RS256 or ES256 by the provider's published keys; `none` and shared-secret algorithms are
//! refused), issuer, audience, expiry and nonce. Every refusal has a [`Refusal`] cause that the
//! audit record counts and a message the person can act on.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ccp_runtime::config::SsoSettings;
use ccp_schemas::secrets::random_token;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

/// Why a single sign-on was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The `state` is unknown, expired, already used, or belongs to another browser.
    WrongState,
    /// The provider answered the authorization request with an error (e.g. `access_denied`).
    ProviderError(String),
    /// The provider refused the code (used already, expired, or not for this client).
    CodeRefused(String),
    /// The ID token is not a well-formed signed JWT.
    Malformed(String),
    /// The ID token's signature does not verify with the provider's keys.
    BadSignature,
    /// The ID token was issued by someone else.
    WrongIssuer,
    /// The ID token is for another client.
    WrongAudience,
    /// The ID token has expired (or is not valid yet).
    Expired,
    /// The ID token's nonce is not the one this sign-in sent.
    WrongNonce,
    /// The ID token lacks the username claim.
    NoUsername,
    /// The role mapping grants this person no role.
    NoRole(String),
    /// The ID token lacks the role claim altogether (not released by the provider).
    NoRoleClaim(String),
    /// An admin of that username exists and is not this person's (not linked to them).
    UsernameTaken(String),
    /// The admin is disabled.
    Disabled(String),
}

impl Refusal {
    /// The cause as counted in the audit record.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongState => "wrong_state",
            Self::ProviderError(_) => "provider_error",
            Self::CodeRefused(_) => "code_refused",
            Self::Malformed(_) => "malformed_token",
            Self::BadSignature => "bad_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired_token",
            Self::WrongNonce => "wrong_nonce",
            Self::NoUsername => "no_username",
            Self::NoRole(_) => "no_role",
            Self::NoRoleClaim(_) => "no_role_claim",
            Self::UsernameTaken(_) => "username_taken",
            Self::Disabled(_) => "disabled",
        }
    }

    /// What the person is told.
    pub fn message(&self) -> String {
        match self {
            Self::WrongState => {
                "this sign-in is unknown, expired, already used or was started in another browser (state); \
                 start again"
                    .into()
            }
            Self::ProviderError(e) => format!("the identity provider did not sign you in: {e}"),
            Self::CodeRefused(e) => {
                format!(
                    "the identity provider refused the sign-in code ({e}); it may have been used already — start again"
                )
            }
            Self::Malformed(e) => format!("the identity provider's ID token is not usable: {e}"),
            Self::BadSignature => {
                "the ID token's signature does not match the identity provider's published keys".into()
            }
            Self::WrongIssuer => "the ID token was issued by another identity provider than the configured one".into(),
            Self::WrongAudience => "the ID token was issued for another application (audience)".into(),
            Self::Expired => "the ID token has expired (or the clocks disagree); sign in again".into(),
            Self::WrongNonce => "the ID token does not belong to this sign-in (nonce)".into(),
            Self::NoUsername => "the ID token has no username claim (admin.sso.username_claim)".into(),
            Self::NoRole(who) => format!(
                "{who} is not granted a role here: ask an administrator to add you to a group that \
                 admin.sso.roles maps to viewer, operator or admin"
            ),
            Self::Disabled(who) => format!("the admin {who} is disabled; ask another admin to enable it"),
            Self::NoRoleClaim(claim) => format!(
                "the ID token carries no `{claim}` claim, so no role can be decided: the identity provider must \
                 release it (a scope, a claim mapping; with many groups some providers send a reference instead)"
            ),
            Self::UsernameTaken(who) => format!(
                "an admin named {who} already exists and is not linked to this sign-in: another admin can remove \
                 or rename it, or set admin.sso.link_by_username to link it (see README)"
            ),
        }
    }
}

/// Why the provider could not be used at all (not the person's fault: 503).
#[derive(Debug, thiserror::Error)]
#[error("the identity provider at {issuer}: {cause}")]
pub struct ProviderUnavailable {
    issuer: String,
    cause: String,
}

/// The parts of the discovery document used here.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// One published signing key.
#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

struct Provider {
    discovery: Discovery,
    keys: Vec<Jwk>,
    keys_fetched: Instant,
}

/// What a new sign-in sends to the provider and must remember until the callback.
pub struct Authorization {
    /// Where to send the browser.
    pub url: String,
    /// The random `state` (the callback must bring it back).
    pub state: String,
    /// The random `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier the code exchange proves possession of.
    pub verifier: String,
}

/// The person the provider vouched for.
#[derive(Debug, Clone)]
pub struct Person {
    /// The provider's issuer.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// The username claim's value.
    pub username: String,
    /// The role claim's values.
    pub role_values: Vec<String>,
    /// Whether the ID token had the role claim at all.
    pub role_claim_present: bool,
    /// `email_verified`, when the token says.
    pub email_verified: Option<bool>,
}

/// The relying party.
pub struct Oidc {
    settings: SsoSettings,
    http: reqwest::Client,
    provider: tokio::sync::RwLock<Option<Provider>>,
}

/// Shortest wait between two fetches of the provider's keys for an unknown `kid`.
const KEY_REFETCH: Duration = Duration::from_secs(30);

impl Oidc {
    /// A relying party for `settings` (nothing is fetched until the first sign-in).
    pub fn new(settings: SsoSettings, egress: &ccp_runtime::egress::Egress) -> anyhow::Result<Self> {
        let http = egress
            .reqwest_builder()?
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("single sign-on: cannot build its HTTP client: {e}"))?;
        Ok(Self { settings, http, provider: tokio::sync::RwLock::new(None) })
    }

    /// The settings.
    pub fn settings(&self) -> &SsoSettings {
        &self.settings
    }

    fn unavailable(&self, cause: impl std::fmt::Display) -> ProviderUnavailable {
        ProviderUnavailable { issuer: self.settings.issuer.clone(), cause: cause.to_string() }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, ProviderUnavailable> {
        let response = self.http.get(url).send().await.map_err(|e| self.unavailable(format!("{what} {url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.unavailable(format!("{what} {url} answered HTTP {status}")));
        }
        response.json::<T>().await.map_err(|e| self.unavailable(format!("{what} {url} is not usable: {e}")))
    }

    /// The discovery document and keys, fetched once; keys again when `refresh` and not fetched
    /// in the last [`KEY_REFETCH`].
    async fn provider(&self, refresh: bool) -> Result<(Discovery, Vec<Jwk>), ProviderUnavailable> {
        {
            let current = self.provider.read().await;
            if let Some(p) = current.as_ref() {
                if !refresh || p.keys_fetched.elapsed() < KEY_REFETCH {
                    return Ok((p.discovery.clone(), p.keys.clone()));
                }
            }
        }
        let mut slot = self.provider.write().await;
        let discovery = match slot.as_ref() {
            Some(p) => p.discovery.clone(),
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
                let d: Discovery = self.get_json(&url, "discovery document").await?;
                if d.issuer != self.settings.issuer {
                    return Err(self.unavailable(format!(
                        "its discovery document names the issuer `{}`, not the configured admin.sso.issuer",
                        d.issuer.chars().take(200).collect::<String>()
                    )));
                }
                d
            }
        };
        let set: JwkSet = self.get_json(&discovery.jwks_uri, "signing keys").await?;
        *slot = Some(Provider { discovery: discovery.clone(), keys: set.keys.clone(), keys_fetched: Instant::now() });
        Ok((discovery, set.keys))
    }

    /// A new authorization request: fresh state, nonce and PKCE verifier.
    pub async fn authorize(&self) -> Result<Authorization, ProviderUnavailable> {
        let (discovery, _) = self.provider(false).await?;
        let state = random_url_token().map_err(|e| self.unavailable(e))?;
        let nonce = random_url_token().map_err(|e| self.unavailable(e))?;
        let verifier = random_url_token().map_err(|e| self.unavailable(e))?;
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let mut scopes = vec!["openid".to_owned()];
        scopes.extend(self.settings.scopes.iter().filter(|s| s.as_str() != "openid").cloned());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_url)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let separator = if discovery.authorization_endpoint.contains('?') { '&' } else { '?' };
        Ok(Authorization {
            url: format!("{}{separator}{query}", discovery.authorization_endpoint),
            state,
            nonce,
            verifier,
        })
    }

    /// Exchanges `code` and checks the ID token: the person it vouches for.
    pub async fn complete(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Result<Person, Refusal>, ProviderUnavailable> {
        let (discovery, _) = self.provider(false).await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.settings.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(&discovery.token_endpoint);
        if self.settings.client_secret.is_empty() {
            form.push(("client_id", self.settings.client_id.as_str()));
        } else {
            request = request.basic_auth(&self.settings.client_id, Some(self.settings.client_secret.expose()));
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| self.unavailable(format!("token endpoint {}: {e}", discovery.token_endpoint)))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            if status.is_client_error() {
                let error = body["error"].as_str().unwrap_or("refused");
                let detail = body["error_description"].as_str().unwrap_or("");
                let text: String = format!("{error}: {detail}").chars().take(200).collect();
                return Ok(Err(Refusal::CodeRefused(text.trim_end_matches(": ").to_owned())));
            }
            return Err(self.unavailable(format!("token endpoint answered HTTP {status}")));
        }
        let Some(id_token) = body["id_token"].as_str() else {
            return Ok(Err(Refusal::Malformed("the token answer has no id_token (is `openid` a scope?)".into())));
        };
        let claims = match self.verify(id_token).await? {
            Ok(claims) => claims,
            Err(refusal) => return Ok(Err(refusal)),
        };
        Ok(self.check_claims(&claims, nonce, chrono::Utc::now().timestamp()))
    }

    /// The claims of a genuine ID token (signature by one of the provider's keys).
    async fn verify(&self, token: &str) -> Result<Result<Map<String, Value>, Refusal>, ProviderUnavailable> {
        let parts = match split(token) {
            Ok(parts) => parts,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mut keys = self.provider(false).await?.1;
        if pick_key(&keys, &parts.header).is_none() {
            // Keys rotate: fetch them again once before refusing.
            keys = self.provider(true).await?.1;
        }
        Ok(verify_signature(&parts, &keys).map(|()| parts.claims))
    }

    /// Issuer, audience, times, nonce, username and role claims.
    fn check_claims(&self, claims: &Map<String, Value>, nonce: &str, now: i64) -> Result<Person, Refusal> {
        check_claims(&self.settings, claims, nonce, now)
    }
}

/// The checks of an ID token's claims, at `now` (seconds since the epoch).
fn check_claims(settings: &SsoSettings, claims: &Map<String, Value>, nonce: &str, now: i64) -> Result<Person, Refusal> {
    if claims.get("iss").and_then(Value::as_str) != Some(settings.issuer.as_str()) {
        return Err(Refusal::WrongIssuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&settings.client_id.as_str()) {
        return Err(Refusal::WrongAudience);
    }
    // Several audiences: the token must say it was issued to this client (`azp`).
    if audiences.len() > 1 && claims.get("azp").and_then(Value::as_str) != Some(settings.client_id.as_str()) {
        return Err(Refusal::WrongAudience);
    }
    let skew = i64::try_from(settings.clock_skew_secs).unwrap_or(60);
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| Refusal::Malformed("no `exp` claim".into()))?;
    if exp + skew <= now {
        return Err(Refusal::Expired);
    }
    if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat - skew > now) {
        return Err(Refusal::Expired);
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(Refusal::WrongNonce);
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Refusal::Malformed("no `sub` claim".into()))?;
    let username = claims
        .get(&settings.username_claim)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.chars().count() <= 64 && !u.chars().any(|c| c.is_whitespace() || c.is_control()))
        .ok_or(Refusal::NoUsername)?;
    let role_claim = claims.get(&settings.role_claim);
    let role_values: Vec<String> = match role_claim {
        Some(Value::String(v)) => vec![v.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    Ok(Person {
        issuer: settings.issuer.clone(),
        subject: subject.to_owned(),
        username: username.to_owned(),
        role_values,
        role_claim_present: role_claim.is_some_and(|v| v.is_string() || v.is_array()),
        email_verified: claims.get("email_verified").and_then(Value::as_bool),
    })
}

struct Parts {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signed: Vec<u8>,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts, Refusal> {
    let malformed = |why: &str| Refusal::Malformed(why.to_owned());
    let mut pieces = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (pieces.next(), pieces.next(), pieces.next(), pieces.next()) else {
        return Err(malformed("not a signed JWT (three dot-separated parts)"));
    };
    let decode =
        |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| malformed("not base64url"));
    let json = |bytes: Vec<u8>| serde_json::from_slice::<Map<String, Value>>(&bytes).map_err(|_| malformed("not JSON"));
    Ok(Parts {
        header: json(decode(h)?)?,
        claims: json(decode(c)?)?,
        signed: format!("{h}.{c}").into_bytes(),
        signature: decode(s)?,
    })
}

fn pick_key<'k>(keys: &'k [Jwk], header: &Map<String, Value>) -> Option<&'k Jwk> {
    let alg = header.get("alg").and_then(Value::as_str)?;
    let kty = match alg {
        "RS256" => "RSA",
        "ES256" => "EC",
        _ => return None,
    };
    let usable = |k: &&Jwk| k.kty == kty && k.use_.as_deref().is_none_or(|u| u == "sig");
    match header.get("kid").and_then(Value::as_str) {
        Some(kid) => keys.iter().filter(usable).find(|k| k.kid.as_deref() == Some(kid)),
        None => {
            let mut candidates = keys.iter().filter(usable);
            let first = candidates.next();
            candidates.next().is_none().then_some(first).flatten()
        }
    }
}

fn verify_signature(parts: &Parts, keys: &[Jwk]) -> Result<(), Refusal> {
    let alg = parts.header.get("alg").and_then(Value::as_str).unwrap_or("");
    if !matches!(alg, "RS256" | "ES256") {
        return Err(Refusal::Malformed(format!(
            "signed with `{}`; only RS256 and ES256 are accepted",
            alg.chars().take(16).collect::<String>()
        )));
    }
    let key = pick_key(keys, &parts.header).ok_or(Refusal::BadSignature)?;
    let b64 = |v: &Option<String>| v.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    let verified = match alg {
        "RS256" => {
            let (Some(n), Some(e)) = (b64(&key.n), b64(&key.e)) else { return Err(Refusal::BadSignature) };
            ring::signature::RsaPublicKeyComponents { n, e }
                .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &parts.signed, &parts.signature)
                .is_ok()
        }
        _ => {
            let (Some(x), Some(y)) = (b64(&key.x), b64(&key.y)) else { return Err(Refusal::BadSignature) };
            if key.crv.as_deref() != Some("P-256") || x.len() != 32 || y.len() != 32 {
                return Err(Refusal::BadSignature);
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(&parts.signed, &parts.signature)
                .is_ok()
        }
    };
    if verified {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

/// 32 random bytes, base64url ([`random_token`] without a prefix).
pub fn random_url_token() -> Result<String, String> {
    random_token("").map(|t| t.expose().to_owned()).map_err(|e| format!("no randomness available: {e}"))
}

/// The PKCE S256 challenge of a verifier.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    use super::*;

    struct Signer {
        key: EcdsaKeyPair,
        kid: &'static str,
    }

    impl Signer {
        fn new(kid: &'static str) -> Self {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
            Self { key, kid }
        }

        fn jwk(&self) -> Jwk {
            let point = self.key.public_key().as_ref();
            Jwk {
                kty: "EC".into(),
                kid: Some(self.kid.into()),
                use_: Some("sig".into()),
                n: None,
                e: None,
                crv: Some("P-256".into()),
                x: Some(URL_SAFE_NO_PAD.encode(&point[1..33])),
                y: Some(URL_SAFE_NO_PAD.encode(&point[33..65])),
            }
        }

        fn sign(&self, claims: &Value) -> String {
            let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": self.kid}).to_string());
            let body = URL_SAFE_NO_PAD.encode(claims.to_string());
            let signed = format!("{header}.{body}");
            let sig = self.key.sign(&ring::rand::SystemRandom::new(), signed.as_bytes()).unwrap();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }

    fn settings() -> SsoSettings {
        SsoSettings {
            issuer: "https://idp.example".into(),
            client_id: "ccp".into(),
            roles: ccp_runtime::config::SsoRoleMapping { viewer: vec!["finance".into()], ..Default::default() },
            ..SsoSettings::default()
        }
    }

    fn claims(now: i64) -> Value {
        json!({"iss": "https://idp.example", "aud": "ccp", "sub": "u-1", "exp": now + 300, "iat": now,
               "nonce": "n-1", "email": "dana@example.com", "groups": ["finance"]})
    }

    fn check(signer: &Signer, keys: &[Jwk], claims: &Value) -> Result<Person, Refusal> {
        let parts = split(&signer.sign(claims))?;
        verify_signature(&parts, keys)?;
        check_claims(&settings(), &parts.claims, "n-1", 1_000_000)
    }

    #[test]
    fn a_genuine_token_names_the_person_and_their_groups() {
        let signer = Signer::new("k1");
        let person = check(&signer, &[signer.jwk()], &claims(1_000_000)).unwrap();
        assert_eq!((person.subject.as_str(), person.username.as_str()), ("u-1", "dana@example.com"));
        assert_eq!(person.role_values, vec!["finance".to_owned()]);
    }

    #[test]
    fn each_forgery_is_refused_with_its_own_cause() {
        let signer = Signer::new("k1");
        let other = Signer::new("k1");
        let keys = [signer.jwk()];
        let mut c = claims(1_000_000);
        assert_eq!(check(&other, &keys, &c).unwrap_err(), Refusal::BadSignature);
        c["aud"] = json!("someone-else");
        assert_eq!(check(&signer, &keys, &c).unwrap_err(), Refusal::WrongAudience);
        c["aud"] = json!(["ccp", "someone-else"]);
        assert_eq!(check(&signer, &keys, &c).unwrap_err(), Refusal::WrongAudience, "several audiences, no azp");
        c["azp"] = json!("someone-else");
        assert_eq!(check(&signer, &keys, &c).unwrap_err(), Refusal::WrongAudience);
        c["azp"] = json!("ccp");
        assert!(check(&signer, &keys, &c).is_ok());
        let mut c = claims(1_000_000);
        c["exp"] = json!(1_000_000 - 61);
        assert_eq!(check(&signer, &keys, &c).unwrap_err(), Refusal::Expired);
        let mut c = claims(1_000_000);
        c["iss"] = json!("https://evil.example");
        assert_eq!(check(&signer, &keys, &c).unwrap_err(), Refusal::WrongIssuer);
        let mut c = claims(1_000_000);
        c["nonce"] = json!("n-2");
        assert_eq!(check(&signer, &keys, &c).unwrap_err(), Refusal::WrongNonce);
        // A token whose header says "none" is never accepted, whatever it carries.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims(1_000_000).to_string());
        let parts = split(&format!("{header}.{body}.")).unwrap();
        assert!(matches!(verify_signature(&parts, &keys), Err(Refusal::Malformed(_))));
        assert!(matches!(split("a.b"), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn the_pkce_challenge_is_the_rfc_7636_example() {
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
