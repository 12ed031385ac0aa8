//! What each command does. Client commands print the server's JSON with `--json`, or a
//! short human table otherwise.

use std::io::Write;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};
use warden_authority::ClientSecret;
use warden_core::audit::{Actor, ActorKind};
use warden_core::names::{ClientName, TenantId};
use warden_core::scopes::Role;
use warden_store::Store;
use warden_store::tenants::ClientRecord;

use crate::args::{
    AuditCommand, Cli, ClientsCommand, Command, ConnArgs, JobsCommand, KeysCommand, QueuesCommand,
    QuotaCommand, SchedulesCommand, StoreArgs, WarrantArgs,
};
use crate::client::{Client, Need};
use crate::{ledger, serve};

pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Clients(c) => clients(c).await,
        Command::Keys(c) => keys(c).await,
        Command::Jobs(c) => jobs(c).await,
        Command::Queues(c) => queues(c).await,
        Command::Quota(c) => quota(c).await,
        Command::Schedules(c) => schedules(c).await,
        Command::Audit(c) => audit(c).await,
        Command::Worker(args) => crate::worker::run(args).await,
    }
}

/// Print one line (or block) to stdout.
pub(crate) fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    Ok(())
}

/// Print `v` as pretty JSON to stdout.
pub(crate) fn print_json(v: &Value) -> Result<()> {
    out(&serde_json::to_string_pretty(v)?)
}

async fn open_store(args: &StoreArgs) -> Result<Store> {
    Ok(open_store_with_config(args).await?.1)
}

async fn open_store_with_config(args: &StoreArgs) -> Result<(warden_server::Config, Store)> {
    let config = serve::load_config(args, None)?;
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    }
    let mut options = config.store_options()?;
    options.max_connections = 2;
    let store = Store::open(&options)
        .await
        .context("cannot open the store")?;
    Ok((config, store))
}

/// `cli:<os user>`: who ran a store-side command.
fn cli_actor() -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    Actor {
        kind: ActorKind::Cli,
        name: user,
    }
}

