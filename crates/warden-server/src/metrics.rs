//! Prometheus metrics: a small registry of labelled counters and histograms rendered in
//! the text exposition format. (Why not the `metrics` crates: see
//! `docs/decisions/0003-lean-dependencies.md`.)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use warden_store::leases::{Finished, LeasedJob};

use crate::AppState;

/// Latency buckets, seconds (up to 30 min: job run times share them).
const BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 1800.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), u64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
    gauges: Mutex<BTreeMap<(&'static str, Labels), f64>>,
}

/// Help text for each metric family.
const HELP: &[(&str, &str, &str)] = &[
    (
        "warden_http_requests_total",
        "counter",
        "HTTP requests by route, method and status.",
    ),
    (
        "warden_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by route and method.",
    ),
    (
        "warden_audit_entries_total",
        "counter",
        "Audit entries written, by action and outcome.",
    ),
    (
        "warden_tokens_issued_total",
        "counter",
        "Tokens issued, by scope.",
    ),
    (
        "warden_auth_failures_total",
        "counter",
        "Failed authentications, by reason.",
    ),
    (
        "warden_ledger_checkpoints_total",
        "counter",
        "Signed checkpoints cut by this node.",
    ),
    (
        "warden_audit_search_indexed_total",
        "counter",
        "Audit entries added to the full-text search index.",
    ),
    (
        "warden_alerts_total",
        "counter",
        "Alerts raised, by rule (ledger.self_check for a self-check mismatch).",
    ),
    (
        "warden_alert_webhook_failures_total",
        "counter",
        "Alerts whose webhook POST failed after every retry.",
    ),
    (
        "warden_ledger_self_check_entries_total",
        "counter",
        "Audit entries re-verified by the ledger self-check.",
    ),
    (
        "warden_audit_retention_archived_total",
        "counter",
        "Audit entry bodies moved to archive files by retention.",
    ),
    (
        "warden_audit_retention_last_run_timestamp_seconds",
        "gauge",
        "When retention last ran (Unix seconds).",
    ),
    (
        "warden_event_transport_failures_total",
        "counter",
        "Outbox relay passes a transport refused (the events stay and are sent again).",
    ),
    (
        "warden_events_relayed_total",
        "counter",
        "Outbox events delivered to the event bus.",
    ),
    (
        "warden_queue_jobs",
        "gauge",
        "Unfinished jobs by tenant, queue and state (pending, available, running, retrying), read at scrape time.",
    ),
    (
        "warden_jobs_leased_total",
        "counter",
        "Jobs handed to workers, by tenant and queue.",
    ),
    (
        "warden_jobs_finished_total",
        "counter",
        "Attempts finished by workers, by tenant, queue, type and resulting state (succeeded, retrying, dead_letter).",
    ),
    (
        "warden_job_start_delay_seconds",
        "histogram",
        "From when a job became due (enqueue, run_at or retry time) to its lease, by tenant and queue.",
    ),
    (
        "warden_job_run_seconds",
        "histogram",
        "From lease to complete or fail, by tenant, queue and type.",
    ),
    (
        "warden_jobs_archived_total",
        "counter",
        "Finished jobs moved out of the hot table.",
    ),
    (
        "warden_leader",
        "gauge",
        "1 while this node leads (runs lease recovery, promotion, the scheduler), else 0.",
    ),
    (
        "warden_schedule_runs_total",
        "counter",
        "Runs produced by the scheduler.",
    ),
    (
        "warden_schedule_runs_skipped_total",
        "counter",
        "Missed fire times older than the catch-up window, not produced.",
    ),
    (
        "warden_schedule_runs_deferred_total",
        "counter",
        "Scheduler passes that could not produce a schedule's runs (quota, rate); retried.",
    ),
];

impl Metrics {
    /// Add `n` to a counter.
    pub fn add(&self, name: &'static str, labels: Labels, n: u64) {
        *self
            .counters
            .lock()
            .expect("lock")
            .entry((name, labels))
            .or_default() += n;
    }

    /// Set a gauge.
    pub fn set_gauge(&self, name: &'static str, labels: Labels, value: f64) {
        self.gauges
            .lock()
            .expect("lock")
            .insert((name, labels), value);
    }

    /// Observe a value in a histogram.
    pub fn observe(&self, name: &'static str, labels: Labels, value: f64) {
        let mut map = self.histograms.lock().expect("lock");
        let h = map.entry((name, labels)).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if value <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += value;
        h.count += 1;
    }

