"""Configuration: every invalid value is a named start-up error; flags override env."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pyoco_server.config import Settings
from pyoco_server.errors import ConfigError


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PYOCO_CONSUMER_ACK_WAIT_SEC": "abc"}, "PYOCO_CONSUMER_ACK_WAIT_SEC"),
        ({"PYOCO_RUN_HEARTBEAT_INTERVAL_SEC": "-1"}, "PYOCO_RUN_HEARTBEAT_INTERVAL_SEC"),
        ({"PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC": "0"}, "PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC"),
        ({"PYOCO_CONSUMER_MAX_DELIVER": "2.5"}, "PYOCO_CONSUMER_MAX_DELIVER"),
        ({"PYOCO_ACK_PROGRESS_INTERVAL_SEC": "30"}, "PYOCO_ACK_PROGRESS_INTERVAL_SEC"),
        (
            {"PYOCO_CONSUMER_ACK_WAIT_SEC": "5", "PYOCO_ACK_PROGRESS_INTERVAL_SEC": "6"},
            "PYOCO_ACK_PROGRESS_INTERVAL_SEC",
        ),
        ({"PYOCO_HTTP_AUTH_MODE": "basic"}, "PYOCO_HTTP_AUTH_MODE"),
        ({"PYOCO_DEFAULT_TAG": "gpu.large"}, "PYOCO_DEFAULT_TAG"),
        ({"PYOCO_DEFAULT_TAG": "a b"}, "PYOCO_DEFAULT_TAG"),
        ({"PYOCO_DLQ_PUBLISH_EXECUTION_ERROR": "maybe"}, "PYOCO_DLQ_PUBLISH_EXECUTION_ERROR"),
        ({"PYOCO_LOG_FORMAT": "xml"}, "PYOCO_LOG_FORMAT"),
        ({"PYOCO_LOG_LEVEL": "LOUD"}, "PYOCO_LOG_LEVEL"),
        ({"PYOCO_WORKERS_KV_TTL_SEC": "nan"}, "PYOCO_WORKERS_KV_TTL_SEC"),
        ({"PYOCO_WORKERS_KV_TTL_SEC": "4"}, "PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC"),
        ({"PYOCO_RUNS_KV_BUCKET": "runs.v2"}, "PYOCO_RUNS_KV_BUCKET"),
        ({"PYOCO_WORK_SUBJECT_PREFIX": "pyoco.*"}, "PYOCO_WORK_SUBJECT_PREFIX"),
    ],
)
def test_invalid_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.name == variable
    assert variable in str(info.value) and "expected" in str(info.value)


def test_defaults_follow_the_contract():
    settings = Settings.from_env({})
    assert (settings.consumer_ack_wait_sec, settings.consumer_max_deliver) == (30.0, 20)
    assert settings.consumer_max_ack_pending == 200
    assert settings.work_subject("gpu") == "pyoco.work.gpu"
    assert settings.dlq_subject("gpu") == "pyoco.dlq.gpu"
    assert settings.max_run_snapshot_bytes == 262144
    assert settings.http_auth_mode == "none" and settings.log_format == "json"


def test_environment_values_are_parsed():
    settings = Settings.from_env(
        {
            "PYOCO_YAML_ALLOWED_CALLABLES": "team.tasks, other ",
            "PYOCO_DLQ_PUBLISH_EXECUTION_ERROR": "false",
            "PYOCO_LOG_LEVEL": "debug",
            "PYOCO_CONSUMER_MAX_DELIVER": "3",
        }
    )
    assert settings.yaml_allowed_callables == ("team.tasks", "other")
    assert settings.dlq_publish_execution_error is False
    assert settings.log_level == "DEBUG" and settings.consumer_max_deliver == 3


def test_flags_override_environment_and_are_validated():
    env = {"PYOCO_NATS_URL": "nats://env:4222", "PYOCO_DEFAULT_TAG": "envtag"}
    settings = Settings.from_env(env, {"nats_url": "nats://flag:4222", "default_tag": None})
    assert settings.nats_url == "nats://flag:4222"
    assert settings.default_tag == "envtag"
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, {"default_tag": "a.b"}, {"default_tag": "--tags"})
    assert info.value.name == "--tags"


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env({"PYOCO_AUTH_PEPPER": "s3cret-pepper"})
    assert settings.auth_pepper == "s3cret-pepper"
    assert "s3cret-pepper" not in repr(settings)


def test_cli_reports_invalid_configuration_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.server", "plugins"],
        capture_output=True,
        text=True,
        env={"PYOCO_ACK_PROGRESS_INTERVAL_SEC": "40", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PYOCO_ACK_PROGRESS_INTERVAL_SEC" in lines[0] and "ERR-PYOCO-0013" in lines[0]


def test_cli_bad_flag_exits_2():
    result = subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.server", "up", "--port", "http"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2


def _changed(value: object, name: str) -> object:
    """A valid value of a setting other than its default (floats scaled, so the rules that
    relate intervals keep holding)."""
    special = {
        "nats_url": "nats://user:secret@127.0.0.1:4333,nats://127.0.0.1:4334",
        "work_subject_prefix": "team.jobs",
        "dlq_subject_prefix": "team.dead",
        "default_tag": "gpu",
        "http_auth_mode": "api_key",
        "auth_pepper": "  a pepper, with spaces and commas  ",
        "http_api_key_header": "X-Team-Key",
        "log_level": "DEBUG",
        "log_format": "text",
        "dashboard_lang": "ja",
        "plugins": ("team-policy", "plugins/local.py:plugin"),
    }
    if name in special:
        return special[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    if isinstance(value, float):
        return value * 1.5 + 0.125
    if isinstance(value, tuple):
        return ("tests.flows", "team_tasks")
    return f"{value}_x"


def test_to_env_is_the_inverse_of_from_env():
    import dataclasses

    assert Settings.from_env(Settings().to_env()) == Settings()
    changed = Settings(
        **{f.name: _changed(f.default, f.name) for f in dataclasses.fields(Settings)}
    )
    assert all(getattr(changed, f.name) != f.default for f in dataclasses.fields(Settings))
    env = changed.to_env()
    assert Settings.from_env(env) == changed
    assert env["PYOCO_TRACE_PLUGINS"] == "true" and env["PYOCO_PLUGINS"].count(",") == 1
    assert "PYOCO_NATS_URL" not in Settings().to_env()  # unset optional values stay unset
