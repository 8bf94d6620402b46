"""``pyoco-worker --plugin-sync``: follow the plugin registry and run its plugins.

* :mod:`.installer` — verify a downloaded wheel (sha256, signature by a trusted key,
  preflight, platform, dependencies) and unpack it into a versioned directory of its own;
* :mod:`.status` — each synced plugin's state (ok / verifying / failed with reason), shown in
  the worker's record;
* :mod:`.plugin_set` — the set of plugin directories execution processes load, and the
  manifest that remembers it across restarts;
* :mod:`.sync` — the watch on the registry that ties them together.

The seam to the rest of the worker is small on purpose: the sync produces a
:class:`~.plugin_set.PluginSet` (directories for ``sys.path``); the host hands it to the
execution pool, which starts new execution processes with it between runs; an execution
process puts the directories on ``sys.path`` before building its plugin manager, so entry
points of synced wheels are found exactly like pip-installed ones.
"""
