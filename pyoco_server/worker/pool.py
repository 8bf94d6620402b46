"""The host's execution processes: long-lived children that each run one flow at a time.

Why processes: pyoco swaps the process-global ``sys.stdout`` during a run, writes
``./artifacts`` in the working directory, keeps module-level task objects and cannot pre-empt a
running task. A child per concurrent run contains all of that and can be killed (hard stop).
Why long-lived: starting Python and importing pyoco costs ~100 ms, far more than a short run, so
children are started once and replaced only when one dies.
Why a fork server: one fresh interpreter (never a ``fork`` of this process, which has an event
loop and threads) imports pyoco, the plugins and the resolver once and forks every execution
process; they share those pages copy-on-write (a few MiB per further slot instead of ~15) and a
replacement starts in milliseconds. See :mod:`.child` and docs/worker.md ("Memory").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import PyocoServerError
from ..log import get_logger
from ..model import FAILED
from .protocol import HEADER, Outcome, check_length, decode, encode

log = get_logger(__name__)

#: How long a new execution process may take to import everything and report ready.
STARTUP_TIMEOUT_SEC = 60.0
#: Waits between attempts to replace an execution process that keeps failing to start.
RESPAWN_DELAYS_SEC = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The host's end: the next message, or ``None`` when the process closed its end."""
    try:
        header = await reader.readexactly(HEADER.size)
        (length,) = HEADER.unpack(header)
        check_length(length)
        return decode(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class ExecutionProcessError(PyocoServerError):
    """An execution process could not start (for example a bad ``--flow-resolver``)."""

    number = 23

    def __init__(self, message: str, number: int | None = None) -> None:
        super().__init__(message)
        if number is not None:
            self.number = number


class RunExecution:
    """One job running in an execution process: live task states, then the outcome."""

    def __init__(self, run_id: str, process: ExecutionProcess) -> None:
        self.run_id = run_id
        self.process = process
        self.tasks: dict[str, str] = {}
        self.task_records: dict[str, Any] = {}
        self.aborted = False
        self._listeners: list[Callable[[], None]] = []
        self._spawn_listeners: list[Callable[[dict[str, Any]], None]] = []
        self._outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._cancel_sent = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def on_progress(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever new task states arrive."""
        self._listeners.append(listener)

    def on_spawn(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(request)`` whenever a task of the run spawns a child run."""
        self._spawn_listeners.append(listener)

    def request_cancel(self) -> None:
        """Ask pyoco to cancel the run cooperatively (running tasks finish); sent once."""
        if not self._cancel_sent and not self._outcome.done():
            self._cancel_sent = True
            self.process.send({"type": "cancel", "run_id": self.run_id})

    def abort(self) -> None:
        """Hard stop: kill the execution process; the outcome follows when it has exited."""
        if not self._outcome.done():
            self.aborted = True
            self.process.kill()

    @property
    def finished(self) -> bool:
        """True once the outcome is known."""
        return self._outcome.done()

    async def outcome(self) -> Outcome:
        return await self._outcome

    def _progress(self, message: dict[str, Any]) -> None:
        self.tasks = message.get("tasks") or {}
        self.task_records = message.get("task_records") or {}
        for listener in self._listeners:
            listener()

    def _spawned(self, message: dict[str, Any]) -> None:
        for listener in self._spawn_listeners:
            listener(message.get("request") or {})

    def _finish(self, outcome: Outcome) -> None:
        if not self._outcome.done():
            self._outcome.set_result(outcome)


class ForkedProcess:
    """An execution process as the host sees it: forked by the fork server, which reports
    its exit (the host is not its parent, so it cannot wait for it itself)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class ExecutionProcess:
    """One execution process, its socket, and the run it is executing (if any)."""

    def __init__(
        self,
        index: int,
        process: ForkedProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.index = index
        self.process = process
        self.reader = reader
        self.writer = writer
        self.current: RunExecution | None = None
        self.alive = True
        #: The pool's configuration generation this process was started with.
        self.generation = 0
        #: True once the pool retired it (its configuration is outdated): it exits quietly.
        self.retired = False
        #: Called with this process when it finished a run and can take another.
        self.on_idle: Callable[[ExecutionProcess], None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict[str, Any]) -> None:
        if self.alive and not self.writer.is_closing():
            self.writer.write(encode(message))

    def begin(self, job: dict[str, Any]) -> RunExecution:
        execution = RunExecution(job["run_id"], self)
        self.current = execution
        self.send({"type": "run", "job": job})
        return execution

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    async def read_loop(self) -> None:
        """Dispatch messages until the child closes its socket (exit, crash or kill)."""
        while True:
            try:
                message = await read_message(self.reader)
            except Exception as exc:
                log.error("execution_process_protocol_error", pid=self.pid, error=str(exc))
                self.kill()
                message = None
            if message is None:
                break
            current = self.current
            if current is None or message.get("run_id") != current.run_id:
                continue
            if message["type"] == "progress":
                current._progress(message)
            elif message["type"] == "spawn":
                current._spawned(message)
            elif message["type"] == "done":
                self.current = None
                current._finish(Outcome.from_message(message))
                if self.on_idle is not None:
                    self.on_idle(self)
        self.alive = False
        self.writer.close()
        code = await self.process.wait()
        current, self.current = self.current, None
        if current is not None:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            current._finish(
                Outcome(
                    FAILED,
                    "execution_error",
                    f"the execution process (pid {self.pid}) died ({how}) while running the flow",
                    current.tasks,
                    current.task_records,
                    time.time(),
                )
            )

    async def close(self, timeout: float) -> None:
        """Ask the child to exit (close its socket); kill it if it has not after ``timeout``."""
        self.writer.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)


class ForkServerProcess:
    """The host's handle on one fork server (``python -m pyoco_server.worker.child``)."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        control: socket.socket,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        generation: int,
    ) -> None:
        self.process = process
        self.control = control
        self.reader = reader
        self.writer = writer
        self.generation = generation
        self.alive = True
        self.children: dict[int, ForkedProcess] = {}
        self._forked: asyncio.Future[ForkedProcess] | None = None
        self._lock = asyncio.Lock()
        self._reading: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, config: dict[str, Any], generation: int) -> ForkServerProcess:
        """Start a fork server, send its configuration and wait until it reports ready."""
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pyoco_server.worker.child",
                str(theirs.fileno()),
                str(os.getpid()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        # Requests carry a socket (SCM_RIGHTS), so they go out through a duplicate of ours
        # that the event loop's transport does not own.
        control = ours.dup()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        server = cls(process, control, reader, writer, generation)
        writer.write(encode({"type": "config", **config}))
        try:
            first = await asyncio.wait_for(read_message(reader), STARTUP_TIMEOUT_SEC)
        except asyncio.TimeoutError:
            first = {"type": "fatal", "error": f"not ready after {STARTUP_TIMEOUT_SEC:.0f}s"}
        if first is None or first.get("type") != "ready":
            await server.close(0)
            if first is None:
                first = {"type": "fatal", "error": f"exited with code {process.returncode}"}
            detail = first.get("error") or f"unexpected message {first.get('type')!r}"
            raise ExecutionProcessError(
                f"execution process could not start: {detail}", first.get("number")
            )
        server._reading = asyncio.get_running_loop().create_task(server._read_loop())
        return server

    @property
    def pid(self) -> int:
        return self.process.pid

    async def fork(self, index: int) -> ExecutionProcess:
        """A new execution process with its own socket, once it reported ready."""
        ours, theirs = socket.socketpair()
        try:
            async with self._lock:
                if not self.alive:
                    raise ExecutionProcessError("the fork server has exited")
                self._forked = asyncio.get_running_loop().create_future()
                frame = encode({"type": "fork", "index": index})
                if socket.send_fds(self.control, [frame], [theirs.fileno()]) != len(frame):
                    raise ExecutionProcessError("the fork server is not reading its socket")
                theirs.close()
                handle = await asyncio.wait_for(self._forked, STARTUP_TIMEOUT_SEC)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        child = ExecutionProcess(index, handle, reader, writer)
        try:
            first = await asyncio.wait_for(read_message(reader), STARTUP_TIMEOUT_SEC)
        except asyncio.TimeoutError:
            first = None
        if first is None or first.get("type") != "ready":
            child.kill()
            writer.close()
            raise ExecutionProcessError(f"execution process {handle.pid} did not start")
        return child

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await read_message(self.reader)
            except Exception as exc:
                log.error("fork_server_protocol_error", pid=self.pid, error=str(exc))
                message = None
            if message is None:
                break
            if message["type"] == "forked":
                handle = self.children[int(message["pid"])] = ForkedProcess(int(message["pid"]))
                if self._forked is not None and not self._forked.done():
                    self._forked.set_result(handle)
            elif message["type"] == "exited":
                exited = self.children.pop(int(message["pid"]), None)
                if exited is not None:
                    exited.exited(int(message["code"]))
        # The fork server is gone; its execution processes died with it (PR_SET_PDEATHSIG).
        self.alive = False
        if self._forked is not None and not self._forked.done():
            self._forked.set_exception(ExecutionProcessError("the fork server has exited"))
        for handle in self.children.values():
            handle.exited(-signal.SIGKILL)
        self.children.clear()

    async def close(self, timeout: float) -> None:
        """Close the socket (the fork server exits, and with it any process it forked);
        kill it if it has not exited after ``timeout``."""
        self.control.close()
        self.writer.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
        if self._reading is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reading), 5)


