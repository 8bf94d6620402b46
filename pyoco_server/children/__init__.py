"""Child runs, the parts gateway and worker share: the run-tree KV changes and publishes
(:mod:`.tree`, :mod:`.changes`) and the reserved names of a bundle's ``spawn:`` tasks
(:mod:`.spawn_task`). The task-side API (``spawn``/``wait``) lives in ``worker/children``."""
