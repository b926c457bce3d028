"""Process-level conventions shared by the stages and the CLI: logging and one-line user errors."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from cgpt.errors import CgptError


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "mlflow", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = 2) -> NoReturn:
    close_progress_bars()
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def close_progress_bars() -> None:
    """End any tqdm bar still on screen, so a message printed next starts on its own line."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


@contextmanager
def graceful_stop(what: str = "training") -> Iterator[Callable[[], bool]]:
    """Turn the first Ctrl-C / SIGTERM into a request to stop at the next safe point (the caller
    polls the yielded function); a second one stops at once. Only in the main thread (signal
    handlers cannot be set elsewhere): there the yielded function always says no."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum: int, frame: object) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        close_progress_bars()
        print(
            f"\n{signal.Signals(signum).name}: stopping {what} at the next step (again to stop at once)",
            file=sys.stderr,
        )

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested.is_set
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_main(fn: Callable[[], object]) -> None:
    """Run ``fn``; a :class:`CgptError` becomes ``error: <one line>`` and exit status 2."""
    setup_logging()
    try:
        fn()
    except CgptError as exc:
        fail(str(exc))
    except OSError as exc:
        if exc.filename is None:  # not about a file the user can fix: keep the traceback
            raise
        fail(f"{exc.filename}: {exc.strerror or exc}")
    except KeyboardInterrupt as exc:
        fail(str(exc) or "interrupted; outputs written so far are complete (rerun to resume)", 130)


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(n: int) -> int:
    """``workers: 0`` means every available core."""
    return n if n > 0 else available_cores()
