"""What API key authentication costs the gateway, measured in-process against real NATS.

Prints a table on stderr and one JSON document on stdout::

    .venv/bin/python benchmarks/auth_overhead.py [--requests 3000] [--concurrency 16]

Figures:

* ``hmac_us``: one HMAC-SHA256 of a key (the only cryptography on the hot path);
* ``verify_cached_per_sec`` / ``verify_uncached_per_sec``: ``ApiKeyStore.verify`` with the record
  cached (the steady state) and with the cache disabled (one KV read per request);
* requests per second through a Falcon ASGI app driven directly (no sockets), auth off vs on,
  for two handlers: ``trivial`` (parses the JSON body, worst case for the ratio) and
  ``submit`` (parses the body, writes a snapshot to KV and publishes a job, i.e. the NATS work
  of ``POST /runs``). The issue's target is authenticated ``POST /runs`` at ≥ 80 % of
  unauthenticated throughput; ``ratio`` is auth-on / auth-off.

Each configuration runs ``--rounds`` times, interleaved, and the median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import falcon
import falcon.asgi

from pyoco_server.api_keys import ApiKeyStore, RecordCache, keyed_hash
from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.gateway.auth_middleware import AnonymousContext, ApiKeyAuthMiddleware
from pyoco_server.log import configure_logging
from pyoco_server.nats_client import NatsConnection
from pyoco_server.testing import unique_names

PEPPER = "benchmark-pepper-0123456789abcdef"


class TrivialSubmit:
    """Parses the body and answers, nothing else."""

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await req.get_media()
        resp.media = {"run_id": str(uuid.uuid4()), "flow_name": body["flow_name"]}


class NatsSubmit:
    """Parses the body, writes the PENDING snapshot to KV and publishes the job."""

    def __init__(self, nats: NatsConnection, settings: Settings) -> None:
        self.nats = nats
        self.settings = settings

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await req.get_media()
        run_id = str(uuid.uuid4())
        snapshot = {
            "run_id": run_id,
            "flow_name": body["flow_name"],
            "status": "PENDING",
            "tenant_id": req.context.tenant_id,
        }
        kv = await self.nats.kv(self.settings.runs_kv_bucket)
        await kv.create(run_id, json.dumps(snapshot).encode())
        await self.nats.js.publish(
            self.settings.work_subject("bench"), json.dumps(snapshot).encode()
        )
        resp.media = {"run_id": run_id, "status": "PENDING"}


async def call(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """One ``POST /runs`` through the ASGI interface; returns the status code."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/runs",
        "raw_path": b"/runs",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def throughput(
    app: Any, headers: list[tuple[bytes, bytes]], requests: int, concurrency: int
) -> float:
    """Requests per second for ``requests`` calls from ``concurrency`` concurrent clients."""
    body = json.dumps({"flow_name": "bench", "params": {"x": 1}}).encode()
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await call(app, headers, body)
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def rate(operation: Callable[[], Awaitable[Any]], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await operation()
    return count / (time.perf_counter() - started)


def build_app(middleware: Any, resource: Any) -> falcon.asgi.App:
    app = falcon.asgi.App(middleware=[middleware])
    app.add_route("/runs", resource)
    return app


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    settings = Settings(
        nats_url=url, **unique_names(), http_auth_mode="api_key", auth_pepper=PEPPER
    )
    nats = NatsConnection(settings, name="auth-benchmark")
    await nats.start()
    if not await nats.wait_ready(15):
        raise SystemExit(f"NATS at {url} is not reachable")
    try:
        cached = ApiKeyStore(
            lambda: nats.kv(settings.auth_kv_bucket),
            PEPPER.encode(),
            RecordCache(settings.auth_cache_ttl_sec),
        )
        uncached = ApiKeyStore(lambda: nats.kv(settings.auth_kv_bucket), PEPPER.encode())
        api_key, _ = await cached.create("bench")
        await cached.verify(api_key)

        loops = 20000
        started = time.perf_counter()
        for _ in range(loops):
            keyed_hash(PEPPER.encode(), api_key)
        hmac_us = (time.perf_counter() - started) / loops * 1e6

        plain = [(b"content-type", b"application/json")]
        keyed = [*plain, (settings.http_api_key_header.lower().encode(), api_key.encode())]
        handlers = {"trivial": TrivialSubmit(), "submit": NatsSubmit(nats, settings)}
        configs = {
            "off": (AnonymousContext(), plain),
            "on": (ApiKeyAuthMiddleware(settings, cached), keyed),
            "on_uncached": (ApiKeyAuthMiddleware(settings, uncached), keyed),
        }
        samples: dict[str, dict[str, list[float]]] = {h: {c: [] for c in configs} for h in handlers}
        verify_cached: list[float] = []
        verify_uncached: list[float] = []
        for _ in range(args.rounds):
            verify_cached.append(await rate(lambda: cached.verify(api_key), 20000))
            verify_uncached.append(await rate(lambda: uncached.verify(api_key), 1000))
            for handler_name, resource in handlers.items():
                for config_name, (middleware, headers) in configs.items():
                    app = build_app(middleware, resource)
                    await throughput(app, headers, args.requests // 10, args.concurrency)  # warm
                    samples[handler_name][config_name].append(
                        await throughput(app, headers, args.requests, args.concurrency)
                    )
        result: dict[str, Any] = {
            "python": sys.version.split()[0],
            "requests_per_sample": args.requests,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "cache_ttl_sec": settings.auth_cache_ttl_sec,
            "hmac_us": round(hmac_us, 2),
            "verify_cached_per_sec": round(statistics.median(verify_cached)),
            "verify_uncached_per_sec": round(statistics.median(verify_uncached)),
            "requests_per_sec": {},
        }
        for handler_name, by_config in samples.items():
            medians = {name: statistics.median(values) for name, values in by_config.items()}
            result["requests_per_sec"][handler_name] = {
                **{name: round(value) for name, value in medians.items()},
                "ratio": round(medians["on"] / medians["off"], 3),
                "ratio_uncached": round(medians["on_uncached"] / medians["off"], 3),
            }
        return result
    finally:
        await nats.stop()


def print_table(result: dict[str, Any]) -> None:
    out = sys.stderr
    print(f"HMAC-SHA256 of a key: {result['hmac_us']} µs", file=out)
    print(
        f"verify(): {result['verify_cached_per_sec']:,}/s cached, "
        f"{result['verify_uncached_per_sec']:,}/s uncached (one KV read each)",
        file=out,
    )
    header = ("handler", "auth off req/s", "auth on req/s", "on/off", "no cache req/s", "on/off")
    rows = [header]
    for handler, figures in result["requests_per_sec"].items():
        rows.append(
            (
                handler,
                f"{figures['off']:,}",
                f"{figures['on']:,}",
                f"{figures['ratio']:.0%}",
                f"{figures['on_uncached']:,}",
                f"{figures['ratio_uncached']:.0%}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)), file=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per sample [3000]")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients [16]")
    parser.add_argument("--rounds", type=int, default=3, help="samples per configuration [3]")
    parser.add_argument("--nats-url", help="use this NATS instead of an embedded nats-server")
    args = parser.parse_args()
    configure_logging(Settings(log_level="WARNING"), "auth-benchmark")  # logs on stderr

    if args.nats_url:
        result = asyncio.run(measure(args, args.nats_url))
    else:
        with tempfile.TemporaryDirectory() as store, EmbeddedNats(Path(store)) as server:
            result = asyncio.run(measure(args, server.url))
    print_table(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
