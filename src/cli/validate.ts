/** `prism validate FILE`: "FILE: ok (N namespaces)" and exit 0, or the problems and exit 2. */
import { loadConfigFile } from "../config/load.js";
import { reportConfigError } from "./config.js";
import { UsageError, VALIDATE_USAGE } from "./usage.js";

export async function validate(argv: string[]): Promise<number> {
  if (argv.length !== 1 || argv[0]!.startsWith("-")) throw new UsageError(VALIDATE_USAGE);
  const file = argv[0]!;
  try {
    const cfg = await loadConfigFile(file);
    const n = cfg.namespaces.length;
    process.stdout.write(`${file}: ok (${n} namespace${n === 1 ? "" : "s"})\n`);
    return 0;
  } catch (e) {
    return reportConfigError(e);
  }
}
