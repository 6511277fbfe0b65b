/**
 * `scale-namespaces` (issue requirement): 1,000 namespaces and 100 backend
 * instances on one Prism process: load time, RSS and per-call routing cost,
 * against a 1-namespace config measured in the same run.
 *
 * Configs. The large one declares 100 instances `inst001`..`inst100` under
 * `backends:` and 1,000 namespaces `ns0001`..`ns1000` (`pattern: keyvalue`),
 * namespace i on instance ((i - 1) mod 100) + 1 (round-robin: ns0001 → inst001,
 * ns1000 → inst100). All 100 are memstore: the router pools instances by
 * type + options, so 100 memstore instances with identical options would be
 * ONE pool; memstore's only option, `sweep_interval_ms` (the expiry sweep,
 * default 1000 ms), gives each its own: 60001..60100 ms, i.e. distinct pools
 * that sweep about once a minute (no sweep cost worth counting inside a 5 s
 * window). memstore rather than sqlite: the number measured is routing (name →
 * namespace → pooled instance), and an in-memory Get keeps the backend's own
 * cost small and flat, so a routing difference would show; sqlite would add
 * file I/O and 100 open databases to both RSS and the per-call cost. The small
 * config is the same shape with one instance (inst001, sweep 60001 ms) and one
 * namespace ns0001. Namespace names have the same length (ns0001 / ns1000), so
 * every Get frame has the same size on every row.
 *
 * Checks before measuring: a child process (bench/lib/scale-pools.ts) loads the
 * large config into an in-process gateway and reports the router's namespace
 * and distinct-instance counts (must be 1000 and 100); and every one of the
 * 1,000 namespaces of the served process answers a Get of an absent key with
 * PRISM_ERR_KEY_NOT_FOUND (not PRISM_ERR_UNKNOWN_NAMESPACE, which the 1-namespace
 * server answers for ns1000: the check tells the two apart).
 *
 * Load time: `prism serve --workers 1` spawned → its `listening` line, each
 * config started LOAD_STARTS times alternately (fresh data directory each), the
 * last start of each kept running; the median is reported, every sample in the
 * JSON. RSS (/proc/<pid>/status): 2 s after start, after SETTLE_MS idle (V8's
 * memory reducer has run, as idle-rss-per-worker), and after the load rounds.
 *
 * Routing cost: KeyValue Get over the binary WebSocket (bench/lib/ws-load.ts,
 * 8 connections × 64 in flight, o.threads client threads, the same for every
 * row, o.seconds per measurement after o.warmupSeconds) on three rows: the
 * 1-namespace server's ns0001, the 1,000-namespace server's ns0001 and its
 * ns1000, each seeded with the same 100 keys of 64 B. max(o.rounds, 4)
 * interleaved rounds; in every round ns0001 and ns1000 of the large server are
 * measured back to back (alternating which goes first), the 1-namespace row
 * before the pair in rounds 1-2 and after it in rounds 3-4 (and so on). A
 * row's table entry is its best round (the suite's convention); the ns1000/ns1
 * verdict uses the mean of the per-round ratios (adjacent windows on the same
 * server, so slow drifts cancel), for ops/s and for server CPU µs/op.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { benchKey, benchValue, kvMix } from "./frames.js";
import { round3 } from "./hist.js";
import { rssParts } from "./proc.js";
import type { Row } from "./report.js";
import type { BenchOptions } from "./scenarios.js";
import { ROOT, startPrism, type ServerProcess } from "./spawn.js";
import { runWsLoad, sleep, type Measurement } from "./ws-load.js";

export const SCALE_ID = "scale-namespaces";
const NAMESPACES = 1000;
const INSTANCES = 100;
const KEYS = 100;
const CONNS = 8;
const DEPTH = 64;
const LOAD_STARTS = 3;
const EARLY_MS = 2000;
const SETTLE_MS = 15_000;
/** memstore sweep_interval_ms of instance i: SWEEP_BASE_MS + i (distinct options → distinct pools). */
const SWEEP_BASE_MS = 60_000;
/** ns1000 counts as costing what ns1 costs when both mean per-round ratios are within this of 1. */
const TOLERANCE = 0.1;

export const nsName = (i: number) => `ns${String(i).padStart(4, "0")}`;
export const instName = (i: number) => `inst${String(i).padStart(3, "0")}`;

