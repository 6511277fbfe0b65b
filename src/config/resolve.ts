/**
 * Namespace → its pattern's slots → backend instances: the one place that
 * decides which backend serves what. Checks each slot's required interfaces,
 * the namespace's `needs`, and makes the automatic choice for `{ auto: true }`,
 * explaining it (the chosen instance and every rejected one, with reasons).
 * No zod and no yaml: the control plane runs it on entries already validated.
 */
import type { InterfaceName, SlotFamily } from "../core/interfaces.js";
import type { BackendDriver } from "../backends/driver.js";
import { backendTypes, isBackendType, loadDriver } from "../backends/registry.js";
import { PATTERNS, patternByName, type PatternDef, type SlotDef } from "../patterns/registry.js";
import { unmetNeeds } from "./needs.js";
import type { BackendRef, BackendSpec, NamespaceConfig } from "./schema.js";
import type { MigrationSettings, MigrationState } from "../migrations/types.js";

/** `a.b[2].c` from a path. */
function fmt(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || "(root)";
}

export interface ResolvedSlot {
  readonly slot: string;
  readonly primitive: SlotFamily;
  /** The backend instance's name; `""` for an inline (private) backend. */
  readonly instance: string;
  readonly type: string;
  /** The driver options (validated, defaults applied). */
  readonly options: Record<string, unknown>;
  readonly interfaces: readonly InterfaceName[];
  readonly inProcess: boolean;
  /** Chosen by `needs` (backend or slot `{ auto: true }`). */
  readonly auto: boolean;
}

/** A namespace's slot in migration: where it goes, and the phase it is in (null: configured, not started). */
export interface ResolvedMigration {
  readonly settings: MigrationSettings;
  readonly to: ResolvedSlot;
  state: MigrationState | null;
}

export interface ResolvedNamespace {
  readonly config: NamespaceConfig;
  /** Set while the namespace carries `migration:`. */
  migration?: ResolvedMigration;
  /** The pattern's name; "" for a namespace composing primitives (no `pattern:`). */
  readonly pattern: string;
  readonly slots: readonly ResolvedSlot[];
  /** Why each slot has its backend: the choice and every rejected candidate. */
  readonly explanation: readonly string[];
  /** The config store revision that last wrote this namespace (0: not from a store). */
  revision: number;
}

export type Instances = ReadonlyMap<string, BackendSpec>;

/** What a namespace's backend / slot value is. */
export function backendRefOf(v: unknown): { kind: "instance"; name: string } | { kind: "auto" } | { kind: "inline"; spec: BackendSpec } | undefined {
  if (typeof v === "string") return { kind: "instance", name: v };
  if (v && typeof v === "object" && !Array.isArray(v)) {
    if ((v as { auto?: unknown }).auto === true) return { kind: "auto" };
    if (typeof (v as { type?: unknown }).type === "string") return { kind: "inline", spec: v as BackendSpec };
  }
  return undefined;
}

/** The slots a namespace has: its pattern's, or one per primitive it serves. */
export function slotDefsOf(ns: NamespaceConfig): { pattern: PatternDef | undefined; slots: SlotDef[] } {
  if (ns.pattern !== undefined) {
    const p = patternByName(ns.pattern);
    const options = ns.options ?? {};
    return { pattern: p, slots: p ? p.slots.map((s) => (s.forOptions ? { ...s, ...s.forOptions(options) } : s)) : [] };
  }
  return { pattern: undefined, slots: ns.primitives.map((prim) => patternByName(prim)!.slots[0]!) };
}

function describeInstance(name: string, type: string): string {
  return name ? `backend "${name}" (${type})` : `backend "${type}"`;
}

function recommendedRank(slot: SlotDef, type: string): number {
  const i = slot.recommended.indexOf(type);
  return i < 0 ? slot.recommended.length : i;
}

