"""The PKCS#11 adapter of the ``KeyBackend`` port (any module; SoftHSM2 is the tested one).

Threading. python-pkcs11 calls ``C_Initialize(NULL)``, which tells the module the application
will not call it concurrently, so SoftHSM switches its own locking off; two threads calling in
at once crash the process. Every PKCS#11 call therefore runs on one process-wide worker thread
(``signer.hsm.p11thread``), which also owns the sessions and the key caches. Backends are
handles on it, so several backends (or tests) in one process still make one thread.

Sessions. Login state belongs to the application and token, not to a session (PKCS#11 v2.40
§5.6 ``C_Login``), so every backend for one token shares one logged-in R/W session. A session or
device error reopens it once and retries the operation once; everything else becomes an
``HsmError``/``HsmUnavailable`` at ``pkcs11_errors()``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import MGF, KeyType, Mechanism
from pkcs11.types import Session
from pkcs11.util.ec import encode_named_curve_parameters

from jwks.algorithms import SPECS, Alg
from signer.errors import HsmError, HsmUnavailable, SignerError
from signer.hsm import p11batch
from signer.hsm.base import KeyProof, KeyRef
from signer.hsm.ecpoint import Curve, ec_spki, rsa_spki
from signer.hsm.keyobjects import (
    KIND,
    SigningKey,
    check_proof,
    find_private,
    kind_of,
    read_proof,
    signing_key,
)
from signer.hsm.p11thread import (
    RECONNECT,
    Connection,
    attach,
    detach,
    find_objects,
    pkcs11_errors,
    probe,
    translate,
)
from signer.hsm.signqueue import SignJob, SignQueue

__all__ = ["Pkcs11Backend", "pkcs11_errors"]

T = TypeVar("T")

RSA_BITS = 2048

# RFC 7518 §3.5: PS256 is RSASSA-PSS with SHA-256, MGF1 with SHA-256 and a 32-byte salt;
# python-pkcs11 would otherwise default the PSS parameters to SHA-1.
_PSS_SHA256 = (Mechanism.SHA256, MGF.SHA256, 32)

# An RSA key does not record whether it is meant for PKCS#1 v1.5 or PSS, so list_refs
# reports RSA keys as RS256; callers take the ring's alg from the state store.
_ALG_OFKIND: dict[tuple[KeyType, Curve | None], Alg] = {
    (KeyType.EC, Curve.P256): Alg.ES256,
    (KeyType.EC, Curve.P384): Alg.ES384,
    (KeyType.EC_EDWARDS, Curve.ED25519): Alg.EDDSA,
    (KeyType.RSA, None): Alg.RS256,
}


class Pkcs11Backend:
    """``KeyBackend`` on a PKCS#11 token; the caller exports ``SOFTHSM2_CONF`` (if any) first."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self._token_label = token_label
        self._worker, self._conn = attach(module, token_label, pin)
        self._closed = False
        self._signs = SignQueue(self._sign_batch)

    @classmethod
    async def open(cls, module: str, token_label: str, pin: str) -> Pkcs11Backend:
        """Construct a backend and log in now, so a wrong PIN or missing token fails at start-up."""
        backend = cls(module, token_label, pin)
        try:
            await backend.aping()
        except BaseException:
            await backend.aclose()
            raise
        return backend

    def __repr__(self) -> str:
        return f"Pkcs11Backend(token_label={self._token_label!r}, closed={self._closed})"

    async def generate(self, alg: Alg, key_id: str, label: str) -> KeyRef:
        """Generate a non-extractable key pair for ``alg`` with ``CKA_ID`` = ``key_id`` bytes."""
        ref = KeyRef(key_id=_key_id(key_id).hex(), label=label, alg=alg)
        return await self._call(f"generate {label!r}", functools.partial(self._generate, ref))

    async def public_key(self, ref: KeyRef) -> bytes:
        """Return the public key as DER SubjectPublicKeyInfo (cached per key)."""
        return await self._call(
            f"read public key {ref.label!r}", functools.partial(self._spki, ref)
        )

    async def sign(self, ref: KeyRef, data: bytes) -> bytes:
        """Sign ``data`` with the key's JOSE algorithm and return the JOSE-form signature.

        Concurrent calls are queued and signed in batches, one trip to the PKCS#11 thread per
        batch (see ``SignQueue``).
        """
        return await self._submit(ref, _message(ref, data))

    async def sign_many(self, ref: KeyRef, inputs: Sequence[bytes]) -> list[bytes]:
        """``sign`` every input with one key: one queue entry each, one wait for them all."""
        self._check_open()
        return await self._signs.submit_many(ref, [_message(ref, data) for data in inputs])

    async def sign_digest(self, ref: KeyRef, digest: bytes) -> bytes:
        """Sign a digest the caller computed (ECDSA only) and return the raw ``r || s``.

        A Sigstore message signature is ECDSA over the artifact's SHA-256, so the service signs
        the digest it was given rather than bytes it never sees (the artifact).
        """
        spec = SPECS[ref.alg]
        if spec.hash_name is None:
            raise HsmError(f"{ref.alg} keys cannot sign a precomputed digest")
        size = hashlib.new(spec.hash_name).digest_size
        if len(digest) != size:
            raise HsmError(f"a {spec.hash_name} digest is {size} bytes, not {len(digest)}")
        return await self._submit(ref, digest)

    async def destroy(self, ref: KeyRef) -> None:
        """Destroy both halves of the key pair; an absent key is not an error."""
        await self._call(f"destroy {ref.label!r}", functools.partial(self._destroy, ref))

    async def attributes(self, ref: KeyRef) -> KeyProof:
        """Read the private key's custody attributes and try to read its secret value."""
        return await self._call(
            f"read attributes of {ref.label!r}",
            lambda conn, session: read_proof(find_private(session, ref)),
        )

    async def prove(self, ref: KeyRef) -> KeyProof:
        """Return the key's proof, or raise ``KeyProofFailed`` naming what breaks it."""
        proof = await self.attributes(ref)
        check_proof(ref, proof)
        return proof

    async def list_refs(self, label_prefix: str) -> list[KeyRef]:
        """Every private key whose label starts with ``label_prefix`` (RSA keys come back RS256)."""
        return await self._call(
            "list keys", lambda conn, session: _list_refs(session, label_prefix)
        )

    async def aping(self) -> None:
        """Raise ``HsmUnavailable`` unless the token answers on the (re)opened session."""
        await self._call("ping", _ping)

    @property
    def batched(self) -> bool:
        """Whether signatures reach the module in batches (``p11batch``), once it is open."""
        return self._conn.batch is not None

    async def run_in_session(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` with the live session on the PKCS#11 thread, without retry.

        An escape hatch for diagnostics and tests; ``fn`` must not block or start threads.
        """
        return await self._call("run in session", lambda conn, session: fn(session), retry=False)

    async def aclose(self) -> None:
        """Release this backend; the last one for a token closes its session and the thread."""
        if self._closed:
            return
        self._closed = True
        await self._signs.drain()
        # Off the event loop: detaching waits for the PKCS#11 thread to finish closing.
        await asyncio.to_thread(detach, self._worker, self._conn)

    async def _submit(self, ref: KeyRef, data: bytes) -> bytes:
        """Queue ``data`` (already hashed where the mechanism wants a digest) for signing."""
        self._check_open()
        return await self._signs.submit(ref, data)

    def _check_open(self) -> None:
        if self._closed:
            raise HsmUnavailable(f"PKCS#11 backend for token {self._token_label!r} is closed")

    async def _call(
        self, action: str, op: Callable[[Connection, Session], T], *, retry: bool = True
    ) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        call = functools.partial(self._conn.call, action, op, retry=retry)
        return await loop.run_in_executor(self._worker.executor(), call)

    async def _sign_batch(self, jobs: Sequence[SignJob]) -> list[bytes | SignerError]:
        loop = asyncio.get_running_loop()
        call = functools.partial(
            self._conn.call, f"sign {len(jobs)} input(s)", functools.partial(_sign_all, jobs)
        )
        return await loop.run_in_executor(self._worker.executor(), call)

    # Everything below runs on the PKCS#11 thread.

    def _generate(self, ref: KeyRef, conn: Connection, session: Session) -> KeyRef:
        ident = bytes.fromhex(ref.key_id)
        if find_objects(session, {Attribute.ID: ident}):
            raise HsmError(f"an object with CKA_ID {ref.key_id} already exists on the token")
        key_type, curve = KIND[ref.alg]
        public: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.VERIFY: True,
            Attribute.ENCRYPT: False,
            Attribute.WRAP: False,
            Attribute.MODIFIABLE: False,  # nobody relabels or re-purposes it later
            Attribute.ID: ident,
            Attribute.LABEL: ref.label,
        }
        # DESIGN "Key custody": born on the token, never readable, able to sign and nothing else.
        private: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.MODIFIABLE: False,
            Attribute.SIGN: True,
            Attribute.SIGN_RECOVER: False,  # SoftHSM's default is True: a capability we never use
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
            Attribute.ID: ident,
            Attribute.LABEL: ref.label,
        }
        key_length: int | None = None
        if curve is None:
            key_length = RSA_BITS
            public[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
        else:
            public[Attribute.EC_PARAMS] = encode_named_curve_parameters(_CURVE_OID[curve])
        _, private_key = session.generate_keypair(
            key_type,
            key_length,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template=public,
            private_template=private,
            store=True,
        )
        # Prove what the token made of the template before anyone signs with it.
        conn.keys[ref.key_id] = signing_key(ref, private_key)
        return ref

    def _spki(self, ref: KeyRef, conn: Connection, session: Session) -> bytes:
        cached = conn.spki.get(ref.key_id)
        if cached is not None:
            return cached
        found = find_objects(
            session,
            {
                Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                Attribute.ID: bytes.fromhex(ref.key_id),
                Attribute.LABEL: ref.label,
            },
        )
        if len(found) != 1:
            raise HsmError(
                f"expected one public key {ref.label!r} on the token, found {len(found)}"
            )
        public = found[0]
        try:
            kind = kind_of(public)
            if kind != KIND[ref.alg]:
                raise HsmError(f"key {ref.label!r} is not a {ref.alg} key")
            if kind[1] is None:
                modulus = int.from_bytes(public[Attribute.MODULUS], "big")
                exponent = int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
                spki = rsa_spki(modulus, exponent)
            else:
                spki = ec_spki(public[Attribute.EC_PARAMS], public[Attribute.EC_POINT])
        except ValueError as exc:
            raise HsmError(f"public key {ref.label!r} cannot be parsed: {exc}") from exc
        conn.spki[ref.key_id] = spki
        return spki

    def _destroy(self, ref: KeyRef, conn: Connection, session: Session) -> None:
        conn.keys.pop(ref.key_id, None)
        conn.spki.pop(ref.key_id, None)
        ident = bytes.fromhex(ref.key_id)
        for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            for obj in find_objects(session, {Attribute.CLASS: object_class, Attribute.ID: ident}):
                obj.destroy()


_CURVE_OID = {Curve.P256: "secp256r1", Curve.P384: "secp384r1", Curve.ED25519: "1.3.101.112"}

_MECHANISM = {
    Alg.ES256: Mechanism.ECDSA,
    Alg.ES384: Mechanism.ECDSA,
    Alg.RS256: Mechanism.SHA256_RSA_PKCS,
    Alg.EDDSA: Mechanism.EDDSA,  # RFC 8037 §3.1: PureEdDSA over the whole message
}


def _message(ref: KeyRef, data: bytes) -> bytes:
    """What the module signs for ``data`` with ``ref``'s mechanism."""
    hash_name = SPECS[ref.alg].hash_name
    if hash_name is None:
        return data
    # ECDSA: SoftHSM 2.6.1 has no CKM_ECDSA_SHA256, so hash here and sign with CKM_ECDSA.
    return hashlib.new(hash_name, data).digest()


def _key_id(key_id: str) -> bytes:
    try:
        ident = bytes.fromhex(key_id)
    except ValueError:
        raise HsmError(f"key id {key_id!r} is not hex") from None
    if not ident:
        raise HsmError("key id is empty")
    return ident


def _list_refs(session: Session, label_prefix: str) -> list[KeyRef]:
    refs = []
    for obj in find_objects(session, {Attribute.CLASS: ObjectClass.PRIVATE_KEY}):
        try:
            label = obj[Attribute.LABEL]
        except UnicodeDecodeError:  # another application's key, labelled in some other way
            continue
        if not label.startswith(label_prefix):
            continue
        try:
            alg = _ALG_OFKIND.get(kind_of(obj))
        except ValueError:
            alg = None
        if alg is not None:  # keys of other kinds are not the signer's
            refs.append(KeyRef(key_id=bytes(obj[Attribute.ID]).hex(), label=label, alg=alg))
    return sorted(refs, key=lambda ref: ref.label)


def _sign_all(
    jobs: Sequence[SignJob], conn: Connection, session: Session
) -> list[bytes | SignerError]:
    """Sign every job in turn; one job's failure is its own, unless the session is lost.

    A lost session raises out of the batch, so ``Connection.call`` reopens it and signs the
    whole batch again (signing twice is harmless: nothing has left yet).
    """
    presigned = _batch_sign(jobs, conn, session)
    results: list[bytes | SignerError] = []
    for index, job in enumerate(jobs):
        try:
            results.append(_sign(job, conn, session, presigned.get(index)))
        except RECONNECT:
            raise
        except PKCS11Error as exc:
            results.append(translate(exc, f"sign with {job.ref.label!r}"))
        except SignerError as exc:  # the key is not the kind of its ref, or fails its proof
            results.append(exc)
    return results


def _batch_sign(jobs: Sequence[SignJob], conn: Connection, session: Session) -> dict[int, bytes]:
    """Sign what one call into the module can (``p11batch``): signatures by job index.

    Mechanisms with parameters (PS256), keys that cannot be found or proven, and jobs the
    module refused are left to ``_sign``, one by one through python-pkcs11, which raises the
    error such a job deserves.
    """
    if conn.batch is None:
        return {}
    indexes: list[int] = []
    inputs: list[p11batch.Job] = []
    for index, job in enumerate(jobs):
        mechanism = _MECHANISM.get(job.ref.alg)
        if mechanism is None:
            continue
        try:
            key = _key(job.ref, conn, session)
        except RECONNECT:
            raise
        except (PKCS11Error, SignerError):
            continue
        if key.key.handle is not None:
            indexes.append(index)
            inputs.append((key.key.handle, mechanism, job.data, key.signature_size))
    if not inputs:
        return {}
    # The Cython Session has ``handle`` (CK_SESSION_HANDLE); python-pkcs11's stub omits it.
    handle: int = session.handle  # type: ignore[attr-defined]
    signed = conn.batch.sign_all(handle, inputs)
    return {i: out for i, out in zip(indexes, signed, strict=True) if isinstance(out, bytes)}


def _key(ref: KeyRef, conn: Connection, session: Session) -> SigningKey:
    """The proven key object for ``ref``: found once per session, then cached."""
    key = conn.keys.get(ref.key_id)
    if key is None or key.label != ref.label:
        key = conn.keys[ref.key_id] = signing_key(ref, find_private(session, ref))
    if key.kind != KIND[ref.alg]:
        raise HsmError(f"key {ref.label!r} is not a {ref.alg} key")
    return key


def _sign(job: SignJob, conn: Connection, session: Session, presigned: bytes | None) -> bytes:
    ref = job.ref
    key = _key(ref, conn, session)
    if presigned is not None:
        signature = presigned
    elif ref.alg is Alg.PS256:
        signature = key.key.sign(
            job.data, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=_PSS_SHA256
        )
    else:
        signature = key.key.sign(job.data, mechanism=_MECHANISM[ref.alg])
    if len(signature) != key.signature_size:
        # ECDSA must come back as r||s of fixed size (RFC 7518 §3.4), not DER.
        raise HsmError(
            f"{ref.alg} signature from {ref.label!r} is {len(signature)} bytes, "
            f"expected {key.signature_size}"
        )
    return bytes(signature)


def _ping(conn: Connection, session: Session) -> None:
    # C_GetTokenInfo proves the token is present; the probe proves the session is alive (a dead
    # one raises SessionHandleInvalid, which reopens it before the ping fails).
    session.token.slot.get_token()
    probe(session)
