"""Built-in plugin ``dlq``: the failure-disposition table (docs/worker.md, "Failures")."""

from __future__ import annotations

from ..config import Settings
from ..hookspecs import hookimpl
from ..model import FAILED, Disposition, Failure

#: Delay before a job is redelivered after a transient (NATS) error.
TRANSIENT_NAK_DELAY_SEC = 2.0


@hookimpl(trylast=True)
def pyoco_failure_disposition(failure: Failure, settings: Settings) -> Disposition:
    """Map a failure to ACK / NAK with delay / TERM, the snapshot status and a DLQ reason.

    ============================  ========  ==============  ==============================
    failure                       snapshot  queue action    DLQ reason
    ============================  ========  ==============  ==============================
    invalid_job                   FAILED    TERM            ``invalid_job``
    flow_not_found                FAILED    ACK             ``flow_not_found``
    policy_violation              FAILED    ACK             ``policy_violation``
    execution_error               FAILED    ACK             ``execution_error`` (if enabled)
    transient                     —         NAK 2 s         —
    transient, last delivery      FAILED    TERM            ``max_deliveries``
    ============================  ========  ==============  ==============================
    """
    if failure.kind == "invalid_job":
        return Disposition("term", FAILED, "invalid_job")
    if failure.kind == "transient":
        if failure.last_delivery:
            return Disposition("term", FAILED, "max_deliveries")
        return Disposition("nak", None, None, delay_sec=TRANSIENT_NAK_DELAY_SEC)
    if failure.kind == "execution_error":
        reason = "execution_error" if settings.dlq_publish_execution_error else None
        return Disposition("ack", FAILED, reason)
    return Disposition("ack", FAILED, failure.kind)
