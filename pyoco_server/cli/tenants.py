"""``pyoco-server-admin tenant delete TENANT``: a tenant is gone — its keys and its runs.

Tenants exist only through their API keys, so deleting one means: revoke every key of the
tenant (gateways refuse them within ``PYOCO_AUTH_CACHE_TTL_SEC``), then cancel every run of the
tenant that is not terminal — child runs included, also those spawned with
``cancel_with_parent=False``: no run keeps going for a tenant that no longer exists. The runs
themselves stay (retention removes them) so the history can still be read by an operator.

A cancel is the change function of ``POST /runs/{id}/cancel`` applied through the run store
(compare-and-set): PENDING, PENDING_APPROVAL and WAITING runs end CANCELLED at once, RUNNING
ones become CANCELLING and their worker stops them. The runs bucket is scanned again until a
pass cancels nothing (at most :data:`MAX_PASSES`), which catches children a still-running
parent spawned during the first pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..api_keys import ApiKeyStore, AuthBackendUnavailable
from ..config import Settings
from ..gateway.cancel import EVENT, CancelRequest
from ..model import is_terminal
from ..run_store import RunNotFound, RunStore
from ..stream_reader import StreamRecord, kv_stream_name, kv_subject_prefix, read_stream
from .common import add_plugin_arguments, make_plugin_manager

#: Scans of the runs bucket at most; each after the previous one cancelled something.
MAX_PASSES = 5
#: Pause between passes, so that workers write what the cancels started.
PASS_PAUSE_SEC = 1.0
#: Recorded as ``cancel_requested_by`` on every run the deletion cancels.
REQUESTED_BY = "tenant-deleted"


def add_tenant_parser(commands: Any, tenant_type: Any) -> None:
    """``tenant delete TENANT`` (with the gateway's plugin flags, for the snapshot hooks)."""
    tenant = commands.add_parser("tenant", help="delete a tenant (its keys and active runs)")
    actions = tenant.add_subparsers(dest="action", required=True, metavar="ACTION")
    delete = actions.add_parser(
        "delete",
        help="revoke every key of a tenant and cancel its active runs, children included",
        description="Delete TENANT: revoke every API key of the tenant, then cancel every run "
        "of it that has not ended (PENDING, PENDING_APPROVAL, WAITING and RUNNING; child runs "
        "too, whatever their cancel_with_parent). Finished runs are kept until retention "
        "removes them. Prints the revoked key ids and the cancelled run ids. Idempotent.",
    )
    delete.add_argument("tenant_id", metavar="TENANT", type=tenant_type, help="the tenant id")
    add_plugin_arguments(delete)


async def delete_tenant(
    settings: Settings, nc: Any, keys: ApiKeyStore, args: argparse.Namespace
) -> dict[str, Any]:
    """Revoke the tenant's keys, then cancel its active runs; what was done."""
    revoked = []
    for record in await keys.list(args.tenant_id):
        if not record.revoked:
            await keys.revoke(record.key_id)
            revoked.append(record.key_id)
    js = nc.jetstream(timeout=5.0)
    try:
        kv = await js.key_value(settings.runs_kv_bucket)
    except Exception as exc:
        raise AuthBackendUnavailable(
            f"cannot open the runs bucket {settings.runs_kv_bucket!r} ({type(exc).__name__})"
        ) from None
    store = RunStore(kv, make_plugin_manager(args, settings), settings)
    cancelled: list[str] = []
    for attempt in range(MAX_PASSES):
        found = await _cancel_pass(js, store, args.tenant_id)
        cancelled += [run_id for run_id in found if run_id not in cancelled]
        if not found:
            break
        if attempt < MAX_PASSES - 1:
            await asyncio.sleep(PASS_PAUSE_SEC)
    return {"tenant_id": args.tenant_id, "keys_revoked": revoked, "runs_cancelled": cancelled}


async def _cancel_pass(js: Any, store: RunStore, tenant_id: str) -> list[str]:
    """Cancel the tenant's runs that are not terminal and not already being cancelled."""
    candidates = await _active_runs_of(js, store.settings.runs_kv_bucket, tenant_id)
    cancelled = []
    for run_id in candidates:
        try:
            snapshot, _ = await store.get(run_id)
        except RunNotFound:
            continue
        if snapshot.get("tenant_id") != tenant_id or is_terminal(snapshot.get("status")):
            continue
        change = CancelRequest(REQUESTED_BY)
        try:
            await store.update(run_id, change, EVENT)
        except RunNotFound:
            continue
        if change.wrote:
            cancelled.append(run_id)
    return cancelled


async def _active_runs_of(js: Any, bucket: str, tenant_id: str) -> list[str]:
    """Ids of the tenant's runs whose stored status is not terminal, from one pass over the
    runs bucket's stream (batch by batch: only the matching ids are kept in memory)."""
    prefix = kv_subject_prefix(bucket)
    found: dict[str, None] = {}

    def collect(records: list[StreamRecord]) -> None:
        for record in records:
            run_id = record.subject[len(prefix) :]
            found.pop(run_id, None)
            if record.deleted or not record.data:
                continue
            try:
                snapshot = json.loads(record.data)
            except ValueError:
                continue
            if (
                isinstance(snapshot, dict)
                and snapshot.get("tenant_id") == tenant_id
                and not is_terminal(snapshot.get("status"))
            ):
                found[run_id] = None

    await read_stream(js, kv_stream_name(bucket), prefix + ">", 1, collect)
    return list(found)
