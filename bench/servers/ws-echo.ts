/** Baseline: the bare `ws` binary echo (node:http + ws + bufferutil). Prints `listening port=P`. */
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening port=${(server.address() as { port: number }).port}\n`);
});
