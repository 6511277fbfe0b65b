/** `prism kv get KEY | set KEY VALUE [--ttl S] | del KEY` and `prism ns list`, through @prism/client. */
import { connectClient, describeError, parseClientArgs, type CliClient } from "./client.js";
import { KV_USAGE, NS_USAGE, UsageError } from "./usage.js";

async function withClient<T>(addr: string | undefined, fn: (c: CliClient) => Promise<T>): Promise<T> {
  const client = await connectClient(addr);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

export async function kvCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseClientArgs(argv, { ttl: { type: "string" } });
  const [op, key, value] = positionals;
  const ns = values.ns as string;
  const argc = op === "set" ? 3 : 2;
  if (!op || !key || positionals.length !== argc || !["get", "set", "del", "delete"].includes(op)) throw new UsageError(KV_USAGE);
  let ttlSeconds: number | undefined;
  if (values.ttl !== undefined) {
    ttlSeconds = Number(values.ttl);
    if (op !== "set" || !Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new UsageError(`--ttl: a positive whole number of seconds, with set only`);
  }
  try {
    return await withClient(values.addr as string | undefined, async (c) => {
      const kv = c.kv(ns);
      if (op === "get") {
        const v = await kv.get(key);
        if (v === null) {
          process.stderr.write(`${ns}/${key}: not found\n`);
          return 1;
        }
        process.stdout.write(v);
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

export async function nsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseClientArgs(argv, {});
  if (positionals.length !== 1 || positionals[0] !== "list") throw new UsageError(NS_USAGE);
  try {
    return await withClient(values.addr as string | undefined, async (c) => {
      const list = await c.admin.listNamespaces();
      const rows = [["NAME", "PRIMITIVES", "BACKEND"], ...list.map((n) => [n.name, n.primitives.join(","), n.backendType])];
      const w0 = Math.max(...rows.map((r) => r[0]!.length));
      const w1 = Math.max(...rows.map((r) => r[1]!.length));
      process.stdout.write(rows.map((r) => `${r[0]!.padEnd(w0)}  ${r[1]!.padEnd(w1)}  ${r[2]}`).join("\n") + "\n");
      return 0;
    });
  } catch (e) {
    process.stderr.write(`prism ns list: ${describeError(e)}\n`);
    return 1;
  }
}
