"""Which workers ``GET /workers`` lists: scope, state and the operators' ``hidden`` flag
(``PATCH /workers/{worker_id}``), kept apart from the records the workers write."""
