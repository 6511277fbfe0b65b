/**
 * Baseline: the bare `ws` binary echo with Prism's per-turn cork (./cork.ts):
 * the same batching of writes as Prism's WebSocket ingress. Prints `listening port=P`.
 */
import { createServer } from "node:http";
import { WebSocketServer } from "ws";
import { corkedSend } from "./cork.js";

const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => corkedSend(ws, data, isBinary));
});
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening port=${(server.address() as { port: number }).port}\n`);
});
