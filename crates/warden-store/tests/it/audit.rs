//! The audit log: gapless per-tenant `seq`, listing with filters and keyset paging, leaf
//! hashes, stats, and the outbox events appends leave behind.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use warden_core::audit::{Actor, AuditDraft, Outcome, Target, leaf_hash};
use warden_core::events::{AuditEvent, TransitionEvent};
use warden_core::jobs::JobState;
use warden_core::names::AuditId;
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;
use warden_store::audit::{ActorCount, AuditFilter};
use warden_store::testing::TestDb;

use crate::{all_entries, audit_size, draft, enqueue_one, job_draft, new_job, tenant};

fn by(actor: &str, action: &str) -> AuditDraft {
    AuditDraft {
        actor: Actor::client(actor),
        ..draft(&tenant("acme"), action)
    }
}

#[tokio::test]
async fn append_audit_numbers_entries_gaplessly_per_tenant() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        for i in 0..5u64 {
            let e = store
                .append_audit(draft(&acme, "job.cancel"))
                .await
                .unwrap();
            assert_eq!(e.seq, i, "[{b:?}] acme seq");
            assert_eq!(e.tenant, "acme", "[{b:?}]");
            if i < 3 {
                let e = store
                    .append_audit(draft(&globex, "job.cancel"))
                    .await
                    .unwrap();
                assert_eq!(e.seq, i, "[{b:?}] globex numbers independently");
            }
        }
        assert_eq!(audit_size(&store, &acme).await, 5, "[{b:?}]");
        assert_eq!(audit_size(&store, &globex).await, 3, "[{b:?}]");
        assert_eq!(audit_size(&store, &tenant("initech")).await, 0, "[{b:?}]");
        let seqs: Vec<u64> = all_entries(&store, &acme, &AuditFilter::default())
            .await
            .iter()
            .map(|s| s.entry.seq)
            .collect();
        assert_eq!(seqs, vec![4, 3, 2, 1, 0], "[{b:?}] newest first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_appends_get_seq_0_to_49_without_gaps_or_duplicates() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                let mut d = draft(&t, "job.cancel");
                d.metadata = serde_json::json!({ "i": i });
                tokio::spawn(async move { store.append_audit(d).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            let e = task
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("[{b:?}] concurrent append: {e}"));
            seqs.push(e.seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..50).collect::<Vec<u64>>(), "[{b:?}] returned seqs");
        let mut stored: Vec<u64> = all_entries(&store, &t, &AuditFilter::default())
            .await
            .iter()
            .map(|s| s.entry.seq)
            .collect();
        stored.sort_unstable();
        assert_eq!(stored, (0..50).collect::<Vec<u64>>(), "[{b:?}] stored seqs");
        assert_eq!(audit_size(&store, &t).await, 50, "[{b:?}]");
        // Every draft landed exactly once.
        let is: HashSet<i64> = all_entries(&store, &t, &AuditFilter::default())
            .await
            .iter()
            .map(|s| s.entry.metadata["i"].as_i64().unwrap())
            .collect();
        assert_eq!(is.len(), 50, "[{b:?}] every append is stored once");
    }
}

#[tokio::test]
async fn list_audit_pages_newest_first_yielding_each_entry_once() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        for _ in 0..23 {
            store.append_audit(draft(&t, "job.cancel")).await.unwrap();
        }
        // Another tenant's entries never show up in acme's pages.
        store
            .append_audit(draft(&tenant("globex"), "job.cancel"))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let (page, more) = store
                .list_audit(&t, &AuditFilter::default(), cursor, 5)
                .await
                .unwrap();
            pages += 1;
            assert!(page.len() <= 5, "[{b:?}] page size");
            seen.extend(page.iter().map(|s| s.entry.seq));
            if !more {
                break;
            }
            assert_eq!(page.len(), 5, "[{b:?}] full pages while more follow");
            cursor = page.last().map(|s| s.entry.seq);
        }
        assert_eq!(pages, 5, "[{b:?}] 23 entries in pages of 5");
        assert_eq!(
            seen,
            (0..23).rev().collect::<Vec<u64>>(),
            "[{b:?}] each once, newest first"
        );
        let (empty, more) = store
            .list_audit(&t, &AuditFilter::default(), Some(0), 5)
            .await
            .unwrap();
        assert!(empty.is_empty() && !more, "[{b:?}] nothing before seq 0");
    }
}

