"""Process-level conventions shared by the stages and the CLI: logging and one-line user errors."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from cgpt.core.errors import CgptError
from cgpt.core.orphan import stop_when_orphaned

# Set by cgpt's launcher for the ranks it starts: a rank then reports a failure only through the
# error file torch's elastic agent gives it, and the launcher prints the one line for the job.
RANK_ERRORS_ENV = "CGPT_RANK_ERRORS"
# What a rank sees when another rank died under it (gloo/NCCL lose the connection)
_PEER_LOST = re.compile(r"closed by peer|reset by peer|Broken pipe|remote worker|ncclRemoteError|DistNetworkError")


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
    handlers cannot be set elsewhere): there the yielded function always says no. (The ranks of a
    distributed run get the signal from their launcher, and agree on the step to stop at.)"""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum: int, frame: object) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        close_progress_bars()
        if os.environ.get("RANK", "0") == "0" and os.environ.get(RANK_ERRORS_ENV) != "file":  # one voice per job
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
    """Run ``fn``; a :class:`CgptError` becomes ``error: <one line>`` and exit status 2.

    In a rank of a distributed job (``RANK`` set by the launcher) the failure is also written to
    the error file of torch's elastic agent (``TORCHELASTIC_ERROR_FILE``), which the launcher reads
    to report the job's failure in one line; under cgpt's own launcher the rank prints nothing
    itself (one line for the job, not one per rank), and a rank that only lost contact with a
    rank that died first exits without a traceback.

    Under DVC the process also stops itself when the ``dvc`` that started it dies
    (:mod:`cgpt.core.orphan`).
    """
    setup_logging()
    stop_when_orphaned()
    try:
        fn()
    except CgptError as exc:
        _fail(getattr(exc, "cgpt_kind", "user"), str(exc), 2)
    except OSError as exc:
        if exc.filename is None:  # not about a file the user can fix: keep the traceback
            _unexpected(exc)
            raise
        _fail("user", f"{exc.filename}: {exc.strerror or exc}", 2)
    except KeyboardInterrupt as exc:
        _fail("interrupt", str(exc) or "interrupted; outputs written so far are complete (rerun to resume)", 130)
    except Exception as exc:
        _unexpected(exc)
        raise


def _in_rank() -> bool:
    return "RANK" in os.environ and "TORCHELASTIC_ERROR_FILE" in os.environ


def _record_rank_failure(kind: str, line: str, code: int, stack: str = "") -> None:
    """The error file torch's elastic agent reads (its format: message.message/extraInfo), plus
    cgpt's own fields (kind: user, interrupt, bug or peer; the one line; the exit status)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path or not _in_rank():
        return
    data = {
        "message": {
            "message": f"{kind}: {line}",
            "extraInfo": {"py_callstack": stack, "timestamp": str(int(time.time()))},
        },
        "cgpt": {"kind": kind, "line": line, "exit": code, "rank": int(os.environ.get("RANK", "0"))},
    }
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
    except OSError:
        pass  # the launcher then reports the exit status alone


def _fail(kind: str, line: str, code: int) -> NoReturn:
    _record_rank_failure(kind, line, code)
    if _in_rank() and os.environ.get(RANK_ERRORS_ENV) == "file":
        close_progress_bars()
        raise SystemExit(code)
    fail(line, code)


def _unexpected(exc: BaseException) -> None:
    """A bug keeps its traceback; a rank that lost its peers (a rank died first) exits quietly."""
    stack = "".join(traceback.format_exception(exc))
    if _in_rank() and _PEER_LOST.search(str(exc)):
        line = f"lost contact with another rank ({str(exc).splitlines()[0][:160]})"
        _record_rank_failure("peer", line, 1, stack)
        if os.environ.get(RANK_ERRORS_ENV) != "file":
            print(f"error: rank {os.environ.get('RANK')}: {line}", file=sys.stderr)
        raise SystemExit(1) from None
    _record_rank_failure("bug", f"{type(exc).__name__}: {str(exc)[:200]}", 1, stack)


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(n: int) -> int:
    """``workers: 0`` means every available core."""
    return n if n > 0 else available_cores()
