//! Schedules: creation (audited), the scheduler producing each fire time exactly once —
//! across concurrent nodes and repeated passes — the catch-up window, and backfill
//! (idempotent, bounded, audited).

use std::collections::HashSet;

use warden_core::audit::Outcome;
use warden_core::jobs::JobState;
use warden_core::names::{ScheduleId, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::schedule::{Calendar, Schedule};
use warden_core::time::Timestamp;
use warden_store::Store;
use warden_store::audit::AuditFilter;
use warden_store::schedules::NewSchedule;
use warden_store::testing::TestDb;

use crate::{all_entries, all_jobs, assert_rejected, draft, job, job_type, queue, tenant};

const MINUTE: i64 = 60_000_000;

fn new_schedule(cron: &str, tz: Option<&str>) -> NewSchedule {
    NewSchedule {
        calendar: Calendar::parse(cron, tz).unwrap(),
        timezone: tz.map(str::to_owned),
        queue: queue("reports"),
        job_type: job_type("daily-report"),
        payload: serde_json::json!({"kind": "summary"}),
        priority: 5,
        max_attempts: 4,
    }
}

async fn create(store: &Store, t: &TenantId, cron: &str) -> Schedule {
    store
        .create_schedule_audited(t, new_schedule(cron, None), draft(t, "schedule.create"))
        .await
        .unwrap()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

#[tokio::test]
async fn a_schedule_is_created_audited_and_listed_with_its_next_fire_time() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let s = create(&store, &t, "0 * * * *").await;
        let next = s.next_fire_at.expect("fires");
        assert!(next > s.created_at, "[{b:?}] next fire is after creation");
        assert_eq!(next.as_micros() % (60 * MINUTE), 0, "[{b:?}] on the hour");
        let listed = store.list_schedules(&t, None, 10).await.unwrap();
        assert_eq!(listed, (vec![s.clone()], false), "[{b:?}]");
        assert_eq!(store.get_schedule(&t, s.id).await.unwrap(), Some(s.clone()));
        // Another tenant sees nothing.
        let other = tenant("globex");
        assert!(
            store
                .list_schedules(&other, None, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        assert_eq!(store.get_schedule(&other, s.id).await.unwrap(), None);
        let entries = all_entries(&store, &t, &AuditFilter::default()).await;
        assert_eq!(entries.len(), 1, "[{b:?}]");
        let e = &entries[0].entry;
        assert_eq!(e.action, "schedule.create");
        assert_eq!(e.target_kind.as_deref(), Some("schedule"));
        assert_eq!(e.target_id, Some(s.id.to_string()));
        assert_eq!(e.metadata["cron"], "0 * * * *", "[{b:?}]");
    }
}

#[tokio::test]
async fn each_fire_time_produces_exactly_one_job_across_concurrent_nodes() {
    for db in TestDb::all().await {
        let (a, c) = (db.open().await, db.open().await);
        let b = db.backend;
        let t = tenant("acme");
        let s = create(&a, &t, "* * * * *").await;
        let first = s.next_fire_at.unwrap();
        // Five minutes later, two nodes run the scheduler at once, several times.
        let now = first.saturating_add_micros(4 * MINUTE + 1);
        let mut tasks = Vec::new();
        for store in [a.clone(), c.clone(), a.clone(), c.clone()] {
            tasks.push(tokio::spawn(async move {
                store
                    .fire_due_schedules(now, 3600 * 1_000_000)
                    .await
                    .unwrap()
            }));
        }
        let mut created = 0;
        for task in tasks {
            created += task.await.unwrap().created;
        }
        assert_eq!(created, 5, "[{b:?}] five fire times, five runs in all");
        let jobs = all_jobs(&a, &t).await;
        assert_eq!(jobs.len(), 5, "[{b:?}] no duplicate jobs");
        let run_ats: HashSet<i64> = jobs.iter().map(|j| j.run_at.as_micros()).collect();
        let expected: HashSet<i64> = (0..5).map(|i| first.as_micros() + i * MINUTE).collect();
        assert_eq!(
            run_ats, expected,
            "[{b:?}] one job per fire time, run_at = fire time"
        );
        for j in &jobs {
            assert_eq!(j.queue, queue("reports"));
            assert_eq!(j.priority, 5);
            assert_eq!(j.max_attempts, 4);
            assert_eq!(j.state, JobState::Available, "[{b:?}]");
            let shown = job(&a, &t, j.id).await;
            let actor = shown.timeline.unwrap()[0].actor.clone();
            assert_eq!(actor, Some(format!("schedule:{}", s.id)), "[{b:?}]");
        }
        // A later pass at the same moment produces nothing; the next fire time moved on.
        let again = a.fire_due_schedules(now, 3600 * 1_000_000).await.unwrap();
        assert_eq!(again.created, 0, "[{b:?}]");
        let s2 = a.get_schedule(&t, s.id).await.unwrap().unwrap();
        assert_eq!(
            s2.next_fire_at,
            Some(first.saturating_add_micros(5 * MINUTE)),
            "[{b:?}] next fire after now"
        );
        assert_eq!(
            s2.last_fire_at,
            Some(first.saturating_add_micros(4 * MINUTE))
        );
        // The scheduler's runs are not operator actions: only schedule.create is audited.
        assert_eq!(all_entries(&a, &t, &AuditFilter::default()).await.len(), 1);
    }
}

#[tokio::test]
async fn runs_older_than_the_catch_up_window_are_skipped_not_flooded() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let s = create(&store, &t, "* * * * *").await;
        let first = s.next_fire_at.unwrap();
        // Down for 3 hours; the window is 10 minutes.
        let now = first.saturating_add_micros(180 * MINUTE);
        let r = store.fire_due_schedules(now, 10 * MINUTE).await.unwrap();
        assert_eq!(r.created, 11, "[{b:?}] fire times in [now-10min, now]");
        assert_eq!(r.skipped, 170, "[{b:?}] older fire times skipped");
        assert_eq!(all_jobs(&store, &t).await.len(), 11);
    }
}

