"""Request values in, response messages out: Python values ↔ protobuf messages."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from . import types as t
from ._proto import message


def to_bytes(value: Any, what: str = "value") -> bytes:
    """bytes-like as is, str as UTF-8; anything else is a caller bug (TypeError)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def to_struct(obj: Mapping[str, Any]) -> Any:
    """A dict → google.protobuf.Struct (of the contract's own pool)."""
    s = message("google.protobuf.Struct")()
    json_format.ParseDict(dict(obj), s)
    return s


def set_attributes(field: Any, attributes: Optional[Mapping[str, str]]) -> None:
    if attributes:
        field.update({str(k): str(v) for k, v in attributes.items()})


def plain(msg: Any) -> Dict[str, Any]:
    """Every field of a message (defaults included) as Python values: nested
    messages → dicts, repeated → lists, maps → dicts, bytes stay bytes."""
    out: Dict[str, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            vf = f.message_type.fields_by_name["value"]
            out[f.name] = {k: (plain(x) if vf.message_type else x) for k, x in v.items()}
        elif f.label == FieldDescriptor.LABEL_REPEATED:
            out[f.name] = [plain(x) if f.message_type else x for x in v]
        elif f.message_type is not None:
            if f.message_type.full_name == "google.protobuf.Struct":
                out[f.name] = json_format.MessageToDict(v) if msg.HasField(f.name) else None
            else:
                out[f.name] = plain(v) if msg.HasField(f.name) else None
        else:
            out[f.name] = v
    return out


def pubsub_message(m: Any) -> t.PubSubMessage:
    return t.PubSubMessage(m.topic, bytes(m.payload), dict(m.attributes), m.message_id, m.publish_time_ms)


def queue_message(q: Any) -> t.QueueMessage:
    return t.QueueMessage(q.message_id, bytes(q.payload), dict(q.attributes), q.receipt, q.delivery_count, q.enqueued_at_ms)


def stream_record(r: Any) -> t.StreamRecord:
    return t.StreamRecord(r.offset, bytes(r.payload), dict(r.attributes), r.timestamp_ms, r.delivery_count)


def namespace_info(n: Any) -> t.NamespaceInfo:
    return t.NamespaceInfo(
        name=n.name,
        primitives=list(n.primitives),
        backend_type=n.backend_type,
        interfaces=list(n.interfaces),
        config_json=n.config_json,
        pattern=n.pattern,
        slots=[t.SlotInfo(s.slot, s.instance, s.backend_type, list(s.interfaces), s.auto) for s in n.slots],
        revision=n.revision,
        explanation=list(n.explanation),
    )


def instance_info(b: Any) -> t.BackendInstanceInfo:
    return t.BackendInstanceInfo(b.name, b.type, b.options_json, list(b.namespaces), b.revision)


def pattern_info(p: Any) -> t.PatternInfo:
    return t.PatternInfo(
        p.name,
        p.description,
        [t.PatternSlot(s.name, s.description, list(s.requires), list(s.optional), list(s.recommended)) for s in p.slots],
        list(p.serves),
    )


def health(h: Any) -> t.Health:
    return t.Health(
        status=h.status,
        backends=[
            t.BackendHealth(b.namespace, b.backend_type, b.ok, b.latency_ms, b.message, b.circuit, b.slot, b.instance)
            for b in h.backends
        ],
        version=h.version,
        workers=h.workers,
        worker_index=h.worker_index,
    )
