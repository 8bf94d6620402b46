"""POST a webhook for every FAILED pyoco-server run (``pyoco_run_finished``), with retries."""

from .plugin import FailureWebhook, WebhookConfig

__all__ = ["FailureWebhook", "WebhookConfig"]
__version__ = "0.1.0"
