"""``signer audit verify --file``: an export is read as JSON Lines, split at newlines only."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.audit.chain import AuditEntry, link_all
from signer.cli import main


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
def test_an_export_with_a_line_separator_inside_a_record_verifies(
    tmp_path: Path, separator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request path in an authz.deny is the caller's: an anonymous request to
    ``/v1/rings/x%E2%80%A8y/jwt`` put U+2028 in the log, and the verifier split the record."""
    entries = [
        AuditEntry(
            time="2026-11-29T10:00:00.000000Z",
            actor="anonymous",
            action="authz.deny",
            target=f"/v1/rings/x{separator}y/jwt",
            outcome="denied",
            details={"code": "unauthenticated"},
        ),
        AuditEntry(
            time="2026-11-29T10:00:01.000000Z",
            actor="idp",
            action="jwt.sign",
            target="ring/default",
            outcome="success",
            details={},
        ),
    ]
    export = tmp_path / "audit.jsonl"
    export.write_text("".join(r.line() + "\n" for r in link_all(entries, head=None)), "utf-8")
    assert separator in export.read_text(encoding="utf-8")  # unescaped, as the sink writes it
    assert main(["audit", "verify", "--file", str(export)]) == 0
    assert "2 records" in capsys.readouterr().out
