//! The ledger's routes under `/api/v1/audit`: the signed checkpoint, the checkpoint keys,
//! inclusion and consistency proofs, and the streamed export that `warden audit verify`
//! checks offline (format: `warden_ledger::export`).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Serialize;
use warden_core::names::TenantId;
use warden_core::scopes::Scope;
use warden_core::time::Timestamp;
use warden_ledger::export::{checkpoint_line, compact_range_line, consistency_line, keys_line};
use warden_ledger::hash::{Hash, to_base64};
use warden_store::ledger::{ExportedEntry, StoredCheckpoint};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
use crate::routes::require_scope;

fn text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn number(q: &QueryParams, name: &str) -> ApiResult<Option<u64>> {
    q.parsed(name, |s| {
        s.parse::<u64>()
            .map_err(|_| "must be a non-negative integer")
    })
}

/// `GET /api/v1/audit/checkpoint` — the newest signed checkpoint of the caller's log, cut
/// now if the log has grown since the last one (`text/plain`, a C2SP signed note).
pub async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    require_scope(&caller, Scope::Read)?;
    QueryParams::parse(raw.as_deref(), &[])?;
    Ok(text(state.current_checkpoint(&caller.tenant).await?.note))
}

/// `GET /api/v1/audit/keys` — the checkpoint verifier keys, one per line (no token needed:
/// they are public, and a verifier should be able to fetch them before it trusts us).
pub async fn keys(State(state): State<AppState>) -> Response {
    let mut body = String::new();
    for k in state.ledger.verifier_keys() {
        body.push_str(&k.to_string());
        body.push('\n');
    }
    text(body)
}

/// `{leaf_index, tree_size, hashes}` (base64).
#[derive(Debug, Serialize)]
pub struct InclusionProof {
    leaf_index: u64,
    tree_size: u64,
    hashes: Vec<String>,
}

/// `{from, to, hashes}` (base64).
#[derive(Debug, Serialize)]
pub struct ConsistencyProof {
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(to_base64).collect()
}

/// The size a proof is for when none is given: the newest checkpoint's.
async fn default_size(state: &AppState, tenant: &TenantId) -> ApiResult<u64> {
    Ok(state.current_checkpoint(tenant).await?.size)
}

/// `GET /api/v1/audit/proof/inclusion?seq=&tree_size=` — the proof that entry `seq` is in
/// the tree of `tree_size` (default: the newest checkpoint's).
pub async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<InclusionProof>> {
    require_scope(&caller, Scope::Read)?;
    let q = QueryParams::parse(raw.as_deref(), &["seq", "tree_size"])?;
    let seq = number(&q, "seq")?.ok_or_else(|| ApiError::field("seq", "is required"))?;
    let size = match number(&q, "tree_size")? {
        Some(s) => s,
        None => default_size(&state, &caller.tenant).await?,
    };
    let head = state.store.ledger_head(&caller.tenant).await?;
    if size > head.size {
        return Err(ApiError::field(
            "tree_size",
            format!("the log holds {} entries", head.size),
        ));
    }
    if seq >= size {
        return Err(ApiError::field(
            "seq",
            format!("must be below tree_size {size}"),
        ));
    }
    let hashes = state
        .store
        .inclusion_proof(&caller.tenant, seq, size)
        .await?;
    Ok(Json(InclusionProof {
        leaf_index: seq,
        tree_size: size,
        hashes: b64(&hashes),
    }))
}

/// `GET /api/v1/audit/proof/consistency?from=&to=` — the proof that the tree of `from` is
/// a prefix of the tree of `to` (default: the newest checkpoint's size).
pub async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ConsistencyProof>> {
    require_scope(&caller, Scope::Read)?;
    let q = QueryParams::parse(raw.as_deref(), &["from", "to"])?;
    let from = number(&q, "from")?.ok_or_else(|| ApiError::field("from", "is required"))?;
    let to = match number(&q, "to")? {
        Some(s) => s,
        None => default_size(&state, &caller.tenant).await?,
    };
    let head = state.store.ledger_head(&caller.tenant).await?;
    if to > head.size {
        return Err(ApiError::field(
            "to",
            format!("the log holds {} entries", head.size),
        ));
    }
    if from == 0 || from > to {
        return Err(ApiError::field("from", format!("must be 1 to {to}")));
    }
    let hashes = state
        .store
        .consistency_proof(&caller.tenant, from, to)
        .await?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        hashes: b64(&hashes),
    }))
}

/// An export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
    Json,
}

/// Entries read per page while streaming.
const EXPORT_PAGE: u32 = 2_000;

