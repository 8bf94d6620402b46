"""Hook specifications of pyoco-server (pluggy project ``pyoco_server``).

Every customisation point is a hook named ``pyoco_*``. A plugin is a module (or object) with
functions decorated by :data:`hookimpl` whose names match the specifications below. Plugins are
discovered through the entry-point group ``pyoco_server``; see ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .config import Settings
    from .model import Disposition, Failure, ResolvedFlow, WorkflowContext

PROJECT_NAME = "pyoco_server"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------------------------
# Worker: turning a job into a flow
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def pyoco_resolve_flow(job: dict[str, Any], settings: Settings) -> ResolvedFlow | Any | None:
    """Turn a job into the pyoco ``Flow`` the worker executes.

    Called by the worker once per delivered job, after the job was validated and before the run
    is marked RUNNING.

    :param job: the job message as a dict: ``run_id``, ``flow_name``, ``tag``, ``tags``,
        ``params``, ``submitted_at`` and, for YAML runs, ``workflow_yaml`` (text),
        ``workflow_yaml_sha256`` and ``workflow_yaml_bytes``; ``tenant_id``/``api_key_id``
        when auth is on. Treat it as read-only.
    :param settings: the worker's :class:`~pyoco_server.config.Settings`.
    :return: a :class:`~pyoco_server.model.ResolvedFlow` (flow plus the params to run it with,
        e.g. after merging YAML ``flow.defaults``), a bare ``pyoco.Flow`` (run with the job's
        params), or ``None`` to let the next plugin try. Raise
        :class:`~pyoco_server.errors.PolicyViolation` to refuse the job as a policy violation.
        When every plugin returns ``None`` the run fails with ``flow_not_found``.

    **firstresult**: stops at the first non-``None`` result. Each call must build a fresh flow:
    pyoco tasks are mutable global objects, so do not re-wire shared task objects per job.
    """


# --------------------------------------------------------------------------------------------
# Gateway and worker: workflow YAML policy
# --------------------------------------------------------------------------------------------


@hookspec
def pyoco_check_workflow_yaml(
    document: dict[str, Any], raw: bytes, context: WorkflowContext
) -> None:
    """Accept or reject an uploaded single-flow ``flow.yaml``.

    Called by the gateway on ``POST /runs/yaml`` after the YAML was parsed safely and before
    anything is stored or queued, and by the worker again before the flow is built (defence in
    depth; ``context.where`` tells which).

    :param document: the parsed YAML mapping (``yaml.safe_load``). Read-only.
    :param raw: the uploaded bytes, exactly as received.
    :param context: a :class:`~pyoco_server.model.WorkflowContext` with ``settings``,
        ``flow_name``, ``tag``, ``tenant_id`` and ``where`` (``"gateway"`` or ``"worker"``).
    :return: ignored. To reject, raise :class:`~pyoco_server.errors.PolicyViolation` with a
        reason code, a human detail and the offending key, callable or env name; the gateway
        answers 422 with that reason, the worker fails the run with ``policy_violation``.

    All implementations run (any one can reject). The built-in ``yaml_policy`` plugin enforces
    the size cap, the schema, forbidden keys and the callable/env allow-lists.
    """


# --------------------------------------------------------------------------------------------
# Gateway and worker: snapshots
# --------------------------------------------------------------------------------------------


@hookspec
def pyoco_enrich_snapshot(
    snapshot: dict[str, Any], job: dict[str, Any] | None, event: str
) -> dict[str, Any] | None:
    """Add fields to a run snapshot before it is written to KV.

    Called whenever a snapshot is written: by the gateway when a run is submitted or a cancel
    is requested, and by the worker when it starts, as tasks progress, on heartbeats and when
    it finishes.

    :param snapshot: the snapshot about to be written. Read-only: return additions instead.
    :param job: the job the run came from (with ``workflow_yaml`` for YAML runs), or ``None``
        when the writer no longer has it.
    :param event: why the snapshot is written: ``submitted``, ``started``, ``progress``,
        ``heartbeat``, ``finished``, ``cancelled``, ``failed``, ``cancel_requested`` (the
        gateway's cancel: the snapshot's status is then CANCELLED for a run that was PENDING,
        CANCELLING for one that was RUNNING) or ``retrying`` (an attempt failed and a
        ``pyoco_failure_disposition`` sent the run back to PENDING for a retry).
    :return: a dict of fields to merge into the snapshot, or ``None`` for nothing. Results of
        all plugins are merged in call order (later plugins win on a clash); the core fields
        (``run_id``, ``status``, ``tasks``, …) cannot be overridden.
    """


# --------------------------------------------------------------------------------------------
# Worker: failures
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def pyoco_failure_disposition(failure: Failure, settings: Settings) -> Disposition | None:
    """Decide what happens to a job that failed in any way.

    Called by the worker when a job is invalid, its flow cannot be resolved, its YAML is
    rejected, a task raised, or a NATS operation failed transiently.

    :param failure: a :class:`~pyoco_server.model.Failure`: ``kind`` (``invalid_job``,
        ``flow_not_found``, ``policy_violation``, ``execution_error``, ``transient``), the
        ``error`` text, the ``job`` (``None`` if it was not valid JSON), ``num_delivered`` and
        ``max_deliver``.
    :param settings: the worker's settings.
    :return: a :class:`~pyoco_server.model.Disposition` — the queue action (``ack``, ``nak``
        with ``delay_sec``, ``term``), the snapshot status to write (``FAILED``; ``PENDING``
        together with ``nak`` to retry: the run waits, PENDING, for its redelivery; or ``None``
        to leave the snapshot alone) and the DLQ reason (``None`` for no dead letter) — or
        ``None`` to let the next plugin decide. Never combine ``nak`` with ``FAILED``: the
        redelivered job would find its run terminal and be ACKed without running.

    **firstresult**: stops at the first non-``None`` result. The built-in ``dlq`` plugin
    implements the table of docs/worker.md ("Failures") and runs last (``trylast``).
    """


# --------------------------------------------------------------------------------------------
# Gateway: schedules
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def pyoco_next_fire_time(spec: dict[str, Any], after: float) -> float | None:
    """Compute the first nominal fire time of a schedule strictly after ``after``.

    Called by the gateway when a schedule is created (to validate its trigger), whenever its
    dispatcher needs the next due time, for catch-up after downtime, for backfills and for the
    ``next_fire_times`` of ``GET /schedules/{id}``. Must be a pure function of its arguments:
    every gateway computes the same times and derives the same run ids from them.

    :param spec: the schedule's trigger as stored: ``kind`` (``once``, ``interval``, ``cron``
        or a kind a plugin adds), the kind's fields (``run_at``; ``interval_seconds`` and
        ``start_at``; ``cron`` and ``timezone``; or whatever the plugin's kind takes from the
        ``trigger`` object of ``POST /schedules``) and ``end_at`` (epoch seconds or ``None``).
        Times are UTC epoch seconds. Read-only.
    :param after: UTC epoch seconds; the answer must be strictly later.
    :return: the fire time in UTC epoch seconds (rounded to milliseconds), ``math.inf`` when
        the schedule never fires again (a past ``run_at``, after ``end_at``), or ``None`` when
        this plugin does not handle ``spec["kind"]`` (the next plugin is asked). Raise
        ``ValueError`` with a sentence for people when the spec is invalid (the gateway answers
        422 at creation).

    **firstresult**: stops at the first non-``None`` result. The built-in ``schedule_times``
    plugin handles ``once``, ``interval`` and ``cron`` (cron with the Debian-cron DST rules of
    the ``cronsim`` library).
    """


# --------------------------------------------------------------------------------------------
# Gateway: finished runs
# --------------------------------------------------------------------------------------------


@hookspec
def pyoco_run_finished(snapshot: dict[str, Any], settings: Settings) -> None:
    """A run reached a terminal status (``COMPLETED``, ``FAILED`` or ``CANCELLED``): archive
    it, notify someone.

    Called by a gateway, from a durable consumer (``pyoco_run_finished``, shared by every
    gateway of the system) on the runs bucket's stream, once the terminal snapshot is stored:
    a worker killed right after writing it cannot lose the call, and any number of gateways
    share the work (each terminal write goes to one of them). Runs that finished before the
    consumer was first created (the first start of a gateway with a plugin implementing this
    hook) are not replayed.

    :param snapshot: the final snapshot, as stored (a copy: read-only), with ``run_id``,
        ``attempt`` (a redriven run finishes again with a higher ``attempt``), ``status``,
        ``error``, ``tasks``, ``tenant_id``, …
    :param settings: the gateway's :class:`~pyoco_server.config.Settings`.
    :return: ignored.

    **At-least-once**: a gateway that stops or dies before acknowledging the call hands it to
    another (or its own next start), so the same run may come again; make the implementation
    idempotent by ``(run_id, attempt)``. Each implementation is called on its own, on a
    thread: one that raises is logged (``ERR-PYOCO-0050``) and neither stops the others nor
    touches the run, and one still running after 60 s is logged and no longer waited for. A
    terminal snapshot that is overwritten before any gateway read it (a redrive reopening the
    run within moments) is not delivered; its successor is.
    """
