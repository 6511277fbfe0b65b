import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { after } from "node:test";
import { runAcceptance } from "./harness.js";
import { cleanupPrefix } from "../unit/nats-cleanup.js";

const host = "127.0.0.1";
const port = 4222;
const servers = process.env.NATS_URL ?? `nats://${host}:${port}`;
// One prefix per run: parallel runs on the shared NATS never meet, and the run's streams are removed after.
const prefix = `pacc-${process.pid}-${randomBytes(3).toString("hex")}`;

function reachable(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

after(async () => {
  if (await reachable()) await cleanupPrefix(servers, prefix);
});

runAcceptance({
  name: "nats",
  backend: () => ({ type: "nats", servers, prefix }),
  clock: "real",
  skipReason: async () => ((await reachable()) ? undefined : `no NATS at ${servers}`),
  limits: { visibility_timeout_seconds: 2, stream_claim_timeout_seconds: 2 },
});
