"""The retry-backoff plugin, alone and loaded by a real gateway + worker (pyoco_system)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyoco_retry_backoff import BackoffPolicy, RetryBackoff

from pyoco_server.config import Settings
from pyoco_server.model import FAILED, PENDING, Disposition, Failure
from pyoco_server.testing import PyocoSystemError, plugin_listing

RESOLVER = f"{Path(__file__).with_name('retry_flows.py')}:resolve"
SETTINGS = Settings()

# -- the schedule and the decisions, on their own ---------------------------------------------


def test_delays_grow_exponentially_up_to_the_cap():
    policy = BackoffPolicy(base_sec=1, factor=2, cap_sec=5, max_attempts=9)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert policy.delay(10_000) == 5  # no overflow


def test_configuration_comes_from_the_environment_and_is_validated():
    policy = BackoffPolicy.from_env(
        {
            "PYOCO_RETRY_BASE_SEC": "0.5",
            "PYOCO_RETRY_FACTOR": "3",
            "PYOCO_RETRY_CAP_SEC": "10",
            "PYOCO_RETRY_MAX_ATTEMPTS": "4",
        }
    )
    assert policy == BackoffPolicy(0.5, 3.0, 10.0, 4)
    assert BackoffPolicy.from_env({}) == BackoffPolicy()
    for name, value in (
        ("PYOCO_RETRY_BASE_SEC", "soon"),
        ("PYOCO_RETRY_FACTOR", "0.5"),
        ("PYOCO_RETRY_MAX_ATTEMPTS", "2.5"),
        ("PYOCO_RETRY_MAX_ATTEMPTS", "0"),
        ("PYOCO_RETRY_CAP_SEC", "0.1"),  # below the base
    ):
        with pytest.raises(ValueError, match=name):
            BackoffPolicy.from_env({name: value})


def failure(kind: str, delivered: int, max_deliver: int = 20) -> Failure:
    job = {"run_id": "r1", "flow_name": "f", "params": {}}
    return Failure(kind, "boom", job, delivered, max_deliver)


def test_execution_errors_are_retried_until_the_last_attempt():
    plugin = RetryBackoff(BackoffPolicy(base_sec=2, factor=2, cap_sec=60, max_attempts=3))
    first = plugin.pyoco_failure_disposition(failure("execution_error", 1), SETTINGS)
    assert first == Disposition("nak", PENDING, None, delay_sec=2)
    second = plugin.pyoco_failure_disposition(failure("execution_error", 2), SETTINGS)
    assert second.delay_sec == 4
    last = plugin.pyoco_failure_disposition(failure("execution_error", 3), SETTINGS)
    assert last == Disposition("ack", FAILED, "execution_error")
    # JetStream's last delivery is final even below max_attempts
    capped = plugin.pyoco_failure_disposition(failure("execution_error", 2, 2), SETTINGS)
    assert capped.action == "ack" and capped.snapshot_status == FAILED
    quiet = Settings(dlq_publish_execution_error=False)
    assert plugin.pyoco_failure_disposition(failure("execution_error", 3), quiet).dlq_reason is None


def test_other_failures_are_left_to_the_builtin_table():
    plugin = RetryBackoff(BackoffPolicy())
    for kind in ("invalid_job", "flow_not_found", "policy_violation", "transient"):
        assert plugin.pyoco_failure_disposition(failure(kind, 1), SETTINGS) is None


def test_snapshot_shows_attempt_and_next_retry():
    plugin = RetryBackoff(BackoffPolicy(base_sec=2, factor=2, cap_sec=60, max_attempts=3))
    snapshot = {"run_id": "r1", "status": "RUNNING"}
    started = plugin.pyoco_enrich_snapshot(snapshot, None, "started")["retry"]
    assert (started["attempt"], started["next_retry_at"]) == (1, None)
    plugin.pyoco_failure_disposition(failure("execution_error", 1), SETTINGS)
    waiting = plugin.pyoco_enrich_snapshot({**snapshot, "retry": started}, None, "retrying")
    assert waiting["retry"]["attempt"] == 1 and waiting["retry"]["next_retry_at"] is not None
    again = plugin.pyoco_enrich_snapshot({**snapshot, **waiting}, None, "started")["retry"]
    assert (again["attempt"], again["next_retry_at"], again["last_error"]) == (2, None, "boom")
    # an operator's redrive (a new top-level attempt) starts counting again
    redriven = {**snapshot, "attempt": 2, "retry": again}
    assert plugin.pyoco_enrich_snapshot(redriven, None, "started")["retry"]["attempt"] == 1
    assert plugin.pyoco_enrich_snapshot(snapshot, None, "heartbeat") is None
    # a later failure that is not ours (here: NATS trouble) shows no stale retry details
    plugin.pyoco_failure_disposition(failure("execution_error", 1), SETTINGS)
    plugin.pyoco_failure_disposition(failure("transient", 2), SETTINGS)
    assert plugin.pyoco_enrich_snapshot(snapshot, None, "failed") is None


# -- through pyoco-server: pyoco-worker --plugins retry-backoff -------------------------------


def start(factory, env: dict[str, str], **options):
    return factory(plugins=["retry-backoff"], flow_resolver=RESOLVER, env=env, **options)


def test_flaky_task_succeeds_on_its_third_attempt(pyoco_system_factory, tmp_path: Path):
    system = start(
        pyoco_system_factory,
        {
            "PYOCO_RETRY_BASE_SEC": "1.5",
            "PYOCO_RETRY_FACTOR": "1",
            "PYOCO_RETRY_CAP_SEC": "1.5",
            "PYOCO_RETRY_MAX_ATTEMPTS": "3",
        },
    )
    marker = tmp_path / "executions.txt"
    run_id = system.submit("flaky", {"marker": str(marker), "failures": 2})

    # the first failure sends the run back to PENDING (the submit's PENDING has no "retry")
    waiting = system.wait_until(run_id, lambda s: s["status"] == PENDING and "retry" in s)
    retry = waiting["retry"]
    assert retry["attempt"] == 1 and retry["max_attempts"] == 3
    assert 1.0 <= retry["next_retry_at"] - waiting["updated_at"] <= 1.6
    assert "transient trouble on attempt 1" in waiting["error"]

    final = system.wait(run_id, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["retry"]["attempt"] == 3 and final["retry"]["next_retry_at"] is None
    assert final["task_records"]["flaky"]["output"] == 3
    assert len(marker.read_text().splitlines()) == 3
    assert system.dead_letters(run_id) == []


def test_run_goes_to_the_dlq_after_max_attempts(pyoco_system_factory, tmp_path: Path):
    system = start(
        pyoco_system_factory,
        {"PYOCO_RETRY_BASE_SEC": "0.2", "PYOCO_RETRY_MAX_ATTEMPTS": "3"},
    )
    marker = tmp_path / "executions.txt"
    run_id = system.submit("flaky", {"marker": str(marker), "failures": 99})
    final = system.wait(run_id, timeout=60)
    assert final["status"] == "FAILED"
    assert "transient trouble on attempt 3" in final["error"]
    assert final["retry"]["attempt"] == 3 and final["retry"]["next_retry_at"] is None
    assert len(marker.read_text().splitlines()) == 3
    letter = system.wait_dead_letter(run_id)
    assert (letter["reason"], letter["num_delivered"]) == ("execution_error", 3)
    assert len(system.dead_letters(run_id)) == 1  # only the last attempt is dead-lettered


def test_disabled_with_p_no_the_first_failure_is_final(pyoco_system_factory, tmp_path: Path):
    system = start(
        pyoco_system_factory,
        {"PYOCO_RETRY_BASE_SEC": "0.2"},
        disable=["retry-backoff"],
    )
    marker = tmp_path / "executions.txt"
    final = system.run("flaky", {"marker": str(marker), "failures": 1})
    assert final["status"] == "FAILED" and "retry" not in final
    assert len(marker.read_text().splitlines()) == 1
    assert system.wait_dead_letter(final["run_id"])["num_delivered"] == 1


def test_invalid_configuration_is_a_startup_error_naming_the_variable():
    with pytest.raises(PyocoSystemError) as error:
        plugin_listing(env={"PYOCO_RETRY_FACTOR": "fast"})
    assert "ERR-PYOCO-0017" in str(error.value)
    assert "'retry-backoff'" in str(error.value) and "PYOCO_RETRY_FACTOR" in str(error.value)


def test_listed_with_its_distribution_version():
    listed = {item["name"]: item for item in plugin_listing()}
    assert listed["retry-backoff"]["distribution"] == "pyoco-retry-backoff"
    assert listed["retry-backoff"]["version"] == "0.1.0"
    assert listed["retry-backoff"]["hooks"] == [
        "pyoco_enrich_snapshot",
        "pyoco_failure_disposition",
    ]
    names = {item["name"] for item in plugin_listing("-p", "no:retry-backoff")}
    assert "retry-backoff" not in names
