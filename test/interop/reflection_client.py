#!/usr/bin/env python3
"""Prism through nothing but gRPC server reflection, as a generic client sees it
(grpcurl, Postman and Evans work this way).

Usage: reflection_client.py HOST:PORT [--reflection-set FILE] [--out FILE]

Needs only grpcio and protobuf (Debian: python3-grpcio, python3-protobuf); no
generated code, no grpcio-reflection. For each of grpc.reflection.v1 and
v1alpha, on one reflection stream:

- list the services; fetch each one's file and its imports, and load them into
  an empty descriptor pool, deps first (protobuf's own checks: a descriptor
  with map_entry set by hand, relative type names or a missing import is
  refused here);
- describe every service; check the real file names, fully-qualified type
  names and map entries;
- ask file_by_filename, file_containing_symbol (service, method, message,
  nested map entry, enum, enum value, field, an imported well-known type),
  all_extension_numbers_of_type, and the NOT_FOUND answers.

Then it calls every service through generic stubs built from those
descriptors, the server-streaming PubSub.Subscribe included, and an Admin call
carrying a google.protobuf.Struct.

The reflection messages come from --reflection-set (a FileDescriptorSet protoc
made of the official grpc/reflection/{v1,v1alpha}/reflection.proto) or, without
it, from descriptors written out below (the same fields and numbers).
--out writes every file received through reflection as a FileDescriptorSet,
for `protoc --descriptor_set_in`. Prints a JSON report on stdout; exits 1 on
the first failed check, saying which.
"""
import argparse
import base64
import json
import queue
import sys
import threading
import uuid

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

NOT_FOUND = 5
PRISM_SERVICES = ["prism.v1.KeyValue", "prism.v1.PubSub", "prism.v1.Queue", "prism.v1.Stream", "prism.v1.Admin"]


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def message_class(desc):
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


# ---------------------------------------------------------------- the reflection protocol's own messages

