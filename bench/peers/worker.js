// One worker process: `node worker.js SYSTEM CONNECTION_STRING`. Prints READY once it is
// working, runs until stdin closes, then prints one JSON line with its job count and the
// enqueue→start latencies it saw (from the `sent_us` payload field, on the monotonic clock
// every process on the machine shares).
"use strict";

const { startWorker } = require("./systems");

const [system, connectionString] = process.argv.slice(2);

function nowMicros() {
  return Number(process.hrtime.bigint() / 1000n);
}

async function main() {
  let jobs = 0;
  const latencies = [];
  const worker = await startWorker(system, connectionString, (payload) => {
    const now = nowMicros();
    jobs += 1;
    if (payload && typeof payload.sent_us === "number" && !payload.warmup) {
      latencies.push(now - payload.sent_us);
    }
  });
  process.stdout.write("READY\n");
  await new Promise((resolve) => {
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
    process.stdin.resume();
  });
  await worker.stop();
  process.stdout.write(JSON.stringify({ jobs, latencies_us: latencies }) + "\n");
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
