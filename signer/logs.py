"""Structured logs: one JSON object per line, carrying the request id of the request in progress.

The request id comes from the caller's ``X-Request-Id`` when it is a plain token (so a trace can
cross services), or is generated; it is echoed in the response header and in problem documents.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import secrets
import time

from aiohttp.http_exceptions import HttpProcessingError

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # used with fullmatch: no trailing newline
# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as is.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _RequestIds:
    """Fresh ids: a random prefix per process and a counter (no system call per request).

    An id names a request in logs; it is not a secret, only unique.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)  # a worker must not repeat its parent

    def reset(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


_ids = _RequestIds()


def new_request_id(offered: str | None) -> str:
    """The caller's id if it is a plain token, else a fresh one unique to this process."""
    if offered is not None and _ACCEPTED_ID.fullmatch(offered):
        return offered
    return _ids.next()


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line for ``record``."""
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            line["request_id"] = current
        line.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        )
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class MalformedRequests(logging.Filter):
    """Log a request aiohttp's HTTP parser refused without the parser's message.

    That message quotes the offending bytes, such as a whole ``Authorization: Bearer …`` line
    with one bad character in it, and aiohttp logs it as an error with a traceback: a token
    would reach the log. A malformed request is the client's fault, so it is logged as a
    warning naming only the kind of fault.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a record whose exception is an HTTP parse error; pass every record."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = "refused a malformed HTTP request (%s, status %s)"
            record.args = (type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(level: str, *, json_lines: bool) -> None:
    """Send logs to standard error, as JSON lines or as text."""
    handler = logging.StreamHandler()
    handler.addFilter(MalformedRequests())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
