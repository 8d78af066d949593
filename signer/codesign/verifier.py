"""``signer verify``: check a bundle, a DSSE envelope or a simple-signing signature offline.

Trust is explicit (STYLE "Verification over explicit trust inputs"): the key is a PEM file the
verifier already holds, or a JWKS URL it chose to trust; nothing is looked up from the artifact.
A bundle's hint and an envelope's keyid only pick a key from a JWKS; with a PEM, the one key is
the only candidate whatever they say.

A ``--jwks`` URL must be https (http only on a loopback host): the JWKS is the trust root.

Exit codes: 0 only when the signature verifies (and, when given, the artifact or digest matches);
1 when it does not (a parsed but malformed bundle or envelope included); 2 for bad usage or input
that cannot be read at all (a missing file, text that is not JSON, an unreachable JWKS), with a
one-line message.
"""

# ruff: noqa: T201 -- printing is the command line's interface (as signer/cli.py)
from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attest.approval import APPROVAL_PREDICATE_TYPE, approval_from_json
from attest.b64 import b64_decode
from attest.bundle import loads_bundle
from attest.dsse import loads_envelope
from attest.errors import AttestError, VerificationError
from attest.intoto import PAYLOAD_TYPE, Statement, loads_statement
from attest.keys import PublicKey, RsaPssPublicKey
from attest.verify import verify_bundle, verify_envelope, verify_simple_signing
from jwks.jwk import Jwk, public_key_from_jwk
from signer.client import ApiError, fetch_url
from signer.codesign.files import parse_json, read_bytes, sha256_file
from signer.errors import ConfigError

