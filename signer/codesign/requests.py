"""Reading a signing request: its shape (400), who may ask (403), what its profile allows (422).

A body is parsed once into a :class:`RequestSpec` (``parse_request``), the caller is checked
against the profile (``check_requester``), then the request against the profile
(``check_against_profile``). The order matters: a principal without ``sign:request:<profile>``
learns not even whether the profile exists, one outside ``requesters`` nothing about its
patterns, and a request that passes has been fully checked, so signing at quorum cannot fail on
its content.

Profile rules (docs/codesign.md):

- subject names match one of ``subjects`` with ``fnmatch`` semantics, case-sensitive: ``*``
  matches any run of characters including ``/``, ``?`` one character, ``[...]`` a set;
- at most ``max_subjects`` subjects; a ``blob`` or ``container`` request has exactly one (a
  message signature and a simple-signing payload each cover one artifact);
- the predicate type is in ``predicate_types``: the requester's for an ``attestation``,
  ``https://sigstore.dev/cosign/sign/v1`` for a ``container``; a ``blob`` has none;
- a ``blob`` needs an ES256 ring: its signature is ECDSA over the subject's SHA-256 digest, which
  a P-384 key (SHA-384) cannot sign as Sigstore verifies it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

from attest.errors import AttestError
from attest.intoto import Statement, Subject
from attest.simplesigning import SimpleSigning
from jwks.algorithms import Alg
from signer.auth import Principal
from signer.codesign.records import Kind
from signer.errors import Forbidden, InvalidField, MalformedJson, UnknownField, Unprocessable
from signer.settings import ProfileSettings

COSIGN_SIGN_V1: Final = "https://sigstore.dev/cosign/sign/v1"
MAX_REASON: Final = 1000  # characters: a reason for the record, not a document
MAX_CHANGE_ID: Final = 200
MAX_NAME: Final = 1024  # a subject name (an image repository or a file name)

_FIELDS: Final = frozenset(
    {"profile", "kind", "subjects", "predicate_type", "predicate", "reason", "change_id"}
)
_REQUIRED: Final = ("profile", "kind", "subjects", "reason")


class UnknownProfile(Unprocessable):
    """The request names a profile that is not configured."""

    code = "unknown_profile"
    title = "Unknown signing profile"


class SubjectNotAllowed(Unprocessable):
    """A subject name matches none of the profile's patterns."""

    code = "subject_not_allowed"
    title = "Subject not allowed"


class PredicateTypeNotAllowed(Unprocessable):
    """The predicate type is not in the profile's ``predicate_types``."""

    code = "predicate_type_not_allowed"
    title = "Predicate type not allowed"


class TooManySubjects(Unprocessable):
    """More subjects than the profile's ``max_subjects``."""

    code = "too_many_subjects"
    title = "Too many subjects"


class KindNotSupported(Unprocessable):
    """The profile does not sign this kind (``kinds``), or its ring cannot (a blob on a
    non-ES256 ring)."""

    code = "kind_not_supported"
    title = "Kind not supported"


class InvalidStatement(Unprocessable):
    """The statement or payload would be invalid (e.g. SLSA provenance missing a field)."""

    code = "invalid_statement"
    title = "Invalid statement"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSpec:
    """A parsed signing request body."""

    profile: str
    kind: Kind
    subjects: tuple[Subject, ...]
    predicate_type: str | None
    predicate: Mapping[str, Any] | None
    reason: str
    change_id: str | None