/// Stored checkpoints an NDJSON export interleaves at most (the oldest in its range).
const MAX_INTERLEAVED: u32 = 1_000;

/// An entry line: the canonical text with its derived `leaf_hash` added, the object
/// `GET /api/v1/audit/{id}` serves (the leaf is over the object without that field).
fn entry_json(e: &ExportedEntry) -> String {
    let body = e.canonical.strip_suffix('}').unwrap_or(&e.canonical);
    let sep = if body.len() > 1 { "," } else { "" };
    format!("{body}{sep}\"leaf_hash\":\"{}\"}}", to_base64(&e.leaf_hash))
}

const CSV_COLUMNS: &[&str] = &[
    "seq",
    "id",
    "created_at",
    "actor",
    "actor_kind",
    "action",
    "target_kind",
    "target_id",
    "outcome",
    "reason_code",
    "operator_reason",
    "operator_ticket",
    "scope",
    "source_ip",
    "request_id",
    "token_id",
    "metadata",
    "leaf_hash",
];

/// RFC 4180 quoting, and a leading `'` on text a spreadsheet would run as a formula.
fn csv_field(out: &mut String, value: &str) {
    let guarded = matches!(
        value.chars().next(),
        Some('=' | '+' | '-' | '@' | '\t' | '\r')
    );
    if guarded || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if guarded {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_row(e: &ExportedEntry) -> String {
    let v: serde_json::Value = serde_json::from_str(&e.canonical).unwrap_or_default();
    let mut out = String::with_capacity(e.canonical.len() + 64);
    for (i, col) in CSV_COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = match *col {
            "leaf_hash" => to_base64(&e.leaf_hash),
            "metadata" => v.get("metadata").map(|m| m.to_string()).unwrap_or_default(),
            c => match v.get(c) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
        };
        csv_field(&mut out, &cell);
    }
    out.push('\n');
    out
}

/// What the export stream still has to send.
struct ExportState {
    state: AppState,
    tenant: TenantId,
    format: Format,
    /// The next entry to send and the end of the range.
    next: u64,
    end: u64,
    /// Checkpoints inside the range still to interleave (ascending).
    checkpoints: std::collections::VecDeque<StoredCheckpoint>,
    /// Lines to send after the entries.
    trailer: Option<String>,
    first_item: bool,
    done: bool,
}

impl ExportState {
    /// The next chunk of the body, or `None` at the end.
    async fn chunk(&mut self) -> Result<Option<Bytes>, warden_store::StoreError> {
        if self.done {
            return Ok(None);
        }
        if self.next >= self.end {
            self.done = true;
            return Ok(self.trailer.take().map(Bytes::from));
        }
        let page = self
            .state
            .store
            .export_entries(&self.tenant, self.next, self.end, EXPORT_PAGE)
            .await?;
        let Some(last) = page.last() else {
            self.done = true;
            return Ok(self.trailer.take().map(Bytes::from));
        };
        self.next = last.seq + 1;
        let mut out = String::with_capacity(page.len() * 600);
        for e in &page {
            match self.format {
                Format::Ndjson => {
                    out.push_str(&entry_json(e));
                    out.push('\n');
                    // A checkpoint right after the entry that completes its size.
                    while self
                        .checkpoints
                        .front()
                        .is_some_and(|c| c.size <= e.seq + 1)
                    {
                        let c = self.checkpoints.pop_front().expect("front exists");
                        if c.size == e.seq + 1 {
                            out.push_str(&checkpoint_line(&c.note));
                            out.push('\n');
                        }
                    }
                }
                Format::Json => {
                    if !self.first_item {
                        out.push(',');
                    }
                    self.first_item = false;
                    out.push_str(&entry_json(e));
                }
                Format::Csv => out.push_str(&csv_row(e)),
            }
        }
        Ok(Some(Bytes::from(out)))
    }
}

/// What frames the entries `[begin, end)` of an NDJSON export that verifies up to the
/// checkpoint `last`: the lines before them (keys, the compact range of what precedes
/// `begin`, and `last` itself when no exported entry reaches it), the stored checkpoints
/// to interleave, and the lines after them (a consistency proof from `end` to `last`).
pub(crate) async fn ndjson_frame(
    state: &AppState,
    tenant: &TenantId,
    begin: u64,
    end: u64,
    last: &StoredCheckpoint,
) -> Result<(String, std::collections::VecDeque<StoredCheckpoint>, String), warden_store::StoreError>
{
    let mut head = keys_line(&state.ledger.verifier_keys());
    head.push('\n');
    let mut trailer = String::new();
    if begin > 0 {
        let range = state.store.compact_range_at(tenant, begin).await?;
        head.push_str(&compact_range_line(&range));
        head.push('\n');
    }
    // Older checkpoints inside the range narrow down where an altered entry is (each
    // follows the entry that completes it); the newest closes the export.
    let mut checkpoints: std::collections::VecDeque<StoredCheckpoint> = state
        .store
        .checkpoints(tenant, begin + 1, end, MAX_INTERLEAVED)
        .await?
        .into();
    if end == last.size && begin < end {
        if checkpoints.back().is_none_or(|c| c.size != last.size) {
            checkpoints.push_back(last.clone());
        }
    } else {
        // Nothing exported reaches the newest checkpoint: it goes first, and a
        // consistency proof from the last exported entry's tree to it goes last.
        head.push_str(&checkpoint_line(&last.note));
        head.push('\n');
        if end > 0 && end < last.size {
            let proof = state
                .store
                .consistency_proof(tenant, end, last.size)
                .await?;
            trailer.push_str(&consistency_line(end, last.size, &proof));
            trailer.push('\n');
        }
    }
    Ok((head, checkpoints, trailer))
}

/// Write the NDJSON export of entries `[begin, end)`, verifiable up to `last`, to `out`
/// page by page (retention's archive files are exactly this). Returns the entries written.
pub(crate) async fn write_ndjson(
    state: &AppState,
    tenant: &TenantId,
    begin: u64,
    end: u64,
    last: &StoredCheckpoint,
    out: &mut impl std::io::Write,
) -> Result<u64, crate::ServerError> {
    let (head, checkpoints, trailer) = ndjson_frame(state, tenant, begin, end, last).await?;
    out.write_all(head.as_bytes())?;
    let mut export = ExportState {
        state: state.clone(),
        tenant: tenant.clone(),
        format: Format::Ndjson,
        next: begin,
        end,
        checkpoints,
        trailer: (!trailer.is_empty()).then_some(trailer),
        first_item: true,
        done: false,
    };
    while let Some(bytes) = export.chunk().await? {
        out.write_all(&bytes)?;
    }
    Ok(export.next.saturating_sub(begin))
}

/// `GET /api/v1/audit/export?format=ndjson|csv|json&since=&until=` — the caller's log,
/// streamed page by page in constant memory, up to the newest checkpoint (cut now if the
/// log grew). The NDJSON form is what `warden audit verify` checks offline: the keys, the
/// compact range of what precedes `since`, every stored checkpoint in the range right
/// after the entry that completes it, and a consistency proof to the newest checkpoint
/// when `until` ends the range before it.
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    require_scope(&caller, Scope::Read)?;
    let q = QueryParams::parse(raw.as_deref(), &["format", "since", "until"])?;
    let format = match q.one("format")?.unwrap_or("ndjson") {
        "ndjson" => Format::Ndjson,
        "csv" => Format::Csv,
        "json" => Format::Json,
        _ => return Err(ApiError::field("format", "must be ndjson, csv or json")),
    };
    let since = q.parsed("since", Timestamp::parse_rfc3339)?;
    let until = q.parsed("until", Timestamp::parse_rfc3339)?;
    let tenant = caller.tenant.clone();
    let last = state.current_checkpoint(&tenant).await?;
    // Bodies below the archive watermark are in retention's archive files, not here.
    let archived = state
        .store
        .retention_status(&tenant)
        .await?
        .map_or(0, |r| r.archived_upto);
    let begin = match since {
        Some(t) => state.store.first_seq_at(&tenant, t).await?,
        None => 0,
    }
    .max(archived)
    .min(last.size);
    let end = match until {
        Some(t) => state
            .store
            .first_seq_at(&tenant, t)
            .await?
            .clamp(begin, last.size),
        None => last.size,
    };
    let mut head = String::new();
    let mut trailer = String::new();
    let mut checkpoints = std::collections::VecDeque::new();
    let content_type = match format {
        Format::Ndjson => {
            (head, checkpoints, trailer) = ndjson_frame(&state, &tenant, begin, end, &last).await?;
            "application/x-ndjson"
        }
        Format::Csv => {
            head.push_str(&CSV_COLUMNS.join(","));
            head.push('\n');
            "text/csv; charset=utf-8"
        }
        Format::Json => {
            head.push_str("{\"items\":[");
            trailer.push_str("],\"checkpoint\":");
            trailer.push_str(&serde_json::to_string(&last.note).expect("a string serializes"));
            trailer.push('}');
            "application/json"
        }
    };
    let export = ExportState {
        state: state.clone(),
        tenant,
        format,
        next: begin,
        end,
        checkpoints,
        trailer: (!trailer.is_empty()).then_some(trailer),
        first_item: true,
        done: false,
    };
    let head = Bytes::from(head);
    let body = futures_util::stream::once(async move { Ok::<_, warden_store::StoreError>(head) })
        .chain(futures_util::stream::try_unfold(
            export,
            |mut s| async move { Ok(s.chunk().await?.map(|bytes| (bytes, s))) },
        ));
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(body),
    )
        .into_response())
}