#[tokio::test]
async fn list_audit_filters_by_actor_action_ticket_target_and_outcome() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let drafts = vec![
            // 0
            AuditDraft {
                target: Some(Target::new("job", "j-1")),
                ..by("alice", "job.cancel")
            },
            // 1
            AuditDraft {
                operator_ticket: Some("OPS-2".into()),
                target: Some(Target::new("job", "j-2")),
                ..by("bob", "job.replay")
            },
            // 2
            by("carol", "queue.pause").rejected(ReasonCode::MissingOperatorTicket),
            // 3
            AuditDraft {
                operator_ticket: None,
                target: Some(Target::new("job", "j-1")),
                ..by("alice", "job.replay")
            },
            // 4
            by("dave", "job.cancel"),
        ];
        for d in drafts {
            store.append_audit(d).await.unwrap();
        }
        let seqs = |f: AuditFilter| {
            let store = store.clone();
            let t = t.clone();
            async move {
                all_entries(&store, &t, &f)
                    .await
                    .iter()
                    .map(|s| s.entry.seq)
                    .collect::<Vec<u64>>()
            }
        };
        assert_eq!(
            seqs(AuditFilter {
                actors: vec!["client:alice".into()],
                ..Default::default()
            })
            .await,
            vec![3, 0],
            "[{b:?}] one actor"
        );
        assert_eq!(
            seqs(AuditFilter {
                actors: vec![
                    "client:bob".into(),
                    "client:dave".into(),
                    "client:nobody".into()
                ],
                ..Default::default()
            })
            .await,
            vec![4, 1],
            "[{b:?}] actors are OR-ed"
        );
        assert_eq!(
            seqs(AuditFilter {
                actions: vec!["job.replay".into()],
                ..Default::default()
            })
            .await,
            vec![3, 1],
            "[{b:?}] action"
        );
        assert_eq!(
            seqs(AuditFilter {
                actions: vec!["job.cancel".into(), "queue.pause".into()],
                ..Default::default()
            })
            .await,
            vec![4, 2, 0],
            "[{b:?}] actions are OR-ed"
        );
        assert_eq!(
            seqs(AuditFilter {
                ticket: Some("OPS-2".into()),
                ..Default::default()
            })
            .await,
            vec![1],
            "[{b:?}] ticket"
        );
        assert_eq!(
            seqs(AuditFilter {
                target: Some("j-1".into()),
                ..Default::default()
            })
            .await,
            vec![3, 0],
            "[{b:?}] target"
        );
        assert_eq!(
            seqs(AuditFilter {
                outcome: Some(Outcome::Rejected),
                ..Default::default()
            })
            .await,
            vec![2],
            "[{b:?}] rejected"
        );
        assert_eq!(
            seqs(AuditFilter {
                outcome: Some(Outcome::Allowed),
                ..Default::default()
            })
            .await,
            vec![4, 3, 1, 0],
            "[{b:?}] allowed"
        );
        assert_eq!(
            seqs(AuditFilter {
                actors: vec!["client:alice".into(), "client:bob".into()],
                actions: vec!["job.replay".into()],
                target: Some("j-1".into()),
                ..Default::default()
            })
            .await,
            vec![3],
            "[{b:?}] filters combine with AND"
        );
        assert!(
            seqs(AuditFilter {
                actors: vec!["client:alice".into()],
                ticket: Some("OPS-2".into()),
                ..Default::default()
            })
            .await
            .is_empty(),
            "[{b:?}] no match"
        );
        // Filters never cross tenants.
        assert!(
            all_entries(
                &store,
                &tenant("globex"),
                &AuditFilter {
                    actors: vec!["client:alice".into()],
                    ..Default::default()
                }
            )
            .await
            .is_empty(),
            "[{b:?}] another tenant sees nothing"
        );
        // Paging works under a filter too.
        let f = AuditFilter {
            actions: vec!["job.cancel".into(), "job.replay".into()],
            ..Default::default()
        };
        let (p1, more) = store.list_audit(&t, &f, None, 2).await.unwrap();
        assert!(more, "[{b:?}]");
        let (p2, more) = store
            .list_audit(&t, &f, Some(p1[1].entry.seq), 2)
            .await
            .unwrap();
        assert!(!more, "[{b:?}]");
        let pages: Vec<u64> = p1.iter().chain(&p2).map(|s| s.entry.seq).collect();
        assert_eq!(pages, vec![4, 3, 1, 0], "[{b:?}] filtered pages");
    }
}

