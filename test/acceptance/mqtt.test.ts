/**
 * The acceptance suites against the real Mosquitto on 127.0.0.1:1883 (or
 * PRISM_TEST_MQTT_URL). One topic prefix per run: parallel runs never meet.
 * PubSub keeps nothing on the broker, so there is nothing to clean up.
 */
import { randomBytes } from "node:crypto";
import { connect as tcp } from "node:net";
import { runAcceptance } from "./harness.js";

const url = process.env.PRISM_TEST_MQTT_URL ?? "mqtt://127.0.0.1:1883";
const prefix = `prism-acc-${process.pid}-${randomBytes(3).toString("hex")}`;

function reachable(): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = tcp(Number(u.port || 1883), u.hostname);
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

runAcceptance({
  name: "mqtt",
  backend: () => ({ type: "mqtt", url, prefix }),
  clock: "real",
  skipReason: async () => ((await reachable()) ? undefined : `no MQTT broker at ${url}`),
});
