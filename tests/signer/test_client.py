"""The CLI's API client: a token goes only to the signer's own URL."""

from __future__ import annotations

import argparse
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from signer.client import ApiClient, ApiError, client_from_arguments
from signer.errors import ConfigError


class _Recording(http.server.BaseHTTPRequestHandler):
    """Answers 302 to ``target`` if set, else 200 ``{}``; records each Authorization header."""

    seen: list[str | None]
    target: str | None = None

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        if self.target is not None:
            self.send_response(302)
            self.send_header("Location", self.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        """Quiet."""


def _serve(target: str | None) -> tuple[http.server.HTTPServer, list[str | None]]:
    seen: list[str | None] = []
    handler = type("Handler", (_Recording,), {"seen": seen, "target": target})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def redirecting() -> Iterator[tuple[str, list[str | None], list[str | None]]]:
    """A server that redirects to another, and what each received."""
    elsewhere, seen_elsewhere = _serve(None)
    other = f"http://127.0.0.1:{elsewhere.server_address[1]}/v1/rings"
    first, seen_first = _serve(other)
    yield f"http://127.0.0.1:{first.server_address[1]}", seen_first, seen_elsewhere
    for server in (first, elsewhere):
        server.shutdown()
        server.server_close()


def test_a_redirect_is_refused_and_the_token_never_follows_it(
    redirecting: tuple[str, list[str | None], list[str | None]],
) -> None:
    url, seen_first, seen_elsewhere = redirecting
    with pytest.raises(ApiError, match="not sending the token there") as refused:
        ApiClient(url=url, token="sgn_redirect-canary").call("GET", "/v1/rings")
    assert refused.value.status == 302
    assert seen_first == ["Bearer sgn_redirect-canary"]
    assert seen_elsewhere == []


@pytest.mark.parametrize("option", ["credentials", "token_file"])
def test_a_credential_file_other_users_may_read_is_refused(tmp_path: Path, option: str) -> None:
    path = tmp_path / "secret"
    path.write_text('{"url": "http://127.0.0.1:1", "tokens": {"admin": "sgn_x"}}')
    path.chmod(0o644)
    args = argparse.Namespace(credentials=None, token_file=None, role="admin", url=None)
    setattr(args, option, str(path))
    with pytest.raises(ConfigError, match="can be read or written by other users"):
        client_from_arguments(args)
    path.chmod(0o600)
    assert client_from_arguments(args).url.startswith("http://")
