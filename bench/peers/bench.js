#!/usr/bin/env node
// The Warden engine workloads (crates/warden-bench) run on a peer, on PostgreSQL:
//
//   node bench.js --system graphile-default|graphile-perf|pgboss [--runs 3] [--jobs 50000]
//                 [--batch-size 5000] [--enqueue-concurrency 4] [--workers 4] [--rate 200]
//                 [--latency-secs 15] [--warmup-secs 1] [--only enqueue,process,latency]
//                 [--admin-url postgres://postgres@127.0.0.1:5432/postgres] [--json FILE]
//
// Every workload of every run gets a fresh database, created and dropped through
// --admin-url. Workers are separate node processes (worker.js).
//   (a) enqueue: jobs/s adding --jobs in batches of --batch-size, --enqueue-concurrency
//       batches in flight, no worker running;
//   (b) process: workers start, then the same enqueue runs; jobs/s from the first
//       enqueue until every job is done (polled every 100 ms);
//   (c) latency: single adds at a steady --rate for --latency-secs to idle workers;
//       latency = job start in the worker minus the add's send time (in the payload).
// Prints the same JSON shape as warden-bench on stdout, a table on stderr.
"use strict";

const { spawn } = require("child_process");
const readline = require("readline");
const path = require("path");
const fs = require("fs");
const os = require("os");
const { Client } = require("pg");
const { openProducer, settingsOf, SYSTEMS } = require("./systems");

function parseArgs(argv) {
  const o = {
    system: null,
    runs: 3,
    jobs: 50000,
    batchSize: 5000,
    enqueueConcurrency: 4,
    workers: 4,
    rate: 200,
    latencySecs: 15,
    warmupSecs: 1,
    only: "enqueue,process,latency",
    adminUrl: process.env.BENCH_PG_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres",
    json: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in o)) throw new Error(`unknown option ${argv[i]}`);
    const v = argv[++i];
    o[key] = typeof o[key] === "number" ? Number(v) : v;
  }
  if (!SYSTEMS.includes(o.system)) throw new Error(`--system must be one of ${SYSTEMS.join(", ")}`);
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMicros = () => Number(process.hrtime.bigint() / 1000n);
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function databaseUrl(adminUrl, db) {
  const u = new URL(adminUrl);
  u.pathname = `/${db}`;
  return u.toString();
}

