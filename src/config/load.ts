/**
 * Loading and validating configuration: prism.yaml files, single namespaces
 * sent to Admin.ApplyNamespace, and the built-in default.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { resolve as resolvePath } from "node:path";
import { isBackendType, backendTypes, loadFileOptions, loadFileUrlParams, loadOptionsSchema } from "../backends/registry.js";
import { confinePath, type PathPolicy } from "./paths.js";
import { parsePatternOptions } from "./pattern-options.js";
import {
  configSchema,
  formatPath,
  INSTANCE_NAME,
  namespaceSchema,
  type BackendRef,
  type BackendSpec,
  type NamespaceConfig,
  type PrismConfig,
} from "./schema.js";
import { PATTERNS, patternByName } from "../patterns/registry.js";
import { resolveNamespace, type Instances, type ResolvedNamespace } from "./resolve.js";
import { ConfigError } from "./errors.js";
import { adminFilePolicy, substitute, type FileRefPolicy } from "./secrets.js";

export { ConfigError } from "./errors.js";

/** `${NAME}`, `${NAME:-fallback}` and `${file:/path}` inside string values (src/config/secrets.ts). */
function substituteEnv(value: unknown, path: PropertyKey[], problems: string[], env: NodeJS.ProcessEnv, files: FileRefPolicy = "refuse"): unknown {
  return substitute(value, path, problems, env, files);
}

function zodProblems(issues: readonly { path: readonly PropertyKey[]; message: string }[], prefix: PropertyKey[] = []) {
  return issues.map((i) => `${formatPath([...prefix, ...i.path])}: ${i.message}`);
}

/** Validates an inline backend or a backend instance: known type, options through the driver's schema (defaults applied). */
async function checkBackendSpec(spec: BackendSpec, path: PropertyKey[], problems: string[], paths: PathPolicy | undefined): Promise<BackendSpec | undefined> {
  const { type, ...options } = spec;
  if (typeof type !== "string" || !isBackendType(type)) {
    problems.push(`${formatPath([...path, "type"])}: unknown backend "${String(type)}" (known: ${backendTypes().join(", ")})`);
    return undefined;
  }
  const schema = await loadOptionsSchema(type);
  const parsed = schema.safeParse(options);
  if (!parsed.success) {
    problems.push(...zodProblems(parsed.error.issues, path));
    return undefined;
  }
  const out: BackendSpec = { type, ...(parsed.data as Record<string, unknown>) };
  if (paths) {
    for (const opt of await loadFileOptions(type)) {
      const v = out[opt];
      if (typeof v !== "string") continue;
      const c = confinePath(v, formatPath([...path, opt]), paths);
      if (c.problem !== undefined) problems.push(c.problem);
      else out[opt] = c.path;
    }
    for (const [opt, params] of Object.entries(await loadFileUrlParams(type))) {
      const v = out[opt];
      if (typeof v !== "string" || !v.includes("?")) continue;
      let url: URL;
      try {
        url = new URL(v);
      } catch {
        continue; // not a URL (the driver reports it)
      }
      let changed = false;
      for (const param of params) {
        const file = url.searchParams.get(param);
        if (file === null) continue;
        const c = confinePath(file, `${formatPath([...path, opt])} (${param})`, paths);
        if (c.problem !== undefined) problems.push(c.problem);
        else if (c.path !== file) {
          url.searchParams.set(param, c.path);
          changed = true;
        }
      }
      if (changed) out[opt] = url.toString();
    }
  }
  return out;
}

/** A `backend:` or slot value: an instance name, { auto: true }, or an inline backend (validated and defaulted in place). */
async function checkRef(v: unknown, path: PropertyKey[], problems: string[], paths: PathPolicy | undefined): Promise<BackendRef | undefined> {
  if (typeof v === "string") {
    if (!INSTANCE_NAME.test(v)) problems.push(`${formatPath(path)}: "${v}" is not a backend instance name (1-64 of A-Z a-z 0-9 _ . -)`);
    return v;
  }
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if ("auto" in o) {
      if (o.auto !== true || Object.keys(o).length !== 1) problems.push(`${formatPath(path)}: automatic choice is exactly { auto: true }`);
      return { auto: true };
    }
    if ("type" in o) return checkBackendSpec(o as BackendSpec, path, problems, paths);
  }
  problems.push(`${formatPath(path)}: must be a backend instance name (from backends:), { auto: true } or { type: <backend>, ...options }`);
  return undefined;
}

