"""pyoco-server: a plugin-based distributed execution backend for pyoco workflows."""

__version__ = "0.1.0"
