"""One registry type for everything chosen by name: models, data sources, experiments, commands, scores.

A :class:`Registry` is an ordered name → entry mapping whose lookup fails with one line that names the closest
registered name ("did you mean 'vae'?") or lists the choices.  It imports nothing but the error types, so any
layer may hold one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from .errors import AekitError, ConfigError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...] | Mapping[str, object], *,
                 prefix: str = "", listing: bool = True) -> str:
    """``"did you mean 'vae'?"`` for the closest of ``choices``, else ``"choose one of a, b, c"`` (or "")."""
    names = list(choices)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{prefix}{close[0]}'?"
    return ("choose one of " + ", ".join(prefix + n for n in names)) if listing else ""


class Registry(Mapping[str, T], Generic[T]):
    """Named entries of one kind (``kind`` words the error: "unknown model 'vea': did you mean 'vae'?")."""

    def __init__(self, kind: str, error: type[AekitError] = ConfigError):
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")  # a programming error
        self._entries[name] = entry
        return entry

    def get_entry(self, name: str) -> T:
        """The entry called ``name``, or the one-line error with a suggestion."""
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}: {did_you_mean(name, self._entries)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
