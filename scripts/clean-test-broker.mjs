// Deletes the RabbitMQ queues and exchanges that earlier test runs left on the local broker
// (a run killed by a timeout never reaches its own cleanup). Only names made by this project's
// tests are touched: prism-acc-*, prism-unit-*, prism-tp-*, acc-mcr-*, acc-outbox-*.
// Why it matters: every test queue is a quorum queue (a Raft group); a few hundred of them make
// the broker's restart re-elect leaders for minutes, during which it accepts TCP but never
// answers AMQP, and every RabbitMQ test times out.
// Usage: node scripts/clean-test-broker.mjs [amqp-url]   (needs rabbitmqctl to list names)
import { execFileSync } from "node:child_process";
import { connect } from "amqplib";

const TEST_NAME = /^(prism-(acc|unit|tp)-|acc-(mcr|outbox)-)/;
const url = process.argv[2] ?? process.env.RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672";

function list(what) {
  const out = execFileSync("rabbitmqctl", [`list_${what}`, "name", "-q", "--no-table-headers"], { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "ignore"] });
  return out.split("\n").map((l) => l.trim()).filter((n) => TEST_NAME.test(n));
}

let queues, exchanges;
try {
  queues = list("queues");
  exchanges = list("exchanges");
} catch (e) {
  console.log(`clean-test-broker: rabbitmqctl unavailable (${e.code ?? e.message}); nothing cleaned`);
  process.exit(0);
}
if (!queues.length && !exchanges.length) {
  console.log("clean-test-broker: no leftover test queues");
  process.exit(0);
}
const conn = await connect(url, { timeout: 10_000 });
const ch = await conn.createChannel();
for (const q of queues) await ch.deleteQueue(q);
for (const x of exchanges) await ch.deleteExchange(x);
await ch.close();
await conn.close();
console.log(`clean-test-broker: deleted ${queues.length} queues and ${exchanges.length} exchanges left by earlier test runs`);
