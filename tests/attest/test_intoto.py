"""in-toto Statement v1 building and strict parsing; the SLSA Provenance v1 predicate check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from attest.errors import AttestError
from attest.intoto import (
    SLSA_PROVENANCE_V1,
    STATEMENT_TYPE,
    Statement,
    Subject,
    dumps_statement,
    loads_statement,
    statement_from_json,
    subjects_from_pairs,
)

_SHA = "a" * 64
_SLSA: dict[str, object] = {
    "buildDefinition": {
        "buildType": "https://example.com/build/v1",
        "externalParameters": {"ref": "refs/tags/v1"},
    },
    "runDetails": {"builder": {"id": "https://ci.example.com/runner"}},
}


def _statement(**predicate: object) -> Statement:
    return Statement(
        subjects=(Subject(name="acme-1.0.tar.gz", sha256=_SHA),),
        predicate_type="https://example.com/predicate/v1",
        predicate=predicate,
    )


def test_statement_serialises_in_spec_order_as_compact_json() -> None:
    data = dumps_statement(_statement(b=1, a="ü"))

    assert (
        data
        == (
            '{"_type":"https://in-toto.io/Statement/v1",'
            f'"subject":[{{"name":"acme-1.0.tar.gz","digest":{{"sha256":"{_SHA}"}}}}],'
            '"predicateType":"https://example.com/predicate/v1","predicate":{"b":1,"a":"ü"}}'
        ).encode()
    )


def test_statement_round_trips() -> None:
    statement = _statement(nested={"list": [1, 2, None]})

    assert loads_statement(dumps_statement(statement)) == statement


def test_slsa_provenance_with_required_fields_round_trips() -> None:
    statement = Statement(
        subjects=(Subject(name="x", sha256=_SHA),),
        predicate_type=SLSA_PROVENANCE_V1,
        predicate=_SLSA,
    )

    assert loads_statement(dumps_statement(statement)).predicate == _SLSA


def _drop(path: list[str]) -> dict[str, Any]:
    predicate: dict[str, Any] = json.loads(json.dumps(_SLSA))
    node = predicate
    for name in path[:-1]:
        node = node[name]
    del node[path[-1]]
    return predicate


@pytest.mark.parametrize(
    "path",
    [
        ["buildDefinition"],
        ["buildDefinition", "buildType"],
        ["buildDefinition", "externalParameters"],
        ["runDetails"],
        ["runDetails", "builder"],
        ["runDetails", "builder", "id"],
    ],
    ids=".".join,
)
def test_slsa_provenance_without_a_required_field_is_refused(path: list[str]) -> None:
    with pytest.raises(AttestError, match=f"missing member '{path[-1]}'"):
        Statement(
            subjects=(Subject(name="x", sha256=_SHA),),
            predicate_type=SLSA_PROVENANCE_V1,
            predicate=_drop(path),
        )


def test_slsa_provenance_with_a_non_string_builder_id_is_refused() -> None:
    predicate = json.loads(json.dumps(_SLSA))
    predicate["runDetails"]["builder"]["id"] = 7
    with pytest.raises(AttestError, match=r"runDetails\.builder\.id: expected a string"):
        Statement(
            subjects=(Subject(name="x", sha256=_SHA),),
            predicate_type=SLSA_PROVENANCE_V1,
            predicate=predicate,
        )


def test_other_predicates_pass_through_unchecked() -> None:
    statement = _statement(anything=["goes"])

    assert dict(statement.predicate) == {"anything": ["goes"]}


def test_predicate_is_a_read_only_copy() -> None:
    source: dict[str, object] = {"a": 1}
    statement = Statement(
        subjects=(Subject(name="x", sha256=_SHA),), predicate_type="p", predicate=source
    )
    source["a"] = 2

    assert statement.predicate["a"] == 1
    with pytest.raises(TypeError):
        statement.predicate["a"] = 3  # type: ignore[index]


@pytest.mark.parametrize("sha256", ["A" * 64, "a" * 63, "g" * 64, ""], ids=str)
def test_subject_needs_lowercase_hex_sha256(sha256: str) -> None:
    with pytest.raises(AttestError, match="64 lowercase hex"):
        Subject(name="x", sha256=sha256)


def test_subjects_from_pairs_refuses_repeated_names() -> None:
    with pytest.raises(AttestError, match="repeated"):
        subjects_from_pairs([("a", _SHA), ("a", "b" * 64)])


def _document(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "x", "digest": {"sha256": _SHA}}],
        "predicateType": "p",
        "predicate": {},
    }
    document.update(changes)
    return document


_MALFORMED = [
    ("old-statement-type", _document(_type="https://in-toto.io/Statement/v0.1"), "_type must be"),
    ("no-subjects", _document(subject=[]), "subject: must not be empty"),
    ("subject-not-list", _document(subject={}), "subject: expected an array"),
    ("subject-without-digest", _document(subject=[{"name": "x"}]), "missing member 'digest'"),
    ("subject-without-name", _document(subject=[{"digest": {"sha256": _SHA}}]), "'name'"),
    (
        "subject-other-algorithm",
        _document(subject=[{"name": "x", "digest": {"sha256": _SHA, "sha512": "b" * 128}}]),
        "only 'sha256'",
    ),
    (
        "subject-upper-hex",
        _document(subject=[{"name": "x", "digest": {"sha256": _SHA.upper()}}]),
        "64 lowercase hex",
    ),
    ("predicate-type-empty", _document(predicateType=""), "predicateType: must not be empty"),
    ("predicate-not-object", _document(predicate=[]), "predicate: expected an object"),
    (
        "slsa-missing-fields",
        _document(predicateType=SLSA_PROVENANCE_V1, predicate={}),
        "buildDefinition",
    ),
]


@pytest.mark.parametrize(
    ("document", "message"),
    [(d, m) for _, d, m in _MALFORMED],
    ids=[name for name, _, _ in _MALFORMED],
)
def test_statement_parsing_refuses_malformed_input(document: object, message: str) -> None:
    with pytest.raises(AttestError, match=message):
        statement_from_json(document)


def test_statement_parsing_ignores_unrecognised_members() -> None:
    """in-toto spec v1 parsing rules: consumers ignore unrecognised fields."""
    document = _document(extra=1)
    document["subject"] = [{"name": "x", "digest": {"sha256": _SHA}, "uri": "https://x"}]

    assert statement_from_json(document) == Statement(
        subjects=(Subject(name="x", sha256=_SHA),), predicate_type="p", predicate={}
    )


def test_missing_predicate_is_empty() -> None:
    document = _document()
    del document["predicate"]

    assert dict(statement_from_json(document).predicate) == {}
