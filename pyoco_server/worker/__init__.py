"""The worker host: pulls jobs, runs their flows in execution processes, reports progress.

Modules, in the order a job meets them:

* :mod:`.consumer` — durable pull consumers per tag, slot reservation, :class:`Delivery`;
* :mod:`.runner` — one job from message to queue action;
* :mod:`.snapshots` — the change functions every snapshot write goes through;
* :mod:`.pool` / :mod:`.child` / :mod:`.execution` / :mod:`.trace_bridge` — execution
  processes, what runs inside them, and how pyoco's trace hooks become progress;
* :mod:`.protocol` — the host ⇄ execution process wire format;
* :mod:`.heartbeats` — run heartbeats, progress writes, ``in_progress`` acks;
* :mod:`.dispositions` — ``pyoco_failure_disposition`` and dead letters;
* :mod:`.record` — the worker's liveness record in KV ``pyoco_workers``;
* :mod:`.host` — start-up, pullers, signals, graceful shutdown;
* :mod:`.supervisor` — the worker that ``pyoco-server up --with-worker`` keeps running.
"""
