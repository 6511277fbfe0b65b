/**
 * Helpers shared by the load-generator threads that speak Prism's binary
 * WebSocket protocol (pub/sub fan-out, queue): connecting, per-tick corking of
 * the client's own writes, and reading one bytes field out of a protobuf body
 * without decoding the whole message.
 */
import WebSocket from "ws";
import type { Socket } from "node:net";

export function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.binaryType = "nodebuffer";
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** Opens `n` connections, at most 200 handshakes at a time. */
export async function connectMany(url: string, n: number): Promise<WebSocket[]> {
  const out: WebSocket[] = [];
  for (let i = 0; i < n; i += 200) out.push(...(await Promise.all(Array.from({ length: Math.min(200, n - i) }, () => connect(url)))));
  for (const ws of out) ws.on("error", () => {});
  return out;
}

/** Batches the client's sends of this tick on `ws` into one write. */
export function corkTick(ws: WebSocket): void {
  const sock = (ws as unknown as { _socket: Socket })._socket;
  if (sock.writableCorked === 0) {
    sock.cork();
    process.nextTick(() => sock.uncork());
  }
}

/** Length of the field found by the last bytesField() call. */
export let fieldLength = 0;

function varint(buf: Uint8Array, pos: number): [number, number] {
  let v = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++]!;
    v += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [v, pos];
    shift += 7;
  }
}

/**
 * The offset of the first length-delimited field number `field` of the
 * protobuf message in buf[start, end) (its length in `fieldLength`), or -1.
 */
export function bytesField(buf: Uint8Array, start: number, end: number, field: number): number {
  let pos = start;
  while (pos < end) {
    let tag: number;
    [tag, pos] = varint(buf, pos);
    const wire = tag & 7;
    if (wire === 0) [, pos] = varint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len: number;
      [len, pos] = varint(buf, pos);
      if (tag >>> 3 === field) {
        fieldLength = len;
        return pos;
      }
      pos += len;
    } else return -1;
  }
  return -1;
}
