"""Process-level conventions shared by the stages and the CLI: logging and one-line user errors."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from cgpt.errors import CgptError


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "mlflow", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_main(fn: Callable[[], object]) -> None:
    """Run ``fn``; a :class:`CgptError` becomes ``error: <one line>`` and exit status 2."""
    setup_logging()
    try:
        fn()
    except CgptError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; outputs written so far are complete (rerun to resume)", 130)


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(n: int) -> int:
    """``workers: 0`` means every available core."""
    return n if n > 0 else available_cores()
