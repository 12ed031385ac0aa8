//! The long-polls of this node waiting for work, and how they are woken.
//!
//! A lease that finds nothing registers here for the rest of its `wait_ms` and sleeps
//! until woken. A commit that made `n` jobs of one queue and type leasable wakes at most
//! `n` of the waiters that could take them (tenant, queue and type filter match), oldest
//! first, skipping those already woken and not yet looking: one enqueued job wakes one
//! long-poll, not every one on the node. Every woken waiter looks (a read first, then a
//! lease), so a waiter that finds its job taken by a busy worker simply sleeps again.
//! Where the waker cannot say what became leasable (another node's `NOTIFY`, expired
//! leases, schedules, replays, promoted dependents), [`Waiters::wake_all`] wakes everyone.
//!
//! A wake is a permit on the waiter's own [`Notify`], so one that arrives between a
//! waiter's look and its sleep is not lost. A waiter dropped while woken for a job but
//! before it looked (it returned with other jobs, or its client went away) passes the
//! wake on to another that could take that job.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use warden_core::names::{JobType, QueueName, TenantId};

/// The registry; one per node, in [`crate::AppState`].
#[derive(Debug, Default)]
pub struct Waiters {
    inner: Mutex<List>,
}

#[derive(Debug, Default)]
struct List {
    next_id: u64,
    /// In registration order (oldest first).
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
enum Woken {
    No,
    For(QueueName, JobType),
    All,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    tenant: TenantId,
    queues: Vec<QueueName>,
    types: Option<Vec<JobType>>,
    /// Woken, and not yet looking (a second wake would be absorbed by the first): by
    /// [`Waiters::wake_for`] for a job of this queue and type, or by a broad wake.
    woken: Woken,
    notify: Arc<Notify>,
}

impl Entry {
    fn takes(&self, tenant: &TenantId, queue: &QueueName, job_type: &JobType) -> bool {
        self.tenant == *tenant
            && self.queues.contains(queue)
            && self.types.as_ref().is_none_or(|t| t.contains(job_type))
    }

    fn wake(&mut self, why: Woken) {
        self.woken = why;
        self.notify.notify_one();
    }
}

/// One registered long-poll; unregisters when dropped.
#[derive(Debug)]
pub struct Waiter<'a> {
    waiters: &'a Waiters,
    id: u64,
    notify: Arc<Notify>,
}

