/** `prism audit verify FILE…` (src/audit/verify.ts). */
import { AUDIT_USAGE, UsageError } from "../cli/usage.js";
import { describe, verifyFiles } from "./verify.js";
import { loadChainKey } from "./index.js";

export async function auditCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const files: string[] = [];
  let head: string | false | undefined;
  let keyFile: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === "--head") {
      if (rest[i + 1] === undefined) throw new UsageError(AUDIT_USAGE);
      head = rest[++i]!;
    } else if (a === "--key-file") {
      if (rest[i + 1] === undefined) throw new UsageError(AUDIT_USAGE);
      keyFile = rest[++i]!;
    } else if (a === "--no-head") head = false;
    else if (a.startsWith("--")) throw new UsageError(AUDIT_USAGE);
    else files.push(a);
  }
  if (sub !== "verify" || files.length === 0) throw new UsageError(AUDIT_USAGE);
  let r;
  try {
    const key = keyFile !== undefined ? loadChainKey({ file: keyFile }, process.cwd()) : process.env.PRISM_AUDIT_KEY ? loadChainKey({ env: "PRISM_AUDIT_KEY" }, process.cwd()) : undefined;
    r = await verifyFiles(files, { head, key });
  } catch (e) {
    process.stderr.write(`prism audit verify: ${(e as Error).message}\n`);
    return 2;
  }
  const { text, code } = describe(r);
  (code === 0 ? process.stdout : process.stderr).write(`${text}\n`);
  return code;
}
