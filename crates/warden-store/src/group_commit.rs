//! Group commit of finishes: the outcomes that workers report while the writer is busy
//! are settled together, in one transaction, when it is free.
//!
//! A busy node has several finish requests waiting on its one writer (SQLite) or its few
//! connections (PostgreSQL) at any moment; each paid for its own transaction — its
//! `BEGIN`, its reads, its statements (each a hand-off to the database and back, which
//! waits for a free runtime thread under load), its commit and, being durable, its disk
//! flush. Here the first finish of a tenant that finds no settling under way starts one
//! (a task of its own, so no caller is held to serve the others); every finish that
//! arrives meanwhile waits in the tenant's lane, and when the transaction ends the task
//! takes everything waiting, up to [`GROUP_ITEMS`] items, into the next one. Nothing
//! waits on a timer: an idle node settles a lone finish at once, and a busy one gathers
//! exactly what queued while it was busy (decision 0011).
//!
//! SQLite only: it has one writer, so finishes queue for it anyway. PostgreSQL settles
//! finishes in parallel on its pool, and grouping them there measured no faster (a few
//! per cent slower in five of seven alternated runs), so each settles alone, as before.
//!
//! Each caller gets the outcomes of its own items, in its order, as if its finish had run
//! alone right after those gathered before it: items are settled in arrival order, and the
//! settling already answers a job finished twice (its second finish no longer holds the
//! lease). A group whose transaction fails is settled again one finish at a time, so a
//! finish that cannot commit gets its own error and takes no other caller's outcomes with
//! it.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use tokio::sync::oneshot;
use warden_core::names::TenantId;
use warden_core::reason::ReasonCode;

use crate::leases::{FinishItem, Finished};
use crate::{Backend, Store, StoreError, StoreResult};

/// The most items one group settles (a finish request carries up to 1,000; the settling
/// chunks its statements itself).
pub(crate) const GROUP_ITEMS: usize = 5_000;

/// What one finish is answered.
pub(crate) type Outcomes = Vec<Result<Finished, ReasonCode>>;

/// One finish waiting for the group it will be settled in.
#[derive(Debug)]
struct Waiter {
    items: Vec<FinishItem>,
    reply: oneshot::Sender<StoreResult<Outcomes>>,
}

/// A tenant's finishes waiting while a group of its is being settled.
#[derive(Debug, Default)]
struct Lane {
    waiting: Vec<Waiter>,
}

/// The lanes of the tenants with a settling under way. A tenant has a lane exactly while
/// its settling task runs.
#[derive(Debug, Default)]
pub(crate) struct FinishLanes {
    lanes: Mutex<HashMap<TenantId, Lane>>,
}

impl FinishLanes {
    /// Queue a finish; true when no settling runs for the tenant, so the caller starts one.
    fn join(&self, tenant: &TenantId, waiter: Waiter) -> bool {
        let mut lanes = self.lanes.lock().expect("the lanes lock is never poisoned");
        if let Some(lane) = lanes.get_mut(tenant) {
            // A settling runs (its lane lives until it finds nothing waiting).
            lane.waiting.push(waiter);
            return false;
        }
        lanes.insert(
            tenant.clone(),
            Lane {
                waiting: vec![waiter],
            },
        );
        true
    }

    /// The next group: the waiting finishes in arrival order, up to [`GROUP_ITEMS`] items
    /// (at least one finish). None, and the lane is gone, when nothing waits.
    fn next_group(&self, tenant: &TenantId) -> Option<Vec<Waiter>> {
        let mut lanes = self.lanes.lock().expect("the lanes lock is never poisoned");
        let lane = lanes.get_mut(tenant)?;
        if lane.waiting.is_empty() {
            lanes.remove(tenant);
            return None;
        }
        let mut items = 0;
        let take = lane
            .waiting
            .iter()
            .take_while(|w| {
                let first = items == 0;
                items += w.items.len();
                first || items <= GROUP_ITEMS
            })
            .count();
        Some(lane.waiting.drain(..take).collect())
    }

    /// Drop the tenant's lane and the finishes waiting in it (their callers get an error):
    /// for a settling task that ends without draining it — it panicked, or the runtime is
    /// shutting down — so that the next finish starts a new one instead of waiting for a
    /// task that is gone.
    fn abandon(&self, tenant: &TenantId) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.remove(tenant);
    }
}

/// Abandons the tenant's lane unless the settling task drained it.
struct DrainGuard<'a> {
    lanes: &'a FinishLanes,
    tenant: &'a TenantId,
    drained: bool,
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if !self.drained {
            self.lanes.abandon(self.tenant);
        }
    }
}

impl Store {
    /// Settle reported outcomes: each item completes or fails the job it names if the
    /// lease it presents is still held (`running` under that `lease_id`); a failure retries
    /// with the queue's backoff or dead-letters the job. Per item, its new state, or
    /// `LEASE_NOT_HELD` / `UNKNOWN_JOB_ID` (nothing changed for it). Durable, with each
    /// transition's timeline entry and event.
    ///
    /// On SQLite, finishes that arrive while another of the tenant's is being settled are
    /// settled together, in one transaction (see [`crate::group_commit`]).
    pub async fn finish_jobs(
        &self,
        tenant: &TenantId,
        items: &[FinishItem],
    ) -> StoreResult<Outcomes> {
        if self.backend() == Backend::Postgres {
            return self.settle_finishes(tenant, items).await;
        }
        let (reply, answer) = oneshot::channel();
        let waiter = Waiter {
            items: items.to_vec(),
            reply,
        };
        if self.inner.finish_lanes.join(tenant, waiter) {
            let (store, tenant) = (self.clone(), tenant.clone());
            tokio::spawn(async move { store.settle_lane(&tenant).await });
        }
        // No answer: the settling task ended without reaching this finish (`DrainGuard`).
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }

