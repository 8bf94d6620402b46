"""Where the run index lives between starts: by default in the user's state directory, one
file per bucket and NATS address (a slot per gateway running at once on the host), reused by
the next start, which reads only the stream's tail; rebuilt when it describes another stream."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from gwtools import TENANT_HEADER, FakeTenancy, start_gateway
from structlog.testing import capture_logs
from test_retention import listed, put_run, runs_bucket

from pyoco_server.embedded import EmbeddedNats
from pyoco_server.gateway.run_index import RunIndex, RunIndexFeed
from pyoco_server.gateway.run_index_files import server_key
from pyoco_server.nats_client import connect
from pyoco_server.testing import isolated_settings


def events(logs: list[dict], name: str) -> list[dict]:
    return [entry for entry in logs if entry["event"] == name]


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    """``XDG_STATE_HOME`` of this test; the default index directory inside it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path / "pyoco-server"


@pytest.mark.parametrize("tenant", [None, "acme"])
async def test_by_default_a_restart_reuses_the_index_in_the_state_dir_and_reads_only_the_tail(
    nc, gateway_settings, state_dir, tenant
):
    settings = gateway_settings.with_overrides(index_dir=None)
    kv = await runs_bucket(nc, settings)
    extra = {"tenant_id": tenant} if tenant else {}
    headers = {TENANT_HEADER: tenant} if tenant else {}
    for n in range(20):
        await put_run(kv, f"run-{n:02d}", "COMPLETED", 10, **extra)
    with capture_logs() as first_logs:
        async with start_gateway(settings, middleware=[FakeTenancy()]) as gateway:
            assert len(await listed(gateway, **headers)) == 20
    (first,) = events(first_logs, "run_index_loaded")
    assert first["kept_from_file"] == 0 and first["runs"] == 20

    files = sorted(p.name for p in state_dir.glob("*.sqlite3"))
    assert files == [
        f"runs-index-{settings.runs_kv_bucket}-{server_key(settings.nats_url)}.sqlite3"
    ]
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700

    last = await put_run(kv, "run-20", "RUNNING", 1, **extra)
    await put_run(kv, "run-03", "FAILED", 1, **extra)
    with capture_logs() as second_logs:
        async with start_gateway(settings, middleware=[FakeTenancy()]) as gateway:
            runs = (
                await gateway.simulate_get("/runs", params={"limit": "2"}, headers=headers)
            ).json
            assert [r["run_id"] for r in runs] == ["run-03", "run-20"]
            counts = (await gateway.simulate_get("/runs/counts", headers=headers)).json
            assert counts["total"] == 21 and counts["by_status"]["FAILED"] == 1
    (second,) = events(second_logs, "run_index_loaded")
    # the file held everything up to the restart: only the two writes since were read
    assert second["kept_from_file"] == last - 1
    assert second["read_from_seq"] == last and second["last_seq"] == last + 1
    assert not events(second_logs, "run_index_reset")


async def test_a_restart_after_every_run_was_rewritten_reads_on_without_a_rebuild(
    nc, gateway_settings, state_dir
):
    """Busy system, gateway behind: every run it indexed was written again meanwhile, so the
    history-1 stream starts past what the index applied. That is churn, not a lost stream:
    the kept index reads on (a rebuild would cost minutes at a million runs)."""
    settings = gateway_settings.with_overrides(index_dir=None)
    kv = await runs_bucket(nc, settings)
    for n in range(5):
        await put_run(kv, f"run-{n}", "RUNNING", 10)
    async with start_gateway(settings) as gateway:
        assert len(await listed(gateway)) == 5
    for status in ("RUNNING", "COMPLETED"):  # twice: the first rewrites are gone too
        for n in range(5):
            await put_run(kv, f"run-{n}", status, 1)
    with capture_logs() as logs:
        async with start_gateway(settings) as gateway:
            counts = (await gateway.simulate_get("/runs/counts")).json
            assert counts["total"] == 5 and counts["by_status"]["COMPLETED"] == 5
    (loaded,) = events(logs, "run_index_loaded")
    assert loaded["kept_from_file"] > 0
    assert events(logs, "run_index_gap") and not events(logs, "run_index_reset")


