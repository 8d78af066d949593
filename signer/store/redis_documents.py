"""Versioned documents in the Redis store: approval requests and signing requests.

Each is a hash (``state``, ``version``, ``body``) per id and a sorted set of ids by creation time
(``redis_schema``); every write is a compare-and-set on ``version``, committed with its audit
records in the store's optimistic transaction. Kept apart from ``redis`` so that module reads as
the key, audit and lease contract; ``RedisStore`` mixes these in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, NamedTuple, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from jwks.thumbprint import KeyId
from signer.approvals.rules import ApprovalRequest
from signer.approvals.rules import to_json as approval_json
from signer.audit.chain import AuditEntry, AuditRecord
from signer.codesign.records import SigningRequest
from signer.codesign.records import to_json as signing_request_json
from signer.store.base import Fence, StaleWrite
from signer.store.redis_client import fields, texts
from signer.store.redis_schema import Names
from signer.store.redis_transaction import Prepare, Queue

T = TypeVar("T")

# Kinds of versioned documents (key names in signer.store.redis_schema).
APPROVAL: Final = "approval"
SIGNING_REQUEST: Final = "signing_request"


class NewDocument(NamedTuple):
    """A document to insert: its kind, id, creation time and hash fields (``versioned``)."""

    kind: str
    doc_id: str
    created_at: int
    values: dict[str, str]


class _Store(Protocol):
    """What the document methods use of ``RedisStore``."""

    _names: Names
    _client: aioredis.Redis

    def _session(self) -> AbstractAsyncContextManager[None]: ...

    async def _transact(self, watch: Sequence[str], prepare: Prepare[T]) -> T: ...

    async def _chain(self, pipe: Pipeline, entries: Sequence[AuditEntry]) -> list[AuditRecord]: ...

    def _queue_audit(self, pipe: Pipeline, records: Sequence[AuditRecord]) -> None: ...

    async def _require_active(self, pipe: Pipeline, kids: Sequence[KeyId]) -> None: ...

    def _watch(
        self, keys: list[str], audit: Sequence[AuditEntry], fence: Fence | None
    ) -> list[str]: ...


class VersionedDocuments:
    """``RedisStore``'s reads and compare-and-set writes of versioned documents."""

    async def _insert_documents(
        self: _Store, documents: Sequence[NewDocument], audit: Sequence[AuditEntry]
    ) -> None:
        """Insert every document and the audit records in one transaction; ``StaleWrite`` (and
        nothing written) if any id is taken."""
        keys = {self._names.document(d.kind, d.doc_id): d for d in documents}

        async def prepare(pipe: Pipeline) -> tuple[None, Queue]:
            for key, document in keys.items():
                if await pipe.exists(key):
                    what = document.kind.replace("_", " ")
                    raise StaleWrite(f"{what} {document.doc_id} already exists")
            chained = await self._chain(pipe, audit)

            def queue(pipe: Pipeline) -> None:
                for key, document in keys.items():
                    pipe.hset(key, mapping=fields(document.values))
                    pipe.zadd(
                        self._names.documents(document.kind),
                        {document.doc_id: document.created_at},
                    )
                self._queue_audit(pipe, chained)

            return None, queue

        await self._transact(self._watch(list(keys), audit, None), prepare)

    async def _update_document(
        self: _Store,
        kind: str,
        doc_id: str,
        expected_version: int,
        values: dict[str, str],
        audit: Sequence[AuditEntry],
        *,
        require_active: Sequence[KeyId] = (),
    ) -> None:
        key = self._names.document(kind, doc_id)

        async def prepare(pipe: Pipeline) -> tuple[None, Queue]:
            version = await pipe.hget(key, "version")
            if version is None or int(version) != expected_version:
                raise StaleWrite(f"{kind.replace('_', ' ')} {doc_id} changed concurrently")
            await self._require_active(pipe, require_active)
            chained = await self._chain(pipe, audit)

            def queue(pipe: Pipeline) -> None:
                pipe.hset(key, mapping=fields(values))
                self._queue_audit(pipe, chained)

            return None, queue

        watch = [key, *(self._names.key(kid) for kid in require_active)]
        await self._transact(self._watch(watch, audit, None), prepare)

    async def _get_document(self: _Store, kind: str, doc_id: str) -> str | None:
        async with self._session():
            body = await self._client.hget(self._names.document(kind, doc_id), "body")
        return None if body is None else str(body)

    async def _documents(self: _Store, kind: str, state: str | None) -> list[str]:
        """The bodies of ``kind``'s documents (in ``state``), oldest first."""
        async with self._session():
            ids = texts(await self._client.zrange(self._names.documents(kind), 0, -1))
            if not ids:
                return []
            async with self._client.pipeline(transaction=True) as pipe:
                for doc_id in ids:
                    pipe.hmget(self._names.document(kind, doc_id), ["state", "body"])
                rows = await pipe.execute()
        return [
            str(body)
            for found, body in rows
            if body is not None and (state is None or found == state)
        ]


def versioned(document: ApprovalRequest | SigningRequest) -> dict[str, str]:
    """The hash fields a document is stored as."""
    body = (
        approval_json(document)
        if isinstance(document, ApprovalRequest)
        else signing_request_json(document)
    )
    return {
        "state": document.state.value,
        "version": str(document.version),
        "body": json.dumps(body),
    }
