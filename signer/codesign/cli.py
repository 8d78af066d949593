"""``signer sign request|status|fetch``: what a CI/CD pipeline runs (docs/codesign.md).

``request`` submits the artifact digests (computed here from ``--file``, or given with
``--subject NAME=sha256:HEX``) and prints the request id; with ``--out`` it then waits like
``fetch``. ``fetch`` waits until the request is signed, printing a progress line on each change,
and writes the outputs as files cosign and other verifiers read:

============================  ==========================================================
file                          what
============================  ==========================================================
``bundle.sigstore.json``      the Sigstore bundle (``cosign verify-blob --bundle``)
``approval.sigstore.json``    the approval attestation (who approved which digests)
``simple-signing.json``       container: the exact payload bytes that were signed
``simple-signing.sig``        container: base64 DER signature (``cosign attach signature``)
``key.pem``                   the signing key, SubjectPublicKeyInfo PEM (``--key``)
============================  ==========================================================

Exit codes: 0 signed (or submitted, without ``--out``), 1 denied, expired, timed out or an API
error, 2 bad usage.
"""

# ruff: noqa: T201 -- printing is the command line's interface (as signer/cli.py)
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from attest.b64 import b64_decode
from signer.client import ApiClient, add_client_arguments, client_from_arguments
from signer.codesign.files import read_json, sha256_file
from signer.errors import ConfigError

_SUBJECT = re.compile(r"^(?P<name>.+)=(?:sha256:)?(?P<hex>[0-9a-f]{64})$")
DEFAULT_TIMEOUT_S = 24 * 3600  # an approval's default lifetime
POLL_INTERVAL_S = 2.0


def _subjects(args: argparse.Namespace) -> list[dict[str, Any]]:
    subjects: list[dict[str, Any]] = []
    for text in args.subject or []:
        match = _SUBJECT.match(text)
        if match is None:
            raise ConfigError(f"--subject {text!r}: expected NAME=sha256:<64 lowercase hex>")
        subjects.append({"name": match["name"], "digest": {"sha256": match["hex"]}})
    for path_text in args.file or []:
        path = Path(path_text)
        digest = sha256_file(path, "--file")
        subjects.append({"name": path.name, "digest": {"sha256": digest.hex()}})
    if not subjects:
        raise ConfigError("pass at least one --file or --subject")
    return subjects


def _cmd_request(args: argparse.Namespace) -> int:
    client = client_from_arguments(args)
    body: dict[str, Any] = {
        "profile": args.profile,
        "kind": args.kind,
        "subjects": _subjects(args),
        "reason": args.reason,
    }
    if args.change_id:
        body["change_id"] = args.change_id
    if args.predicate_type:
        body["predicate_type"] = args.predicate_type
    if args.predicate:
        body["predicate"] = read_json(Path(args.predicate), "--predicate")
    answer = client.call("POST", "/v1/signing-requests", body)
    print(answer["id"])
    approval = answer.get("approval") or {}
    print(
        f"signing request {answer['id']} is {answer['state']}: needs "
        f"{approval.get('remaining', '?')} approvals from "
        f"{approval.get('policy', {}).get('group', '?')} (approval {answer['approval_id']})",
        file=sys.stderr,
    )
    if args.out is None:
        return 0
    return _wait_and_write(client, answer["id"], Path(args.out), timeout=args.timeout)


def _summary(answer: dict[str, Any]) -> str:
    approval = answer.get("approval") or {}
    policy = approval.get("policy", {})
    votes = ", ".join(f"{v['approver']} {v['decision']}" for v in approval.get("votes", []))
    return (
        f"{answer['id']} {answer['state']}: {approval.get('approvals', 0)}/"
        f"{policy.get('required', '?')} approvals from {policy.get('group', '?')}"
        + (f" ({votes})" if votes else "")
    )