def reflection_file(version):
    """grpc/reflection/<version>/reflection.proto's messages (v1 and v1alpha are the same but for the package)."""
    f = descriptor_pb2.FileDescriptorProto(name=f"grpc/reflection/{version}/reflection.proto", package=f"grpc.reflection.{version}", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    S, B, I, M = T.TYPE_STRING, T.TYPE_BYTES, T.TYPE_INT32, T.TYPE_MESSAGE
    OPT, REP = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    pkg = f".grpc.reflection.{version}."

    def message(name, fields, oneof=None):
        m = f.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for fname, number, ftype, label, type_name, in_oneof in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = pkg + type_name
            if in_oneof:
                fd.oneof_index = 0

    message("ServerReflectionRequest", [
        ("host", 1, S, OPT, None, False),
        ("file_by_filename", 3, S, OPT, None, True),
        ("file_containing_symbol", 4, S, OPT, None, True),
        ("file_containing_extension", 5, M, OPT, "ExtensionRequest", True),
        ("all_extension_numbers_of_type", 6, S, OPT, None, True),
        ("list_services", 7, S, OPT, None, True),
    ], "message_request")
    message("ExtensionRequest", [("containing_type", 1, S, OPT, None, False), ("extension_number", 2, I, OPT, None, False)])
    message("ServerReflectionResponse", [
        ("valid_host", 1, S, OPT, None, False),
        ("original_request", 2, M, OPT, "ServerReflectionRequest", False),
        ("file_descriptor_response", 4, M, OPT, "FileDescriptorResponse", True),
        ("all_extension_numbers_response", 5, M, OPT, "ExtensionNumberResponse", True),
        ("list_services_response", 6, M, OPT, "ListServiceResponse", True),
        ("error_response", 7, M, OPT, "ErrorResponse", True),
    ], "message_response")
    message("FileDescriptorResponse", [("file_descriptor_proto", 1, B, REP, None, False)])
    message("ExtensionNumberResponse", [("base_type_name", 1, S, OPT, None, False), ("extension_number", 2, I, REP, None, False)])
    message("ListServiceResponse", [("service", 1, M, REP, "ServiceResponse", False)])
    message("ServiceResponse", [("name", 1, S, OPT, None, False)])
    message("ErrorResponse", [("error_code", 1, I, OPT, None, False), ("error_message", 2, S, OPT, None, False)])
    return f


def reflection_classes(version, official):
    """(ServerReflectionRequest, ExtensionRequest, ServerReflectionResponse) for `version`."""
    pool = descriptor_pool.DescriptorPool()
    name = f"grpc/reflection/{version}/reflection.proto"
    if official is not None:
        files = {f.name: f for f in official.file}
        check(name in files, f"--reflection-set has no {name}")
        pool.Add(files[name])
    else:
        pool.Add(reflection_file(version))
    get = lambda n: message_class(pool.FindMessageTypeByName(f"grpc.reflection.{version}.{n}"))
    return get("ServerReflectionRequest"), get("ExtensionRequest"), get("ServerReflectionResponse")


class Reflector:
    """One ServerReflectionInfo stream, used request by request."""

    def __init__(self, channel, version, official):
        self.version = version
        self.Req, self.Ext, self.Resp = reflection_classes(version, official)
        self.requests = queue.Queue()
        method = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=self.Req.SerializeToString,
            response_deserializer=self.Resp.FromString,
        )
        self.responses = method(iter(self.requests.get, None), timeout=60)
        self.raw = {}  # file name -> serialized FileDescriptorProto, as received
        self.files = {}  # file name -> FileDescriptorProto
        self.order = []  # names in the order received
        self.asked = 0

    def ask(self, **request):
        self.asked += 1
        req = self.Req(**request)
        self.requests.put(req)
        try:
            resp = next(self.responses)
        except StopIteration:
            raise Failure(f"{self.version}: the reflection stream ended before answering {request}")
        check(resp.original_request == req, f"{self.version}: original_request {resp.original_request} is not the request {req}")
        return resp

    def files_for(self, **request):
        """The names of the files a file_* request returns (the first is the one asked for); keeps them."""
        resp = self.ask(**request)
        which = resp.WhichOneof("message_response")
        if which == "error_response":
            raise Failure(f"{self.version}: {request} answered error {resp.error_response.error_code}: {resp.error_response.error_message}")
        check(which == "file_descriptor_response", f"{self.version}: {request} answered {which}")
        names = []
        for b in resp.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(b)
            check(fdp.name not in names, f"{self.version}: {request} returned {fdp.name} twice")
            names.append(fdp.name)
            if fdp.name in self.raw:
                check(self.raw[fdp.name] == b, f"{self.version}: {fdp.name} came back with different bytes")
            else:
                self.raw[fdp.name] = b
                self.files[fdp.name] = fdp
                self.order.append(fdp.name)
        check(names, f"{self.version}: {request} returned no file")
        return names

    def error_code(self, **request):
        resp = self.ask(**request)
        which = resp.WhichOneof("message_response")
        check(which == "error_response", f"{self.version}: {request} answered {which}, not an error")
        return resp.error_response.error_code

    def close(self):
        self.requests.put(None)
        extra = list(self.responses)
        check(not extra, f"{self.version}: {len(extra)} responses nobody asked for")
        check(self.responses.code() == grpc.StatusCode.OK, f"{self.version}: the stream ended {self.responses.code()}: {self.responses.details()}")


def load_pool(r, names):
    """A fresh descriptor pool holding `names` and their imports, deps first, fetching missing imports by name
    (what grpcio-reflection's ProtoReflectionDescriptorDatabase does)."""
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name, chain=()):
        if name in added:
            return
        check(name not in chain, f"{r.version}: import cycle {' -> '.join(chain + (name,))}")
        if name not in r.files:
            check(r.files_for(file_by_filename=name)[0] == name, f"{r.version}: file_by_filename {name} returned another file first")
        for dep in r.files[name].dependency:
            add(dep, chain + (name,))
        try:
            pool.AddSerializedFile(r.raw[name])
        except Exception as e:  # protobuf says TypeError: Couldn't build proto file into descriptor pool: ...
            raise Failure(f"{r.version}: protobuf refuses {name} from reflection: {e}")
        added.add(name)

    for n in names:
        add(n)
    return pool


