// Placeholder: node:http + ws transport adapter (HTTP/JSON + binary WebSocket) replaces this.
import type { Gateway } from "../core/gateway.js";
import type { IngressOptions, Listening } from "./types.js";
export async function startHttpTransport(_gw: Gateway, _opts: IngressOptions): Promise<Listening> {
  throw new Error("HTTP/WebSocket ingress not implemented yet");
}
