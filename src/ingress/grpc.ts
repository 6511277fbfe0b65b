// Placeholder: the gRPC ingress (@grpc/grpc-js + reflection) replaces this.
import type { Gateway } from "../core/gateway.js";
import type { IngressOptions, Listening } from "./types.js";
export async function startGrpc(_gw: Gateway, _opts: IngressOptions): Promise<Listening> {
  throw new Error("gRPC ingress not implemented yet");
}
