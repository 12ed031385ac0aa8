//! The HTTP client the commands share: it asks the authority for the token a command
//! needs (with the warrant, for operator commands) and turns problem bodies into errors
//! that name the server's reason code.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::args::{ConnArgs, WarrantArgs};

/// What token a command needs.
pub enum Need<'a> {
    /// The client's default, non-elevated scopes.
    Default,
    /// `orch:operate` with its warrant.
    Operate(&'a WarrantArgs),
    /// `orch:quota` with its warrant (`quota_reason`, `quota_ticket`).
    Quota(&'a WarrantArgs),
    /// `orch:backfill` with its warrant (`backfill_reason`, `backfill_ticket`).
    Backfill(&'a WarrantArgs),
    /// `orch:admin` (no warrant).
    Admin,
}

/// A connection to a Warden server with a token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Get a token for `need` and return a client that uses it.
    pub async fn connect(conn: &ConnArgs, need: Need<'_>) -> Result<Self> {
        let id = conn
            .client_id
            .as_deref()
            .context("no client id: pass --client-id or set WARDEN_CLIENT_ID")?;
        let secret = conn
            .client_secret
            .as_deref()
            .context("no client secret: pass --client-secret or set WARDEN_CLIENT_SECRET")?;
        let http = reqwest::Client::new();
        let base = conn.url.trim_end_matches('/').to_owned();
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        match &need {
            Need::Default => {}
            Need::Operate(w) => form.extend([
                ("scope", "orch:read orch:operate"),
                ("operator_reason", w.reason.as_str()),
                ("operator_ticket", w.ticket.as_str()),
            ]),
            Need::Quota(w) => form.extend([
                ("scope", "orch:read orch:quota"),
                ("quota_reason", w.reason.as_str()),
                ("quota_ticket", w.ticket.as_str()),
            ]),
            Need::Backfill(w) => form.extend([
                ("scope", "orch:read orch:backfill"),
                ("backfill_reason", w.reason.as_str()),
                ("backfill_ticket", w.ticket.as_str()),
            ]),
            Need::Admin => form.push(("scope", "orch:read orch:admin")),
        }
        let response = http
            .post(format!("{base}/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&form)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error");
            let desc = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            bail!("the authority refused a token: {error}: {desc}");
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the authority answered without a token"))?
            .to_owned();
        Ok(Self { http, base, token })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send a request and return the JSON body, or an error naming the reason code.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.request(method, path).query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let response = self.send(req).await?;
        let status = response.status();
        let text = response.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// `GET` a `text/plain` resource (a signed note, the key list).
    pub async fn get_text(&self, path: &str, query: &[(&str, String)]) -> Result<String> {
        let response = self
            .send(self.request(Method::GET, path).query(query))
            .await?;
        Ok(response.text().await?)
    }

    /// A request to `path` with the token, for callers that read the body themselves
    /// (streams); send it with [`Client::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Send `req`; a non-2xx answer becomes an error naming the server's reason code.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(problem(response).await)
        }
    }
}

/// The error for a non-2xx answer: `CODE: detail (HTTP status, request id)`, as an
/// [`HttpError`] so callers can tell a refusal from an outage.
pub async fn problem(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("");
    let code = match field("code") {
        "" => "UNKNOWN",
        code => code,
    };
    anyhow::Error::new(HttpError {
        status,
        message: format!(
            "{code}: {} (HTTP {}, request {})",
            field("detail"),
            status.as_u16(),
            field("request_id")
        ),
    })
}

/// A request the server answered with an error status.
#[derive(Debug)]
pub struct HttpError {
    /// The status, so a caller can retry an outage (5xx) but not a refusal (4xx).
    pub status: StatusCode,
    /// `CODE: detail (HTTP status, request id)`.
    message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}
