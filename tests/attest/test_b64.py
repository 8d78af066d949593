"""Base64 as DSSE and protobuf JSON carry it: either alphabet, padded or not, nothing else."""

from __future__ import annotations

import pytest

from attest.b64 import b64_decode, b64_encode
from attest.errors import AttestError


def test_encoding_is_standard_with_padding() -> None:
    assert b64_encode(b"\xfb\xff\xbf\x3e") == "+/+/Pg=="


@pytest.mark.parametrize("spelling", ["+/+/Pg==", "+/+/Pg", "-_-_Pg==", "-_-_Pg"])
def test_either_alphabet_with_or_without_padding_decodes(spelling: str) -> None:
    assert b64_decode(spelling, "x") == b"\xfb\xff\xbf\x3e"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("+/-_", "one of the standard"),
        ("Pg=", "1 padding characters where 2 belong"),
        ("Pg===", "padding"),
        ("P", "a length of 1 characters is impossible"),
        ("Ph==", "non-zero padding bits"),
        ("Pg==\n", "one of the standard"),
        ("Pé==", "ASCII"),
        (b"Pg==", "expected a base64 string"),
    ],
    ids=["mixed", "short-pad", "long-pad", "one-char", "pad-bits", "newline", "non-ascii", "bytes"],
)
def test_decoding_refuses_other_spellings(value: object, message: str) -> None:
    with pytest.raises(AttestError, match=message):
        b64_decode(value, "x")
