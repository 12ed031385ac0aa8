#!/usr/bin/env python3
"""Server memory under a large backlog and over a steady run.

Starts the release `warden serve` on a fresh store, enqueues JOBS jobs (default
1,000,000) in batches of 10,000 without any worker, and samples the server's RSS
(/proc/<pid>/status VmRSS) while the backlog builds and once it is queued. Then a steady
phase of STEADY_SECS (default 600): a producer enqueues RATE jobs/s (default 500) and a
consumer leases and finishes them in batches, while RSS is sampled every 5 s. Prints
the samples and a summary: RSS with the backlog queued, and the first, median and last
RSS of the steady phase (flat = the last is within a few MiB of the first). With the
backlog queued it also times READS (default 20) reads of the queue's depth, the queue
list and /metrics, and single enqueues (median ms): what a dashboard refresh, a scrape and
an enqueue cost at that size, and pages of the job list (all, one state, a rare queue,
the running jobs). QUOTA=N sets the tenant's `max_queued` to N first, so each
enqueue checks the tenant's queued jobs against it.

    python3 bench/memory.py                       # SQLite under a temp dir
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_mem python3 bench/memory.py

Needs `cargo build --release -p warden-cli` first. Standard library only.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARDEN = os.environ.get("WARDEN_BIN", os.path.join(ROOT, "target", "release", "warden"))
JOBS = int(os.environ.get("JOBS", "1000000"))
STEADY_SECS = int(os.environ.get("STEADY_SECS", "600"))
RATE = int(os.environ.get("RATE", "500"))
PORT = int(os.environ.get("PORT", "18431"))
READS = int(os.environ.get("READS", "20"))
QUOTA = int(os.environ.get("QUOTA", "0"))
DATABASE_URL = os.environ.get("DATABASE_URL")
URL = f"http://127.0.0.1:{PORT}"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def call(method, path, token=None, body=None, form=None, auth=None):
    data, headers = None, {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if form is not None:
        data = form.encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    if token:
        headers["authorization"] = f"Bearer {token}"
    if auth:
        import base64

        headers["authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    req = urllib.request.Request(URL + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=120) as r:
        body = r.read()
        if "json" not in r.headers.get("content-type", "json"):
            return body.decode()
        return json.loads(body or b"null")


def main():
    data_dir = tempfile.mkdtemp(prefix="warden-mem-")
    store = ["--database-url", DATABASE_URL] if DATABASE_URL else ["--data-dir", data_dir]
    env = dict(os.environ, WARDEN_LOG="warn")
    server = subprocess.Popen(
        [WARDEN, "serve", "--listen", f"127.0.0.1:{PORT}", *store],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(data_dir, "server.log"), "w"),
    )
    try:
        for _ in range(100):
            try:
                call("GET", "/readyz")
                break
            except Exception:
                time.sleep(0.1)
        out = subprocess.run(
            [WARDEN, "clients", "create", "--tenant", "default", "--name", f"mem{int(time.time())}",
             "--role", "Orch.Admin", "--json", *store],
            check=True, capture_output=True, text=True,
        ).stdout
        cred = json.loads(out)
        token = call("POST", "/oauth/token", form="grant_type=client_credentials",
                     auth=f"{cred['client_id']}:{cred['client_secret']}")["access_token"]
        print(f"server pid {server.pid}, RSS at start {rss_mib(server.pid):.1f} MiB", flush=True)
        if QUOTA:
            # A tenant quota makes every enqueue check the tenant's queued jobs.
            elevated = call("POST", "/oauth/token",
                            form="grant_type=client_credentials&scope=orch:quota"
                                 "&quota_reason=benchmark&quota_ticket=BENCH-1",
                            auth=f"{cred['client_id']}:{cred['client_secret']}")["access_token"]
            call("PUT", "/api/v1/quota", elevated, {"max_queued": QUOTA})

        t0 = time.time()
        batch = 10_000
        for i in range(0, JOBS, batch):
            n = min(batch, JOBS - i)
            jobs = [{"queue": "backlog", "type": "noop", "payload": {"i": i + k}} for k in range(n)]
            call("POST", "/api/v1/jobs/batch", token, {"jobs": jobs})
            if (i // batch) % 20 == 0:
                print(f"  queued {i + n:>9,}  RSS {rss_mib(server.pid):7.1f} MiB", flush=True)
        queued_secs = time.time() - t0
        time.sleep(5)
        backlog_rss = rss_mib(server.pid)
        print(f"{JOBS:,} jobs queued in {queued_secs:.1f} s; RSS {backlog_rss:.1f} MiB", flush=True)
        def median_ms(request):
            took = []
            for _ in range(READS):
                started = time.perf_counter()
                request()
                took.append((time.perf_counter() - started) * 1000)
            return round(statistics.median(took), 2)

        # What a dashboard refresh, a metrics scrape and an enqueue cost with the backlog
        # queued; then pages of the job list: everything, one state, a rare queue (the
        # READS probe jobs among the backlog) and the running jobs (none: the lease index).
        reads = {}
        for name, path in [("queue_show", "/api/v1/queues/backlog"), ("queues_list", "/api/v1/queues"),
                           ("metrics", "/metrics")]:
            reads[name] = median_ms(lambda: call("GET", path, token))
        reads["enqueue_one"] = median_ms(lambda: call(
            "POST", "/api/v1/jobs", token, {"queue": "probe", "type": "noop", "payload": {}}))
        for name, path in [("jobs_list", "/api/v1/jobs?limit=100"),
                           ("jobs_list_available", "/api/v1/jobs?state=available&limit=100"),
                           ("jobs_list_rare_queue", "/api/v1/jobs?queue=probe&limit=100"),
                           ("jobs_list_running", "/api/v1/jobs?state=running&limit=100")]:
            reads[name] = median_ms(lambda: call("GET", path, token))
        print(f"median ms of {READS} reads with the backlog queued: {reads}", flush=True)

        # Steady phase: produce RATE/s on another queue, consume the same.
        stop = threading.Event()

        def produce():
            while not stop.is_set():
                started = time.time()
                jobs = [{"queue": "steady", "type": "noop", "payload": {}} for _ in range(RATE)]
                call("POST", "/api/v1/jobs/batch", token, {"jobs": jobs})
                time.sleep(max(0.0, 1.0 - (time.time() - started)))

        def consume():
            while not stop.is_set():
                got = call("POST", "/api/v1/leases", token, {
                    "agent_id": "mem", "queues": ["steady"], "max_jobs": 500,
                    "lease_seconds": 60, "wait_ms": 1000})["jobs"]
                if got:
                    items = [{"id": j["id"], "lease_id": j["lease_id"], "outcome": "complete"} for j in got]
                    call("POST", "/api/v1/jobs/finish", token, {"items": items})

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        samples = []
        end = time.time() + STEADY_SECS
        while time.time() < end:
            time.sleep(5)
            samples.append(rss_mib(server.pid))
            print(f"  steady t={len(samples) * 5:>4}s RSS {samples[-1]:7.1f} MiB", flush=True)
        stop.set()
        for t in threads:
            t.join()
        summary = {
            "jobs_queued": JOBS,
            "backend": "postgres" if DATABASE_URL else "sqlite",
            "rss_backlog_mib": round(backlog_rss, 1),
            "read_ms_with_backlog": reads,
            "steady_secs": STEADY_SECS,
            "steady_rate": RATE,
            "rss_steady_first_mib": round(samples[0], 1) if samples else None,
            "rss_steady_median_mib": round(statistics.median(samples), 1) if samples else None,
            "rss_steady_last_mib": round(samples[-1], 1) if samples else None,
            "rss_steady_max_mib": round(max(samples), 1) if samples else None,
        }
        print(json.dumps(summary))
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
