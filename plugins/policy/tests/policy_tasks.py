"""Task functions the test workflows call (``policy_tasks:...``)."""


def load(n: int = 3) -> list[int]:
    return list(range(n))


def report(load: list[int]) -> str:
    return f"{len(load)} rows"
