/**
 * Baseline: a bare @grpc/grpc-js unary echo, registered under the path of
 * prism.v1.KeyValue/Get with identity (de)serializers, so the very same
 * client request (h2load body file) reaches it and Prism. Prints `listening port=P`.
 */
import * as grpc from "@grpc/grpc-js";

const identity = (b: Buffer) => b;
const service: grpc.ServiceDefinition = {
  Get: {
    path: "/prism.v1.KeyValue/Get",
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const server = new grpc.Server();
server.addService(service, {
  Get: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
});
server.bindAsync(`127.0.0.1:${process.argv[2] ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`listening port=${port}\n`);
});
