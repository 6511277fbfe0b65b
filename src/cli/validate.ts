/**
 * `prism validate FILE`: "FILE: ok (N namespaces)" and exit 0, or the problems and exit 2.
 * After the ok line, for each namespace with an automatic choice (`{ auto: true }`)
 * or `needs:`, why each slot gets its backend (and every instance rejected, with the reasons).
 */
import { loadConfigFile } from "../config/load.js";
import { backendRefOf, resolveNamespace } from "../config/resolve.js";
import type { NamespaceConfig } from "../config/schema.js";
import { reportConfigError } from "./config.js";
import { UsageError, VALIDATE_USAGE } from "./usage.js";

function explained(ns: NamespaceConfig): boolean {
  return ns.needs !== undefined || [ns.backend, ...Object.values(ns.slots ?? {})].some((v) => backendRefOf(v)?.kind === "auto");
}

export async function validate(argv: string[]): Promise<number> {
  if (argv.length !== 1 || argv[0]!.startsWith("-")) throw new UsageError(VALIDATE_USAGE);
  const file = argv[0]!;
  try {
    const cfg = await loadConfigFile(file);
    const n = cfg.namespaces.length;
    const out = [`${file}: ok (${n} namespace${n === 1 ? "" : "s"})`];
    const instances = new Map(Object.entries(cfg.backends));
    for (const ns of cfg.namespaces) {
      if (!explained(ns)) continue;
      const { resolved, problems } = await resolveNamespace(ns, [], instances);
      out.push(`namespace ${ns.name}:`, ...(resolved?.explanation ?? problems).map((l) => `  ${l}`));
    }
    process.stdout.write(out.join("\n") + "\n");
    return 0;
  } catch (e) {
    return reportConfigError(e);
  }
}