def walk_messages(fdp):
    """(full name, DescriptorProto) of every message of a FileDescriptorProto, nested ones included."""
    def rec(scope, msgs):
        for m in msgs:
            full = f"{scope}.{m.name}" if scope else m.name
            yield full, m
            yield from rec(full, m.nested_type)
    yield from rec(fdp.package, fdp.message_type)


def camel(name):
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def reflect(channel, version, official):
    r = Reflector(channel, version, official)
    report = {}
    listed = r.ask(list_services="")
    check(listed.WhichOneof("message_response") == "list_services_response", f"{version}: list_services answered {listed.WhichOneof('message_response')}")
    services = [s.name for s in listed.list_services_response.service]
    check(len(set(services)) == len(services), f"{version}: services listed twice: {services}")
    for s in PRISM_SERVICES:
        check(s in services, f"{version}: {s} is not in list_services: {services}")
    report["services"] = services

    service_files = {}
    for s in services:
        names = r.files_for(file_containing_symbol=s)
        service_files[s] = names[0]
    pool = load_pool(r, list(service_files.values()))

    # Real file names, imports, fully-qualified names, protoc's map entries.
    check(service_files["prism.v1.KeyValue"] == "prism/v1/prism.proto", f"{version}: prism.v1.KeyValue is in {service_files['prism.v1.KeyValue']}, not prism/v1/prism.proto")
    prism_file = r.files["prism/v1/prism.proto"]
    check(prism_file.package == "prism.v1", f"{version}: package {prism_file.package}")
    check("google/protobuf/struct.proto" in prism_file.dependency, f"{version}: prism/v1/prism.proto does not import google/protobuf/struct.proto: {list(prism_file.dependency)}")
    maps = 0
    for fname, fdp in r.files.items():
        for full, m in walk_messages(fdp):
            for fd in m.field:
                if fd.type in (fd.TYPE_MESSAGE, fd.TYPE_ENUM):
                    check(fd.type_name.startswith("."), f"{version}: {full}.{fd.name} has the relative type name {fd.type_name!r}")
            if m.options.map_entry:
                check(m.name.endswith("Entry"), f"{version}: map entry {full} is not named *Entry")
    for s in services:
        for method in pool.FindServiceByName(s).methods:
            for t in (method.input_type, method.output_type):
                for field in t.fields:
                    if field.message_type is not None and field.message_type.GetOptions().map_entry:
                        entry = field.message_type
                        want = f"{t.full_name}.{camel(field.name)}Entry"
                        check(entry.full_name == want, f"{version}: map {t.full_name}.{field.name} has entry {entry.full_name}, not {want}")
                        check(field.label == field.LABEL_REPEATED, f"{version}: map {t.full_name}.{field.name} is not repeated")
                        maps += 1
    check(maps > 0, f"{version}: no map field found")
    attributes = pool.FindMessageTypeByName("prism.v1.PublishRequest").fields_by_name["attributes"].message_type
    check(attributes.full_name == "prism.v1.PublishRequest.AttributesEntry", f"{version}: PublishRequest.attributes is {attributes.full_name}")
    report["map_fields_checked"] = maps

    # describe
    describe = {}
    for s in services:
        sd = pool.FindServiceByName(s)
        describe[s] = [
            f"rpc {m.name}({'stream ' if m.client_streaming else ''}{m.input_type.full_name}) returns ({'stream ' if m.server_streaming else ''}{m.output_type.full_name})"
            for m in sd.methods
        ]
    check(any("returns (stream prism.v1.PubSubMessage)" in l for l in describe["prism.v1.PubSub"]), f"{version}: PubSub.Subscribe is not server-streaming: {describe['prism.v1.PubSub']}")
    report["describe"] = describe

    # file_containing_symbol on every kind of symbol, file_by_filename on every file.
    symbols = {
        "prism.v1.KeyValue.Get": "prism/v1/prism.proto",  # method
        "prism.v1.GetRequest": "prism/v1/prism.proto",  # message
        "prism.v1.GetRequest.key": "prism/v1/prism.proto",  # field
        "prism.v1.SetRequest._ttl_seconds": "prism/v1/prism.proto",  # (synthetic) oneof
        "prism.v1.PublishRequest.AttributesEntry": "prism/v1/prism.proto",  # nested: a map entry
        "prism.v1.Method": "prism/v1/frame.proto",  # enum
        "prism.v1.KV_GET": "prism/v1/frame.proto",  # enum value (scoped like its enum)
        "google.protobuf.Struct": "google/protobuf/struct.proto",  # an import
    }
    for sym, want in symbols.items():
        got = r.files_for(file_containing_symbol=sym)[0]
        check(got == want, f"{version}: file_containing_symbol {sym} returned {got}, not {want}")
    for name in list(r.files):
        check(r.files_for(file_by_filename=name)[0] == name, f"{version}: file_by_filename {name} returned another file first")
    load_pool(r, list(r.files))  # everything received loads

    ext = r.ask(all_extension_numbers_of_type="prism.v1.GetRequest")
    check(ext.WhichOneof("message_response") == "all_extension_numbers_response", f"{version}: all_extension_numbers_of_type answered {ext.WhichOneof('message_response')}")
    check(ext.all_extension_numbers_response.base_type_name == "prism.v1.GetRequest", f"{version}: base_type_name {ext.all_extension_numbers_response.base_type_name}")
    check(list(ext.all_extension_numbers_response.extension_number) == [], f"{version}: extension numbers {list(ext.all_extension_numbers_response.extension_number)}")

    for request in (
        {"file_containing_symbol": "prism.v1.NoSuchThing"},
        {"file_by_filename": "prism/v1/no-such.proto"},
        {"file_by_filename": "prism_v1.proto"},
        {"all_extension_numbers_of_type": "prism.v1.NoSuchThing"},
        {"file_containing_extension": r.Ext(containing_type="prism.v1.GetRequest", extension_number=1000)},
    ):
        code = r.error_code(**request)
        check(code == NOT_FOUND, f"{version}: {request} answered error {code}, not NOT_FOUND")
    r.close()
    report["files"] = r.order
    report["requests"] = r.asked
    return report, pool, r


