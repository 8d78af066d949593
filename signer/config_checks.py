"""Checks of a whole configuration: the parts that refer to each other fit together.

Each table was parsed on its own (``signer.settings``); these run once all are in, so that a
group naming no principal, a profile whose approvers lack the permission, or a quorum no
requester can reach is refused when the config loads, not met as a 403 in the middle of a release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jwks.algorithms import Alg
from signer.errors import ConfigError

if TYPE_CHECKING:
    from signer.settings import ProfileSettings, Settings


def cross_check(settings: Settings) -> None:
    """Refuse settings whose parts do not fit together (each named by its key)."""
    principal_names = {p.name for p in settings.principals}
    for i, group in enumerate(settings.groups):
        for member in group.members:
            if member not in principal_names:
                raise ConfigError(f"groups[{i}].members: no principal named {member!r}")
    _check_ring_approvals(settings)
    _check_profiles(settings, principal_names)
    _check_artifact_rings(settings)


def _check_artifact_rings(settings: Settings) -> None:
    """A ring that signs artifacts never signs JWTs nor backs the well-known JWKS.

    One key, one purpose: a blob signature is ECDSA over a digest the requester chose, so if the
    same key also signed JWTs (or were trusted by relying parties for them), an approved "blob"
    whose digest is that of a JWS signing input would be a valid token. ``jwt:sign:*`` grants
    therefore cover JWT rings only, and explicit grants of an artifact ring are refused here.
    """
    artifact_rings = settings.artifact_rings
    if settings.server.default_ring in artifact_rings:
        raise ConfigError(
            f"server.default_ring: ring {settings.server.default_ring!r} signs artifacts "
            "(a profile uses it); the well-known JWKS must be a JWT ring's"
        )
    for i, principal in enumerate(settings.principals):
        for permission in principal.permissions:
            ring = permission.removeprefix("jwt:sign:")
            if permission.startswith("jwt:sign:") and ring in artifact_rings:
                raise ConfigError(
                    f"principals[{i}].permissions: {permission!r} grants JWT signing with ring "
                    f"{ring!r}, which signs artifacts (a profile uses it)"
                )


def _check_ring_approvals(settings: Settings) -> None:
    groups = {g.name: g for g in settings.groups}
    for i, ring in enumerate(settings.rings):
        for op, rule in ring.approvals.items():
            if rule.group not in groups:
                raise ConfigError(f"rings[{i}].approvals.{op}.group: no group {rule.group!r}")
            if rule.required > len(groups[rule.group].members):
                raise ConfigError(
                    f"rings[{i}].approvals.{op}.required: {rule.required} exceeds the "
                    f"{len(groups[rule.group].members)} members of {rule.group!r}"
                )


def _check_profiles(settings: Settings, principal_names: set[str]) -> None:
    ring_names = {r.name for r in settings.rings}
    groups = {g.name: g for g in settings.groups}
    for i, profile in enumerate(settings.profiles):
        if profile.ring not in ring_names:
            raise ConfigError(f"profiles[{i}].ring: no ring named {profile.ring!r}")
        if profile.approvers not in groups:
            raise ConfigError(f"profiles[{i}].approvers: no group named {profile.approvers!r}")
        for requester in profile.requesters:
            if requester not in principal_names:
                raise ConfigError(f"profiles[{i}].requesters: no principal named {requester!r}")
        if profile.approvals_required > len(groups[profile.approvers].members):
            raise ConfigError(
                f"profiles[{i}].approvals_required: more than the members of {profile.approvers!r}"
            )
        _check_profile_quorum(i, profile, groups[profile.approvers].members)
        _check_profile_signing(settings, i, profile)


def blob_oracle_rings(settings: Settings) -> list[str]:
    """ES256 rings whose key signs ``blob`` requests, and so DSSE statements too.

    A blob signature is ECDSA over a digest the requester picks. If that digest is the one of
    a DSSE PAE or of a cosign payload, the approved "blob" is a valid signature over a statement
    or an image nobody approved, outside the profiles' ``subjects`` and ``predicate_types``.
    Every request, a blob's included, also gets an approval attestation signed by the same
    key, so a ring that signs blobs always signs statements as well. Loaded, for
    compatibility; ``signer serve`` warns about each such ring.
    """
    rings = {
        p.ring
        for p in settings.profiles
        if "blob" in p.kinds
        and (ring := settings.ring(p.ring)) is not None
        and ring.alg is Alg.ES256
    }
    return sorted(rings)


def _check_profile_quorum(i: int, profile: ProfileSettings, members: tuple[str, ...]) -> None:
    """Refuse a profile one of whose requesters could never get a request approved.

    Separation of duties: a requester never approves their own request, so a requester who is
    also an approver leaves ``len(members) - 1`` who can.
    """
    for requester in profile.requesters:
        if requester in members and profile.approvals_required > len(members) - 1:
            raise ConfigError(
                f"profiles[{i}].approvals_required: {profile.approvals_required} approvals can "
                f"never be reached for requester {requester!r}, a member of "
                f"{profile.approvers!r}, which has only {len(members) - 1} other members"
            )


# Code signing needs ECDSA keys: a Sigstore message signature is ECDSA (or RSA) over the
# artifact's digest signed prehashed, which the HSM adapter does for ECDSA only (CKM_ECDSA), and
# cosign verifies simple-signing signatures with ECDSA keys (docs/codesign.md).
_SIGNING_ALGS = (Alg.ES256, Alg.ES384)


def _grants(permissions: tuple[str, ...], permission: str) -> bool:
    """As ``signer.auth.Principal.allows`` (which imports the settings, so not from here):
    exact or ``:*``."""
    return permission in permissions or any(
        p.endswith(":*") and permission.startswith(p[:-1]) for p in permissions
    )


def _check_profile_signing(settings: Settings, i: int, profile: ProfileSettings) -> None:
    ring = settings.ring(profile.ring)
    assert ring is not None  # noqa: S101 -- checked by the caller
    if ring.alg not in _SIGNING_ALGS:
        raise ConfigError(
            f"profiles[{i}].ring: ring {ring.name!r} signs with {ring.alg.value}; a signing "
            "profile needs an ECDSA ring (ES256, or ES384 for containers and attestations only)"
        )
    if not profile.subjects:
        raise ConfigError(f"profiles[{i}].subjects: at least one subject pattern is required")
    permissions = {p.name: p.permissions for p in settings.principals}
    # Both lists and permissions decide who acts on a profile; a mismatch would only show up as
    # a 403 in the middle of a release, so it is refused here instead.
    for requester in profile.requesters:
        if not _grants(permissions[requester], f"sign:request:{profile.name}"):
            raise ConfigError(
                f"profiles[{i}].requesters: {requester!r} lacks permission "
                f"'sign:request:{profile.name}'"
            )
    group = next(g for g in settings.groups if g.name == profile.approvers)
    for member in group.members:
        if not _grants(permissions[member], f"sign:approve:{profile.name}"):
            raise ConfigError(
                f"profiles[{i}].approvers: member {member!r} of {group.name!r} lacks permission "
                f"'sign:approve:{profile.name}'"
            )
