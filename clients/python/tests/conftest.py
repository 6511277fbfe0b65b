"""The SDK against a live Prism. test/e2e/python-sdk.test.ts (run by `npm test`)
starts one with these namespaces and sets the environment:

PRISM_ADDR               the gRPC address, e.g. 127.0.0.1:8980
PRISM_TEST_NS            all four primitives on memstore, limits max_deliveries 2 and
                         stream_claim_timeout_seconds 1 (default "py-mem")
PRISM_TEST_NS_KVONLY     serves only keyvalue (default "py-kvonly")
PRISM_TEST_KV_NAMESPACES comma-separated namespaces the KeyValue tests run on (default: PRISM_TEST_NS)
PRISM_TEST_NS_CLAIM      a claim-check namespace fronting queue (default "py-claim"); absent: test_claim_check.py skips
PRISM_TEST_NS_CLAIM_KV   a claim-check namespace fronting keyvalue (default "py-claim-kv")
PRISM_TEST_CLAIM_PAYLOADS_DIR  its filesystem payloads directory, for the corrupted-payload case (optional)

By hand: start `prism serve` with such a prism.yaml, then
PRISM_ADDR=127.0.0.1:8980 PYTHONPATH=clients/python /usr/bin/python3 -m pytest -q clients/python/tests
"""
import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package under test, not an installed copy

from prism_client import PrismClient  # noqa: E402

NS = os.environ.get("PRISM_TEST_NS", "py-mem")
NS_KVONLY = os.environ.get("PRISM_TEST_NS_KVONLY", "py-kvonly")
KV_NAMESPACES = [n for n in os.environ.get("PRISM_TEST_KV_NAMESPACES", NS).split(",") if n]
NS_CLAIM = os.environ.get("PRISM_TEST_NS_CLAIM", "py-claim")
NS_CLAIM_KV = os.environ.get("PRISM_TEST_NS_CLAIM_KV", "py-claim-kv")
CLAIM_PAYLOADS_DIR = os.environ.get("PRISM_TEST_CLAIM_PAYLOADS_DIR", "")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PRISM_ADDR"):
        return
    skip = pytest.mark.skip(reason="PRISM_ADDR is not set: these tests need a running Prism (see conftest.py)")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "live: needs a running Prism at $PRISM_ADDR")


@pytest.fixture(scope="session")
def addr():
    return os.environ["PRISM_ADDR"]


@pytest.fixture(scope="session")
def client(addr):
    c = PrismClient(addr, timeout=10)
    yield c
    c.close()


@pytest.fixture
def uniq():
    """A fresh name prefix per test: the server may be shared with other runs."""
    return f"py-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def interfaces(client):
    """Interfaces a namespace's backends claim (Admin.GetNamespace), cached."""
    cache = {}

    def get(ns):
        if ns not in cache:
            cache[ns] = set(client.admin.get_namespace(ns).interfaces)
        return cache[ns]

    return get