#[tokio::test]
async fn list_audit_time_range_is_since_inclusive_until_exclusive() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut times: Vec<Timestamp> = Vec::new();
        for _ in 0..5 {
            let e = store.append_audit(draft(&t, "job.cancel")).await.unwrap();
            if let Some(last) = times.last() {
                assert!(e.created_at > *last, "[{b:?}] distinct times");
            }
            times.push(e.created_at);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let f = AuditFilter {
            since: Some(times[1]),
            until: Some(times[4]),
            ..Default::default()
        };
        let seqs: Vec<u64> = all_entries(&store, &t, &f)
            .await
            .iter()
            .map(|s| s.entry.seq)
            .collect();
        assert_eq!(
            seqs,
            vec![3, 2, 1],
            "[{b:?}] since inclusive, until exclusive"
        );
        let f = AuditFilter {
            since: Some(Timestamp::from_micros(times[4].as_micros() + 1)),
            ..Default::default()
        };
        assert!(
            all_entries(&store, &t, &f).await.is_empty(),
            "[{b:?}] after the last"
        );
        let f = AuditFilter {
            until: Some(times[0]),
            ..Default::default()
        };
        assert!(
            all_entries(&store, &t, &f).await.is_empty(),
            "[{b:?}] before the first"
        );
    }
}

#[tokio::test]
async fn get_audit_finds_entries_in_their_own_tenant_only() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let acme = tenant("acme");
        let e = store
            .append_audit(AuditDraft {
                target: Some(Target::new("queue", "emails")),
                metadata: serde_json::json!({"n": 3, "nested": {"list": [1, "two", true, null]}}),
                ..draft(&acme, "queue.pause")
            })
            .await
            .unwrap();
        let got = store.get_audit(&acme, e.id).await.unwrap();
        let got = got.unwrap_or_else(|| panic!("[{b:?}] own entry is found"));
        assert_eq!(got.entry, e, "[{b:?}] the entry round-trips exactly");
        assert_eq!(
            store.get_audit(&tenant("globex"), e.id).await.unwrap(),
            None,
            "[{b:?}] another tenant's entry is invisible"
        );
        assert_eq!(
            store.get_audit(&acme, AuditId::new()).await.unwrap(),
            None,
            "[{b:?}] unknown id"
        );
    }
}

#[tokio::test]
async fn stored_leaf_hash_is_the_hash_of_the_canonical_entry() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        for i in 0..3 {
            store
                .append_audit(AuditDraft {
                    metadata: serde_json::json!({"i": i, "note": "ünïcødé ✓"}),
                    ..draft(&t, "job.cancel")
                })
                .await
                .unwrap();
        }
        let entries = all_entries(&store, &t, &AuditFilter::default()).await;
        assert_eq!(entries.len(), 3, "[{b:?}]");
        let mut hashes = HashSet::new();
        for s in &entries {
            let canonical = s.entry.canonical().unwrap();
            assert_eq!(
                s.leaf_hash,
                leaf_hash(canonical.as_bytes()),
                "[{b:?}] leaf hash of seq {}",
                s.entry.seq
            );
            hashes.insert(s.leaf_hash);
            let one = store.get_audit(&t, s.entry.id).await.unwrap().unwrap();
            assert_eq!(one.leaf_hash, s.leaf_hash, "[{b:?}] get_audit agrees");
        }
        assert_eq!(hashes.len(), 3, "[{b:?}] distinct entries, distinct leaves");
    }
}

