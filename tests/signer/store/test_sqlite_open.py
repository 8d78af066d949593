"""Several processes (workers) may open one fresh SQLite store at the same moment."""

from __future__ import annotations

import threading
from pathlib import Path

from signer.store.sqlite import SqliteStore

OPENERS = 4
TRIALS = 60  # before the fix, about one trial in 16 failed on a 2-core machine


def test_stores_opening_a_fresh_file_together_all_open_it(tmp_path: Path) -> None:
    """Switching a new file to WAL takes a lock SQLite does not wait for: each opener retries."""
    failures: list[str] = []
    for trial in range(TRIALS):
        path = tmp_path / f"state-{trial}.db"
        stores = [SqliteStore(path) for _ in range(OPENERS)]
        start = threading.Barrier(OPENERS)

        threads = [threading.Thread(target=open_one, args=(s, start, failures)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert failures == []


def open_one(store: SqliteStore, start: threading.Barrier, failures: list[str]) -> None:
    """Open ``store`` (its first statement connects) as the others do, then close it."""
    start.wait()
    try:
        store._call(lambda conn: conn.execute("SELECT 1").fetchone())
    except Exception as exc:  # noqa: BLE001 -- collected and asserted by the test
        failures.append(repr(exc))
    finally:
        if store._conn is not None:
            store._conn.close()  # on the thread that made it, as sqlite3 requires
