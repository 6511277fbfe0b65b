/** ClaimCheck.Put / Get on the grpc-js server (server.grpc_server: grpc-js); see transfer.ts. */
import {
  Metadata,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type ServerReadableStream,
  type ServerWritableStream,
} from "@grpc/grpc-js";
import type { RequestContext } from "../core/context.js";
import { Code, errors, PrismError, toPrismError } from "../core/errors.js";
import type { Gateway } from "../core/gateway.js";
import type { MethodDef } from "../core/methods.js";
import { DOWNLOAD_BODY, UPLOAD_BODY, type DownloadResponse, type UploadRequest } from "../primitives/claim-check.js";
import { contextOf as grpcJsContext, grpcStatus } from "./grpc-handlers.js";
import { DecodeFailure } from "./grpc-codec.js";
import { ChunkQueue, DOWNLOAD_CHUNK, recut, type Log } from "./transfer.js";

export function grpcJsUpload(gw: Gateway, m: MethodDef, log: Log, mtls = false): handleClientStreamingCall<any, any> {
  return (call: ServerReadableStream<any, any>, callback) => {
    let ctx: RequestContext;
    try {
      ctx = grpcJsContext(m, call as never, mtls);
    } catch (e) {
      callback(grpcStatus(toPrismError(e)));
      return;
    }
    const queue = new ChunkQueue(
      () => call.pause(),
      () => call.resume(),
    );
    let started = false;
    let answered = false;
    const answer = (err: PrismError | null, res?: object) => {
      if (answered) return;
      answered = true;
      if (err) {
        if (err.code === Code.INTERNAL) log("error", `grpc ${m.path}: ${err.message}`);
        callback(grpcStatus(err));
      } else callback(null, res);
    };
    call.on("data", (req: UploadRequest | DecodeFailure) => {
      if (answered) return;
      if (req instanceof DecodeFailure) {
        const e = req.toError();
        queue.fail(e);
        return answer(e);
      }
      if (req.chunk && req.chunk.length) queue.push(req.chunk);
      if (!started) {
        started = true;
        gw.unary(ctx, { ...req, chunk: undefined, [UPLOAD_BODY]: queue }).then(
          (res) => answer(null, res),
          (e: unknown) => {
            queue.fail(toPrismError(e));
            answer(toPrismError(e));
          },
        );
      }
    });
    call.once("end", () => {
      if (!started) answer(new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_MALFORMED", `received no request message for method ${m.path}`));
      queue.end();
    });
    call.once("cancelled", () => {
      queue.fail(errors.cancelled("upload: the client went away"));
      ctx.cancel(errors.cancelled("call"));
    });
    call.on("error", (e: Error) => queue.fail(errors.cancelled(`upload: ${e.message}`)));
  };
}

export function grpcJsDownload(gw: Gateway, m: MethodDef, log: Log, mtls = false): handleServerStreamingCall<any, any> {
  return (call: ServerWritableStream<any, any>) => {
    void (async () => {
      try {
        const req = call.request;
        if (req instanceof DecodeFailure) throw req.toError();
        const ctx = grpcJsContext(m, call, mtls);
        call.once("cancelled", () => ctx.cancel(errors.cancelled("call")));
        const res = (await gw.unary(ctx, req)) as unknown as DownloadResponse;
        call.sendMetadata(new Metadata());
        await writeObj(call, { claim: res.claim });
        for await (const chunk of recut(res[DOWNLOAD_BODY], DOWNLOAD_CHUNK)) {
          if (call.cancelled || call.destroyed) return;
          await writeObj(call, { data: chunk });
        }
        call.end();
      } catch (e) {
        const pe = toPrismError(e);
        if (pe.code === Code.INTERNAL) log("error", `grpc ${m.path}: ${pe.message}`);
        call.emit("error", grpcStatus(pe));
      }
    })();
  };
}

function writeObj(call: ServerWritableStream<any, any>, msg: object): Promise<void> {
  if (call.write(msg)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("close", done);
      resolve();
    };
    call.on("drain", done);
    call.on("close", done);
  });
}

