import { runAcceptance } from "./harness.js";

runAcceptance({ name: "memstore", backend: () => ({ type: "memstore" }), clock: "manual" });
