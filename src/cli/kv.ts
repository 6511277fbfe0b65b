/** `prism kv get KEY [--raw] | set KEY VALUE [--ttl S] | del KEY`, through @prism/client (`prism ns`: src/cli/control.ts). */
import { describeError, parseClientArgs, withClient } from "./client.js";
import { ADDR_HELP, KV_USAGE, UsageError } from "./usage.js";

export async function kvCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseClientArgs(argv, { ttl: { type: "string" }, raw: { type: "boolean" } });
  const [op, key, value] = positionals;
  const ns = values.ns as string;
  const argc = op === "set" ? 3 : 2;
  if (!op || !key || positionals.length !== argc || !["get", "set", "del", "delete"].includes(op)) throw new UsageError(`${KV_USAGE}\n${ADDR_HELP}`);
  let ttlSeconds: number | undefined;
  if (values.ttl !== undefined) {
    ttlSeconds = Number(values.ttl);
    if (op !== "set" || !Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new UsageError(`--ttl: a positive whole number of seconds, with set only`);
  }
  if (values.raw && op !== "get") throw new UsageError(`--raw: with get only`);
  try {
    return await withClient(values.addr as string | undefined, async (c) => {
      const kv = c.kv(ns);
      if (op === "get") {
        const v = await kv.get(key);
        if (v === null) {
          process.stderr.write(`${ns}/${key}: not found\n`);
          return 1;
        }
        // A line for the shell (prompts, `$(…)` strips it); --raw: the stored bytes exactly.
        process.stdout.write(v);
        if (!values.raw) process.stdout.write("\n");
        return 0;
      }
      if (op === "set") {
        await kv.set(key, Buffer.from(value!, "utf8"), ttlSeconds !== undefined ? { ttl: ttlSeconds } : undefined);
        return 0;
      }
      const deleted = await kv.delete(key);
      if (deleted === false) {
        process.stderr.write(`${ns}/${key}: not found\n`);
        return 1;
      }
      return 0;
    });
  } catch (e) {
    process.stderr.write(`prism kv ${op}: ${describeError(e)}\n`);
    return 1;
  }
}
