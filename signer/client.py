"""A small HTTP client for the CLI's API commands (``keys rotate``, ``sign request``, ...).

Credentials come from ``--credentials`` (the ``credentials.json`` of ``signer init``, with
``--role``), or ``--url`` plus ``--token-file`` / the ``SIGNER_TOKEN`` variable. Tokens are read
from files or the environment, never from the command line, where other users could see them.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signer.errors import ConfigError
from signer.newfiles import check_private_file

DEFAULT_URL = "http://127.0.0.1:8700"
TIMEOUT_S = 30


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib would resend the ``Authorization`` header to wherever it
    points, another host or plain ``http://`` included. The signer's API never redirects."""

    def redirect_request(  # noqa: PLR0917 -- urllib's signature
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> None:
        """Never follow: the 30x reaches the caller as an error."""
        return


# The opener for calls that carry a token.
_AUTHENTICATED = urllib.request.build_opener(_NoRedirects)


class ApiError(Exception):
    """The signer answered with a problem document (or could not be reached)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail", "request failed"))
        self.status = status
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiClient:
    """Base URL and bearer token of one principal."""

    url: str
    token: str = field(repr=False)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request and return the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 -- the operator's configured signer URL
            self.url.rstrip("/") + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with _AUTHENTICATED.open(request, timeout=TIMEOUT_S) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                raise ApiError(exc.code, _problem_of(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, {"detail": f"cannot reach {self.url}: {exc}"}) from None

    def fetch(self, path: str) -> bytes:
        """GET ``path`` (a public resource such as a key PEM) and return the raw body."""
        return fetch_url(self.url.rstrip("/") + path)


def _problem_of(error: urllib.error.HTTPError) -> dict[str, Any]:
    """The problem document of an error answer (a refused redirect says where it pointed)."""
    if 300 <= error.code < 400:
        where = error.headers.get("Location", "elsewhere")
        return {"detail": f"the signer redirected to {where}; not sending the token there"}
    try:
        problem: dict[str, Any] = json.loads(error.read())
    except ValueError:
        return {"detail": f"HTTP {error.code}"}
    return problem


def fetch_url(url: str) -> bytes:
    """GET a public ``http(s)`` URL (a JWKS, a PEM) without credentials; the raw body."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 -- checked
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise ApiError(exc.code, {"detail": f"GET {url}: HTTP {exc.code}"}) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(0, {"detail": f"cannot reach {url}: {exc}"}) from None


def add_client_arguments(parser: argparse.ArgumentParser, *, role: str) -> None:
    """The options every API command takes."""
    parser.add_argument("--credentials", help="credentials.json written by `signer init`")
    parser.add_argument("--role", default=role, help=f"role in --credentials ({role})")
    parser.add_argument("--url", help=f"signer URL (env SIGNER_URL, default {DEFAULT_URL})")
    parser.add_argument("--token-file", help="file holding the bearer token (or SIGNER_TOKEN)")


def client_from_arguments(args: argparse.Namespace) -> ApiClient:
    """Build the client from ``--credentials`` or ``--url``/``--token-file``/``SIGNER_TOKEN``."""
    if args.credentials:
        try:
            check_private_file(Path(args.credentials), "--credentials")
            data = json.loads(Path(args.credentials).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--credentials {args.credentials!r}: {exc}") from None
        try:
            return ApiClient(url=args.url or data["url"], token=data["tokens"][args.role])
        except KeyError:
            raise ConfigError(f"{args.credentials} has no token for role {args.role!r}") from None
    if args.token_file:
        try:
            check_private_file(Path(args.token_file), "--token-file")
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--token-file {args.token_file!r}: {exc}") from None
    else:
        token = os.environ.get("SIGNER_TOKEN", "")
    if not token:
        raise ConfigError("no token: pass --credentials, --token-file or set SIGNER_TOKEN")
    return ApiClient(url=args.url or os.environ.get("SIGNER_URL", DEFAULT_URL), token=token)
