"""Parsing a signing request and checking it against its profile (pure)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from jwks.algorithms import Alg
from signer.auth import Principal
from signer.codesign.records import Kind
from signer.codesign.requests import (
    COSIGN_SIGN_V1,
    InvalidStatement,
    KindNotSupported,
    PredicateTypeNotAllowed,
    RequestSpec,
    SubjectNotAllowed,
    TooManySubjects,
    UnknownProfile,
    check_against_profile,
    check_requester,
    find_profile,
    parse_request,
    subject_allowed,
)
from signer.errors import Forbidden, InvalidField, MalformedJson, UnknownField
from signer.settings import ProfileSettings

SLSA = "https://slsa.dev/provenance/v1"
DIGEST = hashlib.sha256(b"artifact").hexdigest()
PROFILE = ProfileSettings(
    name="release",
    ring="codesign",
    requesters=("ci",),
    approvers="release-managers",
    approvals_required=2,
    subjects=("registry.example.com/acme/*", "acme-*.tar.gz"),
    predicate_types=(SLSA, COSIGN_SIGN_V1),
    max_subjects=3,
)
PROVENANCE = {
    "buildDefinition": {"buildType": "https://ci.example/v1", "externalParameters": {}},
    "runDetails": {"builder": {"id": "https://ci.example"}},
}


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "profile": "release",
        "kind": "blob",
        "subjects": [{"name": "acme-1.0.tar.gz", "digest": {"sha256": DIGEST}}],
        "reason": "release 1.0",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def checked(spec_body: dict[str, Any], alg: Alg = Alg.ES256) -> RequestSpec:
    return check_against_profile(parse_request(spec_body), PROFILE, alg)


def test_a_blob_request_parses_into_one_subject() -> None:
    spec = parse_request(body(change_id="CHG-1"))
    assert spec.kind is Kind.BLOB
    assert [(s.name, s.sha256) for s in spec.subjects] == [("acme-1.0.tar.gz", DIGEST)]
    assert (spec.reason, spec.change_id, spec.predicate_type) == ("release 1.0", "CHG-1", None)


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"extra": 1}, UnknownField, "extra"),
        ({"reason": None}, InvalidField, "reason"),
        ({"reason": " "}, InvalidField, "reason"),
        ({"kind": "tarball"}, InvalidField, "kind"),
        ({"subjects": []}, InvalidField, "subjects"),
        ({"subjects": [{"name": "a", "digest": {"sha256": "ABC"}}]}, InvalidField, "subjects"),
        ({"subjects": [{"name": "a", "digest": {"sha512": DIGEST}}]}, InvalidField, "subjects"),
        (
            {"subjects": [{"name": "a", "digest": {"sha256": DIGEST}, "x": 1}]},
            UnknownField,
            "subjects",
        ),
        ({"predicate_type": SLSA}, InvalidField, "predicate_type"),
        ({"predicate": {}}, InvalidField, "predicate"),
        ({"kind": "attestation"}, InvalidField, "predicate_type"),
        ({"kind": "container", "predicate_type": SLSA}, InvalidField, "predicate_type"),
        ({"change_id": ""}, InvalidField, "change_id"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(
    changes: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        parse_request(body(**changes))
    assert getattr(caught.value, "field", None) == field


def test_a_body_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedJson):
        parse_request([body()])


def test_repeated_subject_names_are_refused() -> None:
    subject = {"name": "acme-1.tar.gz", "digest": {"sha256": DIGEST}}
    with pytest.raises(InvalidField, match="repeated"):
        parse_request(body(kind="attestation", predicate_type=SLSA, subjects=[subject, subject]))


def test_a_blob_signs_exactly_one_subject() -> None:
    two = [
        {"name": "acme-1.tar.gz", "digest": {"sha256": DIGEST}},
        {"name": "acme-2.tar.gz", "digest": {"sha256": DIGEST}},
    ]
    with pytest.raises(InvalidField, match="exactly one subject"):
        parse_request(body(subjects=two))


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("registry.example.com/acme/app", True),
        ("registry.example.com/acme/team/app", True),  # fnmatch: * crosses "/"
        ("registry.example.com/other/app", False),
        ("acme-2.0.tar.gz", True),
        ("ACME-2.0.tar.gz", False),  # case-sensitive
        ("acme-2.0.zip", False),
    ],
)
def test_subject_patterns_have_fnmatch_semantics(name: str, allowed: bool) -> None:
    assert subject_allowed(name, PROFILE.subjects) is allowed


def test_a_subject_outside_the_patterns_is_a_422_naming_it() -> None:
    with pytest.raises(SubjectNotAllowed, match=r"'evil\.tar\.gz'") as caught:
        checked(body(subjects=[{"name": "evil.tar.gz", "digest": {"sha256": DIGEST}}]))
    assert caught.value.status == 422


def test_a_predicate_type_not_allowed_is_a_422_naming_it() -> None:
    spdx = "https://spdx.dev/Document"
    with pytest.raises(PredicateTypeNotAllowed, match=r"spdx\.dev") as caught:
        checked(body(kind="attestation", predicate_type=spdx, predicate={}))
    assert caught.value.status == 422


def test_more_subjects_than_the_profile_allows_is_a_422() -> None:
    subjects = [{"name": f"acme-{i}.tar.gz", "digest": {"sha256": DIGEST}} for i in range(4)]
    with pytest.raises(TooManySubjects, match="max_subjects of 3"):
        checked(
            body(kind="attestation", predicate_type=SLSA, predicate=PROVENANCE, subjects=subjects)
        )


def test_a_container_gets_the_cosign_predicate_type_which_the_profile_must_allow() -> None:
    image = [{"name": "registry.example.com/acme/app", "digest": {"sha256": DIGEST}}]
    spec = checked(body(kind="container", subjects=image))
    assert spec.predicate_type == COSIGN_SIGN_V1
    strict = ProfileSettings(**{**_fields(PROFILE), "predicate_types": (SLSA,)})
    with pytest.raises(PredicateTypeNotAllowed, match="cosign/sign/v1"):
        check_against_profile(
            parse_request(body(kind="container", subjects=image)), strict, Alg.ES256
        )


def _fields(profile: ProfileSettings) -> dict[str, Any]:
    return {name: getattr(profile, name) for name in ProfileSettings.__dataclass_fields__}


def test_slsa_provenance_missing_a_required_field_is_a_422() -> None:
    with pytest.raises(InvalidStatement, match="buildType"):
        checked(body(kind="attestation", predicate_type=SLSA, predicate={"buildDefinition": {}}))


def test_a_container_reference_with_whitespace_is_a_422() -> None:
    pattern = ProfileSettings(**{**_fields(PROFILE), "subjects": ("*",)})
    image = [{"name": "registry.example.com/acme/a pp", "digest": {"sha256": DIGEST}}]
    with pytest.raises(InvalidStatement):
        check_against_profile(
            parse_request(body(kind="container", subjects=image)), pattern, Alg.ES256
        )


def test_a_blob_needs_an_es256_ring() -> None:
    with pytest.raises(KindNotSupported, match="ES256"):
        checked(body(), Alg.ES384)


def test_a_kind_the_profile_does_not_list_is_a_422_naming_it() -> None:
    no_blobs = ProfileSettings(**{**_fields(PROFILE), "kinds": ("container", "attestation")})
    outside = body(subjects=[{"name": "elsewhere.zip", "digest": {"sha256": DIGEST}}])
    with pytest.raises(KindNotSupported, match="does not sign 'blob' requests") as refused:
        check_against_profile(parse_request(outside), no_blobs, Alg.ES256)  # the kind first
    assert (refused.value.status, refused.value.field) == (422, "kind")
    container = body(
        kind="container",
        subjects=[{"name": "registry.example.com/acme/app", "digest": {"sha256": DIGEST}}],
    )
    assert (
        check_against_profile(parse_request(container), no_blobs, Alg.ES256).kind is Kind.CONTAINER
    )


def test_the_kinds_a_profile_may_list_are_the_kinds_of_requests() -> None:
    assert PROFILE.kinds == tuple(kind.value for kind in Kind)


def test_an_attestation_may_use_an_es384_ring() -> None:
    spec = checked(body(kind="attestation", predicate_type=SLSA, predicate=PROVENANCE), Alg.ES384)
    assert spec.predicate_type == SLSA


def test_only_listed_requesters_with_the_permission_may_request() -> None:
    profiles = {"release": PROFILE}
    ci = Principal(name="ci", permissions=frozenset({"sign:request:*"}))
    assert check_requester(ci, profiles, "release") is PROFILE
    dev = Principal(name="dev", permissions=frozenset({"sign:request:*"}))
    with pytest.raises(Forbidden, match="not a requester"):
        check_requester(dev, profiles, "release")
    other = Principal(name="ci", permissions=frozenset({"sign:request:other"}))
    with pytest.raises(Forbidden, match="lacks permission"):
        check_requester(other, profiles, "release")


def test_without_the_permission_an_unknown_profile_is_403_not_422() -> None:
    """Who may not ask cannot probe which profiles exist."""
    outsider = Principal(name="eve", permissions=frozenset({"jwt:sign:*"}))
    for name in ("release", "nightly"):
        with pytest.raises(Forbidden, match="lacks permission"):
            check_requester(outsider, {"release": PROFILE}, name)
    ci = Principal(name="ci", permissions=frozenset({"sign:request:*"}))
    with pytest.raises(UnknownProfile, match="'nightly'"):
        check_requester(ci, {"release": PROFILE}, "nightly")


def test_an_unknown_profile_is_named() -> None:
    with pytest.raises(UnknownProfile, match="'nightly'"):
        find_profile({"release": PROFILE}, "nightly")
