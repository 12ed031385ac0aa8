//! `/api/v1/audit`: list with filters, show, stats; every write is `405 IMMUTABLE`. And
//! the legacy `/audit/operator` aliases, with `Deprecation`, `Sunset` and `Link` headers.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use warden_core::audit::{AuditEntry, Outcome};
use warden_core::names::AuditId;
use warden_core::reason::ReasonCode;
use warden_core::scopes::Scope;
use warden_core::time::Timestamp;
use warden_store::audit::{AuditFilter, AuditStats, StoredEntry};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
use crate::routes::{Page, require_scope};

/// An entry as served: every field of the entry, plus its derived leaf hash (base64).
#[derive(Debug, Serialize)]
pub struct EntryView {
    #[serde(flatten)]
    entry: AuditEntry,
    leaf_hash: String,
}

impl From<StoredEntry> for EntryView {
    fn from(s: StoredEntry) -> Self {
        Self {
            entry: s.entry,
            leaf_hash: base64::engine::general_purpose::STANDARD.encode(s.leaf_hash),
        }
    }
}

fn parse_time(name: &str, q: &QueryParams) -> ApiResult<Option<Timestamp>> {
    q.parsed(name, Timestamp::parse_rfc3339)
}

fn filter(q: &QueryParams) -> ApiResult<AuditFilter> {
    Ok(AuditFilter {
        actors: q.all("actor"),
        actions: q.all("action"),
        target: q.one("target")?.map(str::to_owned),
        ticket: q.one("ticket")?.map(str::to_owned),
        outcome: q.parsed("outcome", |s| {
            Outcome::parse(s).ok_or("must be allowed or rejected")
        })?,
        since: parse_time("since", q)?,
        until: parse_time("until", q)?,
        q: match q.one("q")? {
            Some(text) if warden_store::audit::search_words(text).is_empty() => {
                return Err(ApiError::field("q", "must hold at least one word"));
            }
            other => other.map(str::to_owned),
        },
    })
}

const LIST_PARAMS: &[&str] = &[
    "limit", "cursor", "actor", "action", "target", "ticket", "outcome", "since", "until", "q",
];

async fn list_page(
    state: &AppState,
    caller: &Caller,
    q: &QueryParams,
) -> ApiResult<Page<EntryView>> {
    let f = filter(q)?;
    let limit = q.limit(100, 1000)?;
    let cursor = q.parsed("cursor", |s| {
        s.parse::<u64>().map_err(|_| "not a cursor from this list")
    })?;
    let (items, more) = state
        .store
        .list_audit(&caller.tenant, &f, cursor, limit)
        .await?;
    let page = Page::new(items, more, |e| e.entry.seq.to_string());
    Ok(Page {
        items: page.items.into_iter().map(EntryView::from).collect(),
        next_cursor: page.next_cursor,
    })
}

/// `GET /api/v1/audit` — newest first, keyset cursor on `seq`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<EntryView>>> {
    require_scope(&caller, Scope::Read)?;
    let q = QueryParams::parse(raw.as_deref(), LIST_PARAMS)?;
    Ok(Json(list_page(&state, &caller, &q).await?))
}

/// `GET /api/v1/audit/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<EntryView>> {
    require_scope(&caller, Scope::Read)?;
    let unknown = || {
        ApiError::new(
            ReasonCode::UnknownAuditId,
            format!("no audit entry {raw} in this tenant"),
        )
    };
    let id = AuditId::parse(&raw).map_err(|_| unknown())?;
    state
        .store
        .get_audit(&caller.tenant, id)
        .await?
        .map(|e| Json(e.into()))
        .ok_or_else(unknown)
}

/// `GET /api/v1/audit/stats`.
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<AuditStats>> {
    require_scope(&caller, Scope::Read)?;
    let q = QueryParams::parse(raw.as_deref(), &["since", "until"])?;
    let f = AuditFilter {
        since: parse_time("since", &q)?,
        until: parse_time("until", &q)?,
        ..AuditFilter::default()
    };
    Ok(Json(state.store.audit_stats(&caller.tenant, &f).await?))
}

/// Any write under `/api/v1/audit`.
pub async fn immutable() -> ApiError {
    ApiError {
        allow: Some("GET"),
        ..ApiError::new(
            ReasonCode::Immutable,
            "audit entries cannot be modified or deleted",
        )
    }
}

/// When the legacy aliases were deprecated (2026-01-01T00:00:00Z) and when they go away.
const DEPRECATED_AT: &str = "@1767225600";
const SUNSET: &str = "Wed, 30 Jun 2027 00:00:00 GMT";

fn deprecated(mut response: Response, successor: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert("deprecation", HeaderValue::from_static(DEPRECATED_AT));
    h.insert("sunset", HeaderValue::from_static(SUNSET));
    h.insert(header::LINK, HeaderValue::from_static(successor));
    response
}

/// `GET /audit/operator` — legacy alias of the list: `{items}`.
pub async fn legacy_list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = async {
        require_scope(&caller, Scope::Read)?;
        let q = QueryParams::parse(raw.as_deref(), &["limit", "actor", "action", "since"])?;
        let page = list_page(&state, &caller, &q).await?;
        Ok::<_, ApiError>(Json(serde_json::json!({"items": page.items})).into_response())
    }
    .await;
    deprecated(
        result.unwrap_or_else(IntoResponse::into_response),
        "</api/v1/audit>; rel=\"successor-version\"",
    )
}

/// `GET /audit/operator/stats` — legacy alias of the stats.
pub async fn legacy_stats(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = stats(State(state), caller, RawQuery(raw))
        .await
        .map(IntoResponse::into_response);
    deprecated(
        result.unwrap_or_else(IntoResponse::into_response),
        "</api/v1/audit/stats>; rel=\"successor-version\"",
    )
}
