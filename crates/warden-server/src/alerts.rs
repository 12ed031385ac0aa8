//! Alerts over the audit log (issue [3/3]): configurable rules, the default being "one
//! actor replays 50 or more jobs within one minute", and the ledger self-check's mismatch
//! alert. An alert is an event on the bus (metadata only: the rule, when, how many — never
//! the tenant or the actor), a metric (`warden_alerts_total{rule}`), and, if configured, a
//! webhook POST with the details, retried with backoff on its own task so it never blocks
//! an action or the loop that found it.
//!
//! The leader evaluates the rules once a second over the entries appended since its last
//! pass (read from the log, so every node's actions count). A node that becomes leader
//! looks back one (longest) window: alerts are about now, not history; an alert the old
//! leader raised just before a hand-over may be raised once more.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_core::names::TenantId;
use warden_core::time::Timestamp;

use warden_store::audit::ActionSeen;

use crate::AppState;

/// One rule: at least `threshold` entries with `action` by one actor within `window_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Names the rule in events, metrics and webhooks.
    pub name: String,
    /// The audited action counted, e.g. `job.replay`.
    pub action: String,
    /// Entries within the window that fire the alert.
    pub threshold: u32,
    /// The sliding window, in seconds.
    pub window_secs: u64,
}

/// `[alerts]` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// The rules. Default: `bulk-replay`, 50 `job.replay` entries by one actor in 60 s.
    pub rules: Vec<AlertRule>,
    /// Where alerts are POSTed as JSON (`http://` only: the build carries no TLS).
    pub webhook_url: Option<String>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            rules: vec![AlertRule {
                name: "bulk-replay".into(),
                action: "job.replay".into(),
                threshold: 50,
                window_secs: 60,
            }],
            webhook_url: None,
        }
    }
}

/// A fired alert, as the webhook receives it.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// The rule (`ledger.self_check` for a self-check mismatch).
    pub rule: String,
    /// When it fired.
    pub fired_at: Timestamp,
    /// The tenant whose log it is about.
    pub tenant: String,
    /// The actor it is about, if one.
    pub actor: Option<String>,
    /// Entries counted in the window (or the mismatched seq for a self-check).
    pub count: u64,
    /// What happened, for people.
    pub detail: String,
}

/// The leader's evaluation state.
#[derive(Debug, Default)]
pub struct Evaluator {
    inner: Mutex<EvalState>,
}

#[derive(Debug, Default)]
struct EvalState {
    /// Next seq to look at, per tenant.
    next: HashMap<TenantId, u64>,
    /// Times of matching entries per (tenant, rule, actor), oldest first.
    windows: HashMap<(TenantId, usize, String), VecDeque<i64>>,
    /// Until when a (tenant, rule, actor) stays quiet after firing.
    quiet_until: HashMap<(TenantId, usize, String), i64>,
}

impl Evaluator {
    /// Count `entries` of `tenant` (in seq order) against `rules`; returns the alerts.
    fn observe(
        &self,
        tenant: &TenantId,
        rules: &[AlertRule],
        entries: &[ActionSeen],
    ) -> Vec<Alert> {
        let mut st = self.inner.lock().expect("lock");
        let mut fired = Vec::new();
        for e in entries {
            for (i, rule) in rules.iter().enumerate() {
                if e.action != rule.action {
                    continue;
                }
                let window = (rule.window_secs * 1_000_000) as i64;
                let at = e.created_at.as_micros();
                let key = (tenant.clone(), i, e.actor.clone());
                let times = st.windows.entry(key.clone()).or_default();
                times.push_back(at);
                while times.front().is_some_and(|&t| t <= at - window) {
                    times.pop_front();
                }
                let count = times.len() as u64;
                if count >= u64::from(rule.threshold)
                    && st.quiet_until.get(&key).is_none_or(|&q| at >= q)
                {
                    st.quiet_until.insert(key, at + window);
                    fired.push(Alert {
                        rule: rule.name.clone(),
                        fired_at: Timestamp::now(),
                        tenant: tenant.as_str().to_owned(),
                        actor: Some(e.actor.clone()),
                        count,
                        detail: format!(
                            "{} made {count} {} entries within {} s",
                            e.actor, rule.action, rule.window_secs
                        ),
                    });
                }
            }
        }
        fired
    }
}

