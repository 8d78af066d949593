"""The JWKS document: canonical bytes, strong ETag, If-None-Match."""

from __future__ import annotations

import hashlib
import json
from typing import cast

import pytest

from jwks.b64 import b64url_encode
from jwks.document import build_jwks, etag_matches
from jwks.jwk import Jwk

_EC = Jwk(
    kty="EC",
    crv="P-256",
    x="f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    y="x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    kid="ec-kid",
    alg="ES256",
    use="sig",
)
_OKP = Jwk(
    kty="OKP",
    crv="Ed25519",
    x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    kid="okp-kid",
    alg="EdDSA",
    use="sig",
)


def test_body_is_compact_keys_object_in_given_order() -> None:
    body = build_jwks([_OKP, _EC]).body

    assert body == json.dumps({"keys": [_OKP, _EC]}, separators=(",", ":")).encode("ascii")


def test_empty_key_set_is_valid_document() -> None:
    assert build_jwks([]).body == b'{"keys":[]}'


def test_same_keys_give_byte_identical_document() -> None:
    assert build_jwks([_EC, _OKP]) == build_jwks([Jwk(**_EC), Jwk(**_OKP)])


def test_member_order_of_input_does_not_change_bytes() -> None:
    """Replicas that built their dicts in another order still serve the same bytes and ETag."""
    reordered = cast(Jwk, dict(reversed(list(_EC.items()))))

    assert build_jwks([reordered]) == build_jwks([_EC])


def test_etag_is_quoted_base64url_sha256_of_body() -> None:
    document = build_jwks([_EC])

    digest = b64url_encode(hashlib.sha256(document.body).digest())
    assert document.etag == f'"{digest}"'
    assert len(document.etag) == 45


def test_etag_changes_when_a_key_is_added() -> None:
    assert build_jwks([_EC]).etag != build_jwks([_EC, _OKP]).etag


def test_etag_changes_when_a_key_is_removed() -> None:
    assert build_jwks([_EC, _OKP]).etag != build_jwks([_OKP]).etag


def test_etag_changes_when_key_order_changes() -> None:
    """Order is the caller's to fix; the document does not hide a nondeterministic caller."""
    assert build_jwks([_EC, _OKP]).etag != build_jwks([_OKP, _EC]).etag


def test_rejects_private_member() -> None:
    private = cast(Jwk, {**_OKP, "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"})

    with pytest.raises(ValueError, match=r"must not have: \['d'\]"):
        build_jwks([_EC, private])


def test_rejects_duplicate_kid() -> None:
    with pytest.raises(ValueError, match="repeats kid 'ec-kid'"):
        build_jwks([_EC, Jwk(**{**_OKP, "kid": "ec-kid"})])


_ETAG = '"abc"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('"abd"', False),
        ("*", True),
        (" * ", True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ('"x",W/"abc" , "y"', True),
        ('"x", "y"', False),
        (', ,"abc",', True),
        ('"a,b", "abc"', True),
        ('"a,b"', False),
        ("abc", False),
        ('"abc', False),
        ('"abc" "x"', False),
        ('"x", *', False),
        ('w/"abc"', False),
    ],
    ids=[
        "absent",
        "empty",
        "same",
        "different",
        "star",
        "star-with-ows",
        "weak-prefix-matches",
        "in-list",
        "in-list-weak-ows",
        "not-in-list",
        "empty-list-elements",
        "comma-inside-tag",
        "comma-inside-tag-only",
        "unquoted",
        "unterminated",
        "missing-comma",
        "star-in-list",
        "lowercase-weak-prefix",
    ],
)
def test_etag_matches_if_none_match(header: str | None, expected: bool) -> None:
    """RFC 9110 §13.1.2 with weak comparison (§8.8.3.2)."""
    assert etag_matches(header, _ETAG) is expected


def test_etag_matches_weak_current_etag() -> None:
    assert etag_matches('"abc"', 'W/"abc"')


def test_etag_matches_rejects_malformed_current_etag() -> None:
    with pytest.raises(ValueError, match="not an entity-tag"):
        etag_matches('"abc"', "abc")


def test_etag_matches_document_etag() -> None:
    document = build_jwks([_EC])

    assert etag_matches(f'W/"old", {document.etag}', document.etag)
