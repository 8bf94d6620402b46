"""Value types shared by the gateway, the worker and plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .config import Settings

PENDING = "PENDING"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLING = "CANCELLING"
CANCELLED = "CANCELLED"
#: A parent run suspended until its child runs are terminal (holds no worker slot).
WAITING = "WAITING"
#: A spawn bundle's run waiting for ``POST /runs/{id}/approve`` (or ``reject``).
PENDING_APPROVAL = "PENDING_APPROVAL"

RUN_STATUSES = (
    PENDING,
    RUNNING,
    COMPLETED,
    FAILED,
    CANCELLING,
    CANCELLED,
    WAITING,
    PENDING_APPROVAL,
)
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})

FailureKind = Literal[
    "invalid_job", "flow_not_found", "policy_violation", "execution_error", "transient"
]
QueueAction = Literal["ack", "nak", "term"]


def is_terminal(status: str | None) -> bool:
    """True when ``status`` is COMPLETED, FAILED or CANCELLED."""
    return status in TERMINAL_STATUSES


@dataclass
class ResolvedFlow:
    """A flow ready to execute and the params to execute it with."""

    flow: Any
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowContext:
    """Where and for whom a workflow YAML is being checked (``pyoco_check_workflow_yaml``)."""

    settings: Settings
    flow_name: str | None = None
    tag: str | None = None
    tenant_id: str | None = None
    where: Literal["gateway", "worker"] = "gateway"


@dataclass(frozen=True)
class Failure:
    """A job that failed, as handed to ``pyoco_failure_disposition``."""

    kind: FailureKind
    error: str
    job: dict[str, Any] | None
    num_delivered: int
    max_deliver: int

    @property
    def last_delivery(self) -> bool:
        """True when JetStream will not deliver this job again after this attempt."""
        return self.num_delivered >= self.max_deliver


@dataclass(frozen=True)
class Disposition:
    """What the worker does with a failed job: queue action, snapshot status, dead letter.

    ``snapshot_status`` is ``FAILED`` (or another terminal status) to end the run, ``PENDING``
    with ``action="nak"`` to retry it after ``delay_sec``, or ``None`` to leave it alone.
    """

    action: QueueAction
    snapshot_status: str | None = None
    dlq_reason: str | None = None
    delay_sec: float | None = None
