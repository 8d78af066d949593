"""The raw HSM sign rate: ``Pkcs11Backend.sign`` in-process, with no HTTP, store or audit.

Runs in its own process (``python -m scripts.benchlib.hsm_rate``) because SoftHSM reads
``SOFTHSM2_CONF`` once per process, at ``C_Initialize``: the bench process must not have loaded
PKCS#11 for another token, and this one must export its token's config before anything loads it.
It provisions a fresh SoftHSM2 token in a temporary directory, generates one key, and has N
concurrent callers sign a JWS-sized input for the duration. Prints one ``Measurement`` as JSON.

This is the ceiling for batch signing: the signer funnels every PKCS#11 call through one thread
per process, as this backend does here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from scripts.benchlib.loadgen import closed_loop
from scripts.benchlib.stats import Measurement

TOKEN_LABEL = "bench-raw"  # noqa: S105 -- a PKCS#11 token label, not a secret
# A typical ES256 JWS signing input: base64url(header) "." base64url(claims), ~220 bytes.
SIGNING_INPUT = b"eyJhbGciOiJFUzI1NiIsImtpZCI6IiIsInR5cCI6IkpXVCJ9." + b"e" * 170


async def measure(
    directory: Path, *, alg_name: str, workers: int, duration_s: float, warmup: int = 50
) -> tuple[Measurement, float]:
    """Provision a token in ``directory``, generate an ``alg_name`` key, and time signing.

    Returns the measurement and the CPU seconds the whole process (every thread) used for it.
    """
    from signer.hsm.softhsm import find_module, provision_token  # noqa: PLC0415

    token = provision_token(directory, TOKEN_LABEL)
    # Before the first PKCS#11 import loads the module: SoftHSM reads this once.
    os.environ["SOFTHSM2_CONF"] = str(token.conf_path)
    from jwks.algorithms import Alg  # noqa: PLC0415
    from signer.hsm.pkcs11 import Pkcs11Backend  # noqa: PLC0415 -- after SOFTHSM2_CONF is set

    backend = await Pkcs11Backend.open(find_module(), token.label, token.pin)
    try:
        key_id = secrets.token_hex(16)
        ref = await backend.generate(Alg(alg_name), key_id, f"bench/{key_id}")
        for _ in range(warmup):  # the first sign finds and proves the key object
            await backend.sign(ref, SIGNING_INPUT)

        async def one() -> bool:
            return len(await backend.sign(ref, SIGNING_INPUT)) > 0

        cpu_start = time.process_time()
        measurement = await closed_loop(one, workers=workers, duration_s=duration_s)
        return measurement, time.process_time() - cpu_start
    finally:
        await backend.aclose()


def run_subprocess(
    *, alg_name: str, workers: int, duration_s: float, cwd: Path
) -> tuple[Measurement, float]:
    """Measure in a child process (see the module docstring) and read its result."""
    import subprocess  # noqa: PLC0415 -- only the parent side needs it

    env = {key: value for key, value in os.environ.items() if key != "SOFTHSM2_CONF"}
    argv = [sys.executable, "-m", "scripts.benchlib.hsm_rate"]
    argv += ["--alg", alg_name, "--workers", str(workers), "--duration", str(duration_s)]
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, cwd=cwd, env=env, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"hsm_rate exited {result.returncode}: {result.stderr.strip()[-800:]}")
    output = json.loads(result.stdout.strip().splitlines()[-1])
    return Measurement.from_json(output["measurement"]), float(output["cpu_s"])


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print ``{"measurement": …, "cpu_s": …}`` as one JSON line."""
    parser = argparse.ArgumentParser(description="raw in-process HSM sign rate")
    parser.add_argument("--alg", default="ES256")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-hsm-") as tmp:
        measurement, cpu_s = asyncio.run(
            measure(Path(tmp), alg_name=args.alg, workers=args.workers, duration_s=args.duration)
        )
    print(json.dumps({"measurement": measurement.to_json(), "cpu_s": round(cpu_s, 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
