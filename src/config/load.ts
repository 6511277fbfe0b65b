/**
 * Loading and validating configuration: prism.yaml files, single namespaces
 * sent to Admin.ApplyNamespace, and the built-in default.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { isBackendType, backendTypes, loadDriver, loadOptionsSchema } from "../backends/registry.js";
import {
  configSchema,
  formatPath,
  namespaceSchema,
  type NamespaceConfig,
  type PrismConfig,
} from "./schema.js";
import { REQUIRED_INTERFACES } from "../core/interfaces.js";
import { ConfigError } from "./errors.js";

export { ConfigError } from "./errors.js";

/** `${NAME}` and `${NAME:-fallback}` inside string values. */
function substituteEnv(value: unknown, path: PropertyKey[], problems: string[], env: NodeJS.ProcessEnv): unknown {
  if (typeof value === "string") {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => {
      const v = env[name];
      if (v !== undefined) return v;
      if (fallback !== undefined) return fallback;
      problems.push(`${formatPath(path)}: environment variable ${name} is not set`);
      return "";
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, [...path, i], problems, env));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, [...path, k], problems, env);
    return out;
  }
  return value;
}

function zodProblems(issues: readonly { path: readonly PropertyKey[]; message: string }[], prefix: PropertyKey[] = []) {
  return issues.map((i) => `${formatPath([...prefix, ...i.path])}: ${i.message}`);
}

/**
 * Checks a namespace's backend type, its options and the interfaces its
 * primitives need; returns problems. On success `ns.backend` holds the parsed
 * options (defaults applied), which is what the router passes to the driver.
 */
export async function checkNamespace(ns: NamespaceConfig, path: PropertyKey[]): Promise<string[]> {
  const problems: string[] = [];
  const { type, ...options } = ns.backend;
  if (!isBackendType(type)) {
    problems.push(`${formatPath([...path, "backend", "type"])}: unknown backend "${type}" (known: ${backendTypes().join(", ")})`);
    return problems;
  }
  const [driver, schema] = await Promise.all([loadDriver(type), loadOptionsSchema(type)]);
  const parsed = schema.safeParse(options);
  if (!parsed.success) problems.push(...zodProblems(parsed.error.issues, [...path, "backend"]));
  else ns.backend = { type, ...(parsed.data as Record<string, unknown>) };
  for (const primitive of ns.primitives) {
    for (const iface of REQUIRED_INTERFACES[primitive]) {
      if (!driver.interfaces.includes(iface)) {
        problems.push(
          `${formatPath([...path, "primitives"])}: backend "${type}" does not implement ${iface}, which ${primitive} needs`,
        );
      }
    }
  }
  return problems;
}

/** Parses and validates a whole configuration document (already-parsed YAML). */
export async function validateConfig(raw: unknown, source: string, env = process.env): Promise<PrismConfig> {
  const problems: string[] = [];
  const substituted = substituteEnv(raw ?? {}, [], problems, env);
  const parsed = configSchema.safeParse(substituted);
  if (!parsed.success) throw new ConfigError([...problems, ...zodProblems(parsed.error.issues)], source);
  const cfg = parsed.data;
  const seen = new Map<string, number>();
  for (const [i, ns] of cfg.namespaces.entries()) {
    if (seen.has(ns.name)) problems.push(`namespaces[${i}].name: duplicate namespace "${ns.name}" (also namespaces[${seen.get(ns.name)}])`);
    seen.set(ns.name, i);
    problems.push(...(await checkNamespace(ns, ["namespaces", i])));
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

/** One namespace as YAML or JSON text (the shape of a `namespaces:` entry). */
export async function parseNamespaceText(text: string, env = process.env): Promise<NamespaceConfig> {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError([`invalid YAML/JSON: ${(e as Error).message}`], "namespace");
  }
  const problems: string[] = [];
  const substituted = substituteEnv(raw, [], problems, env);
  const parsed = namespaceSchema.safeParse(substituted);
  if (!parsed.success) throw new ConfigError([...problems, ...zodProblems(parsed.error.issues)], "namespace");
  problems.push(...(await checkNamespace(parsed.data, [])));
  if (problems.length) throw new ConfigError(problems, "namespace");
  return parsed.data;
}

/** With no config file: one namespace, `default`, on memstore, serving every primitive. */
export function defaultConfig(): PrismConfig {
  return configSchema.parse({
    namespaces: [{ name: "default", backend: { type: "memstore" } }],
  });
}
