"""Reading a TOML config table by table, every error naming its dotted key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from signer.durations import parse_duration
from signer.errors import ConfigError


class Table:
    """A TOML table being consumed: every read is by a dotted path used in error messages, and
    ``done`` refuses the keys nobody read."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self._data = data
        self._where = where
        self._seen: set[str] = set()

    def key(self, key: str) -> str:
        """The dotted path of ``key`` in this table, for messages."""
        return f"{self._where}.{key}" if self._where else key

    def get(self, key: str, default: Any = None) -> Any:
        """The raw value of ``key`` (marked as read)."""
        self._seen.add(key)
        return self._data.get(key, default)

    def text(self, key: str, default: str | None = None) -> str:
        """A required non-empty string."""
        value = self.get(key, default)
        if value is None:
            raise ConfigError(f"{self.key(key)} is required")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.key(key)} must be a non-empty string")
        return value

    def opt_str(self, key: str) -> str | None:
        """A non-empty string, or None when the key is absent."""
        if key not in self._data:
            self._seen.add(key)
            return None
        return self.text(key)

    def integer(self, key: str, default: int | None = None) -> int:
        """A positive integer."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{self.key(key)} must be a positive integer")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        """A boolean."""
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(key)} must be true or false")
        return value

    def duration(self, key: str, default: object = None) -> int:
        """A duration (``"30d"`` or seconds) in seconds."""
        value = self.get(key, default)
        if value is None:
            raise ConfigError(f"{self.key(key)} is required")
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{self.key(key)}: {exc}") from None

    def strings(self, key: str, default: list[str] | None = None) -> tuple[str, ...]:
        """A list of non-empty strings."""
        value = self.get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{self.key(key)} must be a list of strings")
        return tuple(value)

    def table(self, key: str) -> Table:
        """A sub-table (empty when absent)."""
        value = self.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.key(key)} must be a table")
        return Table(value, self.key(key))

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]``), each with its index in its path."""
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{self.key(key)} must be an array of tables ([[{key}]])")
        return [Table(v, f"{self.key(key)}[{i}]") for i, v in enumerate(value)]

    def done(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise ConfigError(f"unknown key {self.key(unknown[0])}")
