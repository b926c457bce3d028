"""Names that come from the data (a Pile subset like ``Wikipedia (en)``) made safe wherever they become keys.

MLflow refuses metric names with parentheses, a ``.`` would split a DVC metrics key in two, and a
``/`` would make a folder: every such name goes through :func:`safe_key` first.
"""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_key(name: str) -> str:
    """``Wikipedia (en)`` -> ``Wikipedia_en``, ``Gutenberg (PG-19)`` -> ``Gutenberg_PG-19``."""
    return _UNSAFE.sub("_", str(name)).strip("_") or "unnamed"


def safe_keys(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with every key (at any depth) made safe; two names that become one key stay apart
    (the later one, in sorted order, gets ``_2``, ``_3``...)."""
    out: dict[str, Any] = {}
    for k in sorted(d, key=str):
        key = base = safe_key(k)
        n = 2
        while key in out:
            key, n = f"{base}_{n}", n + 1
        v = d[k]
        out[key] = safe_keys(v) if isinstance(v, dict) else v
    return out