/**
 * Checks a namespace's shape (backend / slots forms, inline backends' options)
 * and derives `primitives`; returns problems. Which instances serve its slots,
 * their interfaces and its needs are checked by resolveNamespace
 * (src/config/resolve.ts), which needs the declared backend instances.
 */
export async function checkNamespace(ns: NamespaceConfig, path: PropertyKey[], paths?: PathPolicy): Promise<string[]> {
  const problems: string[] = [];
  if (ns.backend !== undefined) ns.backend = await checkRef(ns.backend, [...path, "backend"], problems, paths);
  if (ns.slots) for (const [k, v] of Object.entries(ns.slots)) {
    const r = await checkRef(v, [...path, "slots", k], problems, paths);
    if (r !== undefined) ns.slots[k] = r;
  }
  if (ns.pattern !== undefined) {
    const p = patternByName(ns.pattern);
    if (!p) problems.push(`${formatPath([...path, "pattern"])}: unknown pattern "${ns.pattern}" (known: ${PATTERNS.map((x) => x.name).join(", ")})`);
    else {
      const serves = p.servesFor?.(ns.options ?? {}) ?? p.serves;
      if (ns.primitives.join() !== serves.join()) problems.push(`${formatPath([...path, "primitives"])}: pattern ${p.name} serves ${serves.join(", ")}; leave primitives out`);
    }
  }
  if (ns.backend === undefined && ns.slots === undefined) problems.push(`${formatPath(path)}: needs a backend (or slots)`);
  const opts = parsePatternOptions(ns.pattern !== undefined && patternByName(ns.pattern) ? ns.pattern : undefined, ns.options);
  if (!opts.ok) problems.push(...zodProblems(opts.issues, [...path, "options"]));
  else if (opts.options !== undefined) ns.options = opts.options;
  return problems;
}

/** checkNamespace, then the slots against the declared instances (interfaces, needs, automatic choice). */
export async function checkAndResolve(ns: NamespaceConfig, path: PropertyKey[], instances: Instances, paths?: PathPolicy): Promise<{ problems: string[]; resolved?: ResolvedNamespace }> {
  const problems = await checkNamespace(ns, path, paths);
  if (problems.length) return { problems };
  return resolveNamespace(ns, path, instances);
}

/** Parses and validates a whole configuration document (already-parsed YAML). */
export async function validateConfig(raw: unknown, source: string, env = process.env): Promise<PrismConfig> {
  const problems: string[] = [];
  const substituted = substituteEnv(raw ?? {}, [], problems, env, "any");
  const parsed = configSchema.safeParse(substituted);
  if (!parsed.success) throw new ConfigError([...problems, ...zodProblems(parsed.error.issues)], source);
  const cfg = parsed.data as unknown as PrismConfig;
  // $PRISM_DATA_DIR is the default data directory; prism.yaml's server.data_dir wins over it.
  const dataDirSet = (substituted as { server?: { data_dir?: unknown } } | null)?.server?.data_dir !== undefined;
  cfg.server.data_dir = resolvePath(!dataDirSet && env.PRISM_DATA_DIR ? env.PRISM_DATA_DIR : cfg.server.data_dir);
  cfg.server.allowed_paths = cfg.server.allowed_paths.map((p) => resolvePath(p));
  const paths = pathPolicyOf(cfg);
  // server.tls files: confined like every file option (data_dir or allowed_paths), made absolute.
  const tls = cfg.server.tls as Record<string, unknown> | undefined;
  if (tls) for (const f of ["cert", "key", "client_ca"]) {
    const v = tls[f];
    if (typeof v !== "string") continue;
    const c = confinePath(v, `server.tls.${f}`, paths);
    if (c.problem !== undefined) problems.push(c.problem);
    else tls[f] = c.path;
  }
  for (const [name, spec] of Object.entries(cfg.backends)) {
    const checked = await checkBackendSpec(spec, ["backends", name], problems, paths);
    if (checked) cfg.backends[name] = checked;
  }
  const instances: Instances = new Map(Object.entries(cfg.backends));
  const seen = new Map<string, number>();
  for (const [i, ns] of cfg.namespaces.entries()) {
    if (seen.has(ns.name)) problems.push(`namespaces[${i}].name: duplicate namespace "${ns.name}" (also namespaces[${seen.get(ns.name)}])`);
    seen.set(ns.name, i);
    problems.push(...(await checkAndResolve(ns, ["namespaces", i], instances, paths)).problems);
    if (ns.pii === "encrypt" && cfg.security?.kek === undefined) problems.push(`namespaces[${i}].pii: encrypt needs a key-encryption key: security.kek: { id, file | env }`);
  }
  if (problems.length) throw new ConfigError(problems, source);
  return cfg;
}

