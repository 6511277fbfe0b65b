"""Driven by test/e2e/python-sdk-retry.test.ts across a Prism restart (not collected by pytest).

argv: sync | async. Prints one line per step; the test answers on stdin:
  ready            → the test kills Prism and writes "down"
  nokey <outcome>  a Set without a key while Prism is down (must raise Unavailable)
  noretry <outcome> a Get on a client with retry=False (must raise Unavailable)
  waiting          → the test restarts Prism on the same port
  get <outcome>    a Get issued while Prism was down, answered after the restart (retried)
  keyed <outcome>  a Set with an idempotency key, likewise
"""
import asyncio
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from prism_client import AsyncPrismClient, PrismClient, Unavailable  # noqa: E402

ADDR = os.environ["PRISM_ADDR"]
NS = "default"


def outcome(fn):
    try:
        r = fn()
        return f"ok {r!r}"
    except Unavailable as e:
        return f"Unavailable {e.reason or '-'}"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__} {e}"


def say(line):
    print(line, flush=True)


def sync_main():
    c = PrismClient(ADDR, timeout=25)
    strict = PrismClient(ADDR, timeout=25, retry=False)
    kv = c.keyvalue(NS)
    kv.set("before", b"v", idempotency_key="k0")
    strict.keyvalue(NS).get("before")
    say("ready")
    sys.stdin.readline()  # "down"
    say("nokey " + outcome(lambda: kv.set("nokey", b"x")))
    say("noretry " + outcome(lambda: strict.keyvalue(NS).get("before")))
    results = {}
    threads = [
        threading.Thread(target=lambda: results.__setitem__("get", outcome(lambda: kv.get("before")))),
        threading.Thread(target=lambda: results.__setitem__("keyed", outcome(lambda: kv.set("keyed", b"y", idempotency_key="k1")))),
    ]
    for t in threads:
        t.start()
    say("waiting")
    for t in threads:
        t.join()
    say("get " + results["get"])
    say("keyed " + results["keyed"])
    say("after " + outcome(lambda: kv.get("keyed")))
    c.close()
    strict.close()


async def async_main():
    async with AsyncPrismClient(ADDR, timeout=25) as c, AsyncPrismClient(ADDR, timeout=25, retry=False) as strict:
        kv = c.keyvalue(NS)
        await kv.set("before", b"v", idempotency_key="k0")
        await strict.keyvalue(NS).get("before")
        say("ready")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def aoutcome(coro):
            try:
                return f"ok {(await coro)!r}"
            except Unavailable as e:
                return f"Unavailable {e.reason or '-'}"
            except Exception as e:  # noqa: BLE001
                return f"{type(e).__name__} {e}"

        say("nokey " + await aoutcome(kv.set("nokey", b"x")))
        say("noretry " + await aoutcome(strict.keyvalue(NS).get("before")))
        get = asyncio.ensure_future(aoutcome(kv.get("before")))
        keyed = asyncio.ensure_future(aoutcome(kv.set("keyed", b"y", idempotency_key="k1")))
        await asyncio.sleep(0.2)  # both made their first attempt (Prism is down)
        say("waiting")
        say("get " + await get)
        say("keyed " + await keyed)
        say("after " + await aoutcome(kv.get("keyed")))


if __name__ == "__main__":
    if sys.argv[1] == "sync":
        sync_main()
    else:
        asyncio.run(async_main())
