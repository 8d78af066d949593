"""Redis store URLs, parsed without the Redis client (settings validate them at load time).

Accepted forms:

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://…`` (TLS): one server.
- ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``: one server on a local socket.
- ``redis+sentinel://[[user]:password@]host:port[,host2:port2…]/service_name[/db]``: ask the
  Sentinels for the current master of ``service_name`` (and again after a failover). The
  credentials are the master's; the Sentinels are asked without a password.

The direct forms are handed to ``redis.asyncio.from_url`` as they are (its query options such as
``?socket_timeout=`` apply); only the Sentinel form is taken apart here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

DIRECT_SCHEMES: Final = ("redis://", "rediss://", "unix://")
SENTINEL_SCHEME: Final = "redis+sentinel://"
SCHEMES: Final = (*DIRECT_SCHEMES, SENTINEL_SCHEME)
SENTINEL_PORT: Final = 26379  # the Sentinel default (redis.io/docs/management/sentinel)


@dataclass(frozen=True, slots=True, kw_only=True)
class SentinelTarget:
    """Where the Sentinels are and which master (``service``) and database to use."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_redis_url(url: str) -> bool:
    """Whether ``url`` names a Redis store (any accepted scheme)."""
    return url.startswith(SCHEMES)


def check_redis_url(url: str) -> None:
    """Raise ``ValueError`` with a precise message unless ``url`` is an accepted Redis URL."""
    if url.startswith(SENTINEL_SCHEME):
        parse_sentinel_url(url)
        return
    if not url.startswith(DIRECT_SCHEMES):
        raise ValueError(f"expected one of {', '.join(SCHEMES)}")
    scheme, rest = url.split("://", 1)
    where = rest.rpartition("@")[2]
    if scheme == "unix" and not where.startswith("/"):
        raise ValueError("a unix:// URL needs an absolute socket path (unix:///run/redis.sock)")
    if scheme != "unix" and not where.split("/", 1)[0].split("?", 1)[0]:
        raise ValueError(f"a {scheme}:// URL needs a host ({scheme}://127.0.0.1:6379/0)")
    if scheme != "unix" and _client_host(url) != _host_of(where):
        # The client splits the authority at the first "/", "?" or "#": a password holding one
        # unencoded ends it early, and the client would connect somewhere else, with no
        # password, or fail quoting part of the password. Say so without quoting it.
        raise ValueError(
            "the host:port part does not parse; percent-encode '/', '?', '#' and '@' in a "
            "password (or use password_env)"
        )


def _client_host(url: str) -> str | None:
    """The host the client will connect to (None if its port does not parse either)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 -- the property parses the port
    except ValueError:
        return None
    return parts.hostname


def _host_of(where: str) -> str:
    """The host of ``host[:port][/db][?query]``, the text after a URL's last "@"."""
    authority = where.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if authority.startswith("["):  # an IPv6 literal
        return authority[1 : authority.find("]")].lower()
    return authority.rsplit(":", 1)[0].lower() if ":" in authority else authority.lower()


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Take a ``redis+sentinel://`` URL apart; ``ValueError`` names what is wrong."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}")
    rest = url.removeprefix(SENTINEL_SCHEME)
    if "?" in rest or "#" in rest:
        raise ValueError("a Sentinel URL takes no query or fragment")
    credentials, _, rest = rest.rpartition("@")
    username, password = _credentials(credentials)
    hosts, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("a Sentinel URL ends with /service_name or /service_name/db")
    db = 0
    if len(parts) == 2:
        if not (parts[1].isascii() and parts[1].isdigit()):
            raise ValueError(f"database {parts[1]!r} is not a number")
        db = int(parts[1])
    return SentinelTarget(
        sentinels=tuple(_host_port(h) for h in hosts.split(",")),
        service=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
    )


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, colon, password = text.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _host_port(text: str) -> tuple[str, int]:
    """``host:port``, ``host`` (default port) or ``[v6]:port``."""
    if not text:
        raise ValueError("a Sentinel URL lists host:port pairs separated by commas")
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        port_text = tail.removeprefix(":") if tail else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} has no valid port")
    return host, int(port_text)