/**
 * Resolves one namespace. `path` prefixes problems (`namespaces[3]`); `previous`
 * keeps an automatic choice sticky while it still satisfies the needs (moving
 * a namespace to another backend would strand its data: that is a migration).
 */
export async function resolveNamespace(
  ns: NamespaceConfig,
  path: readonly PropertyKey[],
  instances: Instances,
  previous?: Readonly<Record<string, string>>,
): Promise<{ resolved?: ResolvedNamespace; problems: string[] }> {
  const problems: string[] = [];
  const explanation: string[] = [];
  const { pattern, slots: defs } = slotDefsOf(ns);
  if (ns.pattern !== undefined && !pattern) {
    problems.push(`${fmt([...path, "pattern"])}: unknown pattern "${ns.pattern}" (known: ${PATTERNS.map((p) => p.name).join(", ")})`);
    return { problems };
  }
  const patternName = ns.pattern ?? "";
  for (const key of Object.keys(ns.slots ?? {})) {
    if (!defs.some((d) => d.name === key)) {
      const what = pattern ? `pattern ${pattern.name} has no slot "${key}"` : `no primitive "${key}" is served here`;
      problems.push(`${fmt([...path, "slots", key])}: ${what} (slots: ${defs.map((d) => d.name).join(", ")})`);
    }
  }
  const slots: ResolvedSlot[] = [];
  for (const def of defs) {
    const fromSlots = ns.slots?.[def.name] !== undefined;
    const raw: BackendRef | undefined = fromSlots ? ns.slots![def.name] : ns.backend;
    const at = fmt(fromSlots ? [...path, "slots", def.name] : [...path, "backend"]);
    const by = `pattern ${pattern?.name ?? def.primitive}`;
    const ref = backendRefOf(raw);
    if (!ref) {
      problems.push(raw === undefined
        ? `${at}: no backend for slot "${def.name}" (give slots.${def.name} or backend)`
        : `${at}: must be a backend instance name, { auto: true } or { type: ..., options }`);
      continue;
    }
    let name = "";
    let spec: BackendSpec;
    let auto = false;
    if (ref.kind === "inline") spec = ref.spec;
    else if (ref.kind === "instance") {
      const s = instances.get(ref.name);
      if (!s) {
        const known = [...instances.keys()].sort();
        problems.push(`${at}: unknown backend instance "${ref.name}" (declared: ${known.length ? known.join(", ") : "none; add it under backends:"})`);
        continue;
      }
      name = ref.name;
      spec = s;
    } else {
      const choice = await chooseAuto(ns, def, instances, previous?.[def.name]);
      explanation.push(...choice.lines);
      if (!choice.name) {
        problems.push(`${at}: no declared backend instance satisfies slot "${def.name}" of ${by}: ${choice.lines.slice(1).join("; ") || "none declared"}`);
        continue;
      }
      name = choice.name;
      spec = instances.get(name)!;
      auto = true;
    }
    if (!isBackendType(spec.type)) {
      problems.push(`${at}: unknown backend "${spec.type}" (known: ${backendTypes().join(", ")})`);
      continue;
    }
    const driver = await loadDriver(spec.type);
    let ok = true;
    for (const iface of def.requires) {
      if (!driver.interfaces.includes(iface)) {
        ok = false;
        problems.push(
          name
            ? `${at}: ${describeInstance(name, spec.type)} lacks ${iface}, required by ${by}`
            : `${at}: backend "${spec.type}" does not implement ${iface}, required by ${by}`,
        );
      }
    }
    if (!auto) {
      const unmet = unmetNeeds(ns.needs, def, driver);
      for (const u of unmet) problems.push(`${fmt([...path, "needs"])}: ${describeInstance(name, spec.type)} for slot "${def.name}": ${u}`);
      if (unmet.length) ok = false;
      else explanation.push(`slot ${def.name}: ${describeInstance(name, spec.type)}, named by the namespace${ns.needs ? "; satisfies every need" : ""}`);
    }
    if (!ok) continue;
    const { type, ...options } = spec;
    slots.push({ slot: def.name, primitive: def.primitive, instance: name, type, options, interfaces: driver.interfaces, inProcess: driver.inProcess === true, auto });
  }
  // Two slots of one family on the same instance would share one keyspace (a cache over itself).
  if (pattern && pattern.slots.length > 1) {
    const seen = new Map<string, string>();
    for (const sl of slots) {
      const key = `${sl.primitive}:${sl.type}:${JSON.stringify(Object.entries(sl.options).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
      const other = seen.get(key);
      if (other !== undefined) problems.push(`${fmt([...path, "slots", sl.slot])}: slots "${other}" and "${sl.slot}" of pattern ${pattern.name} name the same backend${sl.instance ? ` ("${sl.instance}")` : ""}; they need distinct instances`);
      else seen.set(key, sl.slot);
    }
  }
  let migration: ResolvedMigration | undefined;
  if (ns.migration && !problems.length) {
    const m = await resolveMigration(ns, path, slots, instances, problems);
    if (m) {
      migration = m;
      explanation.push(`slot ${m.settings.slot}: in migration from "${m.settings.from}" to "${m.settings.to}" (${m.to.type})`);
    }
  }
  // One shared `backend:` serves several slots: say each problem once.
  if (problems.length) return { problems: [...new Set(problems)] };
  return { resolved: { config: ns, pattern: patternName, slots, explanation, revision: 0, migration }, problems };
}

async function resolveMigration(
  ns: NamespaceConfig,
  path: readonly PropertyKey[],
  slots: ResolvedSlot[],
  instances: Instances,
  problems: string[],
): Promise<ResolvedMigration | undefined> {
  const m = ns.migration!;
  const at = fmt([...path, "migration"]);
  const slot = m.slot !== undefined ? slots.find((s) => s.slot === m.slot) : slots.length === 1 ? slots[0] : slots.find((s) => s.primitive === "keyvalue");
  if (!slot) {
    problems.push(`${at}.slot: ${m.slot !== undefined ? `no slot "${m.slot}"` : "several slots: name the one that moves"} (slots: ${slots.map((s) => s.slot).join(", ")})`);
    return undefined;
  }
  if (!slot.instance) {
    problems.push(`${at}: slot "${slot.slot}" has an inline backend; migrations move between named instances (declare it under backends:)`);
    return undefined;
  }
  if (m.from !== undefined && m.from !== slot.instance) {
    problems.push(`${at}.from: "${m.from}" is not the instance slot "${slot.slot}" is bound to ("${slot.instance}")`);
    return undefined;
  }
  const spec = instances.get(m.to);
  if (!spec) {
    problems.push(`${at}.to: unknown backend instance "${m.to}" (declared: ${[...instances.keys()].sort().join(", ") || "none"})`);
    return undefined;
  }
  if (m.to === slot.instance) {
    problems.push(`${at}.to: "${m.to}" is where slot "${slot.slot}" already is`);
    return undefined;
  }
  if (!isBackendType(spec.type)) {
    problems.push(`${at}.to: unknown backend "${spec.type}"`);
    return undefined;
  }
  {
    const { type: t, ...o } = spec;
    if (t === slot.type && JSON.stringify(Object.entries(o).sort()) === JSON.stringify(Object.entries(slot.options).sort())) {
      problems.push(`${at}.to: "${m.to}" is the same backend as "${slot.instance}" (same type and options): nothing would move`);
      return undefined;
    }
  }
  const driver = await loadDriver(spec.type);
  const fromDriver = await loadDriver(slot.type);
  const def = slotDefsOf(ns).slots.find((d) => d.name === slot.slot)!;
  const need: InterfaceName[] = [...def.requires];
  // The copy of a KeyValue slot scans `from` and writes `to` only where a client has not (if-absent).
  if (slot.primitive === "keyvalue") need.push("keyvalue_cas");
  for (const i of need) if (!driver.interfaces.includes(i)) problems.push(`${at}.to: backend "${m.to}" (${spec.type}) lacks ${i}, required to migrate slot "${slot.slot}"`);
  for (const i of def.optional) {
    if (slot.interfaces.includes(i) && !driver.interfaces.includes(i)) problems.push(`${at}.to: backend "${m.to}" (${spec.type}) lacks ${i}, which "${slot.instance}" serves now`);
  }
  if (slot.primitive === "keyvalue" && !fromDriver.interfaces.includes("keyvalue_scan")) problems.push(`${at}.from: backend "${slot.instance}" (${slot.type}) lacks keyvalue_scan, needed to backfill`);
  for (const u of unmetNeeds(ns.needs, def, driver)) problems.push(`${at}.to: backend "${m.to}" (${spec.type}): ${u}`);
  if (problems.length) return undefined;
  const { type, ...options } = spec;
  return {
    settings: {
      slot: slot.slot,
      from: slot.instance,
      to: m.to,
      backfillRps: m.backfill_rps,
      shadowReadPct: m.shadow_read_pct,
      cutoverSteps: [...m.cutover_steps],
      rollbackOn: { errorRate: m.rollback_on.error_rate, p99Ms: m.rollback_on.p99_ms, diffPct: m.rollback_on.diff_pct },
      windowSeconds: m.window_seconds,
      dryRun: m.dry_run,
      writeBehindMaxKeys: m.write_behind_max_keys,
      writeBehindMaxBytes: m.write_behind_max_bytes,
    },
    to: { slot: slot.slot, primitive: slot.primitive, instance: m.to, type, options, interfaces: driver.interfaces, inProcess: driver.inProcess === true, auto: false },
    state: null,
  };
}

async function chooseAuto(
  ns: NamespaceConfig,
  def: SlotDef,
  instances: Instances,
  previous: string | undefined,
): Promise<{ name?: string; lines: string[] }> {
  const lines: string[] = [];
  const fits: { name: string; type: string }[] = [];
  const rejected: string[] = [];
  for (const [name, spec] of [...instances].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!isBackendType(spec.type)) continue;
    const driver: BackendDriver<any> = await loadDriver(spec.type);
    const reasons = def.requires.filter((i) => !driver.interfaces.includes(i)).map((i) => `lacks ${i}`);
    reasons.push(...unmetNeeds(ns.needs, def, driver));
    if (reasons.length) rejected.push(`rejected ${describeInstance(name, spec.type)}: ${reasons.join(", ")}`);
    else fits.push({ name, type: spec.type });
  }
  // Sticky: the instance chosen before, while it still fits; else the slot's recommended types first, then by name.
  fits.sort((a, b) => recommendedRank(def, a.type) - recommendedRank(def, b.type) || (a.name < b.name ? -1 : 1));
  const chosen = fits.find((f) => f.name === previous) ?? fits[0];
  const needs = ns.needs ? Object.entries(ns.needs).map(([k, v]) => `${k}: ${v}`).join(", ") : "none";
  if (chosen) {
    const why = chosen.name === previous ? "chosen before and still satisfies every need" : fits.length > 1 ? `satisfies every need; preferred over ${fits.filter((f) => f !== chosen).map((f) => `"${f.name}"`).join(", ")} (recommended for ${def.name}: ${def.recommended.join(", ")})` : "the only one that satisfies every need";
    lines.push(`slot ${def.name}: chose ${describeInstance(chosen.name, chosen.type)} for needs {${needs}}: ${why}`);
  } else lines.push(`slot ${def.name}: no declared instance satisfies needs {${needs}}`);
  lines.push(...rejected);
  return { name: chosen?.name, lines };
}

/** The automatic choices of a resolved namespace (stored with it so that they stay put). */
export function choicesOf(r: ResolvedNamespace): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of r.slots) if (s.auto) out[s.slot] = s.instance;
  return out;
}
