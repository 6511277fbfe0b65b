/**
 * Used by the `scale-namespaces` scenario, in a child process of its own (so the
 * bench process never loads the server): loads a prism.yaml as `prism serve`
 * does, starts the gateway in process (config store in memory, ephemeral ports)
 * and prints one JSON line, `{"namespaces":N,"instances":M}`: how many namespaces
 * the router serves and how many distinct backend instances (pools) it opened.
 * The router pools instances by type + options, so this is the check that the
 * scenario's 100 instances really are 100 pools and not one.
 *
 *   node dist/bench/lib/scale-pools.js prism.yaml
 */
import { loadConfigFile } from "../../src/config/load.js";
import { startServer } from "../../src/server.js";

const file = process.argv[2];
if (!file) throw new Error("usage: scale-pools.js <prism.yaml>");
const config = await loadConfigFile(file);
config.server.config_store = { type: "memory" };
const server = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {}, accessLog: false });
try {
  process.stdout.write(JSON.stringify({ namespaces: server.router.size, instances: server.router.instanceCount }) + "\n");
} finally {
  await server.close();
}
