"""Run retention: terminal runs older than ``PYOCO_RUN_RETENTION_SEC`` leave KV and the index."""
