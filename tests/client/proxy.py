"""A loopback TCP proxy that can break chosen connections, to inject real network faults."""

from __future__ import annotations

import contextlib
import socket
import threading

#: A connection's fate: ``None`` relays everything; ``"drop_response"`` forwards the request
#: but closes the client socket when the first response bytes arrive (the server did the work,
#: the client never hears of it); ``"cut_after_first_event"`` relays the response until one
#: complete server-sent ``snapshot`` event has passed and then closes (a stream cut mid-way).
Mode = str | None


class FaultyProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; ``modes[i]`` decides connection ``i``'s fate."""

    def __init__(self, upstream: tuple[str, int], modes: list[Mode]) -> None:
        self.upstream = upstream
        self.modes = list(modes)
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
            mode = self.modes[index] if index < len(self.modes) else None
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, mode), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, mode: Mode) -> None:
        relayed = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if mode == "drop_response":
                    break
                target.sendall(data)
                relayed += data
                if mode == "cut_after_first_event" and _has_complete_event(relayed):
                    break
        except OSError:
            pass
        finally:
            # shutdown() wakes the sibling thread blocked in recv() on the same sockets and sends
            # the FIN at once; close() alone would wait for that recv() to return.
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _has_complete_event(relayed: bytes) -> bool:
    start = relayed.find(b"event: snapshot")
    return start >= 0 and b"\n\n" in relayed[start:]