async fn keys(cmd: KeysCommand) -> Result<()> {
    use warden_server::auth::TOKEN_KEY_PURPOSE;
    use warden_server::ledger::CHECKPOINT_KEY_PURPOSE;
    match cmd {
        KeysCommand::Rotate {
            purpose,
            warrant,
            json,
            store,
        } => {
            let (config, store) = open_store_with_config(&store).await?;
            let warrant = local_warrant(&config, warrant)?;
            let new = if purpose == CHECKPOINT_KEY_PURPOSE {
                warden_server::ledger::new_checkpoint_key(&config.ledger_host())?
            } else {
                warden_server::auth::new_token_key()?
            };
            let retired = store.rotate_signing_key(&new, &warrant).await?;
            if json {
                print_json(&json!({"purpose": purpose, "kid": new.kid, "retired": retired}))
            } else {
                out(&format!(
                    "{purpose} key {} now signs; retired (still verifying): {}\nRunning servers take it up within {} s.",
                    new.kid,
                    if retired.is_empty() {
                        "none".to_owned()
                    } else {
                        retired.join(", ")
                    },
                    warden_server::KEY_RELOAD_EVERY.as_secs()
                ))
            }
        }
        KeysCommand::Reseal {
            warrant,
            json,
            store,
        } => {
            // Read from the environment, never a flag: a flag shows in `ps`.
            let new = std::env::var("WARDEN_NEW_MASTER_KEY").context(
                "set WARDEN_NEW_MASTER_KEY to the new master key (32 random bytes, base64)",
            )?;
            let new = warden_store::sealing::MasterKey::from_base64(&new)
                .context("WARDEN_NEW_MASTER_KEY")?;
            let (config, store) = open_store_with_config(&store).await?;
            let warrant = local_warrant(&config, warrant)?;
            let n = store.reseal_signing_keys(&new, &warrant).await?;
            if json {
                print_json(&json!({"resealed": n}))
            } else {
                out(&format!(
                    "{n} signing keys sealed with the new master key.\nRestart every server with WARDEN_MASTER_KEY set to it; until then they keep the keys they hold but cannot take up a rotation."
                ))
            }
        }
        KeysCommand::List {
            purpose,
            json,
            store,
        } => {
            let store = open_store(&store).await?;
            let purposes = match &purpose {
                Some(p) => vec![p.as_str()],
                None => vec![TOKEN_KEY_PURPOSE, CHECKPOINT_KEY_PURPOSE],
            };
            let mut rows = Vec::new();
            for p in purposes {
                for k in store.signing_keys(p).await? {
                    rows.push(json!({
                        "purpose": k.purpose,
                        "kid": k.kid,
                        "created_at": k.created_at.to_string(),
                        "retired_at": k.retired_at.map(|t| t.to_string()),
                        "status": if k.retired_at.is_some() { "retired" } else { "active" },
                    }));
                }
            }
            if json {
                return print_json(&Value::Array(rows));
            }
            out(&format!(
                "{:<11} {:<44} {:<8} CREATED",
                "PURPOSE", "KID", "STATUS"
            ))?;
            for r in rows {
                out(&format!(
                    "{:<11} {:<44} {:<8} {}",
                    r["purpose"].as_str().unwrap_or(""),
                    r["kid"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or(""),
                    r["created_at"].as_str().unwrap_or("")
                ))?;
            }
            Ok(())
        }
    }
}

/// The warrant of a store-side operator command: `--reason` and `--ticket`, the ticket
/// checked against the configured pattern like a token request's.
fn local_warrant(
    config: &warden_server::Config,
    w: WarrantArgs,
) -> Result<warden_store::tenants::LocalWarrant> {
    if w.reason.trim().is_empty() {
        bail!("--reason must not be empty");
    }
    let pattern = warden_core::scopes::TicketPattern::new(&config.auth.ticket_pattern)
        .context("auth.ticket_pattern")?;
    if !pattern.matches(&w.ticket) {
        bail!(
            "--ticket {:?} does not match the ticket pattern {}",
            w.ticket,
            config.auth.ticket_pattern
        );
    }
    Ok(warden_store::tenants::LocalWarrant {
        actor: cli_actor(),
        reason: w.reason,
        ticket: w.ticket,
    })
}

fn client_json(c: &ClientRecord) -> Value {
    json!({
        "client_id": c.id.to_string(), "tenant": c.tenant.as_str(), "name": c.name.as_str(),
        "roles": c.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "created_at": c.created_at, "revoked_at": c.revoked_at,
    })
}

async fn clients(cmd: ClientsCommand) -> Result<()> {
    let tenant_arg = |t: &str| {
        TenantId::parse_including_reserved(t).map_err(|e| anyhow::anyhow!("--tenant: {e}"))
    };
    let name_arg = |n: &str| ClientName::parse(n).map_err(|e| anyhow::anyhow!("--name: {e}"));
    match cmd {
        ClientsCommand::Create {
            tenant,
            name,
            roles,
            json,
            store,
        } => {
            let tenant = tenant_arg(&tenant)?;
            let name = name_arg(&name)?;
            let roles = roles
                .iter()
                .map(|r| Role::parse(r).with_context(|| format!("unknown role {r} (one of Orch.Viewer, Orch.Operator, Orch.Admin, Orch.Worker, Orch.Exporter)")))
                .collect::<Result<Vec<_>>>()?;
            let store = open_store(&store).await?;
            let secret = ClientSecret::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
            let c = store
                .create_client(
                    &tenant,
                    &name,
                    &roles,
                    *secret.digest().as_bytes(),
                    &cli_actor(),
                )
                .await?;
            let role_names: Vec<&str> = c.roles.iter().map(|r| r.as_str()).collect();
            if json {
                print_json(
                    &json!({"client_id": c.id.to_string(), "client_secret": secret.expose(), "tenant": c.tenant.as_str(), "roles": role_names}),
                )
            } else {
                out(&format!(
                    "client_id:     {}\nclient_secret: {}\ntenant:        {}\nroles:         {}\n\nThe secret is shown once; Warden keeps only its SHA-256 digest.",
                    c.id,
                    secret.expose(),
                    c.tenant,
                    role_names.join(" ")
                ))
            }
        }
        ClientsCommand::List {
            tenant,
            json,
            store,
        } => {
            let tenant = tenant_arg(&tenant)?;
            let list = open_store(&store).await?.list_clients(&tenant).await?;
            if json {
                return print_json(&Value::Array(list.iter().map(client_json).collect()));
            }
            out(&format!(
                "{:<24} {:<38} {:<8} ROLES",
                "NAME", "CLIENT_ID", "STATUS"
            ))?;
            for c in list {
                let status = if c.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                out(&format!(
                    "{:<24} {:<38} {:<8} {}",
                    c.name,
                    c.id,
                    status,
                    c.roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ))?;
            }
            Ok(())
        }
        ClientsCommand::Revoke {
            tenant,
            name,
            json,
            store,
        } => {
            let c = open_store(&store)
                .await?
                .revoke_client(&tenant_arg(&tenant)?, &name_arg(&name)?, &cli_actor())
                .await?;
            if json {
                print_json(&client_json(&c))
            } else {
                out(&format!(
                    "revoked client {} ({}); its tokens no longer work",
                    c.name, c.id
                ))
            }
        }
        ClientsCommand::RotateSecret {
            tenant,
            name,
            json,
            store,
        } => {
            let secret = ClientSecret::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
            let c = open_store(&store)
                .await?
                .rotate_client_secret(
                    &tenant_arg(&tenant)?,
                    &name_arg(&name)?,
                    *secret.digest().as_bytes(),
                    &cli_actor(),
                )
                .await?;
            if json {
                print_json(
                    &json!({"client_id": c.id.to_string(), "client_secret": secret.expose(), "tenant": c.tenant.as_str()}),
                )
            } else {
                out(&format!(
                    "client_id:     {}\nclient_secret: {}\n\nThe old secret no longer works; the new one is shown once.",
                    c.id,
                    secret.expose()
                ))
            }
        }
    }
}

fn opt(query: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<impl ToString>) {
    if let Some(v) = value {
        query.push((name, v.to_string()));
    }
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn print_jobs(v: &Value) -> Result<()> {
    out(&format!(
        "{:<38} {:<16} {:<20} {:<12} {:>4}  CREATED",
        "ID", "QUEUE", "TYPE", "STATE", "PRIO"
    ))?;
    for j in v["items"].as_array().into_iter().flatten() {
        out(&format!(
            "{:<38} {:<16} {:<20} {:<12} {:>4}  {}",
            s(j, "id"),
            s(j, "queue"),
            s(j, "type"),
            s(j, "state"),
            s(j, "priority"),
            s(j, "created_at")
        ))?;
    }
    next_cursor(v)
}

fn next_cursor(v: &Value) -> Result<()> {
    if let Some(c) = v["next_cursor"].as_str() {
        out(&format!("(more: --cursor {c})"))?;
    }
    Ok(())
}

fn print_job(j: &Value) -> Result<()> {
    for k in [
        "id",
        "queue",
        "type",
        "state",
        "priority",
        "attempt",
        "max_attempts",
        "run_at",
        "created_at",
        "updated_at",
        "replay_of",
        "reason_code",
        "last_error",
    ] {
        out(&format!("{k:<13} {}", s(j, k)))?;
    }
    out(&format!("{:<13} {}", "payload", j["payload"]))?;
    if let Some(t) = j["timeline"].as_array() {
        out("timeline:")?;
        for e in t {
            out(&format!(
                "  {}  {:<12} attempt {}  {}",
                s(e, "at"),
                s(e, "state"),
                s(e, "attempt"),
                [s(e, "actor"), s(e, "reason_code"), s(e, "error")]
                    .into_iter()
                    .filter(|x| x != "-")
                    .collect::<Vec<_>>()
                    .join(" ")
            ))?;
        }
    }
    Ok(())
}

fn show(conn: &ConnArgs, v: &Value, human: impl FnOnce(&Value) -> Result<()>) -> Result<()> {
    if conn.json { print_json(v) } else { human(v) }
}

async fn jobs(cmd: JobsCommand) -> Result<()> {
    match cmd {
        JobsCommand::Enqueue {
            queue,
            job_type,
            payload,
            priority,
            run_at,
            max_attempts,
            idempotency_key,
            depends_on,
            conn,
        } => {
            let payload: Value = serde_json::from_str(&payload).context("--payload is not JSON")?;
            let mut body = json!({"queue": queue, "type": job_type, "payload": payload});
            for (k, v) in [
                ("priority", priority.map(Value::from)),
                ("run_at", run_at.map(Value::from)),
                ("max_attempts", max_attempts.map(Value::from)),
                ("idempotency_key", idempotency_key.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            if !depends_on.is_empty() {
                body["depends_on"] = json!(depends_on);
            }
            let client = Client::connect(&conn, Need::Default).await?;
            let (_, v) = client
                .call(Method::POST, "/api/v1/jobs", &[], Some(&body))
                .await?;
            show(&conn, &v, |j| {
                out(&format!("{} {}", s(j, "id"), s(j, "state")))
            })
        }
        JobsCommand::List {
            queue,
            state,
            job_type,
            limit,
            cursor,
            conn,
        } => {
            let mut q = Vec::new();
            opt(&mut q, "queue", queue);
            opt(&mut q, "state", state);
            opt(&mut q, "type", job_type);
            opt(&mut q, "limit", limit);
            opt(&mut q, "cursor", cursor);
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(Method::GET, "/api/v1/jobs", &q, None)
                .await?;
            show(&conn, &v, print_jobs)
        }
        JobsCommand::Show { id, conn } => {
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(Method::GET, &format!("/api/v1/jobs/{id}"), &[], None)
                .await?;
            show(&conn, &v, print_job)
        }
        JobsCommand::Cancel { id, warrant, conn } => {
            let client = Client::connect(&conn, Need::Operate(&warrant)).await?;
            let (_, v) = client
                .call(
                    Method::POST,
                    &format!("/api/v1/jobs/{id}/cancel"),
                    &[],
                    None,
                )
                .await?;
            show(&conn, &v, |j| {
                out(&format!(
                    "canceled {} (was audited with ticket {})",
                    s(j, "id"),
                    warrant.ticket
                ))
            })
        }
        JobsCommand::Replay {
            ids,
            state,
            queue,
            job_type,
            dry_run,
            warrant,
            conn,
        } => {
            let filter_given = state.is_some() || queue.is_some() || job_type.is_some();
            let client = Client::connect(&conn, Need::Operate(&warrant)).await?;
            if ids.len() == 1 && !filter_given && !dry_run {
                let (_, v) = client
                    .call(
                        Method::POST,
                        &format!("/api/v1/jobs/{}/replay", ids[0]),
                        &[],
                        None,
                    )
                    .await?;
                return show(&conn, &v, |j| {
                    out(&format!("replayed {} as {}", s(j, "replay_of"), s(j, "id")))
                });
            }
            let body = match (ids.is_empty(), filter_given) {
                (false, false) => json!({"ids": ids, "dry_run": dry_run}),
                (true, true) => {
                    json!({"filter": {"state": state, "queue": queue, "type": job_type}, "dry_run": dry_run})
                }
                _ => bail!("give job ids, or --state/--queue/--type, not both"),
            };
            let (_, v) = client
                .call(Method::POST, "/api/v1/jobs/replay", &[], Some(&body))
                .await?;
            show(&conn, &v, |v| {
                if dry_run {
                    out(&format!(
                        "would replay {} jobs (dry run; nothing changed)",
                        s(v, "count")
                    ))
                } else {
                    let replayed = v["replayed"].as_array().map_or(0, Vec::len);
                    let skipped = v["skipped"].as_array().map_or(0, Vec::len);
                    out(&format!(
                        "bulk {}: replayed {replayed}, skipped {skipped}",
                        s(v, "bulk_id")
                    ))
                }
            })
        }
    }
}

fn print_queue(q: &Value) -> String {
    let d = &q["depth"];
    format!(
        "{:<24} {:<7} available={} pending={} running={} retrying={} succeeded={} dead_letter={} canceled={}",
        s(q, "name"),
        if q["paused"].as_bool() == Some(true) {
            "paused"
        } else {
            "active"
        },
        d["available"],
        d["pending"],
        d["running"],
        d["retrying"],
        d["succeeded"],
        d["dead_letter"],
        d["canceled"]
    )
}

async fn queues(cmd: QueuesCommand) -> Result<()> {
    match cmd {
        QueuesCommand::List { conn } => {
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(
                    Method::GET,
                    "/api/v1/queues",
                    &[("limit", "1000".into())],
                    None,
                )
                .await?;
            show(&conn, &v, |v| {
                for q in v["items"].as_array().into_iter().flatten() {
                    out(&print_queue(q))?;
                }
                next_cursor(v)
            })
        }
        QueuesCommand::Show { name, conn } => {
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(Method::GET, &format!("/api/v1/queues/{name}"), &[], None)
                .await?;
            show(&conn, &v, |q| out(&print_queue(q)))
        }
        QueuesCommand::Pause {
            name,
            warrant,
            conn,
        } => set_paused(&name, "pause", &warrant, &conn).await,
        QueuesCommand::Resume {
            name,
            warrant,
            conn,
        } => set_paused(&name, "resume", &warrant, &conn).await,
        QueuesCommand::Limits {
            name,
            rate_per_sec,
            burst,
            max_concurrency,
            warrant,
            conn,
        } => {
            let body = json!({
                "rate_per_sec": rate_per_sec,
                "burst": burst,
                "max_concurrency": max_concurrency,
            });
            let (_, v) = Client::connect(&conn, Need::Operate(&warrant))
                .await?
                .call(
                    Method::PUT,
                    &format!("/api/v1/queues/{name}/limits"),
                    &[],
                    Some(&body),
                )
                .await?;
            show(&conn, &v, |q| {
                out(&print_queue(q))?;
                out(&format!("limits: {}", q["limits"]))
            })
        }
        QueuesCommand::Retry {
            name,
            max_attempts,
            backoff_base_ms,
            backoff_max_ms,
            warrant,
            conn,
        } => {
            let body = json!({
                "max_attempts": max_attempts,
                "backoff_base_ms": backoff_base_ms,
                "backoff_max_ms": backoff_max_ms,
            });
            let (_, v) = Client::connect(&conn, Need::Operate(&warrant))
                .await?
                .call(
                    Method::PUT,
                    &format!("/api/v1/queues/{name}/retry"),
                    &[],
                    Some(&body),
                )
                .await?;
            show(&conn, &v, |q| {
                out(&print_queue(q))?;
                out(&format!("retry: {}", q["retry"]))
            })
        }
    }
}

async fn quota(cmd: QuotaCommand) -> Result<()> {
    let (conn, need, method, body) = match &cmd {
        QuotaCommand::Show { conn } => (conn, Need::Default, Method::GET, None),
        QuotaCommand::Set {
            max_queued,
            max_running,
            enqueue_per_sec,
            warrant,
            conn,
        } => (
            conn,
            Need::Quota(warrant),
            Method::PUT,
            Some(json!({
                "max_queued": max_queued,
                "max_running": max_running,
                "enqueue_per_sec": enqueue_per_sec,
            })),
        ),
    };
    let (_, v) = Client::connect(conn, need)
        .await?
        .call(method, "/api/v1/quota", &[], body.as_ref())
        .await?;
    show(conn, &v, |q| {
        let text = |k: &str| match &q[k] {
            Value::Null => "none".to_owned(),
            other => other.to_string(),
        };
        out(&format!(
            "max_queued={} max_running={} enqueue_per_sec={}",
            text("max_queued"),
            text("max_running"),
            text("enqueue_per_sec")
        ))
    })
}

fn print_schedule(v: &Value) -> Result<()> {
    out(&format!(
        "{}  {:<16} {:<16} queue={} type={} next={}",
        s(v, "id"),
        s(v, "cron"),
        v["timezone"].as_str().unwrap_or("UTC"),
        s(v, "queue"),
        s(v, "type"),
        v["next_fire_at"].as_str().unwrap_or("never"),
    ))
}

async fn schedules(cmd: SchedulesCommand) -> Result<()> {
    match cmd {
        SchedulesCommand::Create {
            cron,
            timezone,
            queue,
            job_type,
            payload,
            priority,
            max_attempts,
            conn,
        } => {
            let payload: Value = match payload {
                Some(p) => serde_json::from_str(&p).context("--payload is not JSON")?,
                None => Value::Null,
            };
            let body = json!({
                "cron": cron, "timezone": timezone, "queue": queue, "type": job_type,
                "payload": payload, "priority": priority, "max_attempts": max_attempts,
            });
            let (_, v) = Client::connect(&conn, Need::Admin)
                .await?
                .call(Method::POST, "/api/v1/schedules", &[], Some(&body))
                .await?;
            show(&conn, &v, print_schedule)
        }
        SchedulesCommand::List {
            limit,
            cursor,
            conn,
        } => {
            let mut query = Vec::new();
            if let Some(l) = limit {
                query.push(("limit", l.to_string()));
            }
            if let Some(c) = cursor {
                query.push(("cursor", c));
            }
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(Method::GET, "/api/v1/schedules", &query, None)
                .await?;
            show(&conn, &v, |v| {
                for item in v["items"].as_array().into_iter().flatten() {
                    print_schedule(item)?;
                }
                next_cursor(v)
            })
        }
        SchedulesCommand::Show { id, conn } => {
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(Method::GET, &format!("/api/v1/schedules/{id}"), &[], None)
                .await?;
            show(&conn, &v, print_schedule)
        }
        SchedulesCommand::Update {
            id,
            cron,
            timezone,
            queue,
            job_type,
            payload,
            priority,
            max_attempts,
            conn,
        } => {
            let mut body = serde_json::Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body.insert(k.to_owned(), v);
                }
            };
            put("cron", cron.map(Value::from));
            put("timezone", timezone.map(Value::from));
            put("queue", queue.map(Value::from));
            put("type", job_type.map(Value::from));
            put("priority", priority.map(Value::from));
            put("max_attempts", max_attempts.map(Value::from));
            let payload = match payload {
                Some(p) => Some(serde_json::from_str(&p).context("--payload is not JSON")?),
                None => None,
            };
            put("payload", payload);
            let (_, v) = Client::connect(&conn, Need::Admin)
                .await?
                .call(
                    Method::PATCH,
                    &format!("/api/v1/schedules/{id}"),
                    &[],
                    Some(&Value::Object(body)),
                )
                .await?;
            show(&conn, &v, print_schedule)
        }
        SchedulesCommand::Delete { id, conn } => {
            let (_, v) = Client::connect(&conn, Need::Admin)
                .await?
                .call(
                    Method::DELETE,
                    &format!("/api/v1/schedules/{id}"),
                    &[],
                    None,
                )
                .await?;
            show(&conn, &v, |v| {
                out(&format!("schedule {} deleted", s(v, "id")))
            })
        }
        SchedulesCommand::Backfill {
            id,
            from,
            to,
            warrant,
            conn,
        } => {
            let (_, v) = Client::connect(&conn, Need::Backfill(&warrant))
                .await?
                .call(
                    Method::POST,
                    &format!("/api/v1/schedules/{id}/backfill"),
                    &[],
                    Some(&json!({"from": from, "to": to})),
                )
                .await?;
            show(&conn, &v, |v| {
                let runs = v["runs"].as_array().cloned().unwrap_or_default();
                for r in &runs {
                    out(&format!(
                        "{}  job {}  {}",
                        s(r, "fire_time"),
                        s(r, "job_id"),
                        if r["created"] == true {
                            "created"
                        } else {
                            "existed"
                        }
                    ))?;
                }
                let created = runs.iter().filter(|r| r["created"] == true).count();
                out(&format!("{} runs, {created} created", runs.len()))
            })
        }
        SchedulesCommand::Pause { id, warrant, conn } => {
            let v = post_operate(&format!("/api/v1/schedules/{id}/pause"), &warrant, &conn).await?;
            show(&conn, &v, |v| {
                out(&format!(
                    "schedule {} paused at {}",
                    s(v, "id"),
                    s(v, "paused_at")
                ))
            })
        }
        SchedulesCommand::Resume { id, warrant, conn } => {
            let v =
                post_operate(&format!("/api/v1/schedules/{id}/resume"), &warrant, &conn).await?;
            show(&conn, &v, |v| {
                out(&format!(
                    "schedule {} resumed; next run {}",
                    s(v, "id"),
                    s(v, "next_fire_at")
                ))
            })
        }
    }
}

/// `queues pause|resume`: the operator action `verb` on queue `name`.
async fn set_paused(name: &str, verb: &str, warrant: &WarrantArgs, conn: &ConnArgs) -> Result<()> {
    let v = post_operate(&format!("/api/v1/queues/{name}/{verb}"), warrant, conn).await?;
    show(conn, &v, |q| out(&print_queue(q)))
}

/// POST to `path` with an operator token for `warrant`, no body; the answer.
async fn post_operate(path: &str, warrant: &WarrantArgs, conn: &ConnArgs) -> Result<Value> {
    let (_, v) = Client::connect(conn, Need::Operate(warrant))
        .await?
        .call(Method::POST, path, &[], None)
        .await?;
    Ok(v)
}

async fn audit(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::List {
            actor,
            action,
            target,
            ticket,
            outcome,
            since,
            until,
            q: text,
            limit,
            cursor,
            conn,
        } => {
            let mut q: Vec<(&'static str, String)> = Vec::new();
            q.extend(actor.into_iter().map(|a| ("actor", a)));
            q.extend(action.into_iter().map(|a| ("action", a)));
            opt(&mut q, "target", target);
            opt(&mut q, "ticket", ticket);
            opt(&mut q, "outcome", outcome);
            opt(&mut q, "since", since);
            opt(&mut q, "until", until);
            opt(&mut q, "q", text);
            opt(&mut q, "limit", limit);
            opt(&mut q, "cursor", cursor);
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(Method::GET, "/api/v1/audit", &q, None)
                .await?;
            show(&conn, &v, |v| {
                out(&format!(
                    "{:>6} {:<27} {:<24} {:<18} {:<9} {:<24} {:<14} TARGET",
                    "SEQ", "TIME", "ACTOR", "ACTION", "OUTCOME", "CODE", "TICKET"
                ))?;
                for e in v["items"].as_array().into_iter().flatten() {
                    out(&format!(
                        "{:>6} {:<27} {:<24} {:<18} {:<9} {:<24} {:<14} {}:{}",
                        s(e, "seq"),
                        s(e, "created_at"),
                        s(e, "actor"),
                        s(e, "action"),
                        s(e, "outcome"),
                        s(e, "reason_code"),
                        s(e, "operator_ticket"),
                        s(e, "target_kind"),
                        s(e, "target_id")
                    ))?;
                }
                next_cursor(v)
            })
        }
        AuditCommand::Show { id, conn } => {
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(Method::GET, &format!("/api/v1/audit/{id}"), &[], None)
                .await?;
            // An entry is best read whole; the human form is the pretty JSON too.
            print_json(&v)
        }
        AuditCommand::Stats { since, until, conn } => {
            let mut q = Vec::new();
            opt(&mut q, "since", since);
            opt(&mut q, "until", until);
            let (_, v) = Client::connect(&conn, Need::Default)
                .await?
                .call(Method::GET, "/api/v1/audit/stats", &q, None)
                .await?;
            show(&conn, &v, |v| {
                out(&format!(
                    "total: {}   first: {}   last: {}",
                    s(v, "total"),
                    s(v, "first_at"),
                    s(v, "last_at")
                ))?;
                out("by action:")?;
                for (k, n) in v["by_action"].as_object().into_iter().flatten() {
                    out(&format!("  {k:<24} {n}"))?;
                }
                out("by outcome:")?;
                for (k, n) in v["by_outcome"].as_object().into_iter().flatten() {
                    out(&format!("  {k:<24} {n}"))?;
                }
                out("top actors:")?;
                for a in v["top_actors"].as_array().into_iter().flatten() {
                    out(&format!("  {:<24} {}", s(a, "actor"), s(a, "count")))?;
                }
                Ok(())
            })
        }
        AuditCommand::Keys { out, conn } => ledger::keys(out.as_deref(), &conn).await,
        AuditCommand::Checkpoint { out, key, conn } => {
            ledger::checkpoint(out.as_deref(), key.as_deref(), &conn).await
        }
        AuditCommand::Export {
            format,
            since,
            until,
            out,
            conn,
        } => ledger::export(format, since, until, out.as_deref(), &conn).await,
        AuditCommand::Verify {
            file,
            checkpoints,
            key,
            entry,
            json,
        } => ledger::verify::run(&ledger::verify::VerifyArgs {
            file,
            checkpoints,
            key,
            entry,
            json,
        }),
        AuditCommand::Receipt { id, out, key, conn } => {
            ledger::receipt(&id, out, key.as_deref(), &conn).await
        }
        AuditCommand::Watch {
            state,
            interval,
            once,
            key,
            conn,
        } => {
            ledger::watch::run(
                ledger::watch::WatchArgs {
                    state,
                    interval: std::time::Duration::from_secs(interval),
                    once,
                    key,
                },
                &conn,
            )
            .await
        }
        AuditCommand::Tail { conn } => ledger::tail::run(&conn).await,
    }
}
