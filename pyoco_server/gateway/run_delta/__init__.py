"""Delta listings of runs (``GET /runs?updated_after=&cursor=&workflow_yaml_sha256=``) and the
``updated_at`` ordering of the run index they and ``pyoco_runs_today_total`` are served from."""