async function admin(adminUrl, sql) {
  const c = new Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function freshDatabase(o) {
  const name = `peer_bench_${process.pid}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}`;
  await admin(o.adminUrl, `create database ${name}`);
  return {
    url: databaseUrl(o.adminUrl, name),
    drop: () => admin(o.adminUrl, `drop database if exists ${name} with (force)`),
  };
}

class WorkerPool {
  static async start(system, url, n) {
    const pool = new WorkerPool();
    pool.procs = [];
    for (let i = 0; i < n; i++) {
      const child = spawn(process.execPath, [path.join(__dirname, "worker.js"), system, url], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      const lines = readline.createInterface({ input: child.stdout });
      // Lines in arrival order; null once stdout has closed.
      const queue = [];
      let closed = false;
      let waiter = null;
      lines.on("line", (l) => {
        if (waiter) {
          const w = waiter;
          waiter = null;
          w(l);
        } else queue.push(l);
      });
      lines.on("close", () => {
        closed = true;
        if (waiter) {
          const w = waiter;
          waiter = null;
          w(null);
        }
      });
      const next = () => {
        if (queue.length) return Promise.resolve(queue.shift());
        if (closed) return Promise.resolve(null);
        return new Promise((r) => (waiter = r));
      };
      const exited = new Promise((r) => child.on("exit", (code) => r(code)));
      pool.procs.push({ child, next, exited });
    }
    for (const [i, p] of pool.procs.entries()) {
      const l = await p.next();
      if (l !== "READY") throw new Error(`worker ${i} did not start: ${l}`);
    }
    return pool;
  }

  async stop() {
    for (const p of this.procs) p.child.stdin.end();
    const reports = [];
    for (const [i, p] of this.procs.entries()) {
      let last = null;
      for (let l = await p.next(); l !== null; l = await p.next()) last = l;
      const code = await p.exited;
      if (code !== 0) throw new Error(`worker ${i} exited with ${code}`);
      reports.push(JSON.parse(last));
    }
    return reports;
  }
}

function batchesOf(o) {
  const out = [];
  for (let start = 0; start < o.jobs; start += o.batchSize) {
    const b = [];
    for (let i = start; i < Math.min(o.jobs, start + o.batchSize); i++) b.push({ i });
    out.push(b);
  }
  return out;
}

/** Add every batch with `concurrency` in flight; resolves to the time taken, ms. */
async function enqueueBatches(producer, batches, concurrency) {
  let next = 0;
  const t0 = nowMs();
  const lane = async () => {
    while (next < batches.length) {
      const b = batches[next++];
      await producer.addBatch(b);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
  return nowMs() - t0;
}

// Progress is polled every 100 ms, as warden-bench does (a count is not free: polling
// much faster would take CPU from the work being measured).
const POLL_EVERY_MS = 100;

/** Wait until all `total` jobs are done (and `producerDone()`); resolves to the time, ms. */
async function untilDone(producer, total, producerDone, timeoutMs) {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    const left = await producer.remaining(total);
    if (left <= 0 && producerDone()) return nowMs();
    if (nowMs() > deadline) throw new Error(`${left} of ${total} jobs not done in time`);
    await sleep(POLL_EVERY_MS);
  }
}

async function withDatabase(o, fn) {
  const db = await freshDatabase(o);
  let producer;
  try {
    producer = await openProducer(o.system, db.url);
    return await fn(db.url, producer);
  } finally {
    if (producer) await producer.close();
    await db.drop();
  }
}

async function workloadEnqueue(o) {
  return withDatabase(o, async (_url, producer) => {
    const ms = await enqueueBatches(producer, batchesOf(o), o.enqueueConcurrency);
    const left = await producer.remaining(o.jobs);
    if (left !== o.jobs) throw new Error(`expected ${o.jobs} queued jobs, found ${left}`);
    return (o.jobs * 1000) / ms;
  });
}

function checkReports(reports, expected) {
  const jobs = reports.reduce((s, r) => s + r.jobs, 0);
  if (jobs !== expected) throw new Error(`workers ran ${jobs} jobs, expected ${expected}`);
}

async function workloadProcess(o) {
  return withDatabase(o, async (url, producer) => {
    const pool = await WorkerPool.start(o.system, url, o.workers);
    await sleep(500);
    const batches = batchesOf(o);
    let produced = false;
    const t0 = nowMs();
    const enqueue = enqueueBatches(producer, batches, o.enqueueConcurrency).then((ms) => {
      produced = true;
      return ms;
    });
    const [t1, enqueueMs] = await Promise.all([
      untilDone(producer, o.jobs, () => produced, 600000),
      enqueue,
    ]);
    const reports = await pool.stop();
    checkReports(reports, o.jobs);
    const totalMs = t1 - t0;
    return {
      jobs_per_sec: (o.jobs * 1000) / totalMs,
      enqueue_secs: enqueueMs / 1000,
      total_secs: totalMs / 1000,
    };
  });
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
}

async function workloadLatency(o) {
  return withDatabase(o, async (url, producer) => {
    const pool = await WorkerPool.start(o.system, url, o.workers);
    await sleep(500);
    const warmup = o.warmupSecs * o.rate;
    const measured = o.latencySecs * o.rate;
    const periodMs = 1000 / o.rate;
    const sends = [];
    const start = nowMs();
    let firstMeasured = null;
    for (let i = 0; i < warmup + measured; i++) {
      // Open loop on a fixed schedule: a slow add does not delay the next one.
      const due = start + i * periodMs;
      const wait = due - nowMs();
      if (wait > 0) await sleep(wait);
      if (i === warmup) firstMeasured = nowMs();
      const payload = { i, warmup: i < warmup };
      payload.sent_us = nowMicros();
      sends.push(producer.addOne(payload));
    }
    const sentFor = nowMs() - firstMeasured;
    await Promise.all(sends);
    await untilDone(producer, warmup + measured, () => true, 120000);
    const reports = await pool.stop();
    checkReports(reports, warmup + measured);
    const ms = reports.flatMap((r) => r.latencies_us.map((us) => us / 1000)).sort((a, b) => a - b);
    if (ms.length !== measured) throw new Error(`recorded ${ms.length} latencies for ${measured} jobs`);
    return {
      p50_ms: percentile(ms, 50),
      p99_ms: percentile(ms, 99),
      mean_ms: ms.reduce((s, x) => s + x, 0) / ms.length,
      max_ms: ms[ms.length - 1],
      samples: ms.length,
      achieved_rate: (measured * 1000) / sentFor,
    };
  });
}

function summary(values) {
  const v = values.filter((x) => typeof x === "number").sort((a, b) => a - b);
  if (!v.length) return null;
  const n = v.length;
  const median = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return { median, min: v[0], max: v[n - 1], runs: n };
}

function fmt(x) {
  if (x == null) return "–";
  return x >= 100 ? x.toFixed(0) : x.toFixed(2);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const wanted = o.only.split(",").map((s) => s.trim());
  const startedAt = Math.floor(Date.now() / 1000);
  const loadAtStart = os.loadavg().map((x) => x.toFixed(2)).join(" ");
  console.error(
    `peers: ${o.system}, ${o.runs} runs; ${o.jobs} jobs, batches of ${o.batchSize} (${o.enqueueConcurrency} in flight), ${o.workers} worker processes`,
  );
  const runs = [];
  for (let run = 1; run <= o.runs; run++) {
    const r = { enqueue_jobs_per_sec: null, process: null, latency: null };
    if (wanted.includes("enqueue")) r.enqueue_jobs_per_sec = await workloadEnqueue(o);
    if (wanted.includes("process")) r.process = await workloadProcess(o);
    if (wanted.includes("latency")) r.latency = await workloadLatency(o);
    console.error(
      `run ${run}: enqueue ${fmt(r.enqueue_jobs_per_sec)} jobs/s; process ${fmt(r.process && r.process.jobs_per_sec)} jobs/s; latency p50 ${fmt(r.latency && r.latency.p50_ms)} ms, p99 ${fmt(r.latency && r.latency.p99_ms)} ms`,
    );
    runs.push(r);
  }
  const out = {
    system: o.system,
    started_at_unix: startedAt,
    settings: {
      workload: {
        jobs: o.jobs,
        batch_size: o.batchSize,
        enqueue_concurrency: o.enqueueConcurrency,
        workers: o.workers,
        rate: o.rate,
        latency_secs: o.latencySecs,
        warmup_secs: o.warmupSecs,
      },
      system: settingsOf(o.system),
      versions: {
        "graphile-worker": require("graphile-worker/package.json").version,
        "pg-boss": require("pg-boss/package.json").version,
        node: process.version,
      },
    },
    load_average: { start: loadAtStart, end: os.loadavg().map((x) => x.toFixed(2)).join(" ") },
    runs,
    summary: {
      enqueue_jobs_per_sec: summary(runs.map((r) => r.enqueue_jobs_per_sec)),
      process_jobs_per_sec: summary(runs.map((r) => r.process && r.process.jobs_per_sec)),
      latency_p50_ms: summary(runs.map((r) => r.latency && r.latency.p50_ms)),
      latency_p99_ms: summary(runs.map((r) => r.latency && r.latency.p99_ms)),
    },
  };
  const text = JSON.stringify(out, null, 2);
  if (o.json) fs.writeFileSync(o.json, text);
  process.stdout.write(text + "\n");
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
