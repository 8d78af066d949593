"""One trip into the PKCS#11 module per batch of signatures (the ``_p11batch`` extension).

python-pkcs11 releases the GIL around each PKCS#11 call and takes it back after, two or three
times per signature. While the event loop is busy, each take-back waits for the loop to let go
(up to the interpreter's switch interval), so under HTTP load the PKCS#11 thread spent
its time waiting, not signing: in isolation, 64-signature batches against a busy main thread
went from 640 signatures/s through python-pkcs11 to 4,800/s through this path.

The extension signs with the module's own ``C_SignInit``/``C_Sign`` (read from its
``CK_FUNCTION_LIST``) on python-pkcs11's session and key handles, for mechanisms without
parameters. It is built by ``pip install`` (``setup.py``, optional); where it could not be
built, ``load`` answers ``None`` and every signature goes through python-pkcs11 as before.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

log = logging.getLogger("signer.hsm")

# PKCS#11 v2.40 §5.2: CK_FUNCTION_LIST is a CK_VERSION, then the function pointers in this
# order; C_SignInit and C_Sign are the 43rd and 44th (0-based 42 and 43).
_SIGN_INIT_INDEX = 42
_SIGN_INDEX = 43

# (key object handle, mechanism, data, signature capacity in bytes)
Job = tuple[int, int, bytes, int]


class _Extension(Protocol):
    def sign_batch(
        self, sign_init: int, sign: int, session: int, jobs: Sequence[Job]
    ) -> list[bytes | int]: ...


class _FunctionList(ctypes.Structure):
    _fields_ = (
        ("major", ctypes.c_ubyte),
        ("minor", ctypes.c_ubyte),
        ("functions", ctypes.c_void_p * (_SIGN_INDEX + 1)),
    )


def _extension() -> _Extension | None:
    try:
        from signer.hsm import _p11batch  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError:
        return None
    return cast(_Extension, _p11batch)


@dataclass(frozen=True, slots=True)
class BatchSigner:
    """The module's sign functions, and the extension that calls them in batches."""

    extension: _Extension
    sign_init: int
    sign: int

    def sign_all(self, session: int, jobs: Sequence[Job]) -> list[bytes | int]:
        """Sign every job on ``session``: each result is a signature or the job's CK_RV."""
        return self.extension.sign_batch(self.sign_init, self.sign, session, jobs)


def load(module: str) -> BatchSigner | None:
    """The batch signer for the (already loaded) PKCS#11 ``module``; ``None`` without one."""
    extension = _extension()
    if extension is None:
        log.warning("the _p11batch extension is not built; signing through python-pkcs11 alone")
        return None
    # dlopen of a loaded path returns the same library: the function list is the one
    # python-pkcs11 initialised, and its sessions and handles are valid here.
    pointer = ctypes.POINTER(_FunctionList)()
    try:
        found = ctypes.CDLL(module).C_GetFunctionList(ctypes.byref(pointer)) == 0 and pointer
    except (OSError, AttributeError):  # not loadable again, or no C_GetFunctionList symbol
        found = False
    if not found:
        log.warning("C_GetFunctionList failed; signing through python-pkcs11 alone")
        return None
    functions = pointer.contents.functions
    sign_init, sign = functions[_SIGN_INIT_INDEX], functions[_SIGN_INDEX]
    if not sign_init or not sign:
        return None
    return BatchSigner(extension=extension, sign_init=sign_init, sign=sign)
