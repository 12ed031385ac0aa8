//! The operator action pipeline (DESIGN.md §3), in one place. Every operator route calls
//! [`run`]:
//!
//! 1. authenticate and 2. resolve the tenant — done by the [`Caller`] extractor (a failure
//!    there is a 401, counted and logged to `_system`, never to a tenant's log);
//! 3. authorize the action's scope — `403 FORBIDDEN_SCOPE`;
//! 4. require the scope's warrant — `400 MISSING_…` / `INVALID_TICKET_FORMAT`;
//! 5. validate and 6. execute — the `execute` closure parses its input and calls a store
//!    method that changes state and appends the entry in one transaction;
//! 7. a rejection at steps 3–5 writes exactly one `rejected` entry (its own transaction)
//!    before the error is answered;
//! 8. emit — the entry's event went to the outbox in the same transaction; the relay
//!    delivers it after commit, never blocking the response.

use std::future::Future;

use warden_core::audit::{AuditDraft, Outcome, Target};
use warden_core::reason::ReasonCode;
use warden_core::scopes::{Scope, WarrantKind};
use warden_store::StoreError;

use crate::AppState;
use crate::auth::{Caller, RequestMeta};
use crate::error::ApiError;

/// What an operator route is about to do.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Lower-case dotted action name, e.g. `job.cancel`.
    pub action: &'static str,
    /// The scope the action requires.
    pub scope: Scope,
    /// The object, as named in the request (a raw path id is kept even if it does not parse).
    pub target: Option<Target>,
}

/// How the execute step failed.
#[derive(Debug)]
pub enum ActionError {
    /// Refused for a domain reason (validation, unknown id, invalid transition): audited.
    Rejected(ApiError),
    /// The store failed: the action did not happen; answered 500.
    Failed(StoreError),
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(r) => Self::Rejected(r.into()),
            other => Self::Failed(other),
        }
    }
}

impl From<ApiError> for ActionError {
    fn from(e: ApiError) -> Self {
        Self::Rejected(e)
    }
}

/// The draft entry for `op` by `caller`, before its outcome is known.
fn draft(caller: &Caller, meta: &RequestMeta, op: &Operation) -> AuditDraft {
    // The entry carries the warrant of the scope the action required; for a rejection at
    // the scope check, whatever operator warrant the token had, as context.
    let kind = op.scope.warrant().unwrap_or(WarrantKind::Operator);
    let (reason, ticket) = match kind {
        WarrantKind::Operator => (
            &caller.warrant.operator_reason,
            &caller.warrant.operator_ticket,
        ),
        WarrantKind::Quota => (&caller.warrant.quota_reason, &caller.warrant.quota_ticket),
        WarrantKind::Backfill => (
            &caller.warrant.backfill_reason,
            &caller.warrant.backfill_ticket,
        ),
    };
    AuditDraft {
        tenant: caller.tenant.clone(),
        actor: caller.actor.clone(),
        action: op.action.to_owned(),
        target: op.target.clone(),
        outcome: Outcome::Allowed,
        reason_code: None,
        operator_reason: reason.clone(),
        operator_ticket: ticket.clone(),
        scope: Some(op.scope),
        source_ip: Some(meta.source_ip.to_string()),
        request_id: Some(meta.request_id.clone()),
        token_id: Some(caller.token_id.clone()),
        metadata: serde_json::json!({}),
    }
}

/// An attempt that passed the scope and warrant checks (steps 3–4).
#[derive(Debug)]
pub struct Authorized<'a> {
    state: &'a AppState,
    draft: AuditDraft,
}

/// Steps 3–4: check the scope and the warrant. A refusal is audited before it is returned.
pub async fn authorize<'a>(
    state: &'a AppState,
    caller: &Caller,
    meta: &RequestMeta,
    op: Operation,
) -> Result<Authorized<'a>, ApiError> {
    let mut entry = draft(caller, meta, &op);
    if !caller.scopes.contains(op.scope) {
        let err = ApiError::new(
            ReasonCode::ForbiddenScope,
            format!("this action requires the scope {}", op.scope),
        );
        return Err(reject(state, entry, err).await);
    }
    if let Some(kind) = op.scope.warrant() {
        match caller.warrant.require(kind, &state.tickets) {
            Ok(w) => {
                entry.operator_reason = Some(w.reason);
                entry.operator_ticket = Some(w.ticket);
            }
            Err(e) => {
                let err = ApiError::new(
                    e.code,
                    format!(
                        "the token's warrant is incomplete: {} is missing, blank or malformed",
                        e.field
                    ),
                );
                return Err(reject(state, entry, err).await);
            }
        }
    }
    Ok(Authorized {
        state,
        draft: entry,
    })
}

impl Authorized<'_> {
    /// Steps 5–7: `execute` validates, then changes state and appends the allowed draft it
    /// is given in one transaction. A refusal writes one `rejected` entry.
    pub async fn execute<T, F, Fut>(self, execute: F) -> Result<T, ApiError>
    where
        F: FnOnce(AuditDraft) -> Fut,
        Fut: Future<Output = Result<T, ActionError>>,
    {
        let action = self.draft.action.clone();
        match execute(self.draft.clone()).await {
            Ok(value) => {
                self.state
                    .metrics
                    .count_audit(&action, Outcome::Allowed.as_str());
                Ok(value)
            }
            Err(ActionError::Rejected(err)) => Err(reject(self.state, self.draft, err).await),
            // The action's transaction rolled back. Leave a trace of the attempt; if even
            // that fails, the error is logged with the request id.
            Err(ActionError::Failed(e)) => {
                Err(reject(self.state, self.draft, ApiError::internal(&e)).await)
            }
        }
    }

    /// Refuse the attempt at validation (step 5): one `rejected` entry, then the error.
    pub async fn reject(self, err: ApiError) -> ApiError {
        reject(self.state, self.draft, err).await
    }
}

/// The whole pipeline for an action: [`authorize`], then [`Authorized::execute`].
pub async fn run<T, F, Fut>(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    op: Operation,
    execute: F,
) -> Result<T, ApiError>
where
    F: FnOnce(AuditDraft) -> Fut,
    Fut: Future<Output = Result<T, ActionError>>,
{
    authorize(state, caller, meta, op)
        .await?
        .execute(execute)
        .await
}

/// Write the `rejected` entry for an attempt, then answer its error. If the entry cannot
/// be written, the answer becomes a 500: we never answer a refusal we could not record.
async fn reject(state: &AppState, entry: AuditDraft, err: ApiError) -> ApiError {
    let action = entry.action.clone();
    match state.store.append_audit(entry.rejected(err.code)).await {
        Ok(_) => {
            state
                .metrics
                .count_audit(&action, Outcome::Rejected.as_str());
            err
        }
        Err(e) => ApiError::internal(format!("could not audit a rejected {action}: {e}")),
    }
}
