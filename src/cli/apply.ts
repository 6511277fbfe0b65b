/**
 * `prism apply -f FILE` and `prism ns diff -f FILE`: a prism.yaml against a
 * running gateway. The file is validated here first (like `prism validate`),
 * then every backend instance and namespace in it is sent to the gateway as a
 * dry run, and the gateway's normalized result (defaults, confined paths,
 * masked secrets) is compared with what it runs now: both sides come out of
 * the same server, so defaults and paths never show up as differences.
 *
 * Entries are sent as written in the file, `${ENV}` substituted here (from
 * this shell's environment, as `prism validate` checked them), so relative
 * file options (sqlite `path: a.db`) resolve in the gateway's data directory.
 * `server:` is not applied: it is the serving process's own setting.
 *
 * Limitations: secrets come back masked ("***") from both sides, so a changed
 * password alone is not seen as a change. A namespace that names a backend
 * instance the gateway does not have yet (or has in another form) cannot be
 * dry-run as written before that instance is applied: it is dry-run with the
 * file's definition of the instance inline instead (so the gateway still
 * checks it), compared with the file's own validation (noted on its line),
 * and compared with the gateway again once the backends are applied. One
 * choosing its backend automatically ({ auto: true }) while backends are
 * pending is checked only then.
 *
 * Nothing is applied when the gateway refuses any entry of the plan (`!`
 * lines). Applying stops at the first failure; what was applied stays.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { loadConfigFile } from "../config/load.js";
import { backendRefOf } from "../config/resolve.js";
import type { NamespaceConfig, PrismConfig } from "../config/schema.js";
import { reportConfigError } from "./config.js";
import { describeError, withClient, type BackendInstanceInfo, type CliClient, type NamespaceInfo } from "./client.js";
import { APPLY_USAGE, NS_USAGE, UsageError } from "./usage.js";

type Change = "new" | "changed" | "unchanged" | "error";

interface BackendPlan {
  name: string;
  type: string;
  /** As in the file, ${ENV} substituted. */
  spec: { type: string } & Record<string, unknown>;
  live?: BackendInstanceInfo;
  change: Change;
  detail: string;
}

interface NamespacePlan {
  name: string;
  /** As in the file, ${ENV} substituted. */
  entry: Record<string, unknown>;
  /** As validated here. */
  local: NamespaceConfig;
  live?: NamespaceInfo;
  /** The gateway's dry run (absent: it failed). */
  dry?: NamespaceInfo;
  change: Change;
  detail: string;
  /** The dry run failed because of backend changes still to apply: compared locally. */
  pending: boolean;
}

interface Plan {
  backends: BackendPlan[];
  namespaces: NamespacePlan[];
  pruneNamespaces: string[];
  pruneBackends: BackendInstanceInfo[];
  keptNamespaces: string[];
  keptBackends: string[];
  /** Backends not in the file that --prune cannot delete (`!` lines). */
  blocked: string[];
  /** Problems found while planning (also shown as `!` lines). */
  problems: string[];
}

// ---------------------------------------------------------------- comparing

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

/** Deep equality, key order ignored, undefined = absent. `masked`: a masked secret ("***") matches any string. */
function same(a: unknown, b: unknown, masked: boolean): boolean {
  if (masked && typeof a === "string" && typeof b === "string" && (a.includes("***") || b.includes("***"))) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i], masked));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => b[k] !== undefined && same(a[k], b[k], masked));
  }
  return a === b;
}