_DIGEST = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def load_pem_key(data: bytes) -> PublicKey:
    """A SubjectPublicKeyInfo PEM as a key :mod:`attest` verifies with."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ConfigError(f"unsupported key type {type(key).__name__}")
    return key


def jwks_keys(document: object) -> dict[str, PublicKey]:
    """The keys of a JWKS by kid; a ``PS256`` RSA key verifies PSS, other RSA keys PKCS#1."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ConfigError("the JWKS has no 'keys' list")
    keys: dict[str, PublicKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        try:
            key = public_key_from_jwk(Jwk(**jwk))  # type: ignore[typeddict-item]
        except ValueError:
            continue  # a key type this verifier does not know is no key it trusts
        if isinstance(key, rsa.RSAPublicKey) and jwk.get("alg") == "PS256":
            keys[jwk["kid"]] = RsaPssPublicKey(key=key)
        elif isinstance(
            key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
        ):
            keys[jwk["kid"]] = key
    if not keys:
        raise ConfigError("the JWKS holds no usable keys")
    return keys


def check_jwks_url(url: str) -> str:
    """``url`` if a JWKS fetched from it can be trusted: https, or http on a loopback host only.

    Over plain http anyone on the path could substitute their own keys and have any signature
    "verify"; loopback http stays allowed for a signer on the same host (and for tests).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return url
    raise ConfigError(
        f"--jwks {url!r}: a trusted JWKS must be fetched over https "
        "(http only from 127.0.0.1, ::1 or localhost)"
    )


def _trusted(args: argparse.Namespace, hints: list[str]) -> dict[str, PublicKey]:
    """Trusted keys by the names the signed object uses (a PEM answers to every name)."""
    if args.key:
        key = load_pem_key(read_bytes(Path(args.key), "--key"))
        return dict.fromkeys(hints, key) or {"key": key}
    try:
        document = fetch_url(args.jwks)
    except ApiError as exc:
        raise ConfigError(f"--jwks: {exc}") from None
    return jwks_keys(parse_json(document, f"--jwks {args.jwks!r}"))


def _artifact_digest(args: argparse.Namespace) -> bytes | None:
    if args.artifact:
        return sha256_file(Path(args.artifact), "--artifact")
    if args.digest:
        match = _DIGEST.match(args.digest)
        if match is None:
            raise ConfigError("--digest must be sha256:<64 lowercase hex>")
        return bytes.fromhex(match[1])
    return None


def _describe(statement: Statement) -> str:
    subjects = ", ".join(f"{s.name} (sha256:{s.sha256})" for s in statement.subjects)
    text = f"statement {statement.predicate_type} over {subjects}"
    if statement.predicate_type == APPROVAL_PREDICATE_TYPE:
        # The approval attestation says who approved: check its schema and show it.
        approval = approval_from_json(statement.predicate)
        votes = ", ".join(f"{a.approver} at {a.time.isoformat()}" for a in approval.approvals)
        text += (
            f"; request {approval.request.id} by {approval.requester}, "
            f"{len(approval.approvals)} of {approval.policy.eligible} approved "
            f"({approval.policy.required} required): {votes}"
        )
    return text


def _verify_bundle(args: argparse.Namespace) -> str:
    bundle = loads_bundle(_json_file(args.bundle, "--bundle"))
    trusted = _trusted(args, [bundle.hint])
    verified = verify_bundle(
        bundle,
        trusted_keys=trusted,
        artifact_digest=_artifact_digest(args),
        predicate_types=args.predicate_type,
    )
    if verified.statement is not None:
        return f"bundle verified with key {verified.hint}: {_describe(verified.statement)}"
    digest = verified.message_digest.hex() if verified.message_digest else "?"
    if args.artifact is None and args.digest is None:
        # A message signature is over the artifact: without it only self-consistency is shown.
        raise VerificationError("a message-signature bundle needs --artifact or --digest")
    return f"bundle verified with key {verified.hint}: message signature over sha256:{digest}"


def _verify_envelope(args: argparse.Namespace) -> str:
    envelope = loads_envelope(_json_file(args.envelope, "--envelope"))
    hints = [s.keyid for s in envelope.signatures if s.keyid]
    verified = verify_envelope(
        envelope, trusted_keys=_trusted(args, hints), payload_types=(args.payload_type,)
    )
    text = f"envelope verified with key {', '.join(sorted(verified.keyids))}"
    if verified.payload_type == PAYLOAD_TYPE:
        statement = loads_statement(verified.payload)
        digest = _artifact_digest(args)
        if digest is not None and digest.hex() not in statement.digests():
            raise VerificationError(f"no subject of the statement has sha256 {digest.hex()}")
        if args.predicate_type and statement.predicate_type not in args.predicate_type:
            raise VerificationError(
                f"predicate type {statement.predicate_type!r} is not one of "
                f"{sorted(args.predicate_type)}"
            )
        text += f": {_describe(statement)}"
    elif args.predicate_type:
        raise VerificationError(f"payload type {verified.payload_type!r} carries no statement")
    return text


def _json_file(path: str, option: str) -> bytes:
    """The bytes of a JSON file; not JSON at all is unreadable input (exit 2), not a failure
    to verify. attest then parses them strictly."""
    data = read_bytes(Path(path), option)
    parse_json(data, f"{option} {path!r}")
    return data


def _signature_bytes(data: bytes) -> bytes:
    """A signature file: base64 as cosign writes it (one final line break allowed), or DER."""
    line = data.removesuffix(b"\n").removesuffix(b"\r")
    try:
        # attest.b64 is strict: one alphabet, canonical padding and pad bits, no whitespace.
        return b64_decode(line.decode("ascii"), "--signature")
    except (UnicodeDecodeError, AttestError):
        return data  # raw DER, as some tools write it


def _verify_simple_signing(args: argparse.Namespace) -> str:
    payload = read_bytes(Path(args.simple_signing), "--simple-signing")
    signature = _signature_bytes(read_bytes(Path(args.signature), "--signature"))
    digest = _artifact_digest(args)
    expected = None if digest is None else f"sha256:{digest.hex()}"
    problems = []
    for name, key in _trusted(args, []).items():
        try:
            parsed = verify_simple_signing(
                payload, signature, public_key=key, expected_digest=expected
            )
        except VerificationError as exc:
            problems.append(f"{name}: {exc}")
            continue
        return (
            f"simple signing verified with key {name}: {parsed.docker_reference}@"
            f"{parsed.manifest_digest}"
        )
    raise VerificationError("; ".join(problems) or "no key verifies the signature")


def _check_usage(args: argparse.Namespace) -> None:
    if args.simple_signing and not args.signature:
        raise ConfigError("--simple-signing needs --signature")
    if args.simple_signing and args.predicate_type:
        # Silently verifying without it would report a check never made.
        raise ConfigError(
            "--predicate-type goes with --bundle or --envelope: a simple-signing "
            "payload carries no statement"
        )
    if args.jwks:
        check_jwks_url(args.jwks)
    if args.envelope and args.payload_type != PAYLOAD_TYPE and (args.artifact or args.digest):
        # Only an in-toto statement names subjects; any other payload cannot be checked against
        # the artifact, and silently skipping the check would report a match never made.
        raise ConfigError(
            f"--artifact and --digest need --payload-type {PAYLOAD_TYPE} (an in-toto statement "
            f"names its subjects; {args.payload_type!r} does not)"
        )


def _cmd_verify(args: argparse.Namespace) -> int:
    _check_usage(args)
    try:
        if args.bundle:
            message = _verify_bundle(args)
        elif args.envelope:
            message = _verify_envelope(args)
        else:
            message = _verify_simple_signing(args)
    except VerificationError as exc:
        print(f"signer: NOT verified: {exc}", file=sys.stderr)
        return 1
    except AttestError as exc:
        print(f"signer: NOT verified: malformed input: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


def add_verify_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``signer verify``."""
    verify = commands.add_parser(
        "verify", help="verify a bundle, DSSE envelope or simple-signing signature offline"
    )
    what = verify.add_mutually_exclusive_group(required=True)
    what.add_argument("--bundle", help="a Sigstore bundle (.sigstore.json)")
    what.add_argument("--envelope", help="a DSSE envelope (JSON)")
    what.add_argument("--simple-signing", help="a cosign simple-signing payload (exact bytes)")
    verify.add_argument("--signature", help="with --simple-signing: base64 or DER signature")
    trust = verify.add_mutually_exclusive_group(required=True)
    trust.add_argument("--key", help="the trusted public key (PEM)")
    trust.add_argument("--jwks", help="a trusted JWKS URL (e.g. the ring's jwks.json)")
    verify.add_argument("--artifact", help="the artifact: its SHA-256 must be what was signed")
    verify.add_argument("--digest", help="sha256:HEX the signature must be over")
    verify.add_argument(
        "--payload-type", default=PAYLOAD_TYPE, help=f"envelope payload type ({PAYLOAD_TYPE})"
    )
    verify.add_argument(
        "--predicate-type",
        action="append",
        metavar="URI",
        help="with --bundle or --envelope: the statement's predicate type must be this (repeat "
        "for any of several); a pipeline should always say which statement it trusts",
    )
    verify.set_defaults(func=_cmd_verify)
