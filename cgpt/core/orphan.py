"""A stage whose ``dvc`` died stops itself instead of running on as an orphan.

``kill -9`` of ``dvc repro`` (or of the Prefect task process running it) leaves the stage command
running: DVC's own lock is gone, nobody will record the stage's outputs in dvc.lock, and the next
``dvc repro`` would start a second writer beside it (cgpt's locks, :mod:`cgpt.core.locks`, now
refuse that second writer — this module makes the first one go away).

:func:`stop_when_orphaned` watches, in a daemon thread, the process that started this one (and,
when that is a shell ``dvc`` ran the command through, the shell's parent too). When it goes away
(this process or the shell is re-parented), it prints one line and sends this process SIGTERM:

* the train stage turns SIGTERM into "stop at the next step" (:func:`cgpt.core.runtime.graceful_stop`),
  so it writes a checkpoint there and exits; a rerun resumes from it (the ddp/fsdp launcher forwards
  the SIGTERM to its ranks, which agree on the step);
* any other stage dies at once, which loses nothing: every output is written atomically and the
  next run redoes that stage.

It runs only under DVC (``DVC_STAGE`` set in the environment, as ``dvc repro`` and ``dvc exp run``
do): a ``nohup cgpt train &`` whose shell has logged out must go on training. Polling (once a
second) rather than ``PR_SET_PDEATHSIG``, which fires when the parent *thread* ends, and cannot see
past a shell in between.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

POLL_S = 1.0
SHELLS = {"sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "busybox"}
ENV = "CGPT_WATCH_PARENT"  # "0": never stop when orphaned; "1": watch even outside DVC

_started = False


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (Linux /proc), or None when it is gone or cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
    try:
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return None


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def watched() -> list[tuple[int, int]]:
    """(pid, its parent now) pairs whose parent must not change: this process, and the shell that
    started it when there is one (``$SHELL -c "<cmd>"`` that did not exec the command)."""
    me, parent = os.getpid(), os.getppid()
    pairs = [(me, parent)]
    if _name(parent) in SHELLS:
        grand = parent_of(parent)
        if grand is not None and grand > 1:
            pairs.append((parent, grand))
    return pairs


def orphaned(pairs: list[tuple[int, int]]) -> int | None:
    """The pid that went away (a watched process's parent changed), or None while all are there."""
    for pid, parent in pairs:
        now = os.getppid() if pid == os.getpid() else parent_of(pid)
        if now != parent:
            return parent
    return None


def should_watch() -> bool:
    """Under DVC (``DVC_STAGE``), not inside a launched rank (those die with their launcher)."""
    setting = os.environ.get(ENV, "")
    if setting == "0" or "RANK" in os.environ:
        return False
    return setting == "1" or bool(os.environ.get("DVC_STAGE"))


def stop_when_orphaned(poll_s: float = POLL_S) -> None:
    """Start the watcher (once per process; only where :func:`should_watch`; Linux /proc)."""
    global _started
    if _started or not should_watch() or not Path("/proc/self/stat").exists():
        return
    _started = True
    pairs = watched()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(poll_s):
            gone = orphaned(pairs)
            if gone is not None:
                stage = os.environ.get("DVC_STAGE") or "this stage"
                print(
                    f"\nwarning: the dvc process that started {stage} (pid {gone}) is gone: stopping "
                    "(a training writes a checkpoint first; rerun to resume)",
                    file=sys.stderr,
                    flush=True,
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="cgpt-orphan-watch", daemon=True).start()