    /// Jobs were leased: count them and observe how long each waited since it was due.
    pub fn count_leased(&self, tenant: &warden_core::names::TenantId, jobs: &[LeasedJob]) {
        let now = warden_core::time::Timestamp::now().as_micros();
        for j in jobs {
            let labels = || {
                vec![
                    ("tenant", tenant.as_str().to_owned()),
                    ("queue", j.queue.as_str().to_owned()),
                ]
            };
            self.add("warden_jobs_leased_total", labels(), 1);
            let waited = (now - j.due_at.as_micros()).max(0) as f64 / 1e6;
            self.observe("warden_job_start_delay_seconds", labels(), waited);
        }
    }

    /// Attempts were finished: count them by outcome and observe their run times.
    pub fn count_finished(
        &self,
        tenant: &warden_core::names::TenantId,
        outcomes: &[Result<Finished, warden_core::reason::ReasonCode>],
    ) {
        for f in outcomes.iter().flatten() {
            let labels = || {
                vec![
                    ("tenant", tenant.as_str().to_owned()),
                    ("queue", f.queue.as_str().to_owned()),
                    ("type", f.job_type.as_str().to_owned()),
                ]
            };
            let mut by_state = labels();
            by_state.push(("state", f.state.as_str().to_owned()));
            self.add("warden_jobs_finished_total", by_state, 1);
            if let Some(us) = f.ran_micros {
                self.observe("warden_job_run_seconds", labels(), us.max(0) as f64 / 1e6);
            }
        }
    }

    /// Replace the unfinished-job gauges with a fresh reading.
    pub fn set_depths(&self, depths: &[(String, String, warden_core::jobs::JobState, i64)]) {
        let mut gauges = self.gauges.lock().expect("lock");
        gauges.retain(|(name, _), _| *name != "warden_queue_jobs");
        for (tenant, queue, state, n) in depths {
            gauges.insert(
                (
                    "warden_queue_jobs",
                    vec![
                        ("tenant", tenant.clone()),
                        ("queue", queue.clone()),
                        ("state", state.as_str().to_owned()),
                    ],
                ),
                *n as f64,
            );
        }
    }

    /// An audit entry was written.
    pub fn count_audit(&self, action: &str, outcome: &str) {
        self.add(
            "warden_audit_entries_total",
            vec![
                ("action", action.to_owned()),
                ("outcome", outcome.to_owned()),
            ],
            1,
        );
    }

    /// An authentication failed.
    pub fn count_auth_failure(&self, reason: &'static str) {
        self.add(
            "warden_auth_failures_total",
            vec![("reason", reason.to_owned())],
            1,
        );
    }

    /// A token was issued.
    pub fn count_token(&self, scope: &str) {
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            self.add(
                "warden_tokens_issued_total",
                vec![("scope", s.to_owned())],
                1,
            );
        }
    }

    /// Render the Prometheus text format.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().expect("lock");
        let histograms = self.histograms.lock().expect("lock");
        let gauges = self.gauges.lock().expect("lock");
        let mut out = String::new();
        for (family, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            for ((name, labels), v) in counters.iter().filter(|((n, _), _)| n == family) {
                let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
            }
            for ((name, labels), h) in histograms.iter().filter(|((n, _), _)| n == family) {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        fmt_labels(labels, Some(&b.to_string())),
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    fmt_labels(labels, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(labels, None), h.sum);
                let _ = writeln!(out, "{name}_count{} {}", fmt_labels(labels, None), h.count);
            }
            for ((name, labels), v) in gauges.iter().filter(|((n, _), _)| n == family) {
                let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
            }
        }
        out
    }
}

fn fmt_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: count and time every request by its route pattern (never the raw path, so
/// ids do not explode the label space).
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let request_id = req
        .extensions()
        .get::<crate::request_id::RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let start = Instant::now();
    let response = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    tracing::info!(request_id = %request_id, method = %method, route = %route, status = %status, latency_ms = elapsed * 1000.0, "request");
    state.metrics.add(
        "warden_http_requests_total",
        vec![
            ("route", route.clone()),
            ("method", method.clone()),
            ("status", status),
        ],
        1,
    );
    state.metrics.observe(
        "warden_http_request_duration_seconds",
        vec![("route", route), ("method", method)],
        elapsed,
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_prometheus_text() {
        let m = Metrics::default();
        m.count_audit("job.cancel", "allowed");
        m.count_audit("job.cancel", "allowed");
        m.observe(
            "warden_http_request_duration_seconds",
            vec![("route", "/x".into())],
            0.003,
        );
        let text = m.render();
        assert!(
            text.contains(
                "warden_audit_entries_total{action=\"job.cancel\",outcome=\"allowed\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "warden_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.0025\"} 0"
            )
        );
        assert!(
            text.contains(
                "warden_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.005\"} 1"
            )
        );
        assert!(text.contains("warden_http_request_duration_seconds_count{route=\"/x\"} 1"));
    }
}
