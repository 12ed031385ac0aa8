//! Authentication: the built-in authority's keys, bearer-token verification into a
//! [`Caller`], outside issuers, the limiter on failed client authentication, and the
//! aggregation of authentication failures into the `_system` log.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use warden_authority::{Claims, JwtError, KeySet, SigningKey, Validation, verify_jwt};
use warden_core::audit::{Actor, ActorKind, AuditDraft, Outcome, Target};
use warden_core::names::{ClientId, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::scopes::{ScopeSet, WarrantClaims};
use warden_core::time::Timestamp;
use warden_store::Store;
use warden_store::tenants::SigningKeyRecord;

use crate::AppState;
use crate::config::{Config, ExternalIssuer};
use crate::error::ApiError;
use crate::request_id::RequestId;

/// The purpose under which token signing keys are stored.
pub const TOKEN_KEY_PURPOSE: &str = "token";

/// A fresh token signing key, ready to store.
pub fn new_token_key() -> Result<SigningKeyRecord, crate::ServerError> {
    let key = SigningKey::generate().map_err(|e| crate::ServerError::Keys(e.to_string()))?;
    Ok(SigningKeyRecord {
        kid: key.kid().to_owned(),
        purpose: TOKEN_KEY_PURPOSE.into(),
        secret: key.secret_bytes().to_vec(),
        created_at: Timestamp::now(),
        retired_at: None,
    })
}

/// Who is calling, established from a verified token. Every tenant-scoped query takes its
/// tenant from here; a request never names a tenant itself.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's tenant.
    pub tenant: TenantId,
    /// `client:<name>` for built-in clients, `external:<sub>` for outside issuers.
    pub actor: Actor,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// The warrant claims as the token carries them.
    pub warrant: WarrantClaims,
    /// The token's `jti`.
    pub token_id: String,
}

/// What the request came with, for audit entries.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The request's id.
    pub request_id: String,
    /// The peer, or the client behind trusted proxies.
    pub source_ip: IpAddr,
}

/// An outside issuer with its current keys.
#[derive(Debug)]
pub struct IssuerState {
    /// Its configuration.
    pub config: ExternalIssuer,
    /// Its keys, refreshed from its JWKS.
    pub keys: RwLock<Option<Arc<KeySet>>>,
    /// The client that fetches its `jwks_url` (trusting its `ca_file`).
    http: Option<reqwest::Client>,
    /// When a token naming a key we do not hold last made us fetch the JWKS early.
    early_fetch: Mutex<Option<Instant>>,
}

/// The least time between two early fetches of one issuer's JWKS: an outside issuer that
/// rotated its key is followed at once, a stream of tokens with made-up `kid`s cannot make
/// us hammer it.
const EARLY_FETCH_EVERY: Duration = Duration::from_secs(30);

/// The token authority's runtime state.
#[derive(Debug)]
pub struct Authority {
    signing: RwLock<Arc<SigningKey>>,
    keys: RwLock<Arc<KeySet>>,
    /// Outside issuers.
    pub issuers: Vec<IssuerState>,
    failed_client_auth: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    auth_failures: Mutex<HashMap<(IpAddr, &'static str), u64>>,
    /// Our own tokens whose signature and claims this node has verified, by their exact
    /// text: every request of a worker or client carries the same token for its whole
    /// life, and an EdDSA verification was 5 % of the server's CPU samples in the
    /// latency benchmark (PostgreSQL). A hit still checks expiry; whether the client
    /// still exists and is not revoked is checked on every request regardless
    /// ([`Caller`]). Emptied when our key set changes, and when it reaches
    /// [`VERIFIED_TOKENS_MAX`]. Outside issuers' tokens are always verified: their keys
    /// can change with any fetch.
    verified: Mutex<HashMap<Box<str>, Claims>>,
}

/// How many verified tokens [`Authority`] remembers before it starts afresh.
const VERIFIED_TOKENS_MAX: usize = 10_000;

/// Seconds of clock skew allowed on a token's `exp` and `nbf`.
const LEEWAY_SECS: i64 = 30;

/// Why authentication failed, as a low-cardinality label.
fn failure_reason(e: &JwtError) -> &'static str {
    e.code()
}

