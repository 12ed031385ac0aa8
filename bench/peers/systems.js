// The peers under test and how each one enqueues, counts finished jobs and runs a worker.
// Shared by bench.js (the controller) and worker.js (one worker process).
//
// Settings, and where they come from:
// - graphile-default: graphile-worker's perf test shape (perfTest/run.js: 4 worker
//   processes, concurrentJobs 24; maxPoolSize 25 there, 20 here, see below) with batching off, which is the library
//   default (localQueue size -1, completeJobBatchDelay -1, failJobBatchDelay -1).
// - graphile-perf: the same plus the batching settings of graphile-worker's
//   perfTest/graphile.config.js: localQueue { size: 500, refetchDelay: { durationMs: 10 } },
//   completeJobBatchDelay 0, failJobBatchDelay 0. (The website's performance page shows
//   the same settings without refetchDelay.)
// - pgboss: pg-boss 10, 4 worker processes, each `work()` with batchSize 500 and
//   pollingIntervalSeconds 0.5 (the smallest pg-boss allows; its default is 2).
"use strict";

const { Pool } = require("pg");

const QUEUE = "bench";
const TASK = "noop";

// The perf test uses maxPoolSize 25 (concurrentJobs + 1). Four such processes need 100
// connections, which is exactly PostgreSQL's default max_connections (3 of them reserved
// for superusers) and leaves none for the controller or anyone else sharing the server,
// so the pool is 20 unless GRAPHILE_MAX_POOL_SIZE says otherwise.
const graphileBase = {
  concurrentJobs: 24,
  maxPoolSize: Number(process.env.GRAPHILE_MAX_POOL_SIZE || 20),
  gracefulShutdownAbortTimeout: 2500,
};

const graphileSettings = {
  "graphile-default": {
    ...graphileBase,
    localQueue: { size: -1 },
    completeJobBatchDelay: -1,
    failJobBatchDelay: -1,
  },
  "graphile-perf": {
    ...graphileBase,
    localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};

const PGBOSS_WORK = { batchSize: 500, pollingIntervalSeconds: 0.5 };

/** Errors and warnings only: graphile-worker logs every job at info level otherwise. */
function quietGraphileLogger() {
  const { Logger } = require("graphile-worker");
  return new Logger(() => (level, message) => {
    if (level === "error" || level === "warning") {
      console.error(`[graphile ${level}] ${message}`);
    }
  });
}

/** Controller side of a system: schema install, enqueue, progress. */
async function openProducer(system, connectionString) {
  if (system.startsWith("graphile")) {
    const { makeWorkerUtils } = require("graphile-worker");
    // Our own pool (graphile-worker's default size, 10), so that it is closed for sure
    // before the database is dropped.
    const pool = new Pool({ connectionString, max: 10 });
    pool.on("error", (e) => console.error("[pg pool error]", e.message));
    pool.on("connect", (c) => c.on("error", (e) => console.error("[pg client error]", e.message)));
    const utils = await makeWorkerUtils({ pgPool: pool, logger: quietGraphileLogger() });
    await utils.migrate();
    return {
      async addBatch(payloads) {
        await utils.addJobs(payloads.map((payload) => ({ identifier: TASK, payload })));
      },
      async addOne(payload) {
        await utils.addJob(TASK, payload);
      },
      // Jobs are deleted when they complete: none left once all are added means done.
      async remaining(_total) {
        const { rows } = await pool.query(
          "select count(*)::int as n from graphile_worker._private_jobs",
        );
        return rows[0].n;
      },
      async close() {
        await utils.release();
        await pool.end();
      },
    };
  }
  if (system === "pgboss") {
    const PgBoss = require("pg-boss");
    const boss = new PgBoss({ connectionString });
    boss.on("error", (e) => console.error("[pg-boss error]", e.message));
    await boss.start();
    await boss.createQueue(QUEUE);
    const pool = new Pool({ connectionString, max: 2 });
    pool.on("error", (e) => console.error("[pg pool error]", e.message));
    return {
      async addBatch(payloads) {
        await boss.insert(payloads.map((data) => ({ name: QUEUE, data })));
      },
      async addOne(payload) {
        await boss.send(QUEUE, payload);
      },
      // Completed jobs stay in pgboss.job (archived after 12 h by default).
      async remaining(total) {
        const { rows } = await pool.query(
          "select count(*)::int as n from pgboss.job where name = $1 and state = 'completed'",
          [QUEUE],
        );
        return total - rows[0].n;
      },
      async close() {
        await boss.stop({ graceful: false, wait: true });
        await pool.end();
      },
    };
  }
  throw new Error(`unknown system ${system}`);
}

/**
 * Worker side: run `onJob(payload)` for every job until `stop()`; resolves once started.
 * `onJob` is called when the job starts (the moment latency is measured to).
 */
async function startWorker(system, connectionString, onJob) {
  if (system.startsWith("graphile")) {
    process.env.NO_LOG_SUCCESS = "1";
    const { run } = require("graphile-worker");
    const runner = await run({
      preset: { worker: { connectionString, ...graphileSettings[system] } },
      taskList: {
        [TASK]: async (payload) => {
          onJob(payload);
        },
      },
      noHandleSignals: true,
      logger: quietGraphileLogger(),
    });
    return {
      async stop() {
        await runner.stop();
      },
    };
  }
  if (system === "pgboss") {
    const PgBoss = require("pg-boss");
    const boss = new PgBoss({ connectionString });
    boss.on("error", (e) => console.error("[pg-boss error]", e.message));
    await boss.start();
    await boss.work(QUEUE, PGBOSS_WORK, async (jobs) => {
      for (const job of jobs) onJob(job.data);
    });
    return {
      async stop() {
        await boss.stop({ graceful: true, wait: true });
      },
    };
  }
  throw new Error(`unknown system ${system}`);
}

function settingsOf(system) {
  if (system.startsWith("graphile")) return graphileSettings[system];
  return { work: PGBOSS_WORK, constructor: "defaults" };
}

module.exports = { QUEUE, TASK, openProducer, startWorker, settingsOf, SYSTEMS: ["graphile-default", "graphile-perf", "pgboss"] };