async def test_a_second_gateway_on_the_host_gets_its_own_slot_and_keeps_it(
    nc, gateway_settings, state_dir
):
    settings = gateway_settings.with_overrides(index_dir=None)
    kv = await runs_bucket(nc, settings)
    for n in range(5):
        await put_run(kv, f"run-{n}", "COMPLETED", 10)
    async with start_gateway(settings) as one, start_gateway(settings) as two:
        assert await listed(one) == await listed(two) == [f"run-{n}" for n in range(5)]
        paths = {one.app.services.index.path, two.app.services.index.path}
    assert {Path(p).parent for p in paths} == {state_dir} and len(paths) == 2
    await put_run(kv, "run-5", "COMPLETED", 1)
    with capture_logs() as logs:
        async with start_gateway(settings) as one, start_gateway(settings) as two:
            assert await listed(one) == await listed(two) == [f"run-{n}" for n in range(6)]
            assert {one.app.services.index.path, two.app.services.index.path} == paths
    # both files were reused: each start read only the one new write
    loaded = events(logs, "run_index_loaded")
    assert len(loaded) == 2 and all(entry["kept_from_file"] > 0 for entry in loaded)


async def test_index_dir_temp_gives_a_throwaway_index_outside_the_state_dir(
    nc, gateway_settings, state_dir
):
    settings = gateway_settings.with_overrides(index_dir="temp")
    kv = await runs_bucket(nc, settings)
    await put_run(kv, "run-0", "COMPLETED", 10)
    async with start_gateway(settings) as gateway:
        assert await listed(gateway) == ["run-0"]
        path = Path(gateway.app.services.index.path)
        assert state_dir not in path.parents and path.exists()
    assert not path.exists() and not state_dir.exists()


async def test_a_kept_index_of_a_same_named_bucket_on_another_server_is_rebuilt(tmp_path):
    """A NATS server whose store was wiped (or another server at the same address) has a
    bucket of the same name whose stream sequences overlap the kept file's: the file is
    rebuilt, never mixed with the new stream."""
    port_owner = EmbeddedNats(tmp_path / "store-a")
    port_owner.start()
    settings = isolated_settings(port_owner.url, index_dir=str(tmp_path / "index"))
    try:
        client = await connect(port_owner.url, "pytest")
        kv = await runs_bucket(client, settings)
        for n in range(3):
            await put_run(kv, f"old-{n}", "COMPLETED", 10)
        await client.close()
        async with start_gateway(settings) as gateway:
            assert await listed(gateway) == ["old-0", "old-1", "old-2"]
    finally:
        port_owner.stop()

    replacement = EmbeddedNats(tmp_path / "store-b", port=port_owner.port)
    replacement.start()
    try:
        client = await connect(replacement.url, "pytest")
        kv = await runs_bucket(client, settings)
        for n in range(5):  # more writes than before: the sequence alone does not tell
            await put_run(kv, f"new-{n}", "FAILED", 10)
        await client.close()
        with capture_logs() as logs:
            async with start_gateway(settings) as gateway:
                assert await listed(gateway) == [f"new-{n}" for n in range(5)]
                counts = (await gateway.simulate_get("/runs/counts")).json
                assert counts["total"] == 5 and counts["by_status"]["COMPLETED"] == 0
        (reset,) = events(logs, "run_index_reset")
        assert reset["reason"] == "stream_created"
    finally:
        replacement.stop()


async def test_an_unusable_index_dir_falls_back_to_a_throwaway_index(
    nc, gateway_settings, tmp_path
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = gateway_settings.with_overrides(index_dir=str(blocker / "index"))
    kv = await runs_bucket(nc, settings)
    await put_run(kv, "run-0", "COMPLETED", 10)
    with capture_logs() as logs:
        async with start_gateway(settings) as gateway:
            assert await listed(gateway) == ["run-0"]
            path = Path(gateway.app.services.index.path)
    assert not path.exists() and events(logs, "run_index_dir_unusable")


def test_what_makes_a_kept_index_stale():
    index = RunIndex("b")
    index.reset("2026-01-01")
    index.mark_applied(10)
    stale = RunIndexFeed._stale
    assert stale(index, "2026-01-01", 1, 12) is None  # only a tail to read
    assert stale(index, "2026-01-01", 11, 12) is None  # the tail starts right after it
    assert stale(index, "2026-02-02", 1, 12) == "stream_created"
    assert stale(index, "2026-01-01", 1, 9) == "sequence_went_back"
    assert stale(index, "2026-01-01", 12, 14) == "messages_missed"
    index.close()
