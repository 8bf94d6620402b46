"""Execution processes and the fork server they come from.

``python -m pyoco_server.worker.child FD PARENT_PID`` is the fork server: it receives the
host's configuration over the socket ``FD``, builds the plugin manager (flows hold functions,
so they are resolved in the execution process, never pickled) and imports pyoco once, then
forks one execution process per request (``--concurrency`` of them, and a replacement when one
dies). Each execution process gets its own socket to the host, executes one job at a time and
streams progress and the outcome back. All of them ignore SIGINT/SIGTERM (the host decides
when runs stop); an execution process exits when the host closes its socket, and every one
dies with its parent (``PR_SET_PDEATHSIG``: host → fork server → execution processes).

It stays lean (docs/worker.md, "Memory"): nothing here imports asyncio, nats or structlog, which
together cost ~13 MiB per process; structlog is configured only when something loaded in the
process uses it (``--trace-plugins``, or a plugin or resolver module that imports it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import logging
import os
import queue
import select
import shutil
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from ..config import Settings
from ..errors import PyocoServerError
from ..model import FAILED
from .lifeline import die_with_parent
from .protocol import BlockingChannel, Outcome


def settings_to_wire(settings: Settings) -> dict[str, Any]:
    """Settings as JSON-safe data, without secrets an execution process does not need."""
    data = dataclasses.asdict(settings)
    data["nats_url"] = None
    data["auth_pepper"] = ""
    return data


def settings_from_wire(data: dict[str, Any]) -> Settings:
    names = {spec.name for spec in dataclasses.fields(Settings)}
    values = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in data.items()
        if key in names
    }
    return Settings(**values)


def _exit_now(code: int = 0) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _configure_stdlib_logging(settings: Settings) -> None:
    """Library warnings go to stderr at the host's level, as ``configure_logging`` sets it."""
    level = getattr(logging, settings.log_level)
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, force=True)


def _configure_structlog(settings: Settings, config: dict[str, Any]) -> Any:
    """The host's structlog set-up, with this process's context; returns ``get_logger``."""
    from ..log import configure_logging, get_logger, structlog

    configure_logging(settings, "pyoco-server:worker")
    structlog.contextvars.bind_contextvars(
        worker_id=config.get("worker_id"), process=f"exec-{config.get('index')}"
    )
    return get_logger


def _setup(config: dict[str, Any]) -> tuple[Settings, Any]:
    from ..plugins import PluginOptions, build_plugin_manager

    settings = settings_from_wire(config["settings"])
    _configure_stdlib_logging(settings)
    plugin_sync = config.get("plugin_paths") is not None  # pyoco-worker --plugin-sync
    # --plugin-sync logs (and loads cryptography) anyway; --trace-plugins is for debugging.
    get_logger = (
        _configure_structlog(settings, config) if plugin_sync or settings.trace_plugins else None
    )
    selection = config.get("plugins") or {}
    allow = selection.get("allow")
    also = selection.get("also")
    if plugin_sync:
        from .plugin_sync.plugin_set import activate, select_available

        activate(config["plugin_paths"])
        allow = select_available(allow)
        also = select_available(also)
    pm = build_plugin_manager(
        plugins=allow,
        disable=selection.get("disable") or (),
        also=also or (),
        options=PluginOptions(flow_resolver=config.get("flow_resolver")),
    )
    if get_logger is None and "structlog" in sys.modules:  # a plugin or resolver logs with it
        get_logger = _configure_structlog(settings, config)
    if settings.trace_plugins and get_logger is not None:
        from ..hook_trace import TRACE_LOGGER, enable_tracing

        enable_tracing(pm, get_logger(TRACE_LOGGER))
    return settings, pm