def _text(body: Mapping[str, Any], key: str, limit: int) -> str:
    value = body[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(f"{key!r} must be a non-empty string", field=key)
    if len(value) > limit:
        raise InvalidField(f"{key!r} is at most {limit} characters", field=key)
    return value


def _subject(value: object, index: int) -> Subject:
    where = f"subjects[{index}]"
    if not isinstance(value, dict):
        raise InvalidField(f"{where} must be an object {{name, digest}}", field="subjects")
    unknown = sorted(set(value) - {"name", "digest"})
    if unknown:
        raise UnknownField(f"{where}: unknown field {unknown[0]!r}", field="subjects")
    name, digest = value.get("name"), value.get("digest")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise InvalidField(f"{where}.name must be 1 to {MAX_NAME} characters", field="subjects")
    if not isinstance(digest, dict) or set(digest) != {"sha256"}:
        raise InvalidField(f'{where}.digest must be {{"sha256": hex}}', field="subjects")
    sha256 = digest["sha256"]
    if not isinstance(sha256, str):
        raise InvalidField(f"{where}.digest.sha256 must be a string", field="subjects")
    try:
        return Subject(name=name, sha256=sha256)
    except AttestError as exc:
        raise InvalidField(f"{where}: {exc}", field="subjects") from None


def _subjects(value: object) -> tuple[Subject, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidField("'subjects' must be a non-empty list", field="subjects")
    subjects = tuple(_subject(item, i) for i, item in enumerate(value))
    names = [s.name for s in subjects]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        # in-toto statement.md: subject names SHOULD be unique.
        raise InvalidField(f"subject {repeated[0]!r} is repeated", field="subjects")
    return subjects


def parse_request(body: object) -> RequestSpec:
    """Parse a ``POST /v1/signing-requests`` body; 400 errors name the field."""
    if not isinstance(body, dict):
        raise MalformedJson("the request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise UnknownField(f"unknown field {unknown[0]!r}", field=unknown[0])
    for key in _REQUIRED:
        if key not in body:
            raise InvalidField(f"{key!r} is required", field=key)
    if not isinstance(body["profile"], str) or not body["profile"]:
        raise InvalidField("'profile' must be a profile name", field="profile")
    try:
        kind = Kind(body["kind"])
    except ValueError:
        kinds = ", ".join(k.value for k in Kind)
        raise InvalidField(f"'kind' must be one of {kinds}", field="kind") from None
    predicate_type = body.get("predicate_type")
    if predicate_type is not None and (not isinstance(predicate_type, str) or not predicate_type):
        raise InvalidField("'predicate_type' must be a non-empty string", field="predicate_type")
    predicate = body.get("predicate")
    if predicate is not None and not isinstance(predicate, dict):
        raise InvalidField("'predicate' must be an object", field="predicate")
    change_id = _text(body, "change_id", MAX_CHANGE_ID) if "change_id" in body else None
    spec = RequestSpec(
        profile=body["profile"],
        kind=kind,
        subjects=_subjects(body["subjects"]),
        predicate_type=predicate_type,
        predicate=None if predicate is None else MappingProxyType(predicate),
        reason=_text(body, "reason", MAX_REASON),
        change_id=change_id,
    )
    _check_kind_shape(spec)
    return spec


def _check_kind_shape(spec: RequestSpec) -> None:
    if spec.kind is Kind.ATTESTATION:
        if spec.predicate_type is None:
            raise InvalidField("an attestation needs 'predicate_type'", field="predicate_type")
        return
    if len(spec.subjects) != 1:
        raise InvalidField(
            f"a {spec.kind} request signs exactly one subject, not {len(spec.subjects)}",
            field="subjects",
        )
    if spec.predicate is not None:
        raise InvalidField(f"a {spec.kind} request takes no 'predicate'", field="predicate")
    if spec.kind is Kind.BLOB and spec.predicate_type is not None:
        raise InvalidField("a blob request takes no 'predicate_type'", field="predicate_type")
    if spec.kind is Kind.CONTAINER and spec.predicate_type not in (None, COSIGN_SIGN_V1):
        raise InvalidField(
            f"a container request's predicate type is {COSIGN_SIGN_V1!r}", field="predicate_type"
        )


def find_profile(profiles: Mapping[str, ProfileSettings], name: str) -> ProfileSettings:
    """The profile called ``name``; 422 ``unknown_profile`` otherwise."""
    profile = profiles.get(name)
    if profile is None:
        raise UnknownProfile(f"no signing profile named {name!r}", field="profile")
    return profile


def check_requester(
    principal: Principal, profiles: Mapping[str, ProfileSettings], name: str
) -> ProfileSettings:
    """The profile ``name``, if ``principal`` may request on it; 403 (or 422) otherwise.

    The permission is checked before the profile is looked up: a principal that may not request
    on ``name`` gets the same 403 whether or not such a profile exists. Both the permission and
    the profile's list are required: the permission says what a credential may do, the list says
    who the release process expects to ask (DESIGN "Access control").
    """
    permission = f"sign:request:{name}"
    if not principal.allows(permission):
        raise Forbidden(f"principal {principal.name!r} lacks permission {permission!r}")
    profile = find_profile(profiles, name)
    if principal.name not in profile.requesters:
        raise Forbidden(f"{principal.name!r} is not a requester of profile {profile.name!r}")
    return profile


def check_any_requester(principal: Principal, profiles: Sequence[ProfileSettings]) -> None:
    """``Forbidden`` unless ``principal`` may request on some profile (``check_requester``
    decides for the one it names)."""
    if not any(
        principal.name in p.requesters and principal.allows(f"sign:request:{p.name}")
        for p in profiles
    ):
        raise Forbidden(f"principal {principal.name!r} may not request signatures on any profile")


def subject_allowed(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``name`` matches one of ``patterns`` (fnmatch, case-sensitive)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def check_against_profile(spec: RequestSpec, profile: ProfileSettings, alg: Alg) -> RequestSpec:
    """422 unless ``profile`` (whose ring signs with ``alg``) allows ``spec``.

    Returns the spec with its effective predicate type (``cosign/sign/v1`` for a container).
    """
    if spec.kind.value not in profile.kinds:
        raise KindNotSupported(
            f"profile {profile.name!r} does not sign {spec.kind.value!r} requests "
            f"(its kinds: {list(profile.kinds)})",
            field="kind",
        )
    if len(spec.subjects) > profile.max_subjects:
        raise TooManySubjects(
            f"{len(spec.subjects)} subjects exceed profile {profile.name!r}'s max_subjects "
            f"of {profile.max_subjects}",
            field="subjects",
        )
    for subject in spec.subjects:
        if not subject_allowed(subject.name, profile.subjects):
            raise SubjectNotAllowed(
                f"subject {subject.name!r} matches none of profile {profile.name!r}'s patterns "
                f"{list(profile.subjects)}",
                field="subjects",
            )
    if spec.kind is Kind.CONTAINER:
        spec = replace(spec, predicate_type=COSIGN_SIGN_V1)
    if spec.predicate_type is not None and spec.predicate_type not in profile.predicate_types:
        raise PredicateTypeNotAllowed(
            f"predicate type {spec.predicate_type!r} is not allowed by profile "
            f"{profile.name!r} (allowed: {list(profile.predicate_types)})",
            field="predicate_type",
        )
    if spec.kind is Kind.BLOB and alg is not Alg.ES256:
        raise KindNotSupported(
            f"profile {profile.name!r} signs with {alg.value}; a blob signature needs an ES256 "
            "ring (ECDSA P-256 over the SHA-256 digest)",
            field="kind",
        )
    _check_content(spec)
    return spec


def _check_content(spec: RequestSpec) -> None:
    """Build what will be signed once now, so that signing at quorum cannot refuse it."""
    try:
        if spec.kind is Kind.ATTESTATION:
            assert spec.predicate_type is not None  # noqa: S101 -- parse_request requires it
            Statement(
                subjects=spec.subjects,
                predicate_type=spec.predicate_type,
                predicate=spec.predicate or {},
            )
        elif spec.kind is Kind.CONTAINER:
            subject = spec.subjects[0]
            SimpleSigning(docker_reference=subject.name, manifest_digest=f"sha256:{subject.sha256}")
    except AttestError as exc:
        raise InvalidStatement(str(exc), field="predicate") from None
