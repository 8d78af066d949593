"""The PKCS#11 adapter on a real SoftHSM2 token: keys, signatures, custody proofs, sessions."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.exceptions import GeneralError
from pkcs11.mechanisms import Mechanism
from pkcs11.types import Session

from jwks.algorithms import Alg
from signer.errors import HsmError, HsmUnavailable, KeyProofFailed
from signer.hsm import p11batch
from signer.hsm.base import KeyBackend, KeyRef
from signer.hsm.p11thread import translate
from signer.hsm.pkcs11 import Pkcs11Backend
from signer.hsm.softhsm import SoftHsmToken, find_module
from tests.hsm_token import make_exportable_key, new_key_id

MESSAGE = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"
PREFIX = "signer/test-pkcs11/"
GENERATED = [Alg.ES256, Alg.ES384, Alg.EDDSA]


def label(name: str = "key") -> str:
    return f"{PREFIX}{name}/{new_key_id()}"


@pytest.fixture(scope="module")
def rsa_ref(hsm_token: SoftHsmToken) -> Iterator[KeyRef]:
    """One RSA key per module: SoftHSM's RSA key generation takes a while."""

    async def generate() -> KeyRef:
        hsm = Pkcs11Backend(find_module(), hsm_token.label, hsm_token.pin)
        try:
            return await hsm.generate(Alg.RS256, new_key_id(), label("rsa"))
        finally:
            await hsm.aclose()

    ref = asyncio.run(generate())
    yield ref

    async def destroy() -> None:
        hsm = Pkcs11Backend(find_module(), hsm_token.label, hsm_token.pin)
        try:
            await hsm.destroy(ref)
        finally:
            await hsm.aclose()

    asyncio.run(destroy())


async def key_for(backend: Pkcs11Backend, alg: Alg, rsa_ref: KeyRef) -> KeyRef:
    if alg in (Alg.RS256, Alg.PS256):
        return dataclasses.replace(rsa_ref, alg=alg)
    return await backend.generate(alg, new_key_id(), label(alg.value))


def verify(alg: Alg, spki: bytes, data: bytes, signature: bytes) -> None:
    """Verify a JOSE-form signature with ``cryptography``; raise InvalidSignature if bad."""
    public = serialization.load_der_public_key(spki)
    if alg in (Alg.ES256, Alg.ES384):
        assert isinstance(public, ec.EllipticCurvePublicKey)
        half = len(signature) // 2
        der = encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
        digest = hashes.SHA256() if alg is Alg.ES256 else hashes.SHA384()
        public.verify(der, data, ec.ECDSA(digest))
    elif alg is Alg.EDDSA:
        assert isinstance(public, Ed25519PublicKey)
        public.verify(signature, data)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
        if alg is Alg.PS256:
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        public.verify(signature, data, pad, hashes.SHA256())


def test_backend_satisfies_the_key_backend_port(backend: Pkcs11Backend) -> None:
    port: KeyBackend = backend
    assert port is backend


@pytest.mark.parametrize("alg", list(Alg))
async def test_signature_verifies_against_the_public_key(
    backend: Pkcs11Backend, rsa_ref: KeyRef, alg: Alg
) -> None:
    ref = await key_for(backend, alg, rsa_ref)

    signature = await backend.sign(ref, MESSAGE)

    verify(alg, await backend.public_key(ref), MESSAGE, signature)


@pytest.mark.parametrize(("alg", "size"), [(Alg.ES256, 64), (Alg.ES384, 96), (Alg.EDDSA, 64)])
async def test_fixed_size_signatures_are_raw_jose_form(
    backend: Pkcs11Backend, alg: Alg, size: int
) -> None:
    """RFC 7518 §3.4 / RFC 8037 §3.1: r||s (or R||S), never DER."""
    ref = await backend.generate(alg, new_key_id(), label())

    assert len(await backend.sign(ref, MESSAGE)) == size


