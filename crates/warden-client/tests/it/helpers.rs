//! `TestServer`: the real Warden server on 127.0.0.1:0 over a fresh store, as the server's
//! own tests start it, with a client created directly in the store.

use warden_authority::ClientSecret;
use warden_client::{Client, Credentials};
use warden_core::audit::{Actor, ActorKind};
use warden_core::names::{ClientName, TenantId};
use warden_core::scopes::Role;
use warden_server::{Application, Config};
use warden_store::Backend;
use warden_store::testing::TestDb;

/// A running server and the credentials of an admin of tenant `default`.
pub struct TestServer {
    pub url: String,
    pub backend: Backend,
    pub credentials: Credentials,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _db: TestDb,
}

impl TestServer {
    /// Start the server over `db` and create an `Orch.Admin` client.
    pub async fn spawn(db: TestDb) -> Self {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        config.log_format = "text".into();
        match db.backend {
            Backend::Postgres => config.database_url = Some(db.url.clone()),
            Backend::Sqlite => {
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
        let app = Application::build(config).await.expect("server builds");
        let url = format!("http://127.0.0.1:{}", app.port());
        let store = app.state().store.clone();
        let secret = ClientSecret::generate().unwrap();
        let record = store
            .create_client(
                &TenantId::parse("default").unwrap(),
                &ClientName::parse("worker").unwrap(),
                &[Role::Admin],
                *secret.digest().as_bytes(),
                &Actor {
                    kind: ActorKind::Cli,
                    name: "test".into(),
                },
            )
            .await
            .expect("client created");
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
            backend: db.backend,
            credentials: Credentials::new(record.id.to_string(), secret.expose()),
            shutdown: Some(tx),
            handle: Some(handle),
            _db: db,
        }
    }

    /// One server per available backend.
    pub async fn all() -> Vec<Self> {
        let mut out = Vec::new();
        for db in TestDb::all().await {
            out.push(Self::spawn(db).await);
        }
        out
    }

    /// A connected client with the admin's default scopes (`orch:read orch:work`).
    pub async fn client(&self) -> Client {
        Client::connect(&self.url, self.credentials.clone())
            .await
            .expect("token")
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
}
