/**
 * Baseline: a bare @grpc/grpc-js unary echo, registered under the paths of
 * prism.v1.KeyValue/Get and /Set with identity (de)serializers, so the very
 * same client requests (h2load body file) reach it and Prism. Prints `listening port=P`.
 */
import * as grpc from "@grpc/grpc-js";

const identity = (b: Buffer) => b;
const unary = (path: string) => ({
  path,
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const service: grpc.ServiceDefinition = { Get: unary("/prism.v1.KeyValue/Get"), Set: unary("/prism.v1.KeyValue/Set") };
const echo = (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request);
const server = new grpc.Server();
server.addService(service, { Get: echo, Set: echo });
server.bindAsync(`127.0.0.1:${process.argv[2] ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`listening port=${port}\n`);
});