#[tokio::test]
async fn backfill_is_idempotent_bounded_and_audited() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let s = create(&store, &t, "0 * * * *").await;
        let bf = |from: &str, to: &str, max: usize| {
            let store = store.clone();
            let t = t.clone();
            let (from, to) = (ts(from), ts(to));
            async move {
                store
                    .backfill_audited(&t, s.id, from, to, max, draft(&t, "schedule.backfill"))
                    .await
            }
        };
        let runs = bf("2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z", 100)
            .await
            .unwrap();
        let fires: Vec<String> = runs.iter().map(|r| r.fire_time.to_rfc3339()).collect();
        assert_eq!(
            fires,
            [
                "2026-01-01T00:00:00.000000Z",
                "2026-01-01T01:00:00.000000Z",
                "2026-01-01T02:00:00.000000Z"
            ],
            "[{b:?}] [from, to)"
        );
        assert!(runs.iter().all(|r| r.created), "[{b:?}]");
        // Overlapping again: the existing runs come back, only the new one is created.
        let again = bf("2026-01-01T01:00:00Z", "2026-01-01T04:00:00Z", 100)
            .await
            .unwrap();
        let created: Vec<bool> = again.iter().map(|r| r.created).collect();
        assert_eq!(created, [false, false, true], "[{b:?}]");
        assert_eq!(
            again[0].job_id, runs[1].job_id,
            "[{b:?}] same job for the same fire time"
        );
        assert_eq!(all_jobs(&store, &t).await.len(), 4, "[{b:?}]");
        let j = job(&store, &t, runs[0].job_id).await;
        assert_eq!(j.run_at, ts("2026-01-01T00:00:00Z"));
        assert_eq!(
            j.state,
            JobState::Available,
            "[{b:?}] a past run is runnable now"
        );

        // Too many runs, reversed and empty ranges, unknown schedules: refused, nothing made.
        let too_many = bf("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", 23).await;
        let r = assert_rejected(b, too_many, ReasonCode::ValidationFailed);
        assert_eq!(r.errors[0].field, "to");
        let reversed = bf("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", 100).await;
        assert_rejected(b, reversed, ReasonCode::ValidationFailed);
        let unknown = store
            .backfill_audited(
                &t,
                ScheduleId::new(),
                ts("2026-01-01T00:00:00Z"),
                ts("2026-01-01T03:00:00Z"),
                100,
                draft(&t, "schedule.backfill"),
            )
            .await;
        assert_rejected(b, unknown, ReasonCode::UnknownScheduleId);
        let other = tenant("globex");
        let foreign = store
            .backfill_audited(
                &other,
                s.id,
                ts("2026-01-01T00:00:00Z"),
                ts("2026-01-01T03:00:00Z"),
                100,
                draft(&other, "schedule.backfill"),
            )
            .await;
        assert_rejected(b, foreign, ReasonCode::UnknownScheduleId);
        assert_eq!(all_jobs(&store, &t).await.len(), 4, "[{b:?}] nothing more");

        let filter = AuditFilter {
            actions: vec!["schedule.backfill".into()],
            ..AuditFilter::default()
        };
        let entries = all_entries(&store, &t, &filter).await;
        assert_eq!(entries.len(), 2, "[{b:?}] one entry per allowed backfill");
        let e = &entries[0].entry;
        assert_eq!(e.outcome, Outcome::Allowed);
        assert_eq!(e.metadata["runs"], 3);
        assert_eq!(e.metadata["created"], 1);
        assert_eq!(e.metadata["from"], "2026-01-01T01:00:00.000000Z");
    }
}

