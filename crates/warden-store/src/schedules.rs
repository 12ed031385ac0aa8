//! Schedules: creating them (audited), listing them, the scheduler's firing of due runs,
//! and backfill (audited).
//!
//! Exactly once per fire time: a run is a row of `schedule_runs` keyed by
//! (tenant, schedule, fire time), written in the same transaction as its job, after the
//! schedule's row is locked. Two nodes, a restart halfway, or a backfill racing the
//! scheduler all serialise on that lock and find the run already there.

use std::collections::HashMap;

use serde_json::json;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use warden_core::audit::AuditDraft;
use warden_core::jobs::NewJob;
use warden_core::names::{JobId, JobType, QueueName, ScheduleId, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::schedule::{Calendar, Cron, Run, Schedule, zone};
use warden_core::time::Timestamp;

use crate::sql::Insert;
use crate::{Rejection, Store, StoreError, StoreResult, audit, row};

const COLUMNS: &str = "id, cron, timezone, queue, job_type, payload, priority, max_attempts, created_at, next_fire_at, last_fire_at, paused_at";

/// What a new schedule is made of (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Its calendar (parsed cron expression and zone).
    pub calendar: Calendar,
    /// The zone's name as given; `None` is UTC.
    pub timezone: Option<String>,
    /// Queue of each run.
    pub queue: QueueName,
    /// Type of each run.
    pub job_type: JobType,
    /// Payload of each run.
    pub payload: serde_json::Value,
    /// Priority of each run.
    pub priority: i32,
    /// Attempts of each run.
    pub max_attempts: u32,
}

/// What `PATCH /api/v1/schedules/{id}` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChange {
    /// A new cron expression (validated by the caller).
    pub cron: Option<Cron>,
    /// A new IANA zone name (validated by the caller; `UTC` for UTC).
    pub timezone: Option<String>,
    /// Queue of each future run.
    pub queue: Option<QueueName>,
    /// Type of each future run.
    pub job_type: Option<JobType>,
    /// Payload of each future run.
    pub payload: Option<serde_json::Value>,
    /// Priority of each future run.
    pub priority: Option<i32>,
    /// Attempts of each future run.
    pub max_attempts: Option<u32>,
}

/// The part of a schedule its audit entries record: what it runs and when (the payload
/// is not copied into the log; an update says whether it changed).
fn definition(s: &Schedule) -> serde_json::Value {
    json!({
        "cron": s.cron,
        "timezone": s.timezone,
        "queue": s.queue.as_str(),
        "type": s.job_type.as_str(),
        "priority": s.priority,
        "max_attempts": s.max_attempts,
    })
}

/// What one pass of the scheduler did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FireReport {
    /// Runs created.
    pub created: usize,
    /// Missed fire times older than the catch-up window, not produced (backfill them).
    pub skipped: usize,
    /// Schedules whose runs could not be created this pass (quota, rate); tried again.
    pub deferred: usize,
}

fn decode(r: &AnyRow) -> StoreResult<Schedule> {
    const T: &str = "schedules";
    Ok(Schedule {
        id: row::parse(T, &row::text(r, "id")?, ScheduleId::parse)?,
        cron: row::text(r, "cron")?,
        timezone: row::opt_text(r, "timezone")?,
        queue: row::parse(T, &row::text(r, "queue")?, QueueName::parse)?,
        job_type: row::parse(T, &row::text(r, "job_type")?, JobType::parse)?,
        payload: row::parse(T, &row::text(r, "payload")?, |s| {
            serde_json::from_str::<serde_json::Value>(s)
        })?,
        priority: row::int(r, "priority")? as i32,
        max_attempts: row::int(r, "max_attempts")? as u32,
        created_at: Timestamp::from_micros(row::int(r, "created_at")?),
        next_fire_at: row::opt_int(r, "next_fire_at")?.map(Timestamp::from_micros),
        last_fire_at: row::opt_int(r, "last_fire_at")?.map(Timestamp::from_micros),
        paused_at: row::opt_int(r, "paused_at")?.map(Timestamp::from_micros),
    })
}

