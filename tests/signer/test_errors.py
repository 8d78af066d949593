"""The exception tree: every error has a code and status, and renders as problem+json."""

from __future__ import annotations

import json

import pytest

from signer import errors
from signer.problems import PROBLEM_CONTENT_TYPE, problem_body, problem_response


def all_errors() -> list[type[errors.SignerError]]:
    found: list[type[errors.SignerError]] = []
    stack: list[type[errors.SignerError]] = [errors.SignerError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", all_errors(), ids=lambda c: c.__name__)
def test_every_error_has_a_code_and_status(cls: type[errors.SignerError]) -> None:
    assert cls.code
    assert 400 <= cls.status <= 599
    assert cls.title


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in all_errors()]
    assert len(codes) == len(set(codes))


def test_problem_names_the_field() -> None:
    body = problem_body(errors.InvalidField("'ttl' too large", field="ttl"))
    assert body == {
        "type": "urn:signer:problem:invalid_field",
        "title": "Invalid field",
        "status": 400,
        "detail": "'ttl' too large",
        "code": "invalid_field",
        "field": "ttl",
    }


def test_unauthenticated_problem_has_a_bearer_challenge() -> None:
    response = problem_response(errors.Unauthenticated("no token"))
    assert response.status == 401
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert isinstance(response.body, bytes)
    assert json.loads(response.body)["code"] == "unauthenticated"
