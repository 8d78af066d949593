"""The token-initialising child: PINs from stdin only, labels as C_InitToken takes them."""

from __future__ import annotations

import io

import pytest

from signer.hsm import tokeninit


def test_a_label_is_blank_padded_to_32_bytes() -> None:
    assert tokeninit.padded_label("signer-dev") == b"signer-dev" + b" " * 22
    assert tokeninit.padded_label("é" * 16) == "é".encode() * 16


@pytest.mark.parametrize(
    "stdin", ["", "not json", "[]", '{"pin": "1234"}', '{"pin": 1234, "so_pin": "5678"}']
)
def test_stdin_without_both_pins_as_strings_is_refused(
    stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert tokeninit.main(["--module", "/unused.so", "--label", "x"]) == 1
    assert capsys.readouterr().err == 'stdin must be {"pin": "...", "so_pin": "..."}\n'
