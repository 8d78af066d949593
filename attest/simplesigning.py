"""Cosign "simple signing" payloads for container images (containers/image signature format).

The payload cosign signs for an image (containers/image ``docs/containers-signature.5.md``, "JSON
Data Format"; cosign ``pkg/signature/payload``)::

    {"critical": {"identity": {"docker-reference": "<repository>"},
                  "image": {"docker-manifest-digest": "sha256:<hex>"},
                  "type": "cosign container image signature"},
     "optional": {...} | null}

The signature covers these exact bytes, so they are written deterministically: compact JSON,
members in the order above, and ``optional``'s members sorted by name, as Go's ``encoding/json``
writes a map. Keep the bytes you signed; re-serialising a parsed payload is only guaranteed to
give the same bytes for payloads written here.

Parsing is strict where the format requires it: "Consumers MUST reject any unrecognized fields in
``critical``" and the top level holds exactly ``critical`` and ``optional``. ``optional`` is free
JSON (its members are "informational only"). Verification of a signature over the payload is
:func:`attest.verify.verify_simple_signing`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypedDict

from attest import ijson
from attest.errors import AttestError

__all__ = [
    "SIGNATURE_TYPE",
    "CriticalJson",
    "IdentityJson",
    "ImageJson",
    "SimpleSigning",
    "SimpleSigningJson",
    "dumps_simple_signing",
    "loads_simple_signing",
]

SIGNATURE_TYPE: Final = "cosign container image signature"

_MANIFEST_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
# A docker reference has no whitespace or control characters; its grammar is checked by the
# registry client, this only refuses what could never be one.
_REFERENCE: Final = re.compile(r"[^\s\x00-\x1f\x7f]+")


# The member names are not Python identifiers, hence the functional TypedDict form.
IdentityJson = TypedDict("IdentityJson", {"docker-reference": str})
ImageJson = TypedDict("ImageJson", {"docker-manifest-digest": str})


class CriticalJson(TypedDict):
    """``critical``: what the signature is about."""

    identity: IdentityJson
    image: ImageJson
    type: str


class SimpleSigningJson(TypedDict):
    """The whole simple-signing payload."""

    critical: CriticalJson
    optional: dict[str, object] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SimpleSigning:
    """A simple-signing payload: the image repository, its manifest digest, optional claims."""

    docker_reference: str
    manifest_digest: str
    optional: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        if _REFERENCE.fullmatch(self.docker_reference) is None:
            raise AttestError(
                "docker-reference must be a non-empty repository name without whitespace"
            )
        if _MANIFEST_DIGEST.fullmatch(self.manifest_digest) is None:
            raise AttestError(
                "docker-manifest-digest must be 'sha256:' and 64 lowercase hex digits"
            )
        if self.optional is not None:
            object.__setattr__(self, "optional", MappingProxyType(dict(self.optional)))


def dumps_simple_signing(payload: SimpleSigning) -> bytes:
    """Return the payload bytes to sign (deterministic; see the module docstring)."""
    optional = (
        None
        if payload.optional is None
        else {name: payload.optional[name] for name in sorted(payload.optional)}
    )
    document: SimpleSigningJson = {
        "critical": {
            "identity": {"docker-reference": payload.docker_reference},
            "image": {"docker-manifest-digest": payload.manifest_digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": optional,
    }
    return ijson.dumps(document, "simple signing payload")


def loads_simple_signing(data: bytes) -> SimpleSigning:
    """Parse simple-signing payload bytes strictly."""
    what = "simple signing payload"
    obj = ijson.expect_members(
        ijson.loads(data, what), what, required=("critical",), optional=("optional",)
    )
    critical = ijson.expect_members(
        obj["critical"], f"{what}: critical", required=("identity", "image", "type")
    )
    signature_type = ijson.expect_str(critical["type"], f"{what}: critical.type")
    if signature_type != SIGNATURE_TYPE:
        raise AttestError(
            f"{what}: critical.type must be {SIGNATURE_TYPE!r}, not {signature_type!r}"
        )
    identity = ijson.expect_members(
        critical["identity"], f"{what}: critical.identity", required=("docker-reference",)
    )
    image = ijson.expect_members(
        critical["image"], f"{what}: critical.image", required=("docker-manifest-digest",)
    )
    reference = ijson.expect_str(
        identity["docker-reference"], f"{what}: critical.identity.docker-reference"
    )
    digest = ijson.expect_str(
        image["docker-manifest-digest"], f"{what}: critical.image.docker-manifest-digest"
    )
    optional = obj.get("optional")
    if optional is not None:
        optional = ijson.expect_object(optional, f"{what}: optional")
    try:
        return SimpleSigning(docker_reference=reference, manifest_digest=digest, optional=optional)
    except AttestError as exc:
        raise AttestError(f"{what}: {exc}") from exc
