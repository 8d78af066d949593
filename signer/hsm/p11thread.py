"""The one thread per process that calls PKCS#11, the sessions it owns, and error translation.

python-pkcs11 initialises the module with ``C_Initialize(NULL)``: no locking callbacks and no
``CKF_OS_LOCKING_OK``, i.e. a promise that calls never overlap (PKCS#11 v2.40 §5.4). SoftHSM then
runs without locks, and two threads calling in at once crash the process. So this module keeps a
single-worker executor per process, shared by every ``Pkcs11Backend``, and creates the
``pkcs11.lib`` lazily on that thread, i.e. after any fork. A worker inherited across ``fork()``
belongs to the parent and is never used by the child.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pkcs11
from pkcs11.exceptions import (
    DeviceError,
    DeviceMemory,
    DeviceRemoved,
    FunctionNotSupported,
    GeneralError,
    KeyHandleInvalid,
    NoSuchToken,
    ObjectHandleInvalid,
    PinExpired,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    RandomNoRNG,
    SessionClosed,
    SessionCount,
    SessionHandleInvalid,
    TokenNotPresent,
    TokenNotRecognised,
    UserAlreadyLoggedIn,
    UserNotLoggedIn,
    UserPinNotInitialized,
)

from signer.errors import HsmError, HsmUnavailable
from signer.hsm import p11batch
from signer.hsm.p11batch import BatchSigner

if TYPE_CHECKING:
    from pkcs11.constants import Attribute
    from pkcs11.types import Object, Session

    from signer.hsm.keyobjects import SigningKey

T = TypeVar("T")

# Errors that mean the session (not the request) is broken: reopen once and retry once. A stale
# object handle after a reopen elsewhere is in the same class. After CKR_GENERAL_ERROR the
# module itself is initialised again first (``Connection.reset``).
RECONNECT: tuple[type[PKCS11Error], ...] = (
    GeneralError,
    SessionHandleInvalid,
    SessionClosed,
    DeviceRemoved,
    DeviceError,
    TokenNotPresent,
    UserNotLoggedIn,
    ObjectHandleInvalid,
    KeyHandleInvalid,
)

# Errors that mean the HSM cannot be used at all right now (HTTP 503, /readyz fails).
# CKR_GENERAL_ERROR is SoftHSM's answer once its token files are gone or unreadable.
UNAVAILABLE: tuple[type[PKCS11Error], ...] = (
    GeneralError,
    SessionHandleInvalid,
    SessionClosed,
    SessionCount,
    DeviceRemoved,
    DeviceError,
    DeviceMemory,
    TokenNotPresent,
    TokenNotRecognised,
    NoSuchToken,
    UserNotLoggedIn,
    UserPinNotInitialized,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinExpired,
    PinLocked,
)


@contextlib.contextmanager
def pkcs11_errors(action: str) -> Iterator[None]:
    """Translate ``PKCS11Error`` into ``HsmUnavailable``/``HsmError`` naming ``action``.

    Messages carry the PKCS#11 error name only; python-pkcs11 never puts a PIN in one.
    """
    try:
        yield
    except PKCS11Error as exc:
        raise translate(exc, action) from exc


def translate(exc: PKCS11Error, action: str) -> HsmError:
    """The ``HsmUnavailable`` or ``HsmError`` that ``exc`` means, naming ``action``."""
    if isinstance(exc, UNAVAILABLE):
        error: HsmError = HsmUnavailable(f"HSM unavailable during {action}: {_describe(exc)}")
    else:
        error = HsmError(f"HSM failed to {action}: {_describe(exc)}")
    error.__cause__ = exc
    return error


def _describe(exc: PKCS11Error) -> str:
    text = str(exc)
    return f"{type(exc).__name__} ({text})" if text else type(exc).__name__


class Connection:
    """One logged-in R/W session on one token, shared by every backend for it in the process.

    Only the worker thread touches the session and the caches; the registry lock guards
    ``users``.
    """

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self.module = module
        self.token_label = token_label
        self.pin = pin
        self.users = 0
        self.keys: dict[str, SigningKey] = {}  # key_id -> proven key object of this session
        self.spki: dict[str, bytes] = {}  # key_id -> SubjectPublicKeyInfo (session-independent)
        self.batch: BatchSigner | None = None  # set when the module is first loaded
        self._session: Session | None = None
        self._loaded = False
        self._reinitialize = False

    def __repr__(self) -> str:
        return f"Connection(module={self.module!r}, token_label={self.token_label!r})"

    def call(self, action: str, op: Callable[[Connection, Session], T], *, retry: bool = True) -> T:
        """Run ``op`` on the session, reopening it once on a session or device error."""
        with pkcs11_errors(action):
            try:
                return op(self, self._open())
            except RECONNECT as exc:
                if not retry:
                    raise
                self.reset(reinitialize=isinstance(exc, GeneralError))
                return op(self, self._open())

    def reset(self, *, reinitialize: bool = False) -> None:
        """Close the session (best effort) and drop every object cached from it; with
        ``reinitialize``, finalize and initialize the module before the next session.

        SoftHSM answers CKR_GENERAL_ERROR for good once its token files are gone or unreadable,
        even after they are back, until the module is initialised again. Every session of the
        process ends with it; other connections reopen theirs on their next call (RECONNECT).
        """
        session, self._session = self._session, None
        self.keys.clear()
        if session is not None:
            # The session may already be gone; closing it is only tidying up.
            with contextlib.suppress(PKCS11Error):
                session.close()
        if reinitialize:
            self._reinitialize = True

    def _open(self) -> Session:
        if self._session is not None:
            return self._session
        self.keys.clear()
        try:
            lib = pkcs11.lib(self.module)
        except PKCS11Error as exc:
            raise HsmUnavailable(
                f"cannot load PKCS#11 module {self.module}: {_describe(exc)}"
            ) from exc
        if self._reinitialize:
            lib.reinitialize()  # C_Finalize, C_Initialize: on this thread, like every call
            self._reinitialize = False
        if not self._loaded:
            self.batch, self._loaded = p11batch.load(self.module), True
        token = lib.get_token(token_label=self.token_label)
        try:
            self._session = token.open(rw=True, user_pin=self.pin)
        except UserAlreadyLoggedIn:
            # Someone else in this process is logged in to the token, and login is shared by
            # all its sessions (PKCS#11 v2.40 §5.6); the session opened for the failed login
            # stays open inside python-pkcs11 until C_Finalize.
            self._session = token.open(rw=True)
        return self._session


def find_objects(session: Session, template: dict[Attribute, Any]) -> list[Object]:
    """Every object matching ``template``, read to the end so no search stays open."""
    # python-pkcs11 0.10.1 marks a search active before C_FindObjectsInit; if that fails, the
    # search's destructor calls C_FindObjectsFinal and raises from __del__. A dead session is
    # the usual cause, so test the session first with a call that fails cleanly (and so takes
    # the reopen-and-retry path of Connection.call). Searches only run on cache misses.
    probe(session)
    return list(session.get_objects(template))


def probe(session: Session) -> None:
    """Fail with SessionHandleInvalid (or similar) unless the session is alive."""
    # C_GenerateRandom is the cheapest call python-pkcs11 exposes that takes the session
    # handle; a token without an RNG answers CKR_RANDOM_NO_RNG, which still proves the session.
    with contextlib.suppress(FunctionNotSupported, RandomNoRNG):
        session.generate_random(64)


class Worker:
    """The process's PKCS#11 thread and the connections it serves."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.connections: dict[tuple[str, str], Connection] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pkcs11")

    def executor(self) -> ThreadPoolExecutor:
        """The single-thread executor; refused in a child process that inherited it."""
        if os.getpid() != self.pid:
            raise HsmUnavailable("PKCS#11 backend was created before fork(); create it after")
        return self._executor