impl Waiters {
    fn list(&self) -> std::sync::MutexGuard<'_, List> {
        self.inner.lock().expect("waiters lock")
    }

    /// Register a long-poll of `tenant` for `queues` (and `types`, when given).
    pub fn register(
        &self,
        tenant: &TenantId,
        queues: &[QueueName],
        types: Option<&[JobType]>,
    ) -> Waiter<'_> {
        let notify = Arc::new(Notify::new());
        let mut list = self.list();
        list.next_id += 1;
        let id = list.next_id;
        list.entries.push(Entry {
            id,
            tenant: tenant.clone(),
            queues: queues.to_vec(),
            types: types.map(<[JobType]>::to_vec),
            woken: Woken::No,
            notify: notify.clone(),
        });
        Waiter {
            waiters: self,
            id,
            notify,
        }
    }

    /// `count` jobs of `queue` and `job_type` became leasable in `tenant`: wake up to
    /// `count` waiters that could take them and are not already woken.
    pub fn wake_for(&self, tenant: &TenantId, queue: &QueueName, job_type: &JobType, count: u64) {
        let mut left = count;
        for e in self.list().entries.iter_mut() {
            if left == 0 {
                break;
            }
            if e.woken == Woken::No && e.takes(tenant, queue, job_type) {
                e.wake(Woken::For(queue.clone(), job_type.clone()));
                left -= 1;
            }
        }
    }

    /// Wake every waiter (of `tenant`, when given).
    pub fn wake_all(&self, tenant: Option<&TenantId>) {
        for e in self.list().entries.iter_mut() {
            if tenant.is_none_or(|t| *t == e.tenant) {
                e.wake(Woken::All);
            }
        }
    }

    /// How many long-polls are registered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.list().entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Waiter<'_> {
    /// Sleep until woken (at once if a wake came since the last [`Waiter::looking`]).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    /// The waiter is about to look for work: later wakes are for jobs it may not see.
    /// Whether it was woken for a job it can take ([`Waiters::wake_for`]), rather than by
    /// a broad wake or not at all.
    pub fn looking(&self) -> bool {
        let mut list = self.waiters.list();
        let Some(e) = list.entries.iter_mut().find(|e| e.id == self.id) else {
            return false;
        };
        matches!(std::mem::replace(&mut e.woken, Woken::No), Woken::For(..))
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut list = self.waiters.list();
        let Some(i) = list.entries.iter().position(|e| e.id == self.id) else {
            return;
        };
        let gone = list.entries.remove(i);
        drop(list);
        // Woken for a job it will not look for now: another waiter that could take it
        // looks instead. (A broad wake reached the others too.)
        if let Woken::For(queue, job_type) = gone.woken {
            self.waiters.wake_for(&gone.tenant, &queue, &job_type, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }
    fn q(s: &str) -> QueueName {
        QueueName::parse(s).unwrap()
    }
    fn ty(s: &str) -> JobType {
        JobType::parse(s).unwrap()
    }

    /// Whether the waiter has a wake pending (without waiting for one).
    async fn is_woken(w: &Waiter<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(5), w.woken())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn one_job_wakes_one_waiter_the_oldest() {
        let ws = Waiters::default();
        let a = ws.register(&t("acme"), &[q("mail")], None);
        let b = ws.register(&t("acme"), &[q("mail")], None);
        ws.wake_for(&t("acme"), &q("mail"), &ty("send"), 1);
        assert!(is_woken(&a).await);
        assert!(!is_woken(&b).await);
    }

    #[tokio::test]
    async fn a_woken_waiter_is_skipped_until_it_looks() {
        let ws = Waiters::default();
        let a = ws.register(&t("acme"), &[q("mail")], None);
        let b = ws.register(&t("acme"), &[q("mail")], None);
        ws.wake_for(&t("acme"), &q("mail"), &ty("send"), 1);
        ws.wake_for(&t("acme"), &q("mail"), &ty("send"), 1);
        assert!(is_woken(&a).await);
        assert!(is_woken(&b).await, "the second job woke the second waiter");
        assert!(a.looking(), "woken for a job it can take");
        ws.wake_for(&t("acme"), &q("mail"), &ty("send"), 1);
        assert!(is_woken(&a).await, "a looked, so it can be woken again");
        ws.wake_all(None);
        assert!(!a.looking(), "a broad wake names no job");
        assert!(!a.looking(), "nor does no wake");
    }

    #[tokio::test]
    async fn only_waiters_that_could_take_the_jobs_are_woken() {
        let ws = Waiters::default();
        let other_tenant = ws.register(&t("globex"), &[q("mail")], None);
        let other_queue = ws.register(&t("acme"), &[q("sms")], None);
        let other_type = ws.register(&t("acme"), &[q("mail")], Some(&[ty("bounce")]));
        let right = ws.register(&t("acme"), &[q("sms"), q("mail")], Some(&[ty("send")]));
        ws.wake_for(&t("acme"), &q("mail"), &ty("send"), 5);
        assert!(!is_woken(&other_tenant).await);
        assert!(!is_woken(&other_queue).await);
        assert!(!is_woken(&other_type).await);
        assert!(is_woken(&right).await);
    }

    #[tokio::test]
    async fn a_wake_before_the_sleep_is_kept() {
        let ws = Waiters::default();
        let a = ws.register(&t("acme"), &[q("mail")], None);
        assert!(!a.looking());
        // The job arrives after the look, before the waiter sleeps.
        ws.wake_for(&t("acme"), &q("mail"), &ty("send"), 1);
        assert!(is_woken(&a).await);
    }

    #[tokio::test]
    async fn wake_all_wakes_the_tenant_or_everyone() {
        let ws = Waiters::default();
        let a = ws.register(&t("acme"), &[q("mail")], None);
        let g = ws.register(&t("globex"), &[q("mail")], None);
        ws.wake_all(Some(&t("acme")));
        assert!(is_woken(&a).await);
        assert!(!is_woken(&g).await);
        ws.wake_all(None);
        assert!(is_woken(&g).await);
    }

    #[tokio::test]
    async fn a_waiter_dropped_while_woken_passes_the_wake_on() {
        let ws = Waiters::default();
        let a = ws.register(&t("acme"), &[q("mail")], None);
        let sms = ws.register(&t("acme"), &[q("sms")], None);
        let b = ws.register(&t("acme"), &[q("mail")], None);
        let c = ws.register(&t("acme"), &[q("mail")], None);
        ws.wake_for(&t("acme"), &q("mail"), &ty("send"), 1);
        drop(a);
        assert!(is_woken(&b).await, "the next waiter for that job's queue");
        assert!(!is_woken(&sms).await);
        assert!(!is_woken(&c).await, "one job, one waiter");
        assert_eq!(ws.len(), 3);
        drop((sms, b, c));
        assert!(ws.is_empty());
    }
}
