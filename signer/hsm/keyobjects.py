"""Private key objects on the token: find them, prove their custody, wrap them for signing.

Everything here runs on the PKCS#11 thread (``signer.hsm.p11thread``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pkcs11.constants import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive, AttributeTypeInvalid
from pkcs11.mechanisms import KeyType
from pkcs11.types import Object, Session, SignMixin

from jwks.algorithms import SPECS, Alg
from signer.errors import HsmError, KeyProofFailed
from signer.hsm.base import KeyProof, KeyRef
from signer.hsm.ecpoint import Curve, curve_from_params
from signer.hsm.p11thread import find_objects

# What kind of key each algorithm needs: (CKA_KEY_TYPE, curve or None for RSA).
KIND: dict[Alg, tuple[KeyType, Curve | None]] = {
    Alg.ES256: (KeyType.EC, Curve.P256),
    Alg.ES384: (KeyType.EC, Curve.P384),
    Alg.EDDSA: (KeyType.EC_EDWARDS, Curve.ED25519),
    Alg.RS256: (KeyType.RSA, None),
    Alg.PS256: (KeyType.RSA, None),
}

_PROOF_ATTRS = [
    Attribute.LOCAL,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE,
    Attribute.SENSITIVE,
    Attribute.EXTRACTABLE,
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """A proven private key object, cached per session so signing needs no lookup."""

    key: SignMixin
    label: str
    kind: tuple[KeyType, Curve | None]
    signature_size: int


def find_private(session: Session, ref: KeyRef) -> Object:
    """The one private key object of ``ref`` (by CKA_ID and CKA_LABEL)."""
    found = find_objects(
        session,
        {
            Attribute.CLASS: ObjectClass.PRIVATE_KEY,
            Attribute.ID: bytes.fromhex(ref.key_id),
            Attribute.LABEL: ref.label,
        },
    )
    if not found:
        raise HsmError(f"no private key {ref.label!r} (CKA_ID {ref.key_id}) on the token")
    if len(found) > 1:
        raise HsmError(f"{len(found)} private keys match {ref.label!r}; refusing to guess")
    return found[0]


def kind_of(obj: Object) -> tuple[KeyType, Curve | None]:
    """The key type and curve of ``obj`` (``ValueError`` for a kind the signer does not use)."""
    key_type = KeyType(obj[Attribute.KEY_TYPE])
    if key_type == KeyType.RSA:
        return key_type, None
    if key_type in (KeyType.EC, KeyType.EC_EDWARDS):
        return key_type, curve_from_params(obj[Attribute.EC_PARAMS])
    raise ValueError(f"unsupported key type {key_type.name}")


def signing_key(ref: KeyRef, obj: Object) -> SigningKey:
    """Check that ``obj`` is provably non-exportable and fits ``ref.alg``; wrap it for signing."""
    check_proof(ref, read_proof(obj))
    try:
        kind = kind_of(obj)
    except ValueError as exc:
        raise HsmError(f"key {ref.label!r}: {exc}") from exc
    if kind != KIND[ref.alg]:
        raise HsmError(f"key {ref.label!r} is not a {ref.alg} key")
    if not isinstance(obj, SignMixin):
        raise HsmError(f"key {ref.label!r} does not have CKA_SIGN")
    size = SPECS[ref.alg].signature_size
    if size is None:  # RSA: the signature is as long as the modulus (RFC 8017 §8.1.1)
        size = len(bytes(obj[Attribute.MODULUS]).lstrip(b"\x00"))
    return SigningKey(key=obj, label=ref.label, kind=kind, signature_size=size)


def read_proof(obj: Object) -> KeyProof:
    """Read the custody attributes of ``obj`` and try (and expect to fail) to read its secret."""
    values = obj.get_attributes(_PROOF_ATTRS)
    secrets = [Attribute.VALUE]
    if obj[Attribute.KEY_TYPE] == KeyType.RSA:
        secrets.append(Attribute.PRIVATE_EXPONENT)  # RSA keeps its secret there, not in VALUE
    return KeyProof(
        local=bool(values[Attribute.LOCAL]),
        always_sensitive=bool(values[Attribute.ALWAYS_SENSITIVE]),
        never_extractable=bool(values[Attribute.NEVER_EXTRACTABLE]),
        sensitive=bool(values[Attribute.SENSITIVE]),
        extractable=bool(values[Attribute.EXTRACTABLE]),
        value_readable=any(_readable(obj, attribute) for attribute in secrets),
    )


def _readable(obj: Object, attribute: Attribute) -> bool:
    try:
        obj[attribute]
    except (AttributeSensitive, AttributeTypeInvalid):
        # Sensitive: refused as it must be; type invalid: the key has no such attribute.
        return False
    return True


def check_proof(ref: KeyRef, proof: KeyProof) -> None:
    """Raise ``KeyProofFailed`` unless ``proof`` shows a non-exportable key."""
    if not proof.ok:
        raise KeyProofFailed(
            f"key {ref.label!r} is not provably non-exportable: " + "; ".join(proof.failures())
        )
