"""Schedules: cron, interval and one-shot runs, fired exactly once per slot by any number of
gateways (issue 17; see docs/schedules.md).

* :mod:`.spec` validates requests; :mod:`.timing` asks the ``pyoco_next_fire_time`` hook for
  fire times and derives run ids; :mod:`.planner` decides what a look fires (catch-up);
* :mod:`.store` keeps definitions, states and YAML in KV; :mod:`.firing` fires one slot
  (gates, overlap, atomic create, publish); :mod:`.dispatcher` follows the definitions with a
  KV watch and fires what is due; :mod:`.repair` publishes jobs a dead gateway left behind;
* :mod:`.resources` are the HTTP endpoints, :mod:`.view` their answer, :mod:`.metrics` the
  Prometheus figures, :mod:`.service` ties them to the gateway.
"""
