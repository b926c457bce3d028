"""Per-source statistics of the clean stage (what ``metrics/clean.json`` and MLflow report)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DROP_REASONS = ("empty", "too_short", "too_long", "exact_dup", "near_dup", "bad_line")


def _no_drops() -> dict[str, int]:
    return dict.fromkeys(DROP_REASONS, 0)


@dataclass
class SourceStats:
    """Counts for one ``pile_set_name`` (or the total over all of them)."""

    documents_in: int = 0
    documents_out: int = 0
    characters_in: int = 0
    characters_out: int = 0
    changed_by_ftfy: int = 0
    invalid_utf8: int = 0
    dropped: dict[str, int] = field(default_factory=_no_drops)

    def add(self, other: SourceStats) -> None:
        for f in dataclasses.fields(self):
            if f.name == "dropped":
                for reason, n in other.dropped.items():
                    self.dropped[reason] = self.dropped.get(reason, 0) + n
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SourceStats:
        return cls(**{**d, "dropped": {**_no_drops(), **d.get("dropped", {})}})


def stats_json(per_source: dict[str, SourceStats]) -> dict[str, Any]:
    """``{"total": ..., "per_source": {name: ...}}`` with sources in name order."""
    total = SourceStats()
    for name in sorted(per_source):
        total.add(per_source[name])
    return {"total": total.to_json(), "per_source": {k: per_source[k].to_json() for k in sorted(per_source)}}


def nonzero_drops(dropped: dict[str, int]) -> str:
    """``empty=3, too_short=1`` (or ``none``) for error messages."""
    items = [f"{k}={v}" for k, v in dropped.items() if v]
    return ", ".join(items) if items else "none"
