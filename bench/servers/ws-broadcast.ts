/**
 * Baseline for pub/sub fan-out: a bare node:http + ws server that sends every
 * frame it receives to all connected sockets (the sender included: its copy is
 * the publisher's acknowledgement). `--cork` batches each socket's writes per
 * loop turn as Prism does (./cork.ts). Prints `listening port=P`.
 */
import { createServer } from "node:http";
import { WebSocketServer, type WebSocket } from "ws";
import { corkedSend } from "./cork.js";

const cork = process.argv.includes("--cork");
const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws: WebSocket) => {
  ws.on("message", (data, isBinary) => {
    if (cork) for (const c of wss.clients) corkedSend(c, data as Buffer, isBinary);
    else for (const c of wss.clients) c.send(data, { binary: isBinary });
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening port=${(server.address() as { port: number }).port}\n`);
});