def _report_fatal(channel: BlockingChannel, exc: Exception) -> None:
    if isinstance(exc, PyocoServerError):
        channel.send({"type": "fatal", "number": exc.number, "error": str(exc)})
        return
    channel.send(
        {
            "type": "fatal",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    )


def run_jobs(
    channel: BlockingChannel, settings: Settings, pm: Any, work_root: str, index: int
) -> None:
    """An execution process's life: report ready, then execute jobs one at a time until the
    host closes the socket (the reader thread exits the process at once)."""
    from .execution import JobExecutor
    from .trace_bridge import ProgressReporter

    # A private directory per process; whatever a killed predecessor left behind goes.
    work_dir = os.path.join(work_root, f"exec-{index}")
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    os.chdir(work_dir)
    executor = JobExecutor(pm, settings, ProgressReporter(channel), work_dir)
    jobs: queue.Queue[dict[str, Any]] = queue.Queue()

    def read_commands() -> None:
        while True:
            try:
                message = channel.recv()
            except Exception:
                message = None
            if message is None:  # the host closed the socket or died: stop at once
                _exit_now(0)
                return
            if message["type"] == "run":
                jobs.put(message["job"])
            elif message["type"] == "cancel":
                executor.cancel(message["run_id"])

    threading.Thread(target=read_commands, name="pyoco-commands", daemon=True).start()
    channel.send({"type": "ready", "pid": os.getpid()})
    while True:
        job = jobs.get()
        try:
            outcome = executor.execute(job)
        except Exception as exc:  # a plugin bug, not the flow's: still report an outcome
            outcome = Outcome(FAILED, "execution_error", f"{type(exc).__name__}: {exc}")
        channel.send(outcome.as_message(job["run_id"]))


class ForkServer:
    """The single-threaded process (no event loop, no threads) execution processes are
    forked from: it imported pyoco, the plugins and the resolver once, so a new execution
    process starts in milliseconds and shares those pages copy-on-write."""

    def __init__(
        self, channel: BlockingChannel, settings: Settings, pm: Any, config: dict[str, Any]
    ) -> None:
        self.channel = channel
        self.settings = settings
        self.pm = pm
        self.work_root: str = config["work_dir"]

    def serve(self) -> int:
        """Fork on request and report exits until the host closes the socket."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        gc.freeze()  # what was imported stays shared: the collector never touches it again
        self.channel.send({"type": "ready", "pid": os.getpid()})
        while True:
            readable, _, _ = select.select([self.channel.sock, wake_read], [], [])
            if wake_read in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_read, 512):
                        pass
                self._report_exits()
            if self.channel.sock in readable:
                message, fds = self.channel.recv_with_fds()
                if message is None:  # the host is gone or stopping: children follow us
                    return 0
                if message.get("type") == "fork" and len(fds) == 1:
                    pid = self._fork(int(message["index"]), fds[0], (wake_read, wake_write))
                    self.channel.send({"type": "forked", "index": message["index"], "pid": pid})
                else:
                    for fd in fds:
                        os.close(fd)

    def _report_exits(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            self.channel.send({"type": "exited", "pid": pid, "code": code})

    def _fork(self, index: int, fd: int, own_fds: tuple[int, int]) -> int:
        server_pid = os.getpid()
        pid = os.fork()
        if pid:
            os.close(fd)
            return pid
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for own in own_fds:
                os.close(own)
            self.channel.sock.close()
            die_with_parent(signal.SIGKILL, expected_parent=server_pid)
            run_jobs(
                BlockingChannel(socket.socket(fileno=fd)),
                self.settings,
                self.pm,
                self.work_root,
                index,
            )
        except BaseException:
            traceback.print_exc()
        _exit_now(1)
        return 0  # not reached: _exit_now ends the process


def serve(channel: BlockingChannel) -> int:
    """The fork server: set up from the host's configuration, then fork on request."""
    config = channel.recv()
    if config is None or config.get("type") != "config":
        return 1
    try:
        settings, pm = _setup(config)
        for module in ("execution", "trace_bridge"):  # imported once, shared by every fork
            importlib.import_module(f"{__package__}.{module}")
        if threading.active_count() > 1:
            names = sorted(thread.name for thread in threading.enumerate())
            raise RuntimeError(
                "a plugin or the flow resolver started a thread while being imported "
                f"({', '.join(names)}); execution processes are forked from this process, "
                "and a process with threads cannot be forked safely: start threads in hooks"
            )
    except Exception as exc:
        _report_fatal(channel, exc)
        return 1
    return ForkServer(channel, settings, pm, config).serve()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m pyoco_server.worker.child FD PARENT_PID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL, expected_parent=int(argv[1]))
    sock = socket.socket(fileno=int(argv[0]))
    try:
        return serve(BlockingChannel(sock))
    except OSError:
        return 1


if __name__ == "__main__":
    _exit_now(main())
