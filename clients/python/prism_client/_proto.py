"""The Prism contract at run time: message classes and method table built from
the FileDescriptorSet that protoc makes of proto/ (shipped in this package as
descriptor.binpb, byte-identical to proto/prism/v1/descriptor.binpb). No
generated *_pb2 code, so the package needs only grpcio and protobuf."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "prism.v1"


def _load_pool() -> descriptor_pool.DescriptorPool:
    data = resources.files(__package__).joinpath("descriptor.binpb").read_bytes()
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    # A private pool: the set carries its own google/protobuf/struct.proto, which
    # would clash with the default pool's copy (struct_pb2) if added there.
    pool = descriptor_pool.DescriptorPool()
    added: set = set()
    files = {f.name: f for f in fds.file}

    def add(name: str) -> None:  # dependencies first, whatever order the set lists them in
        if name in added:
            return
        added.add(name)
        for dep in files[name].dependency:
            add(dep)
        pool.Add(files[name])

    for name in files:
        add(name)
    return pool


POOL = _load_pool()
_FILE = POOL.FindFileByName("prism/v1/prism.proto")

if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
    _get_class = message_factory.GetMessageClass
else:  # Debian bookworm's 4.21
    _factory = message_factory.MessageFactory(POOL)
    _get_class = _factory.GetPrototype

_classes: Dict[str, Any] = {}


def message(name: str) -> Any:
    """The message class `prism.v1.<name>` (or a fully qualified name such as `google.protobuf.Struct`)."""
    full = name if "." in name else f"{PACKAGE}.{name}"
    cls = _classes.get(full)
    if cls is None:
        cls = _classes[full] = _get_class(POOL.FindMessageTypeByName(full))
    return cls


@dataclass(frozen=True)
class Method:
    service: str  # "KeyValue"
    name: str  # "Get"
    path: str  # "/prism.v1.KeyValue/Get"
    request: Any  # message classes
    response: Any
    server_streaming: bool
    client_streaming: bool


METHODS: Dict[str, Method] = {}
for _svc in _FILE.services_by_name.values():
    for _m in _svc.methods:
        METHODS[f"{_svc.name}/{_m.name}"] = Method(
            _svc.name,
            _m.name,
            f"/{_svc.full_name}/{_m.name}",
            _get_class(_m.input_type),
            _get_class(_m.output_type),
            _m.server_streaming,
            _m.client_streaming,
        )


def method(key: str) -> Method:
    """A method by "Service/Method"; KeyError when the contract has none."""
    return METHODS[key]
