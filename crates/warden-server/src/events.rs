//! The operational event stream's transports (DESIGN.md §6). Events reach a transport
//! only through the transactional outbox: the relay publishes each outbox row to every
//! transport and forgets it only when all of them took it, so an outage of one loses
//! nothing — the row is published again on the next pass (at-least-once).
//!
//! The in-process broadcast (which wakes live tails) is the default and only transport
//! built today; NATS JetStream will be a second implementation of [`EventTransport`].

use std::future::Future;
use std::pin::Pin;

use tokio::sync::broadcast;

/// A transport failed to take an event; the relay keeps it and tries again.
#[derive(Debug, thiserror::Error)]
#[error("event transport {transport}: {message}")]
pub struct TransportError {
    /// Which transport.
    pub transport: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Where outbox events go once committed.
pub trait EventTransport: Send + Sync + std::fmt::Debug {
    /// Publish one event (`topic`: `audit`, `job`, `queue`, `checkpoint`, `alert`;
    /// `payload`: its metadata-only JSON).
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        payload: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>>;
}

/// One event on the in-process bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// `audit`, `job`, `queue`, `checkpoint` or `alert`.
    pub topic: String,
    /// Its metadata-only JSON.
    pub payload: String,
}

/// The in-process broadcast: fan-out to this node's subscribers (live tails). Having no
/// subscriber is not a failure.
#[derive(Debug, Clone)]
pub struct InProcess(pub broadcast::Sender<BusEvent>);

impl EventTransport for InProcess {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        payload: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>> {
        let _ = self.0.send(BusEvent {
            topic: topic.to_owned(),
            payload: payload.to_owned(),
        });
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Wait for the next event of `topic` on the bus. Returns at once when this receiver
/// fell behind (one of the missed events may have been of `topic`); never returns once
/// the bus is closed.
pub async fn next_of(bus: &mut broadcast::Receiver<BusEvent>, topic: &str) {
    loop {
        match bus.recv().await {
            Ok(e) if e.topic == topic => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use warden_core::audit::{Actor, AuditDraft};
    use warden_core::names::TenantId;
    use warden_store::testing::TestDb;

    use super::*;
    use crate::{AppState, Config};

    /// A broker that is down until told otherwise.
    #[derive(Debug, Default)]
    struct Flaky {
        down: AtomicBool,
        got: Mutex<Vec<(String, String)>>,
    }

    impl EventTransport for Flaky {
        fn publish<'a>(
            &'a self,
            topic: &'a str,
            payload: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>> {
            let r = if self.down.load(Ordering::SeqCst) {
                Err(TransportError {
                    transport: "flaky",
                    message: "down".into(),
                })
            } else {
                self.got
                    .lock()
                    .unwrap()
                    .push((topic.to_owned(), payload.to_owned()));
                Ok(())
            };
            Box::pin(std::future::ready(r))
        }
    }

    #[tokio::test]
    async fn a_transport_outage_loses_no_event_and_delivery_resumes_when_it_is_back() {
        for db in TestDb::all().await {
            let b = db.backend;
            let store = db.open().await;
            let state = AppState::new(store.clone(), Config::default())
                .await
                .unwrap();
            let flaky = std::sync::Arc::new(Flaky::default());
            state.add_transport(flaky.clone());
            let t = TenantId::parse("acme").unwrap();
            store
                .append_audit(AuditDraft::new(t, Actor::client("ops"), "job.cancel"))
                .await
                .unwrap();
            flaky.down.store(true, Ordering::SeqCst);
            crate::relay_outbox(&state).await;
            assert_eq!(
                store.outbox_peek(10).await.unwrap().len(),
                1,
                "[{b:?}] kept while the transport is down"
            );
            flaky.down.store(false, Ordering::SeqCst);
            crate::relay_outbox(&state).await;
            let got = flaky.got.lock().unwrap().clone();
            assert_eq!(got.len(), 1, "[{b:?}] {got:?}");
            assert_eq!(got[0].0, "audit", "[{b:?}]");
            assert!(got[0].1.contains("job.cancel"), "[{b:?}]");
            assert!(
                !got[0].1.contains("acme"),
                "[{b:?}] no tenant on the stream"
            );
            assert!(
                store.outbox_peek(10).await.unwrap().is_empty(),
                "[{b:?}] acked"
            );
        }
    }
}
