"""Error identifiers (listed in docs/error-ids.md) and the exception types that carry them."""

from __future__ import annotations

from dataclasses import dataclass

ERROR_MESSAGES: dict[int, str] = {
    2: "invalid request or workflow YAML",
    3: "NATS unavailable",
    4: "publish failed and the orphan snapshot could not be removed",
    5: "run not found",
    6: "flow not found",
    7: "execution failed",
    8: "terminal snapshot could not be written",
    9: "in_progress ACK failed",
    10: "snapshot too large even after compaction",
    11: "DLQ publish failed",
    12: "invalid job",
    13: "invalid configuration",
    14: "API key required",
    15: "API key invalid or revoked",
    16: "workflow YAML too large",
    17: "plugin could not be loaded",
    18: "API key not found",
    19: "request body too large",
    20: "no such endpoint or method",
    21: "a request with this Idempotency-Key is still in progress",
    22: "internal server error",
    23: "worker execution process could not start",
    28: "dead-letter entry not found",
    29: "dead letter cannot be redriven",
    30: "run lost: its worker stopped heartbeating or its job exhausted MaxDeliver",
    31: "worker id already in use by a live worker",
    32: "worker not found",
    36: "run is not awaiting approval",
    40: "only an operator may change the plugin registry",
    41: "plugin wheel version is not newer than the registry's latest",
    42: "plugin wheel rejected by preflight",
    43: "plugin wheel not found",
    44: "plugin wheel refused by the worker: signature or checksum",
    45: "plugin wheel could not be installed on the worker",
    46: "schedule not found",
    47: "schedule limit reached",
    48: "schedule slot not fired: creating API key revoked or workflow YAML refused",
    50: "a `pyoco_run_finished` plugin raised or ran longer than 60 s (the run is unaffected)",
}


def err_id(number: int) -> str:
    """Return the ``ERR-PYOCO-nnnn`` identifier for ``number``."""
    return f"ERR-PYOCO-{number:04d}"


def msg_id(number: int) -> str:
    """Return the ``MSG-PYOCO-nnnn`` identifier paired with ``err_id(number)``."""
    return f"MSG-PYOCO-{number:04d}"


class PyocoServerError(Exception):
    """Base class of every error pyoco-server raises on purpose; carries an error number."""

    number: int = 2

    @property
    def err_id(self) -> str:
        return err_id(self.number)

    @property
    def msg_id(self) -> str:
        return msg_id(self.number)


class ConfigError(PyocoServerError):
    """An invalid configuration value; names the variable (or flag) and the accepted form."""

    number = 13

    def __init__(self, name: str, value: object, expected: str) -> None:
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"{name}={value!r} is invalid: expected {expected}")


class PluginLoadError(PyocoServerError):
    """A plugin that was asked for could not be found, imported or validated."""

    number = 17

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin = plugin
        self.reason = reason
        super().__init__(f"plugin {plugin!r}: {reason}")


@dataclass
class PolicyViolation(PyocoServerError):
    """Raised by ``pyoco_check_workflow_yaml`` implementations to reject a workflow YAML.

    ``reason`` is a short machine-readable code (``forbidden_key``, ``callable_not_allowed``…),
    ``detail`` a sentence for people and ``key`` the offending key, callable or env name.
    """

    reason: str
    detail: str
    key: str | None = None

    number = 2

    def __post_init__(self) -> None:
        super().__init__(f"{self.reason}: {self.detail}")

    def as_dict(self) -> dict[str, str | None]:
        return {"reason": self.reason, "detail": self.detail, "key": self.key}
