//! The transactional outbox: events are written in the same transaction as the change that
//! caused them, then relayed to the event bus after commit, so a bus outage loses nothing.

use serde::Serialize;
use sqlx::AnyConnection;
use warden_core::events::{QueueChange, QueueEvent};
use warden_core::names::QueueName;
use warden_core::time::Timestamp;

use crate::sql::ROWS_PER_STATEMENT;
use crate::{Store, StoreResult, row};

/// One relayed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Position in the outbox: the row that carried the event (a row holds up to
    /// [`ROWS_PER_STATEMENT`] events of one topic from one transaction).
    pub id: i64,
    /// e.g. `audit`.
    pub topic: String,
    /// The metadata-only JSON payload.
    pub payload: String,
}

/// Write `events` of one topic as outbox rows of up to [`ROWS_PER_STATEMENT`] events each
/// (their JSON texts, one per line): a bulk action of 1,000 entries costs two inserts
/// here, and one delete when relayed. Rows of a bounded size keep each payload a small
/// allocation; a 10,000-job batch as one 1.6 MB text was kept by glibc's arenas.
pub(crate) async fn enqueue_events<T: Serialize>(
    conn: &mut AnyConnection,
    topic: &str,
    events: &[T],
    now: Timestamp,
) -> StoreResult<()> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        enqueue(conn, topic, &payload(chunk), now).await?;
    }
    Ok(())
}

/// One outbox row's payload: the events' JSON texts, one per line (compact JSON never
/// contains a raw newline, so lines separate events exactly).
pub(crate) fn payload<T: Serialize>(events: &[T]) -> String {
    let mut payload = String::with_capacity(events.len() * 160);
    for e in events {
        if !payload.is_empty() {
            payload.push('\n');
        }
        payload.push_str(&serde_json::to_string(e).expect("events serialize"));
    }
    payload
}

/// Write the `queue` event of `change` to `queue` in the caller's transaction.
pub(crate) async fn enqueue_queue_change(
    conn: &mut AnyConnection,
    queue: &QueueName,
    change: QueueChange,
    now: Timestamp,
) -> StoreResult<()> {
    enqueue_events(conn, "queue", &[QueueEvent::new(queue, change, now)], now).await
}

/// One outbox row (created at, topic, payload) with SQLite's anonymous placeholders, for
/// appending to another statement's text in one call.
pub(crate) const INSERT_SQLITE: &str =
    "INSERT INTO outbox (created_at, topic, payload) VALUES (?, ?, ?)";

/// Write one outbox row in the caller's transaction.
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    topic: &str,
    payload: &str,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO outbox (created_at, topic, payload) VALUES ($1, $2, $3)")
        .bind(now.as_micros())
        .bind(topic)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Put one event on the outbox in a transaction of its own (events not tied to a
    /// change in the database, such as alerts); the relay delivers it like the others.
    pub async fn publish_event(&self, topic: &str, payload: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        enqueue(&mut tx, topic, payload, Timestamp::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The oldest undelivered events of at most `limit` outbox rows, in order.
    pub async fn outbox_peek(&self, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        let rows = sqlx::query("SELECT id, topic, payload FROM outbox ORDER BY id LIMIT $1")
            .bind(limit as i64)
            .fetch_all(self.read_pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = row::int(r, "id")?;
            let topic = row::text(r, "topic")?;
            for line in row::text(r, "payload")?.lines() {
                out.push(OutboxEvent {
                    id,
                    topic: topic.clone(),
                    payload: line.to_owned(),
                });
            }
        }
        Ok(out)
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
