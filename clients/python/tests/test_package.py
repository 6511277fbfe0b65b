"""The package itself: its contract copy cannot drift, it works installed alone, it covers every RPC."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import prism_client
from prism_client import PrismClient, errors
from prism_client._proto import METHODS

PKG = Path(prism_client.__file__).resolve().parent
REPO_DESCRIPTOR = PKG.parents[2] / "proto" / "prism" / "v1" / "descriptor.binpb"


def test_descriptor_is_the_committed_contract():
    if not REPO_DESCRIPTOR.exists():
        pytest.skip(f"not inside the Prism repository ({REPO_DESCRIPTOR} absent)")
    assert (PKG / "descriptor.binpb").read_bytes() == REPO_DESCRIPTOR.read_bytes(), (
        "clients/python/prism_client/descriptor.binpb differs from proto/prism/v1/descriptor.binpb: "
        "cp proto/prism/v1/descriptor.binpb clients/python/prism_client/"
    )


def test_works_installed_alone(tmp_path):
    # A copy of the package outside the repository, imported from a directory with nothing else.
    shutil.copytree(PKG, tmp_path / "prism_client", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import prism_client as p; print(len(p.METHODS), p.message('SetRequest').DESCRIPTOR.fields_by_name['idempotency_key'].number)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(len(METHODS)), "15"]


# Every RPC of the contract and the SDK method that calls it.
COVERAGE = {
    "KeyValue": ("keyvalue", {"Get": "get", "Set": "set", "Delete": "delete", "Exists": "exists", "BatchGet": "batch_get",
                              "BatchSet": "batch_set", "BatchDelete": "batch_delete", "Scan": "scan_page", "Expire": "expire",
                              "GetTtl": "ttl", "Persist": "persist"}),
    "PubSub": ("pubsub", {"Publish": "publish", "Subscribe": "subscribe"}),
    "Queue": ("queue", {"Enqueue": "enqueue", "Dequeue": "dequeue", "Ack": "ack", "Nack": "nack", "ExtendVisibility": "extend_visibility",
                        "EnqueueBatch": "enqueue_many", "AckBatch": "ack_many"}),
    "Stream": ("stream", {"Append": "append", "Read": "read", "ReadGroup": "read_group", "AckGroup": "ack"}),
    "MulticastRegistry": ("registry", {"Register": "register", "Unregister": "unregister", "Enumerate": "enumerate",
                                       "Multicast": "multicast", "Subscribe": "subscribe"}),
    "ClaimCheck": ("claim_check", {"Put": "put_stream", "Get": "get_stream", "Head": "head", "Delete": "delete"}),
}


def test_every_rpc_has_an_sdk_method():
    # The services issue 16 asks the SDK to cover; any other service is reachable through PrismClient.call.
    c = PrismClient("127.0.0.1:1")  # no call is made
    try:
        missing = []
        for key in METHODS:
            service, name = key.split("/")
            if service not in COVERAGE and service != "Admin":
                continue
            if service == "Admin":
                attr = "migration" if "Migration" in name else "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")
                ok = hasattr(c.admin, attr)
            else:
                facade, names = COVERAGE.get(service, (None, {}))
                ok = facade is not None and name in names and hasattr(getattr(c, facade)("ns"), names[name])
            if not ok:
                missing.append(key)
        assert missing == []
    finally:
        c.close()


def test_every_status_code_has_its_exception():
    import grpc

    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        cls = errors.error_class(code)
        assert cls is not errors.PrismError and cls.__name__.lower() == code.name.replace("_", "").lower()
        e = errors.make_error(code, "PRISM_ERR_X", "m")
        assert isinstance(e, errors.PrismError) and e.code is code and e.code_name == code.name


def test_addresses(monkeypatch):
    from prism_client._options import resolve_target

    monkeypatch.setenv("PRISM_ADDR", "example:1234")
    assert resolve_target(None, None) == ("example:1234", None)
    monkeypatch.delenv("PRISM_ADDR")
    assert resolve_target(None, None) == ("127.0.0.1:8980", None)

    assert resolve_target("grpc://h:1", None) == ("h:1", None)
    assert resolve_target("h", None)[0] == "h:8980"
    assert resolve_target("[::1]:9", None)[0] == "[::1]:9"
    assert resolve_target("grpcs://h:443", None)[1] is not None
    with pytest.raises(ValueError, match="speaks gRPC"):
        resolve_target("ws://127.0.0.1:8981", None)
