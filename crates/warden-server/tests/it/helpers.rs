//! `TestApp`: the real server on 127.0.0.1:0 over a fresh store (a temp SQLite file, or a
//! fresh PostgreSQL schema), with typed helpers for tokens and requests.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use warden_authority::ClientSecret;
use warden_core::audit::{Actor, ActorKind};
use warden_core::names::{ClientName, TenantId};
use warden_core::scopes::Role;
use warden_server::{Application, Config};
use warden_store::testing::TestDb;
use warden_store::{Backend, Store};

/// A running server.
pub struct TestApp {
    pub url: String,
    pub http: reqwest::Client,
    pub store: Store,
    pub backend: Backend,
    pub app_state: warden_server::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    /// The database, dropped (and removed) with the first node; peers share it.
    _db: Option<TestDb>,
}

/// A client's credentials.
#[derive(Clone, Debug)]
pub struct TestClient {
    pub id: String,
    pub secret: String,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    /// The problem `code`, if the body is a problem.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// Start the server over `db` with the default configuration.
    pub async fn spawn(db: TestDb) -> Self {
        Self::spawn_with(db, |_| {}).await
    }

    /// Start the server over `db`, letting the test adjust the configuration.
    pub async fn spawn_with(db: TestDb, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        config.log_format = "text".into();
        match db.backend {
            Backend::Postgres => config.database_url = Some(db.url.clone()),
            Backend::Sqlite => {
                // The TestDb URL names the SQLite file; the server takes its directory.
                let path = db
                    .url
                    .trim_start_matches("sqlite://")
                    .split('?')
                    .next()
                    .unwrap()
                    .to_owned();
                config.data_dir = std::path::Path::new(&path).parent().unwrap().to_path_buf();
            }
        }
        adjust(&mut config);
        let backend = db.backend;
        Self::start(config, backend, Some(db)).await
    }

    /// A second node on the same database (PostgreSQL: several `warden serve` share it).
    pub async fn peer(&self) -> Self {
        let mut config = (*self.app_state.config).clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        Self::start(config, self.backend, None).await
    }

    async fn start(config: Config, backend: Backend, db: Option<TestDb>) -> Self {
        let app = Application::build(config).await.expect("server builds");
        let url = format!("http://127.0.0.1:{}", app.port());
        let store = app.state().store.clone();
        let app_state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run(async move {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            url,
            http: reqwest::Client::new(),
            store,
            backend,
            app_state,
            shutdown: Some(tx),
            handle: Some(handle),
            _db: db,
        }
    }

    /// Make `to` own the database, so it outlives this node.
    pub fn hand_over_db(&mut self, to: &mut TestApp) {
        to._db = self._db.take();
    }

    /// Stop the server and wait for it to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    /// Create a client directly in the store.
    pub async fn client(&self, tenant: &str, name: &str, roles: &[Role]) -> TestClient {
        let secret = ClientSecret::generate().unwrap();
        let c = self
            .store
            .create_client(
                &TenantId::parse_including_reserved(tenant).unwrap(),
                &ClientName::parse(name).unwrap(),
                roles,
                *secret.digest().as_bytes(),
                &Actor {
                    kind: ActorKind::Cli,
                    name: "test".into(),
                },
            )
            .await
            .expect("client created");
        TestClient {
            id: c.id.to_string(),
            secret: secret.expose().to_owned(),
        }
    }

    /// `POST /oauth/token` with HTTP Basic and the given form fields.
    pub async fn token_request(&self, c: &TestClient, form: &[(&str, &str)]) -> Answer {
        let mut all = vec![("grant_type", "client_credentials")];
        all.extend_from_slice(form);
        let r = self
            .http
            .post(format!("{}/oauth/token", self.url))
            .basic_auth(&c.id, Some(&c.secret))
            .form(&all)
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    /// A token for `c` with `form` fields, or panic.
    pub async fn token(&self, c: &TestClient, form: &[(&str, &str)]) -> String {
        let a = self.token_request(c, form).await;
        assert_eq!(a.status, StatusCode::OK, "token refused: {:?}", a.body);
        a.body["access_token"].as_str().unwrap().to_owned()
    }

    /// An `orch:read orch:operate` token with the warrant `maintenance` / `ticket`.
    pub async fn operator_token(&self, c: &TestClient, ticket: &str) -> String {
        self.token(
            c,
            &[
                ("scope", "orch:read orch:operate"),
                ("operator_reason", "maintenance"),
                ("operator_ticket", ticket),
            ],
        )
        .await
    }

    /// A fresh tenant with an admin client, its default token and an operator token.
    pub async fn tenant(&self, tenant: &str) -> Tenant {
        let admin = self.client(tenant, "admin", &[Role::Admin]).await;
        let token = self.token(&admin, &[]).await;
        let operator = self.operator_token(&admin, "TICKET-123").await;
        Tenant {
            admin,
            token,
            operator,
        }
    }

    /// Send a request with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        answer(req.send().await.unwrap()).await
    }

    /// GET.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None).await
    }

    /// POST with an optional JSON body.
    pub async fn post(&self, path: &str, token: &str, body: Option<Value>) -> Answer {
        self.send(Method::POST, path, Some(token), body.as_ref())
            .await
    }

    /// Enqueue a job in `queue` and return it.
    pub async fn enqueue(&self, token: &str, queue: &str) -> Value {
        let a = self
            .post(
                "/api/v1/jobs",
                token,
                Some(json!({"queue": queue, "type": "test", "payload": {"n": 1}})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        a.body
    }

    /// The audit entries of the token's tenant, newest first (up to 1000).
    pub async fn audit(&self, token: &str, query: &str) -> Vec<Value> {
        let a = self
            .get(&format!("/api/v1/audit?limit=1000&{query}"), token)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        a.body["items"].as_array().unwrap().clone()
    }
}

/// A tenant set up for a test.
pub struct Tenant {
    pub admin: TestClient,
    /// Default scopes of an admin: `orch:read orch:work`.
    pub token: String,
    /// `orch:read orch:operate` with ticket `TICKET-123`.
    pub operator: String,
}

pub async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        headers,
    }
}

/// One server per backend (SQLite always; PostgreSQL when reachable, required under CI).
pub async fn apps() -> Vec<TestApp> {
    let mut out = Vec::new();
    for db in TestDb::all().await {
        out.push(TestApp::spawn(db).await);
    }
    out
}
