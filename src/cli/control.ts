/**
 * The control-plane commands through @prism/client: `prism ns list | get |
 * delete | diff`, `prism backends [--types]`, `prism patterns`
 * (`prism apply`: src/cli/apply.ts).
 */
import { describeError, parseAdminArgs, table, withClient, type NamespaceInfo } from "./client.js";
import { BACKENDS_USAGE, NS_USAGE, PATTERNS_USAGE, UsageError } from "./usage.js";

const list = (xs: readonly string[]) => (xs.length ? xs.join(", ") : "-");

/** `prism ns get`: the namespace as readable text. */
export function formatNamespace(n: NamespaceInfo): string {
  const out = [
    `name:        ${n.name}`,
    `pattern:     ${n.pattern || "- (primitives, one slot each)"}`,
    `primitives:  ${list(n.primitives)}`,
    `backend:     ${n.backendType}`,
    `interfaces:  ${list(n.interfaces)}`,
    `revision:    ${n.revision}`,
    `slots:`,
    ...table([["SLOT", "INSTANCE", "TYPE", "AUTO"], ...n.slots.map((s) => [s.slot, s.instance || "(inline)", s.backendType, s.auto ? "yes" : "no"])])
      .trimEnd()
      .split("\n")
      .map((l) => `  ${l}`),
    `explanation:`,
    ...(n.explanation.length ? n.explanation.map((l) => `  ${l}`) : ["  -"]),
    `config:`,
  ];
  let config: string;
  try {
    config = JSON.stringify(JSON.parse(n.configJson), null, 2);
  } catch {
    config = n.configJson;
  }
  out.push(...config.split("\n").map((l) => `  ${l}`));
  return out.join("\n") + "\n";
}

export async function nsCommand(argv: string[]): Promise<number> {
  if (argv[0] === "diff") return (await import("./apply.js")).nsDiffCommand(argv.slice(1));
  const { values, positionals } = parseAdminArgs(argv, { wide: { type: "boolean", short: "w" } });
  const [op, name] = positionals;
  const ok =
    (op === "list" && positionals.length === 1) ||
    ((op === "get" || op === "delete" || op === "del") && positionals.length === 2 && !!name);
  if (!ok || (values.wide && op !== "list")) throw new UsageError(NS_USAGE);
  try {
    return await withClient(values.addr as string | undefined, async (c) => {
      if (op === "list") {
        const all = await c.admin.listNamespaces();
        const head = ["NAME", "PRIMITIVES", "BACKEND", ...(values.wide ? ["PATTERN", "SLOTS", "REVISION"] : [])];
        const rows = all.map((n) => [
          n.name,
          n.primitives.join(","),
          n.backendType,
          ...(values.wide ? [n.pattern || "-", n.slots.map((s) => `${s.slot}=${s.instance || s.backendType}${s.auto ? "(auto)" : ""}`).join(",") || "-", String(n.revision)] : []),
        ]);
        process.stdout.write(table([head, ...rows]));
        return 0;
      }
      if (op === "get") {
        process.stdout.write(formatNamespace(await c.admin.getNamespace(name!)));
        return 0;
      }
      if (!(await c.admin.deleteNamespace(name!))) {
        process.stderr.write(`prism ns delete: namespace ${name}: not found\n`);
        return 1;
      }
      process.stdout.write(`deleted namespace ${name}\n`);
      return 0;
    });
  } catch (e) {
    process.stderr.write(`prism ns ${op}: ${describeError(e)}\n`);
    return 1;
  }
}

/** `prism backends`: the named instances; `--types`: the driver types and their interfaces. */
export async function backendsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminArgs(argv, { types: { type: "boolean" } });
  if (positionals.length) throw new UsageError(BACKENDS_USAGE);
  try {
    return await withClient(values.addr as string | undefined, async (c) => {
      if (values.types) {
        const types = await c.admin.listBackends();
        process.stdout.write(table([["TYPE", "INTERFACES"], ...types.map((t) => [t.type, t.interfaces.join(",")])]));
        return 0;
      }
      const instances = await c.admin.listBackendInstances();
      process.stdout.write(table([["NAME", "TYPE", "NAMESPACES", "REVISION"], ...instances.map((b) => [b.name, b.type, b.namespaces.join(",") || "-", String(b.revision)])]));
      return 0;
    });
  } catch (e) {
    process.stderr.write(`prism backends: ${describeError(e)}\n`);
    return 1;
  }
}

/** `prism patterns`: each pattern, what it serves, and each slot's interfaces. */
export async function patternsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminArgs(argv, {});
  if (positionals.length) throw new UsageError(PATTERNS_USAGE);
  try {
    return await withClient(values.addr as string | undefined, async (c) => {
      const out: string[] = [];
      for (const p of await c.admin.listPatterns()) {
        out.push(`${p.name}: ${p.description}`, `  serves: ${list(p.serves)}`);
        for (const s of p.slots) {
          out.push(`  slot ${s.name}: ${s.description}`, `    requires:    ${list(s.requires)}`, `    optional:    ${list(s.optional)}`, `    recommended: ${list(s.recommended)}`);
        }
      }
      process.stdout.write(out.join("\n") + "\n");
      return 0;
    });
  } catch (e) {
    process.stderr.write(`prism patterns: ${describeError(e)}\n`);
    return 1;
  }
}