async def test_ps256_uses_sha256_mgf1_and_32_byte_salt_not_sha1(
    backend: Pkcs11Backend, rsa_ref: KeyRef
) -> None:
    ref = dataclasses.replace(rsa_ref, alg=Alg.PS256)
    signature = await backend.sign(ref, MESSAGE)
    public = serialization.load_der_public_key(await backend.public_key(ref))
    assert isinstance(public, rsa.RSAPublicKey)

    public.verify(
        signature,
        MESSAGE,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    with pytest.raises(InvalidSignature):
        public.verify(
            signature,
            MESSAGE,
            padding.PSS(mgf=padding.MGF1(hashes.SHA1()), salt_length=20),  # noqa: S303
            hashes.SHA1(),  # noqa: S303 - proving the SHA-1 default is not used
        )


@pytest.mark.parametrize("alg", [*GENERATED, Alg.RS256])
async def test_generated_keys_prove_non_exportable(
    backend: Pkcs11Backend, rsa_ref: KeyRef, alg: Alg
) -> None:
    ref = await key_for(backend, alg, rsa_ref)

    proof = await backend.prove(ref)

    assert proof.sensitive
    assert proof.never_extractable
    assert proof.always_sensitive
    assert proof.local
    assert not proof.extractable
    assert not proof.value_readable


async def test_generated_private_key_can_only_sign(backend: Pkcs11Backend) -> None:
    ref = await backend.generate(Alg.ES256, new_key_id(), label())

    def capabilities(session: Session) -> dict[Attribute, object]:
        (key,) = session.get_objects(
            {Attribute.ID: bytes.fromhex(ref.key_id), Attribute.SIGN: True}
        )
        return key.get_attributes(
            [
                Attribute.SIGN,
                Attribute.SIGN_RECOVER,
                Attribute.DECRYPT,
                Attribute.UNWRAP,
                Attribute.DERIVE,
                Attribute.MODIFIABLE,
                Attribute.PRIVATE,
                Attribute.TOKEN,
            ]
        )

    values = await backend.run_in_session(capabilities)

    assert values == {
        Attribute.SIGN: True,
        Attribute.SIGN_RECOVER: False,  # SoftHSM's default would be True
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
        Attribute.MODIFIABLE: False,
        Attribute.PRIVATE: True,
        Attribute.TOKEN: True,
    }


async def test_exportable_key_fails_proof_naming_its_attributes(backend: Pkcs11Backend) -> None:
    ref = await make_exportable_key(backend)

    with pytest.raises(KeyProofFailed) as caught:
        await backend.prove(ref)

    message = str(caught.value)
    assert ref.label in message
    for failure in (
        "CKA_SENSITIVE is false",
        "CKA_EXTRACTABLE is true",
        "CKA_ALWAYS_SENSITIVE is false",
        "CKA_NEVER_EXTRACTABLE is false",
        "CKA_VALUE was readable",
    ):
        assert failure in message
    await backend.destroy(ref)


async def test_exportable_key_is_refused_for_signing(backend: Pkcs11Backend) -> None:
    ref = await make_exportable_key(backend)

    with pytest.raises(KeyProofFailed, match="CKA_EXTRACTABLE is true"):
        await backend.sign(ref, MESSAGE)
    await backend.destroy(ref)


async def test_sign_with_a_key_of_another_alg_is_refused(backend: Pkcs11Backend) -> None:
    ref = await backend.generate(Alg.ES256, new_key_id(), label())

    with pytest.raises(HsmError, match="not a ES384 key"):
        await backend.sign(dataclasses.replace(ref, alg=Alg.ES384), MESSAGE)


async def test_generate_refuses_an_existing_key_id(backend: Pkcs11Backend) -> None:
    ref = await backend.generate(Alg.ES256, new_key_id(), label())

    with pytest.raises(HsmError, match="already exists"):
        await backend.generate(Alg.ES256, ref.key_id, label())


async def test_destroyed_key_can_no_longer_sign(backend: Pkcs11Backend) -> None:
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    await backend.sign(ref, MESSAGE)  # cached now; destroy must drop the cache

    await backend.destroy(ref)

    with pytest.raises(HsmError, match="no private key"):
        await backend.sign(ref, MESSAGE)
    with pytest.raises(HsmError, match="public key"):
        await backend.public_key(ref)


async def test_destroying_twice_is_not_an_error(backend: Pkcs11Backend) -> None:
    ref = await backend.generate(Alg.EDDSA, new_key_id(), label())

    await backend.destroy(ref)
    await backend.destroy(ref)

    assert ref not in await backend.list_refs(PREFIX)


async def test_list_refs_finds_keys_by_label_prefix(
    backend: Pkcs11Backend, rsa_ref: KeyRef
) -> None:
    ring = f"{PREFIX}ring-{new_key_id()}/"
    refs = [
        await backend.generate(Alg.ES256, new_key_id(), f"{ring}a"),
        await backend.generate(Alg.ES384, new_key_id(), f"{ring}b"),
        await backend.generate(Alg.EDDSA, new_key_id(), f"{ring}c"),
    ]
    await backend.generate(Alg.ES256, new_key_id(), f"{PREFIX}other-{new_key_id()}")

    assert await backend.list_refs(ring) == refs
    assert rsa_ref in await backend.list_refs(PREFIX)  # RSA keys are listed as RS256


async def test_public_key_is_cached_per_key(backend: Pkcs11Backend) -> None:
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    first = await backend.public_key(ref)

    def drop_public_half(session: Session) -> None:
        for obj in list(session.get_objects({Attribute.ID: bytes.fromhex(ref.key_id)})):
            if obj[Attribute.CLASS] == 2:  # CKO_PUBLIC_KEY
                obj.destroy()

    await backend.run_in_session(drop_public_half)

    assert await backend.public_key(ref) == first


async def test_300_concurrent_signatures_all_verify(backend: Pkcs11Backend) -> None:
    """Every call funnels through the one PKCS#11 thread; SoftHSM would crash otherwise."""
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    spki = await backend.public_key(ref)
    messages = [MESSAGE + str(n).encode() for n in range(300)]

    signatures = await asyncio.gather(*(backend.sign(ref, m) for m in messages))

    for message, signature in zip(messages, signatures, strict=True):
        verify(Alg.ES256, spki, message, signature)


@pytest.mark.parametrize(("alg", "hash_name"), [(Alg.ES256, "sha256"), (Alg.ES384, "sha384")])
async def test_a_signed_digest_verifies_as_ecdsa_over_the_message(
    backend: Pkcs11Backend, alg: Alg, hash_name: str
) -> None:
    """What a Sigstore message signature needs: the service never sees the artifact."""
    ref = await backend.generate(alg, new_key_id(), label())
    digest = hashlib.new(hash_name, MESSAGE).digest()

    signature = await backend.sign_digest(ref, digest)

    verify(alg, await backend.public_key(ref), MESSAGE, signature)


async def test_sign_digest_refuses_a_digest_of_the_wrong_size_and_non_ecdsa_keys(
    backend: Pkcs11Backend,
) -> None:
    ec_ref = await backend.generate(Alg.ES256, new_key_id(), label())
    ed_ref = await backend.generate(Alg.EDDSA, new_key_id(), label())

    with pytest.raises(HsmError, match="sha256 digest is 32 bytes, not 48"):
        await backend.sign_digest(ec_ref, bytes(48))
    with pytest.raises(HsmError, match="cannot sign a precomputed digest"):
        await backend.sign_digest(ed_ref, bytes(32))


async def test_a_failing_signature_in_a_concurrent_batch_fails_alone(
    backend: Pkcs11Backend,
) -> None:
    """Concurrent signs travel to the PKCS#11 thread together; one refusal is its own."""
    good = await backend.generate(Alg.ES256, new_key_id(), label())
    gone = await backend.generate(Alg.ES256, new_key_id(), label())
    await backend.destroy(gone)
    spki = await backend.public_key(good)

    results = await asyncio.gather(
        *(backend.sign(good if n % 3 else gone, MESSAGE) for n in range(30)),
        return_exceptions=True,
    )

    for n, result in enumerate(results):
        if n % 3:
            assert isinstance(result, bytes)
            verify(Alg.ES256, spki, MESSAGE, result)
        else:
            assert isinstance(result, HsmError)
            assert "no private key" in result.detail


@pytest.mark.parametrize("alg", [Alg.ES256, Alg.PS256])
async def test_sign_many_signs_each_input_in_order(
    backend: Pkcs11Backend, rsa_ref: KeyRef, alg: Alg
) -> None:
    ref = await key_for(backend, alg, rsa_ref)
    messages = [MESSAGE + bytes([i]) for i in range(5)]

    signatures = await backend.sign_many(ref, messages)

    spki = await backend.public_key(ref)
    for message, signature in zip(messages, signatures, strict=True):
        verify(alg, spki, message, signature)


async def test_signatures_reach_the_module_in_batches(backend: Pkcs11Backend) -> None:
    """The suite runs with the _p11batch extension built, so it tests the path that serves."""
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    await backend.sign(ref, MESSAGE)

    assert backend.batched


async def test_one_batch_of_every_algorithm_verifies(
    backend: Pkcs11Backend, rsa_ref: KeyRef
) -> None:
    """PS256 (a mechanism with parameters) is signed beside the batch call, in the same trip."""
    refs = [await key_for(backend, alg, rsa_ref) for alg in Alg]

    signatures = await asyncio.gather(*(backend.sign(ref, MESSAGE) for ref in refs * 4))

    for ref, signature in zip(refs * 4, signatures, strict=True):
        verify(ref.alg, await backend.public_key(ref), MESSAGE, signature)


async def test_without_the_extension_every_algorithm_signs_through_python_pkcs11(
    backend: Pkcs11Backend, rsa_ref: KeyRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where _p11batch could not be built, ``Connection.batch`` is None (p11batch.load)."""
    refs = [await key_for(backend, alg, rsa_ref) for alg in Alg]
    await backend.sign(refs[0], MESSAGE)  # the session (and its batch signer) exist now
    monkeypatch.setattr(backend._conn, "batch", None)

    signatures = await asyncio.gather(*(backend.sign(ref, MESSAGE) for ref in refs))

    assert not backend.batched
    for ref, signature in zip(refs, signatures, strict=True):
        verify(ref.alg, await backend.public_key(ref), MESSAGE, signature)


async def test_the_batch_call_reports_a_refused_job_by_its_ck_rv(backend: Pkcs11Backend) -> None:
    """The backend then signs that job through python-pkcs11, which raises its error. A short
    buffer must not leave the operation active: the job after it still signs."""
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    digest = hashlib.sha256(MESSAGE).digest()

    def sign_batch(session: Session) -> list[bytes | int]:
        signer = p11batch.load(find_module())
        assert signer is not None
        handle = session.handle  # type: ignore[attr-defined]
        key = session.get_key(label=ref.label, object_class=ObjectClass.PRIVATE_KEY)
        assert key.handle is not None
        jobs: list[p11batch.Job] = [
            (key.handle, Mechanism.ECDSA, digest, 64),
            (0x7FFFFFFF, Mechanism.ECDSA, digest, 64),
            (key.handle, Mechanism.ECDSA, digest, 10),
            (key.handle, Mechanism.ECDSA, digest, 64),
        ]
        return signer.sign_all(handle, jobs)

    signed, refused, short, after = await backend.run_in_session(sign_batch)

    spki = await backend.public_key(ref)
    assert isinstance(signed, bytes)
    verify(Alg.ES256, spki, MESSAGE, signed)
    assert refused in (0x60, 0x82)  # CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID
    assert short == 0x150  # CKR_BUFFER_TOO_SMALL
    assert isinstance(after, bytes)
    verify(Alg.ES256, spki, MESSAGE, after)


async def test_concurrent_backends_share_one_session(hsm_token: SoftHsmToken) -> None:
    """Login is per token, so a second backend must not log in (or out) on its own."""
    first = Pkcs11Backend(find_module(), hsm_token.label, hsm_token.pin)
    second = Pkcs11Backend(find_module(), hsm_token.label, hsm_token.pin)
    ref = await first.generate(Alg.ES256, new_key_id(), label())

    await asyncio.gather(*(hsm.sign(ref, MESSAGE) for hsm in [first, second] * 20))
    await first.aclose()

    verify(Alg.ES256, await second.public_key(ref), MESSAGE, await second.sign(ref, MESSAGE))
    await second.aclose()


async def test_lost_session_is_reopened(backend: Pkcs11Backend) -> None:
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    await backend.sign(ref, MESSAGE)
    before = await backend.run_in_session(lambda session: session)

    await backend.run_in_session(lambda session: session.close())  # behind the backend's back

    verify(Alg.ES256, await backend.public_key(ref), MESSAGE, await backend.sign(ref, MESSAGE))
    assert await backend.run_in_session(lambda session: session) is not before


async def test_reopen_works_when_something_else_holds_the_login(
    backend: Pkcs11Backend, hsm_token: SoftHsmToken
) -> None:
    """Login is per token: reopening must not fail with UserAlreadyLoggedIn."""
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    await backend.sign(ref, MESSAGE)

    def replace_login(session: Session) -> Session:
        session.close()
        return session.token.open(rw=True, user_pin=hsm_token.pin)

    other = await backend.run_in_session(replace_login)

    verify(Alg.ES256, await backend.public_key(ref), MESSAGE, await backend.sign(ref, MESSAGE))
    await backend.run_in_session(lambda session: other.close())


async def test_two_spellings_of_one_module_share_its_library(
    hsm_token: SoftHsmToken, tmp_path: Path
) -> None:
    """python-pkcs11 fails C_Initialize for a second path to an already loaded module."""
    link = tmp_path / "libsofthsm2.so"
    link.symlink_to(find_module())
    first = Pkcs11Backend(find_module(), hsm_token.label, hsm_token.pin)
    second = Pkcs11Backend(str(link), hsm_token.label, hsm_token.pin)

    await first.aping()
    await second.aping()

    await first.aclose()
    await second.aclose()


async def test_ping_answers_on_a_live_token(backend: Pkcs11Backend) -> None:
    await backend.aping()


async def test_calls_after_aclose_raise_a_clear_error(hsm_token: SoftHsmToken) -> None:
    hsm = await Pkcs11Backend.open(find_module(), hsm_token.label, hsm_token.pin)

    await hsm.aclose()
    await hsm.aclose()  # idempotent

    with pytest.raises(HsmUnavailable, match="closed"):
        await hsm.aping()
    with pytest.raises(HsmUnavailable, match="closed"):
        await hsm.generate(Alg.ES256, new_key_id(), label())


async def test_wrong_pin_is_unavailable_without_echoing_it(hsm_token: SoftHsmToken) -> None:
    with pytest.raises(HsmUnavailable, match="PinIncorrect") as caught:
        await Pkcs11Backend.open(find_module(), hsm_token.label, "wrong-pin-0000")

    assert "wrong-pin-0000" not in str(caught.value)
    assert hsm_token.pin not in str(caught.value)


async def test_missing_token_is_unavailable(hsm_token: SoftHsmToken) -> None:
    with pytest.raises(HsmUnavailable, match="NoSuchToken"):
        await Pkcs11Backend.open(find_module(), "no-such-token", hsm_token.pin)


async def test_missing_module_is_unavailable(hsm_token: SoftHsmToken) -> None:
    with pytest.raises(HsmUnavailable, match="cannot load PKCS#11 module"):
        await Pkcs11Backend.open("/nonexistent/libpkcs11.so", hsm_token.label, hsm_token.pin)


async def test_generated_public_key_cannot_be_changed(backend: Pkcs11Backend) -> None:
    ref = await backend.generate(Alg.ES256, new_key_id(), label())

    def modifiable(session: Session) -> object:
        (key,) = session.get_objects(
            {Attribute.ID: bytes.fromhex(ref.key_id), Attribute.CLASS: ObjectClass.PUBLIC_KEY}
        )
        return key[Attribute.MODIFIABLE]

    assert await backend.run_in_session(modifiable) is False


def test_a_token_that_fails_with_a_general_error_is_unavailable() -> None:
    """SoftHSM answers CKR_GENERAL_ERROR once its token files are gone or unreadable: a 503
    that /readyz reports, not a 500."""
    error = translate(GeneralError(), "sign")
    assert isinstance(error, HsmUnavailable)
    assert error.status == 503


async def test_the_signer_recovers_when_the_token_comes_back(
    backend: Pkcs11Backend, hsm_token: SoftHsmToken
) -> None:
    """SoftHSM answers CKR_GENERAL_ERROR while its token files are gone, and for good after
    they are back unless the module is initialised again: the backend does that itself, so
    the signer needs no restart (503 meanwhile, then signatures again)."""
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    await backend.sign(ref, b"before")
    moved = hsm_token.token_dir.with_name("tokens-moved-away")
    hsm_token.token_dir.rename(moved)
    try:
        with pytest.raises(HsmUnavailable, match="GeneralError"):
            await backend.sign(ref, b"while gone")
        with pytest.raises(HsmUnavailable):
            await backend.aping()
    finally:
        moved.rename(hsm_token.token_dir)
    await backend.aping()
    signature = await backend.sign(ref, b"after")
    public = serialization.load_der_public_key(await backend.public_key(ref))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        ),
        b"after",
        ec.ECDSA(hashes.SHA256()),
    )


async def test_a_foreign_key_labelled_in_another_encoding_is_passed_over(
    backend: Pkcs11Backend, hsm_token: SoftHsmToken, tmp_path: Path
) -> None:
    """Another application's key whose label is not UTF-8 must not stop the signer listing
    (and sweeping) its own keys: one such key on the token stopped `signer serve` starting."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "foreign.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    importing = await asyncio.create_subprocess_exec(
        "softhsm2-util",
        "--import",
        str(pem),
        "--token",
        hsm_token.label,
        "--pin",
        hsm_token.pin,
        "--id",
        new_key_id(),
        "--label",
        b"foreign/\xe9",
        env={**os.environ, "SOFTHSM2_CONF": str(hsm_token.conf_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, error = await importing.communicate()
    assert importing.returncode == 0, error
    ref = await backend.generate(Alg.ES256, new_key_id(), label())
    assert ref.key_id in {r.key_id for r in await backend.list_refs("signer/")}
