"""Inputs the fuzzing and property tests showed to be mishandled, pinned as plain examples.

Python's ``$`` matches before a trailing newline, so ``^[A-Za-z0-9_-]+$`` took ``"gpu\\n"`` for
a tag: the gateway then failed to publish to ``pyoco.work.gpu\\n`` and answered 503 (as if NATS
were down) instead of 422.
"""

from __future__ import annotations

import pytest
from falcon import testing

from pyoco_server.config import validate_tag
from pyoco_server.errors import ConfigError
from pyoco_server.gateway.app import create_app
from pyoco_server.jobs import InvalidJob, build_job, decode_job, encode_job
from pyoco_server.plugins import build_plugin_manager


def assert_invalid(result: testing.Result) -> None:
    assert result.status_code == 422, result.text
    assert result.json["err_id"] == "ERR-PYOCO-0002"


@pytest.mark.parametrize(
    "body",
    [
        {"flow_name": "f", "tag": "gpu\n"},
        {"flow_name": "f", "tags": ["gpu\n"]},
    ],
)
async def test_a_tag_with_a_trailing_newline_is_refused_as_invalid(settings, body):
    app = create_app(settings, build_plugin_manager(plugins=[]))
    async with testing.ASGIConductor(app) as gateway:
        assert_invalid(await gateway.simulate_post("/runs", json=body))
        assert_invalid(await gateway.simulate_get("/runs", params={"tag": "gpu\n"}))
        assert_invalid(await gateway.simulate_get("/runs", params={"cursor": "12\n"}))


def test_names_with_a_trailing_newline_are_refused_everywhere():
    with pytest.raises(ConfigError):
        validate_tag("gpu\n")
    job = build_job("run-1", "f", "default", ["default"], {})
    job["tag"] = "default\n"
    with pytest.raises(InvalidJob):
        decode_job(encode_job(job))
