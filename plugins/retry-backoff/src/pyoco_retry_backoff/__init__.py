"""Retry runs whose tasks raised, with exponential backoff, before they go to the DLQ."""

from .backoff import BackoffPolicy
from .plugin import RetryBackoff

__all__ = ["BackoffPolicy", "RetryBackoff"]
__version__ = "0.1.0"