#[tokio::test]
async fn audit_stats_count_totals_actions_outcomes_and_top_actors() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let empty = store
            .audit_stats(&t, &AuditFilter::default())
            .await
            .unwrap();
        assert_eq!(empty.total, 0, "[{b:?}]");
        assert!(
            empty.first_at.is_none() && empty.last_at.is_none(),
            "[{b:?}]"
        );
        assert!(empty.top_actors.is_empty(), "[{b:?}]");

        // carol 3, alice 2, bob 2, dave 1 (ties broken by name).
        let plan = [
            ("bob", "job.cancel", false),
            ("carol", "job.cancel", false),
            ("alice", "job.replay", false),
            ("carol", "queue.pause", true),
            ("dave", "job.cancel", false),
            ("alice", "job.cancel", false),
            ("carol", "job.replay", false),
            ("bob", "queue.pause", true),
        ];
        let mut times = Vec::new();
        for (actor, action, reject) in plan {
            let mut d = by(actor, action);
            if reject {
                d = d.rejected(ReasonCode::MissingOperatorTicket);
            }
            times.push(store.append_audit(d).await.unwrap().created_at);
        }
        store
            .append_audit(AuditDraft {
                actor: Actor::client("zed"),
                ..draft(&tenant("globex"), "job.cancel")
            })
            .await
            .unwrap();

        let s = store
            .audit_stats(&t, &AuditFilter::default())
            .await
            .unwrap();
        assert_eq!(s.total, 8, "[{b:?}] total");
        assert_eq!(
            s.by_action,
            BTreeMap::from([
                ("job.cancel".to_owned(), 4),
                ("job.replay".to_owned(), 2),
                ("queue.pause".to_owned(), 2),
            ]),
            "[{b:?}] by_action"
        );
        assert_eq!(
            s.by_outcome,
            BTreeMap::from([("allowed".to_owned(), 6), ("rejected".to_owned(), 2)]),
            "[{b:?}] by_outcome"
        );
        let ac = |a: &str, n| ActorCount {
            actor: format!("client:{a}"),
            count: n,
        };
        assert_eq!(
            s.top_actors,
            vec![ac("carol", 3), ac("alice", 2), ac("bob", 2), ac("dave", 1)],
            "[{b:?}] top actors: count desc, then name"
        );
        assert_eq!(s.first_at, times.first().copied(), "[{b:?}] first_at");
        assert_eq!(s.last_at, times.last().copied(), "[{b:?}] last_at");

        let only_cancels = store
            .audit_stats(
                &t,
                &AuditFilter {
                    actions: vec!["job.cancel".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(only_cancels.total, 4, "[{b:?}] stats honour filters");
        assert_eq!(
            only_cancels.by_outcome,
            BTreeMap::from([("allowed".to_owned(), 4)]),
            "[{b:?}]"
        );
    }
}

#[tokio::test]
async fn audit_stats_keep_only_the_ten_most_frequent_actors() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        for i in 0..12 {
            for _ in 0..=i {
                store
                    .append_audit(by(&format!("a{i:02}"), "job.cancel"))
                    .await
                    .unwrap();
            }
        }
        let s = store
            .audit_stats(&t, &AuditFilter::default())
            .await
            .unwrap();
        assert_eq!(s.total, 78, "[{b:?}]");
        let names: Vec<&str> = s.top_actors.iter().map(|a| a.actor.as_str()).collect();
        let expected: Vec<String> = (2..12).rev().map(|i| format!("client:a{i:02}")).collect();
        assert_eq!(names, expected, "[{b:?}] ten, most frequent first");
    }
}