/** `instances` memstore instances (distinct sweep intervals) and `namespaces` keyvalue namespaces on them, round-robin. */
export function scaleYaml(namespaces: number, instances: number): string {
  const lines = ["backends:"];
  for (let i = 1; i <= instances; i++) lines.push(`  ${instName(i)}: { type: memstore, sweep_interval_ms: ${SWEEP_BASE_MS + i} }`);
  lines.push("namespaces:");
  for (let i = 1; i <= namespaces; i++) lines.push(`  - { name: ${nsName(i)}, pattern: keyvalue, backend: ${instName(((i - 1) % instances) + 1)} }`);
  return lines.join("\n") + "\n";
}

const mb = (b: number) => Math.round((b / (1024 * 1024)) * 10) / 10;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const ms1 = (x: number) => Math.round(x * 10) / 10;

type Rss = ReturnType<typeof rssParts>;
const rssMb = (r: Rss) => ({ rss: mb(r.rss), anon: mb(r.anon), file: mb(r.file) });

/** The router's namespace and distinct-instance counts for `yaml`, from a child process (bench/lib/scale-pools.ts). */
async function poolCounts(yaml: string): Promise<{ namespaces: number; instances: number }> {
  const dir = mkdtempSync(join(tmpdir(), "prism-bench-scale-"));
  try {
    const file = join(dir, "prism.yaml");
    writeFileSync(file, yaml);
    const script = fileURLToPath(new URL("./scale-pools.js", import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [script, file], { cwd: ROOT, env: { ...process.env, PRISM_QUIET: "1", PRISM_DATA_DIR: join(dir, "data") }, timeout: 60_000 });
    const line = stdout.trim().split("\n").at(-1) ?? "";
    return JSON.parse(line) as { namespaces: number; instances: number };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The error reason a Get of an absent key in `ns` is answered with (HTTP raw route). */
async function absentKeyReason(httpPort: number, ns: string): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent("scale:absent")}`);
  const text = await r.text();
  try {
    return (JSON.parse(text) as { error?: { reason?: string } }).error?.reason ?? `HTTP ${r.status}`;
  } catch {
    return `HTTP ${r.status}: ${text.slice(0, 80)}`;
  }
}

/** Every namespace 1..count must be served (absent key → PRISM_ERR_KEY_NOT_FOUND); returns how many were. */
async function checkServed(httpPort: number, count: number): Promise<number> {
  let served = 0;
  const bad: string[] = [];
  for (let i = 1; i <= count; i += 50) {
    const batch = Array.from({ length: Math.min(50, count - i + 1) }, (_, j) => nsName(i + j));
    const reasons = await Promise.all(batch.map((ns) => absentKeyReason(httpPort, ns)));
    reasons.forEach((r, j) => (r === "PRISM_ERR_KEY_NOT_FOUND" ? served++ : bad.push(`${batch[j]}: ${r}`)));
  }
  if (bad.length) throw new Error(`${SCALE_ID}: ${bad.length} of ${count} namespaces not served, e.g. ${bad.slice(0, 3).join("; ")}`);
  return served;
}

async function seed(httpPort: number, ns: string): Promise<void> {
  const value = benchValue();
  for (let i = 0; i < KEYS; i++) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(i))}`, { method: "PUT", body: value });
    if (r.status !== 200) throw new Error(`${SCALE_ID}: seed ${ns}: PUT answered ${r.status}: ${await r.text()}`);
  }
  const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(1))}`);
  if (r.status !== 200 || (await r.arrayBuffer()).byteLength !== value.length) throw new Error(`${SCALE_ID}: seed ${ns}: read-back failed (${r.status})`);
}

interface LoadRow {
  key: "one" | "ns1" | "ns1000";
  label: string;
  server: ServerProcess;
  ns: string;
  rounds: Measurement[];
}

const summary = (m: Measurement) => ({ opsPerSec: m.opsPerSec, p50: m.latency.p50, p99: m.latency.p99, cpuUsPerOp: m.cpuUsPerOp, serverBusy: m.serverBusy, clientBusy: m.clientBusy, machineIdle: m.machineIdle });
const best = (ms: Measurement[]) => ms.reduce((a, b) => (b.opsPerSec > a.opsPerSec ? b : a));
/** Round-to-round spread of ops/s: (max - min) / mean. */
const spread = (ms: Measurement[]) => {
  const ops = ms.map((m) => m.opsPerSec);
  return (Math.max(...ops) - Math.min(...ops)) / mean(ops);
};
const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;

export async function scaleNamespaces(o: BenchOptions): Promise<Row[]> {
  const id = SCALE_ID;
  const cmd = `npm run bench -- --only ${id}`;
  const yamlOne = scaleYaml(1, 1);
  const yamlMany = scaleYaml(NAMESPACES, INSTANCES);
  const started: ServerProcess[] = [];
  const loadMs = { one: [] as number[], many: [] as number[] };
  try {
    // ---- load time: alternate the two configs; keep the last start of each running
    let one: ServerProcess | undefined;
    let many: ServerProcess | undefined;
    for (let k = 0; k < LOAD_STARTS; k++) {
      const last = k === LOAD_STARTS - 1;
      for (const which of ["one", "many"] as const) {
        o.log(`${id}: start ${k + 1}/${LOAD_STARTS} of the ${which === "one" ? "1-namespace" : `${NAMESPACES}-namespace`} config`);
        const t0 = performance.now();
        const p = await startPrism(which === "one" ? yamlOne : yamlMany);
        loadMs[which].push(ms1(performance.now() - t0));
        if (!last) {
          await p.stop();
          continue;
        }
        started.push(p);
        if (which === "one") one = p;
        else many = p;
      }
    }
    const small = one!;
    const large = many!;

    // ---- RSS after start (2 s, then settled); the pool check runs meanwhile in its own process
    await sleep(EARLY_MS);
    const early = { one: rssParts(small.pid), many: rssParts(large.pid) };
    o.log(`${id}: pool check, then idle until ${SETTLE_MS / 1000} s after start`);
    const t1 = performance.now();
    const pools = await poolCounts(yamlMany);
    if (pools.namespaces !== NAMESPACES || pools.instances !== INSTANCES) {
      throw new Error(`${id}: the router opened ${pools.instances} instance(s) for ${pools.namespaces} namespaces; expected ${INSTANCES} for ${NAMESPACES}`);
    }
    await sleep(Math.max(0, SETTLE_MS - EARLY_MS - (performance.now() - t1)));
    const settled = { one: rssParts(small.pid), many: rssParts(large.pid) };

    // ---- every namespace served; the check tells "unknown namespace" apart
    o.log(`${id}: checking that all ${NAMESPACES} namespaces are served`);
    const served = await checkServed(large.ports.http!, NAMESPACES);
    const unknownOnSmall = await absentKeyReason(small.ports.http!, nsName(NAMESPACES));
    if (unknownOnSmall !== "PRISM_ERR_UNKNOWN_NAMESPACE") throw new Error(`${id}: the 1-namespace server answered ${unknownOnSmall} for ${nsName(NAMESPACES)}, expected PRISM_ERR_UNKNOWN_NAMESPACE`);
    await checkServed(small.ports.http!, 1);

    await seed(small.ports.http!, nsName(1));
    await seed(large.ports.http!, nsName(1));
    await seed(large.ports.http!, nsName(NAMESPACES));

    // ---- routing cost: three rows, interleaved rounds; the ns1/ns1000 pair always adjacent
    const rows: LoadRow[] = [
      { key: "one", label: `1-namespace server, ${nsName(1)}`, server: small, ns: nsName(1), rounds: [] },
      { key: "ns1", label: `${NAMESPACES}-namespace server, ${nsName(1)}`, server: large, ns: nsName(1), rounds: [] },
      { key: "ns1000", label: `${NAMESPACES}-namespace server, ${nsName(NAMESPACES)}`, server: large, ns: nsName(NAMESPACES), rounds: [] },
    ];
    const rounds = Math.max(o.rounds, 4);
    for (let r = 0; r < rounds; r++) {
      const pair = r % 2 === 0 ? [rows[1]!, rows[2]!] : [rows[2]!, rows[1]!];
      const order = Math.floor(r / 2) % 2 === 0 ? [rows[0]!, ...pair] : [...pair, rows[0]!];
      for (const row of order) {
        o.log(`${id}: round ${r + 1}/${rounds} ${row.label}`);
        const m = await runWsLoad({
          url: `ws://127.0.0.1:${row.server.ports.http}/v1/ws`,
          conns: CONNS,
          depth: DEPTH,
          threads: o.threads,
          templates: kvMix(row.ns, KEYS, 100),
          seconds: o.seconds,
          warmupSeconds: o.warmupSeconds,
          serverPids: [row.server.pid],
        });
        if (m.errors > 0) throw new Error(`${id} ${row.label}: ${m.errors} requests failed (of ${m.ops + m.errors})`);
        if (m.ops === 0) throw new Error(`${id} ${row.label}: no request completed`);
        row.rounds.push(m);
      }
    }
    const after = { one: rssParts(small.pid), many: rssParts(large.pid) };
    const [rOne, rNs1, rNs1000] = rows as [LoadRow, LoadRow, LoadRow];

    // ns1000 / ns1 per round (same server, back to back), and the 1000-ns server's ns1 / the 1-ns server's ns1
    const paired = (a: LoadRow, b: LoadRow) => {
      const ops = a.rounds.map((m, i) => m.opsPerSec / b.rounds[i]!.opsPerSec);
      const cpu = a.rounds.map((m, i) => m.cpuUsPerOp / b.rounds[i]!.cpuUsPerOp);
      return { ops: ops.map(round3), cpu: cpu.map(round3), opsMean: round3(mean(ops)), cpuMean: round3(mean(cpu)) };
    };
    const routing = paired(rNs1000, rNs1);
    const scale = paired(rNs1, rOne);
    const noise = Math.max(spread(rNs1.rounds), spread(rNs1000.rounds), spread(rOne.rounds));
    const met = Math.abs(routing.opsMean - 1) <= TOLERANCE && Math.abs(routing.cpuMean - 1) <= TOLERANCE;

    const detailOf = (r: LoadRow) => ({ label: r.label, namespace: r.ns, rounds: r.rounds.map(summary), meanOpsPerSec: Math.round(mean(r.rounds.map((m) => m.opsPerSec))), meanCpuUsPerOp: round3(mean(r.rounds.map((m) => m.cpuUsPerOp))) });
    const loadDetail = {
      namespaces: NAMESPACES,
      instances: INSTANCES,
      backend: `memstore, sweep_interval_ms ${SWEEP_BASE_MS + 1}..${SWEEP_BASE_MS + INSTANCES} (distinct options: one pool each)`,
      routerCounts: pools,
      namespacesServed: served,
      loadMs: { one: loadMs.one, many: loadMs.many, medianOne: median(loadMs.one), medianMany: median(loadMs.many) },
      rssMb: {
        one: { early: rssMb(early.one), settled: rssMb(settled.one), afterLoad: rssMb(after.one) },
        many: { early: rssMb(early.many), settled: rssMb(settled.many), afterLoad: rssMb(after.many) },
      },
    };
    const dAnonKb = ((settled.many.anon - settled.one.anon) / 1024 / NAMESPACES);
    const empty: Measurement = { ops: 0, errors: 0, opsPerSec: 0, latency: { p50: -1, p90: -1, p99: -1, p999: -1, max: -1 }, cpuUsPerOp: 0, serverBusy: 0, clientBusy: 0 };
    const loadRow: Row & { detail: typeof loadDetail } = {
      id: `${id}-load`,
      title: `${NAMESPACES} namespaces on ${INSTANCES} memstore instances vs 1 namespace: load time (spawn → listening) and settled RSS, prism serve --workers 1`,
      kind: "memory",
      prism: empty,
      prismRssMb: mb(settled.many.rss),
      baselineName: "1-namespace server",
      target: `router holds ${NAMESPACES} namespaces on ${INSTANCES} instances, all served`,
      met: pools.namespaces === NAMESPACES && pools.instances === INSTANCES && served === NAMESPACES,
      command: cmd,
      note:
        `load time (spawn → listening, median of ${LOAD_STARTS}) ${median(loadMs.many)} ms vs ${median(loadMs.one)} ms for 1 namespace (samples ${loadMs.many.join("/")} vs ${loadMs.one.join("/")} ms); ` +
        `RSS ${NAMESPACES} ns: ${mb(early.many.rss)} MB at 2 s, ${mb(settled.many.rss)} MB settled (private ${mb(settled.many.anon)} + file ${mb(settled.many.file)}), ${mb(after.many.rss)} MB after the load rounds; ` +
        `1 ns: ${mb(early.one.rss)} MB at 2 s, ${mb(settled.one.rss)} MB settled (private ${mb(settled.one.anon)} + file ${mb(settled.one.file)}), ${mb(after.one.rss)} MB after; ` +
        `settled private memory +${mb(settled.many.anon - settled.one.anon)} MB (~${dAnonKb.toFixed(1)} KB per namespace incl. its instance share); router check: ${pools.namespaces} namespaces, ${pools.instances} distinct instances`,
      detail: loadDetail,
    };
    const loadNote = `${CONNS} conns x ${DEPTH} in flight, ${o.threads} client thread(s), ${o.seconds} s per measurement, ${rounds} interleaved rounds (ns #1 and ns #${NAMESPACES} back to back, order alternated), table = best round`;
    const b1 = best(rOne.rounds);
    const bNs1 = best(rNs1.rounds);
    const bNs1000 = best(rNs1000.rounds);
    const rowNs1: Row & { detail: unknown } = {
      id: `${id}-ns1`,
      title: `KeyValue Get, WebSocket, memstore: namespace #1 of ${NAMESPACES} (${INSTANCES} instances) vs the only namespace of a 1-namespace server`,
      kind: "throughput",
      prism: bNs1,
      prismRssMb: mb(after.many.rss),
      baselineName: "1-ns server",
      baseline: b1,
      ratio: round3(bNs1.opsPerSec / b1.opsPerSec),
      addedP50Ms: round3(bNs1.latency.p50 - b1.latency.p50),
      addedP99Ms: round3(bNs1.latency.p99 - b1.latency.p99),
      command: cmd,
      note: `per-round ratio (${NAMESPACES}-ns server ns #1 / 1-ns server) ops/s ${scale.ops.join(", ")} (mean ${scale.opsMean}), CPU µs/op ${scale.cpu.join(", ")} (mean ${scale.cpuMean}); mean CPU µs/op ${detailOf(rNs1).meanCpuUsPerOp} vs ${detailOf(rOne).meanCpuUsPerOp}; 1-ns server RSS ${mb(after.one.rss)} MB; ${loadNote}`,
      detail: { prism: detailOf(rNs1), baseline: detailOf(rOne), perRoundRatio: scale },
    };
    const rowNs1000: Row & { detail: unknown } = {
      id: `${id}-ns1000`,
      title: `KeyValue Get, WebSocket, memstore: namespace #${NAMESPACES} vs namespace #1 on the same ${NAMESPACES}-namespace server (routing cost vs namespace count)`,
      kind: "throughput",
      prism: bNs1000,
      prismRssMb: mb(after.many.rss),
      baselineName: "ns #1 same server",
      baseline: bNs1,
      ratio: round3(bNs1000.opsPerSec / bNs1.opsPerSec),
      addedP50Ms: round3(bNs1000.latency.p50 - bNs1.latency.p50),
      addedP99Ms: round3(bNs1000.latency.p99 - bNs1.latency.p99),
      target: `mean per-round ratio ns #${NAMESPACES} / ns #1 within ±${TOLERANCE * 100}% (ops/s and CPU µs/op)`,
      met,
      command: cmd,
      note:
        `per-round ratio ns #${NAMESPACES} / ns #1: ops/s ${routing.ops.join(", ")} (mean ${routing.opsMean}, ${pct(routing.opsMean - 1)}), CPU µs/op ${routing.cpu.join(", ")} (mean ${routing.cpuMean}, ${pct(routing.cpuMean - 1)}); ` +
        `mean CPU µs/op ${detailOf(rNs1000).meanCpuUsPerOp} vs ${detailOf(rNs1).meanCpuUsPerOp}; round-to-round ops/s spread of a single row up to ${(noise * 100).toFixed(1)}% (the noise); ${loadNote}`,
      detail: { prism: detailOf(rNs1000), baseline: detailOf(rNs1), perRoundRatio: routing, noiseSpread: round3(noise) },
    };
    return [loadRow, rowNs1, rowNs1000];
  } finally {
    for (const p of started.reverse()) await p.stop();
  }
}
