//! The `warden` binary as a user runs it: the server, the store-side commands and the
//! client commands, including the README's tour.

mod crash;
mod ledger;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn warden() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    // Tests must not inherit a developer's client settings.
    for v in [
        "WARDEN_URL",
        "WARDEN_CLIENT_ID",
        "WARDEN_CLIENT_SECRET",
        "WARDEN_DATA_DIR",
        "WARDEN_DATABASE_URL",
        "WARDEN_LISTEN",
        "WARDEN_CONFIG",
    ] {
        c.env_remove(v);
    }
    c
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = warden();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("warden runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn operator_commands_without_reason_or_ticket_exit_2_before_any_request() {
    // Port 9 (discard) has no Warden: a request would fail with exit 1, not 2.
    let url = "http://127.0.0.1:9";
    let cases: &[&[&str]] = &[
        &[
            "schedules",
            "pause",
            "s1",
            "--ticket",
            "OPS-1",
            "--url",
            url,
        ],
        &["schedules", "resume", "s1", "--reason", "why", "--url", url],
        &[
            "jobs",
            "cancel",
            "01a20000-0000-7000-8000-000000000000",
            "--ticket",
            "OPS-1",
            "--url",
            url,
        ],
        &[
            "jobs",
            "cancel",
            "01a20000-0000-7000-8000-000000000000",
            "--reason",
            "why",
            "--url",
            url,
        ],
        &[
            "jobs",
            "replay",
            "--state",
            "dead_letter",
            "--reason",
            "why",
            "--url",
            url,
        ],
        &["queues", "pause", "q", "--ticket", "OPS-1", "--url", url],
        &["queues", "resume", "q", "--reason", "why", "--url", url],
        &[
            "queues",
            "limits",
            "q",
            "--max-concurrency",
            "2",
            "--ticket",
            "OPS-1",
            "--url",
            url,
        ],
        &[
            "quota",
            "set",
            "--max-queued",
            "10",
            "--reason",
            "why",
            "--url",
            url,
        ],
        &[
            "queues",
            "retry",
            "q",
            "--max-attempts",
            "3",
            "--reason",
            "why",
            "--url",
            url,
        ],
        &[
            "schedules",
            "backfill",
            "01a20000-0000-7000-8000-000000000000",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-02T00:00:00Z",
            "--ticket",
            "OPS-1",
            "--url",
            url,
        ],
    ];
    for args in cases {
        let o = run(
            args,
            &[("WARDEN_CLIENT_ID", "x"), ("WARDEN_CLIENT_SECRET", "y")],
        );
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("--reason") || err.contains("--ticket"),
            "{err}"
        );
        assert!(
            !err.contains("cannot reach"),
            "no request was attempted: {err}"
        );
    }
    // Read commands take no warrant; without a server they fail with exit 1.
    let o = run(
        &["jobs", "list", "--url", url],
        &[("WARDEN_CLIENT_ID", "x"), ("WARDEN_CLIENT_SECRET", "y")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn clients_create_json_prints_exactly_the_contract_fields_and_refuses_bad_roles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = run(
        &[
            "clients",
            "create",
            "--tenant",
            "acme",
            "--name",
            "ops-bot",
            "--role",
            "Orch.Operator",
            "--role",
            "Orch.Viewer",
            "--json",
            "--data-dir",
            data,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["client_id", "client_secret", "roles", "tenant"]);
    assert_eq!(v["tenant"], "acme");
    assert_eq!(
        v["roles"],
        serde_json::json!(["Orch.Operator", "Orch.Viewer"])
    );
    assert!(
        v["client_secret"].as_str().unwrap().len() >= 43,
        "256-bit secret"
    );
    let o = run(
        &[
            "clients",
            "create",
            "--tenant",
            "acme",
            "--name",
            "ops-bot",
            "--role",
            "Orch.Viewer",
            "--data-dir",
            data,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "duplicate name");
    let o = run(
        &[
            "clients",
            "create",
            "--tenant",
            "acme",
            "--name",
            "x",
            "--role",
            "Orch.God",
            "--data-dir",
            data,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown role"));
    let o = run(
        &[
            "clients",
            "list",
            "--tenant",
            "acme",
            "--json",
            "--data-dir",
            data,
        ],
        &[],
    );
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("secret"),
        "list never shows secrets"
    );
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path) -> Self {
        Self::start_with_env(data, &[])
    }

    /// The server on an ephemeral port, with `env` set.
    fn start_with_env(data: &Path, env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_at_with_env(data, &format!("127.0.0.1:{port}"), env)
    }

    /// The server on a given address (to restart one where its clients expect it).
    fn start_at(data: &Path, listen: &str) -> Self {
        Self::start_at_with_env(data, listen, &[])
    }

    fn start_at_with_env(data: &Path, listen: &str, env: &[(&str, &str)]) -> Self {
        let listen = listen.to_owned();
        let child = warden()
            .envs(env.iter().copied())
            .args([
                "serve",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &listen,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://{listen}"),
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn creds(data: &str, tenant: &str, name: &str, role: &str) -> (String, String) {
    let o = run(
        &[
            "clients",
            "create",
            "--tenant",
            tenant,
            "--name",
            name,
            "--role",
            role,
            "--json",
            "--data-dir",
            data,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_readme_tour_works_end_to_end_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Server::start(dir.path());
    // The admin client is created while the server runs, on the same store.
    let (admin_id, admin_secret) = creds(data, "default", "admin", "Orch.Admin");
    let (viewer_id, viewer_secret) = creds(data, "default", "viewer", "Orch.Viewer");
    let admin = [
        ("WARDEN_URL", server.url.as_str()),
        ("WARDEN_CLIENT_ID", admin_id.as_str()),
        ("WARDEN_CLIENT_SECRET", admin_secret.as_str()),
    ];
    let viewer = [
        ("WARDEN_URL", server.url.as_str()),
        ("WARDEN_CLIENT_ID", viewer_id.as_str()),
        ("WARDEN_CLIENT_SECRET", viewer_secret.as_str()),
    ];

    let o = run(
        &[
            "jobs",
            "enqueue",
            "--queue",
            "emails",
            "--type",
            "send",
            "--payload",
            r#"{"to":"a@example.com"}"#,
            "--json",
        ],
        &admin,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let job: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = job["id"].as_str().unwrap();

    let o = run(
        &[
            "jobs",
            "cancel",
            id,
            "--reason",
            "maintenance",
            "--ticket",
            "TICKET-123",
            "--json",
        ],
        &admin,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let canceled: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(canceled["state"], "canceled");

    let o = run(
        &[
            "audit",
            "list",
            "--ticket",
            "TICKET-123",
            "--action",
            "job.cancel",
            "--json",
        ],
        &admin,
    );
    let entries: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(entries["items"].as_array().unwrap().len(), 1);
    assert_eq!(entries["items"][0]["target_id"], id);
    assert_eq!(entries["items"][0]["operator_reason"], "maintenance");

    // A read-only client is refused: its token cannot carry orch:operate.
    let o = run(
        &[
            "jobs",
            "cancel",
            id,
            "--reason",
            "maintenance",
            "--ticket",
            "TICKET-123",
        ],
        &viewer,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid_scope"), "{}", stderr(&o));
    let o = run(
        &["audit", "list", "--outcome", "rejected", "--json"],
        &admin,
    );
    let refused: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(refused["items"][0]["actor"], "client:viewer");
    assert_eq!(refused["items"][0]["reason_code"], "FORBIDDEN_SCOPE");

    // Human output works too.
    let o = run(&["audit", "stats"], &admin);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("job.cancel"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run(&["queues", "list"], &admin);
    assert!(String::from_utf8_lossy(&o.stdout).contains("emails"));

    // Limits and quotas: operator and quota warrants, each audited.
    let o = run(
        &[
            "queues",
            "limits",
            "emails",
            "--max-concurrency",
            "2",
            "--rate-per-sec",
            "50",
            "--reason",
            "protect the SMTP relay",
            "--ticket",
            "OPS-9",
            "--json",
        ],
        &admin,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let q: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(q["limits"]["max_concurrency"], 2);
    let o = run(
        &[
            "queues",
            "retry",
            "emails",
            "--max-attempts",
            "5",
            "--backoff-base-ms",
            "2000",
            "--reason",
            "flaky SMTP relay",
            "--ticket",
            "OPS-10",
            "--json",
        ],
        &admin,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let q: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(q["retry"]["max_attempts"], 5);
    let o = run(
        &[
            "quota",
            "set",
            "--max-queued",
            "1000",
            "--reason",
            "noisy tenant",
            "--ticket",
            "CAP-1",
        ],
        &admin,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["quota", "show"], &admin);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("max_queued=1000"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run(
        &["audit", "list", "--action", "quota.update", "--json"],
        &admin,
    );
    let q: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        q["items"][0]["operator_ticket"], "CAP-1",
        "the quota warrant is recorded"
    );
    // Schedules: a cron in a time zone, then a backfill under the backfill warrant.
    let o = run(
        &[
            "schedules",
            "create",
            "--cron",
            "0 9 * * *",
            "--timezone",
            "Europe/Paris",
            "--queue",
            "reports",
            "--type",
            "daily",
            "--payload",
            r#"{"team":"ops"}"#,
            "--json",
        ],
        &admin,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sched: Value = serde_json::from_slice(&o.stdout).unwrap();
    let sched_id = sched["id"].as_str().unwrap().to_owned();
    let o = run(&["schedules", "list"], &admin);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Europe/Paris"));
    let backfill = [
        "schedules",
        "backfill",
        sched_id.as_str(),
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2026-11-04T00:00:00Z",
        "--reason",
        "reports lost in the outage",
        "--ticket",
        "INC-7",
    ];
    let o = run(&backfill, &admin);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 runs, 3 created"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run(&backfill, &admin);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 runs, 0 created"),
        "a second backfill creates nothing"
    );
    // Changed (only what is named), shown, then deleted; both audited.
    let o = run(
        &[
            "schedules",
            "update",
            sched_id.as_str(),
            "--timezone",
            "UTC",
            "--queue",
            "nightly",
            "--json",
        ],
        &admin,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let changed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(changed["queue"], "nightly");
    assert_eq!(changed["cron"], "0 9 * * *", "the cron is kept");
    assert_eq!(changed["payload"], serde_json::json!({"team": "ops"}));
    let o = run(&["schedules", "show", sched_id.as_str()], &admin);
    assert!(String::from_utf8_lossy(&o.stdout).contains("queue=nightly"));
    let o = run(&["schedules", "delete", sched_id.as_str()], &admin);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("deleted"));
    let o = run(&["schedules", "show", sched_id.as_str()], &admin);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("UNKNOWN_SCHEDULE_ID"), "{}", stderr(&o));
    let o = run(
        &["audit", "list", "--target", sched_id.as_str(), "--json"],
        &admin,
    );
    let entries: Value = serde_json::from_slice(&o.stdout).unwrap();
    let actions: Vec<&str> = entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..3],
        ["schedule.delete", "schedule.update", "schedule.backfill"],
        "{actions:?}"
    );

    let o = run(&["jobs", "show", id], &admin);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("client:admin"),
        "timeline names the operator"
    );
    let o = run(
        &["jobs", "show", "01a20000-0000-7000-8000-000000000000"],
        &admin,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("UNKNOWN_JOB_ID"),
        "the message names the reason code"
    );

    let status = server.terminate();
    assert!(status.success(), "exit 0 after SIGTERM, got {status:?}");
}

#[test]
fn serve_prints_its_configuration_with_secrets_redacted() {
    let o = run(
        &[
            "serve",
            "--print-config",
            "--database-url",
            "postgres://u:hunter2@db/w",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("postgres://u:***@db/w") && !text.contains("hunter2"),
        "{text}"
    );
}

/// The acceptance check "verifies against the JWKS with a standard JWT library", with
/// PyJWT (installed by `scripts/test.sh` from `tests/acceptance/requirements.txt`).
#[test]
fn operator_token_verifies_with_pyjwt_against_the_served_jwks() {
    let has_pyjwt = Command::new("python3")
        .args(["-c", "import jwt"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pyjwt {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "PyJWT is required under CI (scripts/test.sh installs it)"
        );
        eprintln!(
            "SKIPPED: PyJWT is not installed (pip install -r tests/acceptance/requirements.txt); JWT interop not checked"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (id, secret) = creds(
        dir.path().to_str().unwrap(),
        "default",
        "ops-bot",
        "Orch.Operator",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/acceptance/verify_token.py"
    );
    let o = Command::new("python3")
        .args([script, &server.url, &id, &secret])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    assert!(server.terminate().success());
}

fn jobs_in_state(env: &[(&str, &str)], state: &str) -> Vec<Value> {
    let o = run(
        &[
            "jobs", "list", "--state", state, "--limit", "1000", "--json",
        ],
        env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["items"].as_array().unwrap().clone()
}

#[test]
fn worker_runs_a_shell_command_per_job_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Server::start(dir.path());
    let (id, secret) = creds(data, "default", "worker", "Orch.Worker");
    let (vid, vsecret) = creds(data, "default", "viewer", "Orch.Viewer");
    let viewer = [
        ("WARDEN_URL", server.url.as_str()),
        ("WARDEN_CLIENT_ID", vid.as_str()),
        ("WARDEN_CLIENT_SECRET", vsecret.as_str()),
    ];
    let env = [
        ("WARDEN_URL", server.url.as_str()),
        ("WARDEN_CLIENT_ID", id.as_str()),
        ("WARDEN_CLIENT_SECRET", secret.as_str()),
    ];
    for n in 0..5 {
        let payload = format!(r#"{{"n": {n}}}"#);
        let o = run(
            &[
                "jobs",
                "enqueue",
                "--queue",
                "work",
                "--type",
                "double",
                "--payload",
                &payload,
            ],
            &env,
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(
        &[
            "jobs",
            "enqueue",
            "--queue",
            "work",
            "--type",
            "broken",
            "--payload",
            "{}",
            "--max-attempts",
            "1",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // The command doubles n with python (payload on stdin, JSON result on stdout), and
    // fails loudly for the `broken` type.
    let exec = r#"if [ "$WARDEN_JOB_TYPE" = broken ]; then echo 'no such thing' >&2; exit 3; fi; python3 -c 'import json,sys; print(json.dumps({"doubled": json.load(sys.stdin)["n"] * 2}))'"#;
    let mut worker = warden();
    worker.args([
        "worker",
        "--queue",
        "work",
        "--exec",
        exec,
        "--concurrency",
        "3",
        "--lease-seconds",
        "5",
        "--agent-id",
        "test-worker",
    ]);
    for (k, v) in env {
        worker.env(k, v);
    }
    let mut child = worker
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while jobs_in_state(&viewer, "succeeded").len() < 5
        || jobs_in_state(&viewer, "dead_letter").is_empty()
    {
        assert!(Instant::now() < deadline, "jobs did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = jobs_in_state(&viewer, "succeeded");
    let mut doubled: Vec<i64> = done
        .iter()
        .map(|j| j["result"]["doubled"].as_i64().unwrap())
        .collect();
    doubled.sort_unstable();
    assert_eq!(doubled, [0, 2, 4, 6, 8]);
    let dead = &jobs_in_state(&viewer, "dead_letter")[0];
    let err = dead["last_error"].as_str().unwrap();
    assert!(
        err.contains("exit status 3") && err.contains("no such thing"),
        "{err}"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "worker did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "worker exits 0 on SIGTERM: {status:?}");
    assert!(server.terminate().success());
}

#[test]
fn keys_reseal_moves_the_signing_keys_to_a_new_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (old, new) = (
        "c2VjcmV0LW1hc3Rlci1rZXktb2YtMzItYnl0ZXMhISE=",
        "YW5vdGhlci1tYXN0ZXIta2V5LW9mLTMyLWJ5dGVzISE=",
    );
    // Keys are made by the server on its first start: start one under `old`, wait for
    // both keys, stop it.
    let server = Server::start_with_env(Path::new(data), &[("WARDEN_MASTER_KEY", old)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = run(
            &["keys", "list", "--json", "--data-dir", data],
            &[("WARDEN_MASTER_KEY", old)],
        );
        let n = serde_json::from_slice::<Value>(&o.stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len));
        if n == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "the server never made its keys");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
    let reseal = |env: &[(&str, &str)]| {
        run(
            &[
                "keys",
                "reseal",
                "--reason",
                "yearly",
                "--ticket",
                "OPS-9",
                "--json",
                "--data-dir",
                data,
            ],
            env,
        )
    };
    let o = reseal(&[("WARDEN_MASTER_KEY", old)]);
    assert_eq!(o.status.code(), Some(1), "no new key given");
    assert!(
        stderr(&o).contains("WARDEN_NEW_MASTER_KEY"),
        "{}",
        stderr(&o)
    );
    let o = reseal(&[("WARDEN_NEW_MASTER_KEY", new)]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the current key is needed to open them"
    );
    assert!(
        stderr(&o).contains("set WARDEN_MASTER_KEY"),
        "{}",
        stderr(&o)
    );
    let o = reseal(&[("WARDEN_MASTER_KEY", old), ("WARDEN_NEW_MASTER_KEY", new)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["resealed"], 2, "the token key and the checkpoint key");
    let list = |key: &str| {
        run(
            &["keys", "list", "--json", "--data-dir", data],
            &[("WARDEN_MASTER_KEY", key)],
        )
    };
    assert_eq!(
        list(old).status.code(),
        Some(1),
        "the old key no longer opens the store"
    );
    assert!(list(new).status.success());
}