class ExecutionPool:
    """``size`` execution processes; :meth:`run` hands a job to an idle one."""

    def __init__(self, size: int, config: dict[str, Any]) -> None:
        self.size = size
        self.config = config
        self.children: dict[int, ExecutionProcess] = {}
        self._idle: asyncio.Queue[ExecutionProcess] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Bumped by :meth:`use_config`; processes of an older generation are retired.
        self.generation = 0
        #: Fork servers by generation: the current one, and older ones until their last
        #: execution process has exited (closing a fork server ends its processes).
        self._servers: dict[int, ForkServerProcess] = {}
        self._server_lock = asyncio.Lock()

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children.values() if child.alive]

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _adopt(self, child: ExecutionProcess, generation: int) -> None:
        self.children[child.index] = child
        child.generation = generation
        child.on_idle = self._on_idle
        self._spawn_task(self._watch(child))
        self._on_idle(child)

    def _on_idle(self, child: ExecutionProcess) -> None:
        if child.generation != self.generation:
            self._retire(child)
        else:
            self._idle.put_nowait(child)

    def _retire(self, child: ExecutionProcess) -> None:
        """Let an idle, outdated process exit; :meth:`_watch` starts its replacement."""
        if not child.retired:
            child.retired = True
            self._spawn_task(child.close(5))

    def use_config(self, config: dict[str, Any]) -> None:
        """Start execution processes with ``config`` from now on, switching between runs:
        idle processes are replaced at once, busy ones when their run has ended (a running
        flow is never interrupted)."""
        self.config = config
        self.generation += 1
        while not self._idle.empty():
            child = self._idle.get_nowait()
            if child.alive and child.current is None:
                self._retire(child)
        log.info("execution_processes_switching", generation=self.generation)

    @property
    def fork_server_pids(self) -> list[int]:
        return [server.pid for server in self._servers.values() if server.alive]

    async def _server(self, generation: int) -> ForkServerProcess:
        """The fork server of ``generation``'s configuration, started (again) if needed."""
        async with self._server_lock:
            server = self._servers.get(generation)
            if server is None or not server.alive:
                if server is not None:
                    log.warning("fork_server_exited", pid=server.pid, generation=generation)
                server = await ForkServerProcess.start(self.config, generation)
                self._servers[generation] = server
            return server

    def _close_outdated_servers(self) -> None:
        """Close fork servers of older configurations once none of their processes lives."""
        for generation, server in list(self._servers.items()):
            if generation == self.generation or server.children:
                continue
            del self._servers[generation]
            self._spawn_task(server.close(5))

    async def _start_process(self, index: int, generation: int) -> ExecutionProcess:
        server = await self._server(generation)
        return await server.fork(index)

    async def start(self) -> None:
        """Start the fork server and every process; raise :class:`ExecutionProcessError` if
        they cannot start."""
        await self._server(self.generation)
        results = await asyncio.gather(
            *(self._start_process(index, self.generation) for index in range(self.size)),
            return_exceptions=True,
        )
        started = [child for child in results if isinstance(child, ExecutionProcess)]
        errors = [error for error in results if isinstance(error, BaseException)]
        if errors:
            await asyncio.gather(*(child.close(5) for child in started))
            await asyncio.gather(*(server.close(5) for server in self._servers.values()))
            raise errors[0]
        for child in started:
            self._adopt(child, self.generation)
        log.info(
            "execution_processes_started", pids=self.pids, fork_server_pids=self.fork_server_pids
        )

    async def _watch(self, child: ExecutionProcess) -> None:
        await child.read_loop()
        if self._stopping.is_set():
            return
        if not child.retired:
            log.warning("execution_process_exited", pid=child.pid, code=child.process.returncode)
        self._close_outdated_servers()
        await self._respawn(child.index)

    async def _respawn(self, index: int) -> None:
        for attempt in range(1_000_000):
            if self._stopping.is_set():
                return
            generation = self.generation
            try:
                child = await self._start_process(index, generation)
            except Exception as exc:
                delay = RESPAWN_DELAYS_SEC[min(attempt, len(RESPAWN_DELAYS_SEC) - 1)]
                log.error(
                    "execution_process_start_failed",
                    error=str(exc),
                    retry_in_sec=delay,
                    err_id="ERR-PYOCO-0023",
                    msg_id="MSG-PYOCO-0023",
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            if self._stopping.is_set():
                await child.close(5)
                return
            log.info("execution_process_replaced", pid=child.pid)
            self._adopt(child, generation)
            return

    async def run(self, job: dict[str, Any]) -> RunExecution:
        """Start ``job`` on an idle process (waits for one if all are busy or restarting)."""
        while True:
            child = await self._idle.get()
            if child.alive and child.current is None and child.generation == self.generation:
                return child.begin(job)
            if child.alive and child.current is None:
                self._retire(child)

    def stop_replacing(self) -> None:
        """Do not replace processes that exit from now on (the host is shutting down)."""
        self._stopping.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop every process (they are idle by now, or get killed after ``timeout``)."""
        self._stopping.set()
        await asyncio.gather(
            *(child.close(timeout) for child in self.children.values() if child.alive),
            return_exceptions=True,
        )
        await asyncio.gather(
            *(server.close(timeout) for server in self._servers.values()),
            return_exceptions=True,
        )
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
