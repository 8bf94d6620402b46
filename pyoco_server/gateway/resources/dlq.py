"""Dead-letter endpoints: list, show, redrive (one or many), delete.

Every endpoint sees only the caller's tenant's entries (a dead letter carries the job's
``tenant_id``); another tenant's entry answers 404 exactly like a missing one.
"""

from __future__ import annotations

import falcon
import falcon.asgi

from ..dead_letters import DeadLetterQueue, dead_letter_not_found
from ..redrive import Redriver
from ..services import GatewayServices
from ..tenancy import caller_of
from ..validation import dlq_query, dlq_seq, flag

#: Response header of ``GET /dlq`` naming the ``before`` of the next page (absent when the
#: stream has nothing older).
NEXT_CURSOR_HEADER = "Next-Cursor"


class DlqResource:
    """``GET /dlq``: dead letters, newest first (``Next-Cursor`` continues)."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        query = dlq_query(req)
        queue = DeadLetterQueue(self.services.nats.js, self.services.settings)
        page = await queue.page(caller_of(req), limit=query.limit, **query.filters())
        if page.next_cursor is not None:
            resp.set_header(NEXT_CURSOR_HEADER, str(page.next_cursor))
        resp.media = page.entries


class DlqEntryResource:
    """``GET /dlq/{seq}`` (one entry with its job) and ``DELETE /dlq/{seq}``."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, seq: str) -> None:
        queue = DeadLetterQueue(self.services.nats.js, self.services.settings)
        resp.media = await queue.get(caller_of(req), dlq_seq(seq))

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, seq: str
    ) -> None:
        number = dlq_seq(seq)
        queue = DeadLetterQueue(self.services.nats.js, self.services.settings)
        await queue.get(caller_of(req), number)  # 404 unless it is the caller's
        if not await queue.delete(number):
            raise dead_letter_not_found(number)
        resp.media = {"seq": number, "deleted": True}


class DlqRedriveResource:
    """``POST /dlq/{seq}/redrive[?new_run=true]``: queue the dead job again."""

    def __init__(self, services: GatewayServices) -> None:
        self.redriver = Redriver(services)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, seq: str) -> None:
        number = dlq_seq(seq)
        new_run = flag(req, "new_run")
        redriven = await self.redriver.redrive(caller_of(req), number, new_run=new_run)
        resp.media = redriven.as_dict()


class DlqBulkRedriveResource:
    """``POST /dlq/redrive``: redrive what ``GET /dlq`` lists with the same parameters."""

    def __init__(self, services: GatewayServices) -> None:
        self.redriver = Redriver(services)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        query = dlq_query(req)
        new_run = flag(req, "new_run")
        resp.media = await self.redriver.redrive_many(
            caller_of(req), query.filters(), query.limit, new_run=new_run
        )
