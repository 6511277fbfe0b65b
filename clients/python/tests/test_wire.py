"""What the SDK puts on the wire and reads back, against a tiny grpcio server
of our own (no Prism needed): credential metadata, the prism-reason trailer."""
from concurrent import futures

import grpc
import pytest

from prism_client import AsyncPrismClient, NotFound, PrismClient, Unauthenticated
from prism_client._proto import method

GET = method("KeyValue/Get")


@pytest.fixture
def fake():
    seen = []

    def get(request, context):
        seen.append((request, dict(context.invocation_metadata())))
        if request.key == "missing-ns":
            context.set_trailing_metadata((("prism-reason", "PRISM_ERR_UNKNOWN_NAMESPACE"),))
            context.abort(grpc.StatusCode.NOT_FOUND, 'namespace "x" is not configured')
        if request.key == "no-auth":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no credentials")
        return GET.response(found=True, value=b"v", version=7)

    handler = grpc.method_handlers_generic_handler(
        "prism.v1.KeyValue",
        {"Get": grpc.unary_unary_rpc_method_handler(get, request_deserializer=GET.request.FromString, response_serializer=GET.response.SerializeToString)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", seen
    server.stop(None)


def test_credentials_and_reason(fake):
    addr, seen = fake
    with PrismClient(addr, token="t0k", api_key="k3y", metadata=[("x-tenant", "a")]) as c:
        assert c.keyvalue("ns").get_item("k").version == 7
        with pytest.raises(NotFound) as e:
            c.keyvalue("ns").get("missing-ns")
        assert e.value.reason == "PRISM_ERR_UNKNOWN_NAMESPACE" and "not configured" in e.value.message
        with pytest.raises(Unauthenticated):
            c.keyvalue("ns").get("no-auth")
    req, md = seen[0]
    assert (req.namespace, req.key) == ("ns", "k")
    assert md["authorization"] == "Bearer t0k" and md["x-api-key"] == "k3y" and md["x-tenant"] == "a"


def test_no_credentials_sent_by_default(fake):
    addr, seen = fake
    with PrismClient(addr) as c:
        c.keyvalue("ns").get("k")
    assert "authorization" not in seen[0][1] and "x-api-key" not in seen[0][1]


def test_async_credentials_and_reason(fake):
    import asyncio

    addr, seen = fake

    async def main():
        async with AsyncPrismClient(addr, token="t0k") as c:
            assert await c.keyvalue("ns").get("k") == b"v"
            with pytest.raises(NotFound) as e:
                await c.keyvalue("ns").get("missing-ns")
            assert e.value.reason == "PRISM_ERR_UNKNOWN_NAMESPACE"

    asyncio.run(main())
    assert seen[0][1]["authorization"] == "Bearer t0k"
