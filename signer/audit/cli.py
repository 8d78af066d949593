"""``signer audit verify|export|prune``: the audit log from the store or an export file.

``verify`` and ``export`` read the store directly (``--config``), as does ``prune``
(``signer.audit.prune``); none goes through the API, and each works beside a serving signer.
"""

# ruff: noqa: T201 -- printing is the command line's interface (as signer/cli.py)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from jwks.jwk import Jwk, published_jwk
from jwks.thumbprint import KeyId
from signer.audit.chain import GENESIS, check_hex, format_time
from signer.audit.prune import read_lines
from signer.audit.verify import verify_export, verify_stored
from signer.durations import parse_duration
from signer.errors import ConfigError
from signer.settings import Settings, load_settings
from signer.store.base import AuditAnchor, StateStore

MAX_SEQ = 2**62  # as GET /v1/audit?after= (a store's integers are 64-bit)


def add_audit_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``signer audit verify|export|prune``."""
    audit = commands.add_parser("audit", help="verify, export and prune the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check the hash chain and signed checkpoints; names the first bad record"
    )
    verify.add_argument("--config", help="path to signer.toml (verify the live store)")
    verify.add_argument("--file", help="a JSON Lines export to verify instead")
    verify.add_argument("--keys", help="with --file: the JWKS of GET /v1/audit/keys")
    verify.add_argument(
        "--after",
        type=_seq,
        default=0,
        help="with --file: the export starts after record SEQ (audit export --after SEQ)",
    )
    verify.add_argument("--prev", type=_hash, help="with --after: the hash of record SEQ")
    verify.set_defaults(func=_cmd_audit_verify)
    export = audit_commands.add_parser("export", help="write the log as JSON Lines")
    export.add_argument("--config", required=True, help="path to signer.toml")
    export.add_argument("--after", type=_seq, default=0, help="only records with seq > AFTER")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.set_defaults(func=_cmd_audit_export)
    prune = audit_commands.add_parser(
        "prune",
        help="move the records up to a signed checkpoint into an archive file, out of the store",
    )
    prune.add_argument("--config", required=True, help="path to signer.toml")
    prune.add_argument("--archive", required=True, help="the archive to create (JSON Lines)")
    prune.add_argument("--through", type=_seq, help="remove no record after seq THROUGH")
    prune.add_argument(
        "--older-than",
        type=_duration,
        help="remove only records a checkpoint signed more than this long ago (e.g. 90d)",
    )
    prune.set_defaults(func=_cmd_audit_prune)


def _seq(text: str) -> int:
    """A record's seq on the command line: 0 or more, ASCII digits."""
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_SEQ:
        raise argparse.ArgumentTypeError(f"expected a record seq (0 to 2**62), got {text!r}")
    return int(text)


def _duration(text: str) -> int:
    """A duration on the command line: "90d", "12h", … (as in the config)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _hash(text: str) -> str:
    """A record's hash on the command line: 64 lowercase hex digits."""
    try:
        return check_hex(text, "a record hash")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _stored_audit(settings: Settings, after: int) -> tuple[list[str], list[Jwk], AuditAnchor]:
    from signer.app import open_store  # noqa: PLC0415

    store = open_store(settings)
    try:
        anchor, raw = await store.audit_export(after=after)
        keys = await _audit_keys(store)
    finally:
        await store.aclose()
    return raw, keys, anchor


async def _audit_keys(store: StateStore) -> list[Jwk]:
    """The public key that signs checkpoints, as the JWKS of ``GET /v1/audit/keys`` holds it."""
    from signer.service import AUDIT_KID  # noqa: PLC0415

    kid = await store.get_meta(AUDIT_KID)
    record = None if kid is None else await store.get_key(KeyId(kid))
    return [] if record is None else [published_jwk(record.alg, Jwk(**record.jwk), record.kid)]  # type: ignore[typeddict-item]


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    if not args.file:
        if not args.config:
            raise ConfigError("pass --config (the live store) or --file (an export)")
        if args.after or args.prev:
            raise ConfigError("--after and --prev go with --file (an export made with --after)")
        # A pruned store starts after its anchor, which a checkpoint must vouch for.
        lines, keys, anchor = asyncio.run(_stored_audit(load_settings(Path(args.config)), 0))
        report = verify_stored(lines, keys, anchor=anchor)
        print(report.summary)
        return 0 if report.ok else 1
    lines = read_lines(Path(args.file))
    keys = json.loads(Path(args.keys).read_text(encoding="utf-8"))["keys"] if args.keys else []
    if (args.after > 0) != (args.prev is not None):
        raise ConfigError("--after SEQ and --prev HASH go together: the record the export follows")
    if args.prev == GENESIS:
        raise ConfigError("--prev: 64 zeros is what record 1 follows, not a record's hash")
    report = verify_export(lines, keys, after=args.after, prev=args.prev or GENESIS)
    print(report.summary)
    return 0 if report.ok else 1


def _cmd_audit_export(args: argparse.Namespace) -> int:
    lines, _, anchor = asyncio.run(_stored_audit(load_settings(Path(args.config)), args.after))
    if anchor.seq > args.after:
        print(
            f"the stored log starts after seq {anchor.seq} (pruned); verify this export with"
            f" --after {anchor.seq} --prev {anchor.hash}",
            file=sys.stderr,
        )
    target = Path(args.output).open("w", encoding="utf-8") if args.output else None  # noqa: SIM115
    with target if target is not None else contextlib.nullcontext(sys.stdout) as out:
        for line in lines:
            out.write(line + "\n")
    return 0


def _cmd_audit_prune(args: argparse.Namespace) -> int:
    from signer.app import open_store  # noqa: PLC0415
    from signer.audit.prune import prune  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    signed_before = None
    if args.older_than is not None:
        signed_before = format_time(max(0.0, time.time() - args.older_than))

    async def run() -> str:
        store = open_store(settings)
        try:
            keys = await _audit_keys(store)
            return await prune(
                store,
                keys,
                Path(args.archive),
                clock=time.time,
                through=args.through,
                signed_before=signed_before,
            )
        finally:
            await store.aclose()

    print(asyncio.run(run()))
    return 0
