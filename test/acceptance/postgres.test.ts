import { randomBytes } from "node:crypto";
import { after } from "node:test";
import pg from "pg";
import { runAcceptance } from "./harness.js";

const url = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
// One schema per run: parallel runs on the shared database never meet; dropped at the end.
const schema = `prism_acc_${process.pid}_${randomBytes(3).toString("hex")}`;

async function reachable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  c.on("error", () => {});
  try {
    await c.connect();
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}

after(async () => {
  if (!(await reachable())) return;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
});

runAcceptance({
  name: "postgres",
  backend: () => ({ type: "postgres", url, schema, pool_max: 5 }),
  clock: "real",
  skipReason: async () => ((await reachable()) ? undefined : `no PostgreSQL at ${url}`),
  limits: { visibility_timeout_seconds: 2, stream_claim_timeout_seconds: 2 },
});
