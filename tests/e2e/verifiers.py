"""Independent relying parties for soak tests: PyJWT's ``PyJWKClient`` and node's ``jose``.

Both cache the JWKS the way relying parties do; their cache lifetime is the ring's
``jwks_max_age``, which is what the signer's ``Cache-Control`` tells them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jwt

INTEROP = Path(__file__).resolve().parent.parent / "interop"


@dataclass
class PyJwtVerifier:
    """A caching ``PyJWKClient`` per JWKS URL, used from one worker thread."""

    jwks_url: str
    cache_seconds: int
    _executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    _client: jwt.PyJWKClient | None = None

    def _verify(self, token: str) -> str | None:
        if self._client is None:
            self._client = jwt.PyJWKClient(
                self.jwks_url, cache_jwk_set=True, lifespan=self.cache_seconds
            )
        try:
            key = self._client.get_signing_key_from_jwt(token)
            header = jwt.get_unverified_header(token)
            jwt.decode(token, key.key, algorithms=[header["alg"]])
        except jwt.PyJWTError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    async def verify(self, token: str) -> str | None:
        """None if the token verifies, else the error."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._verify, token)

    def close(self) -> None:
        self._executor.shutdown(wait=False)


@dataclass
class JoseVerifier:
    """node's ``jose`` ``createRemoteJWKSet`` in a child process."""

    process: asyncio.subprocess.Process
    jwks_url: str
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _waiting: dict[int, asyncio.Future[str | None]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, jwks_url: str, *, cache_seconds: int, cooldown_seconds: float = 30.0
    ) -> AsyncIterator[JoseVerifier]:
        """Start the node verifier; stop it on exit."""
        node = shutil.which("node")
        assert node is not None, "node is required (scripts/setup installs it)"
        process = await asyncio.create_subprocess_exec(
            node,
            str(INTEROP / "verify-jwt.mjs"),
            str(cache_seconds * 1000),
            str(int(cooldown_seconds * 1000)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=INTEROP,
        )
        verifier = cls(process=process, jwks_url=jwks_url)
        verifier._reader = asyncio.create_task(verifier._read())
        try:
            yield verifier
        finally:
            assert process.stdin is not None
            process.stdin.close()
            await process.wait()
            await verifier._reader

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            answer = json.loads(line)
            future = self._waiting.pop(answer["id"])
            future.set_result(None if answer["ok"] else answer["error"])

    async def verify(self, token: str) -> str | None:
        """None if the token verifies, else the error."""
        assert self.process.stdin is not None
        ident = next(self._ids)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        line = {"id": ident, "token": token, "jwks_url": self.jwks_url}
        self.process.stdin.write(json.dumps(line).encode() + b"\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(future, timeout=30)