# ---------------------------------------------------------------- calls through generic stubs

class Stubs:
    def __init__(self, channel, pool):
        self.channel = channel
        self.pool = pool
        self.calls = []

    def _method(self, service, name):
        m = self.pool.FindServiceByName(service).methods_by_name.get(name)
        check(m is not None, f"{service} has no method {name}")
        return m, message_class(m.input_type), message_class(m.output_type)

    def call(self, service, name, body, timeout=15):
        m, Req, Resp = self._method(service, name)
        check(not m.server_streaming, f"{service}.{name} is streaming")
        fn = self.channel.unary_unary(f"/{service}/{name}", request_serializer=Req.SerializeToString, response_deserializer=Resp.FromString)
        resp = fn(json_format.ParseDict(body, Req()), timeout=timeout)
        self.calls.append(f"{service}/{name}")
        return json_format.MessageToDict(resp, preserving_proto_field_name=True)

    def stream(self, service, name, body, timeout=30):
        m, Req, Resp = self._method(service, name)
        check(m.server_streaming, f"{service}.{name} is not server-streaming")
        fn = self.channel.unary_stream(f"/{service}/{name}", request_serializer=Req.SerializeToString, response_deserializer=Resp.FromString)
        self.calls.append(f"{service}/{name}")
        return fn(json_format.ParseDict(body, Req()), timeout=timeout)

    def status_of(self, service, name, body):
        try:
            self.call(service, name, body)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def text(b):
    return base64.b64decode(b).decode()


