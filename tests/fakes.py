"""Small test doubles for pure code: a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass

T0 = 1_800_000_000.0


@dataclass
class MovingClock:
    """A clock that stands still until the test moves ``now``."""

    now: float = T0

    def __call__(self) -> float:
        return self.now
