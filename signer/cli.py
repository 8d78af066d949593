"""The ``signer`` command line: ``init``, ``serve``, ``keys``, ``audit``, ``approvals``, ``sign``
and ``verify``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jwks.records import KeyState
from signer.audit.cli import add_audit_commands
from signer.client import ApiError, add_client_arguments, client_from_arguments
from signer.codesign.cli import add_sign_commands
from signer.codesign.verifier import add_verify_command
from signer.config_checks import blob_oracle_rings
from signer.errors import SignerError
from signer.hsm.base import KeyBackend, KeyRef
from signer.logs import configure as configure_logs
from signer.settings import Settings, load_settings
from signer.workers import supervise

log = logging.getLogger("signer")

# `signer serve`'s GIL switch interval (see _cmd_serve): batch signing rose by about a fifth at
# 1 ms against the default 5 ms, and nothing measured slower (docs/performance.md).
SWITCH_INTERVAL_S = 0.001


def _cmd_init(args: argparse.Namespace) -> int:
    from signer.provision import init_directory  # noqa: PLC0415 -- only this command needs it
    from signer.store import open_store  # noqa: PLC0415

    result = init_directory(Path(args.dir), port=args.port)
    settings = load_settings(result.config_path)

    async def create_store() -> None:
        store = open_store(settings.store)
        await store.aping()
        await store.aclose()

    asyncio.run(create_store())
    print(f"created {result.config_path}")
    print(f"role tokens in {result.credentials_path} (mode 0600)")
    print(f"start it with: signer serve --config {result.config_path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web  # noqa: PLC0415 -- keep `signer init` free of the server stack

    from signer.app import create_app, ssl_context  # noqa: PLC0415
    from signer.eventloop import loop_kind, new_event_loop  # noqa: PLC0415

    settings = load_settings(Path(args.config))
    if args.worker is None:  # said once, by the supervisor or the one process
        for ring in blob_oracle_rings(settings):
            log.warning(
                "ring %s signs blobs, and with the same key DSSE statements (every request's "
                "approval attestation, and containers and attestations unless the profiles' "
                "kinds leave them out): an approved blob digest can be a statement's, which "
                "then verifies though nobody approved it (docs/security.md)",
                ring,
            )
    if settings.server.workers > 1 and args.worker is None:
        return supervise(args, settings.server.workers)
    # The event loop shares one GIL with the PKCS#11 and store threads, and a thread coming
    # back from C waits for the loop to let go for up to this long (CPython's default: 5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    shared_dir = None if args.shared_dir is None else Path(args.shared_dir)
    app = create_app(settings, shared_dir=shared_dir, worker=args.worker or 0)
    context = ssl_context(settings)
    scheme = "https" if context else "http"
    loop = new_event_loop(settings.server.event_loop)
    log.info(
        "listening on %s://%s:%d (event loop: %s)",
        scheme,
        settings.server.host,
        settings.server.port,
        loop_kind(loop),
    )
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        ssl_context=context,
        reuse_port=settings.server.workers > 1,
        print=None,
        access_log=None,
        handle_signals=True,
        loop=loop,
    )
    return 0


async def _proof(backend: KeyBackend, ref: KeyRef) -> dict[str, Any]:
    try:
        proof = await backend.attributes(ref)
    except SignerError as exc:
        return {"proof": f"unavailable: {exc.detail}"}
    return {
        "proof": "ok" if proof.ok else "FAILED: " + ", ".join(proof.failures()),
        "attributes": {
            "LOCAL": proof.local,
            "ALWAYS_SENSITIVE": proof.always_sensitive,
            "NEVER_EXTRACTABLE": proof.never_extractable,
            "SENSITIVE": proof.sensitive,
            "EXTRACTABLE": proof.extractable,
            "VALUE_READABLE": proof.value_readable,
        },
    }


async def _keys_report(settings: Settings) -> list[dict[str, Any]]:
    from signer.app import open_backend, open_store  # noqa: PLC0415
    from signer.rings import ref_of  # noqa: PLC0415

    backend = open_backend(settings)
    store = open_store(settings)
    rows: list[dict[str, Any]] = []
    try:
        records = await store.keys()
        for record in records:
            row: dict[str, Any] = {
                "ring": record.ring,
                "kid": record.kid,
                "alg": record.alg.value,
                "state": record.state.value,
                "label": record.label,
                "created_at": record.created_at,
                "activated_at": record.activated_at,
                "exp_watermark": record.exp_watermark,
                "revoke_reason": record.revoke_reason,
            }
            if record.state is not KeyState.DESTROYED:
                row.update(await _proof(backend, ref_of(record)))
            rows.append(row)
        # Keys under our label prefix that no record holds: an interrupted generate or destroy.
        # `signer serve` destroys those of configured rings at start-up, not the audit ring's
        # (`signer/_audit/` is not named for one deployment, so another may hold it).
        held = {r.key_id for r in records if r.state is not KeyState.DESTROYED}
        rows.extend(
            {
                "ring": ref.label.split("/")[1],
                "kid": None,
                "alg": ref.alg.value,
                "state": "orphan",
                "label": ref.label,
                "created_at": None,
                "proof": "orphan: on the token with no live record",
            }
            for ref in await backend.list_refs("signer/")
            if ref.key_id not in held
        )
    finally:
        await backend.aclose()
        await store.aclose()
    return rows


def _cmd_keys_list(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config))
    rows = asyncio.run(_keys_report(settings))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'RING':<12} {'STATE':<10} {'ALG':<6} {'KID':<44} {'CREATED':<20} PROOF")
    for row in rows:
        created = "-"
        if row["created_at"] is not None:
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["created_at"]))
        reason = row.get("revoke_reason")
        print(
            f"{row['ring']:<12} {row['state']:<10} {row['alg']:<6} {row['kid'] or '-':<44} "
            f"{created:<20} {row.get('proof', '-')}"
            + (f"  (revoked: {json.dumps(reason)})" if reason else "")
        )
    return 0 if all(r.get("proof", "ok") == "ok" for r in rows) else 1


def _cmd_keys_rotate(args: argparse.Namespace) -> int:
    client = client_from_arguments(args)
    body: dict[str, Any] = {"immediate": True} if args.immediate else {}
    answer = client.call("POST", f"/v1/rings/{args.ring}/rotate", body)
    activates = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(answer["activates_at"]))
    print(f"rotation of ring {answer['ring']} accepted; the next key signs from {activates}")
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    client = client_from_arguments(args)
    answer = client.call("POST", f"/v1/keys/{args.kid}/revoke", {"reason": args.reason})
    print(f"revoked {answer['key']['kid']} of ring {answer['key']['ring']}")
    print(f"ring now signs with {answer['active_kid']}")
    return 0


def _cmd_approvals(args: argparse.Namespace) -> int:
    client = client_from_arguments(args)
    if args.approvals_command == "list":
        query = f"?state={args.state}" if args.state else ""
        answer = client.call("GET", f"/v1/approvals{query}")
        for item in answer["approvals"]:
            print(
                f"{item['id']}  {item['state']:<9} {item['operation']:<14} {item['target']}  "
                f"{item['approvals']}/{item['policy']['required']}  by {item['requester']}"
            )
        return 0
    body = {"comment": args.comment} if args.comment else {}
    answer = client.call("POST", f"/v1/approvals/{args.id}/{args.approvals_command}", body)
    print(
        f"{answer['id']} is {answer['state']} ({answer['approvals']}/"
        f"{answer['policy']['required']} approvals)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="signer", description="HSM-backed signing service for JWTs and artifacts."
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument(
        "--log-format", choices=["json", "text"], default="json", help="log lines (json)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create a single-node setup in a directory")
    init.add_argument("--dir", required=True, help="directory to create the setup in")
    init.add_argument("--port", type=int, default=8700, help="port to listen on (8700)")
    init.set_defaults(func=_cmd_init)

    serve = commands.add_parser("serve", help="run the signing service")
    serve.add_argument("--config", required=True, help="path to signer.toml")
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    # So is the directory where the workers share metrics and rate limits ("--metrics-dir": its
    # name before it held the rate limits too).
    serve.add_argument("--shared-dir", "--metrics-dir", dest="shared_dir", help=argparse.SUPPRESS)
    serve.set_defaults(func=_cmd_serve)

    keys = commands.add_parser("keys", help="inspect and manage keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_list = key_commands.add_parser("list", help="each ring's keys with the HSM proof")
    keys_list.add_argument("--config", required=True, help="path to signer.toml")
    keys_list.add_argument("--json", action="store_true", help="print JSON")
    keys_list.set_defaults(func=_cmd_keys_list)

    rotate = key_commands.add_parser("rotate", help="rotate a ring (via the API)")
    rotate.add_argument("ring", help="ring name")
    rotate.add_argument(
        "--immediate", action="store_true", help="skip pre-publication (if the ring allows it)"
    )
    add_client_arguments(rotate, role="admin")
    rotate.set_defaults(func=_cmd_keys_rotate)

    revoke = key_commands.add_parser("revoke", help="kill-switch a key (via the API)")
    revoke.add_argument("kid", help="the key's kid")
    revoke.add_argument("--reason", required=True, help="why, for the record")
    add_client_arguments(revoke, role="admin")
    revoke.set_defaults(func=_cmd_keys_revoke)

    add_audit_commands(commands)
    _add_approval_commands(commands)
    add_sign_commands(commands)
    add_verify_command(commands)
    return parser


def _add_approval_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    approvals = commands.add_parser("approvals", help="list and vote on approvals (via the API)")
    approval_commands = approvals.add_subparsers(dest="approvals_command", required=True)
    listing = approval_commands.add_parser("list", help="approval requests you can see")
    listing.add_argument("--state", help="pending, approved, executed, denied or expired")
    add_client_arguments(listing, role="approver1")
    listing.set_defaults(func=_cmd_approvals)
    for verb in ("approve", "deny"):
        voting = approval_commands.add_parser(verb, help=f"{verb} a request")
        voting.add_argument("id", help="approval id")
        voting.add_argument("--comment", help="why (required to deny)")
        add_client_arguments(voting, role="approver1")
        voting.set_defaults(func=_cmd_approvals)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``signer`` console script."""
    args = build_parser().parse_args(argv)
    configure_logs(args.log_level, json_lines=args.log_format == "json")
    try:
        code: int = args.func(args)
    except SignerError as exc:
        print(f"signer: error: {exc.detail}", file=sys.stderr)
        return 2
    except ApiError as exc:
        code = exc.problem.get("code", "error")
        print(f"signer: {code}: {exc.problem.get('detail', exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
