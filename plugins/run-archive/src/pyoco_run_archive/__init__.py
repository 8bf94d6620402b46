"""Archive finished pyoco-server runs in a local SQLite file (``pyoco_run_finished``)."""

from .archive import RunArchive

__all__ = ["RunArchive"]
__version__ = "0.1.0"
