"""Read a JetStream stream forward from a sequence number with a throw-away pull consumer.

A KV bucket with history 1 is a stream whose messages are exactly the latest revision of each
key, in the order the keys were last written; reading it from sequence ``S`` returns every key
written since ``S - 1``. The gateway uses this to keep its run index current and to list the
worker liveness bucket without one request per key.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

#: Header JetStream KV puts on delete and purge markers (absent on a put).
KV_OPERATION_HEADER = "KV-Operation"


@dataclass(frozen=True)
class StreamRecord:
    """One stored message: stream sequence, subject, payload and KV operation."""

    seq: int
    subject: str
    data: bytes
    operation: str = "PUT"

    @property
    def deleted(self) -> bool:
        """True for a KV delete or purge marker."""
        return self.operation in ("DEL", "PURGE")


class StreamGap(RuntimeError):
    """The consumer skipped a delivery (a fetch was lost); read again from the last record."""


async def read_stream(
    js: Any,
    stream: str,
    subject: str,
    start_seq: int,
    on_batch: Callable[[list[StreamRecord]], None],
    *,
    batch: int = 512,
    fetch_timeout: float = 2.0,
    until_seq: int | None = None,
) -> int:
    """Deliver every message of ``stream`` matching ``subject`` from ``start_seq`` on.

    ``on_batch`` receives the records in stream order, batch by batch; reading stops once the
    consumer has nothing pending (messages written meanwhile may be included), or with
    ``until_seq`` once it passed that sequence (later records are not delivered, and no batch
    asks for more messages than the window can still hold). The consumer is
    ephemeral, unacknowledged and in memory; it is deleted afterwards and reaped by the server
    if this process dies first. Returns the number of records read.

    Raises :class:`StreamGap` if a delivery went missing, and NATS errors as they come; the
    records handed to ``on_batch`` before an error are valid and contiguous.
    """
    name = f"pyoco-read-{uuid.uuid4().hex}"
    config = ConsumerConfig(
        name=name,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(start_seq, 1),
        ack_policy=AckPolicy.NONE,
        filter_subject=subject,
        inactive_threshold=30.0,
        mem_storage=True,
        num_replicas=1,
    )
    info = await js.add_consumer(stream, config)
    read = 0
    if info.num_pending:
        subscription = await js.pull_subscribe_bind(consumer=name, stream=stream)
        try:
            expected = 1
            position = max(start_seq, 1)
            while True:
                size = batch if until_seq is None else max(1, min(batch, until_seq - position + 1))
                messages = await subscription.fetch(size, timeout=fetch_timeout)
                records = []
                passed = False
                for message in messages:
                    metadata = message.metadata
                    if metadata.sequence.consumer != expected:
                        raise StreamGap(
                            f"{stream}: delivery {expected} missing "
                            f"(got {metadata.sequence.consumer})"
                        )
                    expected += 1
                    position = metadata.sequence.stream + 1
                    if until_seq is not None and metadata.sequence.stream > until_seq:
                        passed = True
                        break
                    headers = message.headers or {}
                    records.append(
                        StreamRecord(
                            seq=metadata.sequence.stream,
                            subject=message.subject,
                            data=message.data,
                            operation=headers.get(KV_OPERATION_HEADER, "PUT"),
                        )
                    )
                on_batch(records)
                read += len(records)
                if passed or not messages or messages[-1].metadata.num_pending == 0:
                    break
                if until_seq is not None and position > until_seq:
                    break
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
    with contextlib.suppress(Exception):
        await js.delete_consumer(stream, name)
    return read


def kv_stream_name(bucket: str) -> str:
    """The stream behind KV bucket ``bucket``."""
    return f"KV_{bucket}"


def kv_subject_prefix(bucket: str) -> str:
    """The subject prefix of the keys of ``bucket`` (``$KV.<bucket>.``)."""
    return f"$KV.{bucket}."


async def bucket_current(
    js: Any, bucket: str, key_filter: str = ">", *, fetch_timeout: float = 2.0
) -> list[tuple[str, bytes]]:
    """Every key of KV bucket ``bucket`` matching ``key_filter`` with its current value
    (deleted and purged keys left out), in the order the keys were last written.

    Reads the bucket's stream with :func:`read_stream` instead of a KV watch: nats-py's watch
    signals "no more initial values" when the consumer reports nothing pending, which can come
    before values already delivered to the client have been handed to the watcher — under
    load such a listing came back empty or short. A pull consumer delivers only what is asked
    for, so its pending count is exact.
    """
    prefix = kv_subject_prefix(bucket)
    latest: dict[str, StreamRecord] = {}

    def keep(records: list[StreamRecord]) -> None:
        for record in records:
            latest.pop(record.subject, None)  # re-insert: the order is that of the last write
            latest[record.subject] = record

    await read_stream(
        js, kv_stream_name(bucket), prefix + key_filter, 1, keep, fetch_timeout=fetch_timeout
    )
    return [
        (subject[len(prefix) :], record.data)
        for subject, record in latest.items()
        if not record.deleted and record.data
    ]


async def kv_current(kv: Any, key_filter: str = ">") -> list[tuple[str, bytes]]:
    """:func:`bucket_current` of the KV bucket object ``kv`` (nats-py's ``KeyValue``)."""
    # nats-py's KeyValue has no public accessors for its JetStream context and bucket name.
    return await bucket_current(kv._js, kv._name, key_filter)
