/** Baseline: the bare node:http hello. Prints `listening port=P`. */
import { createServer } from "node:http";

const body = Buffer.from("hello");
const server = createServer((_req, res) => {
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
  res.end(body);
});
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening port=${(server.address() as { port: number }).port}\n`);
});
