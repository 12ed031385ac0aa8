#!/usr/bin/env node
// Combine the JSON summaries of warden-bench and bench/peers/bench.js into one Markdown
// table: medians with min–max ranges, Warden's targets, and the ratios Warden / peer.
//
//   node bench/table.js RESULT.json... [--failed name,name]
"use strict";

const fs = require("fs");
const path = require("path");

const METRICS = [
  ["enqueue_jobs_per_sec", "batch enqueue, jobs/s", "higher"],
  ["process_jobs_per_sec", "processing, jobs/s", "higher"],
  ["latency_p50_ms", "latency p50, ms", "lower"],
  ["latency_p99_ms", "latency p99, ms", "lower"],
];

// The targets Warden is measured against (none for the peers).
const TARGETS = {
  "warden-sqlite": { enqueue_jobs_per_sec: 150000, process_jobs_per_sec: 50000 },
  "warden-postgres": {
    enqueue_jobs_per_sec: 80000,
    process_jobs_per_sec: 35000,
    latency_p50_ms: 1.5,
    latency_p99_ms: 5,
  },
};

const ORDER = ["warden-sqlite", "warden-postgres", "graphile-default", "graphile-perf", "pgboss"];

function fmt(x) {
  if (x == null || Number.isNaN(x)) return "–";
  if (x >= 1000) return Math.round(x).toLocaleString("en-US");
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function cell(s) {
  if (!s) return "–";
  return s.runs > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
}

function main() {
  const args = process.argv.slice(2);
  let failed = [];
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--failed") failed = (args[++i] || "").split(",").filter(Boolean);
    else files.push(args[i]);
  }
  const results = {};
  for (const f of files) {
    const r = JSON.parse(fs.readFileSync(f, "utf8"));
    results[r.system] = r;
  }
  const systems = ORDER.filter((s) => results[s] || failed.includes(s));
  const out = [];
  out.push(`| metric | ${systems.join(" | ")} |`);
  out.push(`|---|${systems.map(() => "---").join("|")}|`);
  for (const [key, label] of METRICS) {
    const row = systems.map((s) => {
      if (!results[s]) return "failed";
      const c = cell(results[s].summary[key]);
      const t = TARGETS[s] && TARGETS[s][key];
      if (t == null || !results[s].summary[key]) return c;
      const m = results[s].summary[key].median;
      const met = key.startsWith("latency") ? m <= t : m >= t;
      return `${c} ${met ? "✓" : "✗"} target ${key.startsWith("latency") ? "≤" : "≥"} ${fmt(t)}`;
    });
    out.push(`| ${label} | ${row.join(" | ")} |`);
  }
  out.push("");
  out.push("Medians over runs with (min–max); ✓/✗ against Warden's target.");
  const wardens = systems.filter((s) => s.startsWith("warden") && results[s]);
  const peers = systems.filter((s) => !s.startsWith("warden") && results[s]);
  if (wardens.length && peers.length) {
    out.push("");
    out.push("Ratios of medians, Warden / peer (throughput: above 1 is Warden faster; latency: below 1 is Warden faster):");
    out.push("");
    out.push(`| Warden / peer | ${METRICS.map((m) => m[1]).join(" | ")} |`);
    out.push(`|---|${METRICS.map(() => "---").join("|")}|`);
    for (const w of wardens) {
      for (const p of peers) {
        const ratios = METRICS.map(([key]) => {
          const a = results[w].summary[key];
          const b = results[p].summary[key];
          if (!a || !b || !b.median) return "–";
          return `${(a.median / b.median).toFixed(2)}×`;
        });
        out.push(`| ${w} / ${p} | ${ratios.join(" | ")} |`);
      }
    }
  }
  out.push("");
  out.push("Load average (1, 5, 15 min) at the start and end of each system's runs:");
  for (const s of systems) {
    const l = results[s] && results[s].load_average;
    if (l) out.push(`- ${s}: ${l.start} → ${l.end}`);
  }
  for (const f of failed) out.push(`\n${f}: FAILED (see its log)`);
  process.stdout.write(out.join("\n") + "\n");
}

main();