function show(v: unknown): string {
  if (v === undefined) return "(none)";
  const s = JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 39)}…` : s;
}

/** What differs, as `key before → after` (objects compared key by key two levels deep: `limits.max_value_bytes 100 → 200`). */
export function differences(before: unknown, after: unknown, masked = false, path = "", depth = 0): string[] {
  if (same(before, after, masked)) return [];
  if (isObject(before) && isObject(after) && depth < 2) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => differences(before[k], after[k], masked, path ? `${path}.${k}` : k, depth + 1));
  }
  return [`${path || "(all)"} ${show(before)} → ${show(after)}`];
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `{ type, ...options }` of a live instance or a dry run. */
function specOf(b: BackendInstanceInfo): Record<string, unknown> {
  const options = parseJson(b.optionsJson || "{}");
  return { type: b.type, ...(isObject(options) ? options : {}) };
}

/** "keyvalue on store", "keyvalue,queue on mem+durable", "stream on main (auto)". */
function servedBy(primitives: readonly string[], targets: string[]): string {
  return `${primitives.join(",")} on ${[...new Set(targets)].join("+")}`;
}

function summaryOf(ns: NamespaceInfo): string {
  return servedBy(ns.primitives, ns.slots.map((s) => (s.instance ? `${s.instance}${s.auto ? " (auto)" : ""}` : s.backendType)));
}

function localSummaryOf(ns: NamespaceConfig): string {
  const refs = [ns.backend, ...Object.values(ns.slots ?? {})].filter((v) => v !== undefined).map((v) => {
    const r = backendRefOf(v);
    return r?.kind === "instance" ? r.name : r?.kind === "inline" ? r.spec.type : "(auto)";
  });
  return servedBy(ns.primitives, refs);
}

// ---------------------------------------------------------------- the file

/** `${NAME}` / `${NAME:-fallback}` as src/config/load.ts substitutes them (the file validated, so every name resolves). */
function substituteEnv(value: unknown, env: NodeJS.ProcessEnv): unknown {
  if (typeof value === "string") return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => env[name] ?? fallback ?? "");
  if (Array.isArray(value)) return value.map((v) => substituteEnv(v, env));
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(v, env)]));
  return value;
}

interface LoadedFile {
  cfg: PrismConfig;
  backends: Record<string, { type: string } & Record<string, unknown>>;
  namespaces: Record<string, unknown>[];
}

/** Validates the file (exit status 2 and the problems, like `prism validate`) and keeps its entries as written. */
async function loadFile(file: string): Promise<LoadedFile | number> {
  let cfg: PrismConfig;
  try {
    cfg = await loadConfigFile(file);
  } catch (e) {
    return reportConfigError(e);
  }
  const raw = substituteEnv(parseYaml(readFileSync(file, "utf8")) ?? {}, process.env) as { backends?: unknown; namespaces?: unknown };
  return {
    cfg,
    backends: (isObject(raw.backends) ? raw.backends : {}) as LoadedFile["backends"],
    namespaces: (Array.isArray(raw.namespaces) ? raw.namespaces : []) as Record<string, unknown>[],
  };
}

// ---------------------------------------------------------------- the plan

async function compareNamespace(c: CliClient, p: NamespacePlan): Promise<void> {
  p.dry = (await c.admin.applyNamespace(p.entry, { dryRun: true })).namespace;
  p.pending = false;
  if (!p.live) {
    p.change = "new";
    p.detail = summaryOf(p.dry);
    return;
  }
  const d = differences(parseJson(p.live.configJson), parseJson(p.dry.configJson));
  p.change = d.length ? "changed" : "unchanged";
  p.detail = d.join(", ");
}

/** The namespace's backend references, each named one in `specs` replaced by that inline definition. */
function inlined(entry: Record<string, unknown>, specs: ReadonlyMap<string, unknown>): Record<string, unknown> {
  const sub = (v: unknown) => (typeof v === "string" && specs.has(v) ? specs.get(v) : v);
  const out = { ...entry };
  if (out.backend !== undefined) out.backend = sub(out.backend);
  if (isObject(out.slots)) out.slots = Object.fromEntries(Object.entries(out.slots).map(([k, v]) => [k, sub(v)]));
  return out;
}

/**
 * Why the gateway refuses a namespace whose dry run failed with `e`, or
 * undefined when that may only be because of backends still to apply: the
 * namespace names such a backend (then its dry run with them inline must
 * pass) or chooses automatically while some are pending.
 */
async function refusal(c: CliClient, p: NamespacePlan, pending: ReadonlyMap<string, unknown>, e: unknown): Promise<string | undefined> {
  const refs = [p.local.backend, ...Object.values(p.local.slots ?? {})].map(backendRefOf);
  if (pending.size && refs.some((r) => r?.kind === "auto")) return undefined; // cannot tell before they are applied
  if (!refs.some((r) => r?.kind === "instance" && pending.has(r.name))) return describeError(e);
  try {
    await c.admin.applyNamespace(inlined(p.entry, pending), { dryRun: true });
    return undefined;
  } catch (e2) {
    return describeError(e2);
  }
}

async function makePlan(c: CliClient, loaded: LoadedFile, prune: boolean, file: string): Promise<Plan> {
  const [liveBackends, liveNamespaces] = await Promise.all([c.admin.listBackendInstances(), c.admin.listNamespaces()]);
  const liveB = new Map(liveBackends.map((b) => [b.name, b]));
  const liveN = new Map(liveNamespaces.map((n) => [n.name, n]));
  const plan: Plan = { backends: [], namespaces: [], pruneNamespaces: [], pruneBackends: [], keptNamespaces: [], keptBackends: [], blocked: [], problems: [] };

  for (const [name, spec] of Object.entries(loaded.backends)) {
    const p: BackendPlan = { name, type: String(spec.type), spec, live: liveB.get(name), change: "new", detail: "" };
    plan.backends.push(p);
    let dry: BackendInstanceInfo;
    try {
      dry = (await c.admin.applyBackend(name, spec, { dryRun: true })).backend;
    } catch (e) {
      p.change = "error";
      p.detail = describeError(e);
      plan.problems.push(`backend ${name}: ${p.detail}`);
      continue;
    }
    if (!p.live) continue;
    const d = differences(specOf(p.live), specOf(dry));
    p.change = d.length ? "changed" : "unchanged";
    p.detail = d.join(", ");
  }
  const pendingSpecs = new Map(plan.backends.filter((b) => b.change === "new" || b.change === "changed").map((b) => [b.name, b.spec]));

  loaded.namespaces.forEach((entry, i) => {
    const local = loaded.cfg.namespaces[i]!;
    plan.namespaces.push({ name: local.name, entry, local, live: liveN.get(local.name), change: "new", detail: "", pending: false });
  });
  for (const p of plan.namespaces) {
    try {
      await compareNamespace(c, p);
    } catch (e) {
      // It may name an instance the gateway gets (or changes) only with this apply: then it is checked
      // with those instances written inline, and compared with the file's own validation.
      const refused = await refusal(c, p, pendingSpecs, e);
      if (refused !== undefined) {
        p.change = "error";
        p.detail = refused;
        plan.problems.push(`namespace ${p.name}: ${p.detail}`);
        continue;
      }
      p.pending = true;
      if (!p.live) {
        p.change = "new";
        p.detail = localSummaryOf(p.local);
      } else {
        const d = differences(parseJson(p.live.configJson), JSON.parse(JSON.stringify(p.local)), true);
        p.change = "changed";
        p.detail = d.join(", ") || "maybe nothing";
      }
    }
  }

  const inFileN = new Set(plan.namespaces.map((n) => n.name));
  const inFileB = new Set(plan.backends.map((b) => b.name));
  const absentN = liveNamespaces.map((n) => n.name).filter((n) => !inFileN.has(n)).sort();
  const absentB = liveBackends.filter((b) => !inFileB.has(b.name)).sort((a, b) => (a.name < b.name ? -1 : 1));
  if (prune) {
    plan.pruneNamespaces = absentN;
    for (const b of absentB) {
      // Only an automatic choice can pick an instance the file does not declare (a named one fails validation).
      const users = plan.namespaces.filter((n) => (n.dry ?? n.live)?.slots.some((s) => s.instance === b.name)).map((n) => n.name);
      if (!users.length) {
        plan.pruneBackends.push(b);
        continue;
      }
      const why = `backend ${b.name}: not in ${file}, but namespace ${users.join(", ")} of it would still use it (chosen automatically); declare it in ${file}`;
      plan.blocked.push(why);
      plan.problems.push(why);
    }
  } else {
    plan.keptNamespaces = absentN;
    plan.keptBackends = absentB.map((b) => b.name);
  }
  return plan;
}

/** On a changed namespace the gateway could not dry-run yet (a new or changed backend it names). */
const PENDING_NOTE = " (compared with the file: the gateway checks it once the backends are applied)";

function planLines(plan: Plan, file: string, opts: { verbose: boolean; backends: boolean }): string[] {
  const out: string[] = [];
  if (opts.backends) {
    for (const b of plan.backends) {
      if (b.change === "new") out.push(`+ backend ${b.name} (${b.type})`);
      else if (b.change === "changed") out.push(`~ backend ${b.name} (${b.type}): ${b.detail}`);
      else if (b.change === "error") out.push(`! backend ${b.name}: ${b.detail}`);
      else if (opts.verbose) out.push(`= backend ${b.name} (unchanged)`);
    }
  }
  for (const n of plan.namespaces) {
    if (n.change === "new") out.push(`+ namespace ${n.name} (${n.detail})`);
    else if (n.change === "changed") out.push(`~ namespace ${n.name}: ${n.detail}${n.pending ? PENDING_NOTE : ""}`);
    else if (n.change === "error") out.push(`! namespace ${n.name}: ${n.detail}`);
    else if (opts.verbose) out.push(`= namespace ${n.name} (unchanged)`);
  }
  for (const n of plan.pruneNamespaces) out.push(`- namespace ${n}`);
  if (opts.backends) for (const b of plan.pruneBackends) out.push(`- backend ${b.name} (${b.type})`);
  if (opts.backends) for (const why of plan.blocked) out.push(`! ${why}`);
  if (plan.keptNamespaces.length) out.push(`(not in ${file}, kept: ${plan.keptNamespaces.join(", ")})`);
  if (opts.backends && plan.keptBackends.length) out.push(`(backends not in ${file}, kept: ${plan.keptBackends.join(", ")})`);
  const items: Change[] = [...(opts.backends ? plan.backends.map((b) => b.change) : []), ...plan.namespaces.map((n) => n.change)];
  const count = (c: Change) => items.filter((x) => x === c).length;
  const deletes = plan.pruneNamespaces.length + (opts.backends ? plan.pruneBackends.length : 0);
  const [add, change, same] = [count("new"), count("changed"), count("unchanged")];
  const refused = count("error") + (opts.backends ? plan.blocked.length : 0);
  if (!add && !change && !deletes && !refused) out.push(`no changes${same ? ` (${same} unchanged)` : ""}`);
  else out.push(`${add} to add, ${change} to change, ${deletes} to delete, ${same} unchanged${refused ? `, ${refused} refused` : ""}`);
  return out;
}

function hasChanges(plan: Plan): boolean {
  return plan.backends.some((b) => b.change === "new" || b.change === "changed") || plan.namespaces.some((n) => n.change === "new" || n.change === "changed") || plan.pruneNamespaces.length > 0 || plan.pruneBackends.length > 0;
}

function write(lines: string[]): void {
  if (lines.length) process.stdout.write(lines.join("\n") + "\n");
}

// ---------------------------------------------------------------- commands

function parseFileArgs(argv: string[], extra: Record<string, { type: "boolean"; short?: string }>) {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { file: { type: "string", short: "f" }, addr: { type: "string" }, prune: { type: "boolean" }, verbose: { type: "boolean", short: "v" }, ...extra },
    allowPositionals: true,
    strict: true,
  });
  return { values: values as Record<string, string | boolean | undefined>, positionals };
}

/** `prism apply -f FILE [--dry-run] [--prune] [--verbose] [--addr ADDR]`. */
export async function applyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFileArgs(argv, { "dry-run": { type: "boolean" } });
  const file = values.file as string | undefined;
  if (positionals.length || !file) throw new UsageError(APPLY_USAGE);
  const loaded = await loadFile(file);
  if (typeof loaded === "number") return loaded;
  let stage = "";
  try {
    return await withClient(values.addr as string | undefined, async (c) => {
      const plan = await makePlan(c, loaded, values.prune === true, file);
      const lines = planLines(plan, file, { verbose: values.verbose === true, backends: true });
      write(lines);
      if (plan.problems.length) {
        process.stderr.write(`prism apply: the gateway refused ${plan.problems.length === 1 ? "an entry" : `${plan.problems.length} entries`} (the ! lines); nothing applied\n`);
        return 1;
      }
      if (values["dry-run"] === true || !hasChanges(plan)) return 0;

      for (const b of plan.backends) {
        if (b.change !== "new" && b.change !== "changed") continue;
        stage = `backend ${b.name}`;
        const r = await c.admin.applyBackend(b.name, b.spec);
        write([`applied backend ${b.name} (revision ${r.revision})`]);
      }
      for (const n of plan.namespaces) {
        stage = `namespace ${n.name}`;
        if (n.pending) await compareNamespace(c, n); // now that the backends are there
        if (n.change !== "new" && n.change !== "changed") {
          if (values.verbose === true) write([`= namespace ${n.name} (unchanged)`]);
          continue;
        }
        const r = await c.admin.applyNamespace(n.entry);
        write([`applied namespace ${n.name} (revision ${r.revision})`]);
      }
      for (const name of plan.pruneNamespaces) {
        stage = `namespace ${name}`;
        const deleted = await c.admin.deleteNamespace(name);
        write([deleted ? `deleted namespace ${name}` : `namespace ${name} was already gone`]);
      }
      for (const b of plan.pruneBackends) {
        stage = `backend ${b.name}`;
        const deleted = await c.admin.deleteBackend(b.name);
        write([deleted ? `deleted backend ${b.name}` : `backend ${b.name} was already gone`]);
      }
      return 0;
    });
  } catch (e) {
    process.stderr.write(`prism apply: ${stage ? `${stage}: ` : ""}${describeError(e)}\n`);
    if (stage) process.stderr.write(`prism apply: stopped; what is listed as applied above stays applied\n`);
    return 1;
  }
}

/** `prism ns diff -f FILE [--prune] [--verbose] [--addr ADDR]`: the namespace lines of `prism apply --dry-run`. */
export async function nsDiffCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFileArgs(argv, {});
  const file = values.file as string | undefined;
  if (positionals.length || !file) throw new UsageError(NS_USAGE);
  const loaded = await loadFile(file);
  if (typeof loaded === "number") return loaded;
  try {
    return await withClient(values.addr as string | undefined, async (c) => {
      const plan = await makePlan(c, loaded, values.prune === true, file);
      write(planLines(plan, file, { verbose: values.verbose === true, backends: false }));
      const refused = plan.namespaces.filter((n) => n.change === "error").length;
      if (refused) {
        process.stderr.write(`prism ns diff: the gateway refused ${refused === 1 ? "a namespace" : `${refused} namespaces`} (the ! lines)\n`);
        return 1;
      }
      return 0;
    });
  } catch (e) {
    process.stderr.write(`prism ns diff: ${describeError(e)}\n`);
    return 1;
  }
}
