"""Gateway side of child runs: fan-in and cancel cascade (:mod:`.join`), listing a parent's
children, spawn bundles and their approval."""