def _cmd_status(args: argparse.Namespace) -> int:
    client = client_from_arguments(args)
    answer = client.call("GET", f"/v1/signing-requests/{args.id}")
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(_summary(answer))
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    client = client_from_arguments(args)
    timeout = 0.0 if args.no_wait else args.timeout
    return _wait_and_write(client, args.id, Path(args.out), timeout=timeout)


def _wait_and_write(client: ApiClient, request_id: str, out: Path, *, timeout: float) -> int:
    """Poll until signed (0), closed (1) or ``timeout`` seconds pass (1); then write files."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        answer = client.call("GET", f"/v1/signing-requests/{request_id}")
        line = _summary(answer)
        if line != last:
            print(f"waiting: {line}", file=sys.stderr, flush=True)
            last = line
        state = answer["state"]
        if state == "signed":
            break
        if state in ("denied", "expired"):
            print(f"signer: {request_id} was {state}; it has no signatures", file=sys.stderr)
            return 1
        if time.monotonic() >= deadline:
            print(f"signer: {request_id} is still {state}; gave up waiting", file=sys.stderr)
            return 1
        time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))
    for path in write_outputs(client, answer, out):
        print(path)
    return 0


def write_outputs(client: ApiClient, answer: dict[str, Any], out: Path) -> list[Path]:
    """Write a signed request's outputs (and its key's PEM) into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    outputs = answer["outputs"]
    files: dict[str, bytes] = {
        "bundle.sigstore.json": json.dumps(outputs["bundle"], indent=2).encode(),
        "approval.sigstore.json": json.dumps(outputs["approval_bundle"], indent=2).encode(),
    }
    simple = outputs.get("simple_signing")
    if simple is not None:
        # The payload bytes exactly as signed; the signature base64 as cosign's --signature reads.
        files["simple-signing.json"] = b64_decode(simple["payload"], "simple_signing.payload")
        files["simple-signing.sig"] = simple["signature"].encode()
    if answer.get("key_url"):
        files["key.pem"] = client.fetch(answer["key_url"])
    written = []
    for name, data in files.items():
        path = out / name
        path.write_bytes(data)
        written.append(path)
    return written


def add_sign_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``signer sign request|status|fetch``."""
    sign = commands.add_parser("sign", help="request artifact signatures (via the API)")
    sign_commands = sign.add_subparsers(dest="sign_command", required=True)

    request = sign_commands.add_parser("request", help="ask for signatures over artifacts")
    request.add_argument("--profile", required=True, help="signing profile")
    request.add_argument(
        "--kind", required=True, choices=["blob", "container", "attestation"], help="what to sign"
    )
    request.add_argument("--file", action="append", help="an artifact to digest (repeatable)")
    request.add_argument(
        "--subject", action="append", help="NAME=sha256:HEX, e.g. an image (repeatable)"
    )
    request.add_argument("--predicate-type", help="attestation: the in-toto predicate type")
    request.add_argument("--predicate", help="attestation: a JSON file with the predicate")
    request.add_argument("--reason", required=True, help="why, for the approvers and the record")
    request.add_argument("--change-id", help="change ticket id")
    request.add_argument("--out", help="wait until signed, then write the outputs here")
    request.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait with --out"
    )
    add_client_arguments(request, role="ci")
    request.set_defaults(func=_cmd_request)

    status = sign_commands.add_parser("status", help="a signing request's state and votes")
    status.add_argument("id", help="signing request id")
    status.add_argument("--json", action="store_true", help="print the whole request")
    add_client_arguments(status, role="ci")
    status.set_defaults(func=_cmd_status)

    fetch = sign_commands.add_parser("fetch", help="wait until signed, write the output files")
    fetch.add_argument("id", help="signing request id")
    fetch.add_argument("--out", required=True, help="directory to write the files into")
    fetch.add_argument("--no-wait", action="store_true", help="fail unless signed already")
    fetch.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait (1 day)"
    )
    add_client_arguments(fetch, role="ci")
    fetch.set_defaults(func=_cmd_fetch)
