/**
 * The batching Prism's WebSocket ingress does (src/ingress/transport.ts NodePeer.send):
 * the socket is corked at the first send of an event-loop turn and uncorked in
 * setImmediate, so every frame written in that turn leaves in one writev. The
 * corked baselines use it so a ratio against them compares equal batching.
 */
import type { WebSocket } from "ws";
import type { Duplex } from "node:stream";

const corked = new WeakSet<Duplex>();

function uncork(sock: Duplex): void {
  corked.delete(sock);
  sock.uncork();
}

/** Sends `data` on `ws`, batched with the other sends of this loop turn. */
export function corkedSend(ws: WebSocket, data: Buffer | ArrayBuffer | Buffer[], binary: boolean): void {
  const sock = (ws as unknown as { _socket?: Duplex })._socket;
  if (sock !== undefined && !corked.has(sock)) {
    corked.add(sock);
    sock.cork();
    setImmediate(uncork, sock);
  }
  ws.send(data, { binary });
}
