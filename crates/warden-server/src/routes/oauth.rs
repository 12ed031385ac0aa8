//! The built-in authority over HTTP: `POST /oauth/token` (client credentials, RFC 6749
//! §4.4), `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use warden_authority::{SecretDigest, sign_jwt};
use warden_core::audit::{Actor, AuditDraft, Outcome, Target};
use warden_core::names::ClientId;
use warden_core::reason::ReasonCode;
use warden_core::scopes::{Scope, ScopeSet, WarrantClaims, WarrantKind, scopes_allowed_by};
use warden_core::time::Timestamp;

use crate::AppState;
use crate::auth::RequestMeta;

/// An RFC 6749 §5.2 error.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after: Option<u64>,
    basic_challenge: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after: None,
            basic_challenge: false,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "error_description": self.description});
        let mut r = (self.status, Json(body)).into_response();
        no_store(r.headers_mut());
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.basic_challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"warden\""),
            );
        }
        r
    }
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1: form-urlencoded, then base64) or
/// the form. Returns (client_id, secret, whether Basic was used).
fn client_credentials(
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Option<(String, String, bool)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let unescape = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((unescape(id)?, unescape(secret)?, true));
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Some((get("client_id")?, get("client_secret")?, false))
}

/// `POST /oauth/token`.
pub async fn token(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match issue(&state, &meta, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn issue(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let bad = |d: &str| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", d);
    let limit = state.config.auth.max_failed_client_auth_per_minute;
    if let Some(wait) = state
        .authority
        .client_auth_retry_after(meta.source_ip, limit)
    {
        return Err(OAuthError {
            retry_after: Some(wait),
            ..OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_client",
                format!(
                    "too many failed client authentications from this address; retry in {wait} s"
                ),
            )
        });
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    for (k, _) in &form {
        if form.iter().filter(|(n, _)| n == k).count() > 1 {
            return Err(bad(&format!("parameter {k} is given more than once")));
        }
    }
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());

    // Authenticate the client first: nothing about scopes is revealed to a stranger.
    let fail_client = |reason: &'static str, basic: bool| {
        state.authority.note_failed_client_auth(meta.source_ip);
        state.authority.note_auth_failure(meta.source_ip, reason);
        state.metrics.count_auth_failure(reason);
        OAuthError {
            basic_challenge: basic,
            ..OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        }
    };
    let Some((client_id, secret, basic)) = client_credentials(headers, &form) else {
        return Err(fail_client(
            "invalid_client",
            headers.contains_key(header::AUTHORIZATION),
        ));
    };
    let client = match ClientId::parse(&client_id) {
        Ok(id) => state.store.get_client(id).await.map_err(|e| {
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                internal(e),
            )
        })?,
        Err(_) => None,
    };
    let client = match client {
        Some(c)
            if c.revoked_at.is_none()
                && SecretDigest::from_bytes(c.secret_digest).matches(&secret) =>
        {
            c
        }
        _ => return Err(fail_client("invalid_client", basic)),
    };

    match field("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            ));
        }
        None => return Err(bad("grant_type is required")),
    }
    let allowed = scopes_allowed_by(&client.roles);
    let scopes = match field("scope") {
        None | Some("") => ScopeSet::from_scopes(allowed.iter().filter(|s| !s.is_elevated())),
        Some(s) => ScopeSet::parse(s).map_err(|unknown| {
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("unknown scope {unknown}"),
            )
        })?,
    };
    let warrant = WarrantClaims {
        operator_reason: field("operator_reason").map(str::to_owned),
        operator_ticket: field("operator_ticket").map(str::to_owned),
        quota_reason: field("quota_reason").map(str::to_owned),
        quota_ticket: field("quota_ticket").map(str::to_owned),
        backfill_reason: field("backfill_reason").map(str::to_owned),
        backfill_ticket: field("backfill_ticket").map(str::to_owned),
    };
    let elevated = scopes.any_elevated();
    let first_warrant = scopes.iter().find_map(|s| s.warrant());
    let actor = Actor::client(client.name.as_str());
    let jti = uuid::Uuid::now_v7().to_string();
    let entry = |outcome: Outcome,
                 code: Option<ReasonCode>,
                 reason: Option<String>,
                 ticket: Option<String>,
                 metadata: serde_json::Value| AuditDraft {
        tenant: client.tenant.clone(),
        actor: actor.clone(),
        action: "token.issue".into(),
        target: Some(Target::new("token", jti.clone())),
        outcome,
        reason_code: code,
        operator_reason: reason,
        operator_ticket: ticket,
        scope: scopes.iter().find(|s| s.is_elevated()),
        source_ip: Some(meta.source_ip.to_string()),
        request_id: Some(meta.request_id.clone()),
        token_id: Some(jti.clone()),
        metadata,
    };
    let raw_pair = |kind: Option<WarrantKind>| match kind {
        Some(WarrantKind::Quota) => (warrant.quota_reason.clone(), warrant.quota_ticket.clone()),
        Some(WarrantKind::Backfill) => (
            warrant.backfill_reason.clone(),
            warrant.backfill_ticket.clone(),
        ),
        _ => (
            warrant.operator_reason.clone(),
            warrant.operator_ticket.clone(),
        ),
    };
    // A refused request for an elevated token, from an authenticated client, is audited.
    let requested = scopes.to_string();
    let refuse = |err: OAuthError, code: ReasonCode| {
        let draft = elevated.then(|| {
            let (r, t) = raw_pair(first_warrant);
            entry(
                Outcome::Rejected,
                Some(code),
                r,
                t,
                serde_json::json!({"requested_scope": requested}),
            )
        });
        async move {
            if let Some(draft) = draft {
                if let Err(e) = state.store.append_audit(draft).await {
                    return OAuthError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        internal(e),
                    );
                }
                state.metrics.count_audit("token.issue", "rejected");
            }
            err
        }
    };

    if let Some(beyond) = scopes.iter().find(|s| !allowed.contains(*s)) {
        let err = OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("scope {beyond} is beyond this client's roles"),
        );
        return Err(refuse(err, ReasonCode::ForbiddenScope).await);
    }
    let mut checked = Vec::new();
    for scope in scopes.iter() {
        if let Some(kind) = scope.warrant() {
            match warrant.require(kind, &state.tickets) {
                Ok(w) => checked.push((kind, w)),
                Err(e) => {
                    let what = if e.code == ReasonCode::InvalidTicketFormat {
                        "does not match the ticket pattern"
                    } else {
                        "is required for this scope and must not be blank"
                    };
                    let err = bad(&format!("{} {what} ({scope})", e.field));
                    return Err(refuse(err, e.code).await);
                }
            }
        }
    }

    let now = Timestamp::now().as_micros() / 1_000_000;
    let ttl = if elevated {
        state.config.auth.elevated_token_ttl_secs
    } else {
        state.config.auth.token_ttl_secs
    } as i64;
    let mut claims = serde_json::json!({
        "iss": state.config.public_url,
        "sub": client.id.to_string(),
        "aud": state.config.auth.audience,
        "exp": now + ttl,
        "iat": now,
        "nbf": now,
        "jti": jti,
        "tenant": client.tenant.as_str(),
        "scope": scopes.to_string(),
        "roles": client.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    });
    for (kind, w) in &checked {
        claims[kind.reason_field()] = w.reason.clone().into();
        claims[kind.ticket_field()] = w.ticket.clone().into();
    }
    if elevated {
        // Fail closed: no elevated token without its entry.
        let (r, t) = checked
            .first()
            .map(|(_, w)| (Some(w.reason.clone()), Some(w.ticket.clone())))
            .unwrap_or((None, None));
        let warrants: serde_json::Map<String, serde_json::Value> = checked
            .iter()
            .map(|(k, w)| {
                (
                    k.ticket_field().trim_end_matches("_ticket").to_owned(),
                    serde_json::json!({"reason": w.reason, "ticket": w.ticket}),
                )
            })
            .collect();
        let draft = entry(
            Outcome::Allowed,
            None,
            r,
            t,
            serde_json::json!({"granted_scope": scopes.to_string(), "expires_in": ttl, "warrants": warrants}),
        );
        state.store.append_audit(draft).await.map_err(|e| {
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                internal(e),
            )
        })?;
        state.metrics.count_audit("token.issue", "allowed");
    }
    let token = sign_jwt(&state.authority.signing_key(), &claims);
    state.metrics.count_token(&scopes.to_string());
    let body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scopes.to_string()});
    let mut r = Json(body).into_response();
    no_store(r.headers_mut());
    Ok(r)
}

fn internal(e: impl std::fmt::Display) -> String {
    tracing::error!(error = %e, "token endpoint failed");
    "internal error".into()
}

/// `GET /.well-known/jwks.json`.
pub async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.authority.key_set().jwks())
}

/// `GET /.well-known/openid-configuration`.
pub async fn openid_configuration(State(state): State<AppState>) -> Json<serde_json::Value> {
    let base = state.config.public_url.trim_end_matches('/');
    Json(serde_json::json!({
        "issuer": state.config.public_url,
        "token_endpoint": format!("{base}/oauth/token"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "response_types_supported": ["token"],
        "scopes_supported": Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "tenant", "scope", "roles", "operator_reason", "operator_ticket", "quota_reason", "quota_ticket", "backfill_reason", "backfill_ticket"],
    }))
}