#[tokio::test]
async fn audited_actions_leave_a_metadata_only_event_in_the_outbox_until_acked() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme-outbox-tenant");
        assert!(
            store.outbox_peek(10).await.unwrap().is_empty(),
            "[{b:?}] empty"
        );
        let job = enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;
        // The enqueue's own events (the queue came into being, the job is available).
        let enqueued = store.outbox_peek(10).await.unwrap();
        let topics: Vec<&str> = enqueued.iter().map(|e| e.topic.as_str()).collect();
        assert_eq!(topics, ["queue", "job"], "[{b:?}]");
        store.outbox_ack(enqueued[1].id).await.unwrap();

        let mut d = job_draft(&t, "job.cancel", job.id);
        d.actor = Actor::client("secret-operator");
        store.cancel_job_audited(&t, job.id, d).await.unwrap();
        let entry = all_entries(&store, &t, &AuditFilter::default())
            .await
            .remove(0);

        let events = store.outbox_peek(10).await.unwrap();
        let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
        assert_eq!(
            topics,
            ["job", "audit"],
            "[{b:?}] the transition and the entry, committed with the cancel"
        );
        for ev in &events {
            for secret in [
                "acme-outbox-tenant",
                "secret-operator",
                "OPS-1",
                "127.0.0.1",
                "req-1",
                "tok-1",
            ] {
                assert!(
                    !ev.payload.contains(secret),
                    "[{b:?}] {secret} leaked: {}",
                    ev.payload
                );
            }
        }
        let transition: TransitionEvent = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(transition.job_id, job.id, "[{b:?}]");
        assert_eq!(transition.state, JobState::Canceled, "[{b:?}]");
        let decoded: AuditEvent = serde_json::from_str(&events[1].payload).unwrap();
        assert_eq!(decoded.event_id, entry.entry.id, "[{b:?}]");
        assert_eq!(decoded.action, "job.cancel", "[{b:?}]");
        assert_eq!(decoded.outcome, "allowed", "[{b:?}]");
        assert_eq!(decoded.target, Some(format!("job:{}", job.id)), "[{b:?}]");

        // Two more, then ack the first only.
        store.append_audit(draft(&t, "queue.pause")).await.unwrap();
        store.append_audit(draft(&t, "queue.resume")).await.unwrap();
        let events = store.outbox_peek(10).await.unwrap();
        assert_eq!(events.len(), 4, "[{b:?}]");
        assert!(
            events.windows(2).all(|w| w[0].id < w[1].id),
            "[{b:?}] oldest first"
        );
        assert_eq!(
            store.outbox_peek(2).await.unwrap().len(),
            2,
            "[{b:?}] limit"
        );
        assert_eq!(store.outbox_ack(events[0].id).await.unwrap(), 1, "[{b:?}]");
        let rest = store.outbox_peek(10).await.unwrap();
        assert_eq!(rest, events[1..].to_vec(), "[{b:?}] acked event is gone");
        assert_eq!(store.outbox_ack(events[3].id).await.unwrap(), 3, "[{b:?}]");
        assert!(
            store.outbox_peek(10).await.unwrap().is_empty(),
            "[{b:?}] all acked"
        );
        // The audit log itself is untouched by acks.
        assert_eq!(audit_size(&store, &t).await, 3, "[{b:?}]");
    }
}

#[tokio::test]
async fn audit_stats_from_hourly_counters_equal_a_full_scan_for_any_time_range() {
    const HOUR: i64 = 3_600_000_000;
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut times = Vec::new();
        for i in 0..30 {
            let mut d = by(&format!("a{}", i % 4), ["job.cancel", "job.replay"][i % 2]);
            if i % 5 == 0 {
                d = d.rejected(ReasonCode::ForbiddenScope);
            }
            times.push(store.append_audit(d).await.unwrap().created_at.as_micros());
        }
        // Interesting bounds: around the entries and around the hour boundaries near them,
        // so every split (whole hours only, edges only, both) is taken wherever "now" falls.
        let (first, last) = (times[0], times[times.len() - 1]);
        let h = first.div_euclid(HOUR) * HOUR;
        let mut points = vec![
            first - 1,
            first,
            first + 1,
            times[15],
            last,
            last + 1,
            h - HOUR,
            h - 1,
            h,
            h + 1,
            h + HOUR - 1,
            h + HOUR,
            h + 2 * HOUR,
        ];
        points.sort_unstable();
        let bounds: Vec<Option<Timestamp>> = std::iter::once(None)
            .chain(points.iter().map(|&p| Some(Timestamp::from_micros(p))))
            .collect();
        for since in &bounds {
            for until in &bounds {
                for actors in [vec![], vec!["client:a1".to_owned()]] {
                    let f = AuditFilter {
                        since: *since,
                        until: *until,
                        actors,
                        ..Default::default()
                    };
                    let fast = store.audit_stats(&t, &f).await.unwrap();
                    let scan = store.audit_stats_scan(&t, &f).await.unwrap();
                    assert_eq!(fast, scan, "[{b:?}] {f:?}");
                }
            }
        }
        let all = store
            .audit_stats(&t, &AuditFilter::default())
            .await
            .unwrap();
        assert_eq!(all.total, 30, "[{b:?}] the counters saw every append");
    }
}

