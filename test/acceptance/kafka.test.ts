/**
 * The acceptance suites against a real Kafka cluster named by
 * PRISM_TEST_KAFKA_BROKERS (e.g. "127.0.0.1:9092,127.0.0.1:9093"). No Kafka
 * broker can run on the CI machine, so without it the whole run is reported
 * as skipped, with the reason. One topic prefix per run.
 */
import { randomBytes } from "node:crypto";
import { runAcceptance } from "./harness.js";

const brokers = process.env.PRISM_TEST_KAFKA_BROKERS?.split(",").map((s) => s.trim()).filter(Boolean) ?? [];
const prefix = `prism-acc-${process.pid}-${randomBytes(3).toString("hex")}`;
export const KAFKA_SKIP = "PRISM_TEST_KAFKA_BROKERS is not set: no Kafka broker on this machine";

runAcceptance({
  name: "kafka",
  backend: () => ({ type: "kafka", brokers: brokers.length ? brokers : ["127.0.0.1:9092"], prefix, replication_factor: 1 }),
  clock: "real",
  skipReason: async () => (brokers.length ? undefined : KAFKA_SKIP),
  limits: { visibility_timeout_seconds: 2, stream_claim_timeout_seconds: 2 },
});
