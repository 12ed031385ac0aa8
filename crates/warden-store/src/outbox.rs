//! The transactional outbox: events are written in the same transaction as the change that
//! caused them, then relayed to the event bus after commit, so a bus outage loses nothing.

use sqlx::AnyConnection;
use warden_core::events::AuditEvent;
use warden_core::time::Timestamp;

use crate::sql::{ROWS_PER_STATEMENT, values_placeholders};
use crate::{Store, StoreResult, row};

/// One relayed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Position in the outbox.
    pub id: i64,
    /// e.g. `audit`.
    pub topic: String,
    /// The metadata-only JSON payload.
    pub payload: String,
}

pub(crate) async fn enqueue_audit_events(
    conn: &mut AnyConnection,
    events: &[AuditEvent],
    now: Timestamp,
) -> StoreResult<()> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO outbox (created_at, topic, payload) VALUES {}",
            values_placeholders(chunk.len(), 3, 1)
        );
        let sql = crate::sql::for_backend(conn, sql);
        let mut q = sqlx::query(&sql);
        for e in chunk {
            let payload = serde_json::to_string(e).expect("events serialize");
            q = q.bind(now.as_micros()).bind("audit").bind(payload);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store {
    /// The oldest undelivered events, at most `limit`.
    pub async fn outbox_peek(&self, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        let rows = sqlx::query("SELECT id, topic, payload FROM outbox ORDER BY id LIMIT $1")
            .bind(limit as i64)
            .fetch_all(self.read_pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEvent {
                    id: row::int(r, "id")?,
                    topic: row::text(r, "topic")?,
                    payload: row::text(r, "payload")?,
                })
            })
            .collect()
    }

    /// Forget events up to and including `last_id` once the bus has them.
    pub async fn outbox_ack(&self, last_id: i64) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM outbox WHERE id <= $1")
            .bind(last_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
