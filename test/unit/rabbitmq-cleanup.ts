/**
 * Test cleanup: deletes the queues and exchanges whose names start with a
 * run's prefix. AMQP cannot list queues, so names come from rabbitmqctl when
 * it is on PATH; without it the run leaves them behind and says so.
 */
import { execFileSync } from "node:child_process";
import { connect } from "amqplib";

function list(what: "queues" | "exchanges", prefix: string): string[] | null {
  try {
    const out = execFileSync("rabbitmqctl", [`list_${what}`, "name", "-q", "--no-table-headers"], { encoding: "utf8", timeout: 15_000, stdio: ["ignore", "pipe", "ignore"] });
    return out.split("\n").map((l) => l.trim()).filter((n) => n.startsWith(`${prefix}.`));
  } catch {
    return null;
  }
}

export async function deletePrefixed(url: string, prefix: string): Promise<void> {
  const queues = list("queues", prefix);
  const exchanges = list("exchanges", prefix);
  if (queues === null || exchanges === null) {
    console.log(`# rabbitmqctl unavailable: queues/exchanges named ${prefix}.* were left on the broker`);
    return;
  }
  if (!queues.length && !exchanges.length) return;
  const conn = await connect(url).catch(() => null);
  if (!conn) return;
  try {
    const ch = await conn.createChannel();
    for (const q of queues) await ch.deleteQueue(q);
    for (const e of exchanges) await ch.deleteExchange(e);
    await ch.close();
  } finally {
    await conn.close().catch(() => {});
  }
}