fn unknown(id: &str) -> StoreError {
    StoreError::rejected(
        ReasonCode::UnknownScheduleId,
        format!("no schedule {id} in this tenant"),
    )
}

/// The schedule's row, locked for the transaction.
async fn lock_schedule(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    id: ScheduleId,
    dialect: crate::Dialect,
) -> StoreResult<Option<Schedule>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules WHERE tenant = $1 AND id = $2{}",
        dialect.for_update()
    );
    sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| decode(&r))
        .transpose()
}

impl Store {
    /// Create a schedule and append its `schedule.create` entry in one transaction.
    pub async fn create_schedule_audited(
        &self,
        tenant: &TenantId,
        new: NewSchedule,
        mut draft: AuditDraft,
    ) -> StoreResult<Schedule> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let schedule = Schedule {
            id: ScheduleId::new(),
            cron: new.calendar.cron().to_string(),
            timezone: new.timezone,
            queue: new.queue,
            job_type: new.job_type,
            payload: new.payload,
            priority: new.priority,
            max_attempts: new.max_attempts,
            created_at: now,
            next_fire_at: new.calendar.next_after(now),
            last_fire_at: None,
            paused_at: None,
        };
        sqlx::query(&format!(
            "INSERT INTO schedules (tenant, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(tenant.as_str())
        .bind(schedule.id.to_string())
        .bind(schedule.cron.clone())
        .bind(schedule.timezone.clone())
        .bind(schedule.queue.as_str())
        .bind(schedule.job_type.as_str())
        .bind(schedule.payload.to_string())
        .bind(schedule.priority as i64)
        .bind(schedule.max_attempts as i64)
        .bind(now.as_micros())
        .bind(schedule.next_fire_at.map(Timestamp::as_micros))
        .bind(None::<i64>)
        .bind(None::<i64>)
        .execute(&mut *tx)
        .await?;
        draft.target = Some(warden_core::audit::Target::new(
            "schedule",
            schedule.id.to_string(),
        ));
        draft.metadata = json!({
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "queue": schedule.queue.as_str(),
            "type": schedule.job_type.as_str(),
        });
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    /// Schedules of the tenant, newest first, after `cursor` (an id), at most `limit`,
    /// and whether more follow.
    pub async fn list_schedules(
        &self,
        tenant: &TenantId,
        cursor: Option<ScheduleId>,
        limit: u32,
    ) -> StoreResult<(Vec<Schedule>, bool)> {
        let sql = format!(
            "SELECT {COLUMNS} FROM schedules WHERE tenant = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(cursor.map(|c| c.to_string()))
            .bind(limit as i64 + 1)
            .fetch_all(self.read_pool())
            .await?;
        let mut items = rows.iter().map(decode).collect::<StoreResult<Vec<_>>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok((items, more))
    }

    /// One schedule of the tenant.
    pub async fn get_schedule(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
    ) -> StoreResult<Option<Schedule>> {
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE tenant = $1 AND id = $2");
        sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(id.to_string())
            .fetch_optional(self.read_pool())
            .await?
            .map(|r| decode(&r))
            .transpose()
    }

    /// Produce the runs of `[from, to)` that do not exist yet, and append the
    /// `schedule.backfill` entry, in one transaction. Runs that exist (made by the scheduler
    /// or an earlier backfill) are answered with `created: false`. More than `max_runs`
    /// fire times in the range is `VALIDATION_FAILED` and changes nothing.
    pub async fn backfill_audited(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        from: Timestamp,
        to: Timestamp,
        max_runs: usize,
        mut draft: AuditDraft,
    ) -> StoreResult<Vec<Run>> {
        if from >= to {
            return Err(StoreError::Rejected(Rejection::field(
                "to",
                "must be after `from` (the range is [from, to))",
            )));
        }
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let schedule = lock_schedule(&mut tx, tenant, id, self.dialect())
            .await?
            .ok_or_else(|| unknown(&id.to_string()))?;
        let calendar = schedule
            .calendar()
            .map_err(|e| StoreError::corrupt("schedules", e.to_string()))?;
        let fires = calendar.fires_between(from, to, max_runs).map_err(|e| {
            StoreError::Rejected(Rejection::field(
                "to",
                format!("{e} (the maximum per backfill); split the range"),
            ))
        })?;
        let actor = draft.actor.display();
        let runs = self
            .produce_runs(&mut tx, tenant, &schedule, &fires, "backfill", &actor, now)
            .await?;
        let created = runs.iter().filter(|r| r.created).count();
        draft.metadata = json!({
            "from": from.to_rfc3339(),
            "to": to.to_rfc3339(),
            "runs": runs.len(),
            "created": created,
        });
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(runs)
    }

    /// Pause a schedule (no runs until resumed; its next fire time is cleared) or resume it
    /// (from the first fire time after now: runs missed while paused are not produced —
    /// backfill them), with its `schedule.pause` / `schedule.resume` entry, in one
    /// transaction. Pausing a paused schedule, or resuming a running one, is refused.
    pub async fn set_schedule_paused_audited(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        paused: bool,
        draft: AuditDraft,
    ) -> StoreResult<Schedule> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let Some(mut schedule) = lock_schedule(&mut tx, tenant, id, self.dialect()).await? else {
            return Err(unknown(&id.to_string()));
        };
        if schedule.paused_at.is_some() == paused {
            return Err(StoreError::pause_refused(&format!("schedule {id}"), paused));
        }
        if paused {
            schedule.paused_at = Some(now);
            schedule.next_fire_at = None;
        } else {
            let calendar = schedule
                .calendar()
                .map_err(|e| StoreError::corrupt("schedules", e.to_string()))?;
            schedule.paused_at = None;
            schedule.next_fire_at = calendar.next_after(now);
        }
        sqlx::query(
            "UPDATE schedules SET paused_at = $1, next_fire_at = $2 WHERE tenant = $3 AND id = $4",
        )
        .bind(schedule.paused_at.map(Timestamp::as_micros))
        .bind(schedule.next_fire_at.map(Timestamp::as_micros))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    /// Change a schedule's definition, with its `schedule.update` entry (`before` and
    /// `after`), in one transaction. Runs already produced are not touched. A new cron or
    /// zone moves the next fire time to the first one after now (a paused schedule stays
    /// paused, with none).
    pub async fn update_schedule_audited(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        change: ScheduleChange,
        mut draft: AuditDraft,
    ) -> StoreResult<Schedule> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let Some(before) = lock_schedule(&mut tx, tenant, id, self.dialect()).await? else {
            return Err(unknown(&id.to_string()));
        };
        let mut after = before.clone();
        if change.cron.is_some() || change.timezone.is_some() {
            let corrupt = |e: warden_core::schedule::ScheduleError| {
                StoreError::corrupt("schedules", e.to_string())
            };
            let cron = match change.cron {
                Some(c) => c,
                None => Cron::parse(&before.cron).map_err(corrupt)?,
            };
            if change.timezone.is_some() {
                after.timezone = change.timezone;
            }
            let calendar = Calendar::new(cron, zone(after.timezone.as_deref()).map_err(corrupt)?);
            after.cron = calendar.cron().to_string();
            if after.paused_at.is_none() {
                after.next_fire_at = calendar.next_after(now);
            }
        }
        let payload_changed = change
            .payload
            .as_ref()
            .is_some_and(|p| *p != before.payload);
        after.queue = change.queue.unwrap_or(after.queue);
        after.job_type = change.job_type.unwrap_or(after.job_type);
        after.payload = change.payload.unwrap_or(after.payload);
        after.priority = change.priority.unwrap_or(after.priority);
        after.max_attempts = change.max_attempts.unwrap_or(after.max_attempts);
        sqlx::query(
            "UPDATE schedules SET cron = $1, timezone = $2, queue = $3, job_type = $4, payload = $5, \
             priority = $6, max_attempts = $7, next_fire_at = $8 WHERE tenant = $9 AND id = $10",
        )
        .bind(after.cron.as_str())
        .bind(after.timezone.as_deref())
        .bind(after.queue.as_str())
        .bind(after.job_type.as_str())
        .bind(after.payload.to_string())
        .bind(i64::from(after.priority))
        .bind(i64::from(after.max_attempts))
        .bind(after.next_fire_at.map(Timestamp::as_micros))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        draft.metadata = json!({
            "before": definition(&before),
            "after": definition(&after),
            "payload_changed": payload_changed,
        });
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Delete a schedule and its record of runs, with its `schedule.delete` entry (the
    /// definition it had), in one transaction. The jobs it produced stay.
    pub async fn delete_schedule_audited(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        mut draft: AuditDraft,
    ) -> StoreResult<Schedule> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let Some(schedule) = lock_schedule(&mut tx, tenant, id, self.dialect()).await? else {
            return Err(unknown(&id.to_string()));
        };
        for sql in [
            "DELETE FROM schedule_runs WHERE tenant = $1 AND schedule_id = $2",
            "DELETE FROM schedules WHERE tenant = $1 AND id = $2",
        ] {
            sqlx::query(sql)
                .bind(tenant.as_str())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        draft.metadata = json!({ "deleted": definition(&schedule) });
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    /// The scheduler's pass: for every schedule whose next fire time has come, produce its
    /// due runs (those older than `catchup_micros` are skipped and counted), then move its
    /// next fire time past `now`. Each schedule is its own transaction.
    pub async fn fire_due_schedules(
        &self,
        now: Timestamp,
        catchup_micros: i64,
    ) -> StoreResult<FireReport> {
        let due = sqlx::query(
            "SELECT tenant, id FROM schedules WHERE next_fire_at IS NOT NULL AND next_fire_at <= $1 \
             ORDER BY next_fire_at LIMIT 100",
        )
        .bind(now.as_micros())
        .fetch_all(self.read_pool())
        .await?;
        let mut report = FireReport::default();
        for r in due {
            let tenant = row::parse("schedules", &row::text(&r, "tenant")?, TenantId::parse)?;
            let id = row::parse("schedules", &row::text(&r, "id")?, ScheduleId::parse)?;
            match self.fire_one(&tenant, id, now, catchup_micros).await {
                Ok((created, skipped)) => {
                    report.created += created;
                    report.skipped += skipped;
                }
                Err(StoreError::Rejected(rej)) => {
                    tracing::debug!(%tenant, schedule = %id, code = %rej.code, "schedule run deferred");
                    report.deferred += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn fire_one(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        now: Timestamp,
        catchup_micros: i64,
    ) -> StoreResult<(usize, usize)> {
        let mut tx = self.begin_write().await?;
        let Some(schedule) = lock_schedule(&mut tx, tenant, id, self.dialect()).await? else {
            return Ok((0, 0));
        };
        // Another node may have fired it since we looked.
        let Some(next) = schedule.next_fire_at.filter(|n| *n <= now) else {
            return Ok((0, 0));
        };
        let calendar = schedule
            .calendar()
            .map_err(|e| StoreError::corrupt("schedules", e.to_string()))?;
        let window_start = now.saturating_add_micros(-catchup_micros).max(next);
        let skipped = if window_start > next {
            calendar
                .fires_between(next, window_start, 100_000)
                .map_or(100_000, |f| f.len())
        } else {
            0
        };
        let until = now.saturating_add_micros(1);
        let fires = calendar
            .fires_between(window_start, until, 100_000)
            .map_err(|e| StoreError::corrupt("schedules", e.to_string()))?;
        let actor = format!("schedule:{id}");
        let runs = self
            .produce_runs(&mut tx, tenant, &schedule, &fires, "cron", &actor, now)
            .await?;
        sqlx::query(
            "UPDATE schedules SET next_fire_at = $1, last_fire_at = $2 WHERE tenant = $3 AND id = $4",
        )
        .bind(calendar.next_after(now).map(Timestamp::as_micros))
        .bind(fires.last().or(schedule.last_fire_at.as_ref()).map(|t| t.as_micros()))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if skipped > 0 {
            tracing::warn!(%tenant, schedule = %id, skipped, "missed runs older than the catch-up window were not produced; backfill them if they are needed");
        }
        Ok((runs.iter().filter(|r| r.created).count(), skipped))
    }

    /// In the caller's transaction (the schedule's row locked): the runs for `fires`,
    /// creating a job and a run row for each fire time that has none.
    #[allow(clippy::too_many_arguments)]
    async fn produce_runs(
        &self,
        tx: &mut AnyConnection,
        tenant: &TenantId,
        schedule: &Schedule,
        fires: &[Timestamp],
        origin: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<Run>> {
        let (Some(first), Some(last)) = (fires.first(), fires.last()) else {
            return Ok(Vec::new());
        };
        let mut existing: HashMap<i64, JobId> = HashMap::new();
        let rows = sqlx::query(
            "SELECT fire_at, job_id FROM schedule_runs \
             WHERE tenant = $1 AND schedule_id = $2 AND fire_at >= $3 AND fire_at <= $4",
        )
        .bind(tenant.as_str())
        .bind(schedule.id.to_string())
        .bind(first.as_micros())
        .bind(last.as_micros())
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            existing.insert(
                row::int(&r, "fire_at")?,
                row::parse("schedule_runs", &row::text(&r, "job_id")?, JobId::parse)?,
            );
        }
        let mut runs = Vec::with_capacity(fires.len());
        let mut new_jobs = Vec::new();
        for &fire in fires {
            match existing.get(&fire.as_micros()) {
                Some(&job_id) => runs.push(Run {
                    fire_time: fire,
                    job_id,
                    created: false,
                }),
                None => {
                    let job_id = JobId::new();
                    new_jobs.push(NewJob {
                        id: job_id,
                        client_chosen_id: false,
                        queue: schedule.queue.clone(),
                        job_type: schedule.job_type.clone(),
                        payload: schedule.payload.clone(),
                        priority: schedule.priority,
                        run_at: Some(fire),
                        max_attempts: schedule.max_attempts,
                        idempotency_key: None,
                        depends_on: Vec::new(),
                    });
                    runs.push(Run {
                        fire_time: fire,
                        job_id,
                        created: true,
                    });
                }
            }
        }
        if new_jobs.is_empty() {
            return Ok(runs);
        }
        self.enqueue_in_tx(tx, tenant, &new_jobs, &[], now, Some(actor))
            .await?;
        let created: Vec<&Run> = runs.iter().filter(|r| r.created).collect();
        let ids: Vec<(String, String)> = created
            .iter()
            .map(|r| (schedule.id.to_string(), r.job_id.to_string()))
            .collect();
        let mut insert = Insert::new(
            "schedule_runs (tenant, schedule_id, fire_at, job_id, origin, created_at)",
            &["text", "text", "bigint", "text", "text", "bigint"],
        );
        for (run, (schedule_id, job_id)) in created.iter().zip(&ids) {
            insert.row([
                tenant.as_str().into(),
                schedule_id.into(),
                run.fire_time.as_micros().into(),
                job_id.into(),
                origin.into(),
                now.as_micros().into(),
            ]);
        }
        insert.execute(tx).await?;
        Ok(runs)
    }
}
