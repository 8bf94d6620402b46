"""Python client of the pyoco-server HTTP API (``PyocoHttpClient``).

Reads are retried on connection errors and 503 with bounded exponential backoff. Submits carry
an ``Idempotency-Key`` generated per call, so a retried submit can never create a second run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .model import is_terminal

DEFAULT_SERVER = "http://127.0.0.1:8000"
RETRYABLE_STATUS = frozenset({502, 503, 504})


class PyocoClientError(Exception):
    """Base class of the client's errors."""


class PyocoConnectionError(PyocoClientError):
    """The server could not be reached (after retries)."""

    def __init__(self, base_url: str, cause: Exception) -> None:
        self.base_url = base_url
        self.cause = cause
        super().__init__(
            f"cannot reach {base_url} ({type(cause).__name__}: {cause}) "
            "— is `pyoco-server up` running?"
        )


class PyocoHttpError(PyocoClientError):
    """The server answered with an error status; carries its ``err_id`` and ``detail``."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"detail": str(body)}
        self.err_id: str | None = self.body.get("err_id")
        self.msg_id: str | None = self.body.get("msg_id")
        self.detail: str = str(self.body.get("detail") or f"HTTP {status}")
        super().__init__(f"HTTP {status} {self.err_id or ''}: {self.detail}".replace("  ", " "))


class WaitTimeout(PyocoClientError):
    """The run did not reach a terminal status in time."""


@dataclass
class SseEvent:
    """One server-sent event: ``event`` name, ``id`` and decoded ``data``."""

    event: str
    data: Any
    id: str | None = None
    raw: str = field(default="", repr=False)


class PyocoHttpClient:
    """Synchronous client of one pyoco-server gateway.

    :param base_url: e.g. ``http://127.0.0.1:8000``.
    :param api_key: sent in ``api_key_header`` when set.
    :param timeout: seconds per request.
    :param retries: how many times a retryable request is tried again.
    :param backoff: first retry delay in seconds; doubles each time (capped at 5 s).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER,
        api_key: str | None = None,
        timeout: float = 10.0,
        *,
        retries: int = 4,
        backoff: float = 0.2,
        api_key_header: str = "X-API-Key",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        headers = {"Accept": "application/json"}
        if api_key:
            headers[api_key_header] = api_key
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=headers, transport=transport
        )

    def __enter__(self) -> PyocoHttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, retry: bool, **kwargs: Any) -> httpx.Response:
        attempts = self.retries + 1 if retry else 1
        delay = self.backoff
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise PyocoConnectionError(self.base_url, exc) from None
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRYABLE_STATUS or last:
                    raise PyocoHttpError(response.status_code, _body(response))
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        return self._request(method, path, retry=retry, **kwargs).json()

    # -- runs ------------------------------------------------------------------------------

    def submit_run(
        self,
        flow_name: str,
        params: dict[str, Any] | None = None,
        *,
        tag: str | None = None,
        tags: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a run of ``flow_name``; returns ``{"run_id", "status"}``."""
        body: dict[str, Any] = {"flow_name": flow_name, "params": params or {}}
        if tag is not None:
            body["tag"] = tag
        if tags is not None:
            body["tags"] = tags
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return self._json("POST", "/runs", json=body, headers=headers)

    def submit_run_yaml(
        self,
        workflow: str | bytes | Path,
        flow_name: str,
        *,
        tag: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a single-flow ``flow.yaml`` (a path, or the document's text/bytes)."""
        if isinstance(workflow, Path):
            content = workflow.read_bytes()
        elif isinstance(workflow, str):
            content = workflow.encode("utf-8")
        else:
            content = workflow
        data = {"flow_name": flow_name}
        if tag is not None:
            data["tag"] = tag
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        files = {"workflow": ("flow.yaml", content, "application/x-yaml")}
        return self._json("POST", "/runs/yaml", data=data, files=files, headers=headers)

    def submit_bundle(
        self, bundle: str | bytes | Path, *, tag: str | None = None
    ) -> dict[str, Any]:
        """Submit a spawn bundle (a path, or the document's text/bytes); returns
        ``{"run_id", "status"}`` (``PENDING_APPROVAL`` when it waits for an approval). Not
        retried: the route takes no idempotency key, so a retry could submit it twice."""
        if isinstance(bundle, Path):
            content = bundle.read_bytes()
        elif isinstance(bundle, str):
            content = bundle.encode("utf-8")
        else:
            content = bundle
        data = {"tag": tag} if tag is not None else {}
        files = {"bundle": ("bundle.yaml", content, "application/x-yaml")}
        return self._json("POST", "/runs/bundle", retry=False, data=data, files=files)

    def approve_run(self, run_id: str) -> dict[str, Any]:
        """Approve a ``PENDING_APPROVAL`` run (idempotent, so retried); returns the snapshot."""
        return self._json("POST", f"/runs/{run_id}/approve")

    def reject_run(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        """Reject a ``PENDING_APPROVAL`` run: it ends CANCELLED; returns the snapshot."""
        body = {"reason": reason} if reason else None
        return self._json("POST", f"/runs/{run_id}/reject", json=body)

    def get_run(self, run_id: str, include: list[str] | None = None) -> dict[str, Any]:
        """The run's snapshot; ``include=["records"]`` adds task records."""
        params = [("include", value) for value in include or []]
        return self._json("GET", f"/runs/{run_id}", params=params)

    def get_tasks(self, run_id: str) -> dict[str, Any]:
        """The run's tasks and task records."""
        return self._json("GET", f"/runs/{run_id}/tasks")

    def list_runs(
        self,
        *,
        status: str | None = None,
        flow: str | None = None,
        tag: str | None = None,
        limit: int | None = None,
        full: bool = False,
    ) -> list[dict[str, Any]]:
        """Run summaries, newest first."""
        params = _listing_query(full, status=status, flow=flow, tag=tag, limit=limit)
        return self._json("GET", "/runs", params=params)

    def list_runs_delta(
        self,
        *,
        status: str | None = None,
        flow: str | None = None,
        tag: str | None = None,
        limit: int | None = None,
        full: bool = False,
        updated_after: float | None = None,
        cursor: str | None = None,
        workflow_yaml_sha256: str | None = None,
    ) -> dict[str, Any]:
        """A delta page ``{"items", "next_cursor"}``: runs updated after ``updated_after``
        (epoch seconds, exclusive), newest first, continuing after ``cursor`` (a previous
        page's ``next_cursor``), optionally only runs of one workflow file."""
        params = _listing_query(
            full,
            status=status,
            flow=flow,
            tag=tag,
            limit=limit,
            updated_after=updated_after,
            cursor=cursor,
            workflow_yaml_sha256=workflow_yaml_sha256,
        )
        if not any(key in params for key in ("updated_after", "cursor", "workflow_yaml_sha256")):
            params["cursor"] = ""  # an empty cursor: the first delta page
        return self._json("GET", "/runs", params=params)

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Ask for the run to be cancelled (idempotent); returns the snapshot."""
        return self._json("POST", f"/runs/{run_id}/cancel")

    def list_workers(
        self,
        *,
        state: list[str] | None = None,
        include_stopped: bool | None = None,
        scope: str | None = None,
        include_hidden: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Workers with their states. ``scope`` ``active`` (RUNNING and IDLE, the server's
        default) or ``all``; ``state`` keeps only those states (then the default scope is
        ``all``); ``include_stopped=False`` leaves STOPPED workers out; hidden workers only
        with ``include_hidden``; at most ``limit`` (1..500, default 100)."""
        params: list[tuple[str, Any]] = [("state", value) for value in state or []]
        if include_stopped is not None:
            params.append(("include_stopped", "true" if include_stopped else "false"))
        if scope is not None:
            params.append(("scope", scope))
        if include_hidden:
            params.append(("include_hidden", "true"))
        if limit is not None:
            params.append(("limit", limit))
        return self._json("GET", "/workers", params=params)

    def set_worker_hidden(self, worker_id: str, hidden: bool) -> dict[str, Any]:
        """Hide a worker from the default ``/workers`` listing (or show it again); returns
        ``{worker_id, hidden, updated_at}``."""
        return self._json("PATCH", f"/workers/{worker_id}", json={"hidden": hidden})

    # -- dead letters ------------------------------------------------------------------------

    def list_dlq(
        self,
        *,
        tag: str | None = None,
        reason: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Dead letters, newest first (without their jobs)."""
        entries, _ = self.list_dlq_page(
            tag=tag, reason=reason, run_id=run_id, limit=limit, before=before
        )
        return entries

    def list_dlq_page(
        self,
        *,
        tag: str | None = None,
        reason: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
        before: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Like :meth:`list_dlq`, plus the ``before`` of the next page (``None``: no more)."""
        params = _dlq_params(tag, reason, run_id, limit, before)
        response = self._request("GET", "/dlq", retry=True, params=params)
        cursor = response.headers.get("Next-Cursor")
        return response.json(), int(cursor) if cursor and cursor.isdigit() else None

    def get_dlq(self, seq: int) -> dict[str, Any]:
        """One dead letter with its original job."""
        return self._json("GET", f"/dlq/{int(seq)}")

    def redrive_dlq(self, seq: int, *, new_run: bool = False) -> dict[str, Any]:
        """Queue a dead job again: a new attempt of its run, or a fresh run with ``new_run``.

        Not retried: a retry after a lost answer would be refused as already redriven.
        """
        params = {"new_run": "true"} if new_run else {}
        return self._json("POST", f"/dlq/{int(seq)}/redrive", params=params, retry=False)

    def redrive_dlq_bulk(
        self,
        *,
        tag: str | None = None,
        reason: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
        new_run: bool = False,
    ) -> dict[str, Any]:
        """Redrive what :meth:`list_dlq` lists with the same filters; returns the report."""
        params = _dlq_params(tag, reason, run_id, limit, None)
        if new_run:
            params["new_run"] = "true"
        return self._json("POST", "/dlq/redrive", params=params, retry=False)

    def delete_dlq(self, seq: int) -> dict[str, Any]:
        """Remove a dead letter."""
        return self._json("DELETE", f"/dlq/{int(seq)}", retry=False)

    # -- plugin registry (0.5.1 names) ------------------------------------------------------

    def list_wheels(self) -> list[dict[str, Any]]:
        """Every wheel in the plugin registry."""
        return self._json("GET", "/wheels")

    def list_wheel_history(
        self, limit: int = 100, wheel_name: str | None = None, action: str | None = None
    ) -> list[dict[str, Any]]:
        """Publish, delete and pin events, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if wheel_name:
            params["wheel_name"] = wheel_name
        if action:
            params["action"] = action
        return self._json("GET", "/wheels/history", params=params)

    def upload_wheel(
        self,
        filename: str,
        data: bytes,
        *,
        tags: list[str] | None = None,
        replace: bool = True,
        signature: dict[str, str] | None = None,
        allow_no_entry_points: bool = False,
    ) -> dict[str, Any]:
        """Publish a wheel (needs an operator key); ``signature`` from ``sign_wheel``."""
        form = {
            "tags": ",".join(tags or []),
            "replace": "true" if replace else "false",
            "allow_no_entry_points": "true" if allow_no_entry_points else "false",
        }
        if signature is not None:
            form["signature"] = json.dumps(signature)
        files = {"wheel": (filename, data, "application/octet-stream")}
        return self._json("POST", "/wheels", retry=False, data=form, files=files)

    def delete_wheel(self, wheel_name: str) -> dict[str, Any]:
        """Remove one wheel; workers go back to the pinned or previous version."""
        return self._json("DELETE", f"/wheels/{quote(wheel_name, safe='')}", retry=False)

    def pin_wheel(self, distribution: str, version: str | None) -> dict[str, Any]:
        """Pin ``distribution`` to ``version`` (``None`` removes the pin)."""
        body = {"distribution": distribution, "version": version}
        return self._json("POST", "/wheels/pin", retry=False, json=body)

    def download_wheel(self, wheel_name: str) -> bytes:
        """The bytes of a stored wheel."""
        path = f"/wheels/{quote(wheel_name, safe='')}"
        return self._request("GET", path, retry=True).content

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        return self._request("GET", "/metrics", retry=True).text

    # -- following a run -------------------------------------------------------------------

    def watch_run(
        self,
        run_id: str,
        *,
        include_records: bool = False,
        timeout_sec: float | None = None,
        reconnects: int = 5,
        since_id: int | None = None,
    ) -> Iterator[SseEvent]:
        """Server-sent events of the run until its terminal snapshot.

        Events are ``snapshot`` (``data`` is the run), ``heartbeat`` while nothing changes,
        and, before a stream ends early, ``timeout``, ``deleted``, ``error`` or ``closing``.
        A dropped connection, a gateway that shuts down or ends the stream at its own time
        limit is resumed with ``Last-Event-ID`` (at most ``reconnects`` failures in a row), so
        no snapshot is repeated or lost. Stops after ``timeout_sec`` when given, or when the
        run is deleted. ``since_id`` resumes after that event id (only later snapshots).
        """
        last_id: str | None = None if since_id is None else str(since_id)
        failures = 0
        params: dict[str, Any] = {}
        if include_records:
            params["include"] = "records"
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                params["timeout_sec"] = remaining
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                with self._http.stream(
                    "GET",
                    f"/runs/{run_id}/watch",
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=None),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code in RETRYABLE_STATUS:
                            raise httpx.RemoteProtocolError("server unavailable")
                        raise PyocoHttpError(response.status_code, _body(response))
                    received = False
                    for event in _parse_sse(response.iter_lines()):
                        received = True
                        if event.id is not None:
                            last_id = event.id
                        if event.event in ("error", "closing"):
                            raise httpx.RemoteProtocolError(f"stream ended: {event.event}")
                        failures = 0
                        yield event
                        if event.event == "deleted" or (
                            event.event == "snapshot"
                            and is_terminal((event.data or {}).get("status"))
                        ):
                            return
                    if not received:
                        return  # an empty stream: the run ended at or before ``Last-Event-ID``
            except httpx.TransportError as exc:
                failures += 1
                if failures > reconnects:
                    raise PyocoConnectionError(self.base_url, exc) from None
                time.sleep(min(self.backoff * 2**failures, 5.0))

    def snapshots(self, run_id: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Each new snapshot of the run until it is terminal (the last one yielded).

        Follows the run's watch stream; against a gateway without ``/watch`` it polls
        ``GET /runs/{id}`` instead. Raises :class:`WaitTimeout` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        stream = True
        pause = 0.1
        last: dict[str, Any] | None = None
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.1)
            if stream:
                try:
                    for event in self.watch_run(run_id, timeout_sec=remaining):
                        if event.event != "snapshot":
                            continue
                        last = event.data
                        yield last
                        if is_terminal(last.get("status")):
                            return
                except PyocoHttpError as exc:
                    if not _endpoint_missing(exc):
                        raise
                    stream = False
                except PyocoConnectionError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
            snapshot = self.get_run(run_id)
            if snapshot != last:
                last = snapshot
                yield snapshot
            if is_terminal(snapshot.get("status")):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"run {run_id} is still {snapshot.get('status')}")
            if not stream:
                time.sleep(pause)
                pause = min(pause * 1.5, 1.0)

    def wait(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run is terminal and return its final snapshot.

        Raises :class:`WaitTimeout` after ``timeout`` seconds.
        """
        final: dict[str, Any] = {}
        for snapshot in self.snapshots(run_id, timeout):
            final = snapshot
        return final


def _endpoint_missing(exc: PyocoHttpError) -> bool:
    """True for "this gateway has no such endpoint" (not for "no such run")."""
    return exc.status == 405 or (exc.status == 404 and exc.err_id != "ERR-PYOCO-0005")


def _dlq_params(
    tag: str | None, reason: str | None, run_id: str | None, limit: int | None, before: int | None
) -> dict[str, Any]:
    pairs = (("tag", tag), ("reason", reason), ("run_id", run_id), ("limit", limit))
    params = {key: value for key, value in pairs if value is not None}
    if before is not None:
        params["before"] = before
    return params


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text[:500] or response.reason_phrase}


class SseParser:
    """Reads a ``text/event-stream`` line by line: :meth:`feed` answers the event a blank line
    completes (comments skipped, ``data`` decoded from JSON when it is JSON)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.event_name, self.event_id = "message", None
        self.data_lines: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its end); the completed event, if this line ends one."""
        if line == "":
            event = None
            if self.data_lines:
                raw = "\n".join(self.data_lines)
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = raw
                event = SseEvent(event=self.event_name, data=data, id=self.event_id, raw=raw)
            self._reset()
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event_name = value
        elif name == "data":
            self.data_lines.append(value)
        elif name == "id":
            self.event_id = value
        return None


def _parse_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    parser = SseParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


def _listing_query(full: bool, **filters: Any) -> dict[str, Any]:
    """``GET /runs`` query parameters: the filters that are set, plus ``include=full``."""
    params = {key: value for key, value in filters.items() if value is not None}
    if full:
        params["include"] = "full"
    return params
