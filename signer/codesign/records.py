"""The signing-request record: what was asked, by whom, where its approval is, what was signed.

States (the approvals engine decides; this record follows it)::

    pending ──quorum reached, outputs signed (with_outputs)──▶ signed
       ├────approval denied (settle)──▶ denied
       └────approval expired (settle)──▶ expired

``outputs`` is empty until ``signed`` and never set in any other state, so a denied or expired
request can never carry a signature. Every change bumps ``version``, the store's compare-and-set
token. Nothing here reads a clock or a store.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, NewType, NotRequired, TypedDict

from attest.bundle import BundleJson
from attest.intoto import Subject
from signer.errors import Conflict, InvalidField, NotFound

SigningRequestId = NewType("SigningRequestId", str)


class Kind(enum.StrEnum):
    """What a request signs."""

    BLOB = "blob"  # a file: a message-signature bundle over its digest
    CONTAINER = "container"  # an image manifest: cosign simple signing + a cosign/sign statement
    ATTESTATION = "attestation"  # an in-toto statement with the requester's predicate


class RequestState(enum.StrEnum):
    """Where a signing request is, as clients read it."""

    PENDING = "pending"
    SIGNED = "signed"
    DENIED = "denied"
    EXPIRED = "expired"


class UnknownSigningRequest(NotFound):
    """No signing request with that id (or none the caller may see)."""

    code = "unknown_signing_request"
    title = "Unknown signing request"


class RequestClosed(Conflict):
    """The request was denied or expired: it never gets outputs."""

    code = "signing_request_closed"
    title = "Signing request closed"


class SimpleSigningOutputJson(TypedDict):
    """``outputs.simple_signing``: what a registry's ``sha256-<digest>.sig`` layer carries."""

    payload: str  # standard base64 of the exact payload bytes that were signed
    signature: str  # standard base64 of the DER ECDSA signature


class OutputsJson(TypedDict):
    """``outputs`` of a signed request; empty (``{}``) before."""

    bundle: NotRequired[BundleJson]
    simple_signing: NotRequired[SimpleSigningOutputJson]
    approval_bundle: NotRequired[BundleJson]


class SubjectJson(TypedDict):
    """One subject as the API reads and writes it."""

    name: str
    digest: dict[str, str]


class SigningRequestJson(TypedDict):
    """The stored shape of a record (the API view adds the approval and drops ``version``)."""

    id: str
    profile: str
    kind: str
    subjects: list[SubjectJson]
    predicate_type: str | None
    predicate: dict[str, Any] | None
    reason: str
    change_id: str | None
    requester: str
    created_at: int
    approval_id: str
    state: str
    outputs: OutputsJson
    ring: str | None
    kid: str | None
    signed_at: int | None
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningRequest:
    """One signing request and, once signed, its outputs."""

    id: SigningRequestId
    profile: str
    kind: Kind
    subjects: tuple[Subject, ...]
    predicate_type: str | None  # attestation: the requester's; container: cosign/sign/v1
    predicate: Mapping[str, Any] | None = field(hash=False)
    reason: str
    change_id: str | None
    requester: str
    created_at: int
    approval_id: str
    state: RequestState = RequestState.PENDING
    outputs: OutputsJson = field(default_factory=OutputsJson, hash=False)
    ring: str | None = None  # the ring whose key signed the outputs
    kid: str | None = None  # that key: the bundles' publicKey.hint
    signed_at: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.predicate is not None:
            object.__setattr__(self, "predicate", MappingProxyType(dict(self.predicate)))
        if bool(self.outputs) != (self.state is RequestState.SIGNED):
            raise InvalidField(
                f"signing request {self.id}: outputs exist exactly when it is signed",
                field="outputs",
            )

    @property
    def digests(self) -> list[str]:
        """The SHA-256 digests (hex) of the subjects, in order."""
        return [subject.sha256 for subject in self.subjects]


def settle(request: SigningRequest, approval_state: str) -> SigningRequest | None:
    """The request closed by its approval (``denied`` or ``expired``), or None if unchanged."""
    if request.state is not RequestState.PENDING:
        return None
    if approval_state in (RequestState.DENIED.value, RequestState.EXPIRED.value):
        return replace(request, state=RequestState(approval_state), version=request.version + 1)
    return None


def with_outputs(
    request: SigningRequest, outputs: OutputsJson, *, ring: str, kid: str, now: int
) -> SigningRequest:
    """The request signed with ``outputs``; only a pending request can be signed."""
    if request.state is not RequestState.PENDING:
        raise RequestClosed(f"signing request {request.id} is {request.state}; it is not signed")
    return replace(
        request,
        state=RequestState.SIGNED,
        outputs=outputs,
        ring=ring,
        kid=kid,
        signed_at=now,
        version=request.version + 1,
    )


def subjects_json(subjects: tuple[Subject, ...]) -> list[SubjectJson]:
    """Subjects as the API and the in-toto statements write them."""
    return [{"name": s.name, "digest": {"sha256": s.sha256}} for s in subjects]


def to_json(request: SigningRequest) -> SigningRequestJson:
    """The stored shape; :func:`from_json` reads it back to an equal record."""
    return {
        "id": request.id,
        "profile": request.profile,
        "kind": request.kind.value,
        "subjects": subjects_json(request.subjects),
        "predicate_type": request.predicate_type,
        "predicate": None if request.predicate is None else dict(request.predicate),
        "reason": request.reason,
        "change_id": request.change_id,
        "requester": request.requester,
        "created_at": request.created_at,
        "approval_id": request.approval_id,
        "state": request.state.value,
        "outputs": request.outputs,
        "ring": request.ring,
        "kid": request.kid,
        "signed_at": request.signed_at,
        "version": request.version,
    }


def _get(obj: Mapping[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    # No member is a boolean, and bool is an int subclass: refuse it explicitly.
    if not isinstance(value, types) or isinstance(value, bool):
        raise InvalidField(f"stored signing request: {key!r} is malformed", field=key)
    return value


def from_json(obj: Mapping[str, Any]) -> SigningRequest:
    """Read a stored record back, refusing members of the wrong type."""
    extra = sorted(set(obj) - set(SigningRequestJson.__annotations__))
    if extra:
        raise InvalidField(f"stored signing request: unknown member {extra[0]!r}", field=extra[0])
    subjects = tuple(
        Subject(name=_get(s, "name", str), sha256=_get(_get(s, "digest", dict), "sha256", str))
        for s in _get(obj, "subjects", list)
    )
    predicate = obj.get("predicate")
    return SigningRequest(
        id=SigningRequestId(_get(obj, "id", str)),
        profile=_get(obj, "profile", str),
        kind=Kind(_get(obj, "kind", str)),
        subjects=subjects,
        predicate_type=_get(obj, "predicate_type", (str, type(None))),
        predicate=None if predicate is None else _get(obj, "predicate", dict),
        reason=_get(obj, "reason", str),
        change_id=_get(obj, "change_id", (str, type(None))),
        requester=_get(obj, "requester", str),
        created_at=_get(obj, "created_at", int),
        approval_id=_get(obj, "approval_id", str),
        state=RequestState(_get(obj, "state", str)),
        outputs=_get(obj, "outputs", dict),
        ring=_get(obj, "ring", (str, type(None))),
        kid=_get(obj, "kid", (str, type(None))),
        signed_at=_get(obj, "signed_at", (int, type(None))),
        version=_get(obj, "version", int),
    )
