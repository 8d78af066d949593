"""The signing-request record: its states follow the approval; outputs only when signed."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from signer.codesign.records import (
    Kind,
    RequestClosed,
    RequestState,
    from_json,
    settle,
    to_json,
    with_outputs,
)
from signer.errors import InvalidField
from tests.signer.codesign.conftest import make_request, signed_outputs


@pytest.mark.parametrize("state", ["denied", "expired"])
def test_a_denied_or_expired_approval_closes_the_request(state: str) -> None:
    request = make_request()
    closed = settle(request, state)
    assert closed is not None
    assert (closed.state.value, closed.version, closed.outputs) == (state, 2, {})


@pytest.mark.parametrize("state", ["pending", "approved", "executed"])
def test_an_open_or_approved_approval_leaves_the_request_pending(state: str) -> None:
    assert settle(make_request(), state) is None


def test_a_closed_request_can_never_get_outputs(p256: ec.EllipticCurvePrivateKey) -> None:
    outputs = signed_outputs(p256, make_request())
    closed = settle(make_request(), "denied")
    assert closed is not None
    with pytest.raises(RequestClosed):
        with_outputs(closed, outputs, ring="codesign", kid="k", now=1)


def test_signing_sets_outputs_key_and_time(p256: ec.EllipticCurvePrivateKey) -> None:
    request = make_request(Kind.CONTAINER)
    signed = with_outputs(request, signed_outputs(p256, request), ring="cs", kid="k", now=5)
    assert (signed.state, signed.ring, signed.kid, signed.signed_at) == (
        RequestState.SIGNED,
        "cs",
        "k",
        5,
    )
    assert settle(signed, "denied") is None
    with pytest.raises(RequestClosed):
        with_outputs(signed, signed.outputs, ring="cs", kid="k", now=6)


def test_outputs_exist_exactly_when_signed() -> None:
    with pytest.raises(InvalidField):
        make_request(state=RequestState.SIGNED)


@pytest.mark.parametrize("kind", list(Kind))
def test_the_stored_shape_reads_back_equal(kind: Kind, p256: ec.EllipticCurvePrivateKey) -> None:
    request = make_request(kind)
    signed = with_outputs(request, signed_outputs(p256, request), ring="cs", kid="k", now=5)
    for record in (request, signed):
        again = from_json(json.loads(json.dumps(to_json(record))))
        assert to_json(again) == to_json(record)
        assert again.subjects == record.subjects


def test_a_stored_record_with_an_unknown_member_is_refused() -> None:
    stored = dict(to_json(make_request())) | {"extra": 1}
    with pytest.raises(InvalidField, match="extra"):
        from_json(stored)