def next_message(call, what):
    """The next streamed message, waiting at most 10 s."""
    box = {}

    def read():
        try:
            box["msg"] = next(call)
        except BaseException as e:  # noqa: BLE001 (reported below)
            box["err"] = e

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    if "msg" in box:
        return json_format.MessageToDict(box["msg"], preserving_proto_field_name=True)
    raise Failure(f"{what}: no message within 10 s ({box.get('err')!r})")


def call_everything(channel, pool, services):
    s = Stubs(channel, pool)
    tag = uuid.uuid4().hex[:8]
    ns = "default"
    done = {}

    # KeyValue
    key = f"py-{tag}"
    setr = s.call("prism.v1.KeyValue", "Set", {"namespace": ns, "key": key, "value": b64("hello from python")})
    check(int(setr.get("version", 0)) > 0, f"KeyValue.Set: {setr}")
    got = s.call("prism.v1.KeyValue", "Get", {"namespace": ns, "key": key})
    check(got.get("found") is True and text(got.get("value", "")) == "hello from python", f"KeyValue.Get: {got}")
    check(s.call("prism.v1.KeyValue", "Delete", {"namespace": ns, "key": key}).get("deleted") is True, "KeyValue.Delete")
    done["prism.v1.KeyValue"] = "Set, Get, Delete"

    # PubSub: Subscribe (server streaming), live once its headers arrive; then Publish.
    topic = f"py.{tag}"
    sub = s.stream("prism.v1.PubSub", "Subscribe", {"namespace": ns, "pattern": topic})
    sub.initial_metadata()
    pub = s.call("prism.v1.PubSub", "Publish", {"namespace": ns, "topic": topic, "payload": b64("ping"), "attributes": {"via": "reflection"}})
    check(pub.get("message_id"), f"PubSub.Publish: {pub}")
    msg = next_message(sub, "PubSub.Subscribe")
    check(msg.get("topic") == topic and text(msg.get("payload", "")) == "ping", f"PubSub.Subscribe: {msg}")
    check(msg.get("attributes") == {"via": "reflection"}, f"PubSub.Subscribe attributes (a map): {msg.get('attributes')}")
    sub.cancel()
    done["prism.v1.PubSub"] = "Subscribe (stream), Publish"

    # Queue
    q = f"py-{tag}"
    enq = s.call("prism.v1.Queue", "Enqueue", {"namespace": ns, "queue": q, "payload": b64("job"), "attributes": {"n": "1"}})
    check(enq.get("message_id"), f"Queue.Enqueue: {enq}")
    deq = s.call("prism.v1.Queue", "Dequeue", {"namespace": ns, "queue": q, "wait_seconds": 5})
    msgs = deq.get("messages", [])
    check(len(msgs) == 1 and text(msgs[0].get("payload", "")) == "job" and msgs[0].get("attributes") == {"n": "1"}, f"Queue.Dequeue: {deq}")
    s.call("prism.v1.Queue", "Ack", {"namespace": ns, "queue": q, "receipt": msgs[0]["receipt"]})
    done["prism.v1.Queue"] = "Enqueue, Dequeue, Ack"

    # Stream
    st = f"py-{tag}"
    app = s.call("prism.v1.Stream", "Append", {"namespace": ns, "stream": st, "payload": b64("rec"), "attributes": {"k": "v"}})
    check(int(app.get("offset", 0)) > 0, f"Stream.Append: {app}")
    rd = s.call("prism.v1.Stream", "Read", {"namespace": ns, "stream": st})
    recs = rd.get("records", [])
    check(len(recs) == 1 and text(recs[0].get("payload", "")) == "rec", f"Stream.Read: {rd}")
    done["prism.v1.Stream"] = "Append, Read"

    # Admin: Health, and a google.protobuf.Struct (the imported well-known type) in ApplyNamespace.
    health = s.call("prism.v1.Admin", "Health", {})
    check(health.get("status") in ("SERVING", "DEGRADED"), f"Admin.Health: {health}")
    reg_ns = None
    if "prism.v1.MulticastRegistry" in services:
        reg_ns = f"py-registry-{tag}"
        entry = {"name": reg_ns, "pattern": "multicast-registry", "slots": {"registry": {"type": "memstore"}, "messaging": {"type": "memstore"}}}
    else:
        entry = {"name": f"py-kv-{tag}", "backend": {"type": "memstore"}}
    applied = s.call("prism.v1.Admin", "ApplyNamespace", {"namespace": entry})
    check(applied.get("namespace", {}).get("name") == entry["name"] and applied.get("created") is True, f"Admin.ApplyNamespace: {applied}")
    check(s.call("prism.v1.Admin", "GetNamespace", {"name": entry["name"]}).get("name") == entry["name"], "Admin.GetNamespace")
    done["prism.v1.Admin"] = "Health, ApplyNamespace (google.protobuf.Struct), GetNamespace, DeleteNamespace"

    if reg_ns:
        r = s.call("prism.v1.MulticastRegistry", "Register", {"namespace": reg_ns, "identity": "py-1", "metadata": {"kind": "python"}})
        check(r.get("created") is True, f"MulticastRegistry.Register: {r}")
        e = s.call("prism.v1.MulticastRegistry", "Enumerate", {"namespace": reg_ns, "filter": 'kind = "python"'})
        check([m.get("identity") for m in e.get("members", [])] == ["py-1"], f"MulticastRegistry.Enumerate: {e}")
        check(s.call("prism.v1.MulticastRegistry", "Unregister", {"namespace": reg_ns, "identity": "py-1"}).get("removed") is True, "MulticastRegistry.Unregister")
        done["prism.v1.MulticastRegistry"] = "Register, Enumerate, Unregister"
    check(s.call("prism.v1.Admin", "DeleteNamespace", {"name": entry["name"]}).get("deleted") is True, "Admin.DeleteNamespace")

    # Any other service: its first unary method must reach Prism (any answer but UNIMPLEMENTED, INTERNAL, UNKNOWN).
    for svc in services:
        if svc in done:
            continue
        sd = pool.FindServiceByName(svc)
        unary = [m for m in sd.methods if not m.server_streaming and not m.client_streaming]
        check(unary, f"{svc}: no unary method to probe")
        code = s.status_of(svc, unary[0].name, {})
        check(code not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), f"{svc}/{unary[0].name} with an empty request answered {code}")
        done[svc] = f"{unary[0].name} (probe: {code.name})"
    return done, s.calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("--reflection-set", help="a FileDescriptorSet holding grpc/reflection/{v1,v1alpha}/reflection.proto")
    ap.add_argument("--out", help="write every file received through reflection here, as a FileDescriptorSet")
    args = ap.parse_args()
    official = None
    if args.reflection_set:
        with open(args.reflection_set, "rb") as fh:
            official = descriptor_pb2.FileDescriptorSet.FromString(fh.read())
    report = {"grpc": grpc.__version__, "reflection_messages": "protoc" if official else "built-in"}
    # No HTTP proxy from the environment for a local gateway.
    with grpc.insecure_channel(args.target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        grpc.channel_ready_future(channel).result(timeout=15)
        pool = None
        for version in ("v1", "v1alpha"):
            rep, p, r = reflect(channel, version, official)
            report[version] = rep
            if pool is None:
                pool, received = p, r
        report["calls"], report["methods_called"] = call_everything(channel, pool, report["v1"]["services"])
    if args.out:
        fds = descriptor_pb2.FileDescriptorSet()
        placed = set()

        def place(name):
            if name in placed:
                return
            for d in received.files[name].dependency:
                place(d)
            fds.file.append(received.files[name])
            placed.add(name)

        for n in received.order:
            place(n)
        with open(args.out, "wb") as fh:
            fh.write(fds.SerializeToString())
        report["out"] = [f.name for f in fds.file]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"reflection client: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except grpc.RpcError as e:
        print(f"reflection client: FAILED: a call answered {e.code()}: {e.details()}", file=sys.stderr)
        sys.exit(1)
