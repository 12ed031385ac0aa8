//! [`Client`]: one keep-alive HTTP client, a token obtained by client credentials, and a
//! typed method per route.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ClientError, ClientResult};
use crate::protocol::{
    BatchIds, FinishItem, FinishOutcome, Finished, Job, JobRecord, LeaseRequest, Leased,
    MAX_BATCH_JOBS, MAX_FINISH_ITEMS, NewJob, QueueInfo,
};
use crate::token::CachedToken;

/// How long an ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// What a long-poll may take beyond its `wait_ms`.
const LONG_POLL_SLACK: Duration = Duration::from_secs(15);

/// A client's id and secret. `Debug` does not show the secret.
#[derive(Clone)]
pub struct Credentials {
    /// The client id.
    pub client_id: String,
    client_secret: String,
}

impl Credentials {
    /// Credentials from `warden clients create`.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// A connection to one Warden server. Cheap to clone: clones share the connection pool
/// and the token.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    /// Space-separated scopes to ask for; the client's defaults when `None`.
    scope: Option<String>,
    token: RwLock<Option<CachedToken>>,
    /// Only one refresh at a time; the others wait for its token.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`). No request is
    /// sent until the first call; see [`Client::connect`] to check the credentials first.
    pub fn new(base_url: &str, credentials: Credentials) -> ClientResult<Self> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|source| ClientError::Transport {
                url: base_url.to_owned(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: base_url.trim_end_matches('/').to_owned(),
                credentials,
                scope: None,
                token: RwLock::new(None),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Like [`Client::new`], then get a token, so bad credentials fail here.
    pub async fn connect(base_url: &str, credentials: Credentials) -> ClientResult<Self> {
        let client = Self::new(base_url, credentials)?;
        client.token().await?;
        Ok(client)
    }

    /// The same server and credentials, asking for `scope` (space-separated) instead of
    /// the client's default scopes. The new client gets its own token.
    pub fn with_scope(&self, scope: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                base: self.inner.base.clone(),
                credentials: self.inner.credentials.clone(),
                scope: Some(scope.into()),
                token: RwLock::new(None),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// A valid token: the cached one, or a fresh one when it is missing or due.
    async fn token(&self) -> ClientResult<Arc<str>> {
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let _guard = self.inner.refreshing.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let fresh = self.request_token().await?;
        let value = fresh.value.clone();
        *self.inner.token.write().expect("token lock") = Some(fresh);
        Ok(value)
    }

    fn cached_token(&self) -> Option<Arc<str>> {
        let guard = self.inner.token.read().expect("token lock");
        guard
            .as_ref()
            .filter(|t| !t.is_stale(Instant::now()))
            .map(|t| t.value.clone())
    }

    /// Forget `used` if it is still the cached token (the server refused it).
    fn invalidate(&self, used: &Arc<str>) {
        let mut guard = self.inner.token.write().expect("token lock");
        if guard.as_ref().is_some_and(|t| Arc::ptr_eq(&t.value, used)) {
            *guard = None;
        }
    }

    async fn request_token(&self) -> ClientResult<CachedToken> {
        let url = format!("{}/oauth/token", self.inner.base);
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.inner.scope {
            form.push(("scope", scope));
        }
        let asked = Instant::now();
        let response = self
            .inner
            .http
            .post(&url)
            .basic_auth(
                &self.inner.credentials.client_id,
                Some(&self.inner.credentials.client_secret),
            )
            .form(&form)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if !status.is_success() {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let error = field("error");
            return Err(ClientError::Token {
                status: status.as_u16(),
                error: if error.is_empty() {
                    "unknown_error".into()
                } else {
                    error
                },
                description: field("error_description"),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode { url, source })?;
        // Without `expires_in`, assume the documented default of an hour.
        Ok(CachedToken::new(
            answer.access_token,
            asked,
            answer.expires_in.unwrap_or(3600),
        ))
    }

    /// Send `body` as JSON and decode the answer; on a 401 get a new token and try once more.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        timeout: Duration,
    ) -> ClientResult<T> {
        let url = format!("{}{path}", self.inner.base);
        let bytes = match body {
            Some(b) => {
                Some(serde_json::to_vec(b).map_err(|e| ClientError::Invalid(e.to_string()))?)
            }
            None => None,
        };
        let mut retried = false;
        loop {
            let token = self.token().await?;
            let mut req = self
                .inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(&token)
                .timeout(timeout);
            if let Some(b) = &bytes {
                req = req
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(b.clone());
            }
            let response = req.send().await.map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !retried {
                // Revoked keys, a restarted server with new keys, or a clock jump: one
                // fresh token, one more try.
                self.invalidate(&token);
                retried = true;
                continue;
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let raw = response
                .bytes()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                })?;
            if !status.is_success() {
                return Err(problem(status, &raw, retry_after));
            }
            return serde_json::from_slice(&raw).map_err(|source| ClientError::Decode {
                url: url.clone(),
                source,
            });
        }
    }

    /// `POST /api/v1/agents/{agent_id}/heartbeat`: register or refresh the agent.
    pub async fn agent_heartbeat(
        &self,
        agent_id: &str,
        queues: &[String],
        types: &[String],
        version: Option<&str>,
    ) -> ClientResult<Value> {
        #[derive(Serialize)]
        struct Body<'a> {
            queues: &'a [String],
            types: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            version: Option<&'a str>,
        }
        self.call(
            Method::POST,
            &format!("/api/v1/agents/{agent_id}/heartbeat"),
            Some(&Body {
                queues,
                types,
                version,
            }),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `POST /api/v1/leases`: claim up to `max_jobs`, waiting up to `wait_ms` for work.
    pub async fn lease(&self, request: &LeaseRequest) -> ClientResult<Vec<Job>> {
        let timeout = Duration::from_millis(request.wait_ms) + LONG_POLL_SLACK;
        let leased: Leased = self
            .call(Method::POST, "/api/v1/leases", Some(request), timeout)
            .await?;
        Ok(leased.jobs)
    }

    /// `POST /api/v1/jobs/{id}/heartbeat`: extend the lease by its duration.
    pub async fn heartbeat(&self, job_id: &str, lease_id: &str) -> ClientResult<()> {
        let _: Value = self
            .call(
                Method::POST,
                &format!("/api/v1/jobs/{job_id}/heartbeat"),
                Some(&serde_json::json!({ "lease_id": lease_id })),
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// `POST /api/v1/jobs/{id}/complete`; answers the updated job.
    pub async fn complete(
        &self,
        job_id: &str,
        lease_id: &str,
        result: Option<Value>,
    ) -> ClientResult<JobRecord> {
        let mut body = serde_json::json!({ "lease_id": lease_id });
        if let Some(r) = result {
            body["result"] = r;
        }
        self.call(
            Method::POST,
            &format!("/api/v1/jobs/{job_id}/complete"),
            Some(&body),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `POST /api/v1/jobs/{id}/fail`; answers the updated job.
    pub async fn fail(
        &self,
        job_id: &str,
        lease_id: &str,
        error: &str,
        retryable: bool,
    ) -> ClientResult<JobRecord> {
        self.call(
            Method::POST,
            &format!("/api/v1/jobs/{job_id}/fail"),
            Some(
                &serde_json::json!({"lease_id": lease_id, "error": error, "retryable": retryable}),
            ),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `POST /api/v1/jobs/finish`: many completions and failures in one request; the
    /// answer has one outcome per item, in order.
    pub async fn finish(&self, items: &[FinishItem]) -> ClientResult<Vec<FinishOutcome>> {
        if items.is_empty() || items.len() > MAX_FINISH_ITEMS {
            return Err(ClientError::Invalid(format!(
                "a finish carries 1 to {MAX_FINISH_ITEMS} items, not {}",
                items.len()
            )));
        }
        #[derive(Serialize)]
        struct Body<'a> {
            items: &'a [FinishItem],
        }
        let done: Finished = self
            .call(
                Method::POST,
                "/api/v1/jobs/finish",
                Some(&Body { items }),
                REQUEST_TIMEOUT,
            )
            .await?;
        if done.items.len() != items.len() {
            return Err(ClientError::Invalid(format!(
                "the server answered {} outcomes for {} items",
                done.items.len(),
                items.len()
            )));
        }
        Ok(done.items)
    }

    /// `POST /api/v1/jobs`: enqueue one job; answers it.
    pub async fn enqueue(&self, job: &NewJob) -> ClientResult<JobRecord> {
        self.call(Method::POST, "/api/v1/jobs", Some(job), REQUEST_TIMEOUT)
            .await
    }

    /// `POST /api/v1/jobs/batch`: enqueue up to 10,000 jobs, all or nothing; answers
    /// their ids in order.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> ClientResult<Vec<String>> {
        if jobs.is_empty() || jobs.len() > MAX_BATCH_JOBS {
            return Err(ClientError::Invalid(format!(
                "a batch carries 1 to {MAX_BATCH_JOBS} jobs, not {}",
                jobs.len()
            )));
        }
        #[derive(Serialize)]
        struct Body<'a> {
            jobs: &'a [NewJob],
        }
        let ids: BatchIds = self
            .call(
                Method::POST,
                "/api/v1/jobs/batch",
                Some(&Body { jobs }),
                Duration::from_secs(120),
            )
            .await?;
        Ok(ids.ids)
    }

    /// `GET /api/v1/jobs/{id}`.
    pub async fn job(&self, job_id: &str) -> ClientResult<JobRecord> {
        self.call(
            Method::GET,
            &format!("/api/v1/jobs/{job_id}"),
            None::<&()>,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `GET /api/v1/queues/{name}`.
    pub async fn queue(&self, name: &str) -> ClientResult<QueueInfo> {
        self.call(
            Method::GET,
            &format!("/api/v1/queues/{name}"),
            None::<&()>,
            REQUEST_TIMEOUT,
        )
        .await
    }
}

/// An error answer as a [`ClientError::Api`], whether or not the body is a problem.
fn problem(status: StatusCode, raw: &[u8], retry_after: Option<Duration>) -> ClientError {
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    ClientError::Api {
        status: status.as_u16(),
        code: field("code").unwrap_or_else(|| "UNKNOWN".into()),
        detail: field("detail")
            .unwrap_or_else(|| String::from_utf8_lossy(&raw[..raw.len().min(512)]).into_owned()),
        request_id: field("request_id").unwrap_or_default(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_keep_their_code() {
        let raw = br#"{"type":"https://warden.dev/errors/lease-not-held","title":"Lease not held","status":409,"code":"LEASE_NOT_HELD","detail":"no","request_id":"abc"}"#;
        let e = problem(StatusCode::CONFLICT, raw, None);
        assert_eq!(e.code(), Some("LEASE_NOT_HELD"));
        assert_eq!(e.status(), Some(409));
        assert!(e.to_string().contains("request abc"));
    }

    #[test]
    fn other_bodies_are_unknown() {
        let e = problem(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", None);
        assert_eq!(e.code(), Some("UNKNOWN"));
        assert!(e.to_string().contains("bad gateway"));
        assert!(e.is_transient());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = Credentials::new("id-1", "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
