import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runAcceptance } from "./harness.js";

const path = join(tmpdir(), `prism-acceptance-${process.pid}-${Date.now()}.db`);
process.on("exit", () => ["", "-wal", "-shm", "-journal"].forEach((s) => rmSync(path + s, { force: true })));

runAcceptance({ name: "sqlite", backend: () => ({ type: "sqlite", path }), clock: "manual" });
