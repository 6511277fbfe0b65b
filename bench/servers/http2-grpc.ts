/**
 * Baseline: a bare node:http2 server answering gRPC unary calls by echoing the
 * request message (no grpc-js): the ceiling of gRPC on Node's HTTP/2. Prints `listening port=P`.
 */
import { createServer, constants } from "node:http2";

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE } = constants;
const server = createServer();
server.on("stream", (stream) => {
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.on("end", () => {
    stream.respond({ [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
  });
});
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening port=${(server.address() as { port: number }).port}\n`);
});
