//! Several nodes on one PostgreSQL database: who leads, and how an enqueue on one node
//! wakes the long-polls of all.
//!
//! **Leadership** is a session-level advisory lock held on a connection of its own, taken
//! out of the pool. The periodic loops (lease recovery, promotion of due jobs, the
//! scheduler, planner statistics) run only on the node holding it. When that node dies,
//! its connection closes and PostgreSQL releases the lock; the next node to try takes it
//! (within one election period). A leader that finds its connection broken steps down at
//! once. Every loop is also safe to run twice (they lock the rows they change), so a
//! brief overlap during a handover costs work, never correctness. On SQLite there is one
//! process per database file, and it always leads.
//!
//! **Wake-ups** use `LISTEN/NOTIFY` on the channel [`WORK_CHANNEL`]: a node that made
//! work leasable sends one `NOTIFY` carrying its node id; every other node's listener
//! wakes its own waiting long-polls. No node polls the table for new work.

use sqlx::postgres::{PgConnection, PgListener};
use sqlx::{Connection, Row};

use crate::{Backend, Store, StoreResult};

/// The first half of the leader's advisory lock key; the second is a hash of the schema
/// (`current_schema()`), since advisory locks and notification channels are per database
/// and several Warden deployments (or test runs) may share one database in separate
/// schemas.
const LEADER_CLASS: i32 = 0x7761_7264; // "ward"

/// The `LISTEN/NOTIFY` channel for "jobs became leasable"; payloads are
/// `<schema>/<node id>`, and a listener ignores other schemas and its own node.
pub const WORK_CHANNEL: &str = "warden_work";

/// Leadership held by this node. Dropping it (or its connection dying) gives it up.
#[derive(Debug)]
pub struct Leadership {
    /// The connection holding the advisory lock (PostgreSQL only).
    conn: Option<PgConnection>,
}

impl Leadership {
    /// Is it still held? A broken connection, or a lock found missing, means no: the
    /// caller must stop acting as leader.
    pub async fn still_held(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return true; // SQLite: the only process.
        };
        let held = sqlx::query(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted AND objsubid = 2 \
             AND classid = $1::int::oid AND objid = hashtext(current_schema())::oid",
        )
        .bind(LEADER_CLASS)
        .fetch_one(&mut *conn)
        .await;
        match held {
            Ok(r) => r.try_get::<i64, _>("n").unwrap_or(0) > 0,
            Err(_) => false,
        }
    }

    /// Give leadership up now (closing the connection releases the lock).
    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

/// Notifications that another node made work leasable.
#[derive(Debug)]
pub struct WorkListener {
    listener: PgListener,
    /// `<schema>/`: wake-ups of this deployment.
    prefix: String,
    node_id: String,
}

impl WorkListener {
    /// Wait for the next wake-up sent by another node. An error means the connection
    /// was lost; sqlx reconnects on the next call (wake-ups sent meanwhile are lost, so
    /// the caller should wake its waiters once anyway).
    pub async fn recv(&mut self) -> StoreResult<()> {
        loop {
            let n = self.listener.recv().await?;
            if let Some(node) = n.payload().strip_prefix(&self.prefix)
                && node != self.node_id
            {
                return Ok(());
            }
        }
    }
}

impl Store {
    /// Try to become the leader; `None` if another node leads.
    pub async fn try_lead(&self) -> StoreResult<Option<Leadership>> {
        if self.backend() == Backend::Sqlite {
            return Ok(Some(Leadership { conn: None }));
        }
        let mut conn = PgConnection::connect(&self.inner.url).await?;
        let got: bool =
            sqlx::query("SELECT pg_try_advisory_lock($1, hashtext(current_schema())) AS ok")
                .bind(LEADER_CLASS)
                .fetch_one(&mut conn)
                .await?
                .try_get("ok")?;
        if got {
            Ok(Some(Leadership { conn: Some(conn) }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Listen for other nodes' wake-ups (PostgreSQL; `None` on SQLite, where one process
    /// owns the database and wakes its waiters in memory).
    pub async fn work_listener(&self, node_id: &str) -> StoreResult<Option<WorkListener>> {
        if self.backend() == Backend::Sqlite {
            return Ok(None);
        }
        let mut listener = PgListener::connect(&self.inner.url).await?;
        listener.listen(WORK_CHANNEL).await?;
        let schema: String = sqlx::query("SELECT current_schema()::text AS s")
            .fetch_one(self.read_pool())
            .await?
            .try_get("s")?;
        Ok(Some(WorkListener {
            listener,
            prefix: format!("{schema}/"),
            node_id: node_id.to_owned(),
        }))
    }

    /// Tell the other nodes that work became leasable (no-op on SQLite).
    pub async fn announce_work(&self, node_id: &str) -> StoreResult<()> {
        if self.backend() == Backend::Sqlite {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, current_schema() || '/' || $2)")
            .bind(WORK_CHANNEL)
            .bind(node_id)
            .execute(self.read_pool())
            .await?;
        Ok(())
    }
}