export async function loadConfigFile(file: string, env = process.env): Promise<PrismConfig> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError([`cannot read: ${(e as Error).message}`], file);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError([`invalid YAML: ${(e as Error).message}`], file);
  }
  return validateConfig(raw, file, env);
}

/** One namespace as YAML or JSON text (the shape of a `namespaces:` entry). Only its shape: see parseNamespaceEntry. */
export async function parseNamespaceText(text: string, env = process.env, paths?: PathPolicy): Promise<NamespaceConfig> {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError([`invalid YAML/JSON: ${(e as Error).message}`], "namespace");
  }
  return parseNamespaceEntry(raw, env, "namespace", paths);
}

/** One namespace entry as a parsed object (Admin.ApplyNamespace's structured form): shape, inline backends, primitives. */
export async function parseNamespaceEntry(raw: unknown, env = process.env, source = "namespace", paths?: PathPolicy): Promise<NamespaceConfig> {
  const problems: string[] = [];
  const substituted = substituteEnv(raw, [], problems, env, adminFilePolicy(paths));
  const parsed = namespaceSchema.safeParse(substituted);
  if (!parsed.success) throw new ConfigError([...problems, ...zodProblems(parsed.error.issues)], source);
  const ns = parsed.data as unknown as NamespaceConfig;
  problems.push(...(await checkNamespace(ns, [], paths)));
  if (problems.length) throw new ConfigError(problems, source);
  return ns;
}

/** One backend instance (Admin.ApplyBackend): its type and options. */
export async function parseBackendEntry(name: string, raw: unknown, env = process.env, paths?: PathPolicy): Promise<BackendSpec> {
  const problems: string[] = [];
  if (!INSTANCE_NAME.test(name)) problems.push(`name: "${name}" is not a backend instance name (1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit)`);
  const substituted = substituteEnv(raw, [], problems, env, adminFilePolicy(paths));
  if (!substituted || typeof substituted !== "object" || Array.isArray(substituted)) problems.push(`backend: must be an object { type, ...options }`);
  const spec = problems.length ? undefined : await checkBackendSpec(substituted as BackendSpec, [], problems, paths);
  if (!spec || problems.length) throw new ConfigError(problems, `backend ${name}`);
  return spec;
}

/** The file-option policy of a validated config (data_dir and allowed_paths already absolute). */
export function pathPolicyOf(cfg: Pick<PrismConfig, "server">): PathPolicy {
  return { dataDir: cfg.server.data_dir, allowedPaths: cfg.server.allowed_paths };
}

/** With no config file: one namespace, `default`, on memstore, serving every primitive. */
export function defaultConfig(): PrismConfig {
  const cfg = configSchema.parse({
    namespaces: [{ name: "default", backend: { type: "memstore" } }],
  }) as unknown as PrismConfig;
  cfg.server.data_dir = resolvePath(process.env.PRISM_DATA_DIR || cfg.server.data_dir);
  return cfg;
}
