"""in-toto Statement v1 and the SLSA Provenance v1 predicate check.

A Statement (in-toto attestation spec v1, ``spec/v1/statement.md``) binds a predicate to the
artifacts it is about::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "<name>", "digest": {"sha256": "<lowercase hex>"}}],
     "predicateType": "<URI>",
     "predicate": {...}}

It travels as the payload of a DSSE envelope with payload type ``application/vnd.in-toto+json``
(in-toto spec v1, ``envelope.md``). This package writes and reads subjects with a ``name`` and a
SHA-256 digest only; other digest algorithms are refused rather than half-understood, since
verification matches subjects by digest (statement.md: "Subject artifacts are matched purely by
digest").

Parsing follows the spec's parsing rules (``spec/v1/README.md``): unrecognised members are
ignored, but every member this module reads must have its documented type. Predicates of type
``https://slsa.dev/provenance/v1`` must carry SLSA's required fields
(``buildDefinition.buildType``, ``buildDefinition.externalParameters``,
``runDetails.builder.id``); other predicates pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypedDict

from attest import ijson
from attest.errors import AttestError

__all__ = [
    "PAYLOAD_TYPE",
    "SLSA_PROVENANCE_V1",
    "STATEMENT_TYPE",
    "Statement",
    "StatementJson",
    "Subject",
    "SubjectJson",
    "check_slsa_provenance",
    "dumps_statement",
    "loads_statement",
    "statement_from_json",
    "statement_to_json",
    "subjects_from_pairs",
]

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
SLSA_PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"

# in-toto spec v1 digest set: "lowercase hex" for sha256 (ResourceDescriptor, DigestSet).
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


class SubjectJson(TypedDict):
    """One ``subject`` entry as written (a ResourceDescriptor with a name and a digest)."""

    name: str
    digest: dict[str, str]


class StatementJson(TypedDict):
    """The in-toto Statement v1 JSON object."""

    _type: str
    subject: list[SubjectJson]
    predicateType: str
    predicate: dict[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """An artifact a statement is about: its name and lowercase hex SHA-256 digest."""

    name: str
    sha256: str

    def __post_init__(self) -> None:
        if not self.name:
            raise AttestError("subject name must not be empty")
        if _SHA256_HEX.fullmatch(self.sha256) is None:
            raise AttestError(
                f"subject {self.name!r}: sha256 digest must be 64 lowercase hex digits"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """An in-toto Statement v1. ``predicate`` is JSON (checked for SLSA Provenance v1)."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, object]

    def __post_init__(self) -> None:
        if not self.subjects:
            raise AttestError("a statement needs at least one subject")
        if not self.predicate_type:
            raise AttestError("predicateType must not be empty")
        if self.predicate_type == SLSA_PROVENANCE_V1:
            check_slsa_provenance(self.predicate)
        # A read-only copy: the predicate that was checked is the predicate that gets signed.
        object.__setattr__(self, "predicate", MappingProxyType(dict(self.predicate)))

    def digests(self) -> frozenset[str]:
        """Return the SHA-256 digests (lowercase hex) of all subjects."""
        return frozenset(subject.sha256 for subject in self.subjects)