    /// Settle the tenant's waiting finishes, group after group, until none waits.
    async fn settle_lane(&self, tenant: &TenantId) {
        let lanes = &self.inner.finish_lanes;
        let mut guard = DrainGuard {
            lanes,
            tenant,
            drained: false,
        };
        while let Some(group) = lanes.next_group(tenant) {
            self.settle_group(tenant, group).await;
        }
        guard.drained = true;
    }

    /// Settle one group in one transaction and answer each finish its own outcomes; if the
    /// transaction fails, settle the finishes one by one.
    async fn settle_group(&self, tenant: &TenantId, group: Vec<Waiter>) {
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(group.len());
        let mut items = Vec::new();
        let mut replies = Vec::with_capacity(group.len());
        for w in group {
            ranges.push(items.len()..items.len() + w.items.len());
            items.extend(w.items);
            replies.push(w.reply);
        }
        let together = self.settle_finishes(tenant, &items).await;
        match together {
            Ok(mut outcomes) => {
                // Split from the back so each answer is moved out, not copied.
                for (range, reply) in ranges.into_iter().zip(replies).rev() {
                    let mine = outcomes.split_off(range.start);
                    // A caller that went away still had its outcomes committed.
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) if replies.len() == 1 => {
                let _ = replies.pop().expect("one reply").send(Err(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, finishes = replies.len(), "a group of finishes failed; settling them one by one");
                for (range, reply) in ranges.into_iter().zip(replies) {
                    let _ = reply.send(self.settle_finishes(tenant, &items[range]).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::names::JobId;

    use crate::leases::Finish;

    fn waiter(n: usize) -> (Waiter, oneshot::Receiver<StoreResult<Outcomes>>) {
        let (reply, rx) = oneshot::channel();
        let items = (0..n)
            .map(|_| FinishItem {
                id: JobId::new(),
                lease_id: "l".into(),
                finish: Finish::Complete { result: None },
            })
            .collect();
        (Waiter { items, reply }, rx)
    }

    #[test]
    fn the_first_finish_starts_a_settling_and_later_ones_wait_in_its_lane() {
        let lanes = FinishLanes::default();
        let (acme, umbrella) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("umbrella").unwrap(),
        );
        assert!(lanes.join(&acme, waiter(1).0), "none runs: start one");
        assert!(!lanes.join(&acme, waiter(2).0), "one runs: wait");
        assert!(lanes.join(&umbrella, waiter(1).0), "tenants settle apart");
        let group = lanes.next_group(&acme).unwrap();
        assert_eq!(
            group.iter().map(|w| w.items.len()).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(
            !lanes.join(&acme, waiter(4).0),
            "the settling still runs: the next waits for it"
        );
        assert_eq!(lanes.next_group(&acme).unwrap().len(), 1);
        assert!(lanes.next_group(&acme).is_none(), "drained: the lane goes");
        assert!(
            lanes.join(&acme, waiter(1).0),
            "and the next finish starts anew"
        );
    }

    #[test]
    fn an_abandoned_lane_answers_its_waiters_with_an_error_and_the_next_finish_starts_anew() {
        let lanes = FinishLanes::default();
        let acme = TenantId::parse("acme").unwrap();
        let (first, mut first_rx) = waiter(1);
        let (second, mut second_rx) = waiter(1);
        assert!(lanes.join(&acme, first));
        assert!(!lanes.join(&acme, second));
        let taken = lanes.next_group(&acme).unwrap();
        assert_eq!(taken.len(), 2);
        // The task dies holding the group, with one more finish waiting.
        let (third, mut third_rx) = waiter(1);
        assert!(!lanes.join(&acme, third));
        drop(DrainGuard {
            lanes: &lanes,
            tenant: &acme,
            drained: false,
        });
        drop(taken);
        for rx in [&mut first_rx, &mut second_rx, &mut third_rx] {
            assert!(
                matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
                "no answer will come: the caller errs"
            );
        }
        assert!(lanes.join(&acme, waiter(1).0), "a new settling starts");
    }

    #[test]
    fn a_group_stops_at_the_item_cap_but_always_takes_one_finish() {
        let lanes = FinishLanes::default();
        let acme = TenantId::parse("acme").unwrap();
        lanes.join(&acme, waiter(GROUP_ITEMS + 1).0);
        lanes.join(&acme, waiter(GROUP_ITEMS - 1).0);
        lanes.join(&acme, waiter(1).0);
        let sizes = |g: Vec<Waiter>| g.iter().map(|w| w.items.len()).collect::<Vec<_>>();
        assert_eq!(sizes(lanes.next_group(&acme).unwrap()), [GROUP_ITEMS + 1]);
        assert_eq!(
            sizes(lanes.next_group(&acme).unwrap()),
            [GROUP_ITEMS - 1, 1]
        );
        assert!(lanes.next_group(&acme).is_none());
    }
}
