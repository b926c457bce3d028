"""Task data on disk: ``<root>/<task>/<split>.jsonl`` in the Hugging Face schemas the harness loads.

The layout of ``shared/eval-data`` and of the download cache (:mod:`cgpt.eval.taskdata.cache`). One JSON
object per line, rows in upstream order (the few-shot draw depends on the pool's row order). A
malformed line, a missing field or a gold label out of range is one :class:`DataError` naming the
file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cgpt.core.errors import DataError
from cgpt.eval.tasks import Doc, Task


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line; one-line errors name ``path:line``."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def render_jsonl(rows: list[dict[str, Any]]) -> str:
    """One ``json.dumps(row, ensure_ascii=False)`` per line: the form of shared/eval-data's files and of the cache's."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def parse_docs(task: Task, path: Path, limit: int | None = None) -> list[Doc]:
    """The first ``limit`` (all if None) documents of a split file, processed and validated."""
    docs: list[Doc] = []
    for lineno, rec in read_jsonl(path):
        if limit is not None and len(docs) >= limit:
            break
        docs.append(task.parse(rec, len(docs), f"{path}:{lineno}"))
    if not docs:
        raise DataError(f"{path}: no documents in this file")
    return docs


@dataclass(frozen=True)
class TaskData:
    """A folder of task data (``<task>/<split>.jsonl``), e.g. shared/eval-data or the download cache."""

    root: Path

    def path(self, task: str, split: str) -> Path:
        return Path(self.root) / task / f"{split}.jsonl"

    def has(self, task: str, split: str) -> bool:
        return self.path(task, split).is_file()

    def missing(self, needed: dict[str, tuple[str, ...]]) -> list[Path]:
        """The files of ``needed`` (task -> splits) that this folder lacks."""
        return [self.path(t, s) for t, splits in needed.items() for s in splits if not self.has(t, s)]

    def load(self, task: Task, split: str, limit: int | None = None) -> list[Doc]:
        path = self.path(task.name, split)
        if not path.is_file():
            raise DataError(f"{path}: not found; {task.name} needs its {split} split here (or omit --data to download)")
        return parse_docs(task, path, limit)
