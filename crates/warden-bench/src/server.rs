//! A `warden serve` process over a fresh store, and the admin client the bench uses.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tokio::process::{Child, Command};

/// Where the server keeps its jobs.
#[derive(Debug, Clone)]
pub enum Store {
    /// Embedded SQLite in a fresh temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server that `admin_url` reaches.
    Postgres {
        /// A URL to a database on that server from which `CREATE DATABASE` works.
        admin_url: String,
    },
}

impl Store {
    /// `sqlite` or `postgres`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// A running server.
pub struct Server {
    /// Its base URL.
    pub url: String,
    /// An `Orch.Admin` client of tenant `default`.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    child: Child,
    /// The PostgreSQL database to drop afterwards: (admin URL, name).
    database: Option<(String, String)>,
    /// Data directory and server log; removed on drop unless kept.
    dir: tempfile::TempDir,
}

#[derive(Deserialize)]
struct CreatedClient {
    client_id: String,
    client_secret: String,
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}_{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// `admin_url` with its database replaced by `db`.
pub fn database_url(admin_url: &str, db: &str) -> Result<String> {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let after_scheme = base
        .find("://")
        .map(|i| i + 3)
        .context("the PostgreSQL URL has no scheme")?;
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    })
}

async fn psql(admin_url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([admin_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run psql (needed to create a fresh PostgreSQL database)")?;
    if !out.status.success() {
        bail!(
            "psql failed on `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a local port")?;
    Ok(l.local_addr()?.port())
}

impl Server {
    /// Start `warden serve` (the binary at `bin`) over a fresh store, wait until it is
    /// ready, and create a client.
    pub async fn start(bin: &Path, store: &Store, extra_env: &[(String, String)]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("warden-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let data_dir = dir.path().join("data");
        let mut database = None;
        let mut store_args: Vec<String> = vec!["--data-dir".into(), data_dir.display().to_string()];
        if let Store::Postgres { admin_url } = store {
            let name = format!("warden_bench_{}", unique_suffix());
            psql(admin_url, &format!("CREATE DATABASE {name}")).await?;
            store_args.push("--database-url".into());
            store_args.push(database_url(admin_url, &name)?);
            database = Some((admin_url.clone(), name));
        }
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(&store_args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut server = Self {
            url,
            client_id: String::new(),
            client_secret: String::new(),
            child,
            database,
            dir,
        };
        server.wait_ready(&log_path).await?;
        let out = Command::new(bin)
            .args([
                "clients", "create", "--tenant", "default", "--name", "bench",
            ])
            .args(["--role", "Orch.Admin", "--json"])
            .args(&store_args)
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run `warden clients create`")?;
        if !out.status.success() {
            bail!(
                "`warden clients create` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let created: CreatedClient = serde_json::from_slice(&out.stdout)
            .context("`warden clients create --json` printed something unexpected")?;
        server.client_id = created.client_id;
        server.client_secret = created.client_secret;
        Ok(server)
    }

    async fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "warden serve exited with {status}; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("warden serve did not become ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// SIGTERM the server, wait for it to exit, drop its database; with `keep`, leave the
    /// data directory and log in place and return their path.
    pub async fn stop(mut self, keep: bool) -> Result<Option<PathBuf>> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    eprintln!("warden-bench: warden serve exited with {status}");
                }
            }
            Err(_) => {
                eprintln!("warden-bench: warden serve did not stop within 15 s; killing it");
                self.child.kill().await?;
            }
        }
        if let Some((admin, name)) = self.database.take() {
            if keep {
                eprintln!("warden-bench: kept database {name}");
            } else {
                psql(
                    &admin,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await?;
            }
        }
        if keep {
            let path = self.dir.keep();
            return Ok(Some(path));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_swap_the_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u@h:1", "x").unwrap(),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            database_url("postgres://u@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
