"""The wire format between a worker host and its execution processes.

Messages are JSON objects framed by a 4-byte big-endian length, sent over a Unix socket pair.
JSON (not pickle) keeps the host safe from whatever a flow's code does inside its process.
This module is imported by execution processes, so it never imports asyncio (and, through
it, ssl): the host's asyncio reader is :func:`pyoco_server.worker.pool.read_message`.

Host → fork server: ``config`` (once, first), ``fork`` (with the new process's socket attached
as ``SCM_RIGHTS``). Fork server → host: ``ready`` or ``fatal`` (once, first), ``forked`` (the
new process's pid), ``exited`` (a process it forked has exited, with its exit code).

Host → execution process: ``run`` (one job), ``cancel``.
Execution process → host: ``ready`` (once, first), ``progress``, ``spawn`` (a task started a
child run), ``done``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

HEADER = struct.Struct(">I")
#: Upper bound of one message; a larger frame means a corrupt stream.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class ProtocolError(RuntimeError):
    """A frame that cannot be decoded (corrupt stream or oversized message)."""


def _jsonable(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps`` accepts: unknown objects become their repr."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return repr(value)


def encode(message: dict[str, Any]) -> bytes:
    """One framed message. Values JSON cannot represent are sent as their ``repr``."""
    try:
        data = json.dumps(message, separators=(",", ":"), default=repr).encode("utf-8")
    except (TypeError, ValueError):  # e.g. non-string dict keys deep inside a task output
        data = json.dumps(_jsonable(message), separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(data)) + data


def decode(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"undecodable message: {exc}") from None
    if not isinstance(message, dict) or "type" not in message:
        raise ProtocolError("message is not an object with a 'type'")
    return message


def check_length(length: int) -> None:
    if length > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {length} bytes exceeds {MAX_MESSAGE_BYTES}")


class BlockingChannel:
    """The execution process's end: blocking sends (thread-safe) and receives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        frame = encode(message)
        with self._send_lock:
            self.sock.sendall(frame)

    def _read_exactly(self, size: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                return None
            chunks += chunk
        return bytes(chunks)

    def recv_with_fds(self, max_fds: int = 1) -> tuple[dict[str, Any] | None, list[int]]:
        """Like :meth:`recv`, plus the file descriptors sent along with the message."""
        first, fds, _, _ = socket.recv_fds(self.sock, HEADER.size, max_fds)
        rest = self._read_exactly(HEADER.size - len(first)) if first else None
        if rest is None:
            return None, fds
        (length,) = HEADER.unpack(first + rest)
        check_length(length)
        data = self._read_exactly(length)
        return (None if data is None else decode(data)), fds

    def recv(self) -> dict[str, Any] | None:
        """The next message, or ``None`` when the host closed its end."""
        header = self._read_exactly(HEADER.size)
        if header is None:
            return None
        (length,) = HEADER.unpack(header)
        check_length(length)
        data = self._read_exactly(length)
        if data is None:
            return None
        return decode(data)


@dataclass
class Outcome:
    """How a job ended inside its execution process.

    ``kind`` is ``None`` for a run that ended normally (``status`` COMPLETED or CANCELLED) and
    a :class:`~pyoco_server.model.Failure` kind otherwise (``flow_not_found``,
    ``policy_violation``, ``execution_error``), with ``status`` FAILED and ``error`` set.
    ``status`` WAITING means the run suspended itself to wait for child runs; ``spawn`` then
    (and whenever a task spawned) says what the host must do (see ``worker/children``).
    """

    status: str
    kind: str | None = None
    error: str | None = None
    tasks: dict[str, str] = field(default_factory=dict)
    task_records: dict[str, Any] = field(default_factory=dict)
    ended_at: float | None = None
    spawn: dict[str, Any] | None = None

    def as_message(self, run_id: str) -> dict[str, Any]:
        return {"type": "done", "run_id": run_id, "outcome": asdict(self)}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Outcome:
        return cls(**message["outcome"])