impl Authority {
    /// Load the signing keys from the store, creating the first one on first start.
    pub async fn load(store: &Store, config: &Config) -> Result<Self, crate::ServerError> {
        let mut records = store.signing_keys(TOKEN_KEY_PURPOSE).await?;
        if !records.iter().any(|r| r.retired_at.is_none()) {
            store.insert_signing_key_if_none(&new_token_key()?).await?;
            records = store.signing_keys(TOKEN_KEY_PURPOSE).await?;
        }
        let (signing, keys) = Self::keys_from_records(&records)?;
        let mut issuers = Vec::new();
        for cfg in &config.auth.issuers {
            let state = IssuerState {
                config: cfg.clone(),
                keys: RwLock::new(None),
                http: match &cfg.jwks_url {
                    Some(_) => Some(jwks_client(cfg)?),
                    None => None,
                },
                early_fetch: Mutex::new(None),
            };
            if let Some(path) = &cfg.jwks_file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    crate::ServerError::Keys(format!(
                        "issuer {}: {}: {e}",
                        cfg.issuer,
                        path.display()
                    ))
                })?;
                let set = KeySet::from_jwks_json(&text)
                    .map_err(|e| crate::ServerError::Keys(format!("issuer {}: {e}", cfg.issuer)))?;
                *state.keys.write().expect("lock") = Some(Arc::new(set));
            }
            issuers.push(state);
        }
        Ok(Self {
            signing: RwLock::new(Arc::new(signing)),
            keys: RwLock::new(Arc::new(keys)),
            issuers,
            failed_client_auth: Mutex::new(HashMap::new()),
            auth_failures: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Whether any outside issuer's keys come from a URL (and need refreshing).
    pub fn has_issuer_urls(&self) -> bool {
        self.issuers.iter().any(|i| i.http.is_some())
    }

    /// Take up a key rotated in the store (by `warden keys rotate`, maybe on another node):
    /// sign with the active key, verify with all. Returns whether anything changed.
    pub async fn reload_keys(&self, store: &Store) -> Result<bool, crate::ServerError> {
        let records = store.signing_keys(TOKEN_KEY_PURPOSE).await?;
        let (signing, keys) = Self::keys_from_records(&records)?;
        if signing.kid() == self.signing_key().kid() && keys == *self.key_set() {
            return Ok(false);
        }
        *self.keys.write().expect("lock") = Arc::new(keys);
        *self.signing.write().expect("lock") = Arc::new(signing);
        self.verified.lock().expect("lock").clear();
        Ok(true)
    }

    fn keys_from_records(
        records: &[SigningKeyRecord],
    ) -> Result<(SigningKey, KeySet), crate::ServerError> {
        let mut verifying = Vec::new();
        let mut active = None;
        for r in records {
            let bytes: [u8; 32] = r.secret.as_slice().try_into().map_err(|_| {
                crate::ServerError::Keys(format!("signing key {} is not 32 bytes", r.kid))
            })?;
            let key = SigningKey::from_secret_bytes(Some(r.kid.clone()), &bytes);
            verifying.push(key.verifying_key());
            if r.retired_at.is_none() {
                active = Some(key);
            }
        }
        let signing =
            active.ok_or_else(|| crate::ServerError::Keys("no active token signing key".into()))?;
        let set = KeySet::new(verifying).map_err(|e| crate::ServerError::Keys(e.to_string()))?;
        Ok((signing, set))
    }

    /// The key tokens are signed with now.
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.signing.read().expect("lock").clone()
    }

    /// Every key a token of ours may be signed with (current and retired).
    pub fn key_set(&self) -> Arc<KeySet> {
        self.keys.read().expect("lock").clone()
    }

    /// Fetch the JWKS of URL-configured issuers (at start and every 5 minutes).
    pub async fn refresh_issuers(&self) {
        for issuer in &self.issuers {
            issuer.fetch_keys().await;
        }
    }

    /// Verify a bearer token like [`Authority::verify`]; when an outside issuer's token
    /// names a key we do not hold, fetch that issuer's JWKS once (at most every
    /// [`EARLY_FETCH_EVERY`]) and try again: the issuer may have rotated its key.
    pub async fn verify_fetching(
        &self,
        token: &str,
        config: &Config,
    ) -> Result<(Claims, bool), JwtError> {
        match self.verify(token, config) {
            Err(JwtError::UnknownKeyId) => {
                let iss = unverified_issuer(token);
                let Some(issuer) = self
                    .issuers
                    .iter()
                    .find(|i| Some(i.config.issuer.as_str()) == iss.as_deref())
                else {
                    return Err(JwtError::UnknownKeyId);
                };
                if !issuer.may_fetch_early() {
                    return Err(JwtError::UnknownKeyId);
                }
                issuer.fetch_keys().await;
                self.verify(token, config)
            }
            other => other,
        }
    }

    /// Record a failed client authentication from `ip` (the limiter counts the last minute).
    pub fn note_failed_client_auth(&self, ip: IpAddr) {
        let mut map = self.failed_client_auth.lock().expect("lock");
        let now = Instant::now();
        let q = map.entry(ip).or_default();
        q.push_back(now);
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            q.pop_front();
        }
    }

    /// Seconds `ip` must wait, if it failed client authentication too often in the last minute.
    pub fn client_auth_retry_after(&self, ip: IpAddr, limit: u32) -> Option<u64> {
        let mut map = self.failed_client_auth.lock().expect("lock");
        let now = Instant::now();
        let q = map.get_mut(&ip)?;
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            q.pop_front();
        }
        if q.len() >= limit as usize {
            let oldest = *q.front().expect("non-empty");
            Some(
                60u64
                    .saturating_sub(now.duration_since(oldest).as_secs())
                    .max(1),
            )
        } else {
            if q.is_empty() {
                map.remove(&ip);
            }
            None
        }
    }

    /// Forget addresses whose failures are all older than the window, so addresses that
    /// fail once and never return do not accumulate (called once a second).
    pub fn prune_failed_client_auth(&self) {
        let now = Instant::now();
        self.failed_client_auth
            .lock()
            .expect("lock")
            .retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) <= Duration::from_secs(60))
            });
    }

    /// Count an authentication failure for the `_system` log (flushed once a second).
    pub fn note_auth_failure(&self, ip: IpAddr, reason: &'static str) {
        *self
            .auth_failures
            .lock()
            .expect("lock")
            .entry((ip, reason))
            .or_default() += 1;
    }

    /// Write the failures counted since the last flush to the `_system` log: one entry per
    /// address and reason per second, with the count.
    pub async fn flush_auth_failures(
        &self,
        store: &Store,
    ) -> Result<usize, warden_store::StoreError> {
        let batch: Vec<((IpAddr, &'static str), u64)> =
            std::mem::take(&mut *self.auth_failures.lock().expect("lock"))
                .into_iter()
                .collect();
        let n = batch.len();
        for ((ip, reason), count) in batch {
            store
                .append_audit(AuditDraft {
                    tenant: TenantId::system(),
                    actor: Actor {
                        kind: ActorKind::System,
                        name: "authn".into(),
                    },
                    action: "auth.failure".into(),
                    target: Some(Target::new("address", ip.to_string())),
                    outcome: Outcome::Rejected,
                    reason_code: Some(ReasonCode::Unauthenticated),
                    operator_reason: None,
                    operator_ticket: None,
                    scope: None,
                    source_ip: Some(ip.to_string()),
                    request_id: None,
                    token_id: None,
                    metadata: serde_json::json!({"reason": reason, "count": count}),
                })
                .await?;
        }
        Ok(n)
    }

    /// Verify a bearer token: ours (EdDSA, our keys) or an outside issuer's.
    pub fn verify(&self, token: &str, config: &Config) -> Result<(Claims, bool), JwtError> {
        let now = Timestamp::now().as_micros() / 1_000_000;
        // Peek at the unverified `iss` only to choose the key set; the signature decides.
        let iss = unverified_issuer(token);
        if let Some(issuer) = self
            .issuers
            .iter()
            .find(|i| Some(i.config.issuer.as_str()) == iss.as_deref())
        {
            let keys = issuer
                .keys
                .read()
                .expect("lock")
                .clone()
                .ok_or(JwtError::UnknownKeyId)?;
            let v = Validation {
                issuer: issuer.config.issuer.clone(),
                audience: issuer.config.audience.clone(),
                now_unix: now,
                leeway_secs: LEEWAY_SECS,
            };
            let map = verify_jwt(token, &keys, &v)?;
            return Ok((Claims::from_map(map, &issuer.config.tenant_claim)?, true));
        }
        if let Some(claims) = self.verified.lock().expect("lock").get(token)
            && claims.exp > now.saturating_sub(LEEWAY_SECS)
        {
            return Ok((claims.clone(), false));
        }
        let v = Validation {
            issuer: config.public_url.clone(),
            audience: config.auth.audience.clone(),
            now_unix: now,
            leeway_secs: LEEWAY_SECS,
        };
        let map = verify_jwt(token, &self.key_set(), &v)?;
        let claims = Claims::from_map(map, "tenant")?;
        let mut verified = self.verified.lock().expect("lock");
        if verified.len() >= VERIFIED_TOKENS_MAX {
            verified.clear();
        }
        verified.insert(token.into(), claims.clone());
        Ok((claims, false))
    }
}

impl IssuerState {
    /// Fetch this issuer's JWKS if it has a URL; on failure keep the keys we have.
    async fn fetch_keys(&self) {
        let (Some(url), Some(http)) = (&self.config.jwks_url, &self.http) else {
            return;
        };
        let fetched = async {
            let text = http
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            Ok::<_, reqwest::Error>(text)
        }
        .await;
        match fetched
            .map_err(|e| e.to_string())
            .and_then(|t| KeySet::from_jwks_json(&t).map_err(|e| e.to_string()))
        {
            Ok(set) => *self.keys.write().expect("lock") = Some(Arc::new(set)),
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "could not refresh issuer keys; keeping the previous ones")
            }
        }
    }

    /// Whether an early fetch is allowed now (a URL issuer, none in the last
    /// [`EARLY_FETCH_EVERY`]); if so, it is counted as done.
    fn may_fetch_early(&self) -> bool {
        if self.http.is_none() {
            return false;
        }
        let mut last = self.early_fetch.lock().expect("lock");
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < EARLY_FETCH_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

/// The peer address, or the client behind configured trusted proxies.
pub fn source_ip(parts: &Parts, trusted: &[IpAddr]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if !trusted.contains(&peer) {
        return peer;
    }
    // Walk X-Forwarded-For from the right: the first address that is not a trusted proxy.
    let hops: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        Ok(Self {
            request_id,
            source_ip: source_ip(parts, &state.config.http.trusted_proxies),
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = source_ip(parts, &state.config.http.trusted_proxies);
        let fail = |reason: &'static str, detail: &str| {
            state.metrics.count_auth_failure(reason);
            state.authority.note_auth_failure(ip, reason);
            ApiError::unauthenticated(detail.to_owned())
        };
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(fail("missing_token", "a bearer token is required"));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                fail(
                    "malformed_header",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        let (claims, external) = state
            .authority
            .verify_fetching(token, &state.config)
            .await
            .map_err(|e| fail(failure_reason(&e), "the token is not valid"))?;
        let scopes = ScopeSet::parse(&claims.scope)
            .map_err(|_| fail("unknown_scope", "the token is not valid"))?;
        let (tenant, actor) = if external {
            let tenant = TenantId::parse(&claims.tenant)
                .map_err(|_| fail("invalid_tenant", "the token is not valid"))?;
            state
                .ensure_tenant_cached(&tenant)
                .await
                .map_err(ApiError::from)?;
            (
                tenant,
                Actor {
                    kind: ActorKind::External,
                    name: claims.sub.clone(),
                },
            )
        } else {
            let tenant = TenantId::parse_including_reserved(&claims.tenant)
                .map_err(|_| fail("invalid_tenant", "the token is not valid"))?;
            // Revocation takes effect at once: the client must still exist, be active and
            // belong to the token's tenant.
            let client_id = ClientId::parse(&claims.sub)
                .map_err(|_| fail("invalid_subject", "the token is not valid"))?;
            let client = state
                .store
                .get_client(client_id)
                .await
                .map_err(ApiError::from)?;
            match client {
                Some(c) if c.revoked_at.is_none() && c.tenant == tenant => {
                    (tenant, Actor::client(c.name.as_str()))
                }
                Some(c) if c.revoked_at.is_some() => {
                    return Err(fail(
                        "client_revoked",
                        "the token's client has been revoked",
                    ));
                }
                _ => return Err(fail("unknown_client", "the token is not valid")),
            }
        };
        Ok(Caller {
            tenant,
            actor,
            scopes,
            warrant: claims.warrant,
            token_id: claims.jti,
        })
    }
}

/// The HTTP client for one issuer's `jwks_url`: TLS through rustls, trusting the system's
/// roots and the certificates of the issuer's `ca_file`.
fn jwks_client(cfg: &ExternalIssuer) -> Result<reqwest::Client, crate::ServerError> {
    let fail = |e: String| crate::ServerError::Keys(format!("issuer {}: {e}", cfg.issuer));
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5));
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(fail(format!(
                "{}: no PEM certificate in it",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use warden_authority::sign_jwt;
    use warden_store::testing::TestDb;

    use super::*;

    fn token(key: &SigningKey, config: &Config, exp: i64) -> String {
        let now = Timestamp::now().as_micros() / 1_000_000;
        sign_jwt(
            key,
            &serde_json::json!({
                "iss": config.public_url, "sub": "c1", "aud": config.auth.audience,
                "exp": exp, "iat": now, "jti": "j1", "tenant": "acme", "scope": "orch:read",
            }),
        )
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_expired_or_when_its_key_is_gone() {
        let db = TestDb::sqlite();
        let store = db.open().await;
        let config = Config::default();
        let authority = Authority::load(&store, &config).await.unwrap();
        let now = Timestamp::now().as_micros() / 1_000_000;
        let key = authority.signing_key();

        // Verified once, then answered from memory with the same claims.
        let good = token(&key, &config, now + 600);
        let (first, external) = authority.verify(&good, &config).unwrap();
        assert!(!external);
        assert_eq!(authority.verify(&good, &config).unwrap().0, first);
        assert!(
            authority
                .verified
                .lock()
                .unwrap()
                .contains_key(good.as_str())
        );

        // A remembered token past its expiry (and the leeway) is refused as before.
        let past = now - LEEWAY_SECS - 1;
        let old = token(&key, &config, past);
        authority.verified.lock().unwrap().insert(
            old.clone().into(),
            Claims {
                exp: past,
                ..first.clone()
            },
        );
        assert!(matches!(
            authority.verify(&old, &config),
            Err(JwtError::Expired)
        ));

        // Forged or foreign tokens are never remembered.
        let stranger = SigningKey::from_secret_bytes(Some(key.kid().to_owned()), &[7u8; 32]);
        let forged = token(&stranger, &config, now + 600);
        assert!(authority.verify(&forged, &config).is_err());
        assert!(
            !authority
                .verified
                .lock()
                .unwrap()
                .contains_key(forged.as_str())
        );

        // A change of our key set forgets every remembered token.
        authority.verified.lock().unwrap().insert("x".into(), first);
        *authority.keys.write().unwrap() = Arc::new(KeySet::new(Vec::new()).unwrap());
        assert!(authority.reload_keys(&store).await.unwrap());
        assert!(authority.verified.lock().unwrap().is_empty());
    }
}
