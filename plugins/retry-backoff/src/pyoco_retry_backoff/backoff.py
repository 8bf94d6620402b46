"""The backoff schedule and its configuration from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

BASE_ENV = "PYOCO_RETRY_BASE_SEC"
FACTOR_ENV = "PYOCO_RETRY_FACTOR"
CAP_ENV = "PYOCO_RETRY_CAP_SEC"
MAX_ATTEMPTS_ENV = "PYOCO_RETRY_MAX_ATTEMPTS"


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name}={raw!r} is invalid: expected a number >= {minimum:g}")
    return value


@dataclass(frozen=True)
class BackoffPolicy:
    """Attempt ``n`` failing waits ``min(cap_sec, base_sec * factor ** (n - 1))`` seconds.

    ``max_attempts`` counts executions, the first one included: with 5, a run is executed at
    most 5 times and the 5th failure is final.
    """

    base_sec: float = 1.0
    factor: float = 2.0
    cap_sec: float = 60.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.base_sec <= 0:
            raise ValueError(f"{BASE_ENV} must be > 0, got {self.base_sec}")
        if self.factor < 1:
            raise ValueError(f"{FACTOR_ENV} must be >= 1, got {self.factor}")
        if self.cap_sec < self.base_sec:
            raise ValueError(f"{CAP_ENV} ({self.cap_sec}) must be >= {BASE_ENV} ({self.base_sec})")
        if self.max_attempts < 1:
            raise ValueError(f"{MAX_ATTEMPTS_ENV} must be >= 1, got {self.max_attempts}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BackoffPolicy:
        """Read ``PYOCO_RETRY_*``; an invalid value raises ``ValueError`` naming it."""
        environ = os.environ if environ is None else environ
        attempts = _number(environ, MAX_ATTEMPTS_ENV, cls.max_attempts, 1)
        if attempts != int(attempts):
            raise ValueError(
                f"{MAX_ATTEMPTS_ENV}={environ[MAX_ATTEMPTS_ENV]!r} is invalid: expected an integer"
            )
        return cls(
            base_sec=_number(environ, BASE_ENV, cls.base_sec, 0.001),
            factor=_number(environ, FACTOR_ENV, cls.factor, 1),
            cap_sec=_number(environ, CAP_ENV, cls.cap_sec, 0.001),
            max_attempts=int(attempts),
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(attempt - 1, 0)
        try:
            raw = self.base_sec * self.factor**exponent
        except OverflowError:
            return self.cap_sec
        return min(self.cap_sec, raw)
