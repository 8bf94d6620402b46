"""The signed plugin registry shared by the gateway, the client and the workers.

* :mod:`.preflight` — what makes an uploaded file an acceptable plugin wheel (the client runs
  it before uploading, the gateway again before storing);
* :mod:`.signing` — ed25519 key pairs, wheel signatures, the workers' trusted keys;
* :mod:`.records` — the registry's documents (releases, pins, history events);
* :mod:`.store` — the registry in NATS: an Object Store bucket for the wheels, a KV bucket per
  distribution document and one for the history.
"""