_lock = threading.Lock()
_worker: Worker | None = None


def _forget_parent() -> None:
    # The child has no worker thread, and the lock may have been held by a parent thread.
    global _lock, _worker  # noqa: PLW0603
    _lock = threading.Lock()
    _worker = None


os.register_at_fork(after_in_child=_forget_parent)


def attach(module: str, token_label: str, pin: str) -> tuple[Worker, Connection]:
    """Register a backend for ``(module, token_label)``; makes no PKCS#11 call."""
    global _worker  # noqa: PLW0603 - the one worker is per process by design
    # python-pkcs11 caches libs by path string, and a second spelling of one module (Debian's
    # /usr/lib/softhsm symlink vs its target) fails C_Initialize as already initialised.
    module = os.path.realpath(module)
    with _lock:
        if _worker is None or _worker.pid != os.getpid():
            _worker = Worker()
        key = (module, token_label)
        conn = _worker.connections.get(key)
        if conn is None:
            conn = _worker.connections[key] = Connection(module, token_label, pin)
        elif not hmac.compare_digest(conn.pin.encode(), pin.encode()):
            # The shared session is already logged in; never let a wrong PIN ride on it.
            raise HsmUnavailable(
                f"token {token_label!r} is already open in this process with another PIN"
            )
        conn.users += 1
        return _worker, conn


def detach(worker: Worker, conn: Connection) -> None:
    """Unregister a backend; blocks while the last one closes the session and the thread."""
    global _worker  # noqa: PLW0603
    with _lock:
        if worker.pid != os.getpid():
            return  # the parent's worker: its thread and sessions do not exist here
        conn.users -= 1
        if conn.users > 0:
            return
        worker.connections.pop((conn.module, conn.token_label), None)
        executor = worker.executor()
        executor.submit(conn.reset).result()
        if not worker.connections:
            # Under the lock, so no new worker thread can start before this one has stopped.
            executor.shutdown(wait=True)
            if _worker is worker:
                _worker = None
