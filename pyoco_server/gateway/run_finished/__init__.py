"""The ``pyoco_run_finished`` hook, called once a run's terminal snapshot is stored."""