/// How often a live tail looks for entries when nothing woke it (entries written by
/// another node reach this one's bus only through the database).
const TAIL_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// A comment line this often keeps proxies from closing an idle stream.
const TAIL_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// What a live tail still has to send.
struct Tail {
    state: AppState,
    tenant: TenantId,
    next: u64,
    bus: tokio::sync::broadcast::Receiver<crate::events::BusEvent>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    quiet_since: std::time::Instant,
}

impl Tail {
    /// The next chunk: new entries as events, a keep-alive comment, or `None` when the
    /// server shuts down.
    async fn chunk(&mut self) -> Result<Option<Bytes>, warden_store::StoreError> {
        loop {
            if *self.shutdown.borrow() {
                return Ok(None);
            }
            let page = self
                .state
                .store
                .export_entries(&self.tenant, self.next, u64::MAX, 500)
                .await?;
            if let Some(last) = page.last() {
                self.next = last.seq + 1;
                self.quiet_since = std::time::Instant::now();
                let mut out = String::with_capacity(page.len() * 700);
                for e in &page {
                    out.push_str(&format!(
                        "id: {}\nevent: audit\ndata: {}\n\n",
                        e.seq,
                        entry_json(e)
                    ));
                }
                return Ok(Some(Bytes::from(out)));
            }
            if self.quiet_since.elapsed() >= TAIL_KEEPALIVE {
                self.quiet_since = std::time::Instant::now();
                return Ok(Some(Bytes::from_static(b": keep-alive\n\n")));
            }
            // Woken by any audit event relayed on this node, or after a short poll.
            tokio::select! {
                _ = crate::events::next_of(&mut self.bus, "audit") => {}
                _ = tokio::time::sleep(TAIL_POLL) => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }
}

/// `GET /api/v1/audit/stream` — Server-Sent Events: one `audit` event per new entry of
/// the caller's log (`id` = its seq, `data` = the entry as `GET /api/v1/audit/{id}` serves
/// it). `Last-Event-ID: <seq>` resumes after that entry; without it, only entries written
/// from now on are sent.
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    require_scope(&caller, Scope::Read)?;
    QueryParams::parse(raw.as_deref(), &[])?;
    let next = match headers.get("last-event-id") {
        Some(v) => {
            let seq = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::field("Last-Event-ID", "must be the seq of an entry"))?;
            seq + 1
        }
        None => state.store.ledger_head(&caller.tenant).await?.size,
    };
    let tail = Tail {
        bus: state.events.subscribe(),
        shutdown: state.shutdown.subscribe(),
        state: state.clone(),
        tenant: caller.tenant.clone(),
        next,
        quiet_since: std::time::Instant::now(),
    };
    // The first bytes go out at once, so a client knows the stream is open.
    let hello = futures_util::stream::once(async {
        Ok::<_, warden_store::StoreError>(Bytes::from_static(b": stream open\n\n"))
    });
    let body = hello.chain(futures_util::stream::try_unfold(tail, |mut t| async move {
        Ok(t.chunk().await?.map(|bytes| (bytes, t)))
    }));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// `GET /api/v1/audit/retention` — the caller's log's retention period, how far bodies
/// are archived, and what the last run moved.
pub async fn retention(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    require_scope(&caller, Scope::Read)?;
    QueryParams::parse(raw.as_deref(), &[])?;
    let cfg = &state.config.ledger;
    let period = cfg
        .retention_secs_per_tenant
        .get(caller.tenant.as_str())
        .copied()
        .unwrap_or(cfg.retention_secs);
    let status = state.store.retention_status(&caller.tenant).await?;
    Ok(Json(serde_json::json!({
        "retention_secs": period,
        "archived_upto": status.as_ref().map_or(0, |s| s.archived_upto),
        "last_run_at": status.as_ref().map(|s| s.last_run_at),
        "last_moved": status.as_ref().map_or(0, |s| s.last_moved),
        "last_file": status.and_then(|s| s.last_file),
    })))
}
