"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation.

General clients (httpx, aiohttp) spend more CPU per request than the gateway does, so on a
2-core machine they, not the server, would set the pace. This one writes a prepared request and
reads the status line, the headers and a ``Content-Length`` body: nothing else (no chunked
bodies, no redirects, no TLS). Enough to drive pyoco-server's JSON endpoints.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class LeanConnection:
    """One keep-alive connection; requests on it are sent one after another."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self.extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> LeanConnection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and return ``(status, body)``."""
        assert self.reader is not None and self.writer is not None, "open() first"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def post_json(self, path: str, document: Any) -> tuple[int, Any]:
        status, body = await self.request("POST", path, json.dumps(document).encode())
        return status, json.loads(body) if body else None

    async def get_json(self, path: str) -> tuple[int, Any]:
        status, body = await self.request("GET", path)
        return status, json.loads(body) if body else None
