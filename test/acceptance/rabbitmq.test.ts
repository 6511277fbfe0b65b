/**
 * The acceptance suites against the real RabbitMQ on 127.0.0.1:5672 (or
 * PRISM_TEST_RABBITMQ_URL). One name prefix per run: parallel runs never
 * share a queue or exchange; the run deletes what it declared.
 */
import { randomBytes } from "node:crypto";
import { connect as tcp } from "node:net";
import { after } from "node:test";
import { runAcceptance } from "./harness.js";
import { deletePrefixed } from "../unit/rabbitmq-cleanup.js";

const url = process.env.PRISM_TEST_RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const prefix = `prism-acc-${process.pid}-${randomBytes(3).toString("hex")}`;

function reachable(): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = tcp(Number(u.port || 5672), u.hostname);
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

after(() => deletePrefixed(url, prefix));

runAcceptance({
  name: "rabbitmq",
  backend: () => ({ type: "rabbitmq", url, prefix }),
  clock: "real",
  skipReason: async () => ((await reachable()) ? undefined : `no RabbitMQ at ${url}`),
  limits: { visibility_timeout_seconds: 2, stream_claim_timeout_seconds: 2 },
});