def statement_to_json(statement: Statement) -> StatementJson:
    """Return the Statement JSON object, members in the spec's order."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": subject.name, "digest": {"sha256": subject.sha256}}
            for subject in statement.subjects
        ],
        "predicateType": statement.predicate_type,
        "predicate": dict(statement.predicate),
    }


def dumps_statement(statement: Statement) -> bytes:
    """Return the statement as compact UTF-8 JSON: the DSSE payload to sign."""
    return ijson.dumps(statement_to_json(statement), "statement")


def statement_from_json(value: object, what: str = "statement") -> Statement:
    """Parse a decoded Statement v1 strictly; ``what`` prefixes error messages."""
    obj = ijson.expect_object(value, what)
    for name in ("_type", "subject", "predicateType"):
        if name not in obj:
            raise AttestError(f"{what}: missing member {name!r}")
    statement_type = ijson.expect_str(obj["_type"], f"{what}: _type")
    if statement_type != STATEMENT_TYPE:
        raise AttestError(f"{what}: _type must be {STATEMENT_TYPE!r}, not {statement_type!r}")
    entries = ijson.expect_list(obj["subject"], f"{what}: subject")
    subjects = tuple(
        _subject_from_json(entry, f"{what}: subject[{index}]")
        for index, entry in enumerate(entries)
    )
    predicate_type = ijson.expect_str(obj["predicateType"], f"{what}: predicateType")
    # statement.md: predicate is optional; "if unset, the predicate is empty".
    predicate = ijson.expect_object(obj.get("predicate", {}), f"{what}: predicate")
    try:
        return Statement(subjects=subjects, predicate_type=predicate_type, predicate=predicate)
    except AttestError as exc:
        raise AttestError(f"{what}: {exc}") from exc


def loads_statement(data: bytes) -> Statement:
    """Parse Statement JSON bytes (a DSSE payload) strictly."""
    return statement_from_json(ijson.loads(data, "statement"))


def _subject_from_json(value: object, what: str) -> Subject:
    obj = ijson.expect_object(value, what)
    if "name" not in obj:
        raise AttestError(f"{what}: missing member 'name'")
    if "digest" not in obj:
        # statement.md requires a digest on every subject element.
        raise AttestError(f"{what}: missing member 'digest'")
    name = ijson.expect_str(obj["name"], f"{what}.name")
    digest = ijson.expect_object(obj["digest"], f"{what}.digest")
    others = sorted(set(digest) - {"sha256"})
    if others:
        raise AttestError(f"{what}.digest: only 'sha256' is supported, found {others[0]!r}")
    if "sha256" not in digest:
        raise AttestError(f"{what}.digest: missing member 'sha256'")
    sha256 = ijson.expect_str(digest["sha256"], f"{what}.digest.sha256")
    if _SHA256_HEX.fullmatch(sha256) is None:
        raise AttestError(f"{what}.digest.sha256: expected 64 lowercase hex digits")
    return Subject(name=name, sha256=sha256)


def subjects_from_pairs(pairs: Iterable[tuple[str, str]]) -> tuple[Subject, ...]:
    """Return subjects for ``(name, sha256 hex)`` pairs, refusing repeated names.

    statement.md: "If set, name and uri SHOULD be unique within subject."
    """
    subjects: list[Subject] = []
    seen: set[str] = set()
    for name, sha256 in pairs:
        if name in seen:
            raise AttestError(f"subject name {name!r} is repeated")
        seen.add(name)
        subjects.append(Subject(name=name, sha256=sha256))
    return tuple(subjects)


def check_slsa_provenance(predicate: Mapping[str, object]) -> None:
    """Raise :class:`AttestError` unless ``predicate`` has SLSA Provenance v1's required fields.

    SLSA v1.0 provenance: ``buildDefinition.buildType`` (TypeURI string, required),
    ``buildDefinition.externalParameters`` (object, required), ``runDetails.builder.id``
    (TypeURI string, required). Optional fields are not inspected.
    """
    what = "SLSA provenance v1 predicate"
    build = ijson.expect_object(
        _required(predicate, "buildDefinition", what), f"{what}: buildDefinition"
    )
    ijson.expect_str(
        _required(build, "buildType", f"{what}: buildDefinition"),
        f"{what}: buildDefinition.buildType",
    )
    ijson.expect_object(
        _required(build, "externalParameters", f"{what}: buildDefinition"),
        f"{what}: buildDefinition.externalParameters",
    )
    run = ijson.expect_object(_required(predicate, "runDetails", what), f"{what}: runDetails")
    builder = ijson.expect_object(
        _required(run, "builder", f"{what}: runDetails"), f"{what}: runDetails.builder"
    )
    ijson.expect_str(
        _required(builder, "id", f"{what}: runDetails.builder"), f"{what}: runDetails.builder.id"
    )


def _required(obj: Mapping[str, object], name: str, what: str) -> object:
    if name not in obj:
        raise AttestError(f"{what}: missing member {name!r}")
    return obj[name]
