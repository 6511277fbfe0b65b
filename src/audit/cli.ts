/** `prism audit verify FILE…` (src/audit/verify.ts). */
import { AUDIT_USAGE, UsageError } from "../cli/usage.js";
import { describe, verifyFiles } from "./verify.js";



export async function auditCommand(args: string[]): Promise<number> {
  const [sub, ...files] = args;
  if (sub !== "verify" || files.length === 0) throw new UsageError(AUDIT_USAGE);
  let r;
  try {
    r = await verifyFiles(files);
  } catch (e) {
    process.stderr.write(`prism audit verify: ${(e as Error).message}\n`);
    return 2;
  }
  const { text, code } = describe(r);
  (code === 0 ? process.stdout : process.stderr).write(`${text}\n`);
  return code;
}