#[tokio::test]
async fn search_finds_entries_by_reason_ticket_and_metadata_once_indexed() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut a = draft(&t, "job.cancel");
        a.operator_reason = Some("Database failover drill".into());
        a.operator_ticket = Some("INC-4711".into());
        let mut c = draft(&t, "job.replay");
        c.operator_reason = Some("rerun nightly export".into());
        c.metadata = serde_json::json!({"region": "eu-west", "note": ["customer Zebra"]});
        let mut other = draft(&tenant("globex"), "job.cancel");
        other.operator_reason = Some("database failover drill".into());
        for d in [a, c, other] {
            store.append_audit(d).await.unwrap();
        }
        let search = |q: &str| AuditFilter {
            q: Some(q.into()),
            ..Default::default()
        };
        assert!(
            all_entries(&store, &t, &search("failover"))
                .await
                .is_empty(),
            "[{b:?}] nothing is searchable before the indexer runs"
        );
        assert_eq!(store.index_audit_search(1_000).await.unwrap(), 3, "[{b:?}]");
        assert_eq!(
            store.index_audit_search(1_000).await.unwrap(),
            0,
            "[{b:?}] idempotent"
        );
        let actions = |v: Vec<warden_store::audit::StoredEntry>| -> Vec<String> {
            v.into_iter().map(|s| s.entry.action).collect()
        };
        for (q, want) in [
            ("failover", vec!["job.cancel"]),
            ("DATABASE drill", vec!["job.cancel"]),
            ("INC-4711", vec!["job.cancel"]),
            ("zebra", vec!["job.replay"]),
            ("eu-west", vec!["job.replay"]),
            ("region", vec!["job.replay"]),
            ("failover zebra", vec![]),
            ("\"OR\" * NEAR(", vec![]),
        ] {
            assert_eq!(
                actions(all_entries(&store, &t, &search(q)).await),
                want,
                "[{b:?}] q={q:?}"
            );
        }
        // Combined with another filter, and another tenant's entry never shows.
        let f = AuditFilter {
            actions: vec!["job.replay".into()],
            q: Some("failover".into()),
            ..Default::default()
        };
        assert!(all_entries(&store, &t, &f).await.is_empty(), "[{b:?}]");
        assert_eq!(
            all_entries(&store, &tenant("globex"), &search("failover"))
                .await
                .len(),
            1,
            "[{b:?}]"
        );
    }
}

#[tokio::test]
async fn actions_seen_reads_the_watched_actions_of_one_tenant_in_pages() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        // acme: replay, cancel, replay, pause, replay (seq 0..5); globex: replays only.
        for action in [
            "job.replay",
            "job.cancel",
            "job.replay",
            "queue.pause",
            "job.replay",
        ] {
            store.append_audit(by("ops", action)).await.unwrap();
        }
        for _ in 0..3 {
            store
                .append_audit(draft(&globex, "job.replay"))
                .await
                .unwrap();
        }
        let (seen, next) = store
            .actions_seen(&acme, 0, 5, &["job.replay"], 100)
            .await
            .unwrap();
        let seqs: Vec<u64> = seen.iter().map(|s| s.seq).collect();
        assert_eq!(
            seqs,
            vec![0, 2, 4],
            "[{b:?}] only the watched action, oldest first"
        );
        assert_eq!(next, 5, "[{b:?}] read to the end of the range");
        assert!(
            seen.iter()
                .all(|s| s.actor == "client:ops" && s.action == "job.replay"),
            "[{b:?}] {seen:?}"
        );
        let all = all_entries(&store, &acme, &AuditFilter::default()).await;
        let written = all.iter().find(|e| e.entry.seq == 2).unwrap();
        assert_eq!(seen[1].created_at, written.entry.created_at, "[{b:?}]");

        // A full page continues after its last entry; the rest follows from there.
        let (page, next) = store
            .actions_seen(&acme, 0, 5, &["job.replay", "queue.pause"], 2)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![0, 2],
            "[{b:?}]"
        );
        assert_eq!(next, 3, "[{b:?}] a full page stops after its last entry");
        let (rest, next) = store
            .actions_seen(&acme, next, 5, &["job.replay", "queue.pause"], 2)
            .await
            .unwrap();
        assert_eq!(
            rest.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![3, 4],
            "[{b:?}]"
        );
        assert_eq!(next, 5, "[{b:?}]");

        // The end of the range bounds the read; nothing watched, nothing read.
        let (seen, next) = store
            .actions_seen(&acme, 1, 2, &["job.replay"], 100)
            .await
            .unwrap();
        assert!(seen.is_empty(), "[{b:?}]");
        assert_eq!(next, 2, "[{b:?}]");
        let (seen, next) = store.actions_seen(&acme, 0, 5, &[], 100).await.unwrap();
        assert!(seen.is_empty() && next == 5, "[{b:?}]");
    }
}
