"""Makes ``import rich`` fail, as in a plain ``pip install pyoco-server`` (rich is no dependency
of ours; a development install has it through schemathesis, and structlog imports it when it
is there). ``benchmarks/worker_memory.py --without-rich`` puts this directory on the worker's
``PYTHONPATH``."""

raise ImportError("rich is hidden by benchmarks/without_rich (a plain install has no rich)")