#[tokio::test]
async fn the_scheduler_finds_runs_a_backfill_already_made() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let s = create(&store, &t, "* * * * *").await;
        let first = s.next_fire_at.unwrap();
        // Backfill the first two future fire times before the scheduler gets there.
        let runs = store
            .backfill_audited(
                &t,
                s.id,
                first,
                first.saturating_add_micros(2 * MINUTE),
                100,
                draft(&t, "schedule.backfill"),
            )
            .await
            .unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            job(&store, &t, runs[0].job_id).await.state,
            JobState::Pending,
            "[{b:?}] a future run waits for its time"
        );
        let r = store
            .fire_due_schedules(
                first.saturating_add_micros(2 * MINUTE + 1),
                3600 * 1_000_000,
            )
            .await
            .unwrap();
        assert_eq!(r.created, 1, "[{b:?}] only the third fire time was missing");
        assert_eq!(all_jobs(&store, &t).await.len(), 3, "[{b:?}]");
    }
}

#[tokio::test]
async fn a_deleted_schedule_takes_its_runs_record_but_not_its_jobs_and_an_edit_moves_its_next_fire()
{
    use warden_core::schedule::Cron;
    use warden_store::schedules::ScheduleChange;
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let s = create(&store, &t, "0 * * * *").await;

        // An edit of the cron moves the next fire time; unnamed fields stay.
        let change = ScheduleChange {
            cron: Some(Cron::parse("30 * * * *").unwrap()),
            ..Default::default()
        };
        let edited = store
            .update_schedule_audited(&t, s.id, change, draft(&t, "schedule.update"))
            .await
            .unwrap();
        let next = edited.next_fire_at.expect("fires");
        assert_eq!(
            next.as_micros() % (60 * MINUTE),
            30 * MINUTE,
            "[{b:?}] at :30"
        );
        assert_eq!(
            (edited.queue.clone(), edited.priority),
            (s.queue.clone(), 5),
            "[{b:?}]"
        );
        assert_eq!(
            store.get_schedule(&t, s.id).await.unwrap(),
            Some(edited),
            "[{b:?}]"
        );

        let runs = store
            .backfill_audited(
                &t,
                s.id,
                ts("2026-01-01T00:00:00Z"),
                ts("2026-01-01T02:00:00Z"),
                100,
                draft(&t, "schedule.backfill"),
            )
            .await
            .unwrap();
        assert_eq!(runs.len(), 2, "[{b:?}]");

        // Another tenant's delete is unknown and changes nothing.
        let foreign = store
            .delete_schedule_audited(
                &tenant("globex"),
                s.id,
                draft(&tenant("globex"), "schedule.delete"),
            )
            .await;
        assert_rejected(b, foreign, ReasonCode::UnknownScheduleId);
        assert!(
            store.get_schedule(&t, s.id).await.unwrap().is_some(),
            "[{b:?}]"
        );

        store
            .delete_schedule_audited(&t, s.id, draft(&t, "schedule.delete"))
            .await
            .unwrap();
        assert_eq!(store.get_schedule(&t, s.id).await.unwrap(), None, "[{b:?}]");
        let left = store
            .execute_raw(&format!(
                "DELETE FROM schedule_runs WHERE schedule_id = '{}'",
                s.id
            ))
            .await
            .unwrap();
        assert_eq!(left, 0, "[{b:?}] its runs record went with it");
        assert_eq!(all_jobs(&store, &t).await.len(), 2, "[{b:?}] its jobs stay");
        let gone = store
            .update_schedule_audited(
                &t,
                s.id,
                ScheduleChange::default(),
                draft(&t, "schedule.update"),
            )
            .await;
        assert_rejected(b, gone, ReasonCode::UnknownScheduleId);
        let actions: Vec<String> = all_entries(&store, &t, &AuditFilter::default())
            .await
            .iter()
            .map(|e| e.entry.action.clone())
            .collect();
        assert_eq!(
            actions[..4],
            [
                "schedule.delete",
                "schedule.backfill",
                "schedule.update",
                "schedule.create"
            ],
            "[{b:?}] one entry per change, committed with it"
        );
    }
}