impl AppState {
    /// Raise an alert: a metric, an event through the outbox, and the webhook (on its
    /// own task, so nothing waits for it).
    pub async fn raise_alert(&self, alert: Alert) {
        tracing::warn!(rule = %alert.rule, tenant = %alert.tenant, detail = %alert.detail, "alert");
        self.metrics
            .add("warden_alerts_total", vec![("rule", alert.rule.clone())], 1);
        let event = warden_core::events::AlertEvent {
            rule: alert.rule.clone(),
            timestamp: alert.fired_at,
            count: alert.count,
        };
        let payload = serde_json::to_string(&event).expect("events serialize");
        if let Err(e) = self.store.publish_event("alert", &payload).await {
            tracing::error!(error = %e, "could not put the alert on the outbox");
        }
        if let Some(url) = self.config.alerts.webhook_url.clone() {
            let state = self.clone();
            tokio::spawn(async move { deliver(&state, &url, &alert).await });
        }
    }
}

/// POST the alert, retrying with exponential backoff (0.5 s, 1 s, 2 s, … up to 8
/// attempts); a webhook that never answers costs a metric and a log line, nothing else.
async fn deliver(state: &AppState, url: &str, alert: &Alert) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client builds");
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=8 {
        match http.post(url).json(alert).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(status = %r.status(), attempt, "alert webhook refused"),
            Err(e) => tracing::warn!(error = %e, attempt, "alert webhook unreachable"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    state
        .metrics
        .add("warden_alert_webhook_failures_total", Vec::new(), 1);
}

/// One pass of the leader's rule evaluation.
pub(crate) async fn evaluate(state: &AppState) {
    let rules = &state.config.alerts.rules;
    if rules.is_empty() {
        return;
    }
    let heads = match state.store.ledger_sizes().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "alert rules could not read the logs; will retry");
            return;
        }
    };
    let longest_window = rules.iter().map(|r| r.window_secs).max().unwrap_or(0);
    let mut actions: Vec<&str> = rules.iter().map(|r| r.action.as_str()).collect();
    actions.sort_unstable();
    actions.dedup();
    for (tenant, size) in heads {
        let known = state
            .alerts
            .inner
            .lock()
            .expect("lock")
            .next
            .get(&tenant)
            .copied();
        let from = match known {
            Some(n) => n,
            // A log this node has not looked at yet: start one (longest) window back, so
            // a new leader sees what happened just before it took over.
            None => {
                let back = Timestamp::from_micros(
                    Timestamp::now().as_micros() - (longest_window * 1_000_000) as i64,
                );
                match state.store.first_seq_at(&tenant, back).await {
                    Ok(seq) => seq,
                    Err(e) => {
                        tracing::warn!(error = %e, "alert rules could not read the log; will retry");
                        continue;
                    }
                }
            }
        };
        if from >= size {
            continue;
        }
        let (seen, next) = match state
            .store
            .actions_seen(&tenant, from, size, &actions, 5_000)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "alert rules could not read entries; will retry");
                continue;
            }
        };
        state
            .alerts
            .inner
            .lock()
            .expect("lock")
            .next
            .insert(tenant.clone(), next);
        for alert in state.alerts.observe(&tenant, rules, &seen) {
            state.raise_alert(alert).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, action: &str, at_secs: i64, seq: u64) -> ActionSeen {
        ActionSeen {
            seq,
            created_at: Timestamp::from_micros(at_secs * 1_000_000),
            actor: format!("client:{actor}"),
            action: action.into(),
        }
    }

    #[test]
    fn the_default_rule_fires_at_fifty_replays_by_one_actor_within_a_minute_once() {
        let rules = AlertsConfig::default().rules;
        let t = TenantId::parse("acme").unwrap();
        let ev = Evaluator::default();
        // 49 replays by a, spread over 59 s, and many by others: nothing.
        let mut batch: Vec<ActionSeen> = (0..49)
            .map(|i| entry("a", "job.replay", i, i as u64))
            .collect();
        batch.extend((0..60).map(|i| entry(&format!("x{i}"), "job.replay", 10, 100 + i as u64)));
        batch.extend((0..60).map(|i| entry("a", "job.cancel", 20, 200 + i as u64)));
        assert!(ev.observe(&t, &rules, &batch).is_empty());
        // The 50th within the minute fires, once; more in the same window stay quiet.
        let fired = ev.observe(&t, &rules, &[entry("a", "job.replay", 59, 300)]);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].rule, "bulk-replay");
        assert_eq!(fired[0].count, 50);
        assert_eq!(fired[0].actor.as_deref(), Some("client:a"));
        assert!(
            ev.observe(&t, &rules, &[entry("a", "job.replay", 60, 301)])
                .is_empty()
        );
    }

    #[test]
    fn replays_spread_over_more_than_the_window_do_not_fire() {
        let rules = AlertsConfig::default().rules;
        let t = TenantId::parse("acme").unwrap();
        let ev = Evaluator::default();
        let batch: Vec<ActionSeen> = (0..200)
            .map(|i| entry("a", "job.replay", i * 2, i as u64))
            .collect();
        assert!(
            ev.observe(&t, &rules, &batch).is_empty(),
            "30 per minute at most"
        );
    }
}
