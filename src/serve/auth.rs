//! Who may call the service: the CDS Hooks 2.0 JWT rules. In: the `Authorization: Bearer` token
//! of a request and the URL it was sent to. Out: the verified claims, or a refusal whose kind is
//! logged (never the token) and answered 401 with no detail.
//!
//! The rules: an asymmetric signature (ES256, ES384 or RS384; `none`, HMAC and everything else
//! refused before any key is looked at, so a public key can never serve as an HMAC secret); `kid`
//! required and found in the issuer's key set: the configured JWKS file, or a `jku` key set
//! fetched only from the issuer's allow-list; `iss` on the allow-list; `aud` equal to the endpoint
//! called; `exp` in the future (with a small leeway) and not too far ahead; `iat` and `jti`
//! present, and a `jti` seen before (within its lifetime) refused as a replay.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The algorithms CDS Hooks clients sign with.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::ES384, Algorithm::RS384];

/// A trusted issuer: its key set and the `jku` URLs it may point to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub iss: String,
    /// A JWKS file (relative to the configuration file).
    pub jwks_file: Option<PathBuf>,
    /// `jku` URLs the issuer may name in a token's header (fetched, cached for 5 minutes).
    #[serde(default)]
    pub jku: Vec<String>,
}

/// Why a token was refused: logged by kind, never answered in detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token is not a JWT")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("no kid in the header")]
    NoKid,
    #[error("issuer not trusted")]
    Issuer,
    #[error("jku not on the issuer's allow-list or not reachable")]
    Jku,
    #[error("no key with that kid")]
    UnknownKey,
    #[error("signature or claims invalid: {0}")]
    Invalid(String),
    #[error("jti missing")]
    NoJti,
    #[error("expiry too far ahead")]
    Lifetime,
    #[error("jti replayed")]
    Replay,
}

#[derive(Debug, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: Option<String>,
}

/// The `jti`s seen and still within their lifetime. Expired ones are pruned when the map has
/// doubled since the last pruning, so a request costs O(1) amortised, not a scan.
struct Replay {
    seen: HashMap<String, i64>,
    prune_at: usize,
}

struct Issuer {
    keys: Vec<Jwk>,
    jku: Vec<String>,
}

pub struct Authenticator {
    issuers: HashMap<String, Issuer>,
    leeway_s: u64,
    max_lifetime_s: i64,
    /// jti -> expiry (seconds since the epoch), pruned of expired entries as it grows.
    seen: Mutex<Replay>,
    jku_cache: tokio::sync::Mutex<HashMap<String, (Instant, Vec<Jwk>)>>,
    http: reqwest::Client,
}

fn unverified_payload(token: &str) -> Result<serde_json::Value, AuthError> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (_, payload, _, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
    let payload = payload.ok_or(AuthError::Malformed)?;
    if rest.is_some() {
        return Err(AuthError::Malformed);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

impl Authenticator {
    /// From the configured issuers; each JWKS file must read and parse (a typo must not leave
    /// an issuer silently without keys).
    pub fn new(
        issuers: &[IssuerConfig],
        base: &std::path::Path,
        leeway_s: u64,
        max_lifetime_s: i64,
        http: reqwest::Client,
    ) -> Result<Authenticator, String> {
        let mut out = HashMap::new();
        for i in issuers {
            let keys = match &i.jwks_file {
                Some(f) => {
                    let p = base.join(f);
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| format!("issuer {:?}: {}: {e}", i.iss, p.display()))?;
                    let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                        format!("issuer {:?}: {}: not a JWK set ({e})", i.iss, p.display())
                    })?;
                    set.keys
                }
                None => vec![],
            };
            if keys.is_empty() && i.jku.is_empty() {
                return Err(format!(
                    "issuer {:?}: no keys: give jwks_file or a jku allow-list",
                    i.iss
                ));
            }
            out.insert(
                i.iss.clone(),
                Issuer {
                    keys,
                    jku: i.jku.clone(),
                },
            );
        }
        Ok(Authenticator {
            issuers: out,
            leeway_s,
            max_lifetime_s,
            seen: Mutex::new(Replay {
                seen: HashMap::new(),
                prune_at: 1024,
            }),
            jku_cache: tokio::sync::Mutex::new(HashMap::new()),
            http,
        })
    }

    async fn jku_keys(&self, url: &str) -> Result<Vec<Jwk>, AuthError> {
        let mut cache = self.jku_cache.lock().await;
        if let Some((at, keys)) = cache.get(url)
            && at.elapsed() < Duration::from_secs(300)
        {
            return Ok(keys.clone());
        }
        let set: JwkSet = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|_| AuthError::Jku)?
            .json()
            .await
            .map_err(|_| AuthError::Jku)?;
        cache.insert(url.to_string(), (Instant::now(), set.keys.clone()));
        Ok(set.keys)
    }

    /// Verify a request's `Authorization` header value for the endpoint `aud`.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        aud: &str,
    ) -> Result<Claims, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        // `none` and unknown algorithms do not even parse as a header here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Algorithm)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::Algorithm);
        }
        let kid = header.kid.as_deref().ok_or(AuthError::NoKid)?;
        let iss = unverified_payload(token)?
            .get("iss")
            .and_then(|v| v.as_str())
            .map(String::from)
            .ok_or(AuthError::Issuer)?;
        let issuer = self.issuers.get(&iss).ok_or(AuthError::Issuer)?;
        let fetched;
        let keys: &[Jwk] = match header.jku.as_deref() {
            Some(u) if issuer.jku.iter().any(|a| a == u) => {
                fetched = self.jku_keys(u).await?;
                &fetched
            }
            Some(_) => return Err(AuthError::Jku),
            None => &issuer.keys,
        };
        let jwk = keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .ok_or(AuthError::UnknownKey)?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| AuthError::UnknownKey)?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway_s;
        v.set_audience(&[aud]);
        v.set_issuer(&[iss.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "iat"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| AuthError::Invalid(format!("{:?}", e.kind())))?;
        let c = data.claims;
        let jti = c
            .jti
            .clone()
            .filter(|j| !j.is_empty())
            .ok_or(AuthError::NoJti)?;
        let now = chrono::Utc::now().timestamp();
        if c.exp - now > self.max_lifetime_s {
            return Err(AuthError::Lifetime);
        }
        let mut r = self.seen.lock().expect("jti lock");
        if r.seen.len() >= r.prune_at {
            let cut = now - self.leeway_s as i64;
            r.seen.retain(|_, exp| *exp >= cut);
            r.prune_at = (2 * r.seen.len()).max(1024);
        }
        if r.seen.contains_key(&jti) {
            return Err(AuthError::Replay);
        }
        r.seen.insert(jti, c.exp);
        Ok(c)
    }
}
