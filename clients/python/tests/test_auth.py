"""Credentials through the SDK against a Prism with an `auth:` block:
`api_key=` travels as x-api-key, `token=` as authorization: Bearer.
test/e2e/python-sdk.test.ts starts that server and sets

PRISM_TEST_AUTH_ADDR     its gRPC address
PRISM_TEST_API_KEY       a key whose role may read and write PRISM_TEST_NS (not admin)
PRISM_TEST_JWT           a token for a principal with the same role (optional)
"""
import asyncio
import os

import pytest

from prism_client import AsyncPrismClient, PermissionDenied, PrismClient, PrismError, Unauthenticated

from conftest import NS

ADDR = os.environ.get("PRISM_TEST_AUTH_ADDR")
API_KEY = os.environ.get("PRISM_TEST_API_KEY")
JWT = os.environ.get("PRISM_TEST_JWT")

pytestmark = pytest.mark.skipif(not (ADDR and API_KEY), reason="PRISM_TEST_AUTH_ADDR / PRISM_TEST_API_KEY not set (no Prism with auth)")


def test_api_key_is_accepted(uniq):
    with PrismClient(ADDR, api_key=API_KEY, timeout=10) as c:
        c.keyvalue(NS).set(uniq, b"v")
        assert c.keyvalue(NS).get(uniq) == b"v"
        with c.pubsub(NS).subscribe(f"{uniq}.*") as sub:  # streams carry the credentials too
            c.pubsub(NS).publish(f"{uniq}.a", b"m")
            assert next(sub).payload == b"m"
        with pytest.raises(PermissionDenied) as e:  # the key's role has no admin permission
            c.admin.list_namespaces()
        assert e.value.reason == "PRISM_ERR_PERMISSION_DENIED"


def test_missing_or_wrong_credentials_are_unauthenticated():
    for kwargs in ({}, {"api_key": "not-the-key"}, {"token": "not.a.jwt"}):
        with PrismClient(ADDR, timeout=10, **kwargs) as c:
            with pytest.raises(Unauthenticated) as e:
                c.keyvalue(NS).get("k")
            assert e.value.reason == "PRISM_ERR_UNAUTHENTICATED", kwargs
            with pytest.raises(Unauthenticated):
                c.pubsub(NS).subscribe("a")


@pytest.mark.skipif(not JWT, reason="PRISM_TEST_JWT not set")
def test_bearer_token_is_accepted(uniq):
    with PrismClient(ADDR, token=JWT, timeout=10) as c:
        assert c.keyvalue(NS).set(uniq, b"jwt") >= 1
        assert c.keyvalue(NS).get(uniq) == b"jwt"


def test_async_client_sends_credentials(uniq):
    async def main():
        async with AsyncPrismClient(ADDR, api_key=API_KEY, timeout=10) as c:
            await c.keyvalue(NS).set(uniq, b"a")
            assert await c.keyvalue(NS).get(uniq) == b"a"
            sub = await c.pubsub(NS).subscribe(f"{uniq}.*")
            await c.pubsub(NS).publish(f"{uniq}.x", b"y")
            async for msg in sub:
                assert msg.payload == b"y"
                break
            sub.close()
        async with AsyncPrismClient(ADDR, timeout=10) as anon:
            with pytest.raises(Unauthenticated):
                await anon.keyvalue(NS).get(uniq)

    asyncio.run(main())


def test_claim_check_transfers_carry_the_credentials():
    # The auth server has no claim-check namespace: with the key, Prism gets past authentication
    # and refuses the namespace; without it, the transfer is refused UNAUTHENTICATED.
    with PrismClient(ADDR, api_key=API_KEY, timeout=10) as c:
        with pytest.raises(PrismError) as e:
            c.claim_check(NS).put_stream([b"x" * 1000], queue="q")
        assert not isinstance(e.value, Unauthenticated), e.value
        with pytest.raises(PrismError) as e:
            c.claim_check(NS).get_stream("0" * 32)
        assert not isinstance(e.value, Unauthenticated), e.value
    with PrismClient(ADDR, timeout=10) as anon:
        with pytest.raises(Unauthenticated):
            anon.claim_check(NS).put_stream([b"x" * 1000], queue="q")
        with pytest.raises(Unauthenticated):
            anon.claim_check(NS).get_stream("0" * 32)

    async def main():
        async with AsyncPrismClient(ADDR, timeout=10) as anon:
            with pytest.raises(Unauthenticated):
                await anon.claim_check(NS).put_stream([b"x" * 1000], queue="q")
            with pytest.raises(Unauthenticated):
                await anon.claim_check(NS).get_stream("0" * 32)

    asyncio.run(main())
