//! `warden serve`: load the configuration, start logging, build and run the server until
//! SIGTERM or Ctrl-C, then drain (at most 10 s).

use std::time::Duration;

use anyhow::{Context, Result};
use warden_core::names::TenantId;
use warden_server::{Application, Config};

use crate::args::{ServeArgs, StoreArgs};

/// Flags as figment overrides: only the flags given.
pub fn store_overrides(store: &StoreArgs, listen: Option<&str>) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    if let Some(d) = &store.data_dir {
        o.insert("data_dir".into(), d.display().to_string().into());
    }
    if let Some(u) = &store.database_url {
        o.insert("database_url".into(), u.clone().into());
    }
    if let Some(l) = listen {
        o.insert("listen".into(), l.into());
    }
    serde_json::Value::Object(o)
}

/// Load the configuration for `store` flags.
pub fn load_config(store: &StoreArgs, listen: Option<&str>) -> Result<Config> {
    Ok(Config::load(
        store.config.as_deref(),
        &store_overrides(store, listen),
    )?)
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder.json().with_current_span(false).init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; draining in-flight requests");
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let config = load_config(&args.store, args.listen.as_deref())?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&config.redacted())?);
        return Ok(());
    }
    init_logging(&config.log_format);
    for var in Config::unknown_env_vars(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!(variable = %var, "unknown WARDEN_* environment variable ignored");
    }
    let app = Application::build(config.clone())
        .await
        .context("cannot start the server")?;
    let store = app.state().store.clone();
    tracing::info!(port = app.port(), backend = ?store.backend(), "warden is listening");
    let default = TenantId::parse("default").expect("valid");
    if store.list_clients(&default).await?.is_empty() {
        let mut cmd =
            String::from("warden clients create --tenant default --name admin --role Orch.Admin");
        match &config.database_url {
            Some(_) => cmd.push_str(" --database-url \"$WARDEN_DATABASE_URL\""),
            None if config.data_dir != std::path::Path::new("./warden-data") => {
                cmd.push_str(&format!(" --data-dir {}", config.data_dir.display()))
            }
            None => {}
        }
        eprintln!(
            "No client exists yet. Create the first one (its secret is printed once, never logged):\n\n    {cmd}\n"
        );
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        shutdown_signal().await;
        let _ = done_tx.send(());
    }));
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result?.map_err(Into::into),
        _ = done_rx => {}
    }
    // Draining: in-flight requests get up to 10 s in all.
    match tokio::time::timeout(Duration::from_secs(9), &mut server).await {
        Ok(result) => result?.map_err(Into::into),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within the drain period; exiting");
            Ok(())
        }
    }
}
